"""The B2BUA against a real in-process server on loopback: fine-grained call cases.

Phones (tests/mss/phones.py) are real UDP sockets that register with digest and place calls
with the 407 challenge, so every message crosses the transport, the transaction layer and the
B2BUA exactly as with a real phone. sipp and baresip cover the same ground with real peers in
test_calls_sipp.py / test_calls_baresip.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from netutil import LOOP_IDS, run_on
from phones import SDP, SDP_ANSWER, Phone
from serverutil import running

from fastsip.message import Request, Response
from mss.features.calls import CallCounter
from mss.sip.b2bua import _Entropy, best_response, parse_reason


@pytest.fixture(params=LOOP_IDS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def pbx(
    tmp_path: Path,
    numbers: tuple[str, ...] = ("1001", "1002"),
    *,
    register: tuple[str, ...] | None = None,
    user_fields: dict[str, dict[str, Any]] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Any, dict[str, Phone]]]:
    """A server with users (password ``pw-<number>``) and one registered phone per number."""
    overrides.setdefault("storage.backend", "memory")
    overrides.setdefault("stun.enabled", False)  # serverutil's "stun.port": None keeps 3478
    async with running(tmp_path, **overrides) as srv:
        phones: dict[str, Phone] = {}
        for n in numbers:
            await srv.users.add(n, f"pw-{n}", **(user_fields or {}).get(n, {}))
        for n in numbers:
            phones[n] = await Phone.open(srv.port("udp"), n, f"pw-{n}")
            if register is None or n in register:
                await phones[n].register()
        try:
            yield srv, phones
        finally:
            for p in phones.values():
                p.close()


async def cdrs(srv: Any) -> list[Any]:
    await srv.cdr.flush()
    return await srv.storage.cdrs.query()


def run(loop_name: str, fn: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    return run_on(loop_name, fn, timeout)


async def ring(a: Phone, b: Phone, callee: str | None = None, **kw: Any) -> tuple[Any, Request]:
    """A calls B; returns A's dialog and the INVITE B received (B sends nothing yet)."""
    d = await a.call(callee or b.number, **kw)
    inv = await b.request_in("INVITE")
    return d, inv


async def connect(a: Phone, b: Phone, **kw: Any) -> tuple[Any, Any, Request]:
    """A calls B, B rings and answers, A ACKs; returns both dialogs and B's INVITE."""
    d, inv = await ring(a, b, **kw)
    b.reply(inv, 180, tag="btag")
    assert (await a.response(180, final=False)).status == 180
    b.reply(inv, 200, tag="btag", body=SDP_ANSWER)
    ok = await a.response(200)
    d.confirmed(ok)
    a.send(d.ack())
    ack = await b.request_in("ACK")
    assert ack.body == b""
    bd = b.answer_dialog(inv, "btag")
    return d, bd, inv


