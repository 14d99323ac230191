"""Timer wheel: both twins against the firing rule of fastsip._timerwheel_py, and each other.

Every test runs on the pure (``py``) and Cython (``c``) twin. ``Model`` is a deliberately naive
re-statement of the documented rule (a dict of pending timers, ``sorted``, due ticks found by
stepping), and the differential tests require identical results and exception types from the
twin under test, the pure twin and the model. Everything is deterministic: fixed seeds,
derandomized hypothesis, no timing assertions.
"""

from __future__ import annotations

import gc
import importlib
import math
import os
import random
import sys
import weakref
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import twin_module
from fastsip import _compat

PY = twin_module("timerwheel", "py")
DAY = 86400.0
YEAR = 365 * DAY


@pytest.fixture(params=["py", "c"], scope="module")
def tw(request: pytest.FixtureRequest) -> ModuleType:
    """The twin module under test."""
    return twin_module("timerwheel", request.param)


@pytest.fixture(scope="module")
def TimerWheel(tw: ModuleType) -> Any:
    return tw.TimerWheel


# -- the rule, restated independently -----------------------------------------------------------


def ref_due(deadline: float, tick: float) -> int:
    """Smallest k with k * tick >= deadline, found by stepping (no division trickery)."""
    k = math.floor(deadline / tick) - 2
    while k * tick < deadline:
        k += 1
    return k


def ref_tick_of(now: float, tick: float) -> int:
    """Largest k with k * tick <= now."""
    k = math.ceil(now / tick) + 2
    while k * tick > now:
        k -= 1
    return k


def grid(deadline: float, tick: float) -> float:
    """The time at which a timer with this deadline becomes due: its deadline rounded up."""
    return float(ref_due(deadline, tick)) * tick


class Model:
    """Pending timers in a dict; advance fires by the documented rule, sorted (deadline, seq)."""

    def __init__(self, *, tick: float = 0.01, now: float = 0.0) -> None:
        self.tick = tick
        self.now = now
        self.cur = ref_tick_of(now, tick)
        self.pending: dict[int, tuple[float, int, object, bool]] = {}
        self.seq = 0

    def schedule(self, deadline: float, payload: object) -> int:
        if not math.isfinite(deadline):
            raise ValueError
        if deadline > self.now and not deadline / self.tick < 2.0**52:
            raise ValueError
        self.seq += 1
        self.pending[self.seq] = (deadline, self.seq, payload, deadline <= self.now)
        return self.seq

    def cancel(self, seq: int) -> bool:
        return self.pending.pop(seq, None) is not None

    def advance(self, now: float) -> list[object]:
        if now > self.now:
            self.now = now
            self.cur = ref_tick_of(now, self.tick)
        fired = [e for e in self.pending.values() if e[3] or ref_due(e[0], self.tick) <= self.cur]
        fired.sort(key=lambda e: (e[0], e[1]))
        for e in fired:
            del self.pending[e[1]]
        return [e[2] for e in fired]

    def next_deadline(self) -> float | None:
        if any(e[3] for e in self.pending.values()):
            return self.now
        if not self.pending:
            return None
        return float(min(ref_due(e[0], self.tick) for e in self.pending.values())) * self.tick

    def __len__(self) -> int:
        return len(self.pending)


# -- API shape -----------------------------------------------------------------------------------


def test_options_are_keyword_only(TimerWheel: Any) -> None:
    with pytest.raises(TypeError):
        TimerWheel(0.01)
    with pytest.raises(TypeError):
        TimerWheel(0.01, 0.0)
    with pytest.raises(TypeError):
        TimerWheel(resolution=0.01)
    w = TimerWheel(tick=0.5, now=3.0)
    assert (w.tick, w.now, len(w)) == (0.5, 3.0, 0)
    assert type(w.tick) is float and type(w.now) is float


