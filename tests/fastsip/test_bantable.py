"""Ban table: both twins against the rules of fastsip._bantable_py (and against each other).

Every test runs on the pure (``py``) and Cython (``c``) twin. The differential tests run random
operation sequences on a twin and on ``Model``, a deliberately naive re-statement of the
documented rules (lists and ``sorted``, no heap, no ring), requiring identical results and
identical exception types.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsip
from conftest import twin_module
from fastsip import _compat
from fastsip.bantable import pack_ip, unpack_ip

A = b"\xc0\x00\x02\x01"  # 192.0.2.1
B = b"\xc0\x00\x02\x02"
C = b"\xc0\x00\x02\x03"
D = b"\xc0\x00\x02\x04"
E = b"\xc0\x00\x02\x05"
F = b"\xc0\x00\x02\x06"
V6 = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1
V6B = bytes.fromhex("20010db8000000000000000000000002")


def ip4(i: int) -> bytes:
    return (0x0A000000 + i).to_bytes(4, "big")


@pytest.fixture(params=["py", "c"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return twin_module("bantable", request.param)


@pytest.fixture
def BanTable(mod: ModuleType) -> Any:
    return mod.BanTable


# -- allow / drop, expiry ------------------------------------------------------------------------


def test_unknown_ip_is_allowed(BanTable: Any) -> None:
    t = BanTable()
    assert t.check(A, 0.0) is True
    assert t.check(V6, 1e9) is True
    assert len(t) == 0 and A not in t


def test_ban_drops_until_until(BanTable: Any) -> None:
    t = BanTable()
    assert t.ban(A, 100.0, 0.0) == 1
    assert t.check(A, 0.0) is False
    assert t.check(A, 99.999) is False
    assert t.check(A, 100.0) is True  # active while now < until
    assert t.check(A, 1e6) is True
    assert t.check(B, 50.0) is True
    assert A in t and len(t) == 1


def test_expiry_is_driven_by_now_only(BanTable: Any) -> None:
    t = BanTable()
    t.ban(A, 100.0, 0.0)
    assert t.check(A, 150.0) is True
    # Nothing was purged (the table is not full), so an earlier now still sees the ban.
    assert t.check(A, 50.0) is False
    assert t.banned_until(A, 50.0) == 100.0
    assert t.banned_until(A, 100.0) is None
    assert t.banned_until(B, 0.0) is None


def test_permanent_and_already_expired_bans(BanTable: Any) -> None:
    t = BanTable()
    t.ban(A, math.inf, 0.0)
    assert t.check(A, 1e300) is False
    assert t.ban(B, 5.0, 10.0) == 1  # until in the past: recorded, not active
    assert t.check(B, 10.0) is True and t.ban_count(B) == 1
    with pytest.raises(ValueError):
        t.ban(C, math.nan, 0.0)
    assert C not in t


# -- sliding window ------------------------------------------------------------------------------


def test_window_is_half_open(BanTable: Any) -> None:
    t = BanTable(window=60.0)
    assert t.record_failure(A, 0.0) == 1
    assert t.record_failure(A, 30.0) == 2
    assert t.record_failure(A, 59.999) == 3
    assert t.failures(A, 59.999) == 3
    assert t.failures(A, 60.0) == 2  # the failure at 0 expires at exactly 0 + window
    assert t.record_failure(A, 60.0) == 3  # 30, 59.999, 60
    assert t.record_failure(A, 90.0) == 3  # 59.999, 60, 90 (30 <= 90 - 60 expired)
    assert t.record_failure(A, 150.0) == 1  # everything older than 90 is gone
    assert t.failures(A, 209.999) == 1
    assert t.failures(A, 210.0) == 0


def test_failures_at_the_same_instant(BanTable: Any) -> None:
    t = BanTable(window=1.0)
    assert [t.record_failure(A, 5.0) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert t.record_failure(A, 6.0) == 1


def test_failure_count_saturates_at_max_failures(BanTable: Any) -> None:
    t = BanTable(max_failures=3, window=60.0)
    assert [t.record_failure(A, float(i)) for i in range(6)] == [1, 2, 3, 3, 3, 3]
    # Only the newest 3 (3, 4, 5) are kept: at 63.5 the ones at 3 expired.
    assert t.failures(A, 63.5) == 2
    assert t.record_failure(A, 64.0) == 2  # 5, 64


def test_ring_growth_keeps_order(BanTable: Any) -> None:
    # Past the first growth steps (4, 8, 16...) with pruning in between, count stays exact.
    t = BanTable(max_failures=64, window=10.0)
    got = [t.record_failure(A, i * 0.5) for i in range(100)]
    assert got == [min(i + 1, 20) for i in range(100)]  # 20 failures fit in 10 s at 2/s
    assert t.failures(A, 49.5) == 20


def test_failures_of_unknown_ip_is_zero(BanTable: Any) -> None:
    t = BanTable()
    assert t.failures(A, 0.0) == 0
    assert A not in t  # reads never create entries


def test_ban_clears_failures(BanTable: Any) -> None:
    t = BanTable()
    for i in range(5):
        t.record_failure(A, float(i))
    t.ban(A, 10.0, 5.0)
    assert t.failures(A, 5.0) == 0
    assert t.record_failure(A, 11.0) == 1


# -- success memory, ban counts, unban ----------------------------------------------------------


def test_success_memory(BanTable: Any) -> None:
    t = BanTable()
    assert t.last_success(A) is None
    t.record_success(A, 10.0)
    assert t.last_success(A) == 10.0
    t.record_success(A, 5.0)  # last call wins
    assert t.last_success(A) == 5.0
    assert t.failures(A, 10.0) == 0 and t.check(A, 10.0) is True
    t.record_failure(A, 11.0)
    t.ban(A, 100.0, 12.0)
    assert t.last_success(A) == 5.0  # kept across failures and bans


def test_ban_counts_repeat_offences(BanTable: Any) -> None:
    t = BanTable()
    assert t.ban_count(A) == 0
    assert t.ban(A, 10.0, 0.0) == 1
    assert t.ban(A, 50.0, 20.0) == 2  # after expiry: a repeat offence
    assert t.ban(A, 30.0, 21.0) == 3  # re-ban while active replaces until (even shorter)
    assert t.banned_until(A, 21.0) == 30.0
    assert t.ban_count(A) == 3
    assert t.ban(B, 10.0, 0.0, count=7) == 7  # reload from storage
    assert t.ban(B, 20.0, 0.0) == 8
    with pytest.raises(ValueError):
        t.ban(C, 10.0, 0.0, count=0)
    with pytest.raises(TypeError):
        t.ban(C, 10.0, 0.0, count=1.0)
    assert C not in t


def test_unban(BanTable: Any) -> None:
    t = BanTable()
    t.ban(A, 100.0, 0.0)
    t.record_success(A, 1.0)
    assert t.unban(A) is True
    assert t.check(A, 1.0) is True
    assert A not in t and t.ban_count(A) == 0 and t.last_success(A) is None
    assert t.unban(A) is False  # unknown
    t.record_failure(B, 0.0)
    assert t.unban(B) is False  # never banned, but forgotten all the same
    assert B not in t and t.failures(B, 0.0) == 0
    t.ban(C, 10.0, 0.0)
    assert t.unban(C) is True  # an expired ban is still a ban record
    assert len(t) == 0


# -- address families and validation ------------------------------------------------------------


def test_ipv6_and_ipv4_are_distinct_keys(BanTable: Any) -> None:
    t = BanTable()
    t.ban(V6, 100.0, 0.0)
    assert t.check(V6, 1.0) is False
    assert t.check(V6B, 1.0) is True
    assert t.check(V6[:4], 1.0) is True  # a 4-byte prefix is another (IPv4) key
    assert t.record_failure(V6B, 1.0) == 1
    assert t.bans(1.0) == [(V6, 100.0, 1)]
    assert t.check(pack_ip("::ffff:192.0.2.1"), 1.0) is True
    t.ban(pack_ip("192.0.2.1"), 100.0, 0.0)
    assert t.check(pack_ip("::ffff:192.0.2.1"), 1.0) is False  # mapped folds to IPv4


BAD_LENGTHS = [b"", b"\x01", b"\x01\x02\x03", b"\x01" * 5, b"\x01" * 15, b"\x01" * 17, b"\x01" * 32]
BAD_TYPES = ["192.0.2.1", bytearray(A), memoryview(A), None, 3232236033]


def _calls(t: Any, ip: Any) -> list[Any]:
    return [
        lambda: t.check(ip, 0.0),
        lambda: t.record_failure(ip, 0.0),
        lambda: t.record_success(ip, 0.0),
        lambda: t.ban(ip, 10.0, 0.0),
        lambda: t.unban(ip),
        lambda: t.failures(ip, 0.0),
        lambda: t.last_success(ip),
        lambda: t.ban_count(ip),
        lambda: t.banned_until(ip, 0.0),
        lambda: ip in t,
    ]


@pytest.mark.parametrize("ip", BAD_LENGTHS, ids=lambda b: f"len{len(b)}")
def test_bad_ip_length_is_value_error(BanTable: Any, ip: bytes) -> None:
    t = BanTable()
    t.ban(A, 10.0, 0.0)
    for call in _calls(t, ip):
        with pytest.raises(ValueError, match="4 \\(IPv4\\) or 16 \\(IPv6\\) bytes"):
            call()
    assert len(t) == 1


@pytest.mark.parametrize("ip", BAD_TYPES, ids=lambda v: type(v).__name__)
def test_non_bytes_ip_is_type_error(BanTable: Any, ip: Any) -> None:
    t = BanTable()
    t.ban(A, 10.0, 0.0)
    for call in _calls(t, ip):
        with pytest.raises(TypeError, match="packed bytes"):
            call()
    assert len(t) == 1


def test_bytes_subclass_is_rejected(BanTable: Any) -> None:
    class Sub(bytes):
        pass

    with pytest.raises(TypeError):
        BanTable().check(Sub(A), 0.0)


# -- eviction ------------------------------------------------------------------------------------


def test_bound_and_oldest_live_evicted_when_nothing_is_stale(BanTable: Any) -> None:
    t = BanTable(max_entries=4)  # batch = 1
    for ip in (A, B, C, D):
        t.record_failure(ip, 0.0)
    assert t.record_failure(E, 1.0) == 1
    assert len(t) == 4
    assert A not in t and all(ip in t for ip in (B, C, D, E))


def test_stale_evicted_before_live_oldest_first(BanTable: Any) -> None:
    t = BanTable(max_entries=4, window=60.0)
    t.record_failure(A, 0.0)  # live until 60
    t.record_success(B, 1.0)  # no failures: stale at once
    t.record_failure(C, 2.0)
    t.record_success(D, 3.0)
    t.record_failure(E, 10.0)  # evicts B (oldest stale), not A (oldest overall)
    assert B not in t and A in t and D in t
    t.record_failure(F, 11.0)  # evicts D, the remaining stale one
    assert D not in t and A in t
    t.record_failure(B, 60.5)  # A's failure (t=0) is stale now; C's (t=2) is not
    assert A not in t and C in t and len(t) == 4


def test_stale_boundary_is_the_window_edge(BanTable: Any) -> None:
    t = BanTable(max_entries=2, window=60.0)
    t.record_failure(B, 5.0)  # oldest entry, live at 60
    t.record_failure(A, 0.0)  # newer entry whose only failure expires at exactly 60
    t.record_failure(C, 60.0)
    assert A not in t and B in t and C in t


def test_writes_move_to_newest_end(BanTable: Any) -> None:
    t = BanTable(max_entries=4)
    for ip in (A, B, C, D):
        t.record_failure(ip, 0.0)
    t.record_failure(A, 1.0)  # A becomes the newest; B the oldest
    t.record_failure(E, 2.0)
    assert B not in t and A in t
    t.record_success(C, 3.0)  # a success is a write too
    t.check(D, 3.0)  # reads do not reorder
    t.failures(D, 3.0)
    t.record_failure(F, 4.0)
    assert D not in t and C in t


def test_batch_eviction_keeps_scans_rare(BanTable: Any) -> None:
    t = BanTable(max_entries=32)  # batch = 32 // 16 = 2
    for i in range(32):
        t.record_failure(ip4(i), 0.0)
    t.record_failure(ip4(100), 1.0)
    assert len(t) == 31  # two evicted, one inserted
    assert ip4(0) not in t and ip4(1) not in t and ip4(2) in t
    t.record_failure(ip4(101), 1.0)
    assert len(t) == 32


def test_batch_takes_stale_first_then_oldest_live(BanTable: Any) -> None:
    t = BanTable(max_entries=32, window=60.0)  # batch = 2
    for i in range(31):
        t.record_failure(ip4(i), 0.0)
    t.record_success(ip4(31), 0.0)  # the only stale entry, and the newest
    t.record_failure(ip4(100), 1.0)
    assert ip4(31) not in t and ip4(0) not in t and ip4(1) in t


def test_bans_survive_eviction_pressure(BanTable: Any) -> None:
    t = BanTable(max_entries=4)
    t.ban(A, 1000.0, 0.0)
    t.ban(V6, 1000.0, 0.0)
    for i in range(200):
        t.record_failure(ip4(i), float(i))
        assert len(t) <= 4
    assert t.check(A, 500.0) is False and t.check(V6, 500.0) is False
    assert [b[0] for b in t.bans(500.0)] == [V6, A]  # equal until: by ip bytes


def test_full_of_bans_refuses_new_non_ban_entries(BanTable: Any) -> None:
    t = BanTable(max_entries=2)
    t.ban(A, 100.0, 0.0)
    t.ban(B, 200.0, 0.0)
    assert t.record_failure(C, 1.0) == 0  # refused: nothing recorded
    t.record_success(C, 1.0)
    assert C not in t and len(t) == 2
    assert t.record_failure(A, 1.0) == 1  # existing entries are still written


def test_a_ban_always_gets_in(BanTable: Any) -> None:
    t = BanTable(max_entries=2)
    t.ban(A, 300.0, 0.0)
    t.ban(B, 200.0, 0.0)
    assert t.ban(C, 100.0, 1.0) == 1  # evicts the ban that expires first (B)
    assert B not in t and t.check(B, 1.0) is True
    assert t.check(A, 1.0) is False and t.check(C, 1.0) is False
    t.ban(D, 400.0, 1.0)  # now C (100) expires first
    assert C not in t and A in t and D in t


def test_equal_until_evicts_the_earlier_ban(BanTable: Any) -> None:
    t = BanTable(max_entries=2)
    t.ban(B, 100.0, 0.0)
    t.ban(A, 100.0, 0.0)
    t.ban(C, 500.0, 1.0)
    assert B not in t and A in t


def test_a_ban_evicts_stale_before_any_ban(BanTable: Any) -> None:
    t = BanTable(max_entries=3)
    t.ban(A, 100.0, 0.0)
    t.record_success(B, 0.0)
    t.ban(C, 100.0, 0.0)
    t.ban(D, 100.0, 1.0)
    assert B not in t and all(ip in t for ip in (A, C, D))


def test_rebanned_ip_is_judged_by_its_current_until(BanTable: Any) -> None:
    # A re-ban leaves the old (until, seq) heap item behind; it must be ignored.
    t = BanTable(max_entries=2)
    t.ban(A, 100.0, 0.0)
    t.ban(A, 500.0, 0.0)
    t.ban(B, 300.0, 0.0)
    t.ban(C, 400.0, 1.0)  # evicts B (300), not A (whose first ban said 100)
    assert B not in t and t.check(A, 1.0) is False
    t2 = BanTable(max_entries=2)
    t2.ban(A, 10.0, 0.0)
    t2.ban(A, 500.0, 0.0)
    t2.record_failure(B, 0.0)
    t2.record_failure(C, 20.0)  # A's old item says 10 <= 20, but A is banned until 500
    assert t2.check(A, 20.0) is False and B not in t2 and C in t2


def test_expired_bans_become_evictable(BanTable: Any) -> None:
    t = BanTable(max_entries=2)
    t.ban(A, 10.0, 0.0)
    t.ban(B, 20.0, 0.0)
    assert t.record_failure(C, 15.0) == 1  # A expired: purged, stale, evicted
    assert A not in t and t.ban_count(A) == 0
    assert t.check(B, 15.0) is False
    assert t.bans(15.0) == [(B, 20.0, 1)]


def test_purged_ban_keeps_its_count_and_is_seen_expired(BanTable: Any) -> None:
    t = BanTable(max_entries=3, window=1.0)
    t.ban(A, 10.0, 0.0)
    t.record_failure(B, 0.0)
    t.record_failure(C, 11.0)
    t.record_failure(D, 12.0)  # purges A to the newest end, then evicts the oldest stale: B
    assert B not in t and A in t and t.ban_count(A) == 1
    assert t.banned_until(A, 5.0) is None  # purged: expired for good, even if now steps back
    assert t.ban(A, 100.0, 12.0) == 2


def test_max_entries_one(BanTable: Any) -> None:
    t = BanTable(max_entries=1)
    for i in range(10):
        assert t.record_failure(ip4(i), float(i)) == 1
        assert len(t) == 1 and ip4(i) in t
    t.ban(A, 50.0, 10.0)
    assert len(t) == 1 and t.record_failure(B, 11.0) == 0
    assert t.record_failure(B, 50.0) == 1 and A not in t


def test_many_bans_heap_rebuild(BanTable: Any) -> None:
    t = BanTable(max_entries=50)
    for r in range(20):  # many re-bans: stale heap items accumulate and get rebuilt
        for i in range(50):
            t.ban(ip4(i), 1000.0 + r * 50 + i, float(r))
    assert len(t) == 50
    assert t.ban(A, 5000.0, 30.0) == 1
    assert ip4(0) not in t  # the earliest until: 1000 + 19 * 50 + 0
    assert len(t.bans(30.0)) == 50


# -- listing -------------------------------------------------------------------------------------


def test_bans_listing_sorted_and_active_only(BanTable: Any) -> None:
    t = BanTable()
    t.ban(C, 300.0, 0.0)
    t.ban(B, 100.0, 0.0)
    t.ban(A, 100.0, 0.0, count=3)
    t.ban(V6, math.inf, 0.0)
    t.ban(D, 5.0, 0.0)
    t.record_failure(E, 0.0)
    assert t.bans(10.0) == [(A, 100.0, 3), (B, 100.0, 1), (C, 300.0, 1), (V6, math.inf, 1)]
    assert t.bans(100.0) == [(C, 300.0, 1), (V6, math.inf, 1)]
    assert t.bans(0.0)[0] == (D, 5.0, 1)
    rows = t.bans(10.0)
    assert all(type(ip) is bytes and type(u) is float and type(n) is int for ip, u, n in rows)


def test_reload_bans_from_listing(BanTable: Any) -> None:
    t = BanTable()
    t.ban(A, 100.0, 0.0)
    t.ban(A, 200.0, 150.0)
    t.ban(V6, 400.0, 150.0)
    saved = t.bans(160.0)
    fresh = BanTable()
    for ip, until, count in saved:
        fresh.ban(ip, until, 170.0, count=count)
    assert fresh.bans(170.0) == saved
    assert fresh.ban_count(A) == 2


# -- options and signatures ----------------------------------------------------------------------


def test_defaults_and_keyword_only(BanTable: Any) -> None:
    t = BanTable()
    assert (t.max_entries, t.window, t.max_failures) == (100_000, 60.0, 64)
    with pytest.raises(TypeError):
        BanTable(10)
    with pytest.raises(TypeError):
        BanTable(bogus=1)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"max_entries": 0}, ValueError),
        ({"max_entries": -1}, ValueError),
        ({"max_entries": 1.5}, TypeError),
        ({"max_entries": "10"}, TypeError),
        ({"window": 0.0}, ValueError),
        ({"window": -1.0}, ValueError),
        ({"window": math.inf}, ValueError),
        ({"window": math.nan}, ValueError),
        ({"window": "60"}, TypeError),
        ({"window": True}, TypeError),
        ({"max_failures": 0}, ValueError),
        ({"max_failures": 65537}, ValueError),
        ({"max_failures": 2.0}, TypeError),
    ],
)
def test_bad_options(BanTable: Any, kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        BanTable(**kwargs)


def test_int_window_is_float(BanTable: Any) -> None:
    assert BanTable(window=30).window == 30.0
    assert type(BanTable(window=30).window) is float


def _sig(fn: Any) -> list[tuple[str, str, Any]]:
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(fn).parameters.values()]


PUBLIC = [
    "check",
    "record_failure",
    "record_success",
    "ban",
    "unban",
    "failures",
    "last_success",
    "ban_count",
    "banned_until",
    "bans",
]


def test_twins_have_the_same_signatures() -> None:
    py = twin_module("bantable", "py").BanTable
    c = twin_module("bantable", "c").BanTable
    for name in PUBLIC:
        assert _sig(getattr(c, name)) == _sig(getattr(py, name)), name
    # A cdef class __init__ has no introspectable signature; its docstring carries it.
    init = inspect.signature(py).replace(return_annotation=inspect.Signature.empty)
    init = init.replace(
        parameters=[p.replace(annotation=p.empty) for p in init.parameters.values()]
    )
    assert (c.__doc__ or "").splitlines()[0] == f"BanTable{init}"
    public_py = {n for n in dir(py) if not n.startswith("_")}
    public_c = {n for n in dir(c) if not n.startswith("_")}
    assert public_py == public_c


# -- the selector and the extension --------------------------------------------------------------


def test_public_module_selects_a_twin() -> None:
    from fastsip import bantable

    assert "bantable" in _compat.LOADED
    which = "c" if _compat.LOADED["bantable"] else "py"
    assert bantable.BanTable is twin_module("bantable", which).BanTable
    assert bantable.__all__ == ("BanTable", "pack_ip", "unpack_ip")


@pytest.mark.c_only
@pytest.mark.skipif(
    os.environ.get("FASTSIP_REQUIRE_EXTENSIONS", "") in ("", "0"),
    reason="only meaningful when the run requires the extension",
)
def test_bantable_c_loaded() -> None:
    from fastsip import bantable

    assert _compat.LOADED["bantable"] is True
    mod = sys.modules["fastsip._bantable_c"]
    assert mod.__file__ is not None and not mod.__file__.endswith(".py")
    assert bantable.BanTable is mod.BanTable
    assert fastsip.USING_EXTENSIONS == all(_compat.LOADED.values())


# -- pack_ip / unpack_ip (shared pure helpers) ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("192.0.2.1", A),
        ("0.0.0.0", b"\x00\x00\x00\x00"),
        ("255.255.255.255", b"\xff\xff\xff\xff"),
        ("2001:db8::1", V6),
        ("::ffff:192.0.2.1", A),
        ("::FFFF:c000:0201", A),
        ("::1", b"\x00" * 15 + b"\x01"),
        ("::", b"\x00" * 16),
        ("::192.0.2.1", b"\x00" * 12 + A),  # IPv4-compatible (deprecated) is not mapped
        ("fe80::1%eth0", bytes.fromhex("fe800000000000000000000000000001")),
    ],
)
def test_pack_ip(text: str, packed: bytes) -> None:
    assert pack_ip(text) == packed


@pytest.mark.parametrize(
    "text", ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "::g", "1:2:3", "host"]
)
def test_pack_ip_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        pack_ip(text)


def test_pack_ip_type() -> None:
    with pytest.raises(TypeError):
        pack_ip(b"1.2.3.4")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pack_ip(3232236033)  # type: ignore[arg-type]


def test_unpack_ip() -> None:
    assert unpack_ip(A) == "192.0.2.1"
    assert unpack_ip(V6) == "2001:db8::1"
    assert unpack_ip(pack_ip("::ffff:10.0.0.1")) == "10.0.0.1"
    with pytest.raises(ValueError):
        unpack_ip(b"\x01\x02\x03")
    with pytest.raises(TypeError):
        unpack_ip("192.0.2.1")  # type: ignore[arg-type]


@given(st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)))
@settings(derandomize=True, database=None, max_examples=200)
def test_pack_unpack_round_trip(ip: bytes) -> None:
    text = unpack_ip(ip)
    if len(ip) == 16 and ip[:12] == b"\x00" * 10 + b"\xff\xff":
        assert pack_ip(text) == ip[12:]
    else:
        assert pack_ip(text) == ip


# -- differential: random operation sequences ----------------------------------------------------


class _Rec:
    def __init__(self) -> None:
        self.fails: list[float] = []  # every failure since the last ban (uncapped)
        self.until = -math.inf
        self.count = 0
        self.success: float | None = None
        self.seq = 0


class Model:
    """The documented rules, written the simple way (monotone clock only: see the spec)."""

    def __init__(self, *, max_entries: int, window: float, max_failures: int) -> None:
        self.n, self.w, self.k = max_entries, window, max_failures
        self.batch = max(1, max_entries // 16)
        self.recs: dict[bytes, _Rec] = {}
        self.banned: set[bytes] = set()  # the "_bans" section
        self.order: list[bytes] = []  # the "_rest" section, oldest write first
        self.seq = 0

    @staticmethod
    def _ip(ip: Any) -> None:
        if type(ip) is not bytes:
            raise TypeError
        if len(ip) not in (4, 16):
            raise ValueError

    def _in_window(self, r: _Rec, now: float) -> int:
        return min(self.k, sum(1 for t in r.fails if t > now - self.w))

    def _stale(self, r: _Rec, now: float) -> bool:
        return not r.fails or r.fails[-1] <= now - self.w

    def _make_room(self, now: float, for_ban: bool) -> bool:
        if len(self.recs) < self.n:
            return True
        expired = sorted(
            (self.recs[ip].until, self.recs[ip].seq, ip)
            for ip in self.banned
            if not now < self.recs[ip].until
        )
        for _, _, ip in expired:
            self.banned.remove(ip)
            self.order.append(ip)
        if self.order:
            stale = [ip for ip in self.order if self._stale(self.recs[ip], now)][: self.batch]
            live = [ip for ip in self.order if not self._stale(self.recs[ip], now)]
            for ip in stale + live[: self.batch - len(stale)]:
                self.order.remove(ip)
                del self.recs[ip]
            return True
        if not for_ban:
            return False
        ip = min(self.banned, key=lambda b: (self.recs[b].until, self.recs[b].seq))
        self.banned.remove(ip)
        del self.recs[ip]
        return True

    def _touch(self, ip: bytes, now: float) -> _Rec | None:
        if ip in self.banned:
            return self.recs[ip]
        if ip in self.recs:
            self.order.remove(ip)
        elif not self._make_room(now, False):
            return None
        else:
            self.recs[ip] = _Rec()
        self.order.append(ip)
        return self.recs[ip]

    def check(self, ip: Any, now: float) -> bool:
        self._ip(ip)
        return not (ip in self.banned and now < self.recs[ip].until)

    def record_failure(self, ip: Any, now: float) -> int:
        self._ip(ip)
        r = self._touch(ip, now)
        if r is None:
            return 0
        r.fails.append(now)
        return self._in_window(r, now)

    def record_success(self, ip: Any, now: float) -> None:
        self._ip(ip)
        r = self._touch(ip, now)
        if r is not None:
            r.success = now

    def ban(self, ip: Any, until: float, now: float, *, count: int | None = None) -> int:
        self._ip(ip)
        if math.isnan(until):
            raise ValueError
        if count is not None and count < 1:
            raise ValueError
        if ip not in self.recs:
            self._make_room(now, True)
            self.recs[ip] = _Rec()
        elif ip in self.order:
            self.order.remove(ip)
        self.banned.add(ip)
        r = self.recs[ip]
        r.until = until
        r.count = r.count + 1 if count is None else count
        r.fails = []
        self.seq += 1
        r.seq = self.seq
        return r.count

    def unban(self, ip: Any) -> bool:
        self._ip(ip)
        r = self.recs.pop(ip, None)
        if r is None:
            return False
        self.banned.discard(ip)
        if ip in self.order:
            self.order.remove(ip)
        return r.count > 0

    def failures(self, ip: Any, now: float) -> int:
        self._ip(ip)
        r = self.recs.get(ip)
        return 0 if r is None else self._in_window(r, now)

    def last_success(self, ip: Any) -> float | None:
        self._ip(ip)
        r = self.recs.get(ip)
        return None if r is None else r.success

    def ban_count(self, ip: Any) -> int:
        self._ip(ip)
        r = self.recs.get(ip)
        return 0 if r is None else r.count

    def banned_until(self, ip: Any, now: float) -> float | None:
        self._ip(ip)
        if ip in self.banned and now < self.recs[ip].until:
            return self.recs[ip].until
        return None

    def bans(self, now: float) -> list[tuple[bytes, float, int]]:
        rows = [(ip, self.recs[ip].until, self.recs[ip].count) for ip in self.banned]
        return sorted((r for r in rows if now < r[1]), key=lambda r: (r[1], r[0]))

    def __len__(self) -> int:
        return len(self.recs)

    def __contains__(self, ip: Any) -> bool:
        self._ip(ip)
        return ip in self.recs


HOT = [A, B, C, D, E, F, V6, V6B]
POOL = HOT + [ip4(i) for i in range(24)] + [V6[:15] + bytes([i]) for i in range(3, 19)]
BAD = [b"", b"\x01\x02\x03", b"\x00" * 17, "1.2.3.4"]
OP_NAMES = (
    "check",
    "check",
    "record_failure",
    "record_failure",
    "record_failure",
    "record_success",
    "ban",
    "ban",
    "ban_n",
    "unban",
    "failures",
    "last_success",
    "ban_count",
    "banned_until",
    "bans",
    "len",
    "contains",
    "flood",
)
STEP_CHOICES = (0.0, 0.0, 0.0, 0.001, 0.25, 0.5, 0.5, 1.0, 1.0, 5.0, 29.5, 30.0, 60.0, 61.0, 500.0)
SPAN_CHOICES = (-5.0, 0.0, 0.5, 1.0, 10.0, 30.0, 60.0, 100.0, 3600.0, math.inf, -math.inf)
Op = tuple[str, Any, float, float, int]


def decode(program: bytes) -> list[Op]:
    """A byte string as a list of operations, 5 bytes each (op, ip, step, span, n).

    Hypothesis draws and shrinks one ``bytes`` much faster than lists of tuples, which keeps
    long sequences (the ones that fill tables and evict) affordable.
    """
    ops: list[Op] = []
    for i in range(0, len(program) - 4, 5):
        o, b_ip, b_step, b_span, b_n = program[i : i + 5]
        if b_ip >= 240:
            ip: Any = BAD[b_ip % len(BAD)]
        elif b_ip % 3:
            ip = HOT[b_ip % len(HOT)]
        else:
            ip = POOL[b_ip % len(POOL)]
        step = STEP_CHOICES[b_step % 16] if b_step % 16 < 15 else b_step * 0.37
        span = SPAN_CHOICES[b_span % 12] if b_span % 12 < 11 else b_span * 3.3 - 40.0
        ops.append((OP_NAMES[o % len(OP_NAMES)], ip, step, span, b_n % 7 - 1))
    return ops


OPS = st.binary(min_size=150, max_size=800).map(decode)


CONFIGS = st.fixed_dictionaries(
    {
        "max_entries": st.sampled_from([1, 1, 2, 2, 3, 3, 4, 5, 7, 12, 32, 33, 40]),
        "window": st.sampled_from([0.5, 1.0, 30.0, 60.0]),
        "max_failures": st.integers(min_value=1, max_value=9),
    }
)


def _run(t: Any, op: str, ip: Any, now: float, span: float, n: int) -> Any:
    """One operation; the result, or the exception type it raised."""
    try:
        if op == "check":
            return t.check(ip, now)
        if op == "record_failure":
            return t.record_failure(ip, now)
        if op == "record_success":
            return t.record_success(ip, now)
        if op == "ban":
            return t.ban(ip, now + span, now)
        if op == "ban_n":
            return t.ban(ip, now + span, now, count=n)
        if op == "unban":
            return t.unban(ip)
        if op == "failures":
            return t.failures(ip, now)
        if op == "last_success":
            return t.last_success(ip)
        if op == "ban_count":
            return t.ban_count(ip)
        if op == "banned_until":
            return t.banned_until(ip, now)
        if op == "bans":
            return t.bans(now)
        if op == "len":
            return len(t)
        if op == "flood":  # many sources failing at once: fills tables, forces eviction
            base = POOL.index(ip) if ip in POOL else 0
            return [t.record_failure(POOL[(base + j) % len(POOL)], now) for j in range(8 * n)]
        return ip in t
    except (TypeError, ValueError) as exc:
        return type(exc)


@given(config=CONFIGS, ops=OPS)
@settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the fixture is a class
)
def test_differential_against_model(BanTable: Any, config: dict[str, Any], ops: list[Op]) -> None:
    t = BanTable(**config)
    m = Model(**config)
    now = 1000.0
    for i, (op, ip, step, span, n) in enumerate(ops):
        now += step  # a monotone clock, as the transport provides
        got = _run(t, op, ip, now, span, n)
        want = _run(m, op, ip, now, span, n)
        assert got == want, (i, op, ip, now)
        assert len(t) == len(m) <= config["max_entries"]
    for ip in POOL:
        assert (ip in t, t.ban_count(ip), t.last_success(ip)) == (
            ip in m,
            m.ban_count(ip),
            m.last_success(ip),
        )


@given(config=CONFIGS, ops=OPS, start=st.floats(min_value=-1e6, max_value=1e6))
@settings(derandomize=True, database=None, max_examples=150, deadline=None)
def test_twins_agree_with_any_clock(config: dict[str, Any], ops: list[Op], start: float) -> None:
    # No model here: the clock jumps back and forth; the two twins must still agree exactly.
    py = twin_module("bantable", "py").BanTable(**config)
    c = twin_module("bantable", "c").BanTable(**config)
    for i, (op, ip, step, span, n) in enumerate(ops):
        now = start + (step if i % 3 else -step * 2)
        start = now
        assert _run(py, op, ip, now, span, n) == _run(c, op, ip, now, span, n), (i, op)
        assert len(py) == len(c)
