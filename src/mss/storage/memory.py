"""In-memory backend: every repository of :mod:`.base` on dicts, for tests and embedding.

Theory of operation
-------------------
All state lives in one :class:`_State` owned by the :class:`MemoryStorage` instance (no module
state, so two instances never share data). A coroutine here never awaits, so each repository
call runs to completion without interleaving: that is the transaction. Batch writes
(:meth:`MemoryBindings.apply`) check everything first and only then mutate, so a failure leaves
nothing half-written, as SQLite's rollback does.

Parity with SQLite: users and CDRs are kept as the same encoded rows the SQLite backend stores
(:mod:`._codec`), so values come back equal in both backends (JSON normalisation of ``extra``
included) and a returned record never aliases the stored one. Using a repository before
:meth:`MemoryStorage.open` raises :class:`~.errors.StorageError`, as SQLite does.
Nothing survives the process.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import _codec
from .base import BanRecord, BindingRecord, CdrRecord, Change, UserRecord
from .errors import AlreadyExists, NotFound, StorageError
from .schema import latest_version

__all__ = (
    "MemoryBans",
    "MemoryBindings",
    "MemoryCdrs",
    "MemoryChangeFeed",
    "MemoryKeyValue",
    "MemoryStorage",
    "MemoryUsers",
)


class _State:
    """The data of one memory store."""

    __slots__ = (
        "bans",
        "bindings",
        "cdrs",
        "changes",
        "clock",
        "is_open",
        "kv",
        "last_seq",
        "users",
    )

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.is_open = False
        self.users: dict[str, tuple[Any, ...]] = {}
        self.bindings: dict[str, tuple[BindingRecord, ...]] = {}
        self.kv: dict[str, str] = {}
        self.bans: dict[str, BanRecord] = {}
        self.cdrs: dict[str, tuple[Any, ...]] = {}
        self.changes: list[Change] = []
        self.last_seq = 0

    def check(self) -> None:
        if not self.is_open:
            raise StorageError("the storage is not open")

    def log(self, entity: str, key: str, op: str, at: float) -> None:
        self.last_seq += 1
        self.changes.append(Change(self.last_seq, entity, key, op, at))


class MemoryUsers:
    """:class:`~.base.UserRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, number: str) -> UserRecord | None:
        self._s.check()
        row = self._s.users.get(number)
        return None if row is None else _codec.user_from_row(row)

    async def list(self) -> builtins.list[UserRecord]:
        self._s.check()
        users = self._s.users
        return [_codec.user_from_row(users[number]) for number in sorted(users)]

    async def add(self, user: UserRecord) -> None:
        s = self._s
        s.check()
        _codec.check_user(user)
        if user.number in s.users:
            raise AlreadyExists("user", user.number)
        now = s.clock()
        created = user.created_at or now
        row = _codec.user_row(user)
        row = (*row[:9], created, user.updated_at or created, row[11])
        s.users[user.number] = row
        s.log("user", user.number, "put", now)
        if s.bindings.pop(user.number, None) is not None:
            s.log("binding", user.number, "delete", now)

    async def update(self, user: UserRecord) -> None:
        s = self._s
        s.check()
        _codec.check_user(user)
        old = s.users.get(user.number)
        if old is None:
            raise NotFound("user", user.number)
        now = s.clock()
        row = _codec.user_row(user)
        s.users[user.number] = (*row[:9], old[9], now, row[11])
        s.log("user", user.number, "put", now)

    async def delete(self, number: str) -> bool:
        s = self._s
        s.check()
        now = s.clock()
        existed = s.users.pop(number, None) is not None
        if existed:
            s.log("user", number, "delete", now)
        if s.bindings.pop(number, None) is not None:
            s.log("binding", number, "delete", now)
        return existed


class MemoryBindings:
    """:class:`~.base.BindingRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def for_aor(self, aor: str) -> builtins.list[BindingRecord]:
        self._s.check()
        return list(self._s.bindings.get(aor, ()))

    async def all(self) -> builtins.list[BindingRecord]:
        self._s.check()
        bindings = self._s.bindings
        return [b for aor in sorted(bindings) for b in bindings[aor]]

    async def replace(self, aor: str, bindings: Sequence[BindingRecord]) -> None:
        await self.apply(((aor, bindings),))

    async def apply(self, changes: Sequence[tuple[str, Sequence[BindingRecord]]]) -> None:
        s = self._s
        s.check()
        sets = _codec.last_sets(changes)
        duplicate = _codec.duplicate_contact(sets)
        if duplicate is not None:
            raise duplicate
        for _ in _codec.binding_rows(sets):  # values SQLite could not store fail here too
            pass
        now = s.clock()
        for aor, bindings in sets.items():
            if bindings:
                s.bindings[aor] = tuple(bindings)
                s.log("binding", aor, "put", now)
            else:
                s.bindings.pop(aor, None)
                s.log("binding", aor, "delete", now)

    async def purge_expired(self, now: float) -> int:
        s = self._s
        s.check()
        at = s.clock()
        removed = 0
        for aor in sorted(s.bindings):
            bindings = s.bindings[aor]
            kept = tuple(b for b in bindings if not b.expires_at <= now)
            if len(kept) == len(bindings):
                continue
            removed += len(bindings) - len(kept)
            if kept:
                s.bindings[aor] = kept
                s.log("binding", aor, "put", at)
            else:
                del s.bindings[aor]
                s.log("binding", aor, "delete", at)
        return removed


