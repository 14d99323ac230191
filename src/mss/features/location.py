"""The location service: where each user's devices are (Kamailio's ``usrloc``).

Bindings live in memory for lookups and are written through to storage. Writes are *group
committed*: every binding change staged during one turn of the event loop is written in one
storage transaction, and only after that commit do the callers get their completion callback
(the registrar sends its 200 OK then). So a binding the server acknowledged is on disk — a
``kill -9`` right after the 200 loses nothing — while a burst of REGISTERs costs one commit,
not one per request.

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

    def __init__(self, storage: Storage, *, wall: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.wall = wall
        self._bindings: dict[str, list[BindingRecord]] = {}
        self._staged: dict[str, list[BindingRecord]] = {}
        self._waiters: list[Done] = []
        self._flush_scheduled = False
        self._flush_task: asyncio.Task[None] | None = None
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
        """Replace the binding set of ``aor``; ``done(error)`` runs after the commit."""
        new = list(bindings)
        if new:
            self._bindings[aor] = new
        else:
            self._bindings.pop(aor, None)
        self._staged[aor] = new
        self._waiters.append(done)
        if not self._flush_scheduled:
            # The task's first step runs on the loop's next turn, after every datagram of this
            # turn was handled: their changes go into the same commit.
            self._flush_scheduled = True
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

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
        return gone

    def drop(self, aor: str) -> None:
        """Forget an AOR in memory (its user was deleted; storage already removed the rows)."""
        self._bindings.pop(aor, None)

    async def _flush(self) -> None:
        staged, waiters = self._staged, self._waiters
        self._staged, self._waiters = {}, []
        self._flush_scheduled = False
        error: Exception | None = None
        try:
            await self.storage.bindings.apply(list(staged.items()))
            self.commits += 1
            self.committed_changes += len(staged)
        except Exception as e:  # storage failure: memory goes back to what is on disk
            log.exception("binding commit failed")
            error = e
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
