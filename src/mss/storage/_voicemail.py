"""Row encoding and checks of voicemail messages and their outbox, shared by the backends.

Both backends store the same tuples (columns in the order of
``migrations/0005_voicemail.sql``), so values come back equal and :func:`check_message` /
:func:`check_mail` refuse with the same :class:`ValueError` what the table's constraints
would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import MAIL_STATES, VoicemailMailRecord, VoicemailRecord

__all__ = (
    "MAIL_COLUMNS",
    "MESSAGE_COLUMNS",
    "check_mail",
    "check_message",
    "mail_from_row",
    "mail_row",
    "message_from_row",
    "message_key",
    "message_row",
)

MESSAGE_COLUMNS = (
    "id",
    "user",
    "caller",
    "caller_display",
    "call_id",
    "started_at",
    "duration",
    "path",
    "read",
    "created_at",
)
MAIL_COLUMNS = (
    "message_id",
    "recipient",
    "attempts",
    "next_try",
    "state",
    "last_error",
    "updated_at",
)


def message_key(record: VoicemailRecord) -> str:
    """The change-feed key of a message: ``"<user> <id>"``."""
    return f"{record.user} {record.id}"


def _text(name: str, value: object, *, empty: bool = True) -> None:
    if not isinstance(value, str) or (not empty and not value):
        raise ValueError(f"{name} must be a {'' if empty else 'non-empty '}string, got {value!r}")


def _number(name: str, value: object, *, low: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def check_message(record: VoicemailRecord) -> None:
    """Raise ``ValueError`` for what the ``voicemail`` table would refuse."""
    if not isinstance(record, VoicemailRecord):
        raise TypeError(f"expected VoicemailRecord, got {type(record).__name__}")
    for name in ("id", "user"):
        value = getattr(record, name)
        _text(name, value, empty=False)
        if any(c.isspace() for c in value):
            raise ValueError(f"{name} must not contain spaces, got {value!r}")
    for name in ("caller", "caller_display", "call_id", "path"):
        _text(name, getattr(record, name))
    _number("started_at", record.started_at)
    _number("duration", record.duration, low=0)
    _number("created_at", record.created_at)
    if not isinstance(record.read, bool):
        raise ValueError(f"read must be a bool, got {record.read!r}")


def check_mail(mail: VoicemailMailRecord) -> None:
    """Raise ``ValueError`` for what the ``voicemail_outbox`` table would refuse."""
    if not isinstance(mail, VoicemailMailRecord):
        raise TypeError(f"expected VoicemailMailRecord, got {type(mail).__name__}")
    _text("message_id", mail.message_id, empty=False)
    _text("to", mail.to, empty=False)
    if isinstance(mail.attempts, bool) or not isinstance(mail.attempts, int) or mail.attempts < 0:
        raise ValueError(f"attempts must be an int >= 0, got {mail.attempts!r}")
    _number("next_try", mail.next_try)
    _number("updated_at", mail.updated_at)
    if mail.state not in MAIL_STATES:
        raise ValueError(f"state must be one of {', '.join(MAIL_STATES)}, got {mail.state!r}")
    _text("last_error", mail.last_error)


def message_row(record: VoicemailRecord, *, created: float) -> tuple[Any, ...]:
    """The checked row of ``record`` with ``created_at`` = ``created``."""
    check_message(record)
    return (
        record.id,
        record.user,
        record.caller,
        record.caller_display,
        record.call_id,
        float(record.started_at),
        float(record.duration),
        record.path,
        1 if record.read else 0,
        float(created),
    )


def message_from_row(row: Sequence[Any]) -> VoicemailRecord:
    return VoicemailRecord(
        id=row[0],
        user=row[1],
        caller=row[2],
        caller_display=row[3],
        call_id=row[4],
        started_at=row[5],
        duration=row[6],
        path=row[7],
        read=bool(row[8]),
        created_at=row[9],
    )


def mail_row(mail: VoicemailMailRecord, *, updated: float) -> tuple[Any, ...]:
    """The checked row of ``mail`` with ``updated_at`` = ``updated``."""
    check_mail(mail)
    return (
        mail.message_id,
        mail.to,
        mail.attempts,
        float(mail.next_try),
        mail.state,
        mail.last_error,
        float(updated),
    )


def mail_from_row(row: Sequence[Any]) -> VoicemailMailRecord:
    return VoicemailMailRecord(
        message_id=row[0],
        to=row[1],
        attempts=row[2],
        next_try=row[3],
        state=row[4],
        last_error=row[5],
        updated_at=row[6],
    )
