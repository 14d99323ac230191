"""Calls seen and controlled through the management API (issues 5 and 8), with real sipp peers.

A real ``mss.app.Server`` with its API (``apiutil.ThreadedServer``), sipp callers and callees on
loopback (IP-authorized users), a ``websockets`` client on ``/events`` and ``requests`` on the
API:

* ``callStatus`` events (setup, alerting, answered, released) during a call;
* ``DELETE /calls/{id}`` on an answered call: both sipp ends receive BYE with a Reason header,
  the CDR says hangup ``system``; on a ringing call: the callee gets CANCEL, the caller 480, both
  with ``Reason: SIP;cause=480;text="Released by the administrator"``;
* 404 problem+json for an unknown call, 403 for a read-only token, the route in the OpenAPI
  document, ``mss_calls_active`` in ``/metrics``;
* a caller's CANCEL with a ``Reason`` header (RFC 3326): its cause and text land in the CDR and
  the Reason is passed on to the callee's CANCEL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from apiutil import ThreadedServer, api_server
from netutil import run_on
from phones import Phone
from serverutil import free_udp_port, running, wait_for
from sipp import SippResult, arun_sipp, require_sipp, start_sipp_uas

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ADMIN_480 = 'Reason: SIP;cause=480;text="Released by the administrator"'
ADMIN_BYE = 'Reason: Q.850;cause=16;text="Released by the administrator"'


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    require_sipp()
    with api_server(tmp_path_factory.mktemp("calls-api")) as s:
        yield s


def users(srv: ThreadedServer, caller: str, callee: str) -> tuple[int, int]:
    """Two IP-authorized users on fresh ports: ``(caller_port, callee_port)``."""
    pa, pb = free_udp_port(), free_udp_port()
    for number, port in ((caller, pa), (callee, pb)):
        r = srv.post(
            "/users",
            {"number": number, "password": f"pw-{number}", "allow_ips": [f"127.0.0.1:{port}"]},
        )
        assert r.status_code == 201, r.text
    return pa, pb


async def uac(
    srv: ThreadedServer, scenario: str, *, caller: str, callee: str, port: int, tmp_path: Path
) -> SippResult:
    return await arun_sipp(
        f"127.0.0.1:{srv.sip_port}",
        scenario=scenario,
        service=callee,
        calls=1,
        local_port=port,
        timeout=30,
        workdir=tmp_path,
        trace_msg=True,
        extra=["-key", "caller", caller],
    )


async def next_call_event(
    ws: Any, state: str, seen: list[dict[str, Any]], timeout: float = 10.0
) -> dict[str, Any]:
    """The next ``callStatus`` event in ``state`` (every event read is appended to ``seen``)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no callStatus {state}; got {[e.get('state') for e in seen]}"
        event = json.loads(await asyncio.wait_for(ws.recv(), left))
        seen.append(event)
        if event.get("type") == "callStatus" and event.get("state") == state:
            return event


def cdr_of(srv: ThreadedServer, call_id: str) -> dict[str, Any]:
    """The closed call record ``call_id`` (written by the CDR writer task shortly after)."""
    found: dict[str, Any] = {}

    def ready() -> bool:
        for row in srv.get("/cdr", params={"limit": 1000}).json()["items"]:
            if row["id"] == call_id and row["end_at"] is not None:
                found.update(row)
                return True
        return False

    assert wait_for(ready, 10, 0.1), f"no closed CDR {call_id}"
    return found


def first_request(log: str, method: str) -> str:
    """The headers of the first ``method`` request in a sipp message log."""
    start = log.index(f"{method} sip:")
    return log[start:].split("\n\n")[0]