class MemoryChangeFeed:
    """:class:`~.base.ChangeFeed` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def latest(self) -> int:
        self._s.check()
        return self._s.last_seq

    async def since(self, seq: int, *, limit: int | None = None) -> builtins.list[Change]:
        s = self._s
        s.check()
        if not s.changes:
            return []
        # Sequence numbers are contiguous, so the position of seq + 1 is known.
        start = max(0, seq + 1 - s.changes[0].seq)
        stop = None if limit is None else start + max(0, limit)
        return s.changes[start:stop]

    async def horizon(self) -> int:
        s = self._s
        s.check()
        return s.changes[0].seq - 1 if s.changes else s.last_seq

    async def prune(self, keep_last: int) -> int:
        s = self._s
        s.check()
        if keep_last < 0:
            raise ValueError("keep_last must be >= 0")
        drop = max(0, len(s.changes) - keep_last)
        del s.changes[:drop]
        return drop


class MemoryKeyValue:
    """:class:`~.base.KeyValue` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, key: str) -> str | None:
        self._s.check()
        return self._s.kv.get(key)

    async def set(self, key: str, value: str) -> None:
        s = self._s
        s.check()
        s.kv[key] = value
        s.log("kv", key, "put", s.clock())

    async def setdefault(self, key: str, value: str) -> str:
        s = self._s
        s.check()
        if key not in s.kv:
            s.kv[key] = value
            s.log("kv", key, "put", s.clock())
        return s.kv[key]

    async def delete(self, key: str) -> bool:
        s = self._s
        s.check()
        if s.kv.pop(key, None) is None:
            return False
        s.log("kv", key, "delete", s.clock())
        return True


class MemoryBans:
    """:class:`~.base.BanRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, ip: str) -> BanRecord | None:
        self._s.check()
        return self._s.bans.get(ip)

    async def list(self) -> builtins.list[BanRecord]:
        self._s.check()
        bans = self._s.bans
        return [bans[ip] for ip in sorted(bans)]

    async def put(self, ban: BanRecord) -> None:
        s = self._s
        s.check()
        _codec.ban_row(ban)  # values SQLite could not store fail here too
        s.bans[ban.ip] = ban
        s.log("ban", ban.ip, "put", s.clock())

    async def delete(self, ip: str) -> bool:
        s = self._s
        s.check()
        if s.bans.pop(ip, None) is None:
            return False
        s.log("ban", ip, "delete", s.clock())
        return True

    async def purge_expired(self, now: float) -> int:
        s = self._s
        s.check()
        expired = [ip for ip, b in s.bans.items() if b.until is not None and b.until <= now]
        for ip in expired:
            del s.bans[ip]
        if expired:
            s.log("ban", "*", "delete", s.clock())
        return len(expired)


class MemoryCdrs:
    """:class:`~.base.CdrRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def put(self, cdr: CdrRecord) -> None:
        s = self._s
        s.check()
        s.cdrs[cdr.id] = _codec.cdr_row(cdr)
        s.log("cdr", cdr.id, "put", s.clock())

    async def get(self, id: str) -> CdrRecord | None:
        self._s.check()
        row = self._s.cdrs.get(id)
        return None if row is None else _codec.cdr_from_row(row)

    async def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        number: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> builtins.list[CdrRecord]:
        self._s.check()
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        rows = [
            row
            for row in self._s.cdrs.values()
            if (since is None or row[3] >= since)
            and (until is None or row[3] < until)
            and (number is None or number in (row[1], row[2], row[4]))
        ]
        rows.sort(key=lambda row: (row[3], row[0]))
        return [_codec.cdr_from_row(row) for row in rows[offset : offset + limit]]

    async def purge_before(self, t: float) -> int:
        s = self._s
        s.check()
        old = [id for id, row in s.cdrs.items() if row[3] < t]
        for id in old:
            del s.cdrs[id]
        if old:
            s.log("cdr", "*", "delete", s.clock())
        return len(old)


class MemoryStorage:
    """:class:`~.base.Storage` in memory.

    Args:
        clock: wall-clock time for stamps and change times (``time.time``).
    """

    __slots__ = ("_s", "_version", "bans", "bindings", "cdrs", "changes", "kv", "users")

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._s = _State(clock)
        self._version = 0
        self.users = MemoryUsers(self._s)
        self.bindings = MemoryBindings(self._s)
        self.changes = MemoryChangeFeed(self._s)
        self.kv = MemoryKeyValue(self._s)
        self.bans = MemoryBans(self._s)
        self.cdrs = MemoryCdrs(self._s)

    @property
    def schema_version(self) -> int:
        """The latest schema version once open (the data has the current shape), else 0."""
        return self._version if self._s.is_open else 0

    async def open(self) -> None:
        if not self._s.is_open:
            self._version = latest_version()
            self._s.is_open = True

    async def close(self) -> None:
        """Close; the data stays in this instance and is there again after :meth:`open`."""
        self._s.is_open = False

    async def __aenter__(self) -> MemoryStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"MemoryStorage(users={len(self._s.users)}, open={self._s.is_open})"
