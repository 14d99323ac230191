"""Ban table micro-benchmarks over both twins (pytest-benchmark).

Run: ``.venv/bin/pytest benchmarks/bench_bantable.py --benchmark-group-by=func``; the py and c
rows of each group give the speed-up. ``check`` is the gate in front of every datagram, so its
two outcomes (banned source: drop; unknown source: allow) are measured with 10 000 bans in the
table; ``record_failure`` runs with a clock advancing 1 s per call (steady state: ~60 failures
kept in the 60 s window).
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

BANNED = (10_000 + 5).to_bytes(4, "big")
UNKNOWN = bytes.fromhex("20010db8000000000000000000000001")


def _twin(which: str) -> ModuleType:
    try:
        return importlib.import_module(f"fastsip._bantable_{which}")
    except ImportError:  # pragma: no cover - extension not built
        pytest.skip(f"fastsip._bantable_{which} is not built")


@pytest.fixture(params=["py", "c"])
def table(request: pytest.FixtureRequest) -> Any:
    t = _twin(request.param).BanTable()
    for i in range(10_000):
        t.ban((10_000 + i).to_bytes(4, "big"), 1e12, 0.0)
    return t


def test_check_banned(benchmark: Callable[..., Any], table: Any) -> None:
    assert benchmark(table.check, BANNED, 1000.0) is False


def test_check_unknown(benchmark: Callable[..., Any], table: Any) -> None:
    assert benchmark(table.check, UNKNOWN, 1000.0) is True


def test_record_failure(benchmark: Callable[..., Any], table: Any) -> None:
    clock = itertools.count(1000.0, 1.0)
    ip = b"\xc0\x00\x02\x01"
    record = table.record_failure

    def step() -> int:
        return record(ip, next(clock))  # type: ignore[no-any-return]

    assert benchmark(step) >= 1
