"""Hierarchical hashed timer wheel: the pure-Python twin, and the specification of both twins.

fastsip is sans-IO, so the wheel has no clock: the caller passes ``now`` (seconds, a float on
any monotonic scale, e.g. ``loop.time()``) to the constructor and to :meth:`TimerWheel.advance`,
and gets the expired payloads back. It holds the SIP timers of RFC 3261 §17 (T1 = 500 ms
retransmissions, Timer B/F/H = 64*T1, Timer D = 32 s...) as well as registration expiries
(RFC 3261 §10.2.1, hours) and bans (days), so it must be cheap for millions of mostly-cancelled
timers and correct from milliseconds to years.

Firing rule (the contract; the Cython twin computes exactly the same floats)
----------------------------------------------------------------------------
Time is cut into ticks of ``tick`` seconds; the *grid point* of integer tick ``k`` is the float
``k * tick``. For a deadline ``d`` and a time ``now``::

    due(d)       = the smallest integer k with  k * tick >= d    (d rounded up to the grid)
    tick_of(now) = the largest integer k with   k * tick <= now

A timer with deadline ``d`` fires in the first ``advance(now)`` call such that

1. ``tick_of(max(now, wheel.now)) >= due(d)``, i.e. ``now >= due(d) * tick >= d``; or
2. ``d <= wheel.now`` when the timer was scheduled (a deadline in the past), whatever ``now``
   that call passes, even an equal or smaller one.

So a timer never fires before its deadline, and at most one tick after ``now`` passes it. The
comparisons are made on ``float(k) * tick`` (exact integer-to-float conversion, one rounded
product, no fused multiply-add), so no rounding can make a timer fire early, and the twins agree
to the bit. Each :meth:`~TimerWheel.advance` returns its payloads sorted by deadline, ties in
schedule order. ``now`` never moves backwards: an ``advance`` with a smaller ``now`` does not move
the clock (it only hands out timers scheduled in the past since the last call).

Layout
------
Ticks are counted from ``origin = tick_of(initial now)``; ``cur`` is the last tick processed,
relative to it (so every tick in the wheel is a non-negative int). A tick number is read as six
6-bit digits: level ``L`` (0..5) has 64 slots and slot ``s`` of level ``L`` holds timers whose
digit ``L`` is ``s``. A pending timer with due tick ``e > cur`` lives at the level of the highest
digit where ``e`` and ``cur`` differ (``L = msb(e ^ cur) // 6``, as in tokio's wheel), in slot
``digit_L(e)``. If they differ above bit 36 (2**36 ticks: 21.8 years at 10 ms, 19 hours at 1 µs)
the timer waits in the overflow list. Deadlines already past go to the ready list. Each level
keeps an occupancy bitmap, so finding the next occupied slot is a shift and a lowest-set-bit.

Invariants
----------
I1. Every timer in a level slot has ``due > cur`` and sits where the rule above puts it for the
    current ``cur``. Hence at level ``L`` only slots ``> digit_L(cur)`` are occupied, and the first
    occupied slot of the lowest occupied level holds the earliest timers.
I2. The occupancy bitmaps have a bit set for every occupied slot (a bit may be stale after a
    cancel; scans clear stale bits lazily).
I3. ``overflow_floor <= due`` of every overflow timer.
I4. The cached next due tick, when valid, is the minimum ``due`` over the levels and overflow, and
    is ``> cur``.
I5. Timers in the same slot are in schedule order among equal deadlines: equal deadlines have
    equal due ticks, hence always share a slot, and slots move as a whole, in order.
I6. ``len(wheel)`` counts the timers in the levels, the overflow and the ready list.

Advancing ``cur`` to ``target`` takes the next event, the block start ``t`` of the first occupied
slot of the lowest occupied level. If ``t > target`` then ``cur = target`` (no digit relation
changes, I1 holds). Otherwise ``cur = t`` and the slot empties: a level-0 slot fires whole; a
higher slot fires its timers due at ``t`` and cascades the rest to lower levels. Empty stretches
are skipped in one step, so advancing over an idle hour costs a few bitmap scans, not 360,000
tick steps. With the levels empty, the next event is the start of the 2**36-tick block holding
``overflow_floor``, where the overflow list is re-examined (once per 2**36 ticks at most).

Costs: ``schedule`` and ``cancel`` O(1); ``advance`` O(levels + fired + cascaded), each timer
cascading at most six times; ``next_deadline`` O(1) when cached or when the earliest timer is on
level 0 (within 64 ticks), else one walk of the slot holding it, cached until that timer goes.

This twin stores a slot as an insertion-ordered ``dict`` mapping handle to payload (O(1) delete
by key in pure Python); the Cython twin uses index-linked lists in a C slab. In both, a handle
holds no reference to its payload or wheel. Both expose the same public API.

Re-entrancy: like other pure-Python containers, this twin must not be re-entered from a
finalizer (``__del__``, weakref callback) that a garbage collection happens to run in the middle
of one of its own methods. The Cython twin allocates no Python object while its structure is in
flux and re-checks after the one allocation in ``advance``, so it is safe there. Both release a
cancelled payload last, and ``advance`` hands payloads out only once the wheel is consistent.
"""