# --------------------------------------------------------------------------------------------
def test_answered_call_hung_up_through_the_api(srv: ThreadedServer, tmp_path: Path) -> None:
    pa, pb = users(srv, "1501", "1502")
    seen: list[dict[str, Any]] = []

    async def main() -> tuple[SippResult, dict[str, Any]]:
        url = f"{srv.ws_base}/events?token={srv.token}&types=callStatus"
        async with websockets.connect(url) as ws:
            caller = asyncio.ensure_future(
                uac(
                    srv,
                    "b2bua_uac_wait_bye.xml",
                    caller="1501",
                    callee="1502",
                    port=pa,
                    tmp_path=tmp_path,
                )
            )
            setup = await next_call_event(ws, "setup", seen)
            assert (setup["caller"], setup["dialed"]) == ("1501", "1502")
            assert setup["setup_at"] and setup["answer_at"] is None
            await next_call_event(ws, "alerting", seen)
            answered = await next_call_event(ws, "answered", seen)
            assert answered["id"] == setup["id"] and answered["status"] == 200
            assert answered["callee_addr"] == f"udp:127.0.0.1:{pb}"
            call_id = answered["id"]
            listed = await asyncio.to_thread(srv.get, "/calls")
            assert [(c["id"], c["state"]) for c in listed.json()] == [(call_id, "answered")]
            r = await asyncio.to_thread(srv.delete, f"/calls/{call_id}")
            assert r.status_code == 204, r.text
            released = await next_call_event(ws, "released", seen)
            assert released["id"] == call_id
            return await caller, released

    with start_sipp_uas(
        scenario="uas_answer.xml", port=pb, workdir=tmp_path, trace_msg=True
    ) as uas:
        r, released = asyncio.run(main())
        assert r.ok and r.successful == 1, r.describe()
        u = uas.stop()
        assert u.successful == 1 and u.failed == 0, u.describe()
    # both ends got a BYE from the server, naming the administrator
    assert ADMIN_BYE in first_request(r.message_log, "BYE")
    assert ADMIN_BYE in first_request(u.message_log, "BYE")
    assert [e["state"] for e in seen if e["id"] == released["id"]] == [
        "setup",
        "alerting",
        "answered",
        "released",
    ]
    assert released["hangup"] == "system" and released["result"] == "answered"
    assert released["reason"] == "Released by the administrator"
    assert released["end_at"] >= released["answer_at"] >= released["ring_at"]
    rec = cdr_of(srv, released["id"])
    assert (rec["result"], rec["status"], rec["hangup"]) == ("answered", 200, "system")
    assert rec["reason"] == "Released by the administrator"
    assert srv.get("/calls").json() == []
    # a call that is over is gone: 404
    gone = srv.delete(f"/calls/{released['id']}")
    assert gone.status_code == 404 and gone.json()["field"] == "call_id"


def test_ringing_call_hung_up_through_the_api(srv: ThreadedServer, tmp_path: Path) -> None:
    pa, pb = users(srv, "1511", "1512")
    seen: list[dict[str, Any]] = []

    async def main() -> tuple[SippResult, dict[str, Any]]:
        url = f"{srv.ws_base}/events?token={srv.token}&types=callStatus"
        async with websockets.connect(url) as ws:
            caller = asyncio.ensure_future(
                uac(
                    srv,
                    "b2bua_uac_final.xml",
                    caller="1511",
                    callee="1512",
                    port=pa,
                    tmp_path=tmp_path,
                )
            )
            alerting = await next_call_event(ws, "alerting", seen)
            assert alerting["ring_at"] is not None and alerting["answer_at"] is None
            listed = await asyncio.to_thread(srv.get, "/calls")
            assert [(c["id"], c["state"]) for c in listed.json()] == [(alerting["id"], "ringing")]
            r = await asyncio.to_thread(srv.delete, f"/calls/{alerting['id']}")
            assert r.status_code == 204, r.text
            released = await next_call_event(ws, "released", seen)
            return await caller, released

    with start_sipp_uas(
        scenario="b2bua_uas_ring.xml", port=pb, workdir=tmp_path, trace_msg=True
    ) as uas:
        r, released = asyncio.run(main())
        assert r.ok and r.step("480", "recv").messages == 1, r.describe()
        u = uas.stop()
        assert u.successful == 1 and u.failed == 0, u.describe()
    # the caller's 480 and the callee's CANCEL carry the same Reason
    final = r.message_log[r.message_log.index("SIP/2.0 480") :].split("\n\n")[0]
    assert ADMIN_480 in final, final
    assert ADMIN_480 in first_request(u.message_log, "CANCEL")
    assert (released["hangup"], released["result"], released["status"], released["cause"]) == (
        "system",
        "cancelled",
        480,
        480,
    )
    rec = cdr_of(srv, released["id"])
    assert (rec["result"], rec["status"], rec["hangup"], rec["cause"]) == (
        "cancelled",
        480,
        "system",
        480,
    )
    assert rec["reason"] == "Released by the administrator"


