"""The management API against a running server (issue 8): tokens, resources, validation, live
changes, the /events WebSocket, /explain, /metrics, the miniSIPServer shim, TLS.

Every test drives a real ``mss.app.Server`` (SIP on loopback UDP/TCP, the API served by uvicorn on
the server's own loop) running in a thread, with real clients: ``requests`` for HTTP, the
``websockets`` client for /events, ``serverutil.Uac`` for SIP, the ``mss`` CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets
from apiutil import ThreadedServer, api_server
from serverutil import Uac, mss_cli

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """One server for the read-mostly tests of this module."""
    with api_server(tmp_path_factory.mktemp("api")) as s:
        yield s


def register(
    port: int, user: str, password: str, *, host: str = "127.0.0.1", expires: int = 3600
) -> tuple[int, tuple[str, int]]:
    async def main() -> tuple[int, tuple[str, int]]:
        uac = await Uac.open(port, host=host)
        try:
            r = await uac.register(user, password, expires=expires)
            return r.status, uac.client.addr
        finally:
            uac.close()

    return asyncio.run(main())


# -- the document ----------------------------------------------------------------------------


def test_openapi_document_and_docs_page(srv: ThreadedServer) -> None:
    doc = requests.get(srv.base + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    for path in (
        "/health",
        "/system",
        "/users",
        "/users/{number}",
        "/registrations",
        "/registrations/{number}",
        "/bans",
        "/bans/{ip}",
        "/iplists",
        "/blacklist",
        "/cdr",
        "/cdr/{date}.csv",
        "/explain",
        "/tokens",
        "/metrics",
        "/openapi/version",
        "/openapi/localuser/set",
    ):
        assert path in paths, path
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # the password is write-only: in the input model, never in the output model
    schemas = doc["components"]["schemas"]
    assert "password" in schemas["UserIn"]["properties"]
    assert "password" not in schemas["UserOut"]["properties"]
    page = requests.get(srv.base + "/docs", timeout=10)
    assert page.status_code == 200 and "swagger" in page.text.lower()


# -- tokens ----------------------------------------------------------------------------------


def _routes(srv: ThreadedServer) -> list[tuple[str, str]]:
    doc = requests.get(srv.base + "/openapi.json", timeout=10).json()
    out = []
    for path, ops in doc["paths"].items():
        if path == "/health" or path.startswith("/openapi/"):
            continue
        for method in ops:
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            out.append((method.upper(), concrete))
    return out


def test_every_route_needs_a_token(srv: ThreadedServer) -> None:
    routes = _routes(srv)
    assert len(routes) >= 20
    bad_tokens = [None, "", "Bearer", "mss_0123456789_" + "A" * 43, "garbage"]
    for method, path in routes:
        for bad in bad_tokens:
            headers = {} if bad is None else {"Authorization": f"Bearer {bad}"}
            r = requests.request(method, srv.base + path, headers=headers, json={}, timeout=10)
            assert r.status_code == 401, (method, path, bad, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["www-authenticate"].startswith("Bearer")
    # unknown routes too: nothing is learnt without a token
    assert requests.get(srv.base + "/no/such/route", timeout=10).status_code == 401
    assert requests.get(srv.base + "/health", timeout=10).status_code == 200


def test_revoked_token_gets_401_everywhere(srv: ThreadedServer, tmp_path: Path) -> None:
    created = srv.post("/tokens", {"name": "short-lived"})
    assert created.status_code == 201, created.text
    token, token_id = created.json()["token"], created.json()["id"]
    routes = _routes(srv)
    assert srv.get("/users", token=token).status_code == 200
    assert srv.delete(f"/tokens/{token_id}").status_code == 204
    for method, path in routes:
        r = requests.request(
            method, srv.base + path, headers=srv.headers(token), json={}, timeout=10
        )
        assert r.status_code == 401, (method, path, r.status_code)
    # shim and websocket refuse it too
    q = urllib.parse.quote(json.dumps({"syskey": token}))
    assert requests.get(f"{srv.base}/openapi/version?{q}", timeout=10).status_code == 401


def test_token_revoked_by_the_cli_in_another_process(srv: ThreadedServer) -> None:
    out = mss_cli("token", "create", "--name", "cli", data_dir=Path(srv.config.data_dir))
    token = out.stdout.strip()
    assert token.startswith("mss_")
    assert srv.get("/system", token=token).status_code == 200
    token_id = token.split("_")[1]
    listed = mss_cli("token", "list", "--json", data_dir=Path(srv.config.data_dir))
    assert token_id in {t["id"] for t in json.loads(listed.stdout)}
    assert token not in listed.stdout  # the secret is never shown again
    mss_cli("token", "revoke", token_id, data_dir=Path(srv.config.data_dir))
    assert srv.get("/system", token=token).status_code == 401  # at once, no restart


def test_read_only_token_cannot_write(srv: ThreadedServer) -> None:
    r = srv.post("/tokens", {"name": "dashboard", "scopes": ["read"]})
    token = r.json()["token"]
    assert srv.get("/users", token=token).status_code == 200
    w = srv.post("/users", {"number": "7001", "password": "pw-7001"}, token=token)
    assert w.status_code == 403 and w.headers["content-type"].startswith("application/problem")
    assert srv.get("/users/7001").status_code == 404


def test_first_start_creates_one_admin_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="mss"), api_server(tmp_path) as s:
        found = [r for r in caplog.records if getattr(r, "event", None) == "api_token"]
        assert len(found) == 1
        token = re.search(r"(mss_[0-9a-f]{10}_\S+)", found[0].getMessage()).group(1)
        assert s.get("/tokens", token=token).status_code == 200
        stored = s.call(s.server.storage.tokens.list())
        admin = [t for t in stored if token.split("_")[1] == t.id]
        assert admin and admin[0].scopes == ("admin",)
        assert token.split("_", 2)[2] not in repr(stored)  # only the hash is stored
    caplog.clear()
    with caplog.at_level("WARNING", logger="mss"), api_server(tmp_path):
        assert not [r for r in caplog.records if getattr(r, "event", None) == "api_token"]


# -- users, validation, live changes ---------------------------------------------------------


def test_user_crud_through_the_api(srv: ThreadedServer) -> None:
    r = srv.post(
        "/users",
        {
            "number": "1101",
            "password": "pw-1101",
            "name": "Ann",
            "multi_device": True,
            "max_devices": 2,
            "allow_ips": ["10.0.0.0/8"],
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["number"] == "1101" and "password" not in body and body["max_devices"] == 2
    assert srv.post("/users", {"number": "1101", "password": "pw-xxxx"}).status_code == 409
    r = srv.patch("/users/1101", {"name": "Ann B", "max_calls": 2})
    assert r.status_code == 200 and r.json()["name"] == "Ann B" and r.json()["max_calls"] == 2
    assert srv.patch("/users/1101", {"max_calls": None}).json()["max_calls"] is None
    assert [u["number"] for u in srv.get("/users").json()].count("1101") == 1
    assert srv.get("/users/1101").json()["allow_ips"] == ["10.0.0.0/8"]
    assert srv.delete("/users/1101").status_code == 204
    assert srv.get("/users/1101").status_code == 404
    assert srv.delete("/users/1101").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"number": "bad number", "password": "pw-1234"}, "number"),
        ({"number": "1102", "password": "pw"}, "password"),
        ({"number": "1102", "password": "pw-1234", "max_devices": 0}, "max_devices"),
        ({"number": "1102", "password": "pw-1234", "max_devices": "3"}, "max_devices"),
        ({"number": "1102", "password": "pw-1234", "allow_ips": ["not-an-ip"]}, "allow_ip[0]"),
        ({"number": "1102", "password": "pw-1234", "colour": "red"}, "colour"),
        ({"number": 1102, "password": "pw-1234"}, "number"),
        ({"password": "pw-1234"}, "number"),
        ({"number": "1102", "password": "pw-1234", "name": 'a"b'}, "name"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(
    srv: ThreadedServer, body: dict[str, Any], field: str
) -> None:
    r = srv.post("/users", body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["field"] == field, problem
    assert problem["status"] == 422 and field in problem["detail"]
    assert srv.get("/users/1102").status_code == 404  # no partial write


def test_malformed_json_and_oversized_bodies_are_4xx(srv: ThreadedServer) -> None:
    h = {**srv.headers(), "Content-Type": "application/json"}
    r = requests.post(srv.base + "/users", data=b"{not json", headers=h, timeout=10)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")
    r = requests.post(srv.base + "/users", data=b"[" * (2 << 20), headers=h, timeout=10)
    assert r.status_code == 413
    r = srv.patch("/users/1", {})
    assert r.status_code == 404
    srv.post("/users", {"number": "1103", "password": "pw-1103"})
    r = srv.patch("/users/1103", {})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = srv.patch("/users/1103", {"name": None})
    assert r.status_code == 422 and r.json()["field"] == "name"


def test_api_user_registers_at_once_and_cli_changes_reach_the_api(srv: ThreadedServer) -> None:
    assert srv.post("/users", {"number": "1104", "password": "pw-1104"}).status_code == 201
    status, _ = register(srv.sip_port, "1104", "pw-1104")
    assert status == 200  # no restart, no reload
    assert srv.get("/users/1104").json()["online"] is True
    # password changed through the API: the old one fails at once
    assert srv.patch("/users/1104", {"password": "pw-new-1104"}).status_code == 200
    assert register(srv.sip_port, "1104", "pw-1104")[0] != 200
    assert register(srv.sip_port, "1104", "pw-new-1104")[0] == 200
    # a user added by the CLI in another process shows up within a second
    mss_cli("user", "add", "1105", "--password", "pw-1105", data_dir=Path(srv.config.data_dir))
    deadline = time.monotonic() + 5
    while srv.get("/users/1105").status_code != 200:
        assert time.monotonic() < deadline, "CLI change never reached the server"
        time.sleep(0.1)
    assert register(srv.sip_port, "1105", "pw-1105")[0] == 200


def test_registrations_list_and_forced_unregister(srv: ThreadedServer) -> None:
    srv.post("/users", {"number": "1106", "password": "pw-1106"})
    status, addr = register(srv.sip_port, "1106", "pw-1106")
    assert status == 200
    regs = srv.get("/registrations", params={"user": "1106"}).json()
    assert len(regs) == 1 and regs[0]["source"] == f"udp:{addr[0]}:{addr[1]}"
    assert regs[0]["expires_in"] > 3500
    assert srv.get("/registrations/1106").json() == regs
    r = srv.delete("/registrations/1106")
    assert r.status_code == 200 and r.json()[0]["contact"] == regs[0]["contact"]
    assert srv.get("/registrations/1106").json() == []
    assert srv.get("/users/1106").json()["online"] is False
    assert srv.delete("/registrations/1106").status_code == 404
    assert srv.get("/registrations/nobody").status_code == 404


# -- events ----------------------------------------------------------------------------------


async def _next_event(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} event"
        event = json.loads(await asyncio.wait_for(ws.recv(), left))
        if event.get("type") == kind:
            return event


def test_registration_produces_user_status_events(srv: ThreadedServer) -> None:
    srv.post("/users", {"number": "1201", "password": "pw-1201"})

    async def main() -> None:
        url = f"{srv.ws_base}/events?token={srv.token}&types=userStatus"
        async with websockets.connect(url) as ws:
            uac = await Uac.open(srv.sip_port)
            try:
                r = await uac.register("1201", "pw-1201")
                assert r.status == 200
                host, port = uac.client.addr
                event = await _next_event(ws, "userStatus")
                assert event["number"] == "1201" and event["status"] == "online"
                assert event["address"] == f"{host}:{port}" and event["transport"] == "udp"
                assert event["contacts"][0]["contact"] == f"sip:1201@{host}:{port}"
                # a refresh that changes nothing publishes nothing; unregistering does
                assert (await uac.register("1201", "pw-1201")).status == 200
                assert (await uac.register("1201", "pw-1201", expires=0)).status == 200
                event = await _next_event(ws, "userStatus")
                assert (event["number"], event["status"]) == ("1201", "offline")
                assert event["reason"] == "unregister"
            finally:
                uac.close()

    asyncio.run(main())


def test_events_need_a_token(srv: ThreadedServer) -> None:
    async def main() -> None:
        for query in ("", "?token=mss_0123456789_" + "B" * 43):
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                async with websockets.connect(f"{srv.ws_base}/events{query}"):
                    pass
            assert info.value.response.status_code == 401
        # the Authorization header works as well as ?token=
        async with websockets.connect(
            f"{srv.ws_base}/events", additional_headers=srv.headers()
        ) as ws:
            await ws.ping()
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(f"{srv.ws_base}/events?token={srv.token}&types=nope"):
                pass
        assert info.value.response.status_code == 422

    asyncio.run(main())


# -- security: bans, explain, securityEvent --------------------------------------------------


def test_scanner_is_banned_with_security_event_and_explain_names_the_rule(
    tmp_path: Path,
) -> None:
    with api_server(tmp_path, **{"security.f2b_max_failures": 3}) as s:
        s.post("/users", {"number": "1301", "password": "pw-1301"})

        async def main() -> None:
            url = f"{s.ws_base}/events?token={s.token}&types=securityEvent"
            async with websockets.connect(url) as ws:
                uac = await Uac.open(s.sip_port, host="127.0.0.7")
                try:
                    for _ in range(3):
                        r = await uac.register("1301", "wrong-password")
                        assert r.status == 401
                    event = await _next_event(ws, "securityEvent")
                    assert event["event"] == "ban" and event["ip"] == "127.0.0.7"
                    assert "3 failed authentications" in event["reason"]
                    # banned: no reply at all
                    uac.client.send(uac.request("REGISTER", "1301"), uac.server)
                    assert await uac.client.nothing(0.5)
                finally:
                    uac.close()

        asyncio.run(main())
        explained = s.get("/explain", params={"ip": "127.0.0.7"}).json()["decisions"]
        kinds = [d["kind"] for d in explained]
        assert "ban" in kinds and kinds.count("auth_failure") == 3
        ban = next(d for d in explained if d["kind"] == "ban")
        assert "3 failed authentications" in ban["rule"] and ban["user"] == "1301"
        failure = next(d for d in explained if d["kind"] == "auth_failure")
        assert failure["rule"] == "digest authentication: wrong password"
        assert failure["user"] == "1301" and "REGISTER" in failure["detail"]
        by_user = s.get("/explain", params={"user": "1301"}).json()["decisions"]
        assert {d["kind"] for d in by_user} == {"ban", "auth_failure"}
        assert s.get("/explain", params={"ip": "999.1.1.1"}).status_code == 422
        # the ban is visible and can be lifted through the API; then the source is heard again
        bans = s.get("/bans").json()
        assert [b["ip"] for b in bans] == ["127.0.0.7"] and bans[0]["active"]
        assert s.delete("/bans/127.0.0.7").status_code == 204
        assert register(s.sip_port, "1301", "pw-1301", host="127.0.0.7")[0] == 200


def test_unknown_user_and_device_limit_are_explained(srv: ThreadedServer) -> None:
    assert register(srv.sip_port, "9999", "whatever", host="127.0.0.9")[0] == 401
    d = srv.get("/explain", params={"ip": "127.0.0.9", "kind": "auth_failure"}).json()
    assert d["decisions"][0]["rule"] == "digest authentication: unknown user"
    srv.post(
        "/users", {"number": "1302", "password": "pw-1302", "multi_device": True, "max_devices": 1}
    )

    async def main() -> int:
        a, b = await Uac.open(srv.sip_port), await Uac.open(srv.sip_port)
        try:
            assert (await a.register("1302", "pw-1302")).status == 200
            return (await b.register("1302", "pw-1302")).status
        finally:
            a.close()
            b.close()

    assert asyncio.run(main()) == 403
    d = srv.get("/explain", params={"user": "1302"}).json()["decisions"]
    assert d[0]["kind"] == "limit" and d[0]["rule"] == "max_devices=1"


def test_operator_ban_drops_at_once_and_lists(srv: ThreadedServer) -> None:
    srv.post("/users", {"number": "1303", "password": "pw-1303"})
    r = srv.post("/bans", {"ip": "127.0.0.11", "duration": 600, "reason": "test"})
    assert r.status_code == 201 and r.json()["remaining"] > 590
    assert srv.get("/bans/127.0.0.11").json()["reason"] == "test"

    async def silent() -> bool:
        uac = await Uac.open(srv.sip_port, host="127.0.0.11")
        try:
            uac.client.send(uac.request("OPTIONS", "1303"), uac.server)
            return await uac.client.nothing(0.5)
        finally:
            uac.close()

    assert asyncio.run(silent())
    assert srv.post("/bans", {"ip": "nope"}).json()["field"] == "ip"
    assert srv.post("/bans", {"ip": "127.0.0.12", "duration": -1}).json()["field"] == "duration"
    assert srv.delete("/bans/127.0.0.11").status_code == 204
    assert srv.delete("/bans/127.0.0.11").status_code == 404
    assert register(srv.sip_port, "1303", "pw-1303", host="127.0.0.11")[0] == 200


def test_ip_lists_and_blacklist(srv: ThreadedServer) -> None:
    r = srv.post("/iplists", {"list": "black", "network": "127.0.0.13/32", "note": "scanner"})
    assert r.status_code == 201 and r.json()["network"] == "127.0.0.13"
    assert srv.post("/iplists", {"list": "black", "network": "127.0.0.13"}).status_code == 409
    assert srv.post("/iplists", {"list": "grey", "network": "1.2.3.4"}).json()["field"] == "list"
    assert srv.post("/iplists", {"list": "white", "network": "x"}).json()["field"] == "network"
    assert [e["network"] for e in srv.get("/iplists", params={"list": "black"}).json()] == [
        "127.0.0.13"
    ]
    srv.post("/users", {"number": "1304", "password": "pw-1304"})

    async def silent() -> bool:
        uac = await Uac.open(srv.sip_port, host="127.0.0.13")
        try:
            uac.client.send(uac.request("OPTIONS", "1304"), uac.server)
            return await uac.client.nothing(0.5)
        finally:
            uac.close()

    assert asyncio.run(silent())  # black-listed at once
    assert srv.delete("/iplists/black", params={"network": "127.0.0.13"}).status_code == 204
    assert not asyncio.run(silent())
    r = srv.put(
        "/blacklist", {"caller": "*", "called": "900", "rate": 100, "description": "premium"}
    )
    assert r.status_code == 200 and r.json()["called"] == "900"
    assert srv.put("/blacklist", {"caller": "", "called": "1"}).json()["field"] == "caller"
    assert (
        srv.put("/blacklist", {"caller": "1", "called": "1", "rate": 101}).json()["field"] == "rate"
    )
    assert len(srv.call(_blacklist_len(srv))) == 1  # the running blacklist has it
    assert srv.delete("/blacklist", params={"caller": "*", "called": "900"}).status_code == 204
    assert srv.delete("/blacklist", params={"caller": "*", "called": "900"}).status_code == 404


async def _blacklist_len(srv: ThreadedServer) -> list[Any]:
    assert srv.server.blacklist is not None
    return srv.server.blacklist.records()


# -- CDR, system, metrics --------------------------------------------------------------------


def test_cdr_query_and_csv(srv: ThreadedServer) -> None:
    from mss.storage import CdrRecord

    base = time.mktime((2031, 3, 4, 12, 0, 0, 0, 0, -1))
    records = [
        CdrRecord(
            id=f"c{i}",
            caller="1401",
            dialed=str(1500 + i),
            setup_at=base + i,
            result="answered" if i % 2 else "busy",
            status=200 if i % 2 else 486,
        )
        for i in range(7)
    ]
    for rec in records:
        srv.call(srv.server.storage.cdrs.put(rec))
    page = srv.get("/cdr", params={"date": "2031-03-04", "limit": 3}).json()
    assert [c["id"] for c in page["items"]] == ["c0", "c1", "c2"] and page["next_offset"] == 3
    page = srv.get("/cdr", params={"date": "2031-03-04", "limit": 3, "offset": 6}).json()
    assert [c["id"] for c in page["items"]] == ["c6"] and page["next_offset"] is None
    busy = srv.get("/cdr", params={"date": "2031-03-04", "result": "busy", "limit": 2}).json()
    assert [c["id"] for c in busy["items"]] == ["c0", "c2"] and busy["next_offset"] == 2
    assert srv.get("/cdr", params={"user": "1503"}).json()["items"][0]["id"] == "c3"
    r = srv.get("/cdr", params={"since": base + 2, "until": base + 4})
    assert [c["id"] for c in r.json()["items"]] == ["c2", "c3"]
    assert srv.get("/cdr", params={"date": "2031-02-30"}).json()["field"] == "date"
    assert srv.get("/cdr", params={"result": "maybe"}).json()["field"] == "result"
    csv = srv.get("/cdr/2031-03-04.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,setup,") and len(lines) == 8
    assert srv.get("/cdr/2031-13-01.csv").status_code == 422


def test_system_and_metrics(srv: ThreadedServer) -> None:
    import fastsip

    info = srv.get("/system").json()
    assert info["version"] == fastsip.__version__
    assert info["using_extensions"] is fastsip.USING_EXTENSIONS
    assert f"udp:127.0.0.1:{srv.sip_port}" in info["listeners"]
    assert info["uptime"] >= 0 and info["api"] == srv.base
    srv.post("/users", {"number": "1501", "password": "pw-1501"})
    for _ in range(3):
        assert register(srv.sip_port, "1501", "pw-1501")[0] == 200
    text = srv.get("/metrics").text

    def value(name: str, labels: str = "") -> float:
        m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
        assert m is not None, f"{name}{labels} missing"
        return float(m.group(1))

    assert value("mss_sip_requests_received_total", '{method="REGISTER"}') >= 6
    assert value("mss_sip_responses_sent_total", '{status="401"}') >= 3
    assert value("mss_sip_responses_sent_total", '{status="200"}') >= 3
    assert value("mss_registrations") >= 1
    assert value("mss_users") >= 1
    assert value("mss_transport_messages_in_total") >= 6
    assert value("mss_sip_dropped_total", '{reason="banned"}') >= 0
    assert value("mss_sip_transactions", '{kind="server"}') >= 0
    assert value("mss_bans_active") >= 0
    assert value("mss_registrar_events_total", '{event="registered"}') >= 3
    assert "mss_sip_handler_seconds_bucket" in text
    assert "mss_build_info{" in text


# -- miniSIPServer shim ----------------------------------------------------------------------


def _shim(srv: ThreadedServer, op: str, raw: bool = True, **params: str) -> requests.Response:
    data = json.dumps(params, separators=(",", ":"))
    if raw:  # MSS's own form: the JSON object is the query string
        return requests.get(f"{srv.base}/openapi/{op}?{data}", timeout=10)
    return requests.get(f"{srv.base}/openapi/{op}", params={"data": data}, timeout=10)


def test_mss_shim_adds_a_user_who_can_register(srv: ThreadedServer) -> None:
    assert _shim(srv, "version", syskey=srv.token).json()["verInfo"].startswith("mss ")
    r = _shim(
        srv,
        "localuser/set",
        syskey=srv.token,
        usrname="1601",
        usrpwd="pw-1601",
        dispname="Shim User",
    )
    assert r.status_code == 200 and r.json() == {"result": "success", "usrname": "1601"}
    status, addr = register(srv.sip_port, "1601", "pw-1601")
    assert status == 200
    one = _shim(srv, "localuser/query", raw=False, syskey=srv.token, usrname="1601").json()
    assert one == {
        "usrname": "1601",
        "dispname": "Shim User",
        "description": "",
        "addr": f"{addr[0]}:{addr[1]}",
        "state": "1",
    }
    listed = _shim(srv, "localuser", syskey=srv.token).json()
    assert "1601" in [u["usrname"] for u in listed]
    # aliases of the brief's example and a change of password
    r = _shim(srv, "localuser/set", syskey=srv.token, number="1601", password="pw-1601-b")
    assert r.status_code == 200
    assert register(srv.sip_port, "1601", "pw-1601-b")[0] == 200
    assert _shim(srv, "localuser/delete", syskey=srv.token, usrname="1601").status_code == 200
    assert srv.get("/users/1601").status_code == 404
    # errors: 4xx problems naming the field
    assert _shim(srv, "localuser/set", usrname="1602", usrpwd="pw-1602").status_code == 401
    assert _shim(srv, "localuser/set", syskey="wrong", usrname="1602").status_code == 401
    bad = _shim(srv, "localuser/set", syskey=srv.token, usrname="1602", usrpwd="x")
    assert bad.status_code == 422 and bad.json()["field"] == "usrpwd"
    assert _shim(srv, "localuser/set", syskey=srv.token, usrname="1602").json()["field"] == "usrpwd"
    assert _shim(srv, "localuser/delete", syskey=srv.token, usrname="1602").status_code == 404
    r = requests.get(f"{srv.base}/openapi/localuser/set?{{not json", timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "data"


# -- TLS -------------------------------------------------------------------------------------


def test_api_over_tls(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with api_server(
        tmp_path / "data",
        **{"api.tls_cert_file": str(cert_file), "api.tls_key_file": str(key_file)},
    ) as s:
        assert s.base.startswith("https://")
        # Connection: close: the server ends the TLS connection itself (no half-closed leftover)
        headers = {**s.headers(), "Connection": "close"}
        r = requests.get(s.base + "/system", headers=headers, verify=str(ca_file), timeout=10)
        assert r.status_code == 200

        async def ws() -> None:
            ctx = ssl.create_default_context(cafile=str(ca_file))
            async with websockets.connect(f"{s.ws_base}/events?token={s.token}", ssl=ctx) as c:
                await c.ping()

        asyncio.run(ws())


# -- external lines, trunks, dial plan (issue 7 resources) --------------------------------------


def test_lines_trunks_routes_crud_and_live_state(srv: ThreadedServer) -> None:
    r = srv.post(
        "/lines",
        {
            "id": "prov1",
            "account": "+4930123",
            "domain": "127.0.0.1:9",
            "password": "line-secret",
            "register": False,
        },
    )
    assert r.status_code == 201, r.text
    line = r.json()
    assert line["has_password"] is True and "password" not in line
    assert srv.post("/lines", {"id": "prov1", "account": "x", "domain": "d"}).status_code == 409
    bad = srv.post("/lines", {"id": "prov2", "account": "a b", "domain": "d"})
    assert bad.status_code == 422 and bad.json()["field"] == "account"
    bad = srv.post("/lines", {"id": "prov2", "account": "a", "domain": "::1"})
    assert bad.status_code == 422 and bad.json()["field"] == "domain"
    assert srv.get("/lines/prov2").status_code == 404  # nothing half-written
    r = srv.patch("/lines/prov1", {"auth_with_domain": True, "expires": 600})
    assert r.status_code == 200 and r.json()["expires"] == 600 and r.json()["auth_with_domain"]
    assert srv.patch("/lines/prov1", {}).status_code == 422
    # the running server picks the line up from the change feed
    deadline = time.monotonic() + 5
    while srv.server.lines.get("prov1") is None or srv.server.lines.get("prov1").expires != 600:
        assert time.monotonic() < deadline, "the server never applied the line"
        time.sleep(0.1)
    assert srv.get("/lines/prov1/history").status_code == 200
    assert srv.post("/lines/prov1/register-now").status_code == 202
    assert srv.post("/lines/nope/register-now").status_code == 404

    r = srv.post(
        "/trunks",
        {"id": "carrier", "host": "127.0.0.1", "port": 5099, "max_incoming": 2, "max_outgoing": 0},
    )
    assert r.status_code == 201, r.text
    assert r.json()["active_calls"] == {"in": 0, "out": 0}
    assert srv.post("/trunks", {"id": "t2", "host": "exa mple"}).json()["field"] == "host"
    r = srv.patch("/trunks/carrier", {"max_outgoing": None})
    assert r.status_code == 200 and r.json()["max_outgoing"] is None

    r = srv.post(
        "/routes", {"id": "to-carrier", "prefix": "0", "target": "trunk:carrier", "strip": 1}
    )
    assert r.status_code == 201, r.text
    assert (
        srv.post("/routes", {"id": "r2", "prefix": "1", "target": "fax"}).json()["field"]
        == "target"
    )
    assert (
        srv.post(
            "/routes", {"id": "r3", "prefix": "1", "target": "line:prov1", "fallback": "r3"}
        ).json()["field"]
        == "fallback"
    )
    assert "to-carrier" in [x["id"] for x in srv.get("/routes").json()]
    deadline = time.monotonic() + 5
    while "to-carrier" not in [r.id for r in srv.server.dialplan.plan.routes]:
        assert time.monotonic() < deadline, "the server never applied the route"
        time.sleep(0.1)
    metrics = srv.get("/metrics").text
    assert 'mss_trunk_calls{direction="in",trunk="carrier"} 0.0' in metrics
    for path in ("/routes/to-carrier", "/trunks/carrier", "/lines/prov1"):
        assert srv.delete(path).status_code == 204
        assert srv.delete(path).status_code == 404