def test_same_surface_as_the_specification(tw: ModuleType) -> None:
    # inspect.signature does not see through cdef classes: compare names and behaviour.
    def public(obj: object) -> set[str]:
        return {n for n in dir(obj) if not n.startswith("_")}

    assert tw.__all__ == PY.__all__
    assert public(tw.TimerWheel) == public(PY.TimerWheel)
    assert public(tw.TimerHandle) == public(PY.TimerHandle) == {"deadline"}
    for name in ("LEVEL_BITS", "SLOTS", "LEVELS", "HORIZON_BITS", "MAX_TICKS"):
        assert getattr(tw, name) == getattr(PY, name)
    for args, kwargs in [((), {"tick": 1.0, "now": 2.0}), ((), {"now": 5.0}), ((), {})]:
        a, b = tw.TimerWheel(*args, **kwargs), PY.TimerWheel(*args, **kwargs)
        assert (a.tick, a.now, len(a)) == (b.tick, b.now, len(b))
        assert repr(a) == repr(b)
    # Method parameters have the same names (keywords work the same way).
    for twin in (tw, PY):
        w = twin.TimerWheel()
        h = w.schedule(deadline=1.0, payload="x")
        assert w.cancel(handle=h) is True
        assert w.advance(now=2.0) == []


def test_defaults(TimerWheel: Any) -> None:
    w = TimerWheel()
    assert 0.0 < w.tick <= 0.01
    assert w.now == 0.0
    assert len(w) == 0 and not w
    assert w.next_deadline() is None
    assert w.advance(1.0) == []
    assert w.now == 1.0


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"tick": 0.0}, ValueError),
        ({"tick": -0.01}, ValueError),
        ({"tick": math.nan}, ValueError),
        ({"tick": math.inf}, ValueError),
        ({"now": math.nan}, ValueError),
        ({"now": -math.inf}, ValueError),
        ({"now": 1e300}, ValueError),
        ({"tick": "0.01"}, TypeError),
        ({"now": None}, TypeError),
        ({"tick": 10**400}, OverflowError),
    ],
)
def test_invalid_options(TimerWheel: Any, kwargs: dict[str, Any], exc: type) -> None:
    with pytest.raises(exc):
        TimerWheel(**kwargs)


@pytest.mark.parametrize(
    ("deadline", "exc"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (1e300, ValueError),
        ("1.0", TypeError),
        (b"1", TypeError),
        (None, TypeError),
        (1 + 2j, TypeError),
    ],
)
def test_invalid_deadline(TimerWheel: Any, deadline: object, exc: type) -> None:
    w = TimerWheel()
    with pytest.raises(exc):
        w.schedule(deadline, "x")
    assert len(w) == 0 and w.next_deadline() is None


@pytest.mark.parametrize(
    ("now", "exc"), [(math.nan, ValueError), (1e300, ValueError), ("1", TypeError)]
)
def test_invalid_advance(TimerWheel: Any, now: object, exc: type) -> None:
    w = TimerWheel()
    w.schedule(1.0, "x")
    with pytest.raises(exc):
        w.advance(now)
    assert w.now == 0.0 and len(w) == 1  # nothing moved
    assert w.advance(1.0) == ["x"]


def test_numbers_accepted_like_floats(TimerWheel: Any) -> None:
    class Seconds:
        def __float__(self) -> float:
            return 2.5

    w = TimerWheel(tick=1, now=0)
    assert type(w.tick) is float
    h = w.schedule(2, "int")
    assert type(h.deadline) is float and h.deadline == 2.0
    assert w.schedule(Seconds(), "obj").deadline == 2.5
    w.schedule(True, "bool")
    assert w.advance(3) == ["bool", "int", "obj"]


# -- ordering and the firing rule -----------------------------------------------------------------


def test_order_within_one_tick(TimerWheel: Any) -> None:
    w = TimerWheel(tick=1.0)
    p = {name: object() for name in "abcde"}
    for name, d in [("a", 0.7), ("b", 0.2), ("c", 0.9), ("d", 0.2), ("e", 0.5)]:
        w.schedule(d, p[name])
    out = w.advance(1.0)
    assert [next(k for k, v in p.items() if v is o) for o in out] == ["b", "d", "e", "a", "c"]


def test_order_across_ticks_and_levels(TimerWheel: Any) -> None:
    rng = random.Random(7)
    w = TimerWheel(tick=0.01)
    deadlines = [
        rng.choice([rng.uniform(0, 3), rng.uniform(0, 5000), round(rng.uniform(0, 9), 1)])
        for _ in range(3000)
    ]
    for i, d in enumerate(deadlines):
        w.schedule(d, i)
    out = w.advance(6000.0)
    assert out == sorted(range(len(deadlines)), key=lambda i: (deadlines[i], i))
    assert len(w) == 0


