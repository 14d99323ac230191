"""The location service: where each user's devices are (Kamailio's ``usrloc``).

Bindings live in memory for lookups and are written through to storage. Writes are *group
committed*: every binding change staged during one turn of the event loop is written in one
storage transaction, and only after that commit do the callers get their completion callback
(the registrar sends its 200 OK then). So a binding the server acknowledged is on disk — a
``kill -9`` right after the 200 loses nothing — while a burst of REGISTERs costs one commit,
not one per request.

*Write-back* (``[registrar] persist = "write-back"``, Kamailio's usrloc ``db_mode 2``): the
completion callback runs at once (the 200 goes out without waiting for storage), and every change
staged during ``write_back_interval`` is committed in one transaction. A burst costs one commit
per interval instead of one per loop turn; a crash loses at most one interval of changes, a clean
stop (:meth:`close`) none. A failed write-back commit is retried at the next interval (memory is
already what the phones were told, so it is kept). Operator removals (:meth:`remove`) always wait
for their commit.

Expiry: lookups ignore expired bindings; a periodic sweep (driven by the server clock) drops
them from memory and storage. Times in bindings are wall-clock epoch seconds so they survive a
restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from ..storage.base import BindingRecord, Storage

__all__ = ("LocationService",)

log = logging.getLogger("mss.location")

Done = Callable[[Exception | None], None]


class LocationService:
    """In-memory bindings per AOR, persisted with group commits."""

    def __init__(
        self,
        storage: Storage,
        *,
        wall: Callable[[], float] = time.time,
        write_back: float | None = None,
    ) -> None:
        """``write_back``: seconds between write-back commits; None commits before each reply."""
        if write_back is not None and write_back <= 0:
            raise ValueError("write_back must be > 0 seconds")
        self.storage = storage
        self.wall = wall
        self.write_back = write_back
        self._bindings: dict[str, list[BindingRecord]] = {}
        self._staged: dict[str, list[BindingRecord]] = {}
        self._waiters: list[Done] = []
        self._flush_scheduled = False
        self._flush_task: asyncio.Task[Exception | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.commits = 0
        self.committed_changes = 0
        #: called as ``on_expired(aor, live_bindings)`` when a sweep dropped expired bindings
        self.on_expired: Callable[[str, list[BindingRecord]], None] | None = None

    async def load(self) -> None:
        now = self.wall()
        out: dict[str, list[BindingRecord]] = {}
        for b in await self.storage.bindings.all():
            if b.expires_at > now:
                out.setdefault(b.aor, []).append(b)
        self._bindings = out

    # -- queries ----------------------------------------------------------------------------
    def lookup(self, aor: str, now: float | None = None) -> list[BindingRecord]:
        """Live bindings of an AOR, best first (highest q, then most recent)."""
        found = self._bindings.get(aor)
        if not found:
            return []
        t = self.wall() if now is None else now
        live = [b for b in found if b.expires_at > t]
        live.sort(key=lambda b: (-(b.q if b.q is not None else 1.0), -b.registered_at))
        return live

    def online(self, aor: str) -> bool:
        return bool(self.lookup(aor))

    def all(self) -> dict[str, list[BindingRecord]]:
        now = self.wall()
        return {aor: live for aor in sorted(self._bindings) if (live := self.lookup(aor, now))}

    def count(self) -> int:
        now = self.wall()
        return sum(1 for bs in self._bindings.values() for b in bs if b.expires_at > now)

    # -- changes ----------------------------------------------------------------------------
    def set(self, aor: str, bindings: Sequence[BindingRecord], done: Done) -> None:
        """Replace the binding set of ``aor``; ``done(error)`` runs after the commit.

        In write-back mode ``done(None)`` runs before this returns and the commit follows
        within ``write_back`` seconds.
        """
        new = list(bindings)
        if new:
            self._bindings[aor] = new
        else:
            self._bindings.pop(aor, None)
        self._staged[aor] = new
        if self.write_back is not None:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._timer = asyncio.get_running_loop().call_later(
                    self.write_back, self._start_flush
                )
            done(None)
            return
        self._waiters.append(done)
        if not self._flush_scheduled:
            # The task's first step runs on the loop's next turn, after every datagram of this
            # turn was handled: their changes go into the same commit.
            self._flush_scheduled = True
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    def _start_flush(self) -> None:
        self._timer = None
        if self._flush_task is not None and not self._flush_task.done():
            # the previous commit is still running: try again one interval later
            self._timer = asyncio.get_running_loop().call_later(
                self.write_back or 0.0, self._start_flush
            )
            return
        self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    @property
    def pending(self) -> int:
        """AORs changed in memory whose commit has not finished yet."""
        return len(self._staged)

    async def flush(self) -> None:
        """Commit every staged change now (write-back mode; a no-op when nothing is staged).

        Raises:
            Exception: the commit failed (the changes stay staged for the next attempt).
        """
        task = self._flush_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        if not self._staged:
            return
        self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        error = await asyncio.shield(self._flush_task)
        if error is not None:
            raise error

    async def close(self) -> None:
        """Commit what write-back still holds (a clean stop loses nothing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.flush()
        except Exception:
            log.exception("bindings not committed at stop: %d AORs", len(self._staged))

    async def remove(self, aor: str, contact: str | None = None) -> list[BindingRecord]:
        """Force-unregister: remove ``aor``'s bindings (or only the one for ``contact``).

        Waits for the storage commit.

        Returns:
            The live bindings that were removed (empty when there were none).

        Raises:
            Exception: the storage commit failed (memory is back to what storage holds).
        """
        live = self.lookup(aor)
        gone = [b for b in live if contact is None or b.contact == contact]
        if not gone:
            return []
        keep = [b for b in live if b not in gone]
        done: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

        def finished(error: Exception | None) -> None:
            if not done.done():
                done.set_result(error)

        self.set(aor, keep, finished)
        error = await done
        if error is not None:
            raise error
        if self.write_back is not None:
            await self.flush()  # an operator's removal is committed before it is reported
        return gone

    def drop(self, aor: str) -> None:
        """Forget an AOR in memory (its user was deleted; storage already removed the rows)."""
        self._bindings.pop(aor, None)

    async def _flush(self) -> Exception | None:
        staged, waiters = self._staged, self._waiters
        self._staged, self._waiters = {}, []
        self._flush_scheduled = False
        if self._timer is not None:  # an explicit flush() came before the interval's timer
            self._timer.cancel()
            self._timer = None
        error: Exception | None = None
        try:
            await self.storage.bindings.apply(list(staged.items()))
            self.commits += 1
            self.committed_changes += len(staged)
        except Exception as e:
            log.exception("binding commit failed")
            error = e
            if self.write_back is not None:
                # the phones were already answered: keep memory, retry the commit later
                # (changes staged meanwhile are newer and win)
                self._staged = {**staged, **self._staged}
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._timer = asyncio.get_running_loop().call_later(
                        self.write_back, self._start_flush
                    )
                return error
            # write-through: memory goes back to what is on disk
            for aor in staged:
                try:
                    rows = await self.storage.bindings.for_aor(aor)
                except Exception:
                    rows = []
                if rows:
                    self._bindings[aor] = list(rows)
                else:
                    self._bindings.pop(aor, None)
        for done in waiters:
            try:
                done(error)
            except Exception:
                log.exception("binding completion callback failed")
        return error

    async def sweep(self) -> int:
        """Drop expired bindings from memory and storage; returns how many rows storage purged."""
        now = self.wall()
        changed: list[tuple[str, list[BindingRecord]]] = []
        for aor in list(self._bindings):
            bindings = self._bindings[aor]
            live = [b for b in bindings if b.expires_at > now]
            if len(live) != len(bindings):
                changed.append((aor, live))
            if live:
                self._bindings[aor] = live
            else:
                del self._bindings[aor]
        if self.on_expired is not None:
            for aor, live in changed:
                try:
                    self.on_expired(aor, live)
                except Exception:
                    log.exception("binding expiry callback failed")
        return int(await self.storage.bindings.purge_expired(now))
