"""Garbage-collector pauses of the SIP core under a steady request rate, per collector setting.

    python -m benchmarks.gc_pauses [--rate 1500] [--seconds 120] [--ballast 50000]

Feeds ``rate * seconds`` distinct OPTIONS through :class:`mss.sip.core.SipCore` on the tests'
simulated clock (``tests/mss/test_core.py``'s ``ManualClock``, advanced 1/rate per request), so
completed transactions live their 32 s of Timer J and expire as in a server, without sockets,
sipp or the machine's scheduling noise. ``ballast`` objects stand for the users and bindings a
server loads at start-up (frozen, as ``mss serve`` does). For each collector setting, each in a
fresh child process: process CPU per request, and from ``gc.callbacks`` the number of collections
per generation and the longest pause. Settings compared: Python's defaults, the generation-0
thresholds 2,000 and 50,000, and 50,000 with ``gc.freeze()`` every simulated second (what
``mss serve`` does with ``transport.gc_freeze_interval = 1``). Bounded: one pass per setting.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "mss"), str(ROOT / "tests")]

SETTINGS: list[tuple[str, tuple[int, int, int], float]] = [
    ("Python's defaults", (700, 10, 10), 0.0),
    ("threshold 2,000", (2000, 10, 10), 0.0),
    ("threshold 50,000", (50000, 10, 10), 0.0),
    ("threshold 50,000 + freeze every second", (50000, 10, 10), 1.0),
]


def one(
    rate: int, seconds: float, ballast_n: int, threshold: tuple[int, int, int], freeze: float
) -> dict[str, object]:
    from test_core import Handler, ManualClock, Sent, request

    from fastsip.parser import parse_datagram
    from mss.sip.addressing import Source
    from mss.sip.core import SipCore

    clock, sent, handler = ManualClock(), Sent(), Handler()
    core = SipCore(sender=sent, clock=clock, handler=handler)  # type: ignore[arg-type]
    src = Source("udp", "127.0.0.1", 5061, None)
    ballast = [{"number": str(i), "bindings": [i]} for i in range(ballast_n)]
    n = int(rate * seconds)
    datagrams = [request("OPTIONS", i) for i in range(n)]
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started: dict[int, float] = {}

    def watch(phase: str, info: dict[str, int]) -> None:
        g = info["generation"]
        if phase == "start":
            started[g] = time.perf_counter()
        else:
            pauses[g].append(time.perf_counter() - started[g])

    gc.callbacks.append(watch)
    step = 1.0 / rate
    every = int(rate * freeze) if freeze > 0 else 0
    t0 = time.process_time()
    for i, data in enumerate(datagrams):
        core.on_message(parse_datagram(data), src)
        sent.out.clear()
        clock.advance(step)
        if every and i % every == 0:
            gc.freeze()
    cpu = time.process_time() - t0
    gc.callbacks.remove(watch)
    del ballast
    return {
        "cpu_us_per_request": round(cpu / n * 1e6, 1),
        "collections": [len(pauses[g]) for g in (0, 1, 2)],
        "longest_ms": [round(max(pauses[g], default=0.0) * 1000, 1) for g in (0, 1, 2)],
        "total_ms": round(sum(sum(p) for p in pauses.values()) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=int, default=1500, help="requests per simulated second")
    ap.add_argument("--seconds", type=float, default=120.0, help="simulated seconds")
    ap.add_argument("--ballast", type=int, default=50000, help="frozen start-up objects")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        threshold, freeze = json.loads(args.child)
        print(json.dumps(one(args.rate, args.seconds, args.ballast, tuple(threshold), freeze)))
        return 0
    print(
        f"{int(args.rate * args.seconds):,} OPTIONS through SipCore at {args.rate}/s of simulated "
        f"time, {args.ballast:,} frozen ballast objects\n"
    )
    print(
        "| collector | CPU µs/request | collections gen 0 / 1 / 2 | longest pause gen 0 / 1 / 2 (ms) | total pause ms |"
    )
    print("|---|---:|---|---|---:|")
    for name, threshold, freeze in SETTINGS:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.gc_pauses",
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
                "--ballast",
                str(args.ballast),
                "--child",
                json.dumps([threshold, freeze]),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        cols = " / ".join(str(c) for c in r["collections"])
        longest = " / ".join(str(x) for x in r["longest_ms"])
        print(f"| {name} | {r['cpu_us_per_request']} | {cols} | {longest} | {r['total_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