def test_hangup_route_errors_scope_and_openapi(srv: ThreadedServer) -> None:
    r = srv.delete("/calls/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "call_id"
    r = srv.delete("/calls/x", params={"reason": 'bad "quote"'})
    assert r.status_code == 422 and r.json()["field"] == "reason"
    assert srv.delete("/calls/a%20b").status_code == 422
    # reading is not enough to hang up
    _, reader = srv.call(srv.server.tokens.create("calls-reader", scopes=["read"]))
    assert srv.delete("/calls/0123456789abcdef", token=reader).status_code == 403
    assert srv.delete("/calls/0123456789abcdef", token="nope").status_code == 401
    doc = srv.get("/openapi.json").json()
    op = doc["paths"]["/calls/{call_id}"]["delete"]
    assert {"204", "401", "403", "404", "422"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"]} == {"call_id", "reason"}
    assert "mss_calls_active " in srv.get("/metrics").text


def test_cancel_reason_goes_to_the_cdr_and_the_callee(srv: ThreadedServer, tmp_path: Path) -> None:
    pa, pb = users(srv, "1521", "1522")
    seen: list[dict[str, Any]] = []

    async def main() -> tuple[SippResult, dict[str, Any]]:
        url = f"{srv.ws_base}/events?token={srv.token}&types=callStatus"
        async with websockets.connect(url) as ws:
            r = await uac(
                srv,
                "b2bua_uac_cancel_reason.xml",
                caller="1521",
                callee="1522",
                port=pa,
                tmp_path=tmp_path,
            )
            return r, await next_call_event(ws, "released", seen)

    with start_sipp_uas(
        scenario="b2bua_uas_ring.xml", port=pb, workdir=tmp_path, trace_msg=True
    ) as uas:
        r, released = asyncio.run(main())
        assert r.ok and r.step("487", "recv").messages == 1, r.describe()
        u = uas.stop()
        assert u.successful == 1 and u.failed == 0, u.describe()
    assert 'Reason: SIP;cause=200;text="Answered on another phone"' in first_request(
        u.message_log, "CANCEL"
    )
    assert (released["cause"], released["reason"], released["hangup"]) == (
        200,
        "Answered on another phone",
        "caller",
    )
    rec = cdr_of(srv, released["id"])
    assert (rec["result"], rec["status"], rec["hangup"]) == ("cancelled", 487, "caller")
    assert (rec["cause"], rec["reason"]) == (200, "Answered on another phone")


def test_hangup_while_the_policy_hook_runs_and_events_of_rejected_calls(tmp_path: Path) -> None:
    """In process (phones with digest): a call released while its policy hook is still deciding
    gets 480 with the Reason and is never routed; a rejected call publishes setup + released."""

    async def main() -> None:
        async with running(tmp_path, **{"storage.backend": "memory", "stun.enabled": False}) as srv:
            for n in ("1601", "1602"):
                await srv.users.add(n, f"pw-{n}")
            a = await Phone.open(srv.port("udp"), "1601", "pw-1601")
            b = await Phone.open(srv.port("udp"), "1602", "pw-1602")
            try:
                await a.register()
                await b.register()
                sub = srv.hub.subscribe(["callStatus"])
                gate = asyncio.Event()

                @srv.on_call
                async def slow(call: Any) -> None:
                    await gate.wait()

                d = await a.call("1602")
                setup = await asyncio.wait_for(sub.get(), 3)
                assert setup is not None and setup["state"] == "setup"
                assert [c["state"] for c in srv.active_calls()] == ["routing"]
                assert srv.calls.hangup(setup["id"], reason="Maintenance")
                r = await a.response()
                assert (r.status, r.get("Reason")) == (480, 'SIP;cause=480;text="Maintenance"')
                a.send(d.ack_for(r))
                gate.set()
                assert await b.nothing("INVITE")  # the hook's late decision routes nothing
                released = await asyncio.wait_for(sub.get(), 3)
                assert released is not None and released["state"] == "released"
                assert (released["hangup"], released["result"], released["reason"]) == (
                    "system",
                    "cancelled",
                    "Maintenance",
                )
                assert not srv.calls.hangup(setup["id"])  # over: nothing to release
                assert srv.active_calls() == [] and srv.calls.counter.snapshot() == {}
                srv.call_hooks.clear()
                d = await a.call("7777")
                r = await a.response()
                assert r.status == 404
                a.send(d.ack_for(r))
                states = []
                for _ in range(2):
                    ev = await asyncio.wait_for(sub.get(), 3)
                    assert ev is not None
                    states.append((ev["state"], ev["status"], ev["result"]))
                assert states == [("setup", None, None), ("released", 404, "rejected")]
                sub.close()
            finally:
                a.close()
                b.close()

    run_on("asyncio", main)
