"""Registrar and digest authentication against a real server on loopback (both event loops)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from netutil import LOOP_IDS, run_on
from serverutil import Uac, running

from fastsip.parser import parse_auth, parse_datagram


@pytest.fixture(params=LOOP_IDS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def contacts(resp) -> dict[str, int]:
    return {str(c.uri): c.expires for c in resp.contacts}


def test_challenge_offers_sha256_then_md5(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            r = await uac.register("1001", None)
            assert r.status == 401
            values = r.get_all("WWW-Authenticate")
            assert len(values) == 2
            a, b = (parse_auth(v) for v in values)
            assert (a.params["algorithm"], b.params["algorithm"]) == ("SHA-256", "MD5")
            assert a.params["qop"] == b.params["qop"] == "auth"
            assert a.params["realm"] == "example.test"
            uac.close()

    run_on(loop_name, main)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_with_digest(loop_name: str, tmp_path: Path, algorithm: str) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            r = await uac.register("1001", "pw-1001", algorithm=algorithm)
            assert r.status == 200, r.reason
            host, port = uac.client.addr
            assert contacts(r) == {f"sip:1001@{host}:{port}": 3600}
            assert r.get("Date", "").endswith("GMT")
            assert srv.location.online("1001")
            uac.close()

    run_on(loop_name, main)


def test_sha256_response_matches_independent_hashlib(tmp_path: Path) -> None:
    """The server accepts exactly what RFC 7616 SHA-256 digest computes (hashlib by hand)."""

    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            first = await uac.register("1001", None)
            ch = next(parse_auth(v).params for v in first.get_all("WWW-Authenticate"))
            assert ch["algorithm"] == "SHA-256"

            def sha(s: str) -> str:
                return hashlib.sha256(s.encode()).hexdigest()

            ha1 = sha(f"1001:{ch['realm']}:pw-1001")
            ha2 = sha("REGISTER:sip:example.test")
            cnonce, nc = "0a4f113b", "00000001"
            resp = sha(f"{ha1}:{ch['nonce']}:{nc}:{cnonce}:auth:{ha2}")
            auth = (
                f'Digest username="1001", realm="{ch["realm"]}", nonce="{ch["nonce"]}", uri="sip:example.test", '
                f'response="{resp}", algorithm=SHA-256, qop=auth, nc={nc}, cnonce="{cnonce}"'
            )
            host, port = uac.client.addr
            r = await uac.send(
                uac.request(
                    "REGISTER",
                    "1001",
                    contact=f"<sip:1001@{host}:{port}>",
                    headers=[("Authorization", auth)],
                )
            )
            assert r.status == 200
            # the same credentials again (same nonce, same nc): a replay → challenged again
            r = await uac.send(
                uac.request(
                    "REGISTER",
                    "1001",
                    contact=f"<sip:1001@{host}:{port}>",
                    headers=[("Authorization", auth)],
                )
            )
            assert r.status == 401
            uac.close()

    run_on("asyncio", main)


def _mask(data: bytes) -> bytes:
    """Remove what legitimately differs: echoed request headers and the nonce."""
    text = data.decode()
    text = re.sub(r'nonce="[^"]*"', 'nonce="X"', text)
    lines = [
        ln for ln in text.split("\r\n") if not re.match(r"(?i)(via|from|to|call-id|cseq):", ln)
    ]
    return "\r\n".join(lines).encode()


def test_unknown_user_and_wrong_password_are_indistinguishable(
    loop_name: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            raw: dict[str, bytes] = {}
            for label, user in (("wrong", "1001"), ("unknown", "1999")):
                first = await uac.register(user, None)
                r = await uac.answer(
                    first, "REGISTER", user, "not-the-password", contact=f"<sip:{user}@127.0.0.1>"
                )
                raw[label] = bytes(r)
                raw[label + "-first"] = bytes(first)
            assert b"401 Unauthorized" in raw["wrong"]
            assert _mask(raw["wrong"]) == _mask(raw["unknown"])
            assert _mask(raw["wrong-first"]) == _mask(raw["unknown-first"])
            assert srv.auth.stats["failures"] == 2
            uac.close()

    run_on(loop_name, main)


def test_expires_bounds(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            r = await uac.register("1001", "pw-1001", expires=30)
            assert r.status == 423 and r.get("Min-Expires") == "60"
            r = await uac.register("1001", "pw-1001", expires=100000)
            assert r.status == 200 and list(contacts(r).values()) == [7200]
            r = await uac.register("1001", "pw-1001", expires=None)  # default
            assert list(contacts(r).values()) == [3600]
            r = await uac.register(
                "1001", "pw-1001", contact="<sip:1001@127.0.0.1:5099>;expires=120", expires=600
            )
            assert list(contacts(r).values()) == [120]  # the Contact param wins
            r = await uac.register("1001", "pw-1001", expires=0)
            uac.close()

    run_on(loop_name, main)


def test_contact_star_and_query(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001", multi_device=True)
            uac = await Uac.open(srv.port("udp"))
            for p in (5071, 5072):
                r = await uac.register("1001", "pw-1001", contact=f"<sip:1001@127.0.0.1:{p}>")
                assert r.status == 200
            assert len(contacts(r)) == 2
            r = await uac.register("1001", "pw-1001", contact="*", expires=3600)
            assert r.status == 400
            r = await uac.register("1001", "pw-1001", contact="*", expires=0)
            assert r.status == 200 and r.contacts == []
            assert not srv.location.online("1001")
            uac.close()

    run_on(loop_name, main)


def test_call_id_cseq_ordering(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            assert (await uac.register("1001", "pw-1001")).status == 200
            uac.cseq = 0  # same Call-ID; the authenticated retry reuses the stored CSeq (2)
            r = await uac.register("1001", "pw-1001")
            assert r.status == 400 and "CSeq" in r.reason
            uac.cseq = 100
            assert (await uac.register("1001", "pw-1001")).status == 200
            uac.close()

    run_on(loop_name, main)


def test_q_values_kept_and_ordered(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001", multi_device=True)
            uac = await Uac.open(srv.port("udp"))
            await uac.register("1001", "pw-1001", contact="<sip:1001@127.0.0.1:5081>;q=0.2")
            await uac.register("1001", "pw-1001", contact="<sip:1001@127.0.0.1:5082>;q=0.9")
            found = srv.location.lookup("1001")
            assert [(b.contact, b.q) for b in found] == [
                ("sip:1001@127.0.0.1:5082", 0.9),
                ("sip:1001@127.0.0.1:5081", 0.2),
            ]
            uac.close()

    run_on(loop_name, main)


@pytest.mark.parametrize("multi", [False, True])
def test_one_number_multi_device(loop_name: str, tmp_path: Path, multi: bool) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001", multi_device=multi, max_devices=3)
            uacs = [await Uac.open(srv.port("udp")) for _ in range(4)]
            results = []
            for u in uacs:
                results.append(await u.register("1001", "pw-1001"))
            if not multi:
                # off: each new device replaces the previous one (last registration wins)
                assert [r.status for r in results] == [200, 200, 200, 200]
                assert len(contacts(results[-1])) == 1
                assert len(srv.location.lookup("1001")) == 1
                assert srv.location.lookup("1001")[0].contact.endswith(
                    f":{uacs[-1].client.addr[1]}"
                )
            else:
                assert [r.status for r in results] == [200, 200, 200, 403]
                assert "device limit" in results[3].reason
                assert len(srv.location.lookup("1001")) == 3
                # expired bindings do not count: one device unregisters, the fourth gets in
                assert (await uacs[0].register("1001", "pw-1001", expires=0)).status == 200
                assert (await uacs[3].register("1001", "pw-1001")).status == 200
            for u in uacs:
                u.close()

    run_on(loop_name, main)


def test_ip_authorization(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1005", "pw-1005", allow_ips=["127.0.0.5"])
            await srv.users.add("1006", "pw-1006")
            ok = await Uac.open(srv.port("udp"), host="127.0.0.5")
            r = await ok.register("1005", None)  # no credentials at all
            assert r.status == 200
            # OPTIONS and INVITE from the authorized address are not challenged
            r = await ok.send(ok.request("OPTIONS", "mss"))
            assert r.status == 200
            r = await ok.send(
                ok.request("INVITE", "1006", uri="sip:1006@example.test", from_user="1005")
            )
            assert r.status not in (401, 407)
            # another user's From from that address is challenged; so is 1005 from elsewhere
            r = await ok.register("1006", None)
            assert r.status == 401
            other = await Uac.open(srv.port("udp"), host="127.0.0.6")
            assert (await other.register("1005", None)).status == 401
            ok.close()
            other.close()

    run_on(loop_name, main)


def test_stale_nonce_gets_stale_challenge(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **{"auth.nonce_lifetime": 1}) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            first = await uac.register("1001", None)
            await asyncio.sleep(1.3)
            r = await uac.answer(
                first, "REGISTER", "1001", "pw-1001", contact="<sip:1001@127.0.0.1>"
            )
            assert r.status == 401
            assert all(
                parse_auth(v).params.get("stale") == "true" for v in r.get_all("WWW-Authenticate")
            )
            r = await uac.answer(r, "REGISTER", "1001", "pw-1001", contact="<sip:1001@127.0.0.1>")
            assert r.status == 200
            assert srv.auth.stats["failures"] == 0  # a stale nonce is not a failure
            uac.close()

    run_on("asyncio", main)


def test_aor_must_be_local_sip_uri(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            data = uac.request("REGISTER", "1001").replace(
                b"To: <sip:1001@example.test>", b"To: <isbn:2983792873>"
            )
            assert (await uac.send(data)).status == 400
            data = uac.request("REGISTER", "1001").replace(
                b"To: <sip:1001@example.test>", b"To: <sip:1001@elsewhere.test>"
            )
            assert (await uac.send(data)).status == 403
            # authenticated as 1001 but registering 1002
            await srv.users.add("1002", "pw-1002")
            first = await uac.register("1002", None)
            r = await uac.answer(
                first, "REGISTER", "1002", "pw-1001", username="1001", contact="<sip:x@127.0.0.1>"
            )
            assert r.status == 403
            uac.close()

    run_on("asyncio", main)


def test_failed_response_403_option(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **{"auth.failed_response": 403}) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            assert (await uac.register("1001", "wrong")).status == 403
            assert (await uac.register("1999", "wrong")).status == 403
            uac.close()

    run_on("asyncio", main)


def test_path_stored_and_echoed(tmp_path: Path) -> None:
    """RFC 3327: Path headers of a REGISTER are kept with the binding and returned in the 200
    when the UA supports ``path``."""

    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            path = [
                ("Path", "<sip:edge1.example.test;lr>"),
                ("Path", "<sip:edge2.example.test;lr>"),
            ]
            r = await uac.register("1001", "pw-1001", extra=[*path, ("Supported", "path")])
            assert r.status == 200
            assert r.get_all("Path") == [
                "<sip:edge1.example.test;lr>",
                "<sip:edge2.example.test;lr>",
            ]
            [b] = srv.location.lookup("1001")
            assert b.path == ("<sip:edge1.example.test;lr>", "<sip:edge2.example.test;lr>")
            uac.close()

    run_on("asyncio", main)


def test_unknown_user_costs_a_real_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing oracle: an unknown user's credentials are verified against a dummy HA1, so the
    server does the same digest work as for a known user with a wrong password."""
    import mss.sip.auth as auth_mod

    calls: list[str] = []
    real = auth_mod.verify_response

    def counting(params, **kw):  # type: ignore[no-untyped-def]
        calls.append(params.get("username", ""))
        return real(params, **kw)

    monkeypatch.setattr(auth_mod, "verify_response", counting)

    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            assert (await uac.register("1999", "whatever")).status == 401
            assert (await uac.register("1001", "wrong-one")).status == 401
            assert calls == ["1999", "1001"]
            uac.close()

    run_on("asyncio", main)


