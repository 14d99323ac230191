"""Calls through ``mss serve`` (a real process) between real sipp peers, on loopback (issue 5).

sipp UAC → mss → sipp UAS. Users are created in storage before the server starts (the CLI's
code path); sipp callers and callees are IP-authorized users (``allow_ips`` at sipp's address
and port), except in the forking test where three sipp instances REGISTER with digest as one
multi-device user. Call records are read back with ``mss cdr list --json``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from serverutil import free_udp_port, mss_cli, serve, wait_for
from sipp import SippResult, require_sipp, run_sipp, start_sipp_uas, write_inf_file

from mss.app import open_configured_storage, resolve_realm
from mss.config import load_config
from mss.features.users import UserDirectory

pytestmark = pytest.mark.slow

NO_ANSWER = 'Reason: SIP;cause=480;text="No answer"'
ELSEWHERE = 'Reason: SIP;cause=200;text="Call completed elsewhere"'


def add_users(data_dir: Path, users: dict[str, dict[str, Any]]) -> None:
    async def go() -> None:
        cfg = load_config(
            None, env={}, overrides={"data_dir": str(data_dir), "sip.domain": "example.test"}
        )
        storage = await open_configured_storage(cfg)
        try:
            directory = UserDirectory(storage, realm=await resolve_realm(cfg, storage))
            for number, fields in users.items():
                await directory.add(number, f"pw-{number}", **fields)
        finally:
            await storage.close()

    asyncio.run(go())


@contextmanager
def pbx(
    tmp_path: Path, users: dict[str, dict[str, Any]], *, env: dict[str, str] | None = None
) -> Iterator[tuple[Path, int]]:
    require_sipp()
    data = tmp_path / "data"
    add_users(data, users)
    port = free_udp_port()
    with serve(data, port, env_extra={"MSS_AUTH_ALGORITHMS": "MD5", **(env or {})}):
        yield data, port


def cdr_list(data: Path, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The call records, waiting until ``expect`` of them are closed (written at call end)."""
    rows: list[dict[str, Any]] = []

    def ready() -> bool:
        nonlocal rows
        rows = json.loads(mss_cli("cdr", "list", "--json", data_dir=data).stdout)
        return sum(1 for r in rows if r["end_at"] is not None) >= expect

    wait_for(ready, timeout, 0.2)
    return rows


def call(
    port: int,
    scenario: str,
    *,
    callee: str,
    caller: str,
    caller_port: int,
    tmp_path: Path,
    calls: int = 1,
    rate: float = 10,
    timeout: float = 30,
    extra: list[str] = (),
    **kw: Any,
) -> SippResult:
    return run_sipp(
        f"127.0.0.1:{port}",
        scenario=scenario,
        service=callee,
        calls=calls,
        rate=rate,
        local_port=caller_port,
        timeout=timeout,
        workdir=tmp_path,
        extra=["-key", "caller", caller, *extra],
        **kw,
    )


def ports(n: int) -> list[int]:
    return [free_udp_port() for _ in range(n)]


# --------------------------------------------------------------------------------------------
def test_basic_call_bye_from_caller(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(scenario="uas_answer.xml", port=pb, workdir=tmp_path) as uas,
    ):
        r = call(
            port,
            "b2bua_uac_call.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=3,
            extra=["-d", "500"],
        )
        assert r.ok and r.successful == 3, r.describe()
        u = uas.stop()
        assert u.successful == 3 and u.failed == 0, u.describe()
        rows = cdr_list(data, 3)
    assert [x["result"] for x in rows] == ["answered"] * 3, rows
    for x in rows:
        assert x["hangup"] == "caller" and x["status"] == 200
        assert x["caller"] == "1001" and x["callee"] == "1002" and x["dialed"] == "1002"
        assert 0.4 <= x["duration"] < 5, x
        assert (
            x["callee_addr"] == f"udp:127.0.0.1:{pb}" and x["caller_addr"] == f"udp:127.0.0.1:{pa}"
        )


def test_basic_call_bye_from_callee(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(scenario="b2bua_uas_bye.xml", port=pb, workdir=tmp_path) as uas,
    ):
        r = call(
            port,
            "b2bua_uac_wait_bye.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=2,
        )
        assert r.ok and r.successful == 2, r.describe()
        u = uas.stop()
        assert u.successful == 2 and u.failed == 0, u.describe()
        rows = cdr_list(data, 2)
    assert [(x["result"], x["hangup"]) for x in rows] == [("answered", "callee")] * 2, rows