def test_never_early_and_at_most_one_tick_late(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01)
    w.schedule(1.005, "mid")
    w.schedule(2.0, "on-grid")
    assert w.next_deadline() == grid(1.005, 0.01)
    assert w.advance(1.005) == []  # deadline reached, but not the tick it rounds up to
    assert w.advance(1.0099) == []
    assert w.advance(1.01) == ["mid"]
    assert w.advance(1.999) == []
    assert w.advance(2.0) == ["on-grid"]


@pytest.mark.parametrize("tick", [0.01, 0.001, 0.1, 1.0, 0.3, 1 / 3])
def test_fires_exactly_at_the_first_advance_reaching_its_grid_point(
    TimerWheel: Any, tick: float
) -> None:
    rng = random.Random(int(tick * 1000))
    w = TimerWheel(tick=tick, now=0.0)
    deadlines = {}
    for i in range(1000):
        d = rng.choice(
            [rng.uniform(0, 200 * tick), rng.randrange(200) * tick, rng.uniform(0, 1e5 * tick)]
        )
        deadlines[i] = d
        w.schedule(d, i)
    prev = 0.0
    now = 0.0
    while deadlines:
        now += rng.expovariate(1 / (rng.choice([0.3, 3, 300]) * tick))
        for i in w.advance(now):
            d = deadlines.pop(i)
            due_at = grid(d, tick)
            assert d <= due_at <= now, "fired before its deadline rounded up to the tick"
            # (a deadline <= the start is "in the past": it fires on the first advance)
            assert due_at > prev or d <= 0.0, "should have fired in an earlier advance"
            assert due_at - d < tick * (1 + 1e-9)
        assert all(grid(d, tick) > now for d in deadlines.values()), "late"
        prev = now


def test_past_deadlines_fire_on_the_next_advance(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01, now=10.0)
    w.advance(10.004)  # now is inside tick 1000, past its grid point
    w.schedule(5.0, "past")
    w.schedule(10.004, "now")
    w.schedule(10.002, "this tick")
    w.schedule(-1e300, "ancient")
    w.schedule(10.0041, "future")
    assert len(w) == 5
    assert w.next_deadline() == 10.004
    assert w.advance(10.004) == ["ancient", "past", "this tick", "now"]  # same now: still fires
    assert w.advance(10.01) == ["future"]
    w.schedule(1.0, "late")
    assert w.advance(3.0) == ["late"]  # a smaller now still hands out past timers...
    assert w.now == 10.01  # ...without moving the clock back


def test_past_and_wheel_timers_merge_by_deadline(TimerWheel: Any) -> None:
    w = TimerWheel(tick=1.0)
    w.schedule(0.5, "wheel-0.5")
    w.schedule(0.7, "wheel-0.7")
    w.advance(0.6)  # not yet at the grid point 1.0
    w.schedule(0.55, "past-0.55")
    w.schedule(0.5, "past-0.5")  # ties with a wheel timer scheduled earlier
    assert w.advance(1.0) == ["wheel-0.5", "past-0.5", "past-0.55", "wheel-0.7"]


def test_time_never_moves_backwards(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01, now=100.0)
    w.schedule(105.0, "a")
    assert w.advance(50.0) == []
    assert w.now == 100.0
    assert w.advance(104.0) == []
    assert w.advance(1.0) == []
    assert w.now == 104.0
    assert w.advance(104.0) == []
    assert w.advance(105.0) == ["a"]
    assert w.now == 105.0


def test_initial_now_negative_and_large(TimerWheel: Any) -> None:
    for now in (-1234.5, 1e9, 0.0):
        w = TimerWheel(tick=0.01, now=now)
        w.schedule(now + 0.5, "a")
        w.schedule(now + 3600, "b")
        assert w.advance(now + 0.49) == []
        assert w.advance(now + 0.5 + 0.01) == ["a"]
        assert w.advance(now + 3601) == ["b"]


# -- cancel --------------------------------------------------------------------------------------