# ---------------------------------------------------------------------------------------------
# [registrar] persist = "write-back" (Kamailio usrloc db_mode 2)
# ---------------------------------------------------------------------------------------------


def test_write_back_answers_before_the_commit_and_commits_once_per_interval(
    loop_name: str, tmp_path: Path
) -> None:
    async def main() -> None:
        overrides = {"registrar.persist": "write-back", "registrar.write_back_interval": 2.0}
        async with running(tmp_path, **overrides) as srv:
            for n in range(1001, 1006):
                await srv.users.add(str(n), f"pw-{n}")
            commits = srv.location.commits
            uacs = [await Uac.open(srv.port("udp")) for _ in range(5)]
            replies = await asyncio.gather(
                *(u.register(str(1001 + i), f"pw-{1001 + i}") for i, u in enumerate(uacs))
            )
            assert [r.status for r in replies] == [200] * 5
            # answered, online in memory, not in storage yet
            assert all(srv.location.online(str(n)) for n in range(1001, 1006))
            assert srv.location.pending == 5
            assert await srv.storage.bindings.for_aor("1001") == []
            for _ in range(120):
                if srv.location.pending == 0 and srv.location.commits > commits:
                    break
                await asyncio.sleep(0.05)
            assert srv.location.pending == 0
            # the five registrations of one interval went into one transaction
            assert srv.location.commits == commits + 1
            assert srv.location.committed_changes >= 5
            rows = await srv.storage.bindings.for_aor("1003")
            assert [b.aor for b in rows] == ["1003"]
            for u in uacs:
                u.close()

    run_on(loop_name, main)


