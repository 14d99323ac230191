"""The dial plan (issue 7): prefix rules, strip/prepend, fallbacks, first-run defaults, CLI.

``DialPlan.resolve(number) -> list[RouteStep]`` is the API the B2BUA calls; these tests pin its
behaviour down without any SIP.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from serverutil import mss_cli, running

from mss.features.dialplan import (
    DEFAULT_OUT_ROUTE,
    MAX_STEPS,
    DialPlan,
    DialPlanService,
    RouteStep,
    check_route,
    ensure_default_routes,
    parse_target,
    transform,
)
from mss.storage import LineRecord, RouteRecord, TrunkRecord
from mss.storage.memory import MemoryStorage


def R(id: str, prefix: str, target: str, **kw: Any) -> RouteRecord:
    return RouteRecord(id, prefix, target, **kw)


def steps(plan: DialPlan, number: str, **kw: Any) -> list[tuple[str, str, str, str | None]]:
    return [(s.kind, s.target, s.number, s.route) for s in plan.resolve(number, **kw)]


def test_no_rule_means_local_user() -> None:
    plan = DialPlan()
    assert plan.resolve("1001") == [RouteStep("user", "", "1001", None, "1001")]
    assert plan.resolve("1001")[0].user == "1001"


def test_longest_prefix_wins() -> None:
    plan = DialPlan(
        [
            R("any", "", "trunk:default"),
            R("zero", "0", "trunk:national"),
            R("intl", "00", "trunk:intl"),
            R("uk", "0044", "line:uk"),
        ]
    )
    assert steps(plan, "12345")[0][:2] == ("trunk", "default")
    assert steps(plan, "0123")[0][:2] == ("trunk", "national")
    assert steps(plan, "0033123")[0][:2] == ("trunk", "intl")
    assert steps(plan, "00441234")[0][:2] == ("line", "uk")
    assert steps(plan, "0044")[0][:2] == ("line", "uk")


def test_equal_prefixes_by_priority_then_id() -> None:
    plan = DialPlan(
        [R("b", "9", "trunk:b"), R("a", "9", "trunk:a"), R("c", "9", "trunk:c", priority=-1)]
    )
    assert steps(plan, "9123")[0][1] == "c"
    plan = DialPlan([R("b", "9", "trunk:b"), R("a", "9", "trunk:a")])
    assert steps(plan, "9123")[0][1] == "a"
    assert [r.id for r in plan.routes] == ["a", "b"]


def test_strip_and_prepend() -> None:
    plan = DialPlan(
        [
            R("out", "9", "line:prov", strip=1),
            R("e164", "00", "trunk:t", strip=2, prepend="+"),
            R("nat", "0", "trunk:t", strip=1, prepend="+4930"),
        ]
    )
    assert steps(plan, "90123456") == [("line", "prov", "0123456", "out")]
    assert steps(plan, "0049301234") == [("trunk", "t", "+49301234", "e164")]
    assert steps(plan, "0301234") == [("trunk", "t", "+4930301234", "nat")]
    assert transform("12345", 10, "") == ""
    assert transform("12345", 0, "+") == "+12345"


def test_a_rule_leaving_no_number_is_skipped() -> None:
    plan = DialPlan([R("out", "9", "line:prov", strip=1)])
    assert steps(plan, "9") == [("user", "", "9", None)]


def test_fallbacks_in_order_with_their_own_transformation() -> None:
    plan = DialPlan(
        [
            R("out", "9", "line:prov", strip=1, fallback="backup"),
            R("backup", "#9", "trunk:carrier", strip=1, prepend="0049", fallback="last"),
            R("last", "#last", "trunk:other", strip=0),
        ]
    )
    assert steps(plan, "9301234") == [
        ("line", "prov", "301234", "out"),
        ("trunk", "carrier", "0049301234", "backup"),
        ("trunk", "other", "9301234", "last"),
    ]


def test_fallback_cycles_missing_and_unusable() -> None:
    plan = DialPlan(
        [
            R("a", "1", "trunk:ta", fallback="b"),
            R("b", "#b", "trunk:gone", fallback="c"),  # its trunk does not exist: skipped
            R("c", "#c", "trunk:tc", fallback="a"),  # back to a: cycle cut
        ],
        trunks=["ta", "tc"],
    )
    assert steps(plan, "123") == [("trunk", "ta", "123", "a"), ("trunk", "tc", "123", "c")]
    plan = DialPlan([R("a", "1", "trunk:ta", fallback="nope")])
    assert steps(plan, "1") == [("trunk", "ta", "1", "a")]
    # a long chain is bounded
    chain = [
        R(f"r{i}", "5" if i == 0 else f"#{i}", f"trunk:t{i}", fallback=f"r{i + 1}")
        for i in range(20)
    ]
    assert len(DialPlan(chain).resolve("5")) == MAX_STEPS


def test_unusable_primary_falls_back_to_shorter_prefix() -> None:
    routes = [
        R("intl", "00", "trunk:intl"),
        R("zero", "0", "line:main"),
        R("off", "01", "trunk:x", enabled=False),
    ]
    plan = DialPlan(routes, lines=["main"], trunks=[])
    assert steps(plan, "0049") == [("line", "main", "0049", "zero")]  # trunk intl missing
    assert steps(plan, "0123") == [("line", "main", "0123", "zero")]  # disabled rule skipped
    plan = DialPlan(routes, lines=[], trunks=[])
    assert steps(plan, "0049") == [("user", "", "0049", None)]


def test_first_line_target() -> None:
    routes = [DEFAULT_OUT_ROUTE]
    plan = DialPlan(routes, lines=["zeta", "alpha"], trunks=[])
    assert steps(plan, "9555") == [("line", "alpha", "555", "out")]
    plan = DialPlan(routes, lines=["zeta", "alpha"], trunks=[], first_line="zeta")
    assert steps(plan, "9555") == [("line", "zeta", "555", "out")]
    # documented: with no external line, 9 + number is looked up like any number
    plan = DialPlan(routes, lines=[], trunks=[])
    assert steps(plan, "9555") == [("user", "", "9555", None)]


def test_local_users_win_over_rules() -> None:
    plan = DialPlan([DEFAULT_OUT_ROUTE, R("any", "", "trunk:t")], lines=["l"], trunks=["t"])
    users = {"901", "100"}
    assert steps(plan, "901", is_user=users.__contains__) == [("user", "", "901", None)]
    assert steps(plan, "100", is_user=users.__contains__) == [("user", "", "100", None)]
    assert steps(plan, "9100", is_user=users.__contains__) == [("line", "l", "100", "out")]
    assert steps(plan, "555", is_user=users.__contains__) == [("trunk", "t", "555", "any")]


def test_user_targets() -> None:
    plan = DialPlan([R("op", "0", "user:100"), R("ext", "8", "user", strip=1)])
    (op,) = plan.resolve("0")
    assert (op.kind, op.user) == ("user", "100")
    (ext,) = plan.resolve("8123")
    assert (ext.kind, ext.user, ext.number) == ("user", "123", "123")


def test_targets_and_checks() -> None:
    assert parse_target("trunk:t1") == ("trunk", "t1")
    assert parse_target("line:") == ("line", "")
    assert parse_target("line") == ("line", "")
    assert parse_target("USER:100") == ("user", "100")
    for bad in ("trunk", "trunk:", "gateway:x", ""):
        with pytest.raises(ValueError):
            parse_target(bad)
    check_route(R("a", "9", "line:"))
    for bad in (
        R("a", "9 ", "line:"),
        R("a", "9", "pbx:"),
        R("a", "9", "line:", fallback="a"),
        R("a", "9", "line:", prepend="+4 9"),
    ):
        with pytest.raises(ValueError):
            check_route(bad)
    # a stored rule with a bad target is ignored, not fatal
    assert steps(DialPlan([R("bad", "1", "nowhere")]), "1") == [("user", "", "1", None)]


digits = st.text("0123456789*#+", max_size=6)


@given(
    rules=st.lists(
        st.tuples(
            digits,
            st.sampled_from(["trunk:a", "trunk:b", "line:l", "user"]),
            st.integers(0, 3),
            digits,
        ),
        max_size=8,
    ),
    number=st.text("0123456789", min_size=1, max_size=10),
)
def test_resolve_properties(rules: list[tuple[str, str, int, str]], number: str) -> None:
    routes = [R(f"r{i}", p, t, strip=s, prepend=pp) for i, (p, t, s, pp) in enumerate(rules)]
    result = DialPlan(routes).resolve(number)
    assert 1 <= len(result) <= MAX_STEPS
    first = result[0]
    matching = [
        r for r in routes if number.startswith(r.prefix) and transform(number, r.strip, r.prepend)
    ]
    if not matching:
        assert first == RouteStep("user", "", number, None, number)
    else:
        best = max(len(r.prefix) for r in matching)
        chosen = next(r for r in routes if r.id == first.route)
        assert len(chosen.prefix) == best
        assert first.number == transform(number, chosen.strip, chosen.prepend)
    assert all(s.number for s in result)


# -- the service and the first-run defaults ---------------------------------------------------


def test_service_follows_lines_trunks_and_defaults() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        await storage.open()
        assert await ensure_default_routes(storage) is True
        assert await ensure_default_routes(storage) is False  # once per database
        assert await storage.routes.get("out") == RouteRecord(
            "out",
            "9",
            "line:",
            strip=1,
            created_at=(await storage.routes.get("out")).created_at,  # type: ignore[union-attr]
            updated_at=(await storage.routes.get("out")).updated_at,  # type: ignore[union-attr]
        )
        lines: list[str] = []
        svc = DialPlanService(
            storage, lines=lambda: lines, trunks=lambda: [], is_user=lambda n: n == "900"
        )
        await svc.load()
        assert svc.resolve("9123") == [RouteStep("user", "", "9123", None, "9123")]
        lines.append("prov")
        svc.rebuild()
        assert [(s.kind, s.target, s.number) for s in svc.resolve("9123")] == [
            ("line", "prov", "123")
        ]
        assert svc.resolve("900")[0].kind == "user"
        # deleting the default is permanent
        await storage.routes.delete("out")
        assert await ensure_default_routes(storage) is False
        await svc.load()
        assert svc.describe("9123") == [
            {"kind": "user", "target": "", "number": "9123", "route": None}
        ]

    asyncio.run(main())


def test_defaults_do_not_replace_an_operator_rule() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        await storage.open()
        await storage.routes.add(R("mine", "9", "trunk:t"))
        assert await ensure_default_routes(storage) is False
        assert [r.id for r in await storage.routes.list()] == ["mine"]

    asyncio.run(main())


def test_server_creates_the_default_route_and_follows_edits(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as server:
            assert server.dialplan is not None
            assert [r.id for r in server.dialplan.plan.routes] == ["out"]
            assert server.dialplan.resolve("9555")[0].kind == "user"  # no line yet
            await server.storage.lines.add(LineRecord("prov", "acc", "127.0.0.1:9", register=False))
            await server.storage.trunks.add(TrunkRecord("carrier", "127.0.0.1", 9, ping=False))
            await server.storage.routes.add(R("intl", "00", "trunk:carrier", fallback="out"))
            for _ in range(60):
                await asyncio.sleep(0.05)
                if len(server.dialplan.resolve("00123")) == 2:
                    break
            assert [(s.kind, s.target, s.number) for s in server.dialplan.resolve("00123")] == [
                ("trunk", "carrier", "00123"),
                ("line", "prov", "0123"),
            ]
            assert [(s.kind, s.target) for s in server.dialplan.resolve("9555")] == [
                ("line", "prov")
            ]

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.slow
def test_route_cli(tmp_path: Path) -> None:
    def cli(*args: str, check: bool = True) -> Any:
        return mss_cli(*args, data_dir=tmp_path, check=check)

    cli(
        "route",
        "add",
        "intl",
        "--prefix",
        "00",
        "--to",
        "trunk:carrier",
        "--strip",
        "2",
        "--prepend",
        "+",
        "--fallback",
        "any",
    )
    cli("route", "add", "any", "--prefix", "", "--to", "line")
    cli("route", "add", "op", "--prefix", "0", "--to", "user:100")
    rows = json.loads(cli("route", "list", "--json").stdout)
    assert [r["id"] for r in rows] == ["intl", "op", "any"]  # the order they are tried
    assert rows[0] == {
        "id": "intl",
        "prefix": "00",
        "to": "trunk:carrier",
        "strip": 2,
        "prepend": "+",
        "fallback": "any",
        "priority": 0,
        "enabled": True,
    }
    text = cli("route", "list").stdout
    assert "(any)" in text and "line: (first)" in text
    # nothing exists yet: the trunk and the first line are unusable, local user 0049...
    assert json.loads(cli("route", "resolve", "0049", "--json").stdout) == [
        {"kind": "user", "target": "100", "number": "0049", "route": "op"}
    ]
    cli("trunk", "add", "carrier", "--host", "127.0.0.1:5099", "--no-ping")
    cli("line", "add", "prov", "--account", "a", "--domain", "example.com", "--no-register")
    assert cli("route", "resolve", "0049").stdout.splitlines() == [
        "trunk carrier: +49 (route intl)",
        "then line prov: 0049 (route any)",
    ]
    cli("route", "set", "intl", "--disable")
    assert cli("route", "resolve", "0049").stdout == "user 100: 0049 (route op)\n"
    bad = cli("route", "add", "x", "--prefix", "1", "--to", "pbx:1", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("mss: error: to:")
    bad = cli("route", "add", "intl", "--prefix", "1", "--to", "user", check=False)
    assert bad.returncode == 2 and "exists already" in bad.stderr
    cli("route", "del", "intl")
    bad = cli("route", "del", "intl", check=False)
    assert bad.returncode == 2 and "no route intl" in bad.stderr
