"""Errors raised by fastsip. They carry what a server needs to answer (house style 7)."""

from __future__ import annotations

__all__ = ("FastsipError", "ParseError")


class FastsipError(Exception):
    """Base class of every fastsip error."""


class ParseError(FastsipError):
    """A SIP message (or part of one) is malformed or exceeds a limit.

    Attributes:
        status_hint: the SIP status a server should answer with (400, 413, 416, 505, 513...).
        reason: a short, printable reason suitable for a reason phrase or a Warning header.
        offset: the byte offset in the input where parsing failed (-1 when not applicable).
    """

    __slots__ = ("offset", "reason", "status_hint")

    def __init__(self, reason: str, *, status_hint: int = 400, offset: int = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        self.offset = offset

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r}, status_hint={self.status_hint}, offset={self.offset})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParseError):
            return NotImplemented
        return (self.reason, self.status_hint, self.offset) == (
            other.reason,
            other.status_hint,
            other.offset,
        )

    __hash__ = None  # type: ignore[assignment]
