"""Storage of voicemail messages and their e-mail outbox (migration 0005), both backends alike."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mss.storage import (
    AlreadyExists,
    SqliteStorage,
    Storage,
    VoicemailMailRecord,
    VoicemailRecord,
    open_storage,
)

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(params=("memory", "sqlite"))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    return lambda: open_storage(request.param, path=tmp_path / "mss.sqlite3", clock=FakeClock())


def using(make: Callable[[], Storage], body: Callable[[Storage], Awaitable[None]]) -> None:
    async def main() -> None:
        async with make() as storage:
            await body(storage)

    asyncio.run(main())


async def feed(storage: Storage) -> list[tuple[str, str, str]]:
    return [(c.entity, c.key, c.op) for c in await storage.changes.since(0)]


def msg(id: str, user: str = "1001", started_at: float = T0, **kw: object) -> VoicemailRecord:
    return VoicemailRecord(id, user, kw.pop("caller", "1002"), started_at, **kw)  # type: ignore[arg-type]


def test_messages_crud_summary_and_feed(make: Callable[[], Storage]) -> None:
    async def body(s: Storage) -> None:
        vm = s.voicemail
        first = msg(
            "b", caller_display="Bob", call_id="c1@x", duration=5.25, path="voicemail/1001/b.wav"
        )
        await vm.add(first, VoicemailMailRecord("b", "a@example.test", next_try=T0))
        await vm.add(msg("a", started_at=T0 + 10))
        await vm.add(msg("c", user="1003"))
        got = await vm.get("b")
        assert got == VoicemailRecord(
            "b", "1001", "1002", T0, "Bob", "c1@x", 5.25, "voicemail/1001/b.wav", False, T0 + 1
        )
        assert [m.id for m in await vm.for_user("1001")] == ["b", "a"]
        assert await vm.for_user("nobody") == []
        assert await vm.summary() == {"1001": (2, 0), "1003": (1, 0)}
        with pytest.raises(AlreadyExists):
            await vm.add(msg("a"))
        assert await vm.mark_read("a") is True
        assert await vm.mark_read("zz") is False
        assert (await vm.get("a")).read is True  # type: ignore[union-attr]
        assert await vm.summary() == {"1001": (1, 1), "1003": (1, 0)}
        assert await vm.mark_read("a", False) is True
        assert await vm.summary() == {"1001": (2, 0), "1003": (1, 0)}
        # deleting a message drops its queued e-mail in the same transaction
        assert await vm.delete("b") is True
        assert await vm.delete("b") is False
        assert await vm.mail("b") is None
        assert await vm.summary() == {"1001": (1, 0), "1003": (1, 0)}
        assert await feed(s) == [
            ("voicemail", "1001 b", "put"),
            ("voicemail_mail", "b", "put"),
            ("voicemail", "1001 a", "put"),
            ("voicemail", "1003 c", "put"),
            ("voicemail", "1001 a", "put"),
            ("voicemail", "1001 a", "put"),
            ("voicemail_mail", "b", "delete"),
            ("voicemail", "1001 b", "delete"),
        ]

    using(make, body)


def test_outbox_due_and_update(make: Callable[[], Storage]) -> None:
    async def body(s: Storage) -> None:
        vm = s.voicemail
        await vm.add(msg("m1"), VoicemailMailRecord("m1", "x@example.test", next_try=T0 + 100))
        await vm.add(msg("m2"), VoicemailMailRecord("m2", "y@example.test", next_try=T0 + 50))
        await vm.add(msg("m3"))
        assert [m.message_id for m in await vm.mails()] == ["m2", "m1"]
        assert await vm.due_mails(T0 + 10) == []
        assert [m.message_id for m in await vm.due_mails(T0 + 100)] == ["m2", "m1"]
        assert [m.message_id for m in await vm.due_mails(T0 + 100, limit=1)] == ["m2"]
        m2 = await vm.mail("m2")
        assert m2 is not None and m2.state == "queued" and m2.attempts == 0
        failed = VoicemailMailRecord(
            "m2",
            "y@example.test",
            attempts=1,
            next_try=T0 + 50,
            state="failed",
            last_error="550 no such user",
        )
        assert await vm.update_mail(failed) is True
        stored = await vm.mail("m2")
        assert (
            stored is not None
            and stored.state == "failed"
            and stored.last_error == "550 no such user"
        )
        assert stored.updated_at > m2.updated_at
        assert [m.message_id for m in await vm.due_mails(T0 + 100)] == ["m1"]
        assert [m.message_id for m in await vm.mails("failed")] == ["m2"]
        assert await vm.update_mail(VoicemailMailRecord("m3", "z@example.test")) is False
        with pytest.raises(ValueError, match="state"):
            await vm.update_mail(VoicemailMailRecord("m1", "x@example.test", state="lost"))

    using(make, body)


@pytest.mark.parametrize(
    ("record", "mail", "match"),
    [
        (VoicemailRecord("", "1001", "1002", T0), None, "id"),
        (VoicemailRecord("a b", "1001", "1002", T0), None, "id"),
        (VoicemailRecord("x", "", "1002", T0), None, "user"),
        (VoicemailRecord("x", "1001", "1002", T0, duration=-1.0), None, "duration"),
        (VoicemailRecord("x", "1001", "1002", T0), VoicemailMailRecord("y", "a@b"), "message_id"),
        (VoicemailRecord("x", "1001", "1002", T0), VoicemailMailRecord("x", ""), "to"),
        (
            VoicemailRecord("x", "1001", "1002", T0),
            VoicemailMailRecord("x", "a@b", attempts=-1),
            "attempts",
        ),
    ],
)
def test_invalid_records_rejected_alike(
    make: Callable[[], Storage],
    record: VoicemailRecord,
    mail: VoicemailMailRecord | None,
    match: str,
) -> None:
    async def body(s: Storage) -> None:
        with pytest.raises(ValueError, match=match):
            await s.voicemail.add(record, mail)
        assert await s.voicemail.summary() == {}
        assert await feed(s) == []

    using(make, body)


def test_sqlite_outbox_survives_reopen_and_cascades(tmp_path: Path) -> None:
    path = tmp_path / "mss.sqlite3"

    async def first() -> None:
        async with SqliteStorage(path) as s:
            await s.voicemail.add(msg("m1"), VoicemailMailRecord("m1", "x@example.test"))

    async def second() -> None:
        async with SqliteStorage(path) as s:
            assert [m.message_id for m in await s.voicemail.due_mails(T0 + 1e9)] == ["m1"]

    asyncio.run(first())
    asyncio.run(second())
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO voicemail_outbox (message_id, recipient) VALUES ('nope', 'a@b')"
            )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE voicemail_outbox SET state = 'lost'")
        conn.execute("DELETE FROM voicemail WHERE id = 'm1'")
        assert conn.execute("SELECT count(*) FROM voicemail_outbox").fetchone()[0] == 0
    finally:
        conn.close()
