"""The user directory's IP authorization index gives what a scan of every grant gave."""

from __future__ import annotations

import asyncio
import ipaddress

from mss.features.users import UserDirectory, parse_allow_ip
from mss.storage.memory import MemoryStorage

GRANTS = {
    "1001": ["192.0.2.10"],
    "1002": ["192.0.2.10:5070", "10.1.0.0/16"],
    "1003": ["10.1.2.0/24", "10.0.0.0/8:5060"],
    "1004": ["[2001:db8::1]:5062", "2001:db8:1::/48"],
    "1005": [],
}

PROBES = [
    (host, port, user)
    for host in (
        "192.0.2.10",
        "192.0.2.11",
        "10.1.2.3",
        "10.9.9.9",
        "2001:db8::1",
        "2001:db8:1::7",
        "2001:0db8:0000::1",
        "::ffff:192.0.2.10",
        "fe80::1%eth0",
        "not-an-ip",
        "",
    )
    for port in (5060, 5062, 5070)
    for user in ("1001", "1002", "1003", "1004", "1005", "9999", None)
]


def scan(directory: UserDirectory, host: str, port: int, from_user: str | None) -> str | None:
    """The rule as written before the index: the first matching grant of the From user."""
    if from_user is None:
        return None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    for user in directory.all():
        for text in user.allow_ips:
            net, grant_port = parse_allow_ip(text)
            if (
                user.number == from_user
                and addr in net
                and (grant_port is None or grant_port == port)
            ):
                return user.number
    return None


def test_ip_user_index_matches_a_scan_and_follows_changes() -> None:
    async def go() -> None:
        storage = MemoryStorage()
        await storage.open()
        directory = UserDirectory(storage, realm="example.test")
        for number, grants in GRANTS.items():
            await directory.add(number, "pw-" + number, allow_ips=grants)

        def check() -> None:
            for host, port, user in PROBES:
                found = directory.ip_user(host, port, user)
                assert (found.number if found else None) == scan(directory, host, port, user), (
                    host,
                    port,
                    user,
                )

        check()
        assert [g.text for g in directory.grants_for("1003")] == ["10.1.2.0/24", "10.0.0.0/8:5060"]
        assert [g.text for g in directory.grants_for("1002")] == ["192.0.2.10:5070", "10.1.0.0/16"]
        assert directory.grants_for("1005") == [] and directory.grants_for("9999") == []
        await directory.update("1001", allow_ips=["10.9.9.9"])
        await directory.delete("1002")
        check()
        assert directory.ip_user("10.9.9.9", 5060, "1001") is not None
        assert directory.ip_user("192.0.2.10", 5060, "1001") is None
        assert directory.ip_user("192.0.2.10", 5070, "1002") is None
        fresh = UserDirectory(storage, realm="example.test")
        await fresh.load()
        for host, port, user in PROBES:
            a, b = fresh.ip_user(host, port, user), directory.ip_user(host, port, user)
            assert (a.number if a else None) == (b.number if b else None)
        await storage.close()

    asyncio.run(go())
