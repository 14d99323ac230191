"""Calls through external lines and SIP trunks (issue 7, part 2), with real peers on loopback.

The server runs in the test's event loop (``serverutil.running``) so that the tests can read
its live counts and its event hub; every peer speaks SIP over real UDP sockets:

* sipp UACs and UASs (``tests/mss/scenarios``) for local users, providers and trunks;
* a provider written with :mod:`sippeers` where sipp cannot check the credentials (SHA-256
  digest with the IMS ``account@domain`` authorization name).

Local users are IP-authorized at their sipp's address and port (as in ``test_calls_sipp.py``),
except the owner of the line in the incoming test, which REGISTERs with digest first.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serverutil import free_udp_port, mss_cli, running
from sipp import SippResult, arun_sipp, require_sipp, start_sipp_uas, write_inf_file
from sippeers import DigestRegistrar, SipPeer

from fastsip.digest import ha1, verify_response
from fastsip.message import Request
from fastsip.parser import parse_auth
from mss.features.lines import LineState, line_numbers
from mss.storage import LineRecord, RouteRecord, TrunkRecord

pytestmark = pytest.mark.slow

FAST = {
    "timers.t1": 0.025,
    "timers.t2": 0.2,
    "lines.retry_min": 0.2,
    "lines.retry_max": 0.8,
    "auth.algorithms": "MD5",
}
NO_ANSWER = 'Reason: SIP;cause=480;text="No answer"'


def run(coro: Any, timeout: float = 120) -> Any:
    require_sipp()
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met in time: {what}")


async def add_user(server: Any, number: str, port: int | None = None, **fields: Any) -> None:
    if port is not None:
        fields["allow_ips"] = [f"127.0.0.1:{port}"]
    await server.users.add(number, f"pw-{number}", **fields)


async def add_line(server: Any, line: LineRecord) -> None:
    await server.storage.lines.add(line)
    await until(lambda: server.lines.get(line.id) is not None, what=f"line {line.id} loaded")
    await until(lambda: server.dialplan.resolve("9123")[0].kind == "line", what="9 -> line")


async def add_trunk(server: Any, trunk: TrunkRecord) -> None:
    await server.storage.trunks.add(trunk)
    await until(
        lambda: server.trunks.get(trunk.id) == trunk or server.trunks.get(trunk.id) is not None,
        what=f"trunk {trunk.id} loaded",
    )


async def add_route(server: Any, route: RouteRecord, probe: str) -> None:
    await server.storage.routes.add(route)
    await until(
        lambda: server.dialplan.resolve(probe)[0].route == route.id, what=f"route {route.id}"
    )


async def sipp_call(
    server: Any,
    scenario: str,
    *,
    callee: str,
    caller: str,
    port: int,
    tmp_path: Path,
    calls: int = 1,
    rate: float = 10,
    extra: tuple[str, ...] = (),
    **kw: Any,
) -> SippResult:
    return await arun_sipp(
        f"127.0.0.1:{server.port()}",
        scenario=scenario,
        service=callee,
        calls=calls,
        rate=rate,
        local_port=port,
        timeout=kw.pop("timeout", 30),
        workdir=tmp_path,
        extra=["-key", "caller", caller, *extra],
        **kw,
    )


async def cdrs(server: Any, expect: int) -> list[Any]:
    rows: list[Any] = []

    async def ready() -> bool:
        nonlocal rows
        await server.cdr.flush()
        rows = [r for r in await server.storage.cdrs.query() if r.end_at is not None]
        return len(rows) >= expect

    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while loop.time() < end and not await ready():
        await asyncio.sleep(0.05)
    assert len(rows) >= expect, rows
    return sorted(rows, key=lambda r: r.setup_at)


def invites(log: str) -> list[str]:
    """The INVITE requests (start line + headers) of a sipp -trace_msg log."""
    out = []
    for part in log.split("INVITE sip:")[1:]:
        out.append("INVITE sip:" + part.split("\n\n")[0])
    return out


def header(block: str, name: str) -> str:
    for line in block.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in {block}")


def counts_zero(server: Any) -> None:
    """Nothing is counted any more: trunks, lines, users."""
    for trunk in server.trunks.trunks():
        assert server.trunks.active(trunk.id, "in") == 0, trunk.id
        assert server.trunks.active(trunk.id, "out") == 0, trunk.id
    assert server.external.active() == 0 and server.external.snapshot()["lines"] == {}
    assert len(server.calls.counter) == 0 and server.b2bua.active_calls == 0


# -- 1. outgoing through a line -------------------------------------------------------------------
def test_line_out_digest_md5_and_per_line_no_answer_timer(tmp_path: Path) -> None:
    """local user → 9 + number → line → provider (sipp): 401 answered with the line's MD5
    credentials (same Call-ID, CSeq 2), From = the line account, URIs keep the domain while the
    packets go to the proxy address; the line's 2 s no-answer timer CANCELs and the caller gets
    480."""

    async def main() -> None:
        pa = free_udp_port()
        async with running(tmp_path, **FAST) as server:
            await add_user(server, "1001", pa)
            with start_sipp_uas(
                scenario="provider_uas_auth_ring.xml",
                workdir=tmp_path,
                trace_msg=True,
                extra=["-key", "authuser", "4930123", "-key", "authpass", "line-pw"],
            ) as provider:
                # the default out-group rule (9, strip 1, first line) created at first start
                await add_line(
                    server,
                    LineRecord(
                        "prov",
                        "4930123",
                        "provider.test",
                        password="line-pw",
                        register=False,
                        proxy=f"127.0.0.1:{provider.port}",
                        no_answer_timeout=2,
                    ),
                )
                caller = asyncio.ensure_future(
                    sipp_call(
                        server,
                        "b2bua_uac_final.xml",
                        callee="90301234",
                        caller="1001",
                        port=pa,
                        tmp_path=tmp_path,
                        trace_msg=True,
                    )
                )
                await until(lambda: server.b2bua.calls_active(), what="call ringing")
                [call] = server.b2bua.calls_active()
                assert call.routing.route == "line:prov"
                assert call.routing.no_answer_timeout == 2.0  # the line's timer, not 60 s
                r = await caller
                assert r.ok and r.step("480", "recv").messages == 1, r.describe()
                assert NO_ANSWER in r.message_log
                p = await asyncio.to_thread(provider.stop)
                assert p.successful == 1 and p.failed == 0, p.describe()
            first, second = invites(p.message_log)[:2]
            assert first.startswith("INVITE sip:0301234@provider.test SIP/2.0")  # 9 stripped
            assert second.startswith("INVITE sip:0301234@provider.test SIP/2.0")
            assert header(first, "From").startswith("<sip:4930123@provider.test>;tag=")
            assert header(first, "To") == "<sip:0301234@provider.test>"
            assert header(first, "CSeq") == "1 INVITE" and header(second, "CSeq") == "2 INVITE"
            assert header(first, "Call-ID") == header(second, "Call-ID")
            assert header(first, "From") == header(second, "From")
            auth = dict(parse_auth(header(second, "Authorization")).params)
            assert auth["username"] == "4930123" and auth["uri"] == "sip:0301234@provider.test"
            assert "Authorization" not in first
            assert p.message_log.count("ACK sip:") >= 2  # the 401's ACK and the 487's
            cancel = p.message_log[p.message_log.index("CANCEL sip:") :].split("\n\n")[0]
            assert NO_ANSWER in cancel
            [rec] = await cdrs(server, 1)
            assert (rec.route, rec.direction, rec.result, rec.dialed, rec.callee) == (
                "line:prov",
                "outbound",
                "no_answer",
                "90301234",
                "0301234",
            )
            counts_zero(server)

    run(main())


def test_line_out_sha256_with_ims_authorization_id(tmp_path: Path) -> None:
    """An IMS-like provider reachable only at its proxy address: SHA-256 challenge (407), the
    answer must use ``account@domain``; it then answers 486, relayed to the caller."""

    async def main() -> None:
        pa = free_udp_port()
        realm, account, domain, pw = "ims.test", "+8612345678", "gd.ims.test", "ims-pw"
        checked: list[bool] = []

        def provider(peer: SipPeer, req: Request, addr: tuple[str, int]) -> None:
            if req.method != "INVITE":
                return  # ACKs of our final responses
            creds = req.get_all("Proxy-Authorization")
            if not creds:
                peer.reply(
                    req,
                    addr,
                    407,
                    "Proxy Authentication Required",
                    [
                        (
                            "Proxy-Authenticate",
                            f'Digest realm="{realm}", nonce="n{len(peer.requests)}", algorithm=SHA-256, qop="auth"',
                        )
                    ],
                )
                return
            params = dict(parse_auth(creds[0]).params)
            ok = (
                params.get("username") == f"{account}@{domain}"
                and params.get("algorithm") == "SHA-256"
            )
            ok = ok and verify_response(
                params, method="INVITE", ha1_hex=ha1(f"{account}@{domain}", realm, pw, "SHA-256")
            )
            checked.append(ok)
            peer.reply(req, addr, 486 if ok else 403)

        peer = await SipPeer.open(provider)
        try:
            async with running(tmp_path, **FAST) as server:
                await add_user(server, "1001", pa)
                await add_line(
                    server,
                    LineRecord(
                        "ims",
                        account,
                        domain,
                        password=pw,
                        register=False,
                        auth_with_domain=True,
                        proxy=f"127.0.0.1:{peer.addr[1]}",
                    ),
                )
                r = await sipp_call(
                    server,
                    "b2bua_uac_final.xml",
                    callee="9075512345",
                    caller="1001",
                    port=pa,
                    tmp_path=tmp_path,
                )
                assert r.ok and r.step("486", "recv").messages == 1, r.describe()
                assert checked == [True]
                sent = [q for q, _ in peer.requests if q.method == "INVITE"]
                assert sent[0].uri_text == f"sip:075512345@{domain}"
                assert str(sent[0].from_.uri) == f"sip:{account}@{domain}"  # type: ignore[union-attr]
                assert sent[0].call_id == sent[-1].call_id and sent[-1].cseq.seq == 2  # type: ignore[union-attr]
                [rec] = await cdrs(server, 1)
                assert (rec.route, rec.result, rec.status) == ("line:ims", "busy", 486)
                counts_zero(server)
        finally:
            peer.close()

    run(main())


# -- 2. incoming through a line -------------------------------------------------------------------
def test_line_in_goes_to_the_owner(tmp_path: Path) -> None:
    """provider (sipp UAC, from the registrar's host, Request-URI = our registered Contact user)
    → line → its owner 1002, a sipp UAS that registered with digest."""

    async def main() -> None:
        pb, pp = free_udp_port(), free_udp_port()
        reg = await DigestRegistrar("4930123", "line-pw").start()
        try:
            async with running(tmp_path, **FAST) as server:
                await add_user(server, "1002")
                inf = write_inf_file(tmp_path / "reg.csv", [("1002", "pw-1002", "example.test")])
                r = await arun_sipp(
                    f"127.0.0.1:{server.port()}",
                    scenario="register_uac.xml",
                    calls=1,
                    local_port=pb,
                    inf_file=inf,
                    timeout=15,
                    workdir=tmp_path,
                )
                assert r.ok, r.describe()
                await add_line(
                    server,
                    LineRecord(
                        "prov",
                        "4930123",
                        f"127.0.0.1:{reg.addr[1]}",
                        password="line-pw",
                        owner="1002",
                        contact_user="mss4930123",
                    ),
                )
                await until(
                    lambda: server.lines.status("prov").state == LineState.REGISTERED,
                    what="line registered",
                )
                with start_sipp_uas(scenario="uas_answer.xml", port=pb, workdir=tmp_path) as uas:
                    r = await sipp_call(
                        server,
                        "b2bua_uac_call.xml",
                        callee="mss4930123",
                        caller="+4915112345",
                        port=pp,
                        tmp_path=tmp_path,
                        extra=("-d", "300"),
                    )
                    assert r.ok and r.successful == 1, r.describe()
                    u = await asyncio.to_thread(uas.stop)
                    assert u.successful == 1 and u.failed == 0, u.describe()
                [rec] = await cdrs(server, 1)
                assert (
                    rec.caller,
                    rec.dialed,
                    rec.callee,
                    rec.route,
                    rec.direction,
                    rec.result,
                ) == ("+4915112345", "mss4930123", "1002", "line:prov", "inbound", "answered")
                assert rec.callee_addr == f"udp:127.0.0.1:{pb}"
                # a called number (DID) mapped to another local user with the CLI
                pc = free_udp_port()
                await add_user(server, "1003", pc)
                await asyncio.to_thread(
                    mss_cli, "line", "set", "prov", "--number", "0301555=1003", data_dir=tmp_path
                )
                await until(
                    lambda: line_numbers(server.lines.get("prov")) == {"0301555": "1003"},
                    what="numbers reloaded",
                )
                with start_sipp_uas(scenario="uas_answer.xml", port=pc, workdir=tmp_path) as uas:
                    r = await sipp_call(
                        server,
                        "provider_uac_did.xml",
                        callee="mss4930123",
                        caller="+4915112345",
                        port=pp,
                        tmp_path=tmp_path,
                        extra=("-key", "did", "0301555", "-d", "300"),
                    )
                    assert r.ok and r.successful == 1, r.describe()
                    u = await asyncio.to_thread(uas.stop)
                    assert u.successful == 1 and u.failed == 0, u.describe()
                rec = (await cdrs(server, 2))[-1]
                assert (rec.callee, rec.route, rec.callee_addr) == (
                    "1003",
                    "line:prov",
                    f"udp:127.0.0.1:{pc}",
                )
                bad = await asyncio.to_thread(
                    mss_cli,
                    "line",
                    "set",
                    "prov",
                    "--number",
                    "0301555",
                    data_dir=tmp_path,
                    check=False,
                )
                assert bad.returncode == 2 and "number: expected NUMBER=USER" in bad.stderr
                # the same host with another user and port is not the provider: challenged
                r = await sipp_call(
                    server,
                    "b2bua_uac_final.xml",
                    callee="1002",
                    caller="+4915112345",
                    port=free_udp_port(),
                    tmp_path=tmp_path,
                )
                assert r.ok and r.step("407", "recv").messages == 1, r.describe()
                counts_zero(server)
        finally:
            reg.close()

    run(main())


# -- 3. trunks --------------------------------------------------------------------------------------
def test_trunk_max_in_2_third_call_503_with_event(tmp_path: Path) -> None:
    async def main() -> None:
        pt, pb = free_udp_port(), free_udp_port()
        async with running(tmp_path, **FAST) as server:
            sub = server.hub.subscribe(["trunkWarning"])
            await add_user(server, "1002", pb)
            await add_trunk(
                server, TrunkRecord("carrier", "127.0.0.1", pt, max_incoming=2, ping=False)
            )
            with start_sipp_uas(scenario="uas_answer.xml", port=pb, workdir=tmp_path) as uas:
                r = await sipp_call(
                    server,
                    "b2bua_uac_call.xml",
                    callee="1002",
                    caller="0301999",
                    port=pt,
                    tmp_path=tmp_path,
                    calls=3,
                    rate=50,
                    extra=("-d", "2000"),
                    trace_msg=True,
                )
                assert r.successful == 2 and r.failed == 1, r.describe()
                assert (
                    "SIP/2.0 503 Service Unavailable (trunk carrier incoming call limit 2"
                    in r.message_log
                )
                u = await asyncio.to_thread(uas.stop)
                assert u.successful == 2, u.describe()
            event = await asyncio.wait_for(sub.get(), 5)
            assert event is not None
            assert (event["type"], event["trunk"], event["warning"], event["direction"]) == (
                "trunkWarning",
                "carrier",
                "limit",
                "in",
            )
            rows = await cdrs(server, 3)
            assert sorted(x.result for x in rows) == ["answered", "answered", "failed"]
            [failed] = [x for x in rows if x.result == "failed"]
            assert (
                failed.status == 503 and "limit 2" in failed.reason and failed.caller == "0301999"
            )
            answered = [(x.route, x.direction, x.callee) for x in rows if x.result == "answered"]
            assert answered == [("trunk:carrier", "inbound", "1002")] * 2
            counts_zero(server)

    run(main())


def test_trunk_max_in_0_rejects_incoming_while_outgoing_works(tmp_path: Path) -> None:
    """Incoming disabled (503 for every call); outgoing through the same trunk works, with the
    unified caller number in From and the extra Request-URI parameters."""

    async def main() -> None:
        pt, pa, pb = free_udp_port(), free_udp_port(), free_udp_port()
        async with running(tmp_path, **FAST) as server:
            await add_user(server, "1001", pa)
            await add_user(server, "1002", pb)
            await add_trunk(
                server,
                TrunkRecord(
                    "pbx2",
                    "127.0.0.1",
                    pt,
                    max_incoming=0,
                    ping=False,
                    caller_number="0301234",
                    uri_params="user=phone",
                ),
            )
            await add_route(server, RouteRecord("t", "8", "trunk:pbx2", strip=1), "8555")
            r = await sipp_call(
                server,
                "b2bua_uac_final.xml",
                callee="1002",
                caller="0309999",
                port=pt,
                tmp_path=tmp_path,
                calls=3,
                rate=20,
            )
            assert r.ok and r.step("503", "recv").messages == 3, r.describe()
            with start_sipp_uas(
                scenario="uas_answer.xml", port=pt, workdir=tmp_path, trace_msg=True
            ) as trunk:
                r = await sipp_call(
                    server,
                    "b2bua_uac_call.xml",
                    callee="8555",
                    caller="1001",
                    port=pa,
                    tmp_path=tmp_path,
                    extra=("-d", "300"),
                )
                assert r.ok and r.successful == 1, r.describe()
                u = await asyncio.to_thread(trunk.stop)
                assert u.successful == 1, u.describe()
            [inv] = invites(u.message_log)
            assert inv.startswith(f"INVITE sip:555@127.0.0.1:{pt};user=phone SIP/2.0")
            assert header(inv, "From").startswith("<sip:0301234@127.0.0.1>;tag=")
            rows = await cdrs(server, 4)
            assert (
                sorted((x.result, x.status) for x in rows)
                == [("answered", 200)] + [("failed", 503)] * 3
            )
            out = next(x for x in rows if x.result == "answered")
            assert (out.route, out.direction, out.callee) == ("trunk:pbx2", "outbound", "555")
            counts_zero(server)

    run(main())


def test_untrusted_source_is_challenged_whatever_its_from_user(tmp_path: Path) -> None:
    """Not the trunk's port: 407 for an existing user's From and for an unknown one alike."""

    async def main() -> None:
        pt = free_udp_port()
        async with running(tmp_path, **FAST) as server:
            await add_user(server, "1002")
            await add_trunk(server, TrunkRecord("carrier", "127.0.0.1", pt, ping=False))
            for caller in ("1002", "0301999"):
                r = await sipp_call(
                    server,
                    "b2bua_uac_final.xml",
                    callee="1002",
                    caller=caller,
                    port=free_udp_port(),
                    tmp_path=tmp_path,
                )
                assert r.ok and r.step("407", "recv").messages == 1, r.describe()
            assert server.b2bua.stats["calls"] == 0  # never routed

    run(main())


def test_fallback_route_after_5xx_and_over_limit(tmp_path: Path) -> None:
    """Rule ``8`` → trunk a, fallback → trunk b. a answers 501: the call goes to b. Then a is
    over its limit (max-out 0): the call goes to b at once."""

    async def main() -> None:
        pa_, ta, tb = free_udp_port(), free_udp_port(), free_udp_port()
        async with running(tmp_path, **FAST) as server:
            await add_user(server, "1001", pa_)
            await add_trunk(server, TrunkRecord("a", "127.0.0.1", ta, ping=False))
            await add_trunk(server, TrunkRecord("b", "127.0.0.1", tb, ping=False))
            await add_route(server, RouteRecord("viab", "", "trunk:b"), "0777")
            await add_route(
                server, RouteRecord("viaa", "8", "trunk:a", strip=1, fallback="viab"), "8555"
            )
            with (
                start_sipp_uas(scenario="uas_reject.xml", port=ta, workdir=tmp_path) as a,  # 501
                start_sipp_uas(scenario="uas_answer.xml", port=tb, workdir=tmp_path) as b,
            ):
                r = await sipp_call(
                    server,
                    "b2bua_uac_call.xml",
                    callee="8555",
                    caller="1001",
                    port=pa_,
                    tmp_path=tmp_path,
                    extra=("-d", "200"),
                )
                assert r.ok and r.successful == 1, r.describe()
                ra = await asyncio.to_thread(a.stop)
                assert ra.successful == 1, ra.describe()
                await server.storage.trunks.update(
                    TrunkRecord("a", "127.0.0.1", ta, ping=False, max_outgoing=0)
                )
                await until(lambda: server.trunks.get("a").max_outgoing == 0, what="a reloaded")
                r = await sipp_call(
                    server,
                    "b2bua_uac_call.xml",
                    callee="8556",
                    caller="1001",
                    port=pa_,
                    tmp_path=tmp_path,
                    extra=("-d", "200"),
                )
                assert r.ok and r.successful == 1, r.describe()
                rb = await asyncio.to_thread(b.stop)
                assert rb.successful == 2, rb.describe()
            rows = await cdrs(server, 2)
            assert [(x.route, x.result, x.callee) for x in rows] == [
                ("trunk:b", "answered", "8555"),
                ("trunk:b", "answered", "8556"),
            ]
            counts_zero(server)

    run(main())


def test_mixed_run_counts_return_to_zero(tmp_path: Path) -> None:
    """Incoming and outgoing trunk calls ending in every way — answered, busy, cancelled by the
    caller, released by the no-answer timer, over the cap (503) — in a seeded random order, two
    at a time: the trunk counts return to 0, and never exceed the caps on the way."""

    async def main() -> None:
        p_in, p_out, pa, pb, pc, pd = (free_udp_port() for _ in range(6))
        async with running(tmp_path, **FAST) as server:
            await add_user(server, "1001", pa)
            await add_user(server, "1002", pb)  # answers
            await add_user(server, "1003", pc)  # busy
            await add_user(server, "1004", pd, no_answer_timeout=1)  # rings
            await add_trunk(
                server, TrunkRecord("in", "127.0.0.1", p_in, max_incoming=1, ping=False)
            )
            await add_trunk(
                server, TrunkRecord("out", "127.0.0.1", p_out, max_outgoing=3, ping=False)
            )
            await add_route(server, RouteRecord("t", "8", "trunk:out", strip=1), "8555")
            peak = {"in": 0, "out": 0}

            async def watch() -> None:
                while True:
                    peak["in"] = max(peak["in"], server.trunks.active("in", "in"))
                    peak["out"] = max(peak["out"], server.trunks.active("out", "out"))
                    await asyncio.sleep(0.01)

            incoming = [  # (scenario, callee, extra): all from the trunk's port, one at a time
                ("b2bua_uac_call.xml", "1002", ("-d", "300")),
                ("b2bua_uac_final.xml", "1003", ()),
                ("b2bua_uac_cancel.xml", "1004", ()),
                ("b2bua_uac_final.xml", "1004", ()),
            ]
            outgoing = [  # local user 1001 → 8 + number → trunk "out" (a sipp UAS, answers)
                ("b2bua_uac_call.xml", "8555", ("-d", "300")),
                ("b2bua_uac_call.xml", "8556", ("-d", "300")),
            ]
            rng = random.Random(7)
            rng.shuffle(incoming)
            watcher = asyncio.ensure_future(watch())
            with (
                start_sipp_uas(scenario="uas_answer.xml", port=pb, workdir=tmp_path),
                start_sipp_uas(scenario="b2bua_uas_busy.xml", port=pc, workdir=tmp_path),
                start_sipp_uas(scenario="b2bua_uas_ring.xml", port=pd, workdir=tmp_path),
                start_sipp_uas(scenario="uas_answer.xml", port=p_out, workdir=tmp_path),
            ):
                for i, (scenario, callee, extra) in enumerate(incoming):
                    jobs = [
                        sipp_call(
                            server,
                            scenario,
                            callee=callee,
                            caller="0301999",
                            port=p_in,
                            tmp_path=tmp_path,
                            extra=extra,
                        )
                    ]
                    if i < len(outgoing):
                        sc, num, ex = outgoing[i]
                        jobs.append(
                            sipp_call(
                                server,
                                sc,
                                callee=num,
                                caller="1001",
                                port=pa,
                                tmp_path=tmp_path,
                                calls=3,
                                rate=50,
                                extra=ex,
                            )
                        )
                    results = await asyncio.gather(*jobs)
                    assert results[0].ok, results[0].describe()
                    if len(results) > 1:
                        assert results[1].successful == 3, results[1].describe()
                # over the cap: two calls at once from the trunk, max-in 1
                r = await sipp_call(
                    server,
                    "b2bua_uac_call.xml",
                    callee="1002",
                    caller="0301999",
                    port=p_in,
                    tmp_path=tmp_path,
                    calls=2,
                    rate=50,
                    extra=("-d", "800"),
                )
                assert r.successful == 1 and r.failed == 1, r.describe()
            watcher.cancel()
            rows = await cdrs(server, 4 + 6 + 2)
            results = sorted(x.result for x in rows)
            assert results.count("answered") == 1 + 6 + 1
            assert {"busy", "cancelled", "no_answer", "failed"} <= set(results), results
            assert peak["in"] <= 1 and peak["out"] <= 3 and peak["out"] >= 1, peak
            counts_zero(server)

    run(main(), timeout=180)


# -- 5. lineStatus events ---------------------------------------------------------------------------
def test_line_status_events_on_the_hub(tmp_path: Path) -> None:
    async def main() -> None:
        reg = await DigestRegistrar("alice", "pw").start()
        try:
            async with running(tmp_path, **FAST) as server:
                sub = server.hub.subscribe(["lineStatus"])
                await server.storage.lines.add(
                    LineRecord("l1", "alice", f"127.0.0.1:{reg.addr[1]}", password="pw")
                )
                states = []
                while "registered" not in states:
                    event = await asyncio.wait_for(sub.get(), 5)
                    assert (
                        event is not None
                        and event["type"] == "lineStatus"
                        and event["line"] == "l1"
                    )
                    states.append(event["state"])
                assert states == ["registering", "registered"]
                await server.storage.lines.update(
                    LineRecord(
                        "l1", "alice", f"127.0.0.1:{reg.addr[1]}", password="pw", enabled=False
                    )
                )
                event = await asyncio.wait_for(sub.get(), 5)
                assert event is not None and event["state"] == "unregistered"
                assert event["reason"] == "line disabled"
        finally:
            reg.close()

    run(main())


# -- 3b. randomized: every ending, through the B2BUA, with the counts checked after each call ----
def test_randomized_trunk_calls_through_the_b2bua(tmp_path: Path) -> None:
    """Phones (tests/mss/phones.py: real UDP sockets) as local users and as the two trunks' far
    ends. Each round, in a seeded random order, places an incoming or an outgoing trunk call
    and ends it one way: BYE from either side, busy, 5xx, caller CANCEL, no-answer timer, or
    the call over the cap (the caps' worth of calls ring, one more gets 503, then the ringing
    ones are cancelled). After every round nothing is counted any more; on the way the counts
    are exactly the calls ringing."""
    from phones import SDP_ANSWER, Phone

    from fastsip.message import Response

    async def main() -> None:
        async with running(tmp_path, **{**FAST, "calls.no_answer_timeout": 1}) as server:
            await add_user(server, "1001")
            await add_user(server, "1002")
            port = server.port("udp")
            a = await Phone.open(port, "1001", "pw-1001")
            b = await Phone.open(port, "1002", "pw-1002")
            t_in = await Phone.open(port, "0301999")
            t_out = await Phone.open(port, "0309000")
            try:
                await a.register()
                await b.register()
                await add_trunk(
                    server,
                    TrunkRecord("tin", "127.0.0.1", t_in.addr[1], max_incoming=2, ping=False),
                )
                await add_trunk(
                    server,
                    TrunkRecord("tout", "127.0.0.1", t_out.addr[1], max_outgoing=2, ping=False),
                )
                await add_route(server, RouteRecord("t", "8", "trunk:tout", strip=1), "8555")
                caps = {"in": 2, "out": 2}

                def sides(direction: str) -> tuple[Phone, Phone, str, str, bool]:
                    if direction == "in":
                        return t_in, b, "1002", "tin", False
                    return a, t_out, "8555", "tout", True

                async def ring(direction: str, tag: str) -> tuple[Any, Any]:
                    caller, callee, number, _, auth = sides(direction)
                    d = await caller.call(number, auth=auth)
                    inv = await callee.request_in("INVITE")
                    callee.reply(inv, 180, tag=tag)
                    await caller.response(180, final=False)
                    return d, inv

                async def cancel(direction: str, d: Any, inv: Any, tag: str) -> None:
                    caller, callee, *_ = sides(direction)
                    host, p = caller.addr
                    caller.send(
                        (
                            f"CANCEL {d.uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{p};branch={d.branch};rport\r\n"
                            f"Max-Forwards: 70\r\nFrom: <sip:{caller.number}@example.test>;tag={d.local_tag}\r\n"
                            f"To: {d.to}\r\nCall-ID: {d.call_id}\r\nCSeq: {d.cseq} CANCEL\r\n"
                            "Content-Length: 0\r\n\r\n"
                        ).encode()
                    )
                    c = await callee.request_in("CANCEL")
                    callee.reply(c, 200)
                    callee.reply(inv, 487, tag=tag)
                    r = await caller.response(487)
                    caller.send(d.ack_for(r))

                def counted(direction: str) -> int:
                    trunk = sides(direction)[3]
                    return server.trunks.active(trunk, direction)

                rng = random.Random(11)
                endings = (
                    "caller_bye",
                    "callee_bye",
                    "busy",
                    "5xx",
                    "cancel",
                    "no_answer",
                    "over_cap",
                )
                seen: list[tuple[str, str]] = []
                for round_ in range(28):
                    direction = rng.choice(("in", "out"))
                    how = (
                        endings[round_ % len(endings)]
                        if round_ < len(endings)
                        else rng.choice(endings)
                    )
                    seen.append((direction, how))
                    caller, callee, number, _, auth = sides(direction)
                    if how == "over_cap":
                        ringing = [await ring(direction, f"r{i}") for i in range(caps[direction])]
                        assert counted(direction) == caps[direction]
                        d = await caller.call(number, auth=auth)
                        r = await caller.response(503)
                        assert f"limit {caps[direction]} reached" in r.reason
                        caller.send(d.ack_for(r))
                        for i, (dd, inv) in enumerate(ringing):
                            await cancel(direction, dd, inv, f"r{i}")
                    else:
                        d, inv = await ring(direction, "t")
                        assert counted(direction) == 1
                        if how in ("caller_bye", "callee_bye"):
                            callee.reply(inv, 200, tag="t", body=SDP_ANSWER)
                            ok = await caller.response(200)
                            d.confirmed(ok)
                            caller.send(d.ack())
                            await callee.request_in("ACK")
                            assert counted(direction) == 1
                            if how == "caller_bye":
                                caller.send(d.in_dialog("BYE"))
                                await caller.wait(
                                    lambda m: isinstance(m, Response) and m.cseq.method == "BYE"
                                )
                                callee.reply(await callee.request_in("BYE"), 200)
                            else:
                                bd = callee.answer_dialog(inv, "t")
                                callee.send(bd.in_dialog("BYE"))
                                await callee.wait(
                                    lambda m: isinstance(m, Response) and m.cseq.method == "BYE"
                                )
                                caller.reply(await caller.request_in("BYE"), 200)
                        elif how in ("busy", "5xx"):
                            status = 486 if how == "busy" else 503
                            callee.reply(inv, status, tag="t")
                            r = await caller.response(status)
                            caller.send(d.ack_for(r))
                        elif how == "cancel":
                            await cancel(direction, d, inv, "t")
                        else:  # the 1 s no-answer timer
                            c = await callee.request_in("CANCEL", timeout=5)
                            callee.reply(c, 200)
                            callee.reply(inv, 487, tag="t")
                            r = await caller.response(480, timeout=5)
                            caller.send(d.ack_for(r))
                    await until(lambda: server.b2bua.active_calls == 0, 3, "calls ended")
                    assert counted("in") == 0 and counted("out") == 0, (round_, direction, how)
                assert {h for _, h in seen} == set(endings)
                assert {d for d, _ in seen} == {"in", "out"}
                counts_zero(server)
                # calls ringing when the server stops (what Server.stop does with calls): freed
                await ring("in", "s1")
                await ring("out", "s2")
                assert counted("in") == 1 and counted("out") == 1
                await server.b2bua.close()
                assert (await t_in.response(503)).status == 503
                assert (await a.response(503)).status == 503
                counts_zero(server)
            finally:
                for phone in (a, b, t_in, t_out):
                    phone.close()

    run(main())