from __future__ import annotations

import itertools
import math
from typing import Final, NoReturn, SupportsFloat, SupportsIndex, TypeAlias, final

__all__ = (
    "HORIZON_BITS",
    "LEVELS",
    "LEVEL_BITS",
    "MAX_TICKS",
    "SLOTS",
    "TimerHandle",
    "TimerWheel",
)

#: bits of tick number per level; each level has ``SLOTS`` slots.
LEVEL_BITS: Final = 6
SLOTS: Final = 1 << LEVEL_BITS
LEVELS: Final = 6
#: ticks beyond ``2**HORIZON_BITS`` of ``cur`` (differing above that bit) wait in the overflow list.
HORIZON_BITS: Final = LEVEL_BITS * LEVELS
#: ``|time / tick|`` must stay below this, so every tick number is exact as a float.
MAX_TICKS: Final = 2.0**52

_MASK: Final = SLOTS - 1
_NO_DUE: Final = -1  # the next-due cache is invalid (valid values are > cur >= 0)
_FAR: Final = 1 << 62  # overflow_floor when the overflow list is empty

_wheel_ids = itertools.count(1)

# Flat slot numbering: level L slot s is ``L * SLOTS + s``; then the ready and overflow lists.
_READY: Final = LEVELS * SLOTS
_OVERFLOW: Final = _READY + 1

#: one slot: pending handle -> its payload, in insertion (= schedule) order
_Slot: TypeAlias = "dict[TimerHandle, object]"


def _deadline_of(item: tuple[TimerHandle, object]) -> float:
    return item[0]._deadline


def _as_float(value: object, name: str) -> float:
    """Convert like a C ``double`` argument: real numbers yes, strings no."""
    if type(value) is float:
        return value
    if isinstance(value, (SupportsFloat, SupportsIndex)):
        return float(value)
    raise TypeError(f"{name} must be a real number, not {type(value).__name__}")


def _due_tick(deadline: float, tick: float) -> int:
    """The smallest integer ``k`` with ``k * tick >= deadline`` (absolute tick number)."""
    q = deadline / tick
    if not q < MAX_TICKS:
        raise ValueError(f"deadline {deadline!r} is too far ahead for tick {tick!r}")
    k = math.ceil(q)
    # The division rounds; settle on the exact grid comparison the contract states.
    while k * tick < deadline:
        k += 1
    while (k - 1) * tick >= deadline:
        k -= 1
    return k


def _tick_of(now: float, tick: float) -> int:
    """The largest integer ``k`` with ``k * tick <= now`` (absolute tick number)."""
    q = now / tick
    if not -MAX_TICKS < q < MAX_TICKS:
        raise ValueError(f"time {now!r} is out of range for tick {tick!r}")
    k = math.floor(q)
    while (k + 1) * tick <= now:
        k += 1
    while k * tick > now:
        k -= 1
    return k


@final
class TimerHandle:
    """A scheduled timer, returned by :meth:`TimerWheel.schedule` and passed to ``cancel``.

    Only the wheel creates handles. A handle holds no reference to its payload or its wheel
    (the wheel keeps the payload while the timer is pending), so keeping handles around keeps
    nothing else alive.
    """

    __slots__ = ("_deadline", "_due", "_owner", "_where")

    def __init__(self, deadline: float, due: int, owner: int, where: int) -> None:
        self._deadline = deadline
        self._due = due  # due tick relative to the wheel's origin
        self._owner = owner  # id of the wheel while pending, 0 once fired or cancelled
        self._where = where  # flat slot number while pending

    @property
    def deadline(self) -> float:
        """The deadline the timer was scheduled with, as a float."""
        return self._deadline

    def __repr__(self) -> str:
        return f"<TimerHandle deadline={self._deadline!r}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("cannot pickle or copy a TimerHandle")

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("TimerHandle cannot be subclassed")  # as the Cython twin (final)


