"""Serving the API on the server's own event loop (uvicorn's ``Server.serve()`` as a task).

The SIP server owns the loop, the signals and the logging: uvicorn runs with ``lifespan="off"``,
without its signal handlers (:class:`_EmbeddedUvicorn` makes ``capture_signals`` a no-op, so the
server's SIGINT/SIGTERM handling stays in charge), without its logging configuration and access
log, on a socket bound here (so port 0 works and the bound port is known). WebSockets use
uvicorn's sans-I/O ``websockets`` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ("ApiServer",)

log = logging.getLogger("mss.api")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without signal handlers of its own (the host program handles signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ApiServer:
    """An ASGI app served by uvicorn as a task of the running loop.

    Args:
        app: the ASGI application (:func:`mss.api.create_api`).
        host: address to bind (``localhost`` means 127.0.0.1).
        port: port to bind; 0 = ephemeral (see :attr:`port`).
        ssl_certfile: PEM certificate for HTTPS (with ``ssl_keyfile``).
        ssl_keyfile: PEM private key.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.app = app
        self.host = "127.0.0.1" if host == "localhost" else host
        self.requested_port = port
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl_certfile else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; returns once the server accepts connections.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: uvicorn failed to start.
        """
        sock = _bind(self.host, self.requested_port)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="websockets-sansio",
            ws_max_size=64 * 1024,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        server = _EmbeddedUvicorn(config)
        self._server = server
        self._task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                raise RuntimeError(f"the API server did not start: {exc!r}")
            await asyncio.sleep(0.01)
        log.info("management API on %s", self.url)

    async def stop(self) -> None:
        """Stop accepting, close connections (WebSockets get 1012), wait up to a few seconds."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
            except asyncio.TimeoutError:
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            except Exception:
                log.exception("the API server failed while stopping")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