def test_caller_cancels_while_ringing(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(
            scenario="b2bua_uas_ring.xml", port=pb, workdir=tmp_path, trace_msg=True
        ) as uas,
    ):
        r = call(
            port,
            "b2bua_uac_cancel.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=2,
        )
        assert r.ok and r.successful == 2, r.describe()
        assert r.step("487", "recv").messages == 2
        u = uas.stop()
        assert u.successful == 2 and u.failed == 0, u.describe()
        assert u.step("CANCEL", "recv").messages == 2
        rows = cdr_list(data, 2)
    assert [(x["result"], x["status"], x["hangup"]) for x in rows] == [
        ("cancelled", 487, "caller")
    ] * 2, rows


def test_callee_busy_486(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(scenario="b2bua_uas_busy.xml", port=pb, workdir=tmp_path) as uas,
    ):
        r = call(
            port,
            "b2bua_uac_final.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=2,
        )
        assert r.ok and r.step("486", "recv").messages == 2, r.describe()
        u = uas.stop()
        assert u.successful == 2 and u.failed == 0, u.describe()  # the B2BUA ACKed each 486
        rows = cdr_list(data, 2)
    assert [(x["result"], x["status"]) for x in rows] == [("busy", 486)] * 2, rows


def test_no_answer_timer_480_and_cancel(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {
        "1001": {"allow_ips": [f"127.0.0.1:{pa}"]},
        "1002": {"allow_ips": [f"127.0.0.1:{pb}"], "no_answer_timeout": 2},
    }
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(
            scenario="b2bua_uas_ring.xml", port=pb, workdir=tmp_path, trace_msg=True
        ) as uas,
    ):
        t0 = time.monotonic()
        r = call(
            port,
            "b2bua_uac_final.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            trace_msg=True,
        )
        elapsed = time.monotonic() - t0
        assert r.ok and r.step("480", "recv").messages == 1, r.describe()
        assert 1.8 <= elapsed < 6, elapsed
        assert NO_ANSWER in r.message_log  # the 480 to the caller carries the Reason
        u = uas.stop()
        assert u.successful == 1 and u.failed == 0, u.describe()
        cancel = u.message_log[u.message_log.index("CANCEL sip:") :]
        assert NO_ANSWER in cancel.split("\n\n")[0], cancel[:600]
        rows = cdr_list(data, 1)
    assert [(x["result"], x["status"], x["hangup"]) for x in rows] == [
        ("no_answer", 480, "system")
    ], rows


def test_unknown_404_and_offline_480(tmp_path: Path) -> None:
    (pa,) = ports(1)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1003": {}}
    with pbx(tmp_path, users) as (data, port):
        r = call(
            port,
            "b2bua_uac_final.xml",
            callee="7777",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
        )
        assert r.ok and r.step("404", "recv").messages == 1, r.describe()
        r = call(
            port,
            "b2bua_uac_final.xml",
            callee="1003",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
        )
        assert r.ok and r.step("480", "recv").messages == 1, r.describe()
        # not IP-authorized (another port) and no credentials: challenged, never routed
        r = call(
            port,
            "b2bua_uac_final.xml",
            callee="1003",
            caller="1001",
            caller_port=free_udp_port(),
            tmp_path=tmp_path,
        )
        assert r.ok and r.step("407", "recv").messages == 1, r.describe()
        rows = cdr_list(data, 2)
    assert sorted((x["status"], x["result"]) for x in rows) == [
        (404, "rejected"),
        (480, "rejected"),
    ]


def test_reinvite_and_info_in_dialog(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(scenario="b2bua_uas_reinvite.xml", port=pb, workdir=tmp_path) as uas,
    ):
        r = call(
            port,
            "b2bua_uac_reinvite.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=2,
        )
        assert r.ok and r.successful == 2, r.describe()
        u = uas.stop()
        assert u.successful == 2 and u.failed == 0, u.describe()
        rows = cdr_list(data, 2)
    assert [x["result"] for x in rows] == ["answered"] * 2