def test_cancel(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01)
    a = w.schedule(1.0, "a")
    b = w.schedule(2.0, "b")
    c = w.schedule(3600.0, "c")
    assert len(w) == 3
    assert w.cancel(a) is True
    assert len(w) == 2
    assert w.cancel(a) is False  # twice: harmless
    assert w.advance(2.0) == ["b"]
    assert w.cancel(b) is False  # after firing: harmless
    assert w.cancel(c) is True
    assert len(w) == 0 and w.next_deadline() is None
    assert w.advance(1e6) == []


def test_cancel_ready_and_overflow_timers(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01, now=50.0)
    r = w.schedule(10.0, "ready")
    o = w.schedule(50.0 + 100 * YEAR, "overflow")
    keep = w.schedule(50.0 + 101 * YEAR, "kept")
    assert w.cancel(r) is True and w.cancel(o) is True
    assert w.advance(50.0) == []
    assert w.next_deadline() == grid(50.0 + 101 * YEAR, 0.01)
    assert w.advance(50.0 + 102 * YEAR) == ["kept"]
    assert w.cancel(keep) is False


def test_cancel_foreign_handles(tw: ModuleType) -> None:
    w1, w2 = tw.TimerWheel(), tw.TimerWheel()
    h1 = w1.schedule(1.0, "one")
    w2.schedule(1.0, "two")
    assert w2.cancel(h1) is False  # another wheel's pending handle
    assert len(w1) == len(w2) == 1
    for bad in (None, 1, "h", object()):
        with pytest.raises(TypeError):
            w1.cancel(bad)
    for name in ("py", "c"):  # the other twin's handles are the wrong type
        try:
            other = importlib.import_module(f"fastsip._timerwheel_{name}")
        except ImportError:
            continue
        if other is not tw:
            with pytest.raises(TypeError):
                w1.cancel(other.TimerWheel().schedule(1.0, "x"))
    assert w1.advance(1.0) == ["one"] and w2.advance(1.0) == ["two"]


def test_stale_handles_never_match_reused_storage(TimerWheel: Any) -> None:
    w = TimerWheel(tick=1.0)
    stale = [w.schedule(5.0, i) for i in range(100)]
    for h in stale:
        assert w.cancel(h)
    fresh = [w.schedule(5.0, i) for i in range(100)]  # may reuse the freed storage
    assert not any(w.cancel(h) for h in stale)
    assert len(w) == 100
    w.advance(1.0)
    assert all(w.cancel(h) for h in fresh)
    assert len(w) == 0


def test_cancel_then_next_deadline_is_recomputed(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01)
    hs = [w.schedule(d, d) for d in (5000.004, 5000.5, 5003.0, 0.5)]  # first three share a slot
    assert w.next_deadline() == grid(0.5, 0.01)
    w.cancel(hs[3])
    assert w.next_deadline() == grid(5000.004, 0.01)
    w.cancel(hs[0])
    assert w.next_deadline() == grid(5000.5, 0.01)
    w.schedule(4000.0, "earlier")
    assert w.next_deadline() == grid(4000.0, 0.01)
    assert w.advance(w.next_deadline()) == ["earlier"]
    assert w.advance(w.next_deadline()) == [5000.5]
    assert w.advance(w.next_deadline()) == [5003.0]
    assert w.next_deadline() is None


# -- far future: every level and the overflow ----------------------------------------------------


def test_far_future_hours_days_years(TimerWheel: Any) -> None:
    tick = 0.01
    w = TimerWheel(tick=tick)
    deadlines = [3600.0, 86400.0, 7 * DAY, YEAR, 30 * YEAR, 1000 * YEAR]  # 30 y: past 2**36 ticks
    payloads = {d: object() for d in deadlines}
    for d in reversed(deadlines):
        w.schedule(d, payloads[d])
    for d in deadlines:
        assert w.next_deadline() == grid(d, tick)
        assert w.advance(d - tick / 2) == []
        out = w.advance(grid(d, tick))
        assert len(out) == 1 and out[0] is payloads[d]
    assert len(w) == 0


