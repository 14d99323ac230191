"""Where a message came from and where one goes: values shared by the SIP core and transports.

A :class:`Source` describes a received message (transport, remote address, the listener it
arrived on, the stream connection if any). A :class:`Target` says where to send: the transport,
host and port, and optionally the connection or listener to use (responses on streams go back on
the connection the request came on, RFC 3261 §18.2.2). The listener and connection objects are
opaque here: the transports create and interpret them.
"""

from __future__ import annotations

from typing import Any

__all__ = ("RELIABLE", "Source", "Target")

#: transports with their own retransmission (no SIP timers A/E/G)
RELIABLE = frozenset(("tcp", "tls"))


class Source:
    """Where a message came from."""

    __slots__ = ("conn", "host", "listener", "port", "transport")

    def __init__(
        self, transport: str, host: str, port: int, listener: Any, conn: Any = None
    ) -> None:
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