@final
class TimerWheel:
    """A hierarchical hashed timer wheel driven by an explicit ``now`` (see the module docstring).

    Args:
        tick: the resolution in seconds (finite, > 0). Timers fire at most one tick late.
        now: the initial time; ``advance`` never moves it backwards.

    Raises:
        ValueError: ``tick`` is not finite and positive, or ``now`` is not finite or is out of
            range (``|now / tick| >= 2**52``).
        TypeError: an option is not a real number, or is passed positionally.
    """

    __slots__ = (
        "_count",
        "_cur",
        "_id",
        "_next_due",
        "_now",
        "_occupied",
        "_origin",
        "_overflow_floor",
        "_slots",
        "_tick",
    )

    def __init__(self, *, tick: float = 0.01, now: float = 0.0) -> None:
        tick = _as_float(tick, "tick")
        now = _as_float(now, "now")
        if not (math.isfinite(tick) and tick > 0.0):
            raise ValueError(f"tick must be finite and > 0, not {tick!r}")
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, not {now!r}")
        self._tick = tick
        self._origin = _tick_of(now, tick)
        self._now = now
        self._cur = 0
        # LEVELS * SLOTS level slots, then the ready and the overflow list (flat numbering).
        self._slots: list[_Slot] = [{} for _ in range(_OVERFLOW + 1)]
        self._occupied = [0] * LEVELS
        self._overflow_floor = _FAR
        self._next_due = _NO_DUE
        self._count = 0
        self._id = next(_wheel_ids)

    @property
    def now(self) -> float:
        """The latest ``now`` seen (constructor or ``advance``)."""
        return self._now

    @property
    def tick(self) -> float:
        """The tick resolution in seconds."""
        return self._tick

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<TimerWheel tick={self._tick!r} now={self._now!r} pending={self._count}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("cannot pickle or copy a TimerWheel")

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("TimerWheel cannot be subclassed")  # as the Cython twin (final)

    def schedule(self, deadline: float, payload: object) -> TimerHandle:
        """Schedule ``payload`` to come out of ``advance`` once ``deadline`` has passed.

        Args:
            deadline: absolute time, on the same scale as ``now``. A deadline ``<= now`` fires
                on the next ``advance``.
            payload: any object; ``advance`` returns this very object.

        Returns:
            A handle for :meth:`cancel`.

        Raises:
            ValueError: ``deadline`` is not finite, or is ``2**52`` ticks or more from zero.
            TypeError: ``deadline`` is not a real number.
        """
        d = _as_float(deadline, "deadline")
        if not math.isfinite(d):
            raise ValueError(f"deadline must be finite, not {d!r}")
        if d <= self._now:
            handle = TimerHandle(d, self._cur, self._id, _READY)
            self._slots[_READY][handle] = payload
        else:
            due = _due_tick(d, self._tick) - self._origin
            handle = TimerHandle(d, due, self._id, _READY)
            self._place(handle, payload)
            if self._next_due != _NO_DUE and due < self._next_due:
                self._next_due = due
        self._count += 1
        return handle

    def cancel(self, handle: TimerHandle) -> bool:
        """Cancel a pending timer in O(1).

        Args:
            handle: a handle returned by :meth:`schedule`.

        Returns:
            True if the timer was pending in this wheel; False if it already fired, was already
            cancelled, or belongs to another wheel.

        Raises:
            TypeError: ``handle`` is not a handle of this twin.
        """
        if not isinstance(handle, TimerHandle):
            raise TypeError(f"expected a TimerHandle, not {type(handle).__name__}")
        if handle._owner != self._id:
            return False
        payload = self._slots[handle._where].pop(handle)
        handle._owner = 0
        self._count -= 1
        if handle._due == self._next_due:
            self._next_due = _NO_DUE
        del payload  # last: dropping it may run arbitrary code
        return True

    def advance(self, now: float) -> list[object]:
        """Move the clock to ``now`` and return the payloads of the timers that fired.

        Args:
            now: the current time. A value below :attr:`now` leaves the clock where it is.

        Returns:
            The payloads, in deadline order, ties in schedule order (see the firing rule).

        Raises:
            ValueError: ``now`` is not finite, or is out of range for the tick.
            TypeError: ``now`` is not a real number.
        """
        n = _as_float(now, "now")
        if not math.isfinite(n):
            raise ValueError(f"now must be finite, not {n!r}")
        fired: list[tuple[TimerHandle, object]] = []
        if n > self._now:
            target = _tick_of(n, self._tick) - self._origin
            self._now = n
            if target > self._cur:
                self._run(target, fired)
                if self._next_due != _NO_DUE and self._next_due <= self._cur:
                    self._next_due = _NO_DUE
        ready = self._slots[_READY]
        if ready:
            # After the wheel's timers: among equal deadlines those were scheduled first.
            fired.extend(ready.items())
            self._slots[_READY] = {}
        if not fired:
            return []
        fired.sort(key=_deadline_of)  # stable: ties stay in schedule order (I5)
        self._count -= len(fired)
        for handle, _ in fired:
            handle._owner = 0
        return [payload for _, payload in fired]

    def next_deadline(self) -> float | None:
        """When the next timer becomes due, for a driver that sleeps until then.

        Returns:
            None when nothing is pending; :attr:`now` when a timer scheduled in the past is
            waiting; otherwise ``due(d) * tick`` for the earliest pending deadline ``d``: the
            deadline rounded up to the grid, the smallest grid time at which ``advance`` fires
            it (so ``advance(next_deadline())`` returns at least one payload).
        """
        if self._slots[_READY]:
            return self._now
        if not self._count:
            return None
        due = self._next_due
        if due == _NO_DUE:
            due = self._next_due = self._earliest_due()
        return float(self._origin + due) * self._tick

    # -- internals ---------------------------------------------------------------------------

    def _place(self, handle: TimerHandle, payload: object) -> None:
        """File a timer with ``due > cur`` by the placement rule (I1)."""
        due = handle._due
        diff = due ^ self._cur
        if diff >> HORIZON_BITS:
            where = _OVERFLOW
            if due < self._overflow_floor:
                self._overflow_floor = due
        else:
            level = (diff.bit_length() - 1) // LEVEL_BITS
            index = (due >> (LEVEL_BITS * level)) & _MASK
            where = level * SLOTS + index
            self._occupied[level] |= 1 << index
        self._slots[where][handle] = payload
        handle._where = where

    def _next_event(self) -> int:
        """The flat number of the first occupied slot of the lowest occupied level, or -1."""
        cur = self._cur
        occupied = self._occupied
        for level in range(LEVELS):
            digit = (cur >> (LEVEL_BITS * level)) & _MASK
            bits = occupied[level] >> (digit + 1)
            while bits:
                low = bits & -bits
                index = digit + low.bit_length()
                if self._slots[level * SLOTS + index]:
                    return level * SLOTS + index
                occupied[level] &= ~(1 << index)  # stale bit (I2)
                bits ^= low
        return -1

    def _run(self, target: int, fired: list[tuple[TimerHandle, object]]) -> None:
        """Process events up to tick ``target`` (> cur), appending what fires in tick order."""
        slots = self._slots
        while True:
            where = self._next_event()
            if where >= 0:
                level, index = divmod(where, SLOTS)
                shift = LEVEL_BITS * level
                block = shift + LEVEL_BITS
                t = ((self._cur >> block) << block) | (index << shift)
                if t > target:
                    break
                self._cur = t
                self._occupied[level] &= ~(1 << index)
            elif slots[_OVERFLOW]:
                t = max(
                    ((self._cur >> HORIZON_BITS) + 1) << HORIZON_BITS,
                    (self._overflow_floor >> HORIZON_BITS) << HORIZON_BITS,
                )
                if t > target:
                    break
                self._cur = t
                self._overflow_floor = _FAR
                where = _OVERFLOW
            else:
                break
            entries = slots[where]
            slots[where] = {}  # detached: re-examined overflow timers may go back to overflow
            if where < SLOTS:
                fired.extend(entries.items())  # a level-0 slot is one tick: all due at t
                continue
            place = self._place
            for item in entries.items():
                if item[0]._due == t:
                    fired.append(item)
                else:
                    place(*item)  # cascade to a lower level (or back to overflow)
        self._cur = target

    def _earliest_due(self) -> int:
        """The minimum due tick over the levels and the overflow (count > 0, ready empty)."""
        where = self._next_event()
        if 0 <= where < SLOTS:
            return ((self._cur >> LEVEL_BITS) << LEVEL_BITS) | where
        due = min(handle._due for handle in self._slots[where if where >= 0 else _OVERFLOW])
        if where < 0:
            self._overflow_floor = due
        return due
