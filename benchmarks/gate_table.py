"""Print a markdown table of the transport gate's cost (``SecurityPolicy.allow``) per packet.

Run: ``.venv/bin/python benchmarks/gate_table.py`` (a few seconds). Each cell is the median of
ROUNDS rounds of ``timeit`` over a pre-bound method, in ns per call, for a source that is let in,
a banned source and a black-listed one (50 networks in 5 prefix lengths), next to the two ways
of keying the ban table the issue asked to compare: the policy's bounded ``host -> packed``
cache, and ``socket.inet_pton`` on every packet. The cost of reading the datagram (the system
call, the event loop: several µs, see ``benchmarks/udp_receive.py`` and ``benchmarks/flood.py``)
is not included.
"""

from __future__ import annotations

import socket
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUNDS = 9
CALLS = 200_000


def main() -> None:
    from benchmarks.machine import describe
    from fastsip.bantable import pack_ip
    from mss.config import SecurityConfig
    from mss.features.security import SecurityPolicy

    policy = SecurityPolicy(SecurityConfig(), summary_interval=1e9)
    policy.set_list("black", [f"10.{i}.{j}.0/{24 + (j % 5)}" for i in range(10) for j in range(5)])
    policy.table.ban(pack_ip("198.51.100.66"), 1e12, 0.0)
    allow = policy.allow
    check = policy.table.check
    inet_pton, af = socket.inet_pton, socket.AF_INET
    env = {"allow": allow, "check": check, "inet_pton": inet_pton, "af": af}
    cases = {
        "allow(): source let in (cached)": "allow('192.0.2.7', 1.0)",
        "allow(): banned source (dropped)": "allow('198.51.100.66', 1.0)",
        "allow(): black-listed source (dropped)": "allow('10.3.2.9', 1.0)",
        "table.check(inet_pton(host)) per packet": "check(inet_pton(af, '192.0.2.7'), 1.0)",
        "empty timeit loop (floor)": "pass",
    }
    rows = []
    for name, stmt in cases.items():
        t = timeit.Timer(stmt, globals=env)
        times = [t.timeit(CALLS) / CALLS * 1e9 for _ in range(ROUNDS)]
        rows.append((name, statistics.median(times)))
    print(describe())
    print()
    print("| operation | ns per call |")
    print("|---|---|")
    for name, ns in rows:
        print(f"| {name} | {ns:.0f} |")


if __name__ == "__main__":
    main()
