"""Values shared by the transports and the layer above: where a message came from and goes.

A :class:`Source` describes a received message (transport, remote address, the listener it
arrived on, the stream connection if any). A :class:`Target` says where to send: the transport,
host and port, and optionally the connection to use (responses on streams go back on the
connection the request came on, RFC 3261 §18.2.2).

The SIP layer implements :class:`Sink`; transports call it for each parsed message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fastsip.message import Request, Response

__all__ = ("RELIABLE", "Gate", "Sink", "Source", "Target", "TransportStats")

#: transports with their own retransmission (no SIP timers A/E/G)
RELIABLE = frozenset(("tcp", "tls"))


class Source:
    """Where a message came from."""

    __slots__ = ("conn", "host", "listener", "port", "transport")

    def __init__(self, transport: str, host: str, port: int, listener: Any, conn: Any = None) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.listener = listener
        self.conn = conn

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"Source({self.transport}:{self.host}:{self.port})"


class Target:
    """Where to send: transport + address, and the connection or listener to prefer."""

    __slots__ = ("conn", "host", "listener", "port", "transport")

    def __init__(
        self, transport: str, host: str, port: int, *, conn: Any = None, listener: Any = None
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.conn = conn
        self.listener = listener

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def __repr__(self) -> str:
        return f"Target({self.transport}:{self.host}:{self.port})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return (self.transport, self.host, self.port) == (other.transport, other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.transport, self.host, self.port))


class Sink(Protocol):
    """What the transports deliver to (implemented by ``mss.sip.core.SipCore``)."""

    def on_message(self, message: Request | Response, source: Source) -> None: ...


class Gate(Protocol):
    """The drop-before-parse check (ban table, IP black list): True = let the packet in."""

    def allow(self, host: str, now: float) -> bool: ...


class TransportStats:
    """Plain counters; the metrics exporter reads them."""

    __slots__ = (
        "connections_closed",
        "connections_opened",
        "connections_refused",
        "dropped_banned",
        "dropped_garbage",
        "keepalives",
        "messages_in",
        "messages_out",
        "parse_errors",
        "send_errors",
        "stateless_errors",
        "stun_requests",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
