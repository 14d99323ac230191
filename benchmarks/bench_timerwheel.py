"""pytest-benchmark micro-benchmarks of the timer wheel twins and their peers, in one run.

    pytest benchmarks/bench_timerwheel.py                       # both twins, heapq, asyncio
    pytest benchmarks/bench_timerwheel.py --benchmark-autosave  # save a run for comparison

Not part of the test run (``benchmarks/`` is outside ``testpaths``). The workloads and the peers
(``HeapqTimers``, asyncio ``call_later``) are those of ``benchmarks/timerwheel_table.py``, which
prints the summary table with the issue's targets.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.timerwheel_table import Impl, implementations, workload

IMPLS = implementations()
FIRING = [key for key, impl in IMPLS.items() if impl.fire is not None]
DEADLINES = workload(20_000, seed=1)  # SIP transaction timers: 0.5 s to 32 s
BACKGROUND = workload(10_000, seed=2, high=64.0)  # already pending
ROUNDS = 30


def _run_on_filled(benchmark: Any, impl: Impl, fn: Any) -> None:
    """Benchmark ``fn(obj, DEADLINES)`` on a structure holding the background timers."""
    if impl.persistent:
        obj = impl.new()
        handles = impl.keep(obj, BACKGROUND)
        try:
            benchmark.pedantic(fn, args=(obj, DEADLINES), rounds=ROUNDS, warmup_rounds=1)
        finally:
            del handles
            impl.close(obj)
        return
    made: list[Any] = []  # an event loop must be fresh per round (see timerwheel_table)

    def setup() -> tuple[tuple[Any, list[float]], dict[str, Any]]:
        while made:
            impl.close(made.pop())
        obj = impl.new()
        made.append(obj)
        impl.keep(obj, BACKGROUND)
        return (obj, DEADLINES), {}

    try:
        benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    finally:
        while made:
            impl.close(made.pop())


@pytest.mark.parametrize("impl", list(IMPLS))
def test_schedule_cancel_batch(benchmark: Any, impl: str) -> None:
    benchmark.group = "20k schedule, then 20k cancel"
    _run_on_filled(benchmark, IMPLS[impl], IMPLS[impl].batch)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_schedule_cancel_immediate(benchmark: Any, impl: str) -> None:
    benchmark.group = "20k x (schedule, cancel)"
    _run_on_filled(benchmark, IMPLS[impl], IMPLS[impl].immediate)


@pytest.mark.parametrize("impl", FIRING)
def test_schedule_fire(benchmark: Any, impl: str) -> None:
    benchmark.group = "20k schedule, then advance every 10 ms until all fired"
    spec = IMPLS[impl]
    assert spec.fire is not None
    fire = spec.fire

    def run() -> int:
        obj = spec.new()
        try:
            return fire(obj, DEADLINES)
        finally:
            spec.close(obj)

    fired = benchmark.pedantic(run, rounds=10, warmup_rounds=1)
    assert fired == len(DEADLINES)


@pytest.mark.parametrize("impl", [key for key in ("c", "py") if key in IMPLS])
def test_next_deadline_and_idle_advance(benchmark: Any, impl: str) -> None:
    """The driver's loop when idle: next_deadline() then a long jump with nothing due."""
    benchmark.group = "idle driver step (next_deadline + advance 1 s)"
    spec = IMPLS[impl]
    wheel = spec.new()
    for d in workload(10_000, seed=3, low=1e6, high=2e6):
        wheel.schedule(d, None)
    state = {"now": 0.0}

    def step() -> None:
        wheel.next_deadline()
        state["now"] += 1.0
        wheel.advance(state["now"])

    benchmark(step)
