"""Storage of external lines, SIP trunks and dial-plan routes (migration 0003), both backends."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mss.storage import (
    AlreadyExists,
    LineRecord,
    NotFound,
    RouteRecord,
    Storage,
    TrunkRecord,
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


def test_lines_crud(make: Callable[[], Storage]) -> None:
    async def body(s: Storage) -> None:
        line = LineRecord(
            "prov",
            "+4930",
            "sip.example.com:5080",
            password="pw",
            auth_with_domain=True,
            proxy="10.0.0.1:5070",
            transport="tcp",
            new_call_id=None,
            max_calls=3,
            extra={"map": {"100": "200"}},
            contact_user="pbx",
        )
        await s.lines.add(line)
        got = await s.lines.get("prov")
        assert got is not None and got.created_at == got.updated_at == T0 + 1
        assert got == LineRecord(**{**_fields(line), "created_at": T0 + 1, "updated_at": T0 + 1})
        assert got.new_call_id is None and got.auth_with_domain is True and got.register is True
        with pytest.raises(AlreadyExists):
            await s.lines.add(line)
        got.extra["map"]["100"] = "mutated"  # type: ignore[index]
        assert (await s.lines.get("prov")).extra == {"map": {"100": "200"}}  # type: ignore[union-attr]
        await s.lines.update(
            LineRecord("prov", "+4930", "sip.example.com", new_call_id=True, register=False)
        )
        got = await s.lines.get("prov")
        assert got is not None and got.new_call_id is True and got.register is False
        assert got.created_at == T0 + 1 and got.updated_at > got.created_at
        with pytest.raises(NotFound):
            await s.lines.update(LineRecord("nope", "a", "d"))
        await s.lines.add(LineRecord("a-line", "x", "y", new_call_id=False))
        assert [line.id for line in await s.lines.list()] == ["a-line", "prov"]
        assert (await s.lines.get("a-line")).new_call_id is False  # type: ignore[union-attr]
        assert await s.lines.delete("prov") is True and await s.lines.delete("prov") is False
        assert await feed(s) == [
            ("line", "prov", "put"),
            ("line", "prov", "put"),
            ("line", "a-line", "put"),
            ("line", "prov", "delete"),
        ]

    using(make, body)


def test_trunks_crud_and_by_address(make: Callable[[], Storage]) -> None:
    async def body(s: Storage) -> None:
        await s.trunks.add(
            TrunkRecord(
                "b",
                "192.0.2.1",
                5070,
                max_incoming=0,
                max_outgoing=None,
                caller_number="0301",
                uri_params="user=phone",
                ping=False,
            )
        )
        await s.trunks.add(TrunkRecord("a", "192.0.2.1", 5070, enabled=False))
        got = await s.trunks.get("b")
        assert got is not None and got.max_incoming == 0 and got.max_outgoing is None
        assert got.ping is False and got.uri_params == "user=phone"
        assert (await s.trunks.by_address("192.0.2.1", 5070)).id == "b"  # type: ignore[union-attr]
        assert await s.trunks.by_address("192.0.2.1", 5060) is None
        assert [t.id for t in await s.trunks.list()] == ["a", "b"]
        await s.trunks.delete("b")
        assert await s.trunks.by_address("192.0.2.1", 5070) is None  # "a" is disabled

    using(make, body)


def test_routes_crud(make: Callable[[], Storage]) -> None:
    async def body(s: Storage) -> None:
        await s.routes.add(RouteRecord("out", "9", "line:", strip=1, fallback="backup"))
        await s.routes.add(RouteRecord("any", "", "user"))
        got = await s.routes.get("out")
        assert got is not None and got.fallback == "backup" and got.strip == 1
        assert (await s.routes.get("any")).prefix == ""  # type: ignore[union-attr]
        await s.routes.update(RouteRecord("out", "9", "trunk:t", strip=1, enabled=False))
        assert (await s.routes.get("out")).enabled is False  # type: ignore[union-attr]
        assert [c[0] for c in await feed(s)] == ["route"] * 3

    using(make, body)


@pytest.mark.parametrize(
    ("repo", "record"),
    [
        ("lines", LineRecord("", "a", "d")),
        ("lines", LineRecord("l", "", "d")),
        ("lines", LineRecord("l", "a", "d", transport="sctp")),
        ("lines", LineRecord("l", "a", "d", expires=-1)),
        ("lines", LineRecord("l", "a", "d", max_calls=-2)),
        ("lines", LineRecord("l", "a", "d", extra={"x": object()})),
        ("trunks", TrunkRecord("t", "")),
        ("trunks", TrunkRecord("t", "h", port=0)),
        ("trunks", TrunkRecord("t", "h", max_outgoing=-1)),
        ("routes", RouteRecord("r", "9", "")),
        ("routes", RouteRecord("r", "9", "line:", strip=-1)),
        ("routes", RouteRecord("r", "9 9", "line:")),
        ("routes", RouteRecord("with space", "9", "line:")),
    ],
)
def test_invalid_records_rejected_alike(
    make: Callable[[], Storage], repo: str, record: Any
) -> None:
    async def body(s: Storage) -> None:
        with pytest.raises(ValueError):
            await getattr(s, repo).add(record)
        assert await getattr(s, repo).list() == []
        assert await s.changes.latest() == 0

    using(make, body)


def test_sqlite_schema_constraints(tmp_path: Path) -> None:
    """The table checks hold even for rows written around the codec."""

    async def main() -> None:
        async with open_storage("sqlite", path=tmp_path / "db") as s:
            conn = s._db.conn()  # type: ignore[attr-defined]
            for sql in (
                "INSERT INTO lines (id, account, domain, transport, created_at, updated_at) VALUES ('l', 'a', 'd', 'x', 0, 0)",
                "INSERT INTO trunks (id, host, port, created_at, updated_at) VALUES ('t', 'h', 70000, 0, 0)",
                "INSERT INTO routes (id, prefix, target, strip, created_at, updated_at) VALUES ('r', '', 'user', -1, 0, 0)",
            ):
                with pytest.raises(sqlite3.IntegrityError):
                    conn.execute(sql)

    asyncio.run(main())


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}
