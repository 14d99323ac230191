"""Anti-scanning (issue 6): fail-to-ban, the drop-before-parse gate, IP black/white lists, bans
in storage, the CLI, persistence across ``kill -9``; real servers on loopback, sources simulated
with different 127.0.0.x addresses."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from netutil import LOOP_IDS, run_on
from serverutil import Uac, free_udp_port, make_config, mss_cli, running, serve, wait_for

from fastsip.digest import client_authorization
from fastsip.parser import parse_auth, parse_datagram
from mss.config import SecurityConfig
from mss.features import security as sec
from mss.features.security import (
    IpNetSet,
    SecurityError,
    SecurityPolicy,
    operator_ban,
    pack_host,
    parse_duration,
    parse_ip,
    parse_network,
)
from mss.storage import BanRecord, IpListRecord, MemoryStorage


@pytest.fixture(params=LOOP_IDS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def events(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == kind]


async def wrong(port: int, host: str, user: str = "150", times: int = 1, **kw: Any) -> list[int]:
    """``times`` REGISTERs with a wrong password from ``host``: the final statuses."""
    uac = await Uac.open(port, host=host)
    try:
        return [(await uac.register(user, f"wrong-{i}", **kw)).status for i in range(times)]
    finally:
        uac.close()


async def options_answered(port: int, host: str, wait: float = 0.4) -> bool:
    """Whether an OPTIONS from ``host`` gets any answer within ``wait`` seconds."""
    uac = await Uac.open(port, host=host)
    try:
        uac.client.send(uac.request("OPTIONS", "150"), uac.server)
        return not await uac.client.nothing(wait)
    finally:
        uac.close()


async def tcp_answered(port: int, host: str) -> bool:
    """Whether an OPTIONS over a new TCP connection from ``host`` gets an answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    except OSError:
        return False
    try:
        uac = Uac(None, port)  # type: ignore[arg-type]
        data = (
            "OPTIONS sip:example.test SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {host}:5060;branch=z9hG4bK-tcp{time.monotonic_ns()}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:150@example.test>;tag=t\r\nTo: <sip:150@example.test>\r\n"
            f"Call-ID: tcp-{uac.call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        writer.write(data.encode())
        await writer.drain()
        got = await asyncio.wait_for(reader.read(4096), 1.0)
        return got.startswith(b"SIP/2.0 ")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def eventually(predicate: Any, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------------
# What counts as a failure
# ---------------------------------------------------------------------------------------------


def test_challenges_and_foreign_nonces_are_not_failures_replays_are(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("150", "pw-150-ok")
            port = srv.port("udp")
            uac = await Uac.open(port, host="127.0.0.10")
            # first challenges of requests without credentials: never failures (fail2ban rule)
            for _ in range(25):
                assert (await uac.register("150", None)).status == 401
            # right password over a nonce we never issued: challenged again, not a failure
            auth = client_authorization(
                username="150",
                realm="example.test",
                password="pw-150-ok",
                method="REGISTER",
                uri="sip:example.test",
                nonce="bogus-nonce",
                algorithm="MD5",
                qop="auth",
            )
            r = await uac.send(
                uac.request(
                    "REGISTER",
                    "150",
                    contact="<sip:150@127.0.0.10>",
                    headers=[("Authorization", auth)],
                )
            )
            assert r.status == 401
            assert srv.auth.stats["failures"] == 0 and srv.security.stats["failures"] == 0
            assert await options_answered(port, "127.0.0.10")
            # a replayed nonce count is a failure
            first = await uac.register("150", None)
            ch = next(
                parse_auth(v).params
                for v in first.get_all("WWW-Authenticate")
                if parse_auth(v).params.get("algorithm") == "MD5"
            )
            auth = client_authorization(
                username="150",
                realm=ch["realm"],
                password="pw-150-ok",
                method="REGISTER",
                uri="sip:example.test",
                nonce=ch["nonce"],
                algorithm="MD5",
                qop="auth",
            )
            req = uac.request(
                "REGISTER", "150", contact="<sip:150@127.0.0.10>", headers=[("Authorization", auth)]
            )
            assert (await uac.send(req)).status == 200
            req = uac.request(
                "REGISTER", "150", contact="<sip:150@127.0.0.10>", headers=[("Authorization", auth)]
            )
            assert (await uac.send(req)).status == 401
            assert srv.security.stats["failures"] == 1
            uac.close()

    run_on("asyncio", main)


# ---------------------------------------------------------------------------------------------
# Fail-to-ban on a real server
# ---------------------------------------------------------------------------------------------


def test_five_failures_ban_the_source_silently(
    loop_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mss.security")

    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("150", "pw-150-ok")
            await srv.users.add("160", "pw-160-ok")
            port = srv.port("udp")
            tcp = srv.port("tcp")
            legit = await Uac.open(port, host="127.0.0.21")
            # four failures (a wrong password, unknown users with credentials): still answered
            assert await wrong(port, "127.0.0.20", "150", 2) == [401, 401]
            assert await wrong(port, "127.0.0.20", "9999", 2) == [401, 401]
            assert await options_answered(port, "127.0.0.20")
            assert (await legit.register("160", "pw-160-ok")).status == 200
            # the fifth bans (its own answer was already on its way)
            assert await wrong(port, "127.0.0.20", "160", 1) == [401]
            assert srv.security.is_banned("127.0.0.20")
            # from now on: no answer at all, over UDP or a new TCP connection
            assert not await options_answered(port, "127.0.0.20")
            uac = await Uac.open(port, host="127.0.0.20")
            uac.client.send(
                uac.request("REGISTER", "150", contact="<sip:150@127.0.0.20>"), uac.server
            )
            assert await uac.client.nothing(0.4)
            uac.close()
            assert not await tcp_answered(tcp, "127.0.0.20")
            assert await tcp_answered(tcp, "127.0.0.21")
            # the legitimate user at another address is not affected
            assert (await legit.register("160", "pw-160-ok")).status == 200
            legit.close()
            assert srv.transport.stats.dropped_banned >= 3
            # the ban is stored with its reason
            for _ in range(20):
                stored = await srv.storage.bans.get("127.0.0.20")
                if stored is not None:
                    break
                await asyncio.sleep(0.05)
            assert stored is not None and stored.count == 1
            assert stored.until is not None and abs(stored.until - time.time() - 10800) < 60
            assert set(stored.users) == {"150", "9999", "160"} and stored.users[-1] == "160"
            assert (
                "5 failed authentications within 60 s" in stored.reason and "150" in stored.reason
            )

    run_on(loop_name, main)
    bans = events(caplog, "ban")
    assert len(bans) == 1
    ev = bans[0]
    assert (ev.ip, ev.origin, ev.count, ev.failures, ev.duration) == (
        "127.0.0.20",
        "f2b",
        1,
        5,
        10800,
    )  # type: ignore[attr-defined]
    assert ev.users[-1] == "160"  # type: ignore[attr-defined]
    drops = events(caplog, "drop_summary")
    assert drops and all(d.ip == "127.0.0.20" for d in drops)  # type: ignore[attr-defined]


def test_a_known_good_source_needs_twenty_failures(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("150", "pw-150-ok")
            port = srv.port("udp")
            uac = await Uac.open(port, host="127.0.0.22")
            assert (await uac.register("150", "pw-150-ok")).status == 200
            uac.close()
            assert srv.security.threshold("127.0.0.22", srv.clock.now()) == 20
            assert srv.security.threshold("127.0.0.23", srv.clock.now()) == 5
            assert await wrong(port, "127.0.0.22", "150", 19) == [401] * 19
            assert await options_answered(port, "127.0.0.22")
            assert await wrong(port, "127.0.0.22", "150", 1) == [401]
            assert not await options_answered(port, "127.0.0.22")
            # a source never seen succeeding is banned after five
            assert await wrong(port, "127.0.0.23", "150", 5) == [401] * 5
            assert not await options_answered(port, "127.0.0.23")

    run_on("asyncio", main)


def test_white_listed_sources_are_never_banned(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            await srv.users.add("150", "pw-150-ok")
            port = srv.port("udp")
            # added to storage as the CLI does: the running server follows within a second
            await srv.storage.iplists.add(IpListRecord("white", "127.0.0.24/30"))
            assert await eventually(
                lambda: _true(srv.security.white.contains(pack_host("127.0.0.25")))
            )
            assert await wrong(port, "127.0.0.25", "150", 30) == [401] * 30
            assert await options_answered(port, "127.0.0.25")
            assert srv.security.stats["failures_white"] == 30
            # the white list does not cover 127.0.0.28
            assert await wrong(port, "127.0.0.28", "150", 5) == [401] * 5
            assert not await options_answered(port, "127.0.0.28")

    run_on("asyncio", main)


async def _true(value: bool) -> bool:
    return value


def test_fail_to_ban_can_be_switched_off(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, **{"security.f2b_enabled": False}) as srv:
            await srv.users.add("150", "pw-150-ok")
            port = srv.port("udp")
            assert await wrong(port, "127.0.0.29", "150", 12) == [401] * 12
            assert await options_answered(port, "127.0.0.29")
            # operator bans still apply
            await srv.security.ban("127.0.0.29", duration=60, reason="by hand")
            assert not await options_answered(port, "127.0.0.29")
            assert await srv.security.unban("127.0.0.29")
            assert await options_answered(port, "127.0.0.29")
            assert await srv.storage.bans.get("127.0.0.29") is None

    run_on("asyncio", main)


def test_a_short_ban_expires_and_a_repeat_offence_doubles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mss.security")

    async def main() -> None:
        async with running(
            tmp_path, **{"security.f2b_ban_time": 1, "security.f2b_max_ban_time": 2}
        ) as srv:
            await srv.users.add("150", "pw-150-ok")
            port = srv.port("udp")
            assert await wrong(port, "127.0.0.30", "150", 5) == [401] * 5
            assert not await options_answered(port, "127.0.0.30", 0.3)
            await asyncio.sleep(1.0)
            assert await options_answered(port, "127.0.0.30")
            # announced by the once-a-second tick
            for _ in range(40):
                if events(caplog, "unban"):
                    break
                await asyncio.sleep(0.05)
            # the second ban of the same source lasts twice as long (capped at the maximum)
            assert await wrong(port, "127.0.0.30", "150", 5) == [401] * 5
            ip = pack_host("127.0.0.30")
            until = srv.security.table.banned_until(ip, srv.clock.now())
            assert until is not None and 1.0 < until - srv.clock.now() <= 2.0
            assert not await options_answered(port, "127.0.0.30", 0.3)
            await asyncio.sleep(max(0.0, until - srv.clock.now()) + 0.1)
            assert await options_answered(port, "127.0.0.30")

    run_on("asyncio", main)
    bans = events(caplog, "ban")
    assert [(b.count, b.duration) for b in bans] == [(1, 1), (2, 2)]  # type: ignore[attr-defined]
    unbans = events(caplog, "unban")
    assert unbans and unbans[0].reason == "expired" and unbans[0].ip == "127.0.0.30"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# The policy alone (fake clocks)
# ---------------------------------------------------------------------------------------------


class FakeWall:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_repeat_offenders_double_up_to_the_maximum() -> None:
    wall = FakeWall()
    mono = [100.0]
    policy = SecurityPolicy(SecurityConfig(), clock=lambda: mono[0], wall=wall)
    durations = []
    for _ in range(6):
        now = mono[0]
        for i in range(5):
            policy.auth_failed("192.0.2.7", f"u{i}", now + i * 0.1)
        until = policy.table.banned_until(pack_host("192.0.2.7"), now + 1)
        assert until is not None
        durations.append(round(until - (now + 0.4)))
        # the ban ends; the offender comes back an hour later
        step = until - now + 3600
        mono[0] += step
        wall.t += step
        policy.tick(mono[0])
        assert policy.allow("192.0.2.7", mono[0])
    assert durations == [10800, 21600, 43200, 86400, 86400, 86400]
    # after a day without a ban, the record is forgotten and the next ban is short again
    mono[0] += 86400
    wall.t += 86400
    asyncio.run(policy.maintain())
    now = mono[0]
    for _ in range(5):
        policy.auth_failed("192.0.2.7", "x", now)
    assert policy.table.banned_until(pack_host("192.0.2.7"), now) == now + 10800


def test_failures_outside_the_window_do_not_add_up() -> None:
    policy = SecurityPolicy(SecurityConfig())
    for i in range(20):
        policy.auth_failed("192.0.2.8", "u", 1000.0 + i * 15)  # 4 per minute
    assert policy.allow("192.0.2.8", 1400.0)
    for i in range(5):
        policy.auth_failed("192.0.2.8", "u", 2000.0 + i * 11)  # 5 within 60 s
    assert not policy.allow("192.0.2.8", 2100.0)


def test_policy_options_are_honoured() -> None:
    cfg = SecurityConfig(
        f2b_max_failures=2,
        f2b_window=10,
        f2b_ban_time=30,
        f2b_max_ban_time=50,
        f2b_known_good_factor=3,
        f2b_known_good_window=100,
    )
    policy = SecurityPolicy(cfg)
    policy.auth_succeeded("192.0.2.9", 0.0)
    assert policy.threshold("192.0.2.9", 50.0) == 6
    assert policy.threshold("192.0.2.9", 100.0) == 2  # known-good only within the window
    policy.auth_failed("192.0.2.10", "a", 1.0)
    policy.auth_failed("192.0.2.10", "b", 2.0)
    assert policy.table.banned_until(pack_host("192.0.2.10"), 2.0) == 32.0


def test_gate_caches_hosts_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sec, "HOST_CACHE_SIZE", 8)
    policy = SecurityPolicy(SecurityConfig())
    for i in range(20):
        assert policy.allow(f"10.0.0.{i}", 1.0)
        assert len(policy._hosts) <= 8
    assert policy.allow("not-an-address", 1.0)  # nothing to match: let the parser judge
    # mapped and zoned forms are the same source as the plain one
    policy.set_list("black", ["192.0.2.0/24", "2001:db8::/32"])
    for host in ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8::5", "2001:db8::5%eth0"):
        assert not policy.allow(host, 1.0), host
    assert policy.allow("192.0.3.1", 1.0) and policy.allow("2001:db9::5", 1.0)
    # a black-list change invalidates the cached verdicts
    policy.set_list("black", [])
    assert policy.allow("192.0.2.1", 1.0)


def test_drop_summaries_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mss.security")
    policy = SecurityPolicy(SecurityConfig(), summary_interval=10.0)
    policy.set_list("black", ["198.51.100.0/24"])
    for i in range(1000):
        assert not policy.allow("198.51.100.7", 50.0 + i * 0.01)  # 10 s of drops
    policy.tick(60.5)
    summaries = events(caplog, "drop_summary")
    assert [s.dropped for s in summaries] == [1, 999]  # type: ignore[attr-defined]
    assert summaries[1].why == "black list" and summaries[1].ip == "198.51.100.7"  # type: ignore[attr-defined]
    assert policy.stats["dropped"] == 1000


# ---------------------------------------------------------------------------------------------
# Black list on UDP and TCP, IPv4 and IPv6
# ---------------------------------------------------------------------------------------------


def test_black_list_drops_udp_and_tcp_before_parse(loop_name: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as srv:
            port, tcp = srv.port("udp"), srv.port("tcp")
            assert await options_answered(port, "127.0.0.32")
            await srv.storage.iplists.add(IpListRecord("black", "127.0.0.32/31"))
            assert await eventually(lambda: _not(options_answered(port, "127.0.0.32", 0.1)))
            t0 = srv.transport.stats.messages_in
            assert not await options_answered(port, "127.0.0.33")
            assert not await tcp_answered(tcp, "127.0.0.33")
            assert srv.transport.stats.messages_in == t0  # never parsed
            assert await options_answered(port, "127.0.0.34")
            assert await tcp_answered(tcp, "127.0.0.34")
            await srv.storage.iplists.delete("black", "127.0.0.32/31")
            assert await eventually(lambda: options_answered(port, "127.0.0.32", 0.2))

    run_on(loop_name, main)


async def _not(aw: Any) -> bool:
    return not await aw


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_black_list_ipv6(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = make_config(tmp_path, **{"transport.listen": "udp:[::1]:0"})
        from mss.app import Server

        srv = Server(cfg)
        await srv.start()
        try:
            port = srv.port("udp")
            loop = asyncio.get_running_loop()
            from netutil import UdpClient

            _, client = await loop.create_datagram_endpoint(UdpClient, local_addr=("::1", 0))
            msg = (
                "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK-v6{n};rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:150@example.test>;tag=t\r\nTo: <sip:150@example.test>\r\n"
                "Call-ID: v6-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            client.send(msg.format(n=1).encode(), ("::1", port))
            assert parse_datagram(await client.recv(2.0)).status == 200  # type: ignore[union-attr]
            await srv.storage.iplists.add(IpListRecord("black", "::1"))
            await asyncio.sleep(1.0)
            client.send(msg.format(n=2).encode(), ("::1", port))
            assert await client.nothing(0.4)
            client.close()
        finally:
            await srv.stop()

    run_on("asyncio", main)


# ---------------------------------------------------------------------------------------------
# Parsing operator input
# ---------------------------------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("3600") == 3600
    assert parse_duration("90m") == 5400
    assert parse_duration("3h") == 10800
    assert parse_duration("1d") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5h") == 5400
    for bad in ("", "0", "h", "3x", "-5", "1h x", "inf"):
        with pytest.raises(SecurityError, match=r"^for: "):
            parse_duration(bad)


def test_parse_network_and_sets() -> None:
    assert parse_network("192.0.2.7").text == "192.0.2.7"
    assert parse_network("192.0.2.7/24").text == "192.0.2.0/24"
    assert parse_network("192.0.2.7/32").text == "192.0.2.7"
    assert parse_network("2001:DB8::1/32").text == "2001:db8::/32"
    assert parse_network("::ffff:192.0.2.0/120").text == "192.0.2.0/24"
    for bad in ("", "300.1.1.1", "192.0.2.0/33", "example.com"):
        with pytest.raises(SecurityError, match=r"^network: "):
            parse_network(bad)
    nets = IpNetSet(
        [
            parse_network(t)
            for t in (
                "10.0.0.0/8",
                "192.0.2.7",
                "172.16.0.0/12",
                "10.1.0.0/16",
                "2001:db8::/32",
                "::1",
            )
        ]
    )
    assert len(nets) == 6
    for yes in ("10.255.1.1", "192.0.2.7", "172.31.255.255", "2001:db8:ffff::1", "::1"):
        assert nets.contains(pack_host(yes)), yes  # type: ignore[arg-type]
    for no in ("11.0.0.1", "192.0.2.8", "172.32.0.0", "2001:db9::1", "::2"):
        assert not nets.contains(pack_host(no)), no  # type: ignore[arg-type]
    assert not IpNetSet().contains(pack_host("10.0.0.1"))  # type: ignore[arg-type]


def test_parse_ip_and_operator_ban() -> None:
    assert parse_ip("::ffff:10.0.0.1") == ("10.0.0.1", bytes([10, 0, 0, 1]))
    assert parse_ip(" 2001:db8::1 ")[0] == "2001:db8::1"
    for bad in ("", "1.2.3", "10.0.0.0/8", "x"):
        with pytest.raises(SecurityError, match=r"^ip: "):
            parse_ip(bad)
    rec = operator_ban("10.0.0.1", duration=60, reason="", wall=1000.0)
    assert (rec.ip, rec.until, rec.count, rec.first_at, rec.last_at) == (
        "10.0.0.1",
        1060.0,
        1,
        1000.0,
        1000.0,
    )
    again = operator_ban("10.0.0.1", duration=None, previous=rec, wall=2000.0)
    assert (again.until, again.count, again.first_at, again.last_at) == (None, 2, 1000.0, 2000.0)


def test_stored_bans_are_loaded_and_followed() -> None:
    async def main() -> None:
        async with MemoryStorage() as storage:
            wall = FakeWall(5000.0)
            mono = [10.0]
            await storage.bans.put(BanRecord("192.0.2.1", until=5100.0, reason="old", count=2))
            await storage.bans.put(BanRecord("192.0.2.2", until=None, reason="forever"))
            await storage.bans.put(BanRecord("192.0.2.3", until=4000.0, reason="over", count=3))
            await storage.bans.put(BanRecord("bogus", until=None))
            policy = SecurityPolicy(
                SecurityConfig(), storage=storage, clock=lambda: mono[0], wall=wall
            )
            await policy.load()
            assert not policy.allow("192.0.2.1", 10.0) and policy.allow("192.0.2.1", 110.0)
            assert not policy.allow("192.0.2.2", 1e9)
            assert policy.allow("192.0.2.3", 10.0)
            assert [b.ip for b in policy.bans()] == ["192.0.2.1", "192.0.2.2"]
            # the expired one still counts for a repeat offence: its next ban is its fourth
            for _ in range(5):
                policy.auth_failed("192.0.2.3", "u", 10.0)
            assert policy.table.ban_count(pack_host("192.0.2.3")) == 4  # type: ignore[arg-type]
            assert policy.table.banned_until(pack_host("192.0.2.3"), 10.0) == 10.0 + 86400  # type: ignore[arg-type]
            await asyncio.sleep(0)  # the write task
            await policy.stop()
            stored = await storage.bans.get("192.0.2.3")
            assert stored is not None and stored.count == 4 and stored.until == 5000.0 + 86400
            # changes by another process
            seq = await storage.changes.latest()
            await storage.bans.delete("192.0.2.2")
            await storage.bans.put(BanRecord("192.0.2.9", until=5030.0))
            await policy.apply_changes(await storage.changes.since(seq))
            assert policy.allow("192.0.2.2", 10.0) and not policy.allow("192.0.2.9", 10.0)
            # our own writes coming back change nothing
            before = policy.stats["bans"]
            await policy.apply_changes(await storage.changes.since(0))
            assert policy.stats["bans"] == before
            # a bulk purge is reconciled
            mono[0] += 100
            wall.t += 100
            assert await storage.bans.purge_expired(wall.t) >= 1
            await policy.reload_bans()
            assert policy.allow("192.0.2.9", mono[0])

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# CLI and persistence across kill -9 (subprocess server)
# ---------------------------------------------------------------------------------------------


def _answered(port: int, host: str, wait: float = 0.4) -> bool:
    return bool(run_on("asyncio", lambda: options_answered(port, host, wait)))


def test_cli_bans_live_and_persistent_across_kill9(tmp_path: Path) -> None:
    d = tmp_path / "data"
    port = free_udp_port()
    mss_cli("user", "add", "150", "--password", "pw-150-ok", data_dir=d)
    with serve(d, port) as proc:
        assert run_on("asyncio", lambda: wrong(port, "127.0.0.40", "150", 5)) == [401] * 5
        assert not _answered(port, "127.0.0.40")
        listed = json.loads(mss_cli("ban", "list", "--json", data_dir=d).stdout)
        assert [b["ip"] for b in listed] == ["127.0.0.40"]
        assert listed[0]["users"] == ["150"] and "5 failed" in listed[0]["reason"]
        assert 10700 < listed[0]["remaining"] <= 10800
        # an operator ban while the server runs applies within a second
        mss_cli("ban", "add", "127.0.0.41", "--for", "2h", "--reason", "scanner", data_dir=d)
        t0 = time.monotonic()
        assert wait_for(lambda: not _answered(port, "127.0.0.41", 0.1), timeout=3, interval=0.05)
        print(f"\nban applied {time.monotonic() - t0:.2f} s after `mss ban add`")
        assert _answered(port, "127.0.0.42")
        # kill -9: the bans survive
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    text = mss_cli("ban", "list", data_dir=d).stdout
    assert "127.0.0.40" in text and "127.0.0.41" in text and "scanner" in text
    with serve(d, port) as proc:
        assert not _answered(port, "127.0.0.40")
        assert not _answered(port, "127.0.0.41")
        assert _answered(port, "127.0.0.42")
        # lifting a ban applies within a second too
        mss_cli("ban", "del", "127.0.0.40", data_dir=d)
        assert wait_for(lambda: _answered(port, "127.0.0.40", 0.2), timeout=3, interval=0.05)
        mss_cli("iplist", "add", "--black", "127.0.0.42", data_dir=d)
        assert wait_for(lambda: not _answered(port, "127.0.0.42", 0.1), timeout=3, interval=0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        assert proc.stdout is not None
        lines = [json.loads(ln) for ln in proc.stdout.read().splitlines() if ln.startswith("{")]
    kinds = [
        (ln.get("event"), ln.get("ip"))
        for ln in lines
        if ln.get("logger") == "mss.security" and "event" in ln
    ]
    assert ("unban", "127.0.0.40") in kinds
    assert ("drop_summary", "127.0.0.41") in kinds
    # CLI errors: one line naming the field, exit 2
    for args, field in [
        (("ban", "add", "300.0.0.1"), "ip"),
        (("ban", "add", "127.0.0.9", "--for", "soon"), "for"),
        (("ban", "del", "127.0.0.99"), "ip"),
        (("iplist", "add", "127.0.0.0/33", "--white"), "network"),
        (("iplist", "add", "127.0.0.1"), "list"),
        (("iplist", "add", "--black", "127.0.0.42"), "network"),
        (("iplist", "del", "--white", "127.0.0.42"), "network"),
    ]:
        res = mss_cli(*args, data_dir=d, check=False)
        assert res.returncode == 2, (args, res)
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mss: error: {field}:"), res.stderr
    listed = json.loads(mss_cli("iplist", "list", "--json", data_dir=d).stdout)
    assert listed == [
        {
            "list": "black",
            "network": "127.0.0.42",
            "note": "",
            "created_at": listed[0]["created_at"],
        }
    ]
    assert math.isfinite(listed[0]["created_at"])


@pytest.mark.parametrize(
    "cmd", [["ban", "add", "--help"], ["iplist", "list", "--help"], ["blacklist", "add", "--help"]]
)
def test_help(cmd: list[str], tmp_path: Path) -> None:
    res = mss_cli(*cmd, data_dir=tmp_path)
    assert "--data-dir" in res.stdout
