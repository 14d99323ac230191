"""Assembles the server from its configuration and runs it (house style 9: injected, no globals).

``Server(config)`` builds the clock, the transports, the SIP core and the features; ``await
server.start()`` binds the listeners, ``await server.stop()`` releases them. ``run(config)`` does
both around the asyncio loop (uvloop when installed and enabled) and stops cleanly on SIGINT and
SIGTERM. Embedding programs use ``Server`` inside their own loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import fastsip
from fastsip.limits import Limits
from fastsip.transaction import Timers

from .config import Config
from .sip.core import SipCore
from .sip.router import MethodRouter
from .transport.clock import Clock
from .transport.layer import ListenerInfo, TransportLayer

__all__ = ("Server", "run")

log = logging.getLogger("mss")


class Server:
    """One mss server instance."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.router = MethodRouter()
        self.clock: Clock | None = None
        self.transport: TransportLayer | None = None
        self.core: SipCore | None = None
        self.started_at: float | None = None
        self._stop_event: asyncio.Event | None = None

    @property
    def listeners(self) -> list[ListenerInfo]:
        return list(self.transport.listeners) if self.transport is not None else []

    def port(self, transport: str = "udp") -> int:
        """The bound port of the first listener of ``transport`` (useful with port 0)."""
        for info in self.listeners:
            if info.transport == transport:
                return info.port
        raise LookupError(f"no {transport} listener")

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.clock = Clock(loop)
        limits = Limits(
            max_message_size=cfg.limits.max_message_size,
            max_headers=cfg.limits.max_headers,
            max_header_length=cfg.limits.max_header_length,
            max_via=cfg.limits.max_via,
        )
        stun_listen = None
        if cfg.stun.enabled and cfg.stun.port:
            stun_listen = (cfg.stun.host, cfg.stun.port)
        self.transport = TransportLayer(
            listen=[(lst.transport, lst.host, lst.port) for lst in cfg.transport.listen],
            clock=self.clock,
            limits=limits,
            tls_cert=cfg.tls.cert_file,
            tls_key=cfg.tls.key_file,
            tls_ca=cfg.tls.ca_file,
            idle_timeout=cfg.transport.idle_timeout,
            max_connections_per_source=cfg.transport.max_connections_per_source,
            max_connections=cfg.transport.max_connections,
            stun_listen=stun_listen,
            server_name=cfg.sip.server_name,
            recv_buffer=cfg.transport.recv_buffer,
        )
        self.core = SipCore(
            sender=self.transport,
            clock=self.clock,
            handler=self.router,
            timers=Timers(t1=cfg.timers.t1, t2=cfg.timers.t2, t4=cfg.timers.t4),
            server_name=cfg.sip.server_name,
        )
        self.transport.sink = self.core
        await self.transport.start()
        self.started_at = loop.time()
        log.info(
            "mss started: fastsip %s, Cython extensions in use: %s, event loop: %s",
            fastsip.__version__,
            fastsip.USING_EXTENSIONS,
            type(loop).__module__,
        )

    async def stop(self) -> None:
        if self.transport is not None:
            await self.transport.stop()
        if self.clock is not None:
            self.clock.close()
        log.info("mss stopped")

    async def serve_forever(self) -> None:
        """Start, wait for SIGINT/SIGTERM (or :meth:`request_stop`), stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        self._stop_event = stop
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                pass
        try:
            await stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()


def _loop_factory(config: Config) -> Any:
    if config.transport.use_uvloop:
        try:
            import uvloop
        except ImportError:
            return None
        return uvloop.new_event_loop
    return None


def run(config: Config) -> int:
    """Run a server until SIGINT/SIGTERM. Returns the process exit status."""
    server = Server(config)
    factory = _loop_factory(config)
    if factory is not None and sys.version_info >= (3, 12):
        asyncio.run(server.serve_forever(), loop_factory=factory)
    elif factory is not None:
        loop = factory()
        try:
            loop.run_until_complete(server.serve_forever())
        finally:
            loop.close()
    else:
        asyncio.run(server.serve_forever())
    return 0
