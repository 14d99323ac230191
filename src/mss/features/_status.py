"""Publishing live per-entity states to the key-value store (lines, trunks).

A running server keeps the registration state of each external line and the up/down state of each
trunk in memory; the CLI runs in another process and reads what the server published under
``prefix + id``. Changes are coalesced: one task writes every id marked since it started, and a
missing state deletes the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..storage.base import Storage

__all__ = ("StatusPublisher", "read_statuses")


class _Status(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class StatusPublisher:
    """Writes ``current(id).as_dict()`` as JSON under ``prefix + id`` for each marked id."""

    def __init__(
        self,
        storage: Storage,
        prefix: str,
        what: str,
        current: Callable[[str], _Status | None],
        log: logging.Logger,
    ) -> None:
        self.storage = storage
        self.log = log
        self.prefix = prefix
        self.what = what  # "line" / "trunk", for the log
        self.current = current
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def mark(self, key: str) -> None:
        """Publish ``key``'s state soon (no-op outside a running loop until :meth:`stop`)."""
        self._dirty.add(key)
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # coalesce the changes of one callback
        while self._dirty:
            key = self._dirty.pop()
            st = self.current(key)
            try:
                if st is None:
                    await self.storage.kv.delete(self.prefix + key)
                else:
                    await self.storage.kv.set(self.prefix + key, json.dumps(st.as_dict()))
            except Exception:
                self.log.exception("cannot publish the state of %s %s", self.what, key)

    async def stop(self) -> None:
        """Write the last states out."""
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task
        if self._dirty:
            with contextlib.suppress(Exception):
                await self._flush()


async def read_statuses(
    storage: Storage, prefix: str, ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The states a running server published for these ids (unreadable ones left out)."""
    out: dict[str, dict[str, Any]] = {}
    for key in ids:
        raw = await storage.kv.get(prefix + key)
        if raw:
            with contextlib.suppress(ValueError):
                out[key] = json.loads(raw)
    return out