def test_write_back_clean_stop_loses_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        overrides = {"registrar.persist": "write-back", "registrar.write_back_interval": 60}
        async with running(tmp_path, **overrides) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            assert (await uac.register("1001", "pw-1001")).status == 200
            assert srv.location.pending == 1
            uac.close()
        # the stop committed what the 60 s interval still held
        async with running(tmp_path) as srv:
            assert srv.location.online("1001")
            assert [b.aor for b in await srv.storage.bindings.for_aor("1001")] == ["1001"]

    run_on("asyncio", main)


def test_write_back_failed_commit_is_retried_and_memory_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mss.storage.sqlite import SqliteBindings

    real_apply = SqliteBindings.apply
    calls: list[int] = []

    async def failing_once(self, changes):  # type: ignore[no-untyped-def]
        calls.append(len(changes))
        if len(calls) == 1:
            raise OSError("disk full (simulated)")
        await real_apply(self, changes)

    monkeypatch.setattr(SqliteBindings, "apply", failing_once)

    async def main() -> None:
        overrides = {"registrar.persist": "write-back", "registrar.write_back_interval": 0.1}
        async with running(tmp_path, **overrides) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            assert (await uac.register("1001", "pw-1001")).status == 200
            for _ in range(40):
                if len(calls) >= 2 and srv.location.pending == 0:
                    break
                await asyncio.sleep(0.05)
            assert calls[:2] == [1, 1]  # failed, then retried with the same change
            assert srv.location.online("1001")  # memory kept what the phone was told
            assert [b.aor for b in await srv.storage.bindings.for_aor("1001")] == ["1001"]
            uac.close()

    run_on("asyncio", main)


