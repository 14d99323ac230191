"""``mss serve``'s garbage-collector keeper: periodic gc.freeze() and the full collection that
still finds reference cycles among frozen objects."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from mss.app import GcKeeper


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_keeper_freezes_what_survived_each_interval() -> None:
    async def main() -> GcKeeper:
        keeper = GcKeeper(freeze_interval=0.05, full_interval=0)
        task = asyncio.ensure_future(keeper.run())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return keeper

    gc.unfreeze()
    kept = [Node() for _ in range(100)]  # alive across the intervals
    keeper = asyncio.run(main())
    assert keeper.freezes >= 2
    assert gc.get_freeze_count() >= len(kept)
    assert keeper.full_collections == 0


def test_full_collection_reclaims_a_frozen_cycle_and_refcounting_still_frees() -> None:
    gc.unfreeze()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle
    cycle = weakref.ref(a)
    plain = Node()
    gone = weakref.ref(plain)
    gc.freeze()  # both now in the permanent generation
    del plain
    assert gone() is None  # frozen objects still die by reference counting
    del a, b
    gc.collect()
    assert cycle() is not None  # a frozen cycle is not collected...
    keeper = GcKeeper(freeze_interval=1.0, full_interval=600)
    assert keeper.full_collection() >= 2  # ...until the keeper's full collection
    assert cycle() is None
    assert keeper.full_collections == 1 and keeper.last_pause >= 0
    assert gc.get_freeze_count() > 0  # and what is alive is frozen again


def test_full_collection_runs_on_its_interval() -> None:
    async def main() -> GcKeeper:
        keeper = GcKeeper(freeze_interval=0.05, full_interval=0.1)
        task = asyncio.ensure_future(keeper.run())
        for _ in range(200):  # bounded: at most 10 s on a loaded machine
            if keeper.full_collections >= 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return keeper

    keeper = asyncio.run(main())
    assert keeper.full_collections >= 2
    assert keeper.freezes > keeper.full_collections


def test_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="freeze_interval"):
        GcKeeper(freeze_interval=0, full_interval=1)
