"""Server CPU per dropped datagram, in process: the UDP receive paths side by side (issue 6).

Run: ``.venv/bin/python benchmarks/udp_receive.py`` (about a minute; ``--duration``,
``--rate``, ``--rounds``). ``benchmarks/flood.py`` gives the end-to-end figure with ``mss serve``
and sipp; this one isolates the receive path, so the options can be compared in one run:

* ``asyncio datagram transport``: ``loop.create_datagram_endpoint`` with a protocol whose
  ``datagram_received`` asks the gate first (the path mss used before: one callback, one
  ``bytes`` and one address tuple per datagram);
* ``TransportLayer, pure receiver``: :class:`mss.transport.layer.UdpListener` (``add_reader``,
  batches, polling under load) reading with ``recvfrom_into`` (:mod:`mss.transport._rx_py`);
* ``TransportLayer, recvmmsg receiver``: the same reading with ``recvmmsg``
  (:mod:`mss.transport._rx_c`).

Each on stock asyncio and on uvloop. The gate is the real one (``SecurityPolicy.allow``, Cython
ban table, source banned). A sender process (``benchmarks/flood.py --sender``, from 127.0.0.66,
paced in 1 ms slices) floods at ``--rate`` for ``--duration`` s; the figure is this process's
CPU time (``getrusage``, minus its idle rate) over the datagrams the gate dropped. Median of
``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLOOD_SOURCE = "127.0.0.66"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _OldPath(asyncio.DatagramProtocol):
    """The receive path before issue 6's batching: asyncio calls this once per datagram."""

    def __init__(self, gate: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.gate = gate
        self.loop = loop
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.gate.allow(addr[0], self.loop.time()):
            self.dropped += 1
            return


async def _round(path: str, rate: float, duration: float) -> float:
    from fastsip.bantable import pack_ip
    from mss.config import SecurityConfig
    from mss.features.security import SecurityPolicy
    from mss.transport import Clock, TransportLayer, _rx_py, layer

    loop = asyncio.get_running_loop()
    policy = SecurityPolicy(SecurityConfig(), summary_interval=1.0)
    policy.table.ban(pack_ip(FLOOD_SOURCE), 1e12, 0.0)
    old: _OldPath | None = None
    tl: TransportLayer | None = None
    transport: Any = None
    saved = layer.Receiver
    if path == "asyncio":
        transport, old = await loop.create_datagram_endpoint(
            lambda: _OldPath(policy, loop), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
    else:
        if path == "py":
            layer.Receiver = _rx_py.Receiver  # type: ignore[misc]
        tl = TransportLayer(listen=[("udp", "127.0.0.1", 0)], clock=Clock(loop), gate=policy)
        await tl.start()
        port = tl.listeners[0].port
    try:
        await asyncio.sleep(0.3)
        c0, t0 = _cpu(), time.perf_counter()
        await asyncio.sleep(1.0)
        idle = (_cpu() - c0) / (time.perf_counter() - t0)
        c0, t0 = _cpu(), time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "benchmarks" / "flood.py"),
            "--sender",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            stdout=subprocess.PIPE,
        )
        await asyncio.wait_for(proc.communicate(), duration + 30)
        await asyncio.sleep(0.05)
        used = _cpu() - c0 - idle * (time.perf_counter() - t0)
        dropped = old.dropped if old is not None else tl.stats.dropped_banned  # type: ignore[union-attr]
        return 1e6 * used / max(1, dropped)
    finally:
        layer.Receiver = saved  # type: ignore[misc]
        if transport is not None:
            transport.close()
        if tl is not None:
            await tl.stop()


def _run(loop_name: str, path: str, rate: float, duration: float) -> float:
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_round(path, rate, duration))
    finally:
        loop.close()


PATHS = {
    "asyncio": "asyncio datagram transport (before)",
    "py": "TransportLayer, pure receiver (recvfrom_into)",
    "c": "TransportLayer, recvmmsg receiver (Cython)",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of flood per round")
    ap.add_argument("--rate", type=float, default=25000, help="datagrams/s (default 25000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per cell (median)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    from benchmarks.machine import describe
    from mss.transport import rx

    if not rx.USING_EXTENSION:
        print("mss.transport._rx_c is not built: its rows show the pure receiver", file=sys.stderr)
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):  # rounds interleaved, so a busy spell hits every cell
        for path in PATHS:
            for loop_name in ("asyncio", "uvloop"):
                us = _run(loop_name, path, args.rate, args.duration)
                results.setdefault(path, {}).setdefault(loop_name, []).append(us)
    print(describe())
    print(
        f"\n{args.rate:,.0f} datagrams/s for {args.duration:g} s from a banned source, "
        f"median of {args.rounds} rounds; µs of server CPU per dropped datagram\n"
    )
    print("| receive path | asyncio | uvloop |")
    print("|---|---:|---:|")
    for path, label in PATHS.items():
        cells = [statistics.median(results[path][name]) for name in ("asyncio", "uvloop")]
        print(f"| {label} | {cells[0]:.2f} | {cells[1]:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
