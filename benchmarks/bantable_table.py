"""Print a markdown table of ban-table throughput, pure vs Cython twin, with machine info.

Run: ``.venv/bin/python benchmarks/bantable_table.py`` (a few seconds). Each cell is the median
of ROUNDS rounds of ``timeit`` over a pre-bound method (``chk = table.check``); rounds alternate
between the twins so that load on a shared machine hits both alike. The numbers include one
Python-level call and the ``timeit`` loop (both measured as a floor below the table); a Cython
caller that ``cimport``-s the table (``check_c``) skips the Python call entirely.
"""

from __future__ import annotations

import importlib
import itertools
import os
import platform
import statistics
import sys
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

ROUNDS = 15
CALLS = 100_000  # operations per round
BANS = 10_000
BANNED = (10_000 + 5).to_bytes(4, "big")
UNKNOWN = bytes.fromhex("20010db8000000000000000000000001")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def twin(which: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"fastsip._bantable_{which}")
    except ImportError:
        return None


def table_for(mod: ModuleType) -> Any:
    t = mod.BanTable()
    for i in range(BANS):
        t.ban((10_000 + i).to_bytes(4, "big"), 1e12, 0.0)
    return t


def cases(mod: ModuleType) -> dict[str, tuple[timeit.Timer, int]]:
    """operation -> (timer, operations per timer run)."""
    t = table_for(mod)
    env: dict[str, Any] = {"chk": t.check, "b": BANNED, "u": UNKNOWN}
    # record_failure round-robin over 1000 IPs, clock +1 s per pass: steady state keeps ~60
    # failures per IP in the 60 s window (one prune + one append per call), no eviction.
    t2 = mod.BanTable(max_entries=1_000_000)
    ips = [(0x0A000000 + i).to_bytes(4, "big") for i in range(1000)]
    env2: dict[str, Any] = {"rf": t2.record_failure, "ips": ips, "clock": itertools.count(0.0)}
    return {
        "check (banned source: drop)": (timeit.Timer("chk(b, 1000.0)", globals=env), 1),
        "check (unknown source: allow)": (timeit.Timer("chk(u, 1000.0)", globals=env), 1),
        "record_failure (1000 IPs, clock +1 s per pass)": (
            timeit.Timer("n = next(clock)\nfor ip in ips: rf(ip, n)", globals=env2),
            len(ips),
        ),
    }


def measure(mods: dict[str, ModuleType]) -> dict[str, dict[str, float]]:
    """operation -> twin -> median ops/s. Rounds alternate between the twins so that load
    changes on a shared machine hit both alike."""
    per_twin = {which: cases(mod) for which, mod in mods.items()}
    names = list(next(iter(per_twin.values())))
    out: dict[str, dict[str, float]] = {}
    for name in names:
        samples: dict[str, list[float]] = {which: [] for which in mods}
        for _ in range(ROUNDS):
            for which in mods:
                timer, ops = per_twin[which][name]
                number = max(1, CALLS // ops)
                samples[which].append(number * ops / timer.timeit(number))
        out[name] = {which: statistics.median(v) for which, v in samples.items()}
    return out


def floor_ns(stmt: str, env: dict[str, Any]) -> float:
    timer = timeit.Timer(stmt, globals=env)
    return 1e9 * statistics.median(timer.repeat(repeat=ROUNDS, number=CALLS)) / CALLS


def main() -> int:
    mods = {which: mod for which in ("py", "c") if (mod := twin(which)) is not None}
    if "py" not in mods:
        print("fastsip is not importable; run from the repository venv", file=sys.stderr)
        return 1
    rows = measure(mods)
    call = floor_ns("f(b, 1.0)", {"f": {}.get, "b": BANNED})
    loop = floor_ns("pass", {})

    print(f"## fastsip ban table: pure vs Cython twin (median of {ROUNDS} interleaved rounds)\n")
    print("| operation | py ops/s | c ops/s | py ns/op | c ns/op | c/py |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rates in rows.items():
        r_py = rates["py"]
        r_c = rates.get("c")
        if r_c is None:
            print(f"| {name} | {r_py:,.0f} | n/a | {1e9 / r_py:.0f} | n/a | n/a |")
        else:
            print(
                f"| {name} | {r_py:,.0f} | {r_c:,.0f} | {1e9 / r_py:.0f} | {1e9 / r_c:.0f}"
                f" | {r_c / r_py:.1f}x |"
            )
    print(
        f"\nFloor (same timeit loop): a `dict.get(ip, x)` bound-method call {call:.0f} ns, "
        f"the empty loop {loop:.1f} ns. {BANS:,} active bans in the table."
    )
    print("\n| machine | |")
    print("|---|---|")
    print(f"| platform | {platform.platform()} |")
    print(f"| CPU | {cpu_model()} ({os.cpu_count()} logical CPUs) |")
    print(f"| python | {platform.python_implementation()} {platform.python_version()} |")
    print(f"| Cython twin | {'built' if 'c' in mods else 'not built'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
