"""UDP, TCP and TLS transports on asyncio (RFC 3261 §18, RFC 3581, RFC 5626 keepalives, STUN).

Receive path, per datagram (UDP) or per new connection / chunk (TCP, TLS), cheapest first:

1. the :class:`~mss.transport.base.Gate` (ban table, IP black list) drops banned sources before
   anything else, without a reply;
2. :func:`fastsip.parser.classify`: STUN → :func:`fastsip.stun.handle_request`; CRLF keepalive →
   ignored on UDP; garbage → dropped and counted;
3. :func:`fastsip.parser.parse_datagram` (UDP) / :class:`fastsip.parser.StreamParser` (streams).
   A ParseError on UDP with a usable Via gets a stateless error response naming the problem
   (:func:`fastsip.message.error_response_for`), otherwise it is dropped; on a stream it closes
   the connection (framing is lost). CRLFCRLF pings on streams get a CRLF pong;
4. the message goes to the sink (``mss.sip.core``) with its :class:`Source`.

Send path: UDP goes out of the listener the request came in on (or one of the right address
family); streams reuse the connection a request came on, or any open connection to the target,
or open one (connections are keyed by transport + remote address, with a cap per source and in
total, and closed after ``idle_timeout`` seconds without traffic).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any

from fastsip import ParseError, stun
from fastsip.limits import DEFAULT_LIMITS, Limits
from fastsip.message import Kind, error_response_for
from fastsip.parser import StreamParser, classify, parse_datagram
from fastsip.transaction import response_target

from .base import Gate, Sink, Source, Target, TransportStats
from .clock import Clock
from .rx import USING_EXTENSION as RX_USING_EXTENSION
from .rx import Receiver

__all__ = ("ListenerInfo", "StreamConnection", "TransportLayer", "UdpListener")

log = logging.getLogger("mss.transport")

_SIP = Kind.SIP
_STUN = Kind.STUN
_KEEPALIVE = Kind.KEEPALIVE


class ListenerInfo:
    """A bound listener: what was asked and the address actually bound (port 0 → ephemeral)."""

    __slots__ = ("family", "host", "port", "server", "transport", "udp")

    def __init__(self, transport: str, host: str, port: int, family: int) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.family = family
        self.udp: UdpListener | None = None
        self.server: asyncio.AbstractServer | None = None

    def __repr__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


_RX_KIND = "recvmmsg batches (Cython)" if RX_USING_EXTENSION else "recvfrom_into (pure Python)"


def _family(host: str) -> int:
    # Called for every send without a listener: an IPv6 literal is the only form with a colon
    # (IPv4 literals and host names have none), so no ipaddress parsing on the hot path.
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class UdpListener:
    """One UDP socket: SIP and STUN (RFC 5389) share it.

    Receiving does not use asyncio's datagram transport: its one callback, one ``bytes`` and one
    address conversion per datagram cost more than the 5 µs a flooded server can spend on a
    dropped packet (issue 6). Instead the socket is read by a :class:`~mss.transport.rx.Receiver`
    (``recvmmsg`` in Cython, ``recvfrom_into`` in its pure twin), up to ``RX_BATCH`` datagrams per
    wake-up: it asks the gate about the source first (one ``now`` for the whole batch) and builds
    ``bytes`` only for the datagrams that pass. Two ways of waking it, switched by the arrival
    rate like Linux NAPI switches a network card from interrupts to polling:

    * **readiness** (``loop.add_reader``, the normal mode): each datagram is read as soon as it
      arrives; no extra latency;
    * **polling** (``loop.call_later(POLL_INTERVAL)``): when more than ``POLL_ENTER_RATE``
      datagrams per second arrive (a flood, or heavy load), each wake-up would read one or two
      datagrams and pay for the wake-up itself (``epoll_wait``, a callback, the read that ends in
      ``EAGAIN``) more than for the datagrams. Polling every millisecond reads them in batches
      instead; the kernel queues them meanwhile (``recv_buffer``, 4 MiB by default: a few
      thousand datagrams). It costs at most ``POLL_INTERVAL`` of added latency, and goes back to
      readiness when the rate falls under ``POLL_EXIT_RATE``.

    Sending calls ``sendto`` on the socket; when the kernel says "not now" (``EAGAIN``, or
    ``ENOBUFS``) the datagram waits in a bounded queue flushed when the socket is writable (or
    after ``POLL_INTERVAL`` for ``ENOBUFS``, which ``poll`` does not signal). A per-packet error
    (a bad datagram, a failing handler, a gate that raises) is logged and the reader goes on.
    Works on every event loop with ``add_reader`` (asyncio's selector loops, uvloop).
    """

    RX_BATCH = 64  #: datagrams read per readiness wake-up at most (then back to the loop)
    POLL_BATCH = 64  #: datagrams read per poll at most (the rest at the next loop turn)
    POLL_INTERVAL = 0.001  #: seconds between two polls under load
    POLL_ENTER_RATE = 5000.0  #: datagrams per second that switch from readiness to polling
    POLL_EXIT_RATE = (
        1000.0  #: ... and back (below it polling wakes up more often than datagrams come)
    )
    RATE_WINDOW = 0.01  #: seconds over which the arrival rate is measured
    SEND_QUEUE_MAX = 4096  #: datagrams waiting for a writable socket, at most (then dropped)

    def __init__(
        self, layer: TransportLayer, info: ListenerInfo, *, stun_only: bool = False
    ) -> None:
        self.layer = layer
        self.info = info
        self.stun_only = stun_only
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rx: Receiver | None = None
        self._polling = False
        self._poll_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._window_start = 0.0
        self._window_count = 0
        self._queue: deque[tuple[bytes, tuple[Any, ...]]] = deque()
        self._writer = False
        self._retry_handle: asyncio.TimerHandle | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self, host: str, port: int) -> int:
        """Bind ``host``:``port`` (0 = ephemeral), start reading; returns the bound port.

        Raises:
            OSError: no address of ``host`` could be bound.
        """
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
        )
        error: OSError | None = None
        for family, type_, proto, _, addr in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                sock.bind(addr)
            except OSError as e:
                sock.close()
                error = e
                continue
            break
        else:
            raise error or OSError(f"cannot bind udp {host}:{port}")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.layer.recv_buffer)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.layer.recv_buffer)
        except OSError:  # pragma: no cover - platform limits
            pass
        self.sock = sock
        self._loop = loop
        self._rx = Receiver(sock, batch=self.RX_BATCH)
        self._window_start = loop.time()
        loop.add_reader(sock.fileno(), self._on_readable)
        return int(sock.getsockname()[1])

    def close(self) -> None:
        """Stop reading and close the socket (queued datagrams are dropped)."""
        sock, loop = self.sock, self._loop
        if sock is None or loop is None:
            return
        self.sock = None
        if self._rx is not None:
            self._rx.close()
            self._rx = None
        if not loop.is_closed():
            loop.remove_reader(sock.fileno())
            if self._writer:
                loop.remove_writer(sock.fileno())
        for handle in (self._poll_handle, self._retry_handle):
            if handle is not None:
                handle.cancel()
        self._poll_handle = self._retry_handle = None
        self._writer = False
        self._queue.clear()
        sock.close()

    # -- receiving ----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        count = self._drain(self.RX_BATCH)
        rate = self._measure(count)
        if rate >= self.POLL_ENTER_RATE and self.sock is not None and self._loop is not None:
            self._polling = True
            self._loop.remove_reader(self.sock.fileno())
            self._poll_handle = self._loop.call_later(self.POLL_INTERVAL, self._poll)
            log.debug("udp %s: %.0f datagrams/s, polling", self.info, rate)

    def _poll(self) -> None:
        self._poll_handle = None
        loop = self._loop
        if self.sock is None or loop is None:
            return
        try:
            count = self._drain(self.POLL_BATCH)
        except Exception:  # a broken reporter must not end the polling (nothing re-arms it)
            log.exception("udp %s: error while reading", self.info)
            count = 0
        if self.sock is None:  # closed by a handler
            return
        rate = self._measure(count)
        if 0.0 <= rate < self.POLL_EXIT_RATE:  # quiet again: back to readiness
            self._polling = False
            loop.add_reader(self.sock.fileno(), self._on_readable)
            log.debug("udp %s: %.0f datagrams/s, back to readiness", self.info, rate)
        elif count >= self.POLL_BATCH:  # more waiting: let the loop run, then read on
            self._poll_handle = loop.call_soon(self._poll)
        else:
            self._poll_handle = loop.call_later(self.POLL_INTERVAL, self._poll)

    def _measure(self, count: int) -> float:
        """Count datagrams; the arrival rate once per RATE_WINDOW, else -1."""
        self._window_count += count
        now = self._loop.time() if self._loop is not None else 0.0
        elapsed = now - self._window_start
        if elapsed < self.RATE_WINDOW:
            return -1.0
        rate = self._window_count / elapsed
        self._window_start = now
        self._window_count = 0
        return rate

    def _drain(self, limit: int) -> int:
        """Read and handle up to ``limit`` datagrams; returns how many were read.

        The gate sees the source before anything is copied: a dropped datagram costs its share
        of a ``recvmmsg`` and one ``gate.allow`` call, nothing else.
        """
        rx = self._rx
        if rx is None:
            return 0
        layer = self.layer
        gate = layer.gate
        count, dropped = rx.drain(
            limit,
            gate.allow if gate is not None else None,
            layer.clock.now(),
            self._dispatch_safe,
            self._report,
        )
        if dropped:
            layer.stats.dropped_banned += dropped
        return count

    def _dispatch_safe(self, data: bytes, addr: Any) -> None:
        try:
            self._dispatch(data, addr)
        except Exception:  # never let one datagram kill the reader
            log.exception("error handling a datagram from %s:%s", addr[0], addr[1])

    def _report(self, exc: BaseException, addr: Any) -> None:
        if addr is None:
            self.error_received(exc)
        else:
            log.error("error handling a datagram from %s:%s", addr[0], addr[1], exc_info=exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Handle one datagram as if it had been read from the socket (gate included)."""
        layer = self.layer
        gate = layer.gate
        if gate is not None and not gate.allow(addr[0], layer.clock.now()):
            layer.stats.dropped_banned += 1
            return
        self._dispatch(data, addr)

    def _dispatch(self, data: bytes, addr: Any) -> None:
        layer = self.layer
        stats = layer.stats
        host = addr[0]
        kind = classify(data)
        if kind is _SIP and not self.stun_only:
            try:
                msg = parse_datagram(data, limits=layer.limits)
            except ParseError as e:
                stats.parse_errors += 1
                self._stateless_error(data, e, addr)
                return
            stats.messages_in += 1
            try:
                layer.sink.on_message(msg, Source("udp", host, addr[1], self))
            except Exception:  # never let one message kill the reader
                log.exception("error handling a message from %s:%s", host, addr[1])
        elif kind is _STUN:
            stats.stun_requests += 1
            reply = stun.handle_request(data, (host, addr[1]), software=layer.server_name)
            if reply is not None:
                self.sendto(reply, (host, addr[1]))
        elif kind is _KEEPALIVE:
            stats.keepalives += 1
        else:
            stats.dropped_garbage += 1

    def _stateless_error(self, data: bytes, error: ParseError, addr: Any) -> None:
        found = error_response_for(data, error)
        if found is None or self.sock is None:
            return
        reply, via = found
        dest = response_target(
            via.host_address, via.port, via.has_rport, via.maddr, (addr[0], addr[1]), reliable=False
        )
        self.layer.stats.stateless_errors += 1
        self.sendto(reply, dest)

    def error_received(self, exc: BaseException) -> None:
        log.debug("udp error on %s: %s", self.info, exc)

    # -- sending ------------------------------------------------------------------------------
    def sendto(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Send one datagram; never raises (failures are counted and logged)."""
        stats = self.layer.stats
        sock = self.sock
        if sock is None:
            stats.send_errors += 1
            return
        if self._queue:  # keep the order behind what is already waiting
            self._enqueue(data, addr)
            return
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, addr)
            self._want_writable()
            return
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                self._enqueue(data, addr)
                self._retry_later()
                return
            stats.send_errors += 1
            log.debug("udp send to %s failed: %s", addr, e)
            return
        except (ValueError, TypeError) as e:
            stats.send_errors += 1
            log.debug("udp send to %s failed: %s", addr, e)
            return
        stats.messages_out += 1

    def _enqueue(self, data: bytes, addr: tuple[Any, ...]) -> None:
        stats = self.layer.stats
        if len(self._queue) >= self.SEND_QUEUE_MAX:
            stats.send_errors += 1
            log.debug("udp send queue of %s full: dropping a datagram to %s", self.info, addr)
            return
        self._queue.append((data, addr))
        stats.messages_out += 1

    def _want_writable(self) -> None:
        if not self._writer and self.sock is not None and self._loop is not None:
            self._writer = True
            self._loop.add_writer(self.sock.fileno(), self._flush)

    def _retry_later(self) -> None:
        if self._retry_handle is None and self._loop is not None:
            self._retry_handle = self._loop.call_later(self.POLL_INTERVAL, self._retry)

    def _retry(self) -> None:
        self._retry_handle = None
        self._flush()

    def _flush(self) -> None:
        """Send what the queue holds until the kernel says "not now" again."""
        sock, loop = self.sock, self._loop
        queue = self._queue
        if sock is None or loop is None:
            return
        while queue:
            data, addr = queue[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self._want_writable()
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    if self._writer:  # writable but no buffers: poll() would spin, wait instead
                        self._writer = False
                        loop.remove_writer(sock.fileno())
                    self._retry_later()
                    return
                self.layer.stats.send_errors += 1
                log.debug("udp send to %s failed: %s", addr, e)
            except (ValueError, TypeError) as e:
                self.layer.stats.send_errors += 1
                log.debug("udp send to %s failed: %s", addr, e)
            queue.popleft()
        if self._writer:
            self._writer = False
            loop.remove_writer(sock.fileno())


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, incoming or outgoing, framed by a StreamParser."""

    def __init__(
        self, layer: TransportLayer, transport_name: str, info: ListenerInfo | None
    ) -> None:
        self.layer = layer
        self.name = transport_name
        self.info = info
        self.parser = StreamParser(limits=layer.limits)
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.port = 0
        self.closed = False
        self.last_activity = layer.clock.now()
        self._idle_handle: Any = None
        self._registered = False
        self.connected: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.name, self.host, self.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.host, self.port = peer[0], peer[1]
        layer = self.layer
        gate = layer.gate
        if self.info is not None:  # incoming: admission checks
            if gate is not None and not gate.allow(self.host, layer.clock.now()):
                layer.stats.dropped_banned += 1
                transport.abort()  # type: ignore[attr-defined]
                return
            if not layer._admit(self.host):
                layer.stats.connections_refused += 1
                transport.abort()  # type: ignore[attr-defined]
                return
        layer._register(self)
        self._registered = True
        layer.stats.connections_opened += 1
        self._arm_idle()
        if not self.connected.done():
            self.connected.set_result(True)

    def _arm_idle(self) -> None:
        clock = self.layer.clock
        self._idle_handle = clock.call_at(
            self.last_activity + self.layer.idle_timeout, self._idle_check
        )

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self.closed:
            return
        if self.layer.clock.now() - self.last_activity >= self.layer.idle_timeout - 1e-6:
            log.debug("closing idle %s connection to %s:%s", self.name, self.host, self.port)
            self.close()
        else:
            self._arm_idle()

    def data_received(self, data: bytes) -> None:
        layer = self.layer
        self.last_activity = now = layer.clock.now()
        gate = layer.gate
        if gate is not None and self.info is not None and not gate.allow(self.host, now):
            # banned while connected: no reply to anything more, drop the connection
            layer.stats.dropped_banned += 1
            if self.transport is not None:
                self.transport.abort()
            self._cleanup()
            return
        try:
            messages = self.parser.feed(data)
        except ParseError as e:
            layer.stats.parse_errors += 1
            log.debug("malformed stream from %s:%s: %s; closing", self.host, self.port, e.reason)
            self.close()
            return
        if self.parser.pings and self.transport is not None:
            layer.stats.keepalives += self.parser.pings
            self.transport.write(b"\r\n" * self.parser.pings)  # RFC 5626 §4.4.1 pong
        for msg in messages:
            layer.stats.messages_in += 1
            try:
                layer.sink.on_message(msg, Source(self.name, self.host, self.port, self.info, self))
            except Exception:
                log.exception("error handling a message from %s:%s", self.host, self.port)

    def write(self, data: bytes) -> bool:
        tr = self.transport
        if self.closed or tr is None or tr.is_closing():
            return False
        tr.write(data)
        self.last_activity = self.layer.clock.now()
        self.layer.stats.messages_out += 1
        return True

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._cleanup()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._idle_handle is not None:
            self.layer.clock.cancel(self._idle_handle)
            self._idle_handle = None
        if self._registered:
            self.layer._unregister(self)
            self.layer.stats.connections_closed += 1
        if not self.connected.done():
            self.connected.set_result(False)


class TransportLayer:
    """All listeners and connections of one server."""

    def __init__(
        self,
        *,
        listen: Sequence[tuple[str, str, int]],
        clock: Clock,
        limits: Limits = DEFAULT_LIMITS,
        sink: Sink | None = None,
        gate: Gate | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        idle_timeout: float = 120.0,
        max_connections_per_source: int = 32,
        max_connections: int = 10000,
        stun_listen: tuple[str, int] | None = None,
        server_name: str = "mss",
        recv_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        self.listen = list(listen)
        self.clock = clock
        self.limits = limits
        self.sink: Sink = sink if sink is not None else _NullSink()
        self.gate = gate
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_ca = tls_ca
        self.idle_timeout = idle_timeout
        self.max_connections_per_source = max_connections_per_source
        self.max_connections = max_connections
        self.stun_listen = stun_listen
        self.server_name = server_name
        self.recv_buffer = recv_buffer
        self.stats = TransportStats()
        self.listeners: list[ListenerInfo] = []
        self.stun_listener: ListenerInfo | None = None
        self._connections: dict[tuple[str, str, int], StreamConnection] = {}
        self._per_source: dict[str, int] = {}
        self._pending: dict[tuple[str, str, int], asyncio.Task[StreamConnection | None]] = {}
        self._server_ssl: ssl.SSLContext | None = None
        self._client_ssl: ssl.SSLContext | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for transport, host, port in self.listen:
            info = ListenerInfo(transport, host, port, _family(host))
            if transport == "udp":
                udp = UdpListener(self, info)
                info.port = await udp.open(host, port)
                info.udp = udp
                if not any(i.transport == "udp" for i in self.listeners):
                    log.info("udp receive: %s", _RX_KIND)
            elif transport in ("tcp", "tls"):
                ctx = self._server_context() if transport == "tls" else None
                server = await loop.create_server(
                    lambda info=info, t=transport: StreamConnection(self, t, info),
                    host=host,
                    port=port,
                    ssl=ctx,
                    reuse_address=True,
                )
                info.server = server
                info.port = server.sockets[0].getsockname()[1]
            else:
                raise ValueError(f"unknown transport {transport!r}")
            self.listeners.append(info)
            log.info("listening on %s", info)
        if self.stun_listen is not None:
            host, port = self.stun_listen
            info = ListenerInfo("udp", host, port, _family(host))
            udp = UdpListener(self, info, stun_only=True)
            info.port = await udp.open(host, port)
            info.udp = udp
            self.stun_listener = info
            log.info("STUN listening on udp:%s:%s", host, info.port)

    async def stop(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        for conn in list(self._connections.values()):
            conn.close()
        for info in [*self.listeners, *([self.stun_listener] if self.stun_listener else [])]:
            if info.udp is not None:
                info.udp.close()
            if info.server is not None:
                info.server.close()
                await info.server.wait_closed()
        self.listeners.clear()
        self.stun_listener = None

    def _server_context(self) -> ssl.SSLContext:
        if self._server_ssl is None:
            if not self.tls_cert or not self.tls_key:
                raise ValueError("a tls listener needs tls.cert_file and tls.key_file")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            self._server_ssl = ctx
        return self._server_ssl

    def _client_context(self) -> ssl.SSLContext:
        if self._client_ssl is None:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            self._client_ssl = ctx
        return self._client_ssl

    # -- connection table -------------------------------------------------------------------
    def _admit(self, host: str) -> bool:
        if len(self._connections) >= self.max_connections:
            return False
        return self._per_source.get(host, 0) < self.max_connections_per_source

    def _register(self, conn: StreamConnection) -> None:
        old = self._connections.get(conn.key)
        if old is not None and old is not conn:
            old.close()
        self._connections[conn.key] = conn
        self._per_source[conn.host] = self._per_source.get(conn.host, 0) + 1

    def _unregister(self, conn: StreamConnection) -> None:
        if self._connections.get(conn.key) is conn:
            del self._connections[conn.key]
        n = self._per_source.get(conn.host, 0) - 1
        if n > 0:
            self._per_source[conn.host] = n
        else:
            self._per_source.pop(conn.host, None)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- sending ----------------------------------------------------------------------------
    def listener_for(self, transport: str, host: str | None = None) -> ListenerInfo | None:
        """A listener of this transport, of the address family of ``host`` when given."""
        fam = _family(host) if host else None
        first = None
        for info in self.listeners:
            if info.transport == transport:
                if fam is None or info.family == fam:
                    return info
                first = first or info
        return first

    def send(self, target: Target, data: bytes) -> None:
        """Send bytes; never raises (failures are counted and logged)."""
        t = target.transport
        if t == "udp":
            listener = target.listener
            if not isinstance(listener, UdpListener):
                info = self.listener_for("udp", target.host)
                listener = info.udp if info is not None else None
            if listener is None:
                self.stats.send_errors += 1
                log.warning("no UDP listener to send to %s", target)
                return
            listener.sendto(data, (target.host, target.port))
            return
        conn = target.conn
        if isinstance(conn, StreamConnection) and conn.write(data):
            return
        conn = self._connections.get((t, target.host, target.port))
        if conn is not None and conn.write(data):
            return
        self._connect_and_send(t, target.host, target.port, data)

    def _connect_and_send(self, transport: str, host: str, port: int, data: bytes) -> None:
        key = (transport, host, port)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._connect(transport, host, port))
            self._pending[key] = task

            def _forget(_t: asyncio.Task[StreamConnection | None]) -> None:
                self._pending.pop(key, None)

            task.add_done_callback(_forget)

        def _send(t: asyncio.Task[StreamConnection | None]) -> None:
            if t.cancelled() or t.exception() is not None or t.result() is None:
                self.stats.send_errors += 1
                return
            conn = t.result()
            assert conn is not None
            if not conn.write(data):
                self.stats.send_errors += 1

        task.add_done_callback(_send)

    async def _connect(self, transport: str, host: str, port: int) -> StreamConnection | None:
        loop = asyncio.get_running_loop()
        ctx = self._client_context() if transport == "tls" else None
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: StreamConnection(self, transport, None),
                    host,
                    port,
                    ssl=ctx,
                    server_hostname=host if ctx is not None else None,
                ),
                timeout=10.0,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
            log.info("cannot connect to %s:%s:%s: %s", transport, host, port, e)
            return None
        return conn


class _NullSink:
    def on_message(self, message: Any, source: Source) -> None:  # pragma: no cover
        log.debug("no sink: dropping %r from %r", message, source)
