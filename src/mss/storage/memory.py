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
from dataclasses import replace
from typing import Any, Generic, TypeVar

from . import _codec, _keyed, _voicemail
from .base import (
    BanRecord,
    BindingRecord,
    BlacklistRecord,
    CdrRecord,
    Change,
    IpListRecord,
    LineRecord,
    RouteRecord,
    TokenRecord,
    TrunkRecord,
    UserRecord,
    VoicemailMailRecord,
    VoicemailRecord,
)
from .errors import AlreadyExists, NotFound, StorageError
from .schema import latest_version

__all__ = (
    "MemoryBans",
    "MemoryBindings",
    "MemoryBlacklist",
    "MemoryCdrs",
    "MemoryChangeFeed",
    "MemoryIpLists",
    "MemoryKeyValue",
    "MemoryKeyed",
    "MemoryStorage",
    "MemoryTokens",
    "MemoryTrunks",
    "MemoryUsers",
    "MemoryVoicemail",
)

_R = TypeVar("_R")


class _State:
    """The data of one memory store."""

    __slots__ = (
        "bans",
        "bindings",
        "blacklist",
        "cdrs",
        "changes",
        "clock",
        "iplists",
        "is_open",
        "keyed",
        "kv",
        "last_seq",
        "outbox",
        "tokens",
        "users",
        "voicemail",
    )

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.is_open = False
        self.users: dict[str, tuple[Any, ...]] = {}
        self.bindings: dict[str, tuple[BindingRecord, ...]] = {}
        self.kv: dict[str, str] = {}
        self.bans: dict[str, BanRecord] = {}
        self.cdrs: dict[str, tuple[Any, ...]] = {}
        self.iplists: dict[tuple[str, str], IpListRecord] = {}
        self.blacklist: dict[tuple[str, str], BlacklistRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}
        #: lines, trunks, routes: table name -> id -> encoded row (see ``_keyed``)
        self.keyed: dict[str, dict[str, tuple[Any, ...]]] = {}
        #: voicemail messages and their outbox rows (issue 10), as ``_voicemail`` rows
        self.voicemail: dict[str, tuple[Any, ...]] = {}
        self.outbox: dict[str, tuple[Any, ...]] = {}
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

    async def put_many(self, cdrs: Sequence[CdrRecord]) -> None:
        s = self._s
        s.check()
        rows = [_codec.cdr_row(cdr) for cdr in cdrs]  # all or nothing: encode first
        now = s.clock()
        for cdr, row in zip(cdrs, rows, strict=True):
            s.cdrs[cdr.id] = row
            s.log("cdr", cdr.id, "put", now)

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


class MemoryIpLists:
    """:class:`~.base.IpListRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def list(self, name: str | None = None) -> builtins.list[IpListRecord]:
        self._s.check()
        entries = self._s.iplists
        return [entries[k] for k in sorted(entries) if name is None or k[0] == name]

    async def add(self, record: IpListRecord) -> None:
        s = self._s
        s.check()
        _codec.check_iplist(record)
        key = (record.list_name, record.network)
        if key in s.iplists:
            raise AlreadyExists("iplist", _codec.iplist_key(record))
        now = s.clock()
        s.iplists[key] = IpListRecord(
            record.list_name, record.network, record.note, record.created_at or now
        )
        s.log("iplist", _codec.iplist_key(record), "put", now)

    async def delete(self, name: str, network: str) -> bool:
        s = self._s
        s.check()
        if s.iplists.pop((name, network), None) is None:
            return False
        s.log("iplist", f"{name} {network}", "delete", s.clock())
        return True


class MemoryBlacklist:
    """:class:`~.base.BlacklistRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def list(self) -> builtins.list[BlacklistRecord]:
        self._s.check()
        records = self._s.blacklist
        return [records[k] for k in sorted(records, key=lambda k: (k[1], k[0]))]

    async def put(self, record: BlacklistRecord) -> None:
        s = self._s
        s.check()
        _codec.check_blacklist(record)
        key = (record.caller_prefix, record.called_prefix)
        now = s.clock()
        old = s.blacklist.get(key)
        created = old.created_at if old is not None else (record.created_at or now)
        s.blacklist[key] = BlacklistRecord(*key, record.rate, record.note, created)
        s.log("blacklist", _codec.blacklist_key(record), "put", now)

    async def delete(self, caller_prefix: str, called_prefix: str) -> bool:
        s = self._s
        s.check()
        if s.blacklist.pop((caller_prefix, called_prefix), None) is None:
            return False
        s.log("blacklist", f"{caller_prefix} {called_prefix}", "delete", s.clock())
        return True


class MemoryTokens:
    """:class:`~.base.TokenRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, id: str) -> TokenRecord | None:
        self._s.check()
        return self._s.tokens.get(id)

    async def list(self) -> builtins.list[TokenRecord]:
        self._s.check()
        tokens = self._s.tokens
        return [tokens[k] for k in sorted(tokens)]

    async def add(self, record: TokenRecord) -> None:
        s = self._s
        s.check()
        _codec.token_row(record)  # values SQLite could not store fail here too
        if record.id in s.tokens:
            raise AlreadyExists("token", record.id)
        now = s.clock()
        if not record.created_at:
            record = replace(record, created_at=now)
        s.tokens[record.id] = record
        s.log("token", record.id, "put", now)

    async def update(self, record: TokenRecord) -> None:
        s = self._s
        s.check()
        _codec.token_row(record)
        if record.id not in s.tokens:
            raise NotFound("token", record.id)
        s.tokens[record.id] = record
        s.log("token", record.id, "put", s.clock())

    async def delete(self, id: str) -> bool:
        s = self._s
        s.check()
        if s.tokens.pop(id, None) is None:
            return False
        s.log("token", id, "delete", s.clock())
        return True

    async def touch(self, id: str, at: float) -> None:
        s = self._s
        s.check()
        record = s.tokens.get(id)
        if record is not None:
            s.tokens[id] = replace(record, last_used_at=at)


