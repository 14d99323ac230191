"""External lines (issue 7): registration to providers, with small SIP peers on loopback.

The providers are :mod:`sippeers` stubs speaking SIP over real UDP sockets:

* a digest registrar (MD5 and SHA-256, Min-Expires, failures with Retry-After...);
* an IMS-like registrar reachable only through a relay on another loopback address (the
  "Via" / outbound-proxy address) whose domain does not resolve, answering 403 unless the
  authorization user name is ``account@domain`` (China Telecom's IMS);
* a provider answering ``400`` + ``P-Registrar-Error: Invalid CSeq number`` to any REGISTER that
  reuses a Call-ID: fails with the RFC 3261 ``same`` policy, works with ``new`` and with
  ``[sip] gVarSipRegSameDialog=0`` in ``mss_var_param.ini``.

The real-registrar test (Kamailio) is in ``test_lines_kamailio.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from serverutil import mss_cli, running
from sippeers import DigestRegistrar, Relay, auth_params

from mss.config import LinesConfig
from mss.features.lines import (
    LineService,
    LineState,
    auth_username,
    line_target,
    parse_hostport,
    read_reg_same_dialog,
    refresh_delay,
    request_uri,
    retry_delay,
    uses_new_call_id,
)
from mss.storage import LineRecord
from mss.storage.memory import MemoryStorage

FAST = {
    "timers.t1": 0.025,
    "timers.t2": 0.2,
    "lines.retry_min": 0.2,
    "lines.retry_max": 0.8,
}


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_state(server: Any, line_id: str, state: LineState, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        st = server.lines.status(line_id)
        if st is not None and st.state == state:
            return st
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"line {line_id} not {state.value}: {server.lines.statuses()} {server.lines.history(line_id)}"
    )


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


# -- pure policy ------------------------------------------------------------------------------


def test_auth_username_forms() -> None:
    line = LineRecord("l", "+8612345678", "gd.ctcims.cn")
    assert auth_username(line) == "+8612345678"
    assert auth_username(LineRecord("l", "acc", "d.example:5080", auth_user="auth")) == "auth"
    ims = LineRecord("l", "+8612345678", "gd.ctcims.cn", auth_with_domain=True)
    assert auth_username(ims) == "+8612345678@gd.ctcims.cn"
    # the port of the domain is not part of the IMS identity; an explicit @ is kept
    assert (
        auth_username(LineRecord("l", "a", "ims.test:5060", auth_with_domain=True)) == "a@ims.test"
    )
    assert auth_username(LineRecord("l", "a", "x", auth_user="b@y", auth_with_domain=True)) == "b@y"


def test_target_and_request_uri() -> None:
    line = LineRecord("l", "acc", "gd.ctcims.cn", proxy="10.0.0.5:5070")
    assert line_target(line) == ("udp", "10.0.0.5", 5070)
    assert request_uri(line) == "sip:gd.ctcims.cn"
    assert line_target(LineRecord("l", "a", "sip.example.com")) == ("udp", "sip.example.com", 5060)
    assert line_target(LineRecord("l", "a", "sip.example.com", transport="tls")) == (
        "tls",
        "sip.example.com",
        5061,
    )
    assert line_target(LineRecord("l", "a", "[2001:db8::1]:5080", transport="tcp")) == (
        "tcp",
        "2001:db8::1",
        5080,
    )
    assert request_uri(LineRecord("l", "a", "example.com:5080")) == "sip:example.com:5080"
    assert request_uri(LineRecord("l", "a", "example.com", transport="tls")) == "sips:example.com"
    for bad in ("", "a b", "host:99999", "::1", "[::1", "host:x"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


def test_backoff_and_refresh_timing() -> None:
    assert [retry_delay(n, 30, 600) for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]
    assert retry_delay(1, 30, 600, retry_after=120) == 120
    assert retry_delay(1, 30, 600, retry_after=7200) == 600
    assert retry_delay(5, 30, 600, retry_after=10) == 480
    assert retry_delay(10_000, 30, 600) == 600
    assert refresh_delay(3600, 0.85) == 3060
    assert refresh_delay(60, 0.85) == 51
    assert refresh_delay(20, 0.85) == 15  # at least 5 s before expiry
    assert refresh_delay(2, 0.85) == 1  # never sooner than 1 s


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sip]\ngVarSipRegSameDialog=0\n", False),
        ("[SIP]\r\ngvarsipregsamedialog = 1\r\n", True),
        ("\ufeff[other]\nx=1\n[sip]\ngVarSipRegSameDialog=0 ; new Call-ID\n", False),
        ("[sip]\ngVarSipRegSameDialog=yes\n", None),
        ("[sip]\nsomething=1\n", None),
        ("not an ini file", None),
    ],
)
def test_mss_var_param_ini(tmp_path: Path, text: str, expected: bool | None) -> None:
    assert read_reg_same_dialog(tmp_path) is None  # no file
    (tmp_path / "mss_var_param.ini").write_text(text, encoding="utf-8")
    assert read_reg_same_dialog(tmp_path) is expected


def test_call_id_policy_precedence() -> None:
    assert uses_new_call_id(LineRecord("l", "a", "d"), default_new=False) is False
    assert uses_new_call_id(LineRecord("l", "a", "d"), default_new=True) is True
    assert uses_new_call_id(LineRecord("l", "a", "d", new_call_id=False), default_new=True) is False
    assert uses_new_call_id(LineRecord("l", "a", "d", new_call_id=True), default_new=False) is True


def test_service_state_history_is_bounded_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        storage = MemoryStorage()
        await storage.open()
        await storage.lines.add(LineRecord("l1", "a", "d"))
        svc = LineService(storage, config=LinesConfig(history=5))
        await svc.load()
        caplog.set_level(logging.INFO, logger="mss.lines")
        svc.set_state("l1", LineState.REGISTERING, reason="line added")
        svc.set_state(
            "l1", LineState.REGISTERED, status=200, reason="ok", registered_until=1.0, expires=60
        )
        svc.set_state(
            "l1", LineState.REGISTERED, status=200, reason="ok", registered_until=2.0, expires=60
        )
        assert [e["state"] for e in svc.history("l1")] == [
            "registering",
            "registered",
        ]  # refresh: no event
        for i in range(6):
            svc.set_state(
                "l1", LineState.FAILED, status=503, reason=f"fail {i}", next_retry=100.0 + i
            )
        hist = svc.history("l1")
        assert len(hist) == 5 and hist[-1]["reason"] == "fail 5" and hist[-1]["next_retry"] == 105.0
        st = svc.status("l1")
        assert st is not None and st.failures == 6 and st.state == LineState.FAILED
        records = [r for r in caplog.records if r.name == "mss.lines"]
        assert records[-1].levelname == "WARNING"
        assert (
            records[-1].line == "l1" and records[-1].state == "failed" and records[-1].status == 503
        )  # type: ignore[attr-defined]
        await svc.stop()
        published = json.loads(await storage.kv.get("line.status.l1") or "{}")
        assert published["state"] == "failed" and published["reason"] == "fail 5"

    run(main())


# -- registration against SIP peers -----------------------------------------------------------


def test_registers_refreshes_and_unregisters_on_stop(tmp_path: Path) -> None:
    async def main() -> None:
        reg = await DigestRegistrar(
            "alice", "pw", algorithms=("SHA-256", "MD5"), max_expires=2
        ).start()
        try:
            async with running(tmp_path, **FAST) as server:
                await server.storage.lines.add(
                    LineRecord(
                        "l1", "alice", f"127.0.0.1:{reg.addr[1]}", password="pw", expires=300
                    )
                )
                st = await wait_state(server, "l1", LineState.REGISTERED)
                assert st.expires == 2 and st.status == 200
                # refreshed before expiry: 3 more 2xx, and no new history entries
                await until(lambda: reg.ok_count() >= 4, 8)
                assert [e["state"] for e in server.lines.history("l1")] == [
                    "registering",
                    "registered",
                ]
                first = reg.seen[0].request
                assert first.uri_text == f"sip:127.0.0.1:{reg.addr[1]}"
                assert str(first.to.uri) == "sip:alice@127.0.0.1" and first.expires == 300
                assert first.contact is not None and first.contact.uri.user == "alice"
                authed = [s for s in reg.seen if s.request.authorization]
                assert all(auth_params(s.request)["algorithm"] == "SHA-256" for s in authed)  # type: ignore[index]
                # "same" (RFC 3261 §10.2.4): one Call-ID, CSeq + 1 every time
                assert len({s.request.call_id for s in reg.seen}) == 1
                cseqs = [s.request.cseq.seq for s in reg.seen]  # type: ignore[union-attr]
                assert cseqs == sorted(cseqs) and len(set(cseqs)) == len(cseqs)
                assert reg.bindings
                # hooks for the B2BUA: the registered Contact, and which line a request is for
                regs = server.line_registrations
                assert regs.registered_contact("l1") == f"<sip:alice@127.0.0.1:{server.port()}>"
                assert regs.line_for_incoming("alice", "127.0.0.1", reg.addr[1]).id == "l1"
                assert regs.line_for_incoming(None, "127.0.0.1", reg.addr[1]).id == "l1"
                # the provider's host alone (another port, another user) is not enough
                assert regs.line_for_incoming(None, "127.0.0.1", 5060) is None
                assert regs.line_for_incoming("1001", "127.0.0.1", 5060) is None
                assert regs.line_for_incoming("alice", "192.0.2.1", reg.addr[1]) is None
            # stopping the server removed the binding (REGISTER with Expires: 0)
            assert reg.unregistrations() and not reg.bindings
        finally:
            reg.close()

    run(main())


def test_min_expires_423(tmp_path: Path) -> None:
    async def main() -> None:
        reg = await DigestRegistrar("bob", "pw", min_expires=120).start()
        try:
            async with running(tmp_path, **FAST) as server:
                await server.storage.lines.add(
                    LineRecord("l", "bob", f"127.0.0.1:{reg.addr[1]}", password="pw", expires=60)
                )
                st = await wait_state(server, "l", LineState.REGISTERED)
                assert st.expires == 120
                assert 423 in reg.statuses()
                assert reg.seen[-1].request.expires == 120
        finally:
            reg.close()

    run(main())


def test_failure_is_visible_and_retried_with_backoff(tmp_path: Path) -> None:
    async def main() -> None:
        reg = await DigestRegistrar(
            "carol", "pw", fail_with=503, fail_headers=[("Warning", '399 sbc "maintenance"')]
        ).start()
        try:
            async with running(tmp_path, **FAST) as server:
                await server.storage.lines.add(
                    LineRecord("l", "carol", f"127.0.0.1:{reg.addr[1]}", password="pw")
                )
                st = await wait_state(server, "l", LineState.FAILED)
                assert st.status == 503 and "maintenance" in st.reason and st.next_retry is not None
                await until(lambda: len(reg.seen) >= 4, 6)
                # 0.2, 0.4, 0.8 (capped): the attempts get further apart
                times = [e["at"] for e in server.lines.history("l") if e["state"] == "failed"]
                gaps = [b - a for a, b in itertools.pairwise(times)]
                assert gaps[0] >= 0.15 and gaps[1] >= 0.3 and gaps[1] > gaps[0] * 1.4
                # the provider recovers: the next retry registers
                reg.fail_with = None
                await wait_state(server, "l", LineState.REGISTERED)
                states = [e["state"] for e in server.lines.history("l")]
                assert (
                    states[0] == "registering" and "failed" in states and states[-1] == "registered"
                )
                assert server.lines.status("l").failures == 0
        finally:
            reg.close()

    run(main())


def test_wrong_password_and_timeout_fail_with_reasons(tmp_path: Path) -> None:
    async def main() -> None:
        reg = await DigestRegistrar("dave", "right").start()
        try:
            async with running(tmp_path, **FAST) as server:
                await server.storage.lines.add(
                    LineRecord("bad", "dave", f"127.0.0.1:{reg.addr[1]}", password="wrong")
                )
                # nobody listens on this port: the transaction times out (408, local)
                await server.storage.lines.add(LineRecord("dead", "x", "127.0.0.1:9", password="p"))
                st = await wait_state(server, "bad", LineState.FAILED)
                assert st.status == 401 and "credentials rejected" in st.reason
                st = await wait_state(server, "dead", LineState.FAILED, timeout=10)
                assert st.status in (408, 503) and (
                    "timeout" in st.reason or "transport" in st.reason
                )
                assert st.next_retry is not None
        finally:
            reg.close()

    run(main())


def test_unresolvable_domain_fails_visibly(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **FAST) as server:
            await server.storage.lines.add(
                LineRecord("l", "a", "no-such-host.invalid", password="p")
            )
            st = await wait_state(server, "l", LineState.FAILED, timeout=15)
            assert "cannot resolve no-such-host.invalid" in st.reason and st.next_retry is not None

    run(main())


def test_ims_registrar_through_proxy_needs_account_at_domain(tmp_path: Path) -> None:
    """The IMS domain does not resolve; only the proxy ("Via") address on 127.0.0.2 reaches it."""
    domain = "ims.mss-test.invalid"

    async def main() -> None:
        ims = await DigestRegistrar(
            "+8612345678",
            "imspw",
            realm=domain,
            username=f"+8612345678@{domain}",
            forbid_wrong_username=True,
        ).start("127.0.0.3")
        relay = await Relay(ims.addr).start("127.0.0.2")
        try:
            async with running(tmp_path, **FAST) as server:
                proxy = f"{relay.addr[0]}:{relay.addr[1]}"
                await server.storage.lines.add(
                    LineRecord("ims", "+8612345678", domain, password="imspw", proxy=proxy)
                )
                st = await wait_state(server, "ims", LineState.FAILED)
                assert st.status == 403 and "403 Forbidden" in st.reason
                assert ims.seen[-1].username == "+8612345678"
                # every packet went through the relay; the URIs kept the IMS domain
                assert relay.forwarded and all(
                    r.uri_text == f"sip:{domain}" for r in relay.forwarded
                )
                assert all(str(r.to.uri) == f"sip:+8612345678@{domain}" for r in relay.forwarded)

                # the option "authorization ID includes the domain": registered
                line = await server.storage.lines.get("ims")
                await server.storage.lines.update(
                    LineRecord(**{**_fields(line), "auth_with_domain": True})
                )
                await wait_state(server, "ims", LineState.REGISTERED)
                assert (
                    ims.seen[-1].username == f"+8612345678@{domain}" and ims.seen[-1].status == 200
                )
                assert ims.bindings
        finally:
            relay.close()
            ims.close()

    run(main())


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


@pytest.mark.parametrize("policy", ["same", "new", "ini"])
def test_provider_rejecting_reused_call_id(tmp_path: Path, policy: str) -> None:
    """400 Invalid CSeq number for a reused Call-ID: ``same`` fails, ``new`` and the ini work."""

    async def main() -> None:
        if policy == "ini":
            tmp_path.mkdir(exist_ok=True)
            (tmp_path / "mss_var_param.ini").write_text("[sip]\r\ngVarSipRegSameDialog=0\r\n")
        reg = await DigestRegistrar("erin", "pw", reject_reused_call_id=True, max_expires=2).start()
        new_call_id = {"same": False, "new": True, "ini": None}[policy]
        try:
            async with running(tmp_path, **FAST) as server:
                await server.storage.lines.add(
                    LineRecord(
                        "l",
                        "erin",
                        f"127.0.0.1:{reg.addr[1]}",
                        password="pw",
                        new_call_id=new_call_id,
                    )
                )
                if policy == "same":
                    st = await wait_state(server, "l", LineState.FAILED)
                    assert st.status == 400 and "Invalid CSeq number" in st.reason
                    assert reg.statuses()[:2] == [401, 400]
                    return
                await wait_state(server, "l", LineState.REGISTERED)
                await until(lambda: reg.ok_count() >= 3, 8)  # refreshes work too
                assert 400 not in reg.statuses()
                assert len({s.request.call_id for s in reg.seen}) == len(reg.seen)
        finally:
            reg.close()

    run(main())


def test_edits_reregister_and_disable_unregisters(tmp_path: Path) -> None:
    async def main() -> None:
        reg = await DigestRegistrar("fred", "pw").start()
        other = await DigestRegistrar("fred", "pw").start()
        try:
            async with running(tmp_path, **FAST) as server:
                base = LineRecord("l", "fred", f"127.0.0.1:{reg.addr[1]}", password="pw")
                await server.storage.lines.add(base)
                await wait_state(server, "l", LineState.REGISTERED)
                # moved to another registrar: the old binding is removed first
                await server.storage.lines.update(
                    LineRecord(**{**_fields(base), "domain": f"127.0.0.1:{other.addr[1]}"})
                )
                await until(lambda: bool(other.bindings), 8)
                assert not reg.bindings and reg.unregistrations()
                await wait_state(server, "l", LineState.REGISTERED)
                # register off: unregistered, with the reason
                await server.storage.lines.update(
                    LineRecord(
                        **{
                            **_fields(base),
                            "domain": f"127.0.0.1:{other.addr[1]}",
                            "register": False,
                        }
                    )
                )
                st = await wait_state(server, "l", LineState.UNREGISTERED)
                assert st.reason == "registration off" and not other.bindings
                # deleted: no state left
                await server.storage.lines.delete("l")
                await until(lambda: server.lines.status("l") is None, 8)
        finally:
            reg.close()
            other.close()

    run(main())


@pytest.mark.slow
def test_cli_lines_with_a_running_server(tmp_path: Path) -> None:
    """``mss line add|set|list|register-now|del`` in another process drive the running server."""

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(mss_cli, *args, data_dir=tmp_path)

    async def main() -> None:
        reg = await DigestRegistrar("gina", "pw").start()
        try:
            async with running(tmp_path, **FAST) as server:
                await cli(
                    "line",
                    "add",
                    "prov",
                    "--account",
                    "gina",
                    "--domain",
                    f"127.0.0.1:{reg.addr[1]}",
                    "--password",
                    "pw",
                    "--expires",
                    "600",
                )
                await wait_state(server, "prov", LineState.REGISTERED)
                listed = json.loads((await cli("line", "list", "--json")).stdout)
                assert listed[0]["state"] == "registered" and listed[0]["password_set"]
                assert "pw" not in (await cli("line", "list")).stdout.replace("prov", "")
                n = reg.ok_count()
                await cli("line", "register-now", "prov")
                await until(lambda: reg.ok_count() > n, 5)
                await cli("line", "set", "prov", "--password", "bad")
                st = await wait_state(server, "prov", LineState.FAILED)
                assert "credentials rejected" in st.reason
                text = (await cli("line", "list")).stdout
                assert "failed" in text and "credentials rejected" in text
                await cli("line", "set", "prov", "--disable")
                await wait_state(server, "prov", LineState.UNREGISTERED)
                await cli("line", "del", "prov")
                await until(lambda: server.lines.get("prov") is None, 5)
                out = await asyncio.to_thread(
                    mss_cli, "line", "del", "prov", data_dir=tmp_path, check=False
                )
                assert out.returncode == 2 and "no line prov" in out.stderr
        finally:
            reg.close()

    run(main(), 120)


def test_check_line_names_the_field() -> None:
    from mss.features.lines import check_line

    check_line(LineRecord("l", "+8612345678", "gd.ctcims.cn", proxy="[2001:db8::5]:5070"))
    for record, field in [
        (LineRecord("l", "a b", "d"), "account"),
        (LineRecord("l", "a", "d:0"), "domain"),
        (LineRecord("l", "a", "d", proxy="x y"), "proxy"),
        (LineRecord("l", "a", "d", contact_user="c@d"), "contact_user"),
        (LineRecord("l", "a", "d", expires=0), "expires"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}:"):
            check_line(record)
    check_line(LineRecord("l", "a", "d", expires=0, register=False))


@pytest.mark.slow
def test_line_cli_errors(tmp_path: Path) -> None:
    def cli(*args: str) -> Any:
        return mss_cli(*args, data_dir=tmp_path, check=False)

    for args, field in [
        (("line", "add", "x", "--account", "a b", "--domain", "d"), "account"),
        (("line", "add", "x", "--account", "a", "--domain", "d:99999"), "domain"),
        (("line", "add", "x", "--account", "a", "--domain", "d", "--expires", "-5"), "expires"),
        (("line", "set", "nope", "--expires", "60"), "line"),
        (("line", "set", "nope"), "nothing to change"),
        (("line", "register-now", "nope"), "line"),
    ]:
        res = cli(*args)
        assert res.returncode == 2 and res.stderr.startswith(f"mss: error: {field}"), (
            args,
            res.stderr,
        )
        assert len(res.stderr.strip().splitlines()) == 1
    assert cli("line", "list").stdout.strip() == "no external lines"
    assert (
        cli("line", "add", "x", "--account", "a", "--domain", "d", "--call-id", "new").returncode
        == 0
    )
    assert json.loads(cli("line", "list", "--json").stdout)[0]["call_id"] == "new"
    assert cli("line", "set", "x", "--call-id", "default").returncode == 0
    assert json.loads(cli("line", "list", "--json").stdout)[0]["call_id"] == "default"
