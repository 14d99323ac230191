"""Sockets and the single clock: UDP/TCP/TLS listeners, connections, STUN, keepalives."""

from __future__ import annotations

from .base import RELIABLE, Gate, Sink, Source, Target, TransportStats
from .clock import Clock
from .layer import ListenerInfo, StreamConnection, TransportLayer, UdpListener

__all__ = (
    "RELIABLE",
    "Clock",
    "Gate",
    "ListenerInfo",
    "Sink",
    "Source",
    "StreamConnection",
    "Target",
    "TransportLayer",
    "TransportStats",
    "UdpListener",
)