def test_retransmissions_with_packet_loss(tmp_path: Path) -> None:
    """sipp drops 10 % of what it sends and receives on both sides (-lost): INVITEs, 200s, ACKs
    and BYEs are retransmitted, and the transaction layer (and the B2BUA's 2xx retransmission)
    absorbs or answers every retransmission: all calls complete.

    The callee is uas_answer_lossy.xml (200 without 180, optional ACK): sipp's UAS resends only
    the first message it sent after a receive, so with 180 + 200 both lost our retransmitted
    INVITE would be "unexpected" to sipp itself (see that scenario's comment). It keeps its calls
    32 s in timewait, so it is stopped with a short grace and its counts are not asserted."""
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(
            scenario="uas_answer_lossy.xml", port=pb, workdir=tmp_path, lost=10, stop_grace=0.5
        ) as uas,
    ):
        r = call(
            port,
            "b2bua_uac_call.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=20,
            rate=10,
            lost=10,
            timeout=90,
        )
        assert r.successful == 20 and r.failed == 0, r.describe()
        u = uas.stop()
        assert r.retransmissions + u.retransmissions > 0, (r.describe(), u.describe())
        assert sum(s.lost for s in r.steps) + sum(s.lost for s in u.steps) > 0
        rows = cdr_list(data, 20)
    assert [x["result"] for x in rows] == ["answered"] * 20


def test_forking_three_registered_devices(tmp_path: Path) -> None:
    pa, p1, p2, p3 = ports(4)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"multi_device": True}}
    inf = write_inf_file(tmp_path / "reg.csv", [("1002", "pw-1002", "example.test")])
    with pbx(tmp_path, users) as (data, port):
        for p in (p1, p2, p3):  # each device registers from the port its UAS will listen on
            reg = run_sipp(
                f"127.0.0.1:{port}",
                scenario="register_uac.xml",
                calls=1,
                local_port=p,
                inf_file=inf,
                timeout=15,
                workdir=tmp_path,
            )
            assert reg.ok, reg.describe()
        regs = json.loads(mss_cli("reg", "list", "--json", data_dir=data).stdout)
        assert sorted(x["source"] for x in regs) == sorted(
            f"udp:127.0.0.1:{p}" for p in (p1, p2, p3)
        )
        with (
            start_sipp_uas(scenario="uas_answer.xml", port=p1, workdir=tmp_path) as winner,
            start_sipp_uas(
                scenario="b2bua_uas_ring.xml", port=p2, workdir=tmp_path, trace_msg=True
            ) as l2,
            start_sipp_uas(
                scenario="b2bua_uas_ring.xml", port=p3, workdir=tmp_path, trace_msg=True
            ) as l3,
        ):
            r = call(
                port,
                "b2bua_uac_call.xml",
                callee="1002",
                caller="1001",
                caller_port=pa,
                tmp_path=tmp_path,
                extra=["-d", "500"],
            )
            assert r.ok, r.describe()
            w = winner.stop()
            assert w.successful == 1 and w.failed == 0, w.describe()
            for loser in (l2, l3):
                res = loser.stop()
                assert res.successful == 1 and res.failed == 0, res.describe()
                cancel = res.message_log[res.message_log.index("CANCEL sip:") :]
                assert ELSEWHERE in cancel.split("\n\n")[0], cancel[:600]
        rows = cdr_list(data, 1)
    assert [(x["result"], x["callee_addr"]) for x in rows] == [
        ("answered", f"udp:127.0.0.1:{p1}")
    ], rows


def test_callee_call_limit_486(tmp_path: Path) -> None:
    pa, pc, pb = ports(3)
    users = {
        "1001": {"allow_ips": [f"127.0.0.1:{pa}"]},
        "1003": {"allow_ips": [f"127.0.0.1:{pc}"]},
        "1002": {"allow_ips": [f"127.0.0.1:{pb}"], "max_calls": 1},
    }
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(scenario="uas_answer.xml", port=pb, workdir=tmp_path) as uas,
    ):
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                call,
                port,
                "b2bua_uac_call.xml",
                callee="1002",
                caller="1001",
                caller_port=pa,
                tmp_path=tmp_path,
                extra=["-d", "3000"],
            )
            assert wait_for(
                lambda: any(
                    x["answer_at"]
                    for x in json.loads(mss_cli("cdr", "list", "--json", data_dir=data).stdout)
                ),
                10,
                0.2,
            )
            second = call(
                port,
                "b2bua_uac_final.xml",
                callee="1002",
                caller="1003",
                caller_port=pc,
                tmp_path=tmp_path,
            )
            assert second.ok and second.step("486", "recv").messages == 1, second.describe()
            r = first.result()
        assert r.ok, r.describe()
        assert uas.stop().successful == 1
        rows = cdr_list(data, 2)
    assert sorted((x["caller"], x["result"], x["status"]) for x in rows) == [
        ("1001", "answered", 200),
        ("1003", "busy", 486),
    ]