# --------------------------------------------------------------------------------------------
def test_basic_call_caller_hangs_up(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            d, inv = await ring(a, b)
            # a new leg: new Call-ID, From = caller identity, To = callee, Contact = the server
            assert inv.call_id != d.call_id
            assert inv.from_.uri.user == "1001" and inv.to.uri.user == "1002"
            assert inv.contact.uri.port == srv.port("udp")
            assert inv.body == SDP and inv.content_type == "application/sdp"
            assert inv.uri_text == b.contact.strip("<>")  # the registered Contact
            assert int(inv.get("Max-Forwards")) == 69
            b.reply(inv, 180, tag="btag")
            r180 = await a.response(180, final=False)
            assert r180.to.tag and r180.call_id == d.call_id
            b.reply(inv, 200, tag="btag", body=SDP_ANSWER)
            ok = await a.response(200)
            assert ok.body == SDP_ANSWER and ok.to.tag == r180.to.tag
            assert ok.contact.uri.port == srv.port("udp")
            d.confirmed(ok)
            a.send(d.ack())
            await b.request_in("ACK")
            assert srv.b2bua.active_calls == 1
            a.send(
                d.in_dialog(
                    "BYE", headers=[("Reason", 'Q.850;cause=16;text="Normal call clearing"')]
                )
            )
            assert (await a.response()).status == 200
            bye = await b.request_in("BYE")
            assert bye.call_id == inv.call_id and bye.from_.tag == inv.from_.tag
            assert bye.get("Reason", "").startswith("Q.850")
            b.reply(bye, 200)
            assert srv.b2bua.active_calls == 0
            [rec] = await cdrs(srv)
            assert rec.result == "answered" and rec.status == 200 and rec.hangup == "caller"
            assert rec.caller == "1001" and rec.dialed == "1002" and rec.callee == "1002"
            assert rec.cause == 16 and rec.answer_at and rec.ring_at and rec.end_at
            assert rec.callee_addr == "udp:{}:{}".format(
                *b.addr
            ) and rec.caller_addr == "udp:{}:{}".format(*a.addr)
            assert srv.calls.counter.snapshot() == {}

    run(loop_name, main)


def test_callee_hangs_up_and_reinvite_info_update(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            d, bd, inv = await connect(a, b)
            # re-INVITE from the caller: relayed with its own CSeq, 2xx relayed, ACK relayed
            a.send(
                d.in_dialog(
                    "INVITE",
                    body=SDP,
                    headers=[("Session-Expires", "1800;refresher=uac"), ("Min-SE", "90")],
                )
            )
            re_inv = await b.request_in("INVITE")
            assert re_inv.call_id == inv.call_id and re_inv.cseq.seq == 2
            assert (
                re_inv.get("Session-Expires") == "1800;refresher=uac"
                and re_inv.get("Min-SE") == "90"
            )
            b.reply(
                re_inv, 200, body=SDP_ANSWER, headers=[("Session-Expires", "1800;refresher=uac")]
            )
            ok = await a.response(200)
            assert ok.cseq.seq == d.cseq and ok.body == SDP_ANSWER and ok.get("Session-Expires")
            a.send(d.in_dialog("ACK", cseq=d.cseq))
            ack = await b.request_in("ACK")
            assert ack.cseq.seq == 2
            # INFO and UPDATE from the callee towards the caller
            b.send(
                bd.in_dialog(
                    "INFO",
                    body=b"Signal=5\r\nDuration=160\r\n",
                    content_type="application/dtmf-relay",
                )
            )
            info = await a.request_in("INFO")
            assert (
                info.body.startswith(b"Signal=5")
                and info.get("Content-Type") == "application/dtmf-relay"
            )
            assert info.call_id == d.call_id and info.to.tag == d.local_tag
            a.reply(info, 200)
            assert (await b.response()).status == 200
            # in-dialog MESSAGE from the caller
            a.send(d.in_dialog("MESSAGE", body=b"hello", content_type="text/plain"))
            m = await b.request_in("MESSAGE")
            assert m.body == b"hello"
            b.reply(m, 202)
            assert (await a.response()).status == 202
            # the callee hangs up
            b.send(bd.in_dialog("BYE"))
            assert (await b.response()).status == 200
            bye = await a.request_in("BYE")
            assert bye.call_id == d.call_id
            a.reply(bye, 200)
            [rec] = await cdrs(srv)
            assert rec.result == "answered" and rec.hangup == "callee"
            # the dialog is gone: 481
            a.send(d.in_dialog("INFO"))
            assert (await a.response()).status == 481

    run(loop_name, main)


def test_late_offer_ack_carries_answer(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path) as (_srv, ph):
            a, b = ph["1001"], ph["1002"]
            d, inv = await ring(a, b, body=b"")
            assert inv.body == b""
            b.reply(inv, 200, tag="t", body=SDP_ANSWER)  # the offer
            ok = await a.response(200)
            d.confirmed(ok)
            b_before = await b.nothing("ACK", 0.3)
            assert b_before, "the callee must not be ACKed before the caller's ACK"
            a.send(d.ack(body=SDP))
            ack = await b.request_in("ACK")
            assert ack.body == SDP and ack.content_type == "application/sdp"

    run(loop_name, main)


def test_cancel_while_ringing(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            d, inv = await ring(a, b)
            b.reply(inv, 180, tag="t")
            await a.response(180, final=False)
            host, port = a.addr
            cancel = (
                f"CANCEL {d.uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={d.branch};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:1001@example.test>;tag={d.local_tag}\r\nTo: {d.to}\r\n"
                f"Call-ID: {d.call_id}\r\nCSeq: {d.cseq} CANCEL\r\nContent-Length: 0\r\n\r\n"
            )
            a.send(cancel.encode())
            c = await b.request_in("CANCEL")
            assert c.call_id == inv.call_id and c.via.branch == inv.via.branch
            b.reply(c, 200)
            b.reply(inv, 487, tag="t")
            r = await a.wait(lambda m: isinstance(m, Response) and m.status == 487)
            assert r.cseq.method == "INVITE"
            [rec] = await cdrs(srv)
            assert rec.result == "cancelled" and rec.status == 487 and rec.hangup == "caller"
            assert srv.calls.counter.snapshot() == {}

    run(loop_name, main)


def test_busy_and_failures(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, ("1001", "1002", "1003"), register=("1001", "1002")) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            d, inv = await ring(a, b)
            b.reply(inv, 486, tag="t")
            r = await a.response()
            assert r.status == 486
            assert (await b.request_in("ACK")).cseq.method == "ACK"  # the client transaction ACKs
            a.send(d.ack_for(r))
            # unknown number → 404; known but offline → 480
            await a.call("7777")
            assert (await a.response()).status == 404
            await a.call("1003")
            assert (await a.response()).status == 480
            recs = await cdrs(srv)
            assert sorted(x.status for x in recs) == [404, 480, 486]
            assert {x.result for x in recs} == {"busy", "rejected"}

    run(loop_name, main)


def test_415_and_483(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path) as (_srv, ph):
            a = ph["1001"]
            await a.call("1002", body=b"<xml/>", content_type="application/xml")
            r = await a.response()
            assert r.status == 415 and r.get("Accept") == "application/sdp"
            a.send(
                a.request(
                    "INVITE",
                    "sip:1002@example.test",
                    call_id="mf0",
                    from_tag="x",
                    to="<sip:1002@example.test>",
                    cseq=1,
                    body=SDP,
                ).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
            )
            assert (await a.response(483)).status == 483

    run(loop_name, main)


def test_no_answer_timer_per_user(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        fields = {"1002": {"no_answer_timeout": 1}}
        async with pbx(tmp_path, user_fields=fields) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            assert srv.users.get("1002").extra["no_answer_timeout"] == 1
            _d, inv = await ring(a, b)
            b.reply(inv, 180, tag="t")
            await a.response(180, final=False)
            c = await b.request_in("CANCEL", timeout=3)
            assert parse_reason(c.get("Reason")) == (480, "No answer")
            r = await a.response()
            assert r.status == 480 and parse_reason(r.get("Reason"))[0] == 480
            b.reply(c, 200)
            b.reply(inv, 487, tag="t")
            [rec] = await cdrs(srv)
            assert rec.result == "no_answer" and rec.status == 480 and rec.hangup == "system"

    run(loop_name, main)


def test_forking_first_answer_wins(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **{"storage.backend": "memory", "stun.enabled": False}) as srv:
            await srv.users.add("1001", "pw-1001")
            await srv.users.add("1002", "pw-1002", multi_device=True)
            a = await Phone.open(srv.port("udp"), "1001", "pw-1001")
            await a.register()
            devices = [await Phone.open(srv.port("udp"), "1002", "pw-1002") for _ in range(3)]
            for p in devices:
                await p.register()
            assert len(srv.location.lookup("1002")) == 3
            d = await a.call("1002")
            invs = [await p.request_in("INVITE") for p in devices]
            assert len({i.call_id for i in invs}) == 3
            for i, (p, inv) in enumerate(zip(devices, invs, strict=False)):
                p.reply(inv, 180, tag=f"t{i}")
            devices[1].reply(invs[1], 200, tag="t1", body=SDP_ANSWER)
            ok = await a.response(200)
            d.confirmed(ok)
            for i in (0, 2):
                c = await devices[i].request_in("CANCEL")
                assert c.get("Reason") == 'SIP;cause=200;text="Call completed elsewhere"'
                devices[i].reply(c, 200)
            devices[2].reply(invs[2], 487, tag="t2")
            a.send(d.ack())
            await devices[1].request_in("ACK")
            # device 0 answered as the CANCEL crossed: its late 2xx is ACKed and BYEd
            devices[0].reply(invs[0], 200, tag="t0", body=SDP_ANSWER)
            assert (await devices[0].request_in("ACK")).cseq.seq == 1
            bye = await devices[0].request_in("BYE")
            devices[0].reply(bye, 200)
            a.send(d.in_dialog("BYE"))
            await a.response(200)
            bye = await devices[1].request_in("BYE")
            devices[1].reply(bye, 200)
            recs = await cdrs(srv)
            assert [r.result for r in recs] == ["answered"]
            for p in [a, *devices]:
                p.close()

    run(loop_name, main)


def test_forking_best_response(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **{"storage.backend": "memory", "stun.enabled": False}) as srv:
            await srv.users.add("1001", "pw-1001")
            await srv.users.add("1002", "pw-1002", multi_device=True)
            a = await Phone.open(srv.port("udp"), "1001", "pw-1001")
            await a.register()
            devices = [await Phone.open(srv.port("udp"), "1002", "pw-1002") for _ in range(2)]
            for p in devices:
                await p.register()
            # every device busy → 486
            await a.call("1002")
            invs = [await p.request_in("INVITE") for p in devices]
            devices[0].reply(invs[0], 486, tag="x")
            with pytest.raises(asyncio.TimeoutError):
                await a.response(timeout=0.3)  # one leg still pending: no final yet
            devices[1].reply(invs[1], 500, tag="y")
            assert (await a.response()).status == 486
            # a 6xx wins at once and cancels the others
            await a.call("1002")
            invs = [await p.request_in("INVITE") for p in devices]
            devices[0].reply(invs[0], 180, tag="x")
            devices[1].reply(invs[1], 603, tag="y")
            assert (await a.response()).status == 603
            c = await devices[0].request_in("CANCEL")
            devices[0].reply(c, 200)
            for p in [a, *devices]:
                p.close()

    run(loop_name, main)


def test_limits(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        fields = {"1002": {"max_calls": 1}, "1003": {"max_outgoing": 1}}
        async with pbx(tmp_path, ("1001", "1002", "1003"), user_fields=fields) as (srv, ph):
            a, b, c = ph["1001"], ph["1002"], ph["1003"]
            d, _bd, _inv = await connect(a, b)
            # callee over its max concurrent calls → 486
            await c.call("1002")
            r = await c.response()
            assert r.status == 486
            # caller over max outgoing → 403 naming the limit
            _d2, inv2 = await ring(c, a)
            await c.call("1001")
            r = await c.response(403)
            assert "outgoing" in r.reason
            a.reply(inv2, 486, tag="z")
            await c.response(486)
            assert srv.calls.counter.snapshot() == {
                "user:1001": {"in": 0, "out": 1},
                "user:1002": {"in": 1, "out": 0},
            }
            a.send(d.in_dialog("BYE"))
            await a.response(200)
            assert srv.calls.counter.snapshot() == {}

    run(loop_name, main)


def test_pager_message(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, ("1001", "1002", "1003"), register=("1001", "1002")) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            a.send(
                a.request(
                    "MESSAGE",
                    "sip:1002@example.test",
                    call_id="m1",
                    from_tag="f",
                    to="<sip:1002@example.test>",
                    cseq=1,
                    body=b"hi there",
                    content_type="text/plain",
                )
            )
            r = await a.response(407)
            assert r.status == 407
            # IP-authorize 1001 to skip the challenge
            await srv.users.update("1001", allow_ips=["{}:{}".format(*a.addr)])
            a.send(
                a.request(
                    "MESSAGE",
                    "sip:1002@example.test",
                    call_id="m2",
                    from_tag="f",
                    to="<sip:1002@example.test>",
                    cseq=1,
                    body=b"hi there",
                    content_type="text/plain",
                )
            )
            m = await b.request_in("MESSAGE")
            assert (
                m.body == b"hi there"
                and m.from_.uri.user == "1001"
                and m.get("Content-Type") == "text/plain"
            )
            b.reply(m, 200)
            assert (await a.response()).status == 200
            for callee, status in (("1003", 480), ("5555", 404)):
                a.send(
                    a.request(
                        "MESSAGE",
                        f"sip:{callee}@example.test",
                        call_id=f"m{callee}",
                        from_tag="f",
                        to=f"<sip:{callee}@example.test>",
                        cseq=1,
                        body=b"x",
                        content_type="text/plain",
                    )
                )
                assert (await a.response()).status == status

    run(loop_name, main)


def test_policy_hook_reject_and_route(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, ("1001", "1002")) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            seen = []

            @srv.on_call
            async def policy(call: Any) -> Any:
                import mss

                seen.append((call.caller, call.callee, call.source, call.header("Subject")))
                if call.callee == "999":
                    return mss.reject(403, "Barred by policy")
                if call.callee == "0":
                    return mss.route("1002")
                return mss.CONTINUE

            await a.call("999", headers=[("Subject", "hello")])
            r = await a.response()
            assert (r.status, r.reason) == (403, "Barred by policy")
            _d, inv = await ring(a, b, callee="0")
            assert inv.to.uri.user == "1002"
            b.reply(inv, 486, tag="q")
            assert (await a.response()).status == 486
            assert seen[0] == ("1001", "999", "udp:{}:{}".format(*a.addr), "hello")

    run(loop_name, main)


def test_interrupted_calls_closed_at_restart(tmp_path: Path) -> None:
    """A call marker left open by a crash is closed as interrupted at the next start."""

    async def main() -> None:
        from serverutil import make_config

        from mss.app import open_configured_storage
        from mss.features.cdr import CdrService

        async with pbx(tmp_path, **{"storage.backend": "sqlite"}) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            _d, _bd, _inv = await connect(a, b)
            await srv.cdr.flush()
            [rec] = await srv.storage.cdrs.query()
            assert rec.result == "interrupted" and rec.end_at is None  # the marker
            # simulate kill -9: the server goes away without releasing its calls
            srv.b2bua._active.clear()
        storage = await open_configured_storage(make_config(tmp_path))
        try:
            svc = CdrService(storage.cdrs, storage.kv)
            assert await svc.start() == 1
            await svc.stop()
            [rec] = await storage.cdrs.query()
            assert rec.result == "interrupted" and rec.end_at is not None and rec.hangup == "system"
            assert rec.answer_at is not None and rec.caller == "1001"
            svc = CdrService(storage.cdrs, storage.kv)
            assert await svc.start() == 0  # closed once
            await svc.stop()
        finally:
            await storage.close()

    run_on("asyncio", main)


# --------------------------------------------------------------------------------------------
# pure units
# --------------------------------------------------------------------------------------------
def test_cdr_writer_batches_records_and_survives_a_bad_one(tmp_path: Path) -> None:
    """The call-record writer stores what is queued in one put_many; flush skips the window."""
    from mss.features.cdr import CallLog, CdrService
    from mss.storage import open_storage

    class Repo:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.batches: list[int] = []

        async def put(self, cdr: Any) -> None:
            await self.inner.put(cdr)

        async def put_many(self, cdrs: Any) -> None:
            self.batches.append(len(cdrs))
            await self.inner.put_many(cdrs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    async def main() -> None:
        async with open_storage("sqlite", path=tmp_path / "cdr.sqlite3") as storage:
            repo = Repo(storage.cdrs)
            svc = CdrService(repo, storage.kv, window=3600.0)  # type: ignore[arg-type]
            await svc.start()
            logs = [CallLog(f"c{i}", "1001", "1002", 1000.0 + i) for i in range(3)]
            for clog in logs:
                svc.opened(clog)
            svc.closed(logs[0])  # coalesced with its marker
            await asyncio.wait_for(svc.flush(), 20)  # does not wait for the window
            assert repo.batches == [3] and svc.stats["written"] == 3
            assert svc.stats["coalesced"] == 1
            bad = CallLog("bad", "1001", "1002", 2000.0)
            bad.extra["x"] = object()  # not JSON: the batch fails, each record is retried
            svc.closed(logs[1])
            svc.closed(bad)
            svc.closed(logs[2])
            await asyncio.wait_for(svc.stop(), 20)
            assert repo.batches == [3, 3] and svc.stats["errors"] == 1
            assert svc.stats["written"] == 5
            rows = {r.id: r for r in await storage.cdrs.query()}
            assert sorted(rows) == ["c0", "c1", "c2"]
            assert all(r.end_at is not None for r in rows.values())

    asyncio.run(main())


def test_call_counter_exact() -> None:
    c = CallCounter()
    assert c.acquire("user:1", "out", "a", limit=1) is None
    assert c.acquire("user:1", "out", "a", limit=1) is None  # idempotent
    assert c.acquire("user:1", "out", "b", limit=1) == "direction"
    assert c.acquire("user:1", "in", "b", total=1) == "total"
    assert c.acquire("user:1", "in", "b", total=2) is None
    assert c.count("user:1") == 2
    assert c.release("a") == 1 and c.release("a") == 0
    assert c.release("b") == 1
    assert c.count("user:1") == 0 and len(c) == 0 and c.snapshot() == {}
    assert c.acquire("trunk:x", "in", "z", limit=0) == "direction"


def test_best_response_rules() -> None:
    def r(status: int) -> Response:
        return Response(status)

    assert best_response([r(486), r(500)]).status == 486
    assert best_response([r(408), r(404)]).status == 404
    assert best_response([r(487), r(486), r(603)]).status == 603
    assert best_response([r(503), r(500)]).status == 500
    assert best_response([r(302), r(486)]).status == 302
    assert best_response([]) is None
    assert parse_reason('SIP;cause=200;text="Call completed elsewhere"') == (
        200,
        "Call completed elsewhere",
    )
    assert parse_reason("Q.850;cause=16") == (16, "")
    assert parse_reason(None) == (None, "")


def test_prack_and_update_relayed(loop_name: str, tmp_path: Path) -> None:
    """Reliable provisional responses (RFC 3262) pass through: RSeq kept, RAck rewritten to the
    callee leg's INVITE CSeq; UPDATE (RFC 3311) is relayed in the early and confirmed dialog."""

    async def main() -> None:
        async with pbx(tmp_path) as (_srv, ph):
            a, b = ph["1001"], ph["1002"]
            d, inv = await ring(a, b, headers=[("Supported", "100rel, timer")])
            assert "100rel" in inv.get("Supported", "")
            b.reply(
                inv, 183, tag="bt", body=SDP_ANSWER, headers=[("Require", "100rel"), ("RSeq", "1")]
            )
            r183 = await a.response(183, final=False)
            assert (
                r183.get("RSeq") == "1"
                and r183.get("Require") == "100rel"
                and r183.body == SDP_ANSWER
            )
            d.remote_tag = r183.to.tag
            d.remote_target = str(r183.contact.uri)
            a.send(d.in_dialog("PRACK", cseq=d.cseq + 1, headers=[("RAck", f"1 {d.cseq} INVITE")]))
            prack = await b.request_in("PRACK")
            assert prack.get("RAck") == "1 1 INVITE" and prack.call_id == inv.call_id
            b.reply(prack, 200)
            assert (await a.response(200)).cseq.method == "PRACK"
            # UPDATE on the early dialog
            a.send(d.in_dialog("UPDATE", cseq=d.cseq + 2, body=SDP))
            upd = await b.request_in("UPDATE")
            assert upd.body == SDP
            b.reply(upd, 200, body=SDP_ANSWER)
            r = await a.response(200)
            assert r.cseq.method == "UPDATE" and r.body == SDP_ANSWER
            b.reply(inv, 200, tag="bt", body=SDP_ANSWER)
            ok = await a.wait(
                lambda m: isinstance(m, Response) and m.status == 200 and m.cseq.method == "INVITE"
            )
            d.confirmed(ok)
            a.send(d.ack())
            await b.request_in("ACK")

    run(loop_name, main)


def test_2xx_retransmitted_until_ack_then_released(loop_name: str, tmp_path: Path) -> None:
    """RFC 3261 §13.3.1.4: the 2xx to the caller is retransmitted (T1 doubling up to T2) until
    the ACK; with no ACK after 64*T1 the call is released with BYE on both legs."""

    async def main() -> None:
        async with pbx(tmp_path, **{"timers.t1": 0.05, "timers.t2": 0.4}) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            _d, inv = await ring(a, b)
            b.reply(inv, 200, tag="bt", body=SDP_ANSWER)
            oks = []
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while True:
                m = await a.wait(
                    lambda m: (
                        (isinstance(m, Response) and m.status == 200)
                        or (isinstance(m, Request) and m.method == "BYE")
                    ),
                    6,
                )
                if isinstance(m, Request):
                    bye_at = loop.time() - t0
                    break
                oks.append(loop.time() - t0)
            assert len(oks) >= 6, oks  # 0, 50, 150, 350, 750, 1150... ms
            gaps = [round(y - x, 2) for x, y in itertools.pairwise(oks)]
            assert max(gaps) <= 0.5 and gaps[0] < 0.1, gaps
            assert 2.5 <= bye_at <= 4.5, bye_at  # 64 * T1 = 3.2 s
            ack = await b.request_in("ACK")  # the callee's 2xx is ACKed before its BYE
            assert ack.cseq.seq == 1
            await b.request_in("BYE")
            [rec] = await cdrs(srv)
            assert rec.result == "answered" and rec.hangup == "system" and "ACK" in rec.reason
            assert srv.calls.counter.snapshot() == {}

    run(loop_name, main, timeout=40)


def test_policy_routes_to_uri(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, ("1001", "1002"), register=("1001",)) as (srv, ph):
            a, b = ph["1001"], ph["1002"]
            host, port = b.addr

            @srv.on_call
            async def policy(call: Any) -> Any:
                import mss

                return mss.route(uri=f"sip:ivr@{host}:{port}")

            _d, inv = await ring(a, b, callee="5000")
            assert inv.uri_text == f"sip:ivr@{host}:{port}" and inv.to.uri.user == "ivr"
            b.reply(inv, 603, tag="x")
            assert (await a.response()).status == 603

    run(loop_name, main)


def test_cli_user_no_answer_timeout(tmp_path: Path) -> None:
    import json

    from serverutil import mss_cli

    mss_cli(
        "user",
        "add",
        "1002",
        "--password",
        "pw-1002",
        "--no-answer-timeout",
        "15",
        data_dir=tmp_path,
    )
    [row] = json.loads(mss_cli("user", "list", "--json", data_dir=tmp_path).stdout)
    assert row["no_answer_timeout"] == 15
    mss_cli(
        "user", "set", "1002", "--no-answer-timeout", "0", data_dir=tmp_path
    )  # back to the system timer
    [row] = json.loads(mss_cli("user", "list", "--json", data_dir=tmp_path).stdout)
    assert row["no_answer_timeout"] is None
    bad = mss_cli(
        "user", "set", "1002", "--no-answer-timeout", "99999", data_dir=tmp_path, check=False
    )
    assert bad.returncode == 2 and "no_answer_timeout" in bad.stderr


def test_call_counts_return_to_zero_after_random_endings(tmp_path: Path) -> None:
    """Calls ending every way (BYE from either side, busy, caller CANCEL, no answer, offline,
    policy reject), several at once: every hold is released and no call is left."""
    import random

    async def one_pair(
        srv: Any, a: Phone, b: Phone, rng: random.Random, outcomes: list[str]
    ) -> None:
        for _ in range(5):
            how = rng.choice(["caller_bye", "callee_bye", "busy", "cancel", "no_answer", "barred"])
            outcomes.append(how)
            if how == "barred":
                await a.call("900")
                assert (await a.response()).status == 403
                continue
            d, inv = await ring(a, b)
            b.reply(inv, 180, tag="t")
            await a.response(180, final=False)
            assert srv.calls.counter.count(f"user:{a.number}", "out") == 1
            if how in ("caller_bye", "callee_bye"):
                b.reply(inv, 200, tag="t", body=SDP_ANSWER)
                ok = await a.response(200)
                d.confirmed(ok)
                a.send(d.ack())
                await b.request_in("ACK")
                if how == "caller_bye":
                    a.send(d.in_dialog("BYE"))
                    await a.wait(lambda m: isinstance(m, Response) and m.cseq.method == "BYE")
                    b.reply(await b.request_in("BYE"), 200)
                else:
                    bd = b.answer_dialog(inv, "t")
                    b.send(bd.in_dialog("BYE"))
                    await b.wait(lambda m: isinstance(m, Response) and m.cseq.method == "BYE")
                    a.reply(await a.request_in("BYE"), 200)
            elif how == "busy":
                b.reply(inv, 486, tag="t")
                r = await a.response(486)
                a.send(d.ack_for(r))
            elif how == "cancel":
                host, port = a.addr
                a.send(
                    (
                        f"CANCEL {d.uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={d.branch};rport\r\n"
                        f"Max-Forwards: 70\r\nFrom: <sip:{a.number}@example.test>;tag={d.local_tag}\r\nTo: {d.to}\r\n"
                        f"Call-ID: {d.call_id}\r\nCSeq: {d.cseq} CANCEL\r\nContent-Length: 0\r\n\r\n"
                    ).encode()
                )
                c = await b.request_in("CANCEL")
                b.reply(c, 200)
                b.reply(inv, 487, tag="t")
                r = await a.response(487)
                a.send(d.ack_for(r))
            else:  # no_answer: the callee's 1 s timer
                c = await b.request_in("CANCEL", timeout=4)
                b.reply(c, 200)
                b.reply(inv, 487, tag="t")
                r = await a.response(480, timeout=4)
                a.send(d.ack_for(r))

    async def main() -> None:
        numbers = tuple(str(2000 + i) for i in range(8))
        fields = {n: {"no_answer_timeout": 1, "max_calls": 1} for n in numbers}
        async with pbx(tmp_path, numbers, user_fields=fields) as (srv, ph):

            @srv.on_call
            async def barred(call: Any) -> Any:
                import mss

                return mss.reject(403, "Barred") if call.callee == "900" else None

            rng = random.Random(5)
            outcomes: list[str] = []
            pairs = [(ph[numbers[i]], ph[numbers[i + 1]]) for i in range(0, 8, 2)]
            await asyncio.gather(*(one_pair(srv, a, b, rng, outcomes) for a, b in pairs))
            await asyncio.sleep(0.2)
            assert srv.calls.counter.snapshot() == {} and len(srv.calls.counter) == 0
            assert srv.b2bua.active_calls == 0
            assert len(set(outcomes)) >= 5, outcomes
            recs = await cdrs(srv)
            assert len(recs) == len(outcomes) and all(r.end_at for r in recs)

    run_on("asyncio", main, timeout=90)


def test_entropy_values_have_the_formats_of_secrets_and_uuid() -> None:
    """Call ids, tags, Call-IDs and branches come from blocks of os.urandom: the same formats
    as uuid.uuid4().hex and secrets.token_hex(n), and no value repeats across blocks."""
    import re
    import uuid

    e = _Entropy()
    ids = [e.uuid4_hex() for _ in range(600)]  # more than one 4 KiB block
    for text in ids:
        u = uuid.UUID(hex=text)
        assert u.hex == text and u.version == 4 and u.variant == uuid.RFC_4122
    for n in (6, 8, 10):
        assert re.fullmatch(f"[0-9a-f]{{{2 * n}}}", e.hex(n))
    before = e.hex(8)
    e.reset()  # a forked child starts a block of its own
    assert len({*ids, before, e.hex(8)}) == len(ids) + 2


def test_call_log_values_are_the_record_fields_in_order() -> None:
    """CdrService queues CallLog.values() and builds CdrRecord(*values) when it writes: every
    field lands where the keyword-built record has it."""
    from mss.features.cdr import CallLog
    from mss.storage.base import CdrRecord

    log = CallLog("id1", "1001", "91002", 100.0, call_id="cid", caller_addr="udp:1.2.3.4:5060")
    log.callee, log.callee_addr, log.direction, log.route = "1002", "udp:5.6.7.8:5060", "out", "r"
    log.ring_at, log.answer_at, log.end_at = 101.0, 102.5, 110.0004
    log.status, log.cause, log.reason, log.hangup, log.result = 200, 16, "bye", "caller", "answered"
    log.extra["k"] = "v"
    values = log.values()
    log.extra["k"] = "changed later"  # the queued values keep their own copy
    expected = CdrRecord(
        id="id1",
        caller="1001",
        dialed="91002",
        setup_at=100.0,
        callee="1002",
        call_id="cid",
        caller_addr="udp:1.2.3.4:5060",
        callee_addr="udp:5.6.7.8:5060",
        direction="out",
        route="r",
        ring_at=101.0,
        answer_at=102.5,
        end_at=110.0004,
        duration=7.5,
        status=200,
        cause=16,
        reason="bye",
        hangup="caller",
        result="answered",
        extra={"k": "v"},
    )
    assert CdrRecord(*values) == expected and dict(CdrRecord(*values).extra) == {"k": "v"}
    fresh = CallLog("id2", "1001", "1002", 5.0)
    assert fresh.record() == CdrRecord(
        id="id2", caller="1001", dialed="1002", setup_at=5.0, result="interrupted"
    )
