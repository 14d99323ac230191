"""Call detail records: one record per call attempt, written when the call ends.

Theory of operation
-------------------
The B2BUA fills a :class:`CallLog` as the call progresses (setup, first ring, answer, release,
final status, release cause, who hung up) and hands it to :class:`CdrService` twice:

* :meth:`CdrService.opened` when the call is set up: the record is stored with
  ``result="interrupted"`` and no ``end_at`` — the "call started" marker;
* :meth:`CdrService.closed` when it ends: the same id is rewritten with the real result.

So a call cut by ``kill -9`` is not lost silently: its marker stays, and at the next start
:meth:`CdrService.start` closes every marker left open (``end_at`` = the restart time, reason
``"server stopped during the call"``, hangup ``"system"``). The scan is bounded: the key
``cdr.scan_from`` in the key-value store remembers when the previous run started, and only
records set up after it (minus a margin) are read. A clean stop closes the calls still running
the same way.

Writes never block call handling: records go through a queue drained by one writer task, in
order, and two writes of one id still queued are coalesced into the last one (a short call's
marker and final record cost one write). The writer waits :data:`WRITE_WINDOW` seconds after a
record is queued, then stores everything queued in one transaction
(:meth:`~mss.storage.base.CdrRepo.put_many`): at a few hundred calls per second that is a few
commits per second instead of two or three per call (an SQLite commit costs about 250 µs of the
loop thread). A batch that cannot be stored is retried one record at a time, so one bad record
does not take the others with it. :meth:`CdrService.flush` (a clean stop) does not wait for the
window; ``kill -9`` can lose the records of the last window, not the markers written before it.

Daily files (miniSIPServer writes one CSV per day in a ``cdr`` folder): :func:`day_bounds` and
:func:`write_csv` serve ``mss cdr export --date YYYY-MM-DD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as _dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import IO, Any

from ..storage.base import CdrRecord, CdrRepo, KeyValue

__all__ = ("CSV_COLUMNS", "CallLog", "CdrService", "day_bounds", "write_csv")

log = logging.getLogger("mss.cdr")

SCAN_KEY = "cdr.scan_from"
#: seconds subtracted from the start time stored in ``cdr.scan_from`` (wall-clock steps)
SCAN_MARGIN = 300.0
#: seconds the writer lets records gather before one transaction stores them all
WRITE_WINDOW = 0.1
_PAGE = 1000
#: a queued record: :class:`CdrRecord`'s fields in order (see :meth:`CallLog.values`)
_Values = tuple[Any, ...]


class CallLog:
    """The record of one call being built (mutable; :meth:`record` makes the stored value)."""

    __slots__ = (
        "answer_at",
        "call_id",
        "callee",
        "callee_addr",
        "caller",
        "caller_addr",
        "cause",
        "dialed",
        "direction",
        "end_at",
        "extra",
        "hangup",
        "id",
        "reason",
        "result",
        "ring_at",
        "route",
        "setup_at",
        "status",
    )

    def __init__(
        self,
        id: str,
        caller: str,
        dialed: str,
        setup_at: float,
        *,
        call_id: str = "",
        caller_addr: str = "",
    ) -> None:
        self.id = id
        self.caller = caller
        self.dialed = dialed
        self.setup_at = setup_at
        self.call_id = call_id
        self.caller_addr = caller_addr
        self.callee = ""
        self.callee_addr = ""
        self.direction = "internal"
        self.route = ""
        self.ring_at: float | None = None
        self.answer_at: float | None = None
        self.end_at: float | None = None
        self.status: int | None = None
        self.cause: int | None = None
        self.reason = ""
        self.hangup = ""
        self.result = "interrupted"
        self.extra: dict[str, object] = {}

    @property
    def duration(self) -> float:
        if self.answer_at is None or self.end_at is None:
            return 0.0
        return max(0.0, round(self.end_at - self.answer_at, 3))

    def record(self) -> CdrRecord:
        return CdrRecord(*self.values())

    def values(self) -> _Values:
        """The record's fields in :class:`CdrRecord` order (``CdrRecord(*values)``).

        A plain tuple is what :class:`CdrService` queues: most queued states are coalesced
        into a later one before the writer runs, so the frozen dataclass (20 guarded
        attribute sets) is only built for the state that is written.
        """
        answer_at = self.answer_at
        end_at = self.end_at
        return (
            self.id,
            self.caller,
            self.dialed,
            self.setup_at,
            self.callee,
            self.call_id,
            self.caller_addr,
            self.callee_addr,
            self.direction,
            self.route,
            self.ring_at,
            answer_at,
            end_at,
            # as the duration property
            0.0 if answer_at is None or end_at is None else max(0.0, round(end_at - answer_at, 3)),
            self.status,
            self.cause,
            self.reason,
            self.hangup,
            self.result,
            dict(self.extra),
        )


class CdrService:
    """Writes call records through a queue; closes the ones a crash left open."""

    def __init__(
        self,
        repo: CdrRepo,
        kv: KeyValue,
        *,
        wall: Callable[[], float] = time.time,
        window: float = WRITE_WINDOW,
    ) -> None:
        self.repo = repo
        self.kv = kv
        self.wall = wall
        #: seconds the writer waits for more records before a write (0: at the next loop turn)
        self.window = window
        self._pending: dict[str, _Values] = {}
        self._wake: asyncio.Event | None = None
        #: set by flush(): the writer stops waiting for the window
        self._urgent: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self.stats = {"written": 0, "coalesced": 0, "errors": 0, "interrupted_closed": 0}

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> int:
        """Close the records a previous run left open, then start the writer.

        Returns:
            How many open records were closed as interrupted.
        """
        now = self.wall()
        closed = await self.close_interrupted(now)
        await self.kv.set(SCAN_KEY, repr(now))
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.ensure_future(self._writer())
        if closed:
            log.warning("closed %d call records left open by a previous run as interrupted", closed)
        return closed

    async def close_interrupted(self, now: float) -> int:
        """Rewrite every open marker since the last start as an interrupted call."""
        raw = await self.kv.get(SCAN_KEY)
        since: float | None = None
        if raw:
            try:
                since = float(raw) - SCAN_MARGIN
            except ValueError:
                since = None
        closed = 0
        offset = 0
        while True:
            rows = await self.repo.query(since=since, limit=_PAGE, offset=offset)
            for r in rows:
                if r.end_at is None and r.result == "interrupted":
                    await self.repo.put(
                        replace(
                            r,
                            end_at=max(now, r.setup_at),
                            duration=0.0,
                            hangup="system",
                            reason="server stopped during the call",
                        )
                    )
                    closed += 1
            if len(rows) < _PAGE:
                break
            offset += _PAGE
        self.stats["interrupted_closed"] += closed
        return closed

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def flush(self) -> None:
        """Wait until every queued record is written (tests, shutdown)."""
        if self._task is None or self._task.done():
            await self._write_pending()
            return
        assert self._wake is not None and self._idle is not None and self._urgent is not None
        while self._pending or not self._idle.is_set():
            self._wake.set()
            self._urgent.set()
            await asyncio.sleep(0)
            await self._idle.wait()

    # -- the B2BUA's calls ------------------------------------------------------------------
    def opened(self, call: CallLog) -> None:
        """Store the "call started" marker (result ``interrupted``, no end time)."""
        self._queue(call.values())

    def closed(self, call: CallLog) -> None:
        """Store the final record of a call."""
        if call.end_at is None:
            call.end_at = self.wall()
        self._queue(call.values())

    def _queue(self, values: _Values) -> None:
        # the record is built when written (_write_pending): a coalesced state never is
        key = values[0]
        pending = self._pending
        if key in pending:
            self.stats["coalesced"] += 1
        pending[key] = values
        if self._wake is not None:
            self._wake.set()

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            records = [CdrRecord(*values) for values in batch.values()]
            if len(records) > 1:
                try:
                    await self.repo.put_many(records)
                    self.stats["written"] += len(records)
                    continue
                except Exception as exc:  # find the bad record(s): one write each
                    log.debug("writing %d call records at once failed: %r", len(records), exc)
            for record in records:
                try:
                    await self.repo.put(record)
                    self.stats["written"] += 1
                except Exception:
                    self.stats["errors"] += 1
                    log.exception("cannot store call record %s", record.id)

    async def _writer(self) -> None:
        assert self._wake is not None and self._idle is not None and self._urgent is not None
        urgent = self._urgent
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue  # written by the last round (flush wakes the writer too)
            self._idle.clear()
            try:
                if self.window > 0 and not urgent.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(urgent.wait(), self.window)
                urgent.clear()
                await self._write_pending()
            finally:
                self._idle.set()


# --------------------------------------------------------------------------------------------
# daily CSV files
# --------------------------------------------------------------------------------------------
CSV_COLUMNS = (
    "id",
    "setup",
    "ring",
    "answer",
    "end",
    "duration",
    "caller",
    "dialed",
    "callee",
    "caller_addr",
    "callee_addr",
    "direction",
    "route",
    "status",
    "cause",
    "reason",
    "hangup",
    "result",
    "call_id",
)


def day_bounds(day: str) -> tuple[float, float]:
    """Epoch seconds of local midnight of ``day`` (``YYYY-MM-DD``) and of the next midnight.

    Raises:
        ValueError: not a ``YYYY-MM-DD`` date.
    """
    d = _dt.date.fromisoformat(day)
    start = _dt.datetime(d.year, d.month, d.day).astimezone()
    end = (_dt.datetime(d.year, d.month, d.day) + _dt.timedelta(days=1)).astimezone()
    return start.timestamp(), end.timestamp()


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def csv_row(r: CdrRecord) -> list[Any]:
    return [
        r.id,
        _when(r.setup_at),
        _when(r.ring_at),
        _when(r.answer_at),
        _when(r.end_at),
        f"{r.duration:.3f}",
        r.caller,
        r.dialed,
        r.callee,
        r.caller_addr,
        r.callee_addr,
        r.direction,
        r.route,
        "" if r.status is None else r.status,
        "" if r.cause is None else r.cause,
        r.reason,
        r.hangup,
        r.result,
        r.call_id,
    ]


def write_csv(records: Iterable[CdrRecord], out: IO[str]) -> int:
    """Write a header line and one line per record; returns the number of records."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    n = 0
    for r in records:
        w.writerow(csv_row(r))
        n += 1
    return n