def test_write_back_operator_removal_waits_for_its_commit(tmp_path: Path) -> None:
    async def main() -> None:
        overrides = {"registrar.persist": "write-back", "registrar.write_back_interval": 60}
        async with running(tmp_path, **overrides) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            assert (await uac.register("1001", "pw-1001")).status == 200
            await srv.location.flush()
            assert len(await srv.storage.bindings.for_aor("1001")) == 1
            gone = await srv.location.remove("1001")
            assert len(gone) == 1
            assert await srv.storage.bindings.for_aor("1001") == []
            assert srv.location.pending == 0
            uac.close()

    run_on("asyncio", main)


# ---------------------------------------------------------------------------------------------
# Stateless challenges (RFC 3261 §8.2.7)
# ---------------------------------------------------------------------------------------------


def test_register_challenge_leaves_no_transaction_and_retransmission_is_rechallenged(
    loop_name: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            layer = srv.core.layer
            before = layer.server_count
            uac = await Uac.open(srv.port("udp"))
            data = uac.request("REGISTER", "1001", headers=[("Expires", "3600")])
            first = await uac.send(data)
            assert first.status == 401
            assert layer.server_count == before  # nothing kept for an unauthenticated request
            assert srv.core.stats["stateless"] == 1
            again = await uac.send(data)  # the same bytes: a retransmission
            assert again.status == 401
            nonces = [
                parse_auth(r.get_all("WWW-Authenticate")[0]).params["nonce"] for r in (first, again)
            ]
            assert nonces[0] != nonces[1]  # challenged anew, statelessly
            assert layer.server_count == before
            # the answer to the challenge is handled statefully: its 200 is kept for
            # retransmissions, which get the very same bytes
            ok = await uac.answer(
                first, "REGISTER", "1001", "pw-1001", headers=[("Expires", "3600")]
            )
            assert ok.status == 200
            assert layer.server_count == before + 1
            uac.close()

    run_on(loop_name, main)


def test_registration_retransmitted_during_its_commit_is_absorbed(tmp_path: Path) -> None:
    """Write-through: the handler answers after the commit, so its transaction exists from the
    moment it returned unanswered; a retransmission meanwhile is absorbed, not re-handled, and
    one after the 200 gets the same bytes."""

    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("1001", "pw-1001")
            uac = await Uac.open(srv.port("udp"))
            first = await uac.register("1001", None)
            assert first.status == 401
            from fastsip.digest import client_authorization

            params = parse_auth(first.get_all("WWW-Authenticate")[-1]).params
            auth = client_authorization(
                username="1001",
                realm="example.test",
                password="pw-1001",
                method="REGISTER",
                uri="sip:example.test",
                nonce=params["nonce"],
                algorithm=params["algorithm"],
                qop="auth",
                cnonce="c0ffee",
            )
            host, port = uac.client.addr
            data = uac.request(
                "REGISTER",
                "1001",
                contact=f"<sip:1001@{host}:{port}>",
                headers=[("Expires", "3600"), ("Authorization", auth)],
            )
            registered = srv.registrar.stats["registered"]
            uac.client.send(data, uac.server)
            uac.client.send(data, uac.server)  # before the commit finished
            reply = parse_datagram(await uac.client.recv(3.0))
            assert reply.status == 200
            # the copy that came while the transaction was Trying was absorbed (§17.2.2)
            assert await uac.client.nothing(0.3)
            uac.client.send(data, uac.server)  # after the 200: answered from the transaction
            assert await uac.client.recv(3.0) == bytes(reply)
            assert srv.registrar.stats["registered"] == registered + 1  # handled once
            uac.close()

    run_on("asyncio", main)