class MemoryKeyed(Generic[_R]):
    """:class:`~.base.KeyedRepo` in memory, for the records of :mod:`._keyed` (lines, trunks,
    routes), stored as the rows SQLite stores."""

    __slots__ = ("_s", "_spec")

    def __init__(self, state: _State, spec: _keyed.KeyedSpec[_R]) -> None:
        self._s = state
        self._spec = spec

    def _rows(self) -> dict[str, tuple[Any, ...]]:
        self._s.check()
        return self._s.keyed.setdefault(self._spec.table, {})

    async def get(self, id: str) -> _R | None:
        row = self._rows().get(id)
        return None if row is None else self._spec.from_row(row)

    async def list(self) -> builtins.list[_R]:
        rows = self._rows()
        return [self._spec.from_row(rows[k]) for k in sorted(rows)]

    async def add(self, record: _R) -> None:
        spec = self._spec
        rows = self._rows()
        row = spec.to_row(record)
        if row[0] in rows:
            raise AlreadyExists(spec.entity, row[0])
        now = self._s.clock()
        created = row[spec.created_index] or now
        rows[row[0]] = spec.stamped(
            row, created=created, updated=row[spec.updated_index] or created
        )
        self._s.log(spec.entity, row[0], "put", now)

    async def update(self, record: _R) -> None:
        spec = self._spec
        rows = self._rows()
        row = spec.to_row(record)
        old = rows.get(row[0])
        if old is None:
            raise NotFound(spec.entity, row[0])
        now = self._s.clock()
        rows[row[0]] = spec.stamped(row, created=old[spec.created_index], updated=now)
        self._s.log(spec.entity, row[0], "put", now)

    async def delete(self, id: str) -> bool:
        if self._rows().pop(id, None) is None:
            return False
        self._s.log(self._spec.entity, id, "delete", self._s.clock())
        return True


class MemoryTrunks(MemoryKeyed[TrunkRecord]):
    """:class:`~.base.TrunkRepo` in memory."""

    __slots__ = ()

    def __init__(self, state: _State) -> None:
        super().__init__(state, _keyed.TRUNKS)

    async def by_address(self, host: str, port: int) -> TrunkRecord | None:
        for trunk in await self.list():
            if trunk.enabled and trunk.host == host and trunk.port == port:
                return trunk
        return None