def test_cascade_through_every_level_boundary(TimerWheel: Any) -> None:
    tick = 1.0
    model = Model(tick=tick)
    w = TimerWheel(tick=tick)
    deadlines = []
    for k in range(1, 8):
        for off in (-1, 0, 1, 2):
            deadlines.append(float(64**k + off))
    deadlines += [float(2**36 * m + off) for m in (1, 2, 5) for off in (-1, 0, 1)]
    rng = random.Random(3)
    deadlines += [rng.uniform(0, 64.0**7) for _ in range(300)]
    for i, d in enumerate(deadlines):
        w.schedule(d, i)
        model.schedule(d, i)
    now = 0.0
    while len(model):
        now += rng.choice([1, 63, 64, 65, 4095, 4096, 262144, 2**36]) * rng.random() * 3
        assert w.advance(now) == model.advance(now)
        assert w.next_deadline() == model.next_deadline()
        assert len(w) == len(model)


def test_overflow_with_a_fine_tick(TimerWheel: Any) -> None:
    # 1 µs ticks: 2**36 ticks is 19 hours, so a 24 h ban waits in the overflow list.
    tick = 1e-6
    w = TimerWheel(tick=tick, now=1000.0)
    model = Model(tick=tick, now=1000.0)
    for i, d in enumerate(
        [1000.0 + DAY, 1000.0 + 2 * DAY, 1000.5, 1000.0 + 30 * DAY, 1000.0 + DAY]
    ):
        w.schedule(d, i)
        model.schedule(d, i)
    for now in (
        1001.0,
        1000.0 + 0.9 * DAY,
        1000.0 + DAY,
        1000.0 + 3 * DAY,
        1000.0 + 29 * DAY,
        1000.0 + 31 * DAY,
    ):
        assert w.next_deadline() == model.next_deadline()
        assert w.advance(now) == model.advance(now)
    assert len(w) == 0


def test_idle_jumps_are_cheap_and_exact(TimerWheel: Any) -> None:
    # A year of 10 ms ticks in one advance must not step tick by tick (the test would time out).
    w = TimerWheel(tick=0.01)
    w.schedule(YEAR + 0.123, "x")
    assert w.advance(YEAR) == []
    assert w.advance(YEAR + 1) == ["x"]
    w.schedule(YEAR * 500, "y")
    for _ in range(3):
        assert w.advance(w.now + 100 * YEAR) == []
    assert w.advance(YEAR * 500) == ["y"]


# -- scale ---------------------------------------------------------------------------------------


