"""The server's single clock: a fastsip timer wheel driven by one ``loop.call_at``.

Every timer of the server (SIP transaction timers, registration expiries, idle connections,
bans) lives in one hierarchical timer wheel (O(1) schedule and cancel). The wheel is driven by a
single asyncio timer armed for the earliest pending deadline, re-armed only when that deadline
moves earlier, so 100,000 pending timers cost one asyncio handle, not 100,000.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from fastsip.timerwheel import TimerWheel

__all__ = ("Clock",)

log = logging.getLogger("mss.clock")


class Clock:
    """Monotonic time (``loop.time()``) and timers on a hierarchical wheel."""

    __slots__ = ("_armed_at", "_handle", "_loop", "_wheel", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, tick: float = 0.005) -> None:
        self._loop = loop
        self._wheel = TimerWheel(tick=tick, now=loop.time())
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        #: callbacks run so far (for metrics and tests)
        self.fired = 0

    def now(self) -> float:
        return self._loop.time()

    @property
    def tick(self) -> float:
        return float(self._wheel.tick)

    def __len__(self) -> int:
        return len(self._wheel)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        """Run ``callback(*args)`` after ``delay`` seconds; returns a handle for :meth:`cancel`."""
        return self.call_at(self._loop.time() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Any:
        handle = self._wheel.schedule(when, (callback, args))
        armed = self._armed_at
        if armed is None or when < armed:
            self._arm()
        return handle

    def cancel(self, handle: Any) -> bool:
        """Cancel a pending timer (no effect when it already ran). O(1)."""
        return bool(self._wheel.cancel(handle))

    def _arm(self) -> None:
        nd = self._wheel.next_deadline()
        if nd is None:
            return
        if self._armed_at is not None:
            if self._armed_at <= nd:
                return
            if self._handle is not None:
                self._handle.cancel()
        self._armed_at = nd
        self._handle = self._loop.call_at(nd, self._fire)

    def _fire(self) -> None:
        armed = self._armed_at or 0.0
        self._handle = None
        self._armed_at = None
        # asyncio may run a handle up to its clock resolution early: never pass a time before the
        # deadline we armed for, or the wheel would (correctly) fire nothing and we would spin.
        now = max(self._loop.time(), armed)
        for payload in self._wheel.advance(now):
            callback, args = cast("tuple[Callable[..., Any], tuple[Any, ...]]", payload)
            self.fired += 1
            try:
                callback(*args)
            except Exception:  # a broken callback must not stop every other timer
                log.exception("timer callback %r failed", callback)
        self._arm()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._armed_at = None
