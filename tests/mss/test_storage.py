"""Storage layer: every repository behaviour against both backends (memory, SQLite).

SQLite-only tests cover what memory cannot show: rollback of a batch failing mid-transaction,
migrations and schema checks, a second process writing concurrently, and durability across
``kill -9``. Records round-trip through both backends under hypothesis. The timing test prints
the cost of ``bindings.apply`` per AOR (run with ``-s`` to see it); it asserts nothing about
speed.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mss.storage import (
    AlreadyExists,
    BanRecord,
    BindingRecord,
    CdrRecord,
    Change,
    MemoryStorage,
    NotFound,
    SchemaError,
    SqliteStorage,
    Storage,
    StorageError,
    UserRecord,
    open_storage,
)
from mss.storage.schema import latest_version, load_migrations, split_statements
from mss.storage.sqlite import APPLICATION_ID

BACKENDS = ("memory", "sqlite")
SRC = Path(__file__).resolve().parents[2] / "src"
T0 = 1_700_000_000.0
T = TypeVar("T")


class FakeClock:
    """Wall clock that advances one second per reading."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "mss.sqlite3"


@pytest.fixture
def make(backend: str, db_path: Path) -> Callable[..., Storage]:
    """Build a storage of the parametrised backend; keyword options go to open_storage."""

    def factory(**options: Any) -> Storage:
        options.setdefault("clock", FakeClock())
        return open_storage(backend, path=db_path, **options)

    return factory


def using(make: Callable[..., Storage], body: Callable[[Storage], Awaitable[None]]) -> None:
    async def main() -> None:
        async with make() as storage:
            await body(storage)

    asyncio.run(main())


def binding(aor: str, contact: str, expires_at: float = T0 + 3600, **kw: Any) -> BindingRecord:
    kw.setdefault("call_id", f"cid-{aor}")
    kw.setdefault("cseq", 1)
    return BindingRecord(aor, contact, expires_at, **kw)


async def feed(storage: Storage, since: int = 0) -> list[tuple[str, str, str]]:
    return [(c.entity, c.key, c.op) for c in await storage.changes.since(since)]


# --------------------------------------------------------------------------------------------
# Lifecycle and factory
# --------------------------------------------------------------------------------------------


def test_lifecycle(make: Callable[..., Storage]) -> None:
    storage = make()

    async def main() -> None:
        assert storage.schema_version == 0
        with pytest.raises(StorageError):
            await storage.users.get("1001")
        await storage.open()
        await storage.open()  # idempotent
        assert storage.schema_version == latest_version() >= 1
        await storage.users.add(UserRecord("1001"))
        await storage.close()
        await storage.close()  # idempotent
        with pytest.raises(StorageError):
            await storage.users.list()
        await storage.open()  # reopen: the data is still there (memory: same instance)
        assert [u.number for u in await storage.users.list()] == ["1001"]
        await storage.close()

    run(main())


def test_open_storage_factory(tmp_path: Path) -> None:
    assert isinstance(open_storage("memory"), MemoryStorage)
    sqlite_storage = open_storage("sqlite", path=tmp_path / "x.db", durable=True)
    assert isinstance(sqlite_storage, SqliteStorage)
    assert sqlite_storage.durable
    with pytest.raises(ValueError, match="unknown storage backend"):
        open_storage("redis", path=None)
    with pytest.raises(ValueError, match="needs a path"):
        open_storage("sqlite", path=None)
    with pytest.raises(ValueError, match="file path"):
        open_storage("sqlite", path=":memory:")


def test_storage_never_imports_sip_or_other_mss_code() -> None:
    """House style: mss.storage sits below everything; it imports the stdlib and itself only."""
    package = SRC / "mss" / "storage"
    for file in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = name.startswith("mss.storage") or top in sys.stdlib_module_names
                assert ok or top == "__future__", f"{file.name} imports {name}"


# --------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------


