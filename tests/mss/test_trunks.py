"""SIP trunks (issue 7): records and CLI, trust by source address, OPTIONS up/down, call counts.

The up/down test pings a real sipp UAS answering OPTIONS (``scenarios/options_uas.xml``), then
stops it: the trunk goes down; started again, it comes back up.

Here the counting API (``TrunkService.admit`` / ``release``) is checked on its own, including a
randomized run that ends every call in every way and checks that the counts return to 0. Calls
through trunks (limits, 503, events, fallback, the same randomized run through the B2BUA) are
in ``test_external_calls.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from serverutil import mss_cli, running
from sipp import require_sipp, start_sipp_uas

from mss.config import TrunksConfig
from mss.errors import PolicyRejection
from mss.features.trunks import TrunkService, TrunkState, check_trunk
from mss.storage import TrunkRecord
from mss.storage.memory import MemoryStorage

FAST = {
    "timers.t1": 0.025,
    "timers.t2": 0.2,
    "trunks.ping_interval": 0.3,
    "trunks.ping_timeout": 0.5,
}


async def service(*trunks: TrunkRecord, **cfg: Any) -> TrunkService:
    storage = MemoryStorage()
    await storage.open()
    for t in trunks:
        await storage.trunks.add(t)
    svc = TrunkService(storage, config=TrunksConfig(**cfg))
    await svc.load()
    return svc


def test_trunk_for_source() -> None:
    async def main() -> None:
        svc = await service(
            TrunkRecord("udp", "192.0.2.10", 5060),
            TrunkRecord("tcp", "192.0.2.20", 5060, transport="tcp"),
            TrunkRecord("off", "192.0.2.30", 5060, enabled=False),
            TrunkRecord("v6", "2001:db8::1", 5080),
            TrunkRecord("named", "sbc.example.net", 5060),
        )
        assert svc.trunk_for_source("192.0.2.10", 5060).id == "udp"  # type: ignore[union-attr]
        assert svc.trunk_for_source("192.0.2.10", 5061) is None  # UDP: the port matters
        assert svc.trunk_for_source("192.0.2.10", 40000, "tcp") is None  # a UDP trunk
        assert svc.trunk_for_source("192.0.2.20", 40000, "tcp").id == "tcp"  # type: ignore[union-attr]
        assert svc.trunk_for_source("192.0.2.20", 40000, "udp") is None
        assert svc.trunk_for_source("192.0.2.30", 5060) is None  # disabled
        assert svc.trunk_for_source("2001:DB8::1", 5080).id == "v6"  # type: ignore[union-attr]
        assert svc.trunk_for_source("198.51.100.7", 5060) is None
        svc.set_addresses("named", ["198.51.100.7"])  # what the pinger resolved
        assert svc.trunk_for_source("198.51.100.7", 5060).id == "named"  # type: ignore[union-attr]
        # edits: disabling takes the trust away
        await svc.storage.trunks.update(TrunkRecord("udp", "192.0.2.10", 5060, enabled=False))
        await svc.reload(["udp"])
        assert svc.trunk_for_source("192.0.2.10", 5060) is None
        assert await svc.storage.trunks.by_address("192.0.2.20", 5060) is not None
        assert await svc.storage.trunks.by_address("192.0.2.10", 5060) is None

    asyncio.run(main())


def test_call_limits_unset_zero_and_cap() -> None:
    async def main() -> None:
        svc = await service(
            TrunkRecord("t", "192.0.2.1", max_incoming=2, max_outgoing=0),
            TrunkRecord("free", "192.0.2.2"),
        )
        assert svc.admit("t", "in", "a") is None and svc.admit("t", "in", "b") is None
        third = svc.admit("t", "in", "c")
        assert isinstance(third, PolicyRejection) and third.sip_status == 503
        assert "limit 2" in third.reason
        assert svc.admit("t", "in", "a") is None  # already counted: not twice
        assert svc.active("t", "in") == 2
        out = svc.admit("t", "out", "x")
        assert out is not None and out.sip_status == 503 and "outgoing calls disabled" in out.reason
        assert svc.active("t", "out") == 0
        assert svc.release("t", "in", "a") is True and svc.release("t", "in", "a") is False
        assert svc.admit("t", "in", "c") is None
        assert all(svc.admit("free", d, str(i)) is None for i in range(100) for d in ("in", "out"))
        assert svc.active("free", "out") == 100
        svc.clear_calls()
        assert svc.active("free", "out") == 0 and svc.active("t", "in") == 0

    asyncio.run(main())


def test_randomized_counts_return_to_zero() -> None:
    """Every call ends in one of the ways the B2BUA sees; counts never leak nor go negative."""

    async def main() -> None:
        svc = await service(TrunkRecord("t", "192.0.2.1", max_incoming=3, max_outgoing=2))
        rng = random.Random(7)
        live: dict[str, str] = {}
        endings = ("final-non-2xx", "cancel", "bye", "timeout", "double-release")
        for i in range(5000):
            if live and rng.random() < 0.5:
                call = rng.choice(sorted(live))
                direction = live.pop(call)
                how = rng.choice(endings)
                assert svc.release("t", direction, call)  # type: ignore[arg-type]
                if how == "double-release":
                    assert not svc.release("t", direction, call)  # type: ignore[arg-type]
            else:
                direction = rng.choice(("in", "out"))
                call = f"c{i}"
                cap = 3 if direction == "in" else 2
                verdict = svc.admit("t", direction, call)  # type: ignore[arg-type]
                counted = sum(1 for d in live.values() if d == direction)
                assert (verdict is None) == (counted < cap)
                if verdict is None:
                    live[call] = direction
            for d in ("in", "out"):
                assert svc.active("t", d) == sum(1 for x in live.values() if x == d)  # type: ignore[arg-type]
        for call, direction in list(live.items()):
            svc.release("t", direction, call)  # type: ignore[arg-type]
        assert svc.active("t", "in") == 0 and svc.active("t", "out") == 0

    asyncio.run(main())


def test_ping_results_drive_the_state() -> None:
    async def main() -> None:
        svc = await service(
            TrunkRecord("t", "192.0.2.1"),
            TrunkRecord("quiet", "192.0.2.2", ping=False),
            ping_failures=2,
        )
        assert svc.status("t").state == TrunkState.UNKNOWN  # type: ignore[union-attr]
        assert svc.status("quiet").state == TrunkState.DISABLED  # type: ignore[union-attr]
        svc.ping_result("t", ok=True, status=200, reason="200 OK", rtt=0.01)
        assert svc.status("t").state == TrunkState.UP  # type: ignore[union-attr]
        svc.ping_result("t", ok=False, status=None, reason="no answer")
        assert svc.status("t").state == TrunkState.UP  # one miss is not enough here
        svc.ping_result("t", ok=False, status=None, reason="no answer")
        assert svc.status("t").state == TrunkState.DOWN and not svc.is_up("t")  # type: ignore[union-attr]
        svc.ping_result("t", ok=True, status=404, reason="404 Not Found", rtt=0.02)  # alive
        st = svc.status("t")
        assert (
            st is not None and st.state == TrunkState.UP and st.failures == 0 and st.status == 404
        )
        await svc.stop()
        published = json.loads(await svc.storage.kv.get("trunk.status.t") or "{}")
        assert published["state"] == "up"

    asyncio.run(main())


def test_check_trunk() -> None:
    check_trunk(TrunkRecord("t", "192.0.2.1", uri_params="user=phone;x=1"))
    check_trunk(TrunkRecord("t", "2001:db8::1"))
    for bad in (
        TrunkRecord("t", "a b"),
        TrunkRecord("t", "1:2"),
        TrunkRecord("t", "h", uri_params="a b"),
        TrunkRecord("t", "h", caller_number="<x>"),
    ):
        with pytest.raises(ValueError):
            check_trunk(bad)


async def wait_trunk(server: Any, trunk_id: str, state: TrunkState, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        st = server.trunks.status(trunk_id)
        if st is not None and st.state == state:
            return st
        await asyncio.sleep(0.02)
    raise AssertionError(f"trunk {trunk_id} not {state.value}: {server.trunks.statuses()}")


@pytest.mark.slow
def test_options_ping_up_and_down_with_sipp(tmp_path: Path) -> None:
    require_sipp()

    async def main() -> None:
        async with running(tmp_path, **FAST) as server:
            warnings = server.hub.subscribe(["trunkWarning"])
            with start_sipp_uas(scenario="options_uas.xml", timeout=60) as uas:
                port = uas.port
                await server.storage.trunks.add(TrunkRecord("sipp", "127.0.0.1", port))
                st = await wait_trunk(server, "sipp", TrunkState.UP)
                assert st.status == 200 and st.rtt is not None and st.rtt < 0.5
                # OPTIONS from the trunk's address is trusted
                assert server.trunks.trunk_for_source("127.0.0.1", port).id == "sipp"
                result = await asyncio.to_thread(uas.stop)
                assert result.successful >= 1, result.describe()
            st = await wait_trunk(server, "sipp", TrunkState.DOWN, timeout=5)
            assert st.status is None and "no answer" in st.reason
            event = await asyncio.wait_for(warnings.get(), 5)  # on the API's /events channel
            assert event is not None and (event["trunk"], event["warning"]) == ("sipp", "down")
            # the peer comes back on the same port
            with start_sipp_uas(scenario="options_uas.xml", port=port, timeout=60):
                await wait_trunk(server, "sipp", TrunkState.UP, timeout=5)
                # pings off: no state
                await server.storage.trunks.update(
                    TrunkRecord("sipp", "127.0.0.1", port, ping=False)
                )
                await wait_trunk(server, "sipp", TrunkState.DISABLED, timeout=5)

    asyncio.run(asyncio.wait_for(main(), 90))


@pytest.mark.slow
def test_trunk_cli_with_a_running_server(tmp_path: Path) -> None:
    require_sipp()

    async def cli(*args: str, check: bool = True) -> Any:
        return await asyncio.to_thread(mss_cli, *args, data_dir=tmp_path, check=check)

    async def main() -> None:
        async with running(tmp_path, **FAST) as server:
            with start_sipp_uas(scenario="options_uas.xml", timeout=60) as uas:
                await cli(
                    "trunk",
                    "add",
                    "carrier",
                    "--host",
                    f"127.0.0.1:{uas.port}",
                    "--max-in",
                    "2",
                    "--max-out",
                    "0",
                    "--caller-number",
                    "0301234",
                    "--uri-params",
                    ";user=phone",
                    "--description",
                    "the carrier",
                )
                await wait_trunk(server, "carrier", TrunkState.UP)
                rows = json.loads((await cli("trunk", "list", "--json")).stdout)
                assert rows[0]["state"] == "up" and rows[0]["max_incoming"] == 2
                assert rows[0]["max_outgoing"] == 0 and rows[0]["uri_params"] == "user=phone"
                assert (
                    rows[0]["caller_number"] == "0301234"
                    and rows[0]["description"] == "the carrier"
                )
                text = (await cli("trunk", "list")).stdout
                assert "off" in text and "up" in text
                await cli("trunk", "set", "carrier", "--max-in", "-1", "--disable")
                await wait_trunk(server, "carrier", TrunkState.DISABLED)
                assert server.trunks.get("carrier").max_incoming is None  # type: ignore[union-attr]
                assert server.trunks.trunk_for_source("127.0.0.1", uas.port) is None
                await cli("trunk", "del", "carrier")
                for _ in range(50):
                    if server.trunks.get("carrier") is None:
                        break
                    await asyncio.sleep(0.05)
                assert server.trunks.get("carrier") is None
                bad = await cli("trunk", "del", "carrier", check=False)
                assert bad.returncode == 2 and "no trunk carrier" in bad.stderr
                bad = await cli("trunk", "add", "x", "--host", "1.2.3.4:99999", check=False)
                assert bad.returncode == 2 and bad.stderr.startswith("mss: error: host:")

    asyncio.run(asyncio.wait_for(main(), 90))
