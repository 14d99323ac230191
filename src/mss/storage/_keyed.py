"""Row encoding of the records keyed by an ``id`` (lines, trunks, routes), shared by the backends.

Each :class:`KeyedSpec` names the table, the change-feed entity and the columns (the record's
field names, in the column order of ``migrations/0003_lines_trunks_routes.sql``), and converts a
record to a row of SQLite-native values and back: booleans become 0/1, mappings compact JSON
text, ``None`` stays NULL. The memory backend stores the same rows, so both backends return
equal values and a caller mutating a returned ``extra`` never changes what is stored.

:meth:`KeyedSpec.check` rejects, with the same :class:`ValueError` in both backends, what the
table's constraints would refuse; semantic validation (host names, route targets...) is the
features' job.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from .base import LineRecord, RouteRecord, TrunkRecord

__all__ = ("LINES", "ROUTES", "TRUNKS", "KeyedSpec")

R = TypeVar("R")

_TRANSPORTS = ("udp", "tcp", "tls")


def _dump(value: Mapping[str, object], what: str) -> str:
    if not value:
        return "{}"
    try:
        return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from exc


class KeyedSpec(Generic[R]):
    """How one keyed record type is stored.

    Args:
        record: the frozen dataclass.
        table: the SQL table.
        entity: the change-feed entity.
        bools: fields stored as 0/1 (``None`` kept as NULL).
        objects: mapping fields stored as JSON text.
        checks: extra checks, each raising ``ValueError``.
    """

    def __init__(
        self,
        record: type[R],
        *,
        table: str,
        entity: str,
        bools: Sequence[str] = (),
        objects: Sequence[str] = (),
        checks: Sequence[Callable[[R], None]] = (),
    ) -> None:
        self.record = record
        self.table = table
        self.entity = entity
        self.columns: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(record))  # type: ignore[arg-type]
        self._bools = frozenset(bools)
        self._objects = frozenset(objects)
        self._checks = tuple(checks)
        self.created_index = self.columns.index("created_at")
        self.updated_index = self.columns.index("updated_at")
        self.select = f"SELECT {', '.join(self.columns)} FROM {table}"
        self.insert = (
            f"INSERT INTO {table} ({', '.join(self.columns)}) "
            f"VALUES ({', '.join('?' * len(self.columns))})"
        )
        # every column but id and created_at, then the id
        self.update_sql = (
            f"UPDATE {table} SET "
            + ", ".join(f"{c} = ?" for c in self.columns if c not in ("id", "created_at"))
            + " WHERE id = ?"
        )

    def check(self, record: R) -> None:
        """Raise ``ValueError`` for what the table would refuse."""
        if not isinstance(record, self.record):
            raise TypeError(f"expected {self.record.__name__}, got {type(record).__name__}")
        rid = record.id  # type: ignore[attr-defined]
        if not isinstance(rid, str) or not rid or any(c.isspace() for c in rid):
            raise ValueError(f"id must be a non-empty string without spaces, got {rid!r}")
        for check in self._checks:
            check(record)

    def to_row(self, record: R) -> tuple[Any, ...]:
        """The row of ``record`` (checked)."""
        self.check(record)
        out: list[Any] = []
        for name in self.columns:
            value = getattr(record, name)
            if name in self._objects:
                value = _dump(value, name)
            elif name in self._bools and value is not None:
                value = 1 if value else 0
            out.append(value)
        return tuple(out)

    def stamped(self, row: tuple[Any, ...], *, created: float, updated: float) -> tuple[Any, ...]:
        """``row`` with ``created_at`` / ``updated_at`` replaced."""
        values = list(row)
        values[self.created_index] = created
        values[self.updated_index] = updated
        return tuple(values)

    def update_params(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """Parameters of :attr:`update_sql` for ``row``."""
        params = [
            v for c, v in zip(self.columns, row, strict=True) if c not in ("id", "created_at")
        ]
        return (*params, row[0])

    def from_row(self, row: Sequence[Any]) -> R:
        """The record of a stored row."""
        kwargs: dict[str, Any] = {}
        for name, value in zip(self.columns, row, strict=True):
            if name in self._objects:
                value = json.loads(value) if value else {}
            elif name in self._bools and value is not None:
                value = bool(value)
            kwargs[name] = value
        return self.record(**kwargs)


def _nonempty(*names: str) -> Callable[[Any], None]:
    def check(record: Any) -> None:
        for name in names:
            value = getattr(record, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    return check


def _strings(*names: str) -> Callable[[Any], None]:
    def check(record: Any) -> None:
        for name in names:
            value = getattr(record, name)
            if not isinstance(value, str) or any(c.isspace() for c in value):
                raise ValueError(f"{name} must be a string without spaces, got {value!r}")

    return check


def _transport(record: Any) -> None:
    if record.transport not in _TRANSPORTS:
        raise ValueError(
            f"transport must be one of {', '.join(_TRANSPORTS)}, got {record.transport!r}"
        )


def _optional_limit(*names: str) -> Callable[[Any], None]:
    def check(record: Any) -> None:
        for name in names:
            value = getattr(record, name)
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")

    return check


def _int_min(name: str, low: int, high: int | None = None) -> Callable[[Any], None]:
    def check(record: Any) -> None:
        value = getattr(record, name)
        if type(value) is not int or value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"{name} must be an int {bound}, got {value!r}")

    return check


LINES: KeyedSpec[LineRecord] = KeyedSpec(
    LineRecord,
    table="lines",
    entity="line",
    bools=("auth_with_domain", "register", "new_call_id", "enabled"),
    objects=("extra",),
    checks=(
        _nonempty("account", "domain"),
        _transport,
        _int_min("expires", 0),
        _int_min("no_answer_timeout", 0),
        _optional_limit("max_calls"),
    ),
)

TRUNKS: KeyedSpec[TrunkRecord] = KeyedSpec(
    TrunkRecord,
    table="trunks",
    entity="trunk",
    bools=("enabled", "ping"),
    objects=("extra",),
    checks=(
        _nonempty("host"),
        _transport,
        _int_min("port", 1, 65535),
        _optional_limit("max_incoming", "max_outgoing"),
    ),
)

ROUTES: KeyedSpec[RouteRecord] = KeyedSpec(
    RouteRecord,
    table="routes",
    entity="route",
    bools=("enabled",),
    checks=(
        _nonempty("target"),
        _strings("prefix", "target", "prepend", "fallback"),
        _int_min("strip", 0),
        _int_min("priority", -(2**31), 2**31),
    ),
)