def test_200k_random_timers_match_a_sorted_reference(tw: ModuleType) -> None:
    n = 200_000
    rng = random.Random(2024)
    w = tw.TimerWheel(tick=0.01, now=0.0)
    spans = (30.0, 3600.0, 40 * DAY)  # transaction timers, registrations, bans
    deadlines = [rng.random() * spans[i % 3] for i in range(n)]
    handles = [w.schedule(d, i) for i, d in enumerate(deadlines)]
    cancelled = set(rng.sample(range(n), n // 10))
    for i in cancelled:
        assert w.cancel(handles[i])
    assert len(w) == n - len(cancelled)
    out: list[int] = []
    now = 0.0
    while len(w):
        prev_len = len(out)
        now += rng.choice((0.05, 7.0, 900.0, DAY))
        out.extend(w.advance(now))
        assert all(deadlines[i] <= now for i in out[prev_len:])
    expected = sorted((i for i in range(n) if i not in cancelled), key=deadlines.__getitem__)
    assert out == expected
    assert not any(w.cancel(handles[i]) for i in range(0, n, 97))


def test_next_deadline_drives_a_loop(TimerWheel: Any) -> None:
    # What the asyncio driver does: sleep until next_deadline(), advance, repeat.
    rng = random.Random(11)
    w = TimerWheel(tick=0.01)
    deadlines = [rng.uniform(0, 10) for _ in range(500)] + [
        rng.uniform(0, 30 * DAY) for _ in range(50)
    ]
    for i, d in enumerate(deadlines):
        w.schedule(d, i)
    out: list[int] = []
    last = -1.0
    while (nd := w.next_deadline()) is not None:
        assert nd >= last
        batch = w.advance(nd)
        assert batch, "advance(next_deadline()) must fire something"
        assert all(deadlines[i] <= nd < deadlines[i] + 0.01 + 1e-6 for i in batch)
        out += batch
        last = nd
    assert out == sorted(range(len(deadlines)), key=lambda i: (deadlines[i], i))


def test_payload_identity(TimerWheel: Any) -> None:
    w = TimerWheel(tick=0.01)
    shared = object()
    objs = [object(), None, shared, [1], shared, {"k": "v"}]
    for i, o in enumerate(objs):
        w.schedule(1.0 + i * 0.001, o)
    out = w.advance(2.0)
    assert len(out) == len(objs)
    assert all(a is b for a, b in zip(out, objs, strict=True))


def test_payload_is_released_on_cancel_and_fire(TimerWheel: Any) -> None:
    class P:
        pass

    w = TimerWheel(tick=0.01)
    a, b = P(), P()
    ra, rb = weakref.ref(a), weakref.ref(b)
    ha = w.schedule(1.0, a)
    w.schedule(1.0, b)
    del a, b
    w.cancel(ha)
    assert ra() is None
    fired = w.advance(1.0)
    assert fired[0] is rb()
    del fired
    assert rb() is None
    assert ha.deadline == 1.0  # the handle outlives its payload


def test_handle(TimerWheel: Any) -> None:
    w = TimerWheel()
    h = w.schedule(1.25, "x")
    assert h.deadline == 1.25
    assert repr(h) == "<TimerHandle deadline=1.25>"
    with pytest.raises(AttributeError):
        h.deadline = 2.0  # type: ignore[misc]
    assert w.cancel(h) and h.deadline == 1.25


def test_wheel_in_a_reference_cycle_is_collected(TimerWheel: Any) -> None:
    class Owner:
        pass

    owner = Owner()
    owner.wheel = TimerWheel()  # type: ignore[attr-defined]
    for i in range(1000):
        owner.wheel.schedule(float(i), (owner, i))  # type: ignore[attr-defined]
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


def test_dropping_a_wheel_with_many_pending_timers(TimerWheel: Any) -> None:
    class P:
        pass

    w = TimerWheel(tick=0.01)
    p = P()
    ref = weakref.ref(p)
    handles = [w.schedule(i * 0.37, p) for i in range(100_000)]
    del p, w
    gc.collect()
    assert ref() is None
    assert handles[5].deadline == 5 * 0.37


# -- differential (hypothesis) -------------------------------------------------------------------

TICKS = st.sampled_from([0.01, 1.0, 0.25, 0.001, 3.0, 1e-6])
START = st.sampled_from([0.0, 12.34, -5.0, 1e6])
#: offsets in ticks: around now, around a tick, and spread over every level up to the overflow
SPAN = st.one_of(
    st.floats(-3, 3),
    st.integers(-3, 70).map(float),
    st.integers(1, 7).flatmap(lambda k: st.floats(64.0 ** (k - 1), 64.0**k * 1.2)),
    st.sampled_from([2.0**36 - 1, 2.0**36, 2.0**36 + 1, 2.0**37]),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), SPAN),
        st.tuples(st.just("cancel"), st.integers(0, 10_000)),
        st.tuples(st.just("advance"), st.one_of(SPAN, st.floats(-100, 0))),
        st.tuples(st.just("next"), st.just(0.0)),
    ),
    max_size=80,
)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("raise", type(exc))


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(tick=TICKS, start=START, ops=OPS)
def test_differential_against_reference_and_model(
    tw: ModuleType, tick: float, start: float, ops: list[tuple[str, float]]
) -> None:
    twin, ref, model = (
        tw.TimerWheel(tick=tick, now=start),
        PY.TimerWheel(tick=tick, now=start),
        Model(tick=tick, now=start),
    )
    handles: list[tuple[Any, Any, int]] = []
    for op, x in ops:
        if op == "schedule":
            deadline = model.now + x * tick
            payload = len(handles)
            a = _outcome(twin.schedule, deadline, payload)
            b = _outcome(ref.schedule, deadline, payload)
            m = _outcome(model.schedule, deadline, payload)
            assert a[0] == b[0] == m[0]
            if a[0] == "ok":
                handles.append((a[1], b[1], m[1]))
            else:
                assert a[1] is b[1] is m[1]
        elif op == "cancel":
            if not handles:
                continue
            ha, hb, hm = handles[int(x) % len(handles)]
            assert twin.cancel(ha) == ref.cancel(hb) == model.cancel(hm)
        elif op == "advance":
            now = model.now + x * tick
            assert (
                _outcome(twin.advance, now)
                == _outcome(ref.advance, now)
                == _outcome(model.advance, now)
            )
            assert twin.now == ref.now == model.now
        else:
            assert twin.next_deadline() == ref.next_deadline() == model.next_deadline()
        assert len(twin) == len(ref) == len(model)
    final = max([model.now, *(e[0] for e in model.pending.values())]) + tick
    assert twin.advance(final) == ref.advance(final) == model.advance(final)
    assert len(twin) == 0