def test_kill_9_closes_open_call_as_interrupted(tmp_path: Path) -> None:
    """A call in progress when the server is killed is closed as interrupted at the next start."""
    require_sipp()
    pa, pb = ports(2)
    data = tmp_path / "data"
    add_users(
        data,
        {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}},
    )
    port = free_udp_port()
    with (
        start_sipp_uas(scenario="uas_answer.xml", port=pb, workdir=tmp_path) as uas,
        ThreadPoolExecutor(1) as pool,
    ):
        with serve(data, port) as proc:
            running_call = pool.submit(
                call,
                port,
                "b2bua_uac_call.xml",
                callee="1002",
                caller="1001",
                caller_port=pa,
                tmp_path=tmp_path,
                extra=["-d", "4000"],
                timeout=12,
            )
            assert wait_for(
                lambda: any(
                    x["answer_at"]
                    for x in json.loads(mss_cli("cdr", "list", "--json", data_dir=data).stdout)
                ),
                10,
                0.2,
            )
            proc.kill()  # kill -9: no clean stop, no BYE, no final record
            proc.wait(5)
        [marker] = json.loads(mss_cli("cdr", "list", "--json", data_dir=data).stdout)
        assert marker["result"] == "interrupted" and marker["end_at"] is None
        with serve(data, port):
            [rec] = json.loads(mss_cli("cdr", "list", "--json", data_dir=data).stdout)
        running_call.result()
        uas.stop(grace=1)
    assert (
        rec["result"] == "interrupted" and rec["end_at"] is not None and rec["hangup"] == "system"
    )
    assert rec["answer_at"] is not None and rec["reason"] == "server stopped during the call"


def test_cdr_cli_list_and_daily_export(tmp_path: Path) -> None:
    pa, pb = ports(2)
    users = {"1001": {"allow_ips": [f"127.0.0.1:{pa}"]}, "1002": {"allow_ips": [f"127.0.0.1:{pb}"]}}
    with (
        pbx(tmp_path, users) as (data, port),
        start_sipp_uas(scenario="b2bua_uas_busy.xml", port=pb, workdir=tmp_path),
    ):
        r = call(
            port,
            "b2bua_uac_final.xml",
            callee="1002",
            caller="1001",
            caller_port=pa,
            tmp_path=tmp_path,
            calls=2,
        )
        assert r.ok, r.describe()
        cdr_list(data, 2)
    today = time.strftime("%Y-%m-%d")
    out = mss_cli("cdr", "list", "--date", today, "--user", "1002", data_dir=data).stdout
    assert out.count("busy") == 2 and "1001" in out
    assert "no call records" in mss_cli("cdr", "list", "--date", "2001-01-01", data_dir=data).stdout
    assert "no call records" in mss_cli("cdr", "list", "--user", "4242", data_dir=data).stdout
    res = mss_cli("cdr", "export", "--date", today, data_dir=data)
    path = data / "cdr" / f"{today}.csv"
    assert str(path) in res.stdout
    lines = path.read_text().splitlines()
    assert lines[0].startswith("id,setup,ring,answer,end,duration,caller,dialed,callee")
    assert len(lines) == 3 and all(",1001,1002,1002," in x and ",486," in x for x in lines[1:])
    other = tmp_path / "x.csv"
    mss_cli("cdr", "export", "--date", "2001-01-01", "--out", str(other), data_dir=data)
    assert other.read_text().splitlines() == [lines[0]]
    bad = mss_cli("cdr", "export", "--date", "yesterday", data_dir=data, check=False)
    assert bad.returncode == 2 and "date" in bad.stderr
