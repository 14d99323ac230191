"""Transport-side interfaces: the sink messages go to, the drop-before-parse gate, counters.

The SIP layer implements :class:`Sink`; transports call it for each parsed message with a
:class:`~mss.sip.addressing.Source` (re-exported here with :class:`~mss.sip.addressing.Target`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..sip.addressing import RELIABLE, Source, Target

if TYPE_CHECKING:
    from fastsip.message import Request, Response

__all__ = ("RELIABLE", "Gate", "Sink", "Source", "Target", "TransportStats")


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
    connections_closed: int
    connections_opened: int
    connections_refused: int
    dropped_banned: int
    dropped_garbage: int
    keepalives: int
    messages_in: int
    messages_out: int
    parse_errors: int
    send_errors: int
    stateless_errors: int
    stun_requests: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