# -- the public selector -------------------------------------------------------------------------


def test_public_selector() -> None:
    from fastsip import timerwheel

    assert timerwheel.__all__ == ("TimerHandle", "TimerWheel")
    impl = sys.modules[
        "fastsip._timerwheel_c" if _compat.LOADED["timerwheel"] else "fastsip._timerwheel_py"
    ]
    assert timerwheel.TimerWheel is impl.TimerWheel
    assert timerwheel.TimerHandle is impl.TimerHandle


@pytest.mark.skipif(
    os.environ.get("FASTSIP_REQUIRE_EXTENSIONS", "") in ("", "0"),
    reason="only meaningful when the run requires the extension",
)
def test_extension_really_loaded() -> None:
    from fastsip import timerwheel

    assert _compat.LOADED["timerwheel"] is True
    mod = sys.modules["fastsip._timerwheel_c"]
    assert mod.__file__ is not None and not mod.__file__.endswith(".py")
    assert timerwheel.TimerWheel is mod.TimerWheel


def test_not_copyable_picklable_or_subclassable(tw: ModuleType) -> None:
    import copy
    import pickle

    w = tw.TimerWheel()
    h = w.schedule(1.0, "x")
    for obj in (w, h):
        with pytest.raises(TypeError):
            copy.copy(obj)
        with pytest.raises(TypeError):
            copy.deepcopy(obj)
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    for cls in (tw.TimerWheel, tw.TimerHandle):
        with pytest.raises(TypeError):
            type("Sub", (cls,), {})
    assert w.cancel(h)


def test_finalizer_reentering_during_advance(TimerWheel: Any) -> None:
    # A payload's finalizer that cancels other timers of the same wheel runs when the caller
    # drops the result, never in the middle of advance(); every timer comes out exactly once.
    w = TimerWheel(tick=0.01)
    handles: list[Any] = []

    class P:
        def __init__(self, i: int) -> None:
            self.i = i

        def __del__(self) -> None:
            for h in handles[self.i + 1 : self.i + 3]:
                w.cancel(h)

    for i in range(200):
        handles.append(w.schedule(1.0 + i * 0.001, P(i)))
    seen = []
    while len(w):
        batch = w.advance(w.now + 0.05)
        seen += [p.i for p in batch]
        del batch
    assert seen == sorted(set(seen))


@pytest.mark.c_only
@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="from 3.12 on the collector runs between bytecodes (the eval breaker), never inside "
    "a C function's allocation: the re-entry this test forces cannot happen there",
)
def test_c_gc_finalizer_reentering_inside_advance() -> None:
    # Force a collection at advance()'s one Python allocation: a cyclic garbage object whose
    # finalizer cancels timers that are already in the fired list. They must not come out.
    mod = twin_module("timerwheel", "c")
    w = mod.TimerWheel(tick=1.0)
    handles = [w.schedule(1.0 + i * 0.001, i) for i in range(10)]
    cancelled: list[bool] = []
    seen_now: list[float] = []

    class Trap:
        def __del__(self) -> None:
            seen_now.append(w.now)
            cancelled.extend(w.cancel(h) for h in handles[3:6])

    advance = w.advance  # bind first: a bound method is itself a GC allocation
    old = gc.get_threshold()
    gc.collect()
    gc.disable()
    try:
        trap = Trap()
        trap.self = trap  # type: ignore[attr-defined]
        del trap
        gc.set_threshold(1)
        gc.enable()
        out = advance(2.0)
    finally:
        gc.set_threshold(*old)
        gc.enable()
    assert seen_now == [2.0], "the finalizer should have run inside advance(2.0)"
    assert cancelled == [True, True, True]
    assert out == [0, 1, 2, 6, 7, 8, 9]
    assert len(w) == 0 and w.advance(3.0) == []
