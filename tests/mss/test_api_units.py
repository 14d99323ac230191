"""Units behind the management API (issue 8): token storage and service, the event hub and its
publishers, the decision log, the metrics collector, the layering of mss.api."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from mss.features.decisions import DecisionLog, normalise_ip
from mss.features.events import EventHub, SecurityLogBridge, UserStatusTracker
from mss.features.tokens import TokenService, hash_secret, split_token
from mss.storage import AlreadyExists, BindingRecord, MemoryStorage, SqliteStorage, TokenRecord


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        return MemoryStorage()
    return SqliteStorage(tmp_path / "db.sqlite3")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- token storage and service ----------------------------------------------------------------


def test_token_repo_crud_and_change_feed(storage: Any) -> None:
    async def main() -> None:
        async with storage:
            rec = TokenRecord("0123456789", "ci", "a" * 64, ["read"])
            await storage.tokens.add(rec)
            with pytest.raises(AlreadyExists):
                await storage.tokens.add(rec)
            got = await storage.tokens.get("0123456789")
            assert got.scopes == ("read",) and got.created_at > 0
            seq = await storage.changes.latest()
            await storage.tokens.touch("0123456789", 123.0)
            assert await storage.changes.latest() == seq  # use is not configuration
            assert (await storage.tokens.get("0123456789")).last_used_at == 123.0
            assert [t.id for t in await storage.tokens.list()] == ["0123456789"]
            assert await storage.tokens.delete("0123456789") is True
            assert await storage.tokens.delete("0123456789") is False
            feed = [(c.entity, c.key, c.op) for c in await storage.changes.since(0)]
            assert ("token", "0123456789", "delete") in feed
            with pytest.raises(ValueError):
                await storage.tokens.add(TokenRecord("x", "", "not-a-hash"))

    run(main())


def test_token_service_create_verify_expire_revoke(storage: Any) -> None:
    now = [1000.0]

    async def main() -> None:
        async with storage:
            svc = TokenService(storage.tokens, storage.kv, wall=lambda: now[0])
            record, token = await svc.create("ci", scopes=["read"], expires_in=60)
            assert split_token(token) == (record.id, token.split("_", 2)[2])
            assert record.secret_hash == hash_secret(token.split("_", 2)[2])
            assert (await svc.verify(token)).id == record.id
            assert await svc.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
            assert await svc.verify("mss_0000000000_" + "x" * 43) is None
            assert await svc.verify("Bearer nonsense") is None
            now[0] += 61
            assert await svc.verify(token) is None  # expired
            _, other = await svc.create("x")
            assert await svc.verify(other) is not None
            assert await svc.revoke(split_token(other)[0])
            assert await svc.verify(other) is None
            from mss.features.tokens import TokenError

            with pytest.raises(TokenError) as e:
                await svc.create("x", scopes=["root"])
            assert e.value.field == "scopes"

    run(main())


def test_bootstrap_creates_one_token_once(storage: Any) -> None:
    async def main() -> None:
        async with storage:
            svc = TokenService(storage.tokens, storage.kv)
            first = await svc.bootstrap()
            assert first is not None and (await svc.verify(first)).scopes == ("admin",)
            assert await svc.bootstrap() is None
            for t in await storage.tokens.list():
                await storage.tokens.delete(t.id)
            assert await svc.bootstrap() is None  # revoking everything does not re-open it

    run(main())


# -- event hub ---------------------------------------------------------------------------------


def test_hub_delivers_filters_and_drops_slow_consumers() -> None:
    async def main() -> None:
        hub = EventHub(queue_size=3, wall=lambda: 5.0)
        every = hub.subscribe()
        users = hub.subscribe(["userStatus"])
        assert hub.publish({"type": "userStatus", "n": 1}) == 2
        assert hub.publish({"type": "securityEvent"}) == 1
        assert await every.get() == {"type": "userStatus", "n": 1, "at": 5.0}
        assert (await users.get())["n"] == 1
        for i in range(3):
            hub.publish({"type": "userStatus", "n": i})
        # `every` holds 1 + 3 > 3: dropped; `users` holds 3: kept
        assert every.closed and every.reason == "slow consumer"
        assert not users.closed and len(hub) == 1
        assert hub.stats["slow_consumers"] == 1
        got = [await users.get() for _ in range(3)]
        assert [e["n"] for e in got] == [0, 1, 2]
        # a dropped subscriber still drains what it had, then ends
        assert (await every.get())["type"] == "securityEvent"
        while (await every.get()) is not None:
            pass
        waiter = asyncio.ensure_future(users.get())
        await asyncio.sleep(0)
        hub.close()
        assert await waiter is None

    run(main())


def test_hub_publish_built_builds_only_for_a_listener() -> None:
    """publish_built(kind, build, *args): the same as publish(build(*args)) for the subscribers
    and the counters, but build is not called when no subscriber takes ``kind``."""
    built: list[int] = []

    def build(n: int) -> dict[str, Any]:
        built.append(n)
        return {"type": "callStatus", "n": n}

    async def main() -> None:
        hub = EventHub(wall=lambda: 5.0)
        assert hub.publish_built("callStatus", build, 1) == 0  # nobody listens
        users = hub.subscribe(["userStatus"])
        assert hub.publish_built("callStatus", build, 2) == 0  # nobody listens to calls
        assert built == [] and hub.stats["published"] == 2 and hub.stats["delivered"] == 0
        calls = hub.subscribe(["callStatus"])
        assert hub.publish_built("callStatus", build, 3) == 1
        assert built == [3] and hub.stats["published"] == 3 and hub.stats["delivered"] == 1
        assert await calls.get() == {"type": "callStatus", "n": 3, "at": 5.0}
        assert len(users) == 0

    run(main())


def test_hub_bounds_subscribers() -> None:
    hub = EventHub(max_subscribers=1)
    hub.subscribe()
    with pytest.raises(OverflowError):
        hub.subscribe()


def _binding(aor: str, contact: str, source: str, expires_at: float) -> BindingRecord:
    return BindingRecord(
        aor=aor,
        contact=contact,
        expires_at=expires_at,
        call_id="c",
        cseq=1,
        source=source,
        registered_at=expires_at - 3600,
    )


def test_user_status_publishes_changes_only() -> None:
    events: list[dict[str, Any]] = []

    class Sink:
        def publish(self, event: dict[str, Any]) -> int:
            events.append(event)
            return 1

    tracker = UserStatusTracker(Sink(), wall=lambda: 100.0)
    b = _binding("1001", "sip:1001@192.0.2.1:5060", "udp:192.0.2.1:5060", 3700.0)
    tracker.seed({"1002": [_binding("1002", "sip:1002@h", "udp:192.0.2.2:5060", 3700.0)]})
    tracker.bindings_changed("1001", [b])
    tracker.bindings_changed("1001", [b])  # a refresh: nothing
    tracker.bindings_changed("1002", [_binding("1002", "sip:1002@h", "udp:192.0.2.2:5060", 3800)])
    tracker.expired("1001", [])
    tracker.expired("1001", [])
    assert [(e["number"], e["status"], e["reason"]) for e in events] == [
        ("1001", "online", "register"),
        ("1001", "offline", "expired"),
    ]
    assert events[0]["address"] == "192.0.2.1:5060" and events[0]["transport"] == "udp"
    assert events[0]["contacts"][0]["expires_in"] == 3600


def test_security_log_bridge_publishes_and_records_decisions() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    decisions = DecisionLog()
    bridge = SecurityLogBridge(hub, decisions)
    logger = logging.getLogger("mss.security.test-bridge")
    logger.addHandler(bridge)
    logger.setLevel(logging.INFO)
    try:
        logger.warning(
            "ban 192.0.2.9",
            extra={
                "event": "ban",
                "ip": "192.0.2.9",
                "reason": "5 failed authentications within 60 s",
                "origin": "f2b",
                "users": ["100", "101"],
                "until": "2030-01-01T00:00:00Z",
            },
        )
        logger.info(
            "dropped",
            extra={
                "event": "drop_summary",
                "ip": "192.0.2.9",
                "dropped": 7,
                "period": 10.0,
                "why": "banned",
            },
        )
        logger.warning(
            "call blocked",
            extra={
                "event": "call_blocked",
                "caller": "anonymous",
                "called": "900123",
                "source": "udp:192.0.2.10:5060",
                "status": 403,
                "rule": {"caller": "anonymous", "called": "*", "rate": 100, "description": "anon"},
            },
        )
        logger.warning("no event field here")
    finally:
        logger.removeHandler(bridge)
    kinds = []
    while len(sub):
        event = asyncio.run(sub.get())
        kinds.append(event["event"])
        assert event["type"] == "securityEvent"
    assert kinds == ["ban", "drop_summary", "call_blocked"]
    found = decisions.query("192.0.2.9")
    assert [d.kind for d in found] == ["ban", "ban", "ban"]
    assert {d.user for d in found} == {"", "100", "101"}
    assert "5 failed authentications" in found[-1].rule
    blocked = decisions.query("192.0.2.10")
    assert blocked[0].kind == "blacklist" and blocked[0].user == "anonymous"
    assert "caller anonymous called * rate 100 (anon)" in blocked[0].rule


# -- decisions -----------------------------------------------------------------------------------


def test_decision_log_is_bounded_and_queried_newest_first() -> None:
    log = DecisionLog(maxlen=3, wall=lambda: 7.0)
    log.record("auth_failure", "192.0.2.1", "100", "r1")
    log.record("auth_failure", "::ffff:192.0.2.1", "101", "r2")
    log.record("limit", "192.0.2.2", "100", "r3", "d", 9.0)
    log.record("ban", "192.0.2.1", "", "r4")
    assert len(log) == 3 and log.recorded == 4
    assert [d.rule for d in log.query("192.0.2.1")] == ["r4"]  # r1 fell off; r2 not normalised
    assert [d.rule for d in log.query("::ffff:192.0.2.1")] == ["r4"]
    assert [d.rule for d in log.query(user="100")] == ["r3"]
    assert [d.rule for d in log.query("192.0.2.2", "101")] == ["r3", "r2"]
    assert [d.rule for d in log.query(kinds=("ban",))] == ["r4"]
    assert log.query(limit=1)[0].rule == "r4"
    assert normalise_ip("[2001:DB8::1]") == "2001:db8::1"


# -- layering ------------------------------------------------------------------------------------


def test_api_never_imports_sip_or_transport() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "src" / "mss" / "api"
    files = list(root.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.lstrip(".").startswith(("sip", "transport")), path
                assert not (
                    node.module.startswith("mss.sip") or node.module.startswith("mss.transport")
                ), path


# -- configuration -------------------------------------------------------------------------------


def test_api_refuses_a_non_loopback_bind_without_tls_or_the_flag() -> None:
    from mss.config import load_config
    from mss.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(env={"MSS_API_LISTEN": "0.0.0.0:8080"})
    assert e.value.field == "api.listen" and "TLS" in str(e.value)
    tls = {"MSS_API_TLS_CERT_FILE": "/etc/mss/api.pem", "MSS_API_TLS_KEY_FILE": "/etc/mss/key.pem"}
    cfg = load_config(env={"MSS_API_LISTEN": "0.0.0.0:8080", **tls})
    assert cfg.api.tls and cfg.api.host == "0.0.0.0"
    cfg = load_config(env={"MSS_API_LISTEN": "[::]:8080", "MSS_API_ALLOW_INSECURE_REMOTE": "1"})
    assert not cfg.api.tls
    with pytest.raises(ConfigError) as e:
        load_config(env={"MSS_API_TLS_CERT_FILE": "/etc/mss/api.pem"})
    assert e.value.field == "api.tls_key_file"
    assert load_config(env={}).api.listen == "127.0.0.1:8080"