class MemoryVoicemail:
    """:class:`~.base.VoicemailRepo` in memory."""

    __slots__ = ("_s",)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, id: str) -> VoicemailRecord | None:
        self._s.check()
        row = self._s.voicemail.get(id)
        return None if row is None else _voicemail.message_from_row(row)

    async def for_user(self, user: str) -> builtins.list[VoicemailRecord]:
        self._s.check()
        rows = sorted(
            (r for r in self._s.voicemail.values() if r[1] == user), key=lambda r: (r[5], r[0])
        )
        return [_voicemail.message_from_row(r) for r in rows]

    async def summary(self) -> dict[str, tuple[int, int]]:
        self._s.check()
        out: dict[str, list[int]] = {}
        for row in self._s.voicemail.values():
            counts = out.setdefault(row[1], [0, 0])
            counts[1 if row[8] else 0] += 1
        return {user: (c[0], c[1]) for user, c in sorted(out.items())}

    async def add(self, record: VoicemailRecord, mail: VoicemailMailRecord | None = None) -> None:
        s = self._s
        s.check()
        now = s.clock()
        row = _voicemail.message_row(record, created=record.created_at or now)
        mail_row = None
        if mail is not None:
            if mail.message_id != record.id:
                raise ValueError(
                    f"message_id {mail.message_id!r} is not the message's id {record.id!r}"
                )
            mail_row = _voicemail.mail_row(mail, updated=mail.updated_at or now)
        if record.id in s.voicemail:
            raise AlreadyExists("voicemail", record.id)
        s.voicemail[record.id] = row
        s.log("voicemail", _voicemail.message_key(record), "put", now)
        if mail_row is not None:
            s.outbox[record.id] = mail_row
            s.log("voicemail_mail", record.id, "put", now)

    async def mark_read(self, id: str, read: bool = True) -> bool:
        s = self._s
        s.check()
        row = s.voicemail.get(id)
        if row is None:
            return False
        s.voicemail[id] = (*row[:8], 1 if read else 0, row[9])
        s.log("voicemail", f"{row[1]} {id}", "put", s.clock())
        return True

    async def delete(self, id: str) -> bool:
        s = self._s
        s.check()
        row = s.voicemail.pop(id, None)
        if row is None:
            return False
        now = s.clock()
        if s.outbox.pop(id, None) is not None:
            s.log("voicemail_mail", id, "delete", now)
        s.log("voicemail", f"{row[1]} {id}", "delete", now)
        return True

    async def mail(self, message_id: str) -> VoicemailMailRecord | None:
        self._s.check()
        row = self._s.outbox.get(message_id)
        return None if row is None else _voicemail.mail_from_row(row)

    async def mails(self, state: str | None = None) -> builtins.list[VoicemailMailRecord]:
        self._s.check()
        rows = sorted(
            (r for r in self._s.outbox.values() if state is None or r[4] == state),
            key=lambda r: (r[3], r[0]),
        )
        return [_voicemail.mail_from_row(r) for r in rows]

    async def due_mails(self, now: float, limit: int = 100) -> builtins.list[VoicemailMailRecord]:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        due = [m for m in await self.mails("queued") if m.next_try <= now]
        return due[:limit]

    async def update_mail(self, mail: VoicemailMailRecord) -> bool:
        s = self._s
        s.check()
        now = s.clock()
        row = _voicemail.mail_row(mail, updated=now)
        if mail.message_id not in s.outbox:
            return False
        s.outbox[mail.message_id] = row
        s.log("voicemail_mail", mail.message_id, "put", now)
        return True


class MemoryStorage:
    """:class:`~.base.Storage` in memory.

    Args:
        clock: wall-clock time for stamps and change times (``time.time``).
    """

    __slots__ = (
        "_s",
        "_version",
        "bans",
        "bindings",
        "blacklist",
        "cdrs",
        "changes",
        "iplists",
        "kv",
        "lines",
        "routes",
        "tokens",
        "trunks",
        "users",
        "voicemail",
    )

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._s = _State(clock)
        self._version = 0
        self.users = MemoryUsers(self._s)
        self.bindings = MemoryBindings(self._s)
        self.changes = MemoryChangeFeed(self._s)
        self.kv = MemoryKeyValue(self._s)
        self.bans = MemoryBans(self._s)
        self.cdrs = MemoryCdrs(self._s)
        self.iplists = MemoryIpLists(self._s)
        self.blacklist = MemoryBlacklist(self._s)
        self.tokens = MemoryTokens(self._s)
        self.lines: MemoryKeyed[LineRecord] = MemoryKeyed(self._s, _keyed.LINES)
        self.trunks = MemoryTrunks(self._s)
        self.routes: MemoryKeyed[RouteRecord] = MemoryKeyed(self._s, _keyed.ROUTES)
        self.voicemail = MemoryVoicemail(self._s)

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
