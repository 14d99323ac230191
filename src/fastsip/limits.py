"""Parser limits, one frozen object passed once (house style 8).

Exceeding any limit is a :class:`~fastsip.errors.ParseError`, never unbounded work: the parser
checks the message size before scanning, counts headers and Via values while it scans.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("DEFAULT_LIMITS", "Limits")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the parser accepts.

    Attributes:
        max_message_size: whole message (start line + headers + body), bytes. 413 when exceeded
            for a request's body, 513 (Message Too Large) for the message as a whole.
        max_headers: header fields (lines after unfolding) per message.
        max_header_length: one header field after unfolding (name + value), bytes.
        max_start_line: request or status line, bytes.
        max_via: Via values (all Via header fields together).
    """

    max_message_size: int = 65536
    max_headers: int = 128
    max_header_length: int = 8192
    max_start_line: int = 8192
    max_via: int = 70

    def __post_init__(self) -> None:
        for field in (
            "max_message_size",
            "max_headers",
            "max_header_length",
            "max_start_line",
            "max_via",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{field} must be a positive int, got {value!r}")
        if self.max_message_size > (1 << 30):
            raise ValueError("Limits.max_message_size must be at most 1 GiB")


DEFAULT_LIMITS = Limits()
