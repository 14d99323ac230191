"""Row encoding shared by the backends, so that memory and SQLite store and return equal values.

A record becomes a tuple of SQLite-native values (text, int, float, ``None``) in the column order
of the tables of ``migrations/0001_initial.sql``; mappings and sequences become compact JSON text.
The memory backend stores the same rows for the records that hold mappings (users, CDRs), so a
caller mutating a returned ``extra`` never changes what is stored, and a value that SQLite could
not store (not JSON-serialisable) fails the same way in both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .base import (
    BanRecord,
    BindingRecord,
    BlacklistRecord,
    CdrRecord,
    IpListRecord,
    TokenRecord,
    UserRecord,
)
from .errors import AlreadyExists

__all__ = (
    "BAN_COLUMNS",
    "BINDING_COLUMNS",
    "CDR_COLUMNS",
    "TOKEN_COLUMNS",
    "USER_COLUMNS",
    "ban_from_row",
    "ban_row",
    "binding_from_row",
    "binding_row",
    "binding_rows",
    "blacklist_key",
    "cdr_from_row",
    "cdr_row",
    "check_blacklist",
    "check_iplist",
    "check_token",
    "check_user",
    "dump_object",
    "dump_strings",
    "duplicate_contact",
    "iplist_key",
    "last_sets",
    "token_from_row",
    "token_row",
    "user_from_row",
    "user_row",
)

USER_COLUMNS = (
    "number",
    "name",
    "ha1",
    "realm",
    "multi_device",
    "max_devices",
    "allow_ips",
    "max_calls",
    "max_outgoing",
    "created_at",
    "updated_at",
    "extra",
)
#: Columns of a binding as read; the stored row has ``pos`` after them.
BINDING_COLUMNS = (
    "aor",
    "contact",
    "expires_at",
    "call_id",
    "cseq",
    "q",
    "path",
    "source",
    "user_agent",
    "instance",
    "reg_id",
    "registered_at",
)
BAN_COLUMNS = ("ip", "until", "reason", "count", "first_at", "last_at", "users")
CDR_COLUMNS = (
    "id",
    "caller",
    "dialed",
    "setup_at",
    "callee",
    "call_id",
    "caller_addr",
    "callee_addr",
    "direction",
    "route",
    "ring_at",
    "answer_at",
    "end_at",
    "duration",
    "status",
    "cause",
    "reason",
    "hangup",
    "result",
    "extra",
)

_EMPTY_OBJECT = "{}"
_EMPTY_LIST = "[]"


def dump_object(value: Mapping[str, object], what: str) -> str:
    """Compact JSON text of a mapping.

    Raises:
        ValueError: it is not JSON-serialisable (NaN and infinities included).
    """
    if not value:
        return _EMPTY_OBJECT
    try:
        return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from exc


def dump_strings(value: Sequence[str], what: str) -> str:
    """Compact JSON text of a sequence of strings.

    Raises:
        ValueError: it is not JSON-serialisable.
    """
    if not value:
        return _EMPTY_LIST
    try:
        return json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from exc


def _load_object(text: str) -> dict[str, Any]:
    if text == _EMPTY_OBJECT:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text[:40]!r}")
    return value


def _load_strings(text: str) -> tuple[str, ...]:
    if text == _EMPTY_LIST:
        return ()
    return tuple(json.loads(text))


# Users ----------------------------------------------------------------------------------------


def check_user(user: UserRecord) -> None:
    """Raises: ValueError: the number is empty (it is the key and the digest user name)."""
    if not user.number:
        raise ValueError("a user's number must not be empty")


def user_row(user: UserRecord) -> tuple[Any, ...]:
    """The stored row of a user (``USER_COLUMNS`` order)."""
    return (
        user.number,
        user.name,
        dump_object(user.ha1, "ha1"),
        user.realm,
        1 if user.multi_device else 0,
        user.max_devices,
        dump_strings(user.allow_ips, "allow_ips"),
        user.max_calls,
        user.max_outgoing,
        user.created_at,
        user.updated_at,
        dump_object(user.extra, "extra"),
    )


def user_from_row(row: Sequence[Any]) -> UserRecord:
    """A user from its stored row."""
    return UserRecord(
        number=row[0],
        name=row[1],
        ha1=_load_object(row[2]),
        realm=row[3],
        multi_device=bool(row[4]),
        max_devices=row[5],
        allow_ips=_load_strings(row[6]),
        max_calls=row[7],
        max_outgoing=row[8],
        created_at=row[9],
        updated_at=row[10],
        extra=_load_object(row[11]),
    )


# Bindings -------------------------------------------------------------------------------------


def binding_row(binding: BindingRecord, pos: int) -> tuple[Any, ...]:
    """The stored row of a binding: ``BINDING_COLUMNS`` then ``pos``."""
    return (
        binding.aor,
        binding.contact,
        binding.expires_at,
        binding.call_id,
        binding.cseq,
        binding.q,
        dump_strings(binding.path, "path") if binding.path else _EMPTY_LIST,
        binding.source,
        binding.user_agent,
        binding.instance,
        binding.reg_id,
        binding.registered_at,
        pos,
    )


def binding_rows(sets: Mapping[str, Sequence[BindingRecord]]) -> Iterator[tuple[Any, ...]]:
    """Rows of several binding sets, lazily (``executemany`` consumes them mid-transaction)."""
    for bindings in sets.values():
        for pos, binding in enumerate(bindings):
            yield binding_row(binding, pos)


def binding_from_row(row: Sequence[Any]) -> BindingRecord:
    """A binding from the ``BINDING_COLUMNS`` of its row."""
    return BindingRecord(
        aor=row[0],
        contact=row[1],
        expires_at=row[2],
        call_id=row[3],
        cseq=row[4],
        q=row[5],
        path=_load_strings(row[6]),
        source=row[7],
        user_agent=row[8],
        instance=row[9],
        reg_id=row[10],
        registered_at=row[11],
    )


def last_sets(
    changes: Sequence[tuple[str, Sequence[BindingRecord]]],
) -> dict[str, Sequence[BindingRecord]]:
    """The binding set per AOR of a batch, the last one winning; checks each binding's AOR.

    Raises:
        ValueError: a binding's ``aor`` differs from its entry's AOR.
    """
    sets: dict[str, Sequence[BindingRecord]] = {}
    for aor, bindings in changes:
        for binding in bindings:
            if binding.aor != aor:
                raise ValueError(f"binding of AOR {binding.aor!r} given in the set of {aor!r}")
        sets[aor] = bindings
    return sets


def duplicate_contact(sets: Mapping[str, Sequence[BindingRecord]]) -> AlreadyExists | None:
    """The error for the first set naming one contact twice, or ``None``."""
    for aor, bindings in sets.items():
        if len(bindings) > 1:
            seen: set[str] = set()
            for binding in bindings:
                if binding.contact in seen:
                    return AlreadyExists("binding", f"{aor} {binding.contact}")
                seen.add(binding.contact)
    return None


# Bans -----------------------------------------------------------------------------------------


def ban_row(ban: BanRecord) -> tuple[Any, ...]:
    """The stored row of a ban (``BAN_COLUMNS`` order)."""
    return (
        ban.ip,
        ban.until,
        ban.reason,
        ban.count,
        ban.first_at,
        ban.last_at,
        dump_strings(ban.users, "users"),
    )


def ban_from_row(row: Sequence[Any]) -> BanRecord:
    """A ban from its stored row."""
    return BanRecord(
        ip=row[0],
        until=row[1],
        reason=row[2],
        count=row[3],
        first_at=row[4],
        last_at=row[5],
        users=_load_strings(row[6]),
    )


# CDRs -----------------------------------------------------------------------------------------


def cdr_row(cdr: CdrRecord) -> tuple[Any, ...]:
    """The stored row of a call record (``CDR_COLUMNS`` order)."""
    return (
        cdr.id,
        cdr.caller,
        cdr.dialed,
        cdr.setup_at,
        cdr.callee,
        cdr.call_id,
        cdr.caller_addr,
        cdr.callee_addr,
        cdr.direction,
        cdr.route,
        cdr.ring_at,
        cdr.answer_at,
        cdr.end_at,
        cdr.duration,
        cdr.status,
        cdr.cause,
        cdr.reason,
        cdr.hangup,
        cdr.result,
        dump_object(cdr.extra, "extra"),
    )


def cdr_from_row(row: Sequence[Any]) -> CdrRecord:
    """A call record from its stored row."""
    return CdrRecord(
        id=row[0],
        caller=row[1],
        dialed=row[2],
        setup_at=row[3],
        callee=row[4],
        call_id=row[5],
        caller_addr=row[6],
        callee_addr=row[7],
        direction=row[8],
        route=row[9],
        ring_at=row[10],
        answer_at=row[11],
        end_at=row[12],
        duration=row[13],
        status=row[14],
        cause=row[15],
        reason=row[16],
        hangup=row[17],
        result=row[18],
        extra=_load_object(row[19]),
    )


# IP lists and the system blacklist ------------------------------------------------------------


def iplist_key(record: IpListRecord) -> str:
    """The change-feed key of an IP-list entry: ``"<list> <network>"``."""
    return f"{record.list_name} {record.network}"


def check_iplist(record: IpListRecord) -> None:
    """Reject what the ``iplists`` table would refuse (same error in both backends).

    Raises:
        ValueError: an empty list name or network, or one containing a space.
    """
    for name in ("list_name", "network"):
        value = getattr(record, name)
        if not isinstance(value, str) or not value or " " in value:
            raise ValueError(f"{name} must be a non-empty string without spaces, got {value!r}")


def blacklist_key(record: BlacklistRecord) -> str:
    """The change-feed key of a blacklist record: ``"<caller_prefix> <called_prefix>"``."""
    return f"{record.caller_prefix} {record.called_prefix}"


def check_blacklist(record: BlacklistRecord) -> None:
    """Reject what the ``blacklist`` table would refuse (same error in both backends).

    Raises:
        ValueError: an empty prefix or one containing a space, or a rate outside 0..100.
    """
    for name in ("caller_prefix", "called_prefix"):
        value = getattr(record, name)
        if not isinstance(value, str) or not value or " " in value:
            raise ValueError(f"{name} must be a non-empty string without spaces, got {value!r}")
    if type(record.rate) is not int or not 0 <= record.rate <= 100:
        raise ValueError(f"rate must be an int in 0..100, got {record.rate!r}")


TOKEN_COLUMNS = (
    "id",
    "name",
    "secret_hash",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
)


def check_token(record: TokenRecord) -> None:
    """Reject what the ``tokens`` table would refuse (same error in both backends).

    Raises:
        ValueError: an empty id, or a ``secret_hash`` that is not 64 hex digits (SHA-256).
    """
    if not isinstance(record.id, str) or not record.id:
        raise ValueError(f"id must be a non-empty string, got {record.id!r}")
    h = record.secret_hash
    if not isinstance(h, str) or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise ValueError("secret_hash must be the lowercase hex SHA-256 of the secret")


def token_row(record: TokenRecord) -> tuple[Any, ...]:
    """The ``tokens`` row of a token (``scopes`` as a JSON array)."""
    check_token(record)
    return (
        record.id,
        record.name,
        record.secret_hash,
        dump_strings(record.scopes, "scopes"),
        float(record.created_at),
        None if record.expires_at is None else float(record.expires_at),
        float(record.last_used_at),
    )


def token_from_row(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(
        id=row[0],
        name=row[1],
        secret_hash=row[2],
        scopes=_load_strings(row[3]),
        created_at=row[4],
        expires_at=row[5],
        last_used_at=row[6],
    )
