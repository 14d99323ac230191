"""Loop-level test helpers: run coroutines on asyncio and uvloop, loopback UDP/TCP clients."""

from __future__ import annotations

import asyncio
import faulthandler
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test dependency on CPython/Linux
    uvloop = None

LOOP_IDS = ("asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "asyncio":
        return asyncio.new_event_loop
    if uvloop is None:
        pytest.fail("uvloop is not installed (test extras: pip install .[speed])")
    return uvloop.new_event_loop  # type: ignore[no-any-return]


# How long closing a loop may take before the test process dumps every thread's stack and
# exits. uvloop's close() runs libuv until its last handle and request are done; once (in
# 1 of about 7 whole-suite runs, after test_ten_thousand_pending_transactions_timers_on_time
# on uvloop) it waited in epoll for good, which would have held CI until its time limit.
# A dump and a failure within minutes, instead, say where it hung.
CLOSE_LIMIT = 120.0


def run_on(name: str, fn: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    loop = loop_factory(name)()
    try:
        return loop.run_until_complete(asyncio.wait_for(fn(), timeout))
    finally:
        faulthandler.dump_traceback_later(CLOSE_LIMIT, exit=True, file=sys.__stderr__)
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        finally:
            faulthandler.cancel_dump_traceback_later()


class UdpClient(asyncio.DatagramProtocol):
    """A loopback UDP peer collecting what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 0) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(host, port))
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> bytes:
        data, _ = await asyncio.wait_for(self.queue.get(), timeout)
        return data

    async def nothing(self, wait: float = 0.3) -> bool:
        """True when nothing arrives within ``wait`` seconds."""
        try:
            await asyncio.wait_for(self.queue.get(), wait)
        except asyncio.TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
