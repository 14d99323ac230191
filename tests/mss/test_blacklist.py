"""The system blacklist engine (issue 6): miniSIPServer's six documented cases, anonymous
callers, rates with a seeded draw, storage, the CLI and live reload in a running server."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path

import pytest
from netutil import run_on
from serverutil import mss_cli, running

from fastsip.parser import parse_datagram
from mss.features.blacklist import (
    BlacklistError,
    SystemBlacklist,
    called_of,
    caller_of,
    is_anonymous,
    normalise_prefix,
)
from mss.storage import BlacklistRecord, MemoryStorage

# The records of the issue / miniSIPServer's documentation.
R1 = BlacklistRecord("101", "*", 100, "record 1")
R2 = BlacklistRecord("*", "9", 100, "record 2")
R3 = BlacklistRecord("100", "9", 0, "record 3")
R4 = BlacklistRecord("1", "913", 0, "record 4")
DOC_RECORDS = (R1, R2, R3, R4)


def same(a: BlacklistRecord | None, b: BlacklistRecord | None) -> bool:
    """Equal records, whatever their ``created_at`` stamp."""
    if a is None or b is None:
        return a is b
    return (a.caller_prefix, a.called_prefix, a.rate, a.note) == (
        b.caller_prefix,
        b.called_prefix,
        b.rate,
        b.note,
    )


@pytest.mark.parametrize(
    ("caller", "called", "record", "blocked"),
    [
        ("101", "913800", R4, False),
        ("1011", "913800", R4, False),
        ("100", "974413800", R3, False),
        ("102", "974413800", R2, True),
        ("101", "100", R1, True),
        ("200", "913800", R2, True),
    ],
)
def test_the_six_documented_cases(
    caller: str, called: str, record: BlacklistRecord, blocked: bool
) -> None:
    bl = SystemBlacklist(DOC_RECORDS, draw=random.Random(1))
    decision = bl.check(caller, called, anonymous=False)
    assert decision.record == record
    assert decision.blocked is blocked
    assert decision.status == 403
    # the order records are given in does not matter
    shuffled = list(DOC_RECORDS)
    random.Random(7).shuffle(shuffled)
    assert SystemBlacklist(shuffled).check(caller, called, anonymous=False) == decision


def test_no_match_is_allowed_and_has_no_record() -> None:
    bl = SystemBlacklist([BlacklistRecord("5", "7", 100)])
    d = bl.check("100", "200", anonymous=False)
    assert (d.blocked, d.record, d.reason) == (False, None, "")
    assert SystemBlacklist().check("1", "2", anonymous=True).blocked is False


def test_rate_zero_is_an_explicit_allow_over_shorter_rules() -> None:
    bl = SystemBlacklist([BlacklistRecord("*", "*", 100), BlacklistRecord("*", "112", 0)])
    assert bl.check("555", "112", anonymous=False).blocked is False  # emergency calls allowed
    assert bl.check("555", "1120", anonymous=False).blocked is False
    assert bl.check("555", "113", anonymous=False).blocked is True


def test_longer_caller_prefix_wins_within_one_called_prefix() -> None:
    bl = SystemBlacklist(
        [
            BlacklistRecord("*", "0", 100),
            BlacklistRecord("2", "0", 0),
            BlacklistRecord("23", "0", 100),
        ]
    )
    assert bl.check("2300", "0123", anonymous=False).record == BlacklistRecord("23", "0", 100)
    assert bl.check("2400", "0123", anonymous=False).blocked is False
    assert bl.check("3400", "0123", anonymous=False).blocked is True


def _request(from_: str, *extra: str, ruri: str = "sip:200@pbx.test") -> object:
    lines = [
        f"INVITE {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1",
        f"From: {from_};tag=1",
        "To: <sip:200@pbx.test>",
        "Call-ID: bl-test",
        "CSeq: 1 INVITE",
        *extra,
        "Content-Length: 0",
    ]
    return parse_datagram(("\r\n".join(lines) + "\r\n\r\n").encode())


@pytest.mark.parametrize(
    ("from_", "extra", "anonymous"),
    [
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', (), True),
        ("<sip:Anonymous@pbx.test>", (), True),
        ("<sip:ANONYMOUS@pbx.test>", (), True),
        ("<sip:101@anonymous.invalid>", (), True),
        ("<sip:101@ANONYMOUS.INVALID>", (), True),
        ("<sip:101@pbx.test>", ("Privacy: id",), True),
        ("<sip:101@pbx.test>", ("Privacy: header;id",), True),
        ("<sip:101@pbx.test>", ("Privacy: header", "Privacy: ID"), True),
        ("<sip:101@pbx.test>", ("Privacy: none",), False),
        ("<sip:101@pbx.test>", ("Privacy: header;user",), False),
        ("<sip:anonymous2@pbx.test>", (), False),
        ("<sip:101@pbx.test>", (), False),
    ],
)
def test_is_anonymous(from_: str, extra: tuple[str, ...], anonymous: bool) -> None:
    assert is_anonymous(_request(from_, *extra)) is anonymous  # type: ignore[arg-type]


def test_anonymous_records() -> None:
    bl = SystemBlacklist(
        [
            BlacklistRecord("anonymous", "*", 100, "no withheld numbers"),
            BlacklistRecord("*", "*", 0),
            BlacklistRecord("10", "*", 0),
            BlacklistRecord("*", "911", 0),
        ]
    )
    # each way of being anonymous is blocked
    for req in (
        _request('"Anonymous" <sip:anonymous@anonymous.invalid>'),
        _request("<sip:Anonymous@pbx.test>"),
        _request("<sip:101@anonymous.invalid>"),
        _request("<sip:101@pbx.test>", "Privacy: id"),
    ):
        d = bl.check_request(req)  # type: ignore[arg-type]
        assert d.blocked and d.record is not None and d.record.caller_prefix == "anonymous"
    # the anonymous record ranks above a numeric caller prefix of the same called prefix...
    assert bl.check("101", "200", anonymous=True).blocked is True
    # ...but a longer called prefix still wins (anonymous calls to 911 go through)
    assert bl.check("anonymous", "911", anonymous=True).blocked is False
    # a caller that is not anonymous never matches the anonymous record
    assert bl.check("101", "200", anonymous=False).blocked is False
    assert bl.check("anonymous", "200", anonymous=False).record == BlacklistRecord("*", "*", 0)
    # "Anonymous" typed in any case is the anonymous class
    assert (
        SystemBlacklist([BlacklistRecord("AnOnYmOuS", "*", 100)])
        .check("1", "2", anonymous=True)
        .blocked
    )


def test_caller_and_called_of_a_request() -> None:
    req = _request("<sip:101@pbx.test>", ruri="sip:913800@pbx.test")
    assert (caller_of(req), called_of(req)) == ("101", "913800")  # type: ignore[arg-type]
    tel = _request("<sip:101@pbx.test>", ruri="tel:+4930123")
    assert called_of(tel) == "+4930123"  # type: ignore[arg-type]


def test_rate_50_with_a_seeded_draw_is_deterministic() -> None:
    rec = BlacklistRecord("*", "00", 50, "half of international calls")
    first = SystemBlacklist([rec], draw=random.Random(2024))
    outcomes = [first.check("101", "0044123", anonymous=False).blocked for _ in range(1000)]
    # the same seed gives the same outcomes: the draw is the only randomness
    again = SystemBlacklist([rec], draw=random.Random(2024))
    assert [again.check("101", "0044123", anonymous=False).blocked for _ in range(1000)] == outcomes
    # and they are exactly what the draw says: blocked when 100 * draw < rate
    ref = random.Random(2024)
    assert outcomes == [ref.random() * 100 < 50 for _ in range(1000)]
    assert 450 <= sum(outcomes) <= 550
    assert first.stats == {"checked": 1000, "blocked": sum(outcomes)}


def test_draw_may_be_a_callable_and_rates_100_and_0_never_draw() -> None:
    calls = []

    def draw() -> float:
        calls.append(1)
        return 0.25

    bl = SystemBlacklist(
        [
            BlacklistRecord("1", "*", 30),
            BlacklistRecord("2", "*", 20),
            BlacklistRecord("3", "*", 100),
            BlacklistRecord("4", "*", 0),
        ],
        draw=draw,
    )
    assert bl.check("1", "5", anonymous=False).blocked is True  # 25 < 30
    assert bl.check("2", "5", anonymous=False).blocked is False  # 25 >= 20
    assert len(calls) == 2
    assert bl.check("3", "5", anonymous=False).blocked is True
    assert bl.check("4", "5", anonymous=False).blocked is False
    assert len(calls) == 2


def test_screen_logs_a_security_event_and_status_is_configurable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bl = SystemBlacklist(
        [BlacklistRecord("anonymous", "*", 100, "no withheld numbers")], status=603
    )
    with caplog.at_level(logging.INFO, logger="mss.security"):
        d = bl.screen(_request('"Anonymous" <sip:anonymous@anonymous.invalid>'), source="127.0.0.9")  # type: ignore[arg-type]
        assert bl.screen(_request("<sip:101@pbx.test>"), source="127.0.0.9").blocked is False  # type: ignore[arg-type]
    assert d.blocked and d.status == 603
    assert "no withheld numbers" in d.reason and "caller anonymous" in d.reason
    events = [r for r in caplog.records if getattr(r, "event", None) == "call_blocked"]
    assert len(events) == 1
    ev = events[0]
    assert ev.source == "127.0.0.9" and ev.called == "200" and ev.anonymous is True  # type: ignore[attr-defined]
    assert ev.rule["rate"] == 100 and ev.call_id == "bl-test"  # type: ignore[attr-defined]


def test_prefix_validation() -> None:
    assert normalise_prefix(" 9 ", "called", caller=False) == "9"
    assert normalise_prefix("ANONYMOUS", "caller", caller=True) == "anonymous"
    assert normalise_prefix("anonymous", "called", caller=False) == "anonymous"  # just text there
    for bad in ("", "  ", "1 2", "x" * 65):
        with pytest.raises(BlacklistError, match=r"^caller: "):
            normalise_prefix(bad, "caller", caller=True)


def test_storage_round_trip_and_reload() -> None:
    async def main() -> None:
        async with MemoryStorage() as storage:
            for r in DOC_RECORDS:
                await storage.blacklist.put(r)
            with pytest.raises(ValueError):
                await storage.blacklist.put(BlacklistRecord("1", "2", 101))
            bl = SystemBlacklist()
            await bl.load(storage)
            assert len(bl) == 4
            assert same(bl.check("200", "913800", anonymous=False).record, R2)
            await storage.blacklist.delete("*", "9")
            await bl.load(storage)
            assert bl.check("200", "913800", anonymous=False).record is None

    asyncio.run(main())


def test_cli_and_live_reload_in_a_running_server(tmp_path: Path) -> None:
    d = tmp_path / "data"
    mss_cli(
        "blacklist",
        "add",
        "--caller",
        "101",
        "--called",
        "*",
        "--rate",
        "100",
        "--description",
        "record 1",
        data_dir=d,
    )
    for args, field in [
        (("--caller", "1", "--called", "9", "--rate", "101"), "rate"),
        (("--caller", "1", "--called", "9", "--rate", "x"), "rate"),
        (("--caller", "", "--called", "9", "--rate", "5"), "caller"),
        (("--caller", "1", "--called", "9 9", "--rate", "5"), "called"),
    ]:
        res = mss_cli("blacklist", "add", *args, data_dir=d, check=False)
        assert res.returncode == 2 and res.stderr.strip().startswith(f"mss: error: {field}:"), (
            res.stderr
        )
        assert len(res.stderr.strip().splitlines()) == 1
    res = mss_cli("blacklist", "del", "--caller", "7", "--called", "7", data_dir=d, check=False)
    assert res.returncode == 2 and res.stderr.startswith("mss: error: caller:")

    async def main() -> None:
        async with running(d) as srv:
            assert srv.blacklist is not None
            assert same(srv.blacklist.check("101", "100", anonymous=False).record, R1)
            # records added by the CLI while the server runs apply within a second
            for r in DOC_RECORDS[1:]:
                await asyncio.to_thread(
                    mss_cli,
                    "blacklist",
                    "add",
                    "--caller",
                    r.caller_prefix,
                    "--called",
                    r.called_prefix,
                    "--rate",
                    str(r.rate),
                    "--description",
                    r.note,
                    data_dir=d,
                )
            for _ in range(40):
                if len(srv.blacklist) == 4:
                    break
                await asyncio.sleep(0.05)
            assert same(srv.blacklist.check("200", "913800", anonymous=False).record, R2)
            await asyncio.to_thread(
                mss_cli, "blacklist", "del", "--caller", "*", "--called", "9", data_dir=d
            )
            for _ in range(40):
                if len(srv.blacklist) == 3:
                    break
                await asyncio.sleep(0.05)
            assert srv.blacklist.check("200", "913800", anonymous=False).record is None

    run_on("asyncio", main)
    listed = json.loads(mss_cli("blacklist", "list", "--json", data_dir=d).stdout)
    assert [(r["caller"], r["called"], r["rate"], r["description"]) for r in listed] == [
        ("101", "*", 100, "record 1"),
        ("100", "9", 0, "record 3"),
        ("1", "913", 0, "record 4"),
    ]