def test_users_crud(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        assert await s.users.get("1001") is None
        assert await s.users.list() == []
        alice = UserRecord(
            "1001",
            name="Alice",
            ha1={"MD5": "a" * 32, "SHA-256": "b" * 64},
            realm="pbx.example",
            multi_device=True,
            max_devices=2,
            allow_ips=["192.0.2.0/24", "[2001:db8::1]:5060"],  # type: ignore[arg-type]
            max_calls=4,
            max_outgoing=2,
            extra={"voicemail": {"enabled": True, "pin": "1234"}, "n": [1, 2.5, None]},
        )
        assert alice.allow_ips == ("192.0.2.0/24", "[2001:db8::1]:5060")  # normalised
        await s.users.add(alice)
        await s.users.add(UserRecord("1000", name="Bob"))
        with pytest.raises(AlreadyExists) as info:
            await s.users.add(UserRecord("1001"))
        assert (info.value.entity, info.value.key, info.value.http_status) == ("user", "1001", 409)

        got = await s.users.get("1001")
        assert got is not None
        # add stamps created_at and updated_at (both 0 in the record) with the same time
        assert got.created_at == got.updated_at > T0
        assert got == replace(alice, created_at=got.created_at, updated_at=got.updated_at)
        assert [u.number for u in await s.users.list()] == ["1000", "1001"]

        changed = replace(got, name="Alice B.", ha1={"MD5": "c" * 32}, max_calls=None)
        await s.users.update(changed)
        again = await s.users.get("1001")
        assert again is not None
        assert again.created_at == got.created_at  # kept
        assert again.updated_at > got.updated_at  # stamped
        assert again == replace(changed, updated_at=again.updated_at)

        with pytest.raises(NotFound) as missing:
            await s.users.update(UserRecord("4040"))
        assert missing.value.http_status == 404
        assert str(missing.value) == "user '4040' not found"

        assert await s.users.delete("1000") is True
        assert await s.users.delete("1000") is False
        assert [u.number for u in await s.users.list()] == ["1001"]

    using(make, body)


def test_users_given_times_are_kept(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        user = UserRecord("1001", created_at=10.0, updated_at=20.0)
        await s.users.add(user)
        assert await s.users.get("1001") == user

    using(make, body)


def test_users_invalid_records_write_nothing(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        with pytest.raises(ValueError, match="number"):
            await s.users.add(UserRecord(""))
        with pytest.raises(ValueError, match="extra"):
            await s.users.add(UserRecord("1001", extra={"x": object()}))
        with pytest.raises(ValueError, match="extra"):
            await s.users.add(UserRecord("1001", extra={"x": float("nan")}))
        with pytest.raises(TypeError, match="allow_ips"):
            UserRecord("1001", allow_ips="10.0.0.1")  # type: ignore[arg-type]
        assert await s.users.list() == []
        assert await s.changes.latest() == 0

    using(make, body)


def test_returned_records_do_not_alias_storage(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        await s.users.add(UserRecord("1001", ha1={"MD5": "a"}, extra={"list": [1]}))
        got = await s.users.get("1001")
        assert got is not None
        got.ha1["MD5"] = "changed"  # type: ignore[index]
        got.extra["list"].append(2)  # type: ignore[attr-defined]
        fresh = await s.users.get("1001")
        assert fresh is not None
        assert fresh.ha1 == {"MD5": "a"} and fresh.extra == {"list": [1]}

    using(make, body)


def test_user_delete_drops_bindings_and_add_drops_stale_ones(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        await s.users.add(UserRecord("1001"))
        await s.bindings.replace("1001", [binding("1001", "sip:a@h")])
        cursor = await s.changes.latest()
        assert await s.users.delete("1001")
        assert await s.bindings.for_aor("1001") == []
        assert await feed(s, cursor) == [("user", "1001", "delete"), ("binding", "1001", "delete")]

        # A REGISTER batch committing after a concurrent delete leaves an orphan binding;
        # re-adding the user must not resurrect it.
        await s.bindings.replace("1001", [binding("1001", "sip:old@h")])
        cursor = await s.changes.latest()
        await s.users.add(UserRecord("1001"))
        assert await s.bindings.for_aor("1001") == []
        assert await feed(s, cursor) == [("user", "1001", "put"), ("binding", "1001", "delete")]

    using(make, body)


# --------------------------------------------------------------------------------------------
# Bindings
# --------------------------------------------------------------------------------------------


def test_bindings_replace_and_order(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        assert await s.bindings.for_aor("1001") == []
        full = BindingRecord(
            aor="1001",
            contact="sip:1001@192.0.2.7:5060;ob",
            expires_at=T0 + 3600,
            call_id="abc@192.0.2.7",
            cseq=42,
            q=0.5,
            path=["<sip:edge.example;lr>", "<sip:p2;lr>"],  # type: ignore[arg-type]
            source="udp:192.0.2.7:5060",
            user_agent="baresip",
            instance='"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
            reg_id=1,
            registered_at=T0,
        )
        bs = [binding("1001", "sip:z@h"), full, binding("1001", "sip:a@h")]
        await s.bindings.replace("1001", bs)
        assert await s.bindings.for_aor("1001") == bs  # order as given, not by contact
        await s.bindings.replace("1000", [binding("1000", "sip:b@h")])
        everything = await s.bindings.all()
        assert [(b.aor, b.contact) for b in everything] == [
            ("1000", "sip:b@h"),
            ("1001", "sip:z@h"),
            ("1001", "sip:1001@192.0.2.7:5060;ob"),
            ("1001", "sip:a@h"),
        ]
        await s.bindings.replace("1001", [bs[2]])
        assert await s.bindings.for_aor("1001") == [bs[2]]
        await s.bindings.replace("1001", [])
        assert await s.bindings.for_aor("1001") == []
        assert [c.op for c in await s.changes.since(0)] == ["put", "put", "put", "delete"]

    using(make, body)


def test_bindings_apply_batch(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        await s.bindings.replace("1003", [binding("1003", "sip:x@h")])
        cursor = await s.changes.latest()
        await s.bindings.apply(
            [
                ("1001", [binding("1001", "sip:a@h"), binding("1001", "sip:b@h")]),
                ("1002", [binding("1002", "sip:c@h")]),
                ("1003", []),
                ("1001", [binding("1001", "sip:d@h")]),  # the last set of an AOR wins
            ]
        )
        assert [b.contact for b in await s.bindings.all()] == ["sip:d@h", "sip:c@h"]
        changes = await s.changes.since(cursor)
        assert [(c.key, c.op) for c in changes] == [
            ("1001", "put"),
            ("1002", "put"),
            ("1003", "delete"),
        ]
        assert len({c.at for c in changes}) == 1  # one transaction, one time
        await s.bindings.apply([])  # nothing to do
        assert await s.changes.latest() == changes[-1].seq

    using(make, body)


def test_bindings_apply_is_atomic(make: Callable[..., Storage]) -> None:
    """A failing record anywhere in the batch leaves nothing half-written."""

    async def body(s: Storage) -> None:
        before = [binding("1001", "sip:old@h")]
        await s.bindings.replace("1001", before)
        cursor = await s.changes.latest()
        batch = [
            ("1001", [binding("1001", "sip:new@h")]),
            ("1002", [binding("1002", "sip:c@h")]),
            ("1003", [binding("1003", "sip:dup@h"), binding("1003", "sip:dup@h")]),
        ]
        with pytest.raises(AlreadyExists) as info:
            await s.bindings.apply(batch)
        assert info.value.key == "1003 sip:dup@h"
        mismatch = [("1001", [binding("1001", "sip:new@h")]), ("1002", [binding("1009", "x")])]
        with pytest.raises(ValueError, match="1009"):
            await s.bindings.apply(mismatch)
        assert await s.bindings.all() == before
        assert await s.changes.latest() == cursor
        await s.bindings.apply(batch[:2])  # the store is still usable
        assert len(await s.bindings.all()) == 2

    using(make, body)


def test_sqlite_apply_rolls_back_a_failure_inside_the_transaction(db_path: Path) -> None:
    """The DELETEs and first INSERTs have run when the poisoned record fails: rollback."""

    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            await s.bindings.apply(
                [("1001", [binding("1001", "sip:a@h")]), ("1002", [binding("1002", "sip:b@h")])]
            )
            before = await s.bindings.all()
            cursor = await s.changes.latest()
            poisoned = binding("1003", "sip:c@h", path=(object(),))
            with pytest.raises(ValueError, match="path"):
                await s.bindings.apply(
                    [("1001", []), ("1002", [binding("1002", "sip:new@h")]), ("1003", [poisoned])]
                )
            unbindable = binding("1003", "sip:c@h", cseq=object())
            with pytest.raises(StorageError):
                await s.bindings.apply([("1001", []), ("1003", [unbindable])])
            assert await s.bindings.all() == before
            assert await s.changes.latest() == cursor
        # ...and after reopening, from the file
        async with SqliteStorage(db_path) as s:
            assert await s.bindings.all() == before

    run(main())


def test_bindings_purge_expired(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        await s.bindings.apply(
            [
                ("1001", [binding("1001", "sip:a@h", 100.0), binding("1001", "sip:b@h", 300.0)]),
                ("1002", [binding("1002", "sip:c@h", 200.0)]),
                ("1003", [binding("1003", "sip:d@h", 500.0)]),
            ]
        )
        cursor = await s.changes.latest()
        assert await s.bindings.purge_expired(99.0) == 0
        assert await s.changes.latest() == cursor
        assert await s.bindings.purge_expired(200.0) == 2  # expires_at <= now is expired
        assert [b.contact for b in await s.bindings.all()] == ["sip:b@h", "sip:d@h"]
        assert await feed(s, cursor) == [("binding", "1001", "put"), ("binding", "1002", "delete")]

    using(make, body)


# --------------------------------------------------------------------------------------------
# Change feed
# --------------------------------------------------------------------------------------------


def test_change_feed_order_since_prune(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        assert (await s.changes.latest(), await s.changes.horizon()) == (0, 0)
        assert await s.changes.since(0) == []
        await s.users.add(UserRecord("1001"))
        await s.kv.set("k", "v")
        await s.bindings.replace("1001", [binding("1001", "sip:a@h")])
        await s.users.update(UserRecord("1001", name="A"))
        await s.kv.delete("k")
        await s.users.delete("1001")
        changes = await s.changes.since(0)
        assert [(c.seq, c.entity, c.key, c.op) for c in changes] == [
            (1, "user", "1001", "put"),
            (2, "kv", "k", "put"),
            (3, "binding", "1001", "put"),
            (4, "user", "1001", "put"),
            (5, "kv", "k", "delete"),
            (6, "user", "1001", "delete"),
            (7, "binding", "1001", "delete"),
        ]
        assert all(isinstance(c, Change) for c in changes)
        times = [c.at for c in changes]
        assert times == sorted(times)
        assert await s.changes.latest() == 7
        assert await s.changes.since(5) == changes[5:]
        assert await s.changes.since(2, limit=2) == changes[2:4]
        assert await s.changes.since(7) == []

        assert await s.changes.prune(3) == 4
        assert await s.changes.horizon() == 4
        assert await s.changes.since(0) == changes[4:]
        assert await s.changes.prune(3) == 0
        assert await s.changes.prune(0) == 3
        assert (await s.changes.latest(), await s.changes.horizon()) == (7, 7)
        with pytest.raises(ValueError):
            await s.changes.prune(-1)
        await s.kv.set("k", "v")  # sequence numbers are never reused
        assert [c.seq for c in await s.changes.since(0)] == [8]
        assert await s.changes.horizon() == 7

    using(make, body)


def test_sqlite_change_feed_survives_reopen(db_path: Path) -> None:
    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            await s.kv.set("a", "1")
            await s.kv.set("b", "2")
            await s.changes.prune(0)
        async with SqliteStorage(db_path) as s:
            assert await s.changes.latest() == 2
            await s.kv.set("c", "3")
            assert [c.seq for c in await s.changes.since(0)] == [3]

    run(main())


# --------------------------------------------------------------------------------------------
# Key/value, bans, CDRs
# --------------------------------------------------------------------------------------------


def test_key_value(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        assert await s.kv.get("auth.nonce_secret") is None
        assert await s.kv.setdefault("auth.nonce_secret", "first") == "first"
        assert await s.kv.setdefault("auth.nonce_secret", "second") == "first"
        await s.kv.set("auth.nonce_secret", "third")
        assert await s.kv.get("auth.nonce_secret") == "third"
        assert await s.kv.delete("auth.nonce_secret") is True
        assert await s.kv.delete("auth.nonce_secret") is False
        assert await s.kv.get("auth.nonce_secret") is None
        assert [op for _, _, op in await feed(s)] == ["put", "put", "delete"]

    using(make, body)


def test_bans(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        ban = BanRecord(
            "192.0.2.9",
            until=T0 + 10800,
            reason="5 failed authentications in 60 s",
            count=2,
            first_at=T0 - 86400,
            last_at=T0,
            users=["1001", "admin"],  # type: ignore[arg-type]
        )
        forever = BanRecord("2001:db8::66", until=None, reason="operator")
        await s.bans.put(ban)
        await s.bans.put(forever)
        assert await s.bans.get("192.0.2.9") == ban
        assert await s.bans.get("192.0.2.10") is None
        assert await s.bans.list() == [ban, forever]  # sorted by IP text
        longer = replace(ban, until=T0 + 86400, count=3)
        await s.bans.put(longer)  # replaces
        assert await s.bans.list() == [longer, forever]
        assert await s.bans.purge_expired(T0 + 86400) == 1  # never the until=None ones
        assert await s.bans.list() == [forever]
        assert await s.bans.purge_expired(T0 + 10**9) == 0
        assert await s.bans.delete("2001:db8::66") is True
        assert await s.bans.delete("2001:db8::66") is False
        assert await feed(s) == [
            ("ban", "192.0.2.9", "put"),
            ("ban", "2001:db8::66", "put"),
            ("ban", "192.0.2.9", "put"),
            ("ban", "*", "delete"),
            ("ban", "2001:db8::66", "delete"),
        ]

    using(make, body)


def test_cdrs(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        answered = CdrRecord(
            id="c1",
            caller="1001",
            dialed="91555",
            setup_at=T0 + 10,
            callee="555",
            call_id="x@192.0.2.7",
            caller_addr="udp:192.0.2.7:5060",
            callee_addr="udp:198.51.100.1:5060",
            direction="outbound",
            route="line:1",
            ring_at=T0 + 11,
            answer_at=T0 + 15,
            end_at=T0 + 75,
            duration=60.0,
            status=200,
            cause=16,
            reason="Normal call clearing",
            hangup="caller",
            result="answered",
            extra={"codec": "PCMA"},
        )
        busy = CdrRecord("c2", "1002", "1001", T0 + 20, status=486, result="busy")
        running = CdrRecord("c0", "1003", "1002", T0 + 5, answer_at=T0 + 6, result="interrupted")
        for cdr in (answered, busy, running):
            await s.cdrs.put(cdr)
        assert await s.cdrs.get("c1") == answered
        assert await s.cdrs.get("nope") is None
        ended = replace(running, end_at=T0 + 9, duration=3.0, result="answered")
        await s.cdrs.put(ended)  # the end of the call rewrites the record
        assert await s.cdrs.query() == [ended, answered, busy]  # by setup time
        assert await s.cdrs.query(since=T0 + 10) == [answered, busy]
        assert await s.cdrs.query(until=T0 + 10) == [ended]
        assert await s.cdrs.query(number="1001") == [answered, busy]
        assert await s.cdrs.query(number="555") == [answered]
        assert await s.cdrs.query(limit=1, offset=1) == [answered]
        with pytest.raises(ValueError):
            await s.cdrs.query(limit=-1)
        assert await s.cdrs.purge_before(T0 + 20) == 2
        assert await s.cdrs.query() == [busy]
        assert (await feed(s))[-1] == ("cdr", "*", "delete")

    using(make, body)


def test_cdrs_put_many(make: Callable[..., Storage]) -> None:
    async def body(s: Storage) -> None:
        marker = CdrRecord("c1", "1001", "1002", T0 + 1)
        busy = CdrRecord("c2", "1002", "1001", T0 + 2, status=486, result="busy")
        ended = replace(marker, end_at=T0 + 9, result="answered", extra={"codec": "PCMU"})
        await s.cdrs.put_many([])
        cursor = await s.changes.latest()
        await s.cdrs.put_many([marker, busy, ended])  # a later record of an id replaces it
        assert await s.cdrs.query() == [ended, busy]
        assert await feed(s, cursor) == [("cdr", "c1", "put"), ("cdr", "c2", "put")] + [
            ("cdr", "c1", "put")
        ]
        bad = CdrRecord("c3", "1003", "1001", T0 + 3, extra={"x": object()})
        with pytest.raises(ValueError):
            await s.cdrs.put_many([CdrRecord("c4", "1004", "1001", T0 + 4), bad])
        assert [r.id for r in await s.cdrs.query()] == ["c1", "c2"]  # all or nothing

    using(make, body)


def test_sqlite_cdr_purge_in_chunks(db_path: Path) -> None:
    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            for i in range(2100):
                await s.cdrs.put(CdrRecord(f"c{i:05}", "1001", "1002", float(i)))
            cursor = await s.changes.latest()
            assert await s.cdrs.purge_before(2050.0) == 2050
            assert len(await s.cdrs.query(limit=10**6)) == 50
            assert await feed(s, cursor) == [("cdr", "*", "delete")] * 3

    run(main())


# --------------------------------------------------------------------------------------------
# SQLite: pragmas, migrations, schema checks
# --------------------------------------------------------------------------------------------


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sqlite_fresh_database_is_migrated(db_path: Path) -> None:
    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            assert s.schema_version == latest_version()
            main_conn = s._db.conn()
            assert _pragma(main_conn, "synchronous") == 1  # NORMAL
            assert _pragma(main_conn, "foreign_keys") == 1
        async with SqliteStorage(db_path, durable=True) as s:
            assert _pragma(s._db.conn(), "synchronous") == 2  # FULL

    run(main())
    assert oct(db_path.stat().st_mode & 0o777) == "0o600"
    conn = _raw(db_path)
    try:
        assert _pragma(conn, "user_version") == latest_version()
        assert _pragma(conn, "application_id") == APPLICATION_ID
        assert _pragma(conn, "journal_mode") == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"users", "bindings", "changes", "kv", "bans", "cdrs"} <= tables
    finally:
        conn.close()


def test_sqlite_newer_schema_is_refused_untouched(db_path: Path) -> None:
    async def create() -> None:
        async with SqliteStorage(db_path) as s:
            await s.users.add(UserRecord("1001"))

    run(create())
    conn = _raw(db_path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _sha(db_path)
    with pytest.raises(SchemaError, match="newer"):
        run(SqliteStorage(db_path).open())
    assert _sha(db_path) == before


def test_sqlite_refuses_foreign_files(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    conn = _raw(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(SchemaError, match="not an mss database"):
        run(SqliteStorage(foreign).open())
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, not even close" * 200)
    with pytest.raises(SchemaError, match="not an SQLite database"):
        run(SqliteStorage(garbage).open())


def test_sqlite_migrates_an_older_schema(db_path: Path) -> None:
    """A database at version 0 with the mss application id gets every migration."""
    db_path.parent.mkdir(parents=True)
    conn = _raw(db_path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.close()

    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            assert s.schema_version == latest_version()
            await s.users.add(UserRecord("1001"))

    run(main())


def test_migration_files() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial.sql"
    assert all(m.statements for m in migrations)
    script = "INSERT INTO t VALUES ('a;b'); -- note;\nCREATE TRIGGER x AFTER INSERT ON t BEGIN\n"
    script += "  SELECT 1; SELECT 2;\nEND;\n-- trailing comment; with a semicolon\n"
    statements = split_statements(script)
    assert len(statements) == 2 and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 1; SELECT 2")


def test_sqlite_busy_beyond_timeout_is_a_storage_error(db_path: Path) -> None:
    async def main() -> None:
        async with SqliteStorage(db_path, busy_timeout=0.05) as s:
            blocker = _raw(db_path)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(StorageError, match="locked"):
                    await s.kv.set("k", "v")
                assert await s.kv.get("k") is None  # readers are not blocked (WAL)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            await s.kv.set("k", "v")

    run(main())


def test_sqlite_checkpoints_in_a_thread(db_path: Path) -> None:
    async def main() -> None:
        s = SqliteStorage(db_path, checkpoint_rows=5)
        async with s:
            for i in range(60):
                await s.kv.set(f"k{i}", "v")
                await asyncio.sleep(0)
            assert s._db._checkpoint is not None
        async with SqliteStorage(db_path) as s:
            assert await s.kv.get("k59") == "v"

    run(main())


# --------------------------------------------------------------------------------------------
# SQLite: other processes
# --------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from mss.storage import UserRecord, open_storage

    async def main(path, count):
        async with open_storage("sqlite", path=path) as s:
            print("open", flush=True)
            for i in range(count):
                await s.users.add(UserRecord(str(5000 + i), name="from the CLI"))
                await s.kv.set("writer.progress", str(i))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)

KILLED = textwrap.dedent(
    """
    import asyncio, sys, time
    from mss.storage import BindingRecord, UserRecord, open_storage

    async def main(path):
        s = open_storage("sqlite", path=path)
        await s.open()
        await s.users.add(UserRecord("3001", ha1={"MD5": "0" * 32}))
        await s.bindings.apply(
            [("3001", [BindingRecord("3001", "sip:3001@192.0.2.1", 9e9, "c", 1)])]
        )
        print("committed", flush=True)
        time.sleep(60)

    asyncio.run(main(sys.argv[1]))
    """
)


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_sqlite_concurrent_writer_process(db_path: Path) -> None:
    """Another process adds users while this one reads and writes: no lock errors, and the
    change feed shows every user."""
    count = 300

    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            cursor = await s.changes.latest()
            seen: set[str] = set()
            writes = 0
            proc = _python(WRITER, str(db_path), str(count))
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline() == "open\n"
                deadline = time.monotonic() + 30
                while proc.poll() is None or len(seen) < count:
                    assert time.monotonic() < deadline, f"saw {len(seen)} of {count} users"
                    aor = f"10{writes % 50:02}"
                    await s.bindings.replace(aor, [binding(aor, f"sip:{writes}@h")])
                    writes += 1
                    for change in await s.changes.since(cursor):
                        cursor = change.seq
                        if change.entity == "user":
                            seen.add(change.key)
                            assert await s.users.get(change.key) is not None
                    if proc.poll() is not None and len(seen) < count:
                        assert proc.returncode == 0, proc.communicate()[1]
                    await asyncio.sleep(0)
                _, err = proc.communicate(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == 0, err
            assert "locked" not in err
            assert seen == {str(5000 + i) for i in range(count)}
            assert len(await s.users.list()) == count
            assert await s.kv.get("writer.progress") == str(count - 1)
            print(f"\n[concurrency] this process wrote {writes} binding sets meanwhile")

    run(main())


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sqlite_commit_survives_kill_9(db_path: Path) -> None:
    proc = _python(KILLED, str(db_path))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "committed\n", proc.communicate()[1] if not line else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the commits were in the WAL only

    async def main() -> None:
        async with SqliteStorage(db_path) as s:
            user = await s.users.get("3001")
            assert user is not None and user.ha1 == {"MD5": "0" * 32}
            assert [b.contact for b in await s.bindings.for_aor("3001")] == ["sip:3001@192.0.2.1"]

    run(main())


# --------------------------------------------------------------------------------------------
# Round trips (hypothesis)
# --------------------------------------------------------------------------------------------

_text = st.text(max_size=12)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _finite | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
)
_users = st.builds(
    UserRecord,
    number=st.text(min_size=1, max_size=12),
    name=_text,
    ha1=st.dictionaries(st.sampled_from(["MD5", "SHA-256"]) | _text, _text, max_size=3),
    realm=_text,
    multi_device=st.booleans(),
    max_devices=_int64,
    allow_ips=st.lists(_text, max_size=3).map(tuple),
    max_calls=st.none() | _int64,
    max_outgoing=st.none() | _int64,
    created_at=_finite.filter(bool),  # 0 means "stamp it"
    updated_at=_finite.filter(bool),
    extra=st.dictionaries(_text, _json, max_size=4),
)
_bindings = st.lists(
    st.builds(
        BindingRecord,
        aor=st.just(""),
        contact=st.text(min_size=1, max_size=20),
        expires_at=_finite,
        call_id=_text,
        cseq=_int64,
        q=st.none() | _finite,
        path=st.lists(_text, max_size=3).map(tuple),
        source=_text,
        user_agent=_text,
        instance=_text,
        reg_id=st.none() | _int64,
        registered_at=_finite,
    ),
    max_size=4,
    unique_by=lambda b: b.contact,
)
_ROUNDTRIP = settings(max_examples=40, deadline=None, database=None)


def _examples(
    kind: str, path: Path, strategy: st.SearchStrategy[T], body: Callable[[Storage, T], Any]
) -> None:
    """Run the coroutine ``body(storage, example)`` for each example, on one open storage and
    one loop (opening a store per example would dominate the test's time)."""
    loop = asyncio.new_event_loop()
    storage = open_storage(kind, path=path)
    try:
        loop.run_until_complete(storage.open())

        @_ROUNDTRIP
        @given(example=strategy)
        def check(example: T) -> None:
            loop.run_until_complete(body(storage, example))

        check()
    finally:
        loop.run_until_complete(storage.close())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_user_roundtrip(kind: str, tmp_path: Path) -> None:
    async def roundtrip(s: Storage, user: UserRecord) -> None:
        await s.users.add(user)
        try:
            assert await s.users.get(user.number) == user
            assert await s.users.list() == [user]
        finally:
            await s.users.delete(user.number)

    _examples(kind, tmp_path / "rt.sqlite3", _users, roundtrip)


@pytest.mark.parametrize("kind", BACKENDS)
def test_binding_roundtrip(kind: str, tmp_path: Path) -> None:
    async def roundtrip(s: Storage, example: tuple[str, list[BindingRecord]]) -> None:
        aor, bindings = example[0], [replace(b, aor=example[0]) for b in example[1]]
        await s.bindings.replace(aor, bindings)
        try:
            assert await s.bindings.for_aor(aor) == bindings
            assert await s.bindings.all() == bindings
        finally:
            await s.bindings.replace(aor, [])

    _examples(kind, tmp_path / "rt.sqlite3", st.tuples(st.text(min_size=1), _bindings), roundtrip)


# --------------------------------------------------------------------------------------------
# Cost of the registrar's hot path (printed, not asserted)
# --------------------------------------------------------------------------------------------


def _register_sets(aors: int, round_: int) -> Iterator[tuple[str, list[BindingRecord]]]:
    for i in range(aors):
        aor = str(10000 + i)
        contact = f"sip:{aor}@192.0.2.{i % 250}:{5060 + i};transport=udp;ob"
        yield (
            aor,
            [
                BindingRecord(
                    aor,
                    contact,
                    expires_at=T0 + 3600 + round_,
                    call_id=f"{i}-reg@192.0.2.1",
                    cseq=round_ + 1,
                    source=f"udp:192.0.2.{i % 250}:{5060 + i}",
                    user_agent="bench/1.0",
                    registered_at=T0,
                )
            ],
        )


@pytest.mark.parametrize("durable", [False, True], ids=["normal", "durable"])
def test_apply_cost(tmp_path: Path, durable: bool) -> None:
    population = 2000

    async def main() -> dict[int, float]:
        async with SqliteStorage(tmp_path / "bench.sqlite3", durable=durable) as s:
            everyone = list(_register_sets(population, 0))
            for start in range(0, population, 200):
                await s.bindings.apply(everyone[start : start + 200])
            results: dict[int, float] = {}
            for batch, commits in ((1, 50 if durable else 300), (200, 10)):
                sets = list(_register_sets(population, 1))
                t = time.perf_counter()
                for c in range(commits):
                    first = (c * batch) % population
                    await s.bindings.apply(sets[first : first + batch])
                results[batch] = (time.perf_counter() - t) / (commits * batch) * 1e6
            return results

    results = run(main())
    mode = "durable (synchronous=FULL)" if durable else "synchronous=NORMAL"
    print(
        f"\n[apply cost, {mode}] 1 AOR/commit: {results[1]:.1f} us/AOR; "
        f"200 AORs/commit: {results[200]:.1f} us/AOR"
    )
