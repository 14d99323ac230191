"""The batched UDP receiver twins (``mss.transport._rx_py`` / ``_rx_c``) on loopback sockets.

Both twins must give the same answers: the gate sees every source before anything is copied,
admitted datagrams reach ``dispatch`` in order with the address ``socket.recvfrom`` gives
(2-tuple for IPv4, 4-tuple for IPv6), exceptions from the gate or the handler are reported and
the next datagram is still read, ``limit`` bounds a call, and nothing is read after ``close``.
The listener itself is exercised on both event loops with both twins: a handler that raises
does not stop it, the switch to polling under load and back keeps every datagram, and sends that
meet a full socket buffer wait in the queue.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from netutil import LOOP_IDS, UdpClient, run_on

from mss.transport import Clock, TransportLayer
from mss.transport import layer as layer_module
from mss.transport import rx as rx_select

TWINS = ("py", "c")


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


@pytest.fixture(params=TWINS)
def rx(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "py":
        return importlib.import_module("mss.transport._rx_py")
    if _flag("FASTSIP_NO_EXTENSIONS"):
        pytest.skip("pure-only run (FASTSIP_NO_EXTENSIONS=1)")
    try:
        return importlib.import_module("mss.transport._rx_c")
    except ImportError:
        if _flag("FASTSIP_REQUIRE_EXTENSIONS") or _flag("CI"):
            raise
        pytest.skip("mss.transport._rx_c is not built")


@pytest.fixture(params=LOOP_IDS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _pair(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    return server


@pytest.fixture
def server() -> Iterator[socket.socket]:
    sock = _pair()
    yield sock
    sock.close()


def _sender(source: str, family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((source, 0))
    return s


class Log:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []
        self.reports: list[tuple[BaseException, Any]] = []
        self.asked: list[str] = []

    def dispatch(self, data: bytes, addr: Any) -> None:
        self.got.append((data, addr))

    def report(self, exc: BaseException, addr: Any) -> None:
        self.reports.append((exc, addr))


def _drain_all(receiver: Any, log: Log, allow: Any, limit: int = 1000) -> tuple[int, int]:
    return receiver.drain(limit, allow, 1.0, log.dispatch, log.report)  # type: ignore[no-any-return]


def test_selector_names_the_live_twin() -> None:
    mod = "mss.transport._rx_c" if rx_select.USING_EXTENSION else "mss.transport._rx_py"
    assert rx_select.Receiver.__module__ == mod
    if _flag("FASTSIP_REQUIRE_EXTENSIONS") and os.uname().sysname == "Linux":
        assert rx_select.USING_EXTENSION


def test_gate_first_and_admitted_in_order(rx: ModuleType, server: socket.socket) -> None:
    banned, good = _sender("127.0.0.66"), _sender("127.0.0.7")
    try:
        target = server.getsockname()
        for i in range(5):
            banned.sendto(b"flood %d" % i, target)
            good.sendto(b"hello %d" % i, target)
        log = Log()

        def allow(host: str, now: float) -> bool:
            log.asked.append(host)
            assert now == 1.0
            return host != "127.0.0.66"

        receiver = rx.Receiver(server, batch=4)
        read, dropped = _drain_all(receiver, log, allow)
        assert (read, dropped) == (10, 5)
        assert log.asked == ["127.0.0.66", "127.0.0.7"] * 5
        assert [d for d, _ in log.got] == [b"hello %d" % i for i in range(5)]
        assert all(a == good.getsockname() for _, a in log.got)
        assert all(type(d) is bytes for d, _ in log.got)
        assert _drain_all(receiver, log, allow) == (0, 0)  # empty socket: nothing, no error
        assert log.reports == []
    finally:
        banned.close()
        good.close()


def test_no_gate_admits_everything_and_sizes_are_exact(
    rx: ModuleType, server: socket.socket
) -> None:
    s = _sender("127.0.0.9")
    try:
        sizes = [0, 1, 440, 1500, 9000, 60000]
        for n in sizes:
            s.sendto(bytes([n % 251]) * n, server.getsockname())
        log = Log()
        assert _drain_all(rx.Receiver(server), log, None) == (len(sizes), 0)
        assert [len(d) for d, _ in log.got] == sizes
        assert all(d == bytes([n % 251]) * n for (d, _), n in zip(log.got, sizes, strict=True))
    finally:
        s.close()


def test_ipv6_address_as_recvfrom_gives_it(rx: ModuleType) -> None:
    server = _pair(socket.AF_INET6, "::1")
    s = _sender("::1", socket.AF_INET6)
    try:
        s.sendto(b"v6", server.getsockname()[:2])
        log = Log()
        assert _drain_all(rx.Receiver(server), log, lambda h, n: h == "::1") == (1, 0)
        [(data, addr)] = log.got
        assert data == b"v6"
        assert addr == s.getsockname()  # ('::1', port, 0, 0)
        assert len(addr) == 4
    finally:
        server.close()
        s.close()


def test_exceptions_are_reported_and_reading_goes_on(rx: ModuleType, server: socket.socket) -> None:
    s = _sender("127.0.0.8")
    try:
        for i in range(6):
            s.sendto(b"%d" % i, server.getsockname())
        log = Log()

        def allow(host: str, now: float) -> bool:
            allow.calls += 1  # type: ignore[attr-defined]
            if allow.calls == 2:  # type: ignore[attr-defined]
                raise RuntimeError("gate broke")
            return True

        allow.calls = 0  # type: ignore[attr-defined]

        def dispatch(data: bytes, addr: Any) -> None:
            if data == b"3":
                raise ValueError("handler broke")
            log.got.append((data, addr))

        read, dropped = rx.Receiver(server).drain(100, allow, 1.0, dispatch, log.report)
        assert (read, dropped) == (6, 0)
        assert [d for d, _ in log.got] == [b"0", b"2", b"4", b"5"]
        assert [type(e) for e, _ in log.reports] == [RuntimeError, ValueError]
        assert all(a == s.getsockname() for _, a in log.reports)
    finally:
        s.close()


def test_limit_bounds_one_call_and_close_stops_reading(
    rx: ModuleType, server: socket.socket
) -> None:
    s = _sender("127.0.0.8")
    try:
        for i in range(10):
            s.sendto(b"%d" % i, server.getsockname())
        log = Log()
        receiver = rx.Receiver(server, batch=64)
        assert _drain_all(receiver, log, None, limit=3) == (3, 0)
        assert [d for d, _ in log.got] == [b"0", b"1", b"2"]

        def closing(data: bytes, addr: Any) -> None:
            log.got.append((data, addr))
            receiver.close()

        read, _ = receiver.drain(100, None, 1.0, closing, log.report)
        assert receiver.closed
        assert [d for d, _ in log.got][3:] == [b"3"]
        assert read >= 1
        assert receiver.drain(100, None, 1.0, log.dispatch, log.report) == (0, 0)
        assert len(log.got) == 4  # the rest of a fetched batch is discarded with the socket
    finally:
        s.close()


def test_bad_batch_is_refused(rx: ModuleType, server: socket.socket) -> None:
    with pytest.raises(ValueError):
        rx.Receiver(server, batch=0)


# -- the listener on both loops ---------------------------------------------------------------


class _Sink:
    def __init__(self, fail_on: bytes = b"") -> None:
        self.messages: list[Any] = []
        self.fail_on = fail_on

    def on_message(self, message: Any, source: Any) -> None:
        if self.fail_on and self.fail_on in bytes(message):
            raise RuntimeError("sink broke")
        self.messages.append((message, source))


class _Gate:
    def __init__(self, banned: str) -> None:
        self.banned = banned

    def allow(self, host: str, now: float) -> bool:
        return host != self.banned


def _options(n: int, port: int, host: str = "127.0.0.1") -> bytes:
    return (
        f"OPTIONS sip:x@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{n}\r\n"
        f"From: <sip:a@{host}>;tag=t{n}\r\nTo: <sip:x@{host}>\r\nCall-ID: c{n}\r\n"
        f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _until(pred: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_listener_survives_a_failing_handler_and_drops_banned(
    loop_name: str, rx: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layer_module, "Receiver", rx.Receiver)

    async def go() -> None:
        sink = _Sink(fail_on=b"c3\r\n")
        layer = TransportLayer(
            listen=[("udp", "127.0.0.1", 0)],
            clock=Clock(asyncio.get_running_loop()),
            sink=sink,
            gate=_Gate("127.0.0.66"),
        )
        await layer.start()
        port = layer.listeners[0].port
        good = await UdpClient.open("127.0.0.7")
        bad = await UdpClient.open("127.0.0.66")
        try:
            for n in range(6):
                bad.send(_options(100 + n, bad.addr[1]), ("127.0.0.1", port))
                good.send(_options(n, good.addr[1]), ("127.0.0.1", port))
            await _until(lambda: len(sink.messages) == 5 and layer.stats.dropped_banned == 6)
            assert sorted(m.call_id for m, _ in sink.messages) == ["c0", "c1", "c2", "c4", "c5"]
            assert all(s.host == "127.0.0.7" for _, s in sink.messages)
        finally:
            good.close()
            bad.close()
            await layer.stop()

    run_on(loop_name, go)


def test_listener_polls_under_load_and_loses_nothing(
    loop_name: str, rx: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layer_module, "Receiver", rx.Receiver)

    async def go() -> None:
        sink = _Sink()
        layer = TransportLayer(
            listen=[("udp", "127.0.0.1", 0)],
            clock=Clock(asyncio.get_running_loop()),
            sink=sink,
            gate=_Gate("127.0.0.66"),
        )
        await layer.start()
        port = layer.listeners[0].port
        listener = layer.listeners[0].udp
        assert listener is not None
        flood = _sender("127.0.0.66")
        good = await UdpClient.open("127.0.0.7")
        seen_polling = False
        try:
            flood.setblocking(False)
            for burst in range(40):  # ~8,000 datagrams in ~0.2 s, bounded
                for _ in range(200):
                    try:
                        flood.sendto(b"x" * 200, ("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                good.send(_options(burst, good.addr[1]), ("127.0.0.1", port))
                await asyncio.sleep(0.005)
                seen_polling = seen_polling or listener._polling
            await _until(lambda: len(sink.messages) == 40)
            assert seen_polling
            await _until(lambda: not listener._polling)  # quiet: back to readiness
            good.send(_options(99, good.addr[1]), ("127.0.0.1", port))
            await _until(lambda: len(sink.messages) == 41)
        finally:
            flood.close()
            good.close()
            await layer.stop()

    run_on(loop_name, go)


class _FullSocket:
    """A socket whose send buffer is full for the first ``busy`` sends."""

    def __init__(self, real: socket.socket, busy: int) -> None:
        self.real = real
        self.busy = busy
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.busy > 0:
            self.busy -= 1
            raise BlockingIOError
        self.sent.append(data)
        return len(data)

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()


def test_sends_wait_in_order_when_the_buffer_is_full(loop_name: str) -> None:
    async def go() -> None:
        layer = TransportLayer(
            listen=[("udp", "127.0.0.1", 0)], clock=Clock(asyncio.get_running_loop())
        )
        await layer.start()
        listener = layer.listeners[0].udp
        assert listener is not None and listener.sock is not None
        fake = _FullSocket(listener.sock, busy=1)
        listener.sock = fake  # type: ignore[assignment]
        try:
            for n in range(3):
                listener.sendto(b"%d" % n, ("127.0.0.1", 9))
            assert fake.sent == []  # the first met EAGAIN, the others queue behind it
            await _until(lambda: fake.sent == [b"0", b"1", b"2"])
            assert layer.stats.messages_out == 3
            assert layer.stats.send_errors == 0
            listener.SEND_QUEUE_MAX = 1
            fake.busy = 10**9
            listener.sendto(b"a", ("127.0.0.1", 9))
            listener.sendto(b"b", ("127.0.0.1", 9))  # over the bound: dropped and counted
            assert layer.stats.send_errors == 1
        finally:
            listener.sock = fake.real
            await layer.stop()

    run_on(loop_name, go)
