"""REGISTER with digest at stepped rates: sipp UAC → ``mss serve`` on loopback.

    python -m benchmarks.register_rate [--users 2000] [--rates 500,1000,2000,3000] [--seconds 5]

Starts ``mss serve`` (SQLite in a temporary data dir, MD5 challenges only because sipp 3.6
answers only the first challenge and only MD5), provisions the users, runs sipp's
``register_uac.xml`` (REGISTER → 401 → REGISTER with credentials → 200) at each rate for a
bounded number of registrations, and prints per rate: registrations attempted/succeeded/failed,
retransmissions, achieved rate, and server CPU µs per registration (utime+stime of the server
process from /proc). The highest rate with 0 failures is the figure quoted. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "mss"), str(ROOT / "tests")]

from sipp import free_udp_port, run_sipp, write_inf_file  # noqa: E402

from benchmarks import machine  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def provision(data: Path, n: int) -> list[tuple[str, str]]:
    from mss.app import open_configured_storage, resolve_realm
    from mss.config import load_config
    from mss.features.users import UserDirectory

    users = [(str(100000 + i), f"pw{i:06d}") for i in range(n)]

    async def go() -> None:
        cfg = load_config(None, env={}, overrides={"data_dir": str(data), "sip.domain": "example.test"})
        storage = await open_configured_storage(cfg)
        try:
            directory = UserDirectory(storage, realm=await resolve_realm(cfg, storage))
            for number, password in users:
                await directory.add(number, password)
        finally:
            await storage.close()

    asyncio.run(go())
    return users


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--rates", default="500,1000,2000,3000,4000")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        users = provision(data, args.users)
        inf = write_inf_file(Path(tmp) / "users.csv", [(n, p, "example.test") for n, p in users])
        port = free_udp_port()
        env = dict(os.environ, MSS_AUTH_ALGORITHMS="MD5", MSS_STUN_PORT="", MSS_API_ENABLED="0",
                   MSS_LOG_LEVEL="warning")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mss", "serve", "--data-dir", str(data), "--listen", f"udp:127.0.0.1:{port}",
             "--domain", "example.test", "--log-format", "json"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0)
        print(machine.describe())
        print(f"users: {args.users}; step duration: {args.seconds} s; sipp register_uac.xml (REGISTER, 401, REGISTER+digest, 200)\n")
        print("| offered/s | attempted | ok | failed | retrans | achieved/s | server CPU µs/registration |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        best = 0
        try:
            for rate in [int(r) for r in args.rates.split(",")]:
                calls = int(rate * args.seconds)
                c0 = cpu_seconds(proc.pid)
                t0 = time.monotonic()
                r = run_sipp(f"127.0.0.1:{port}", scenario="register_uac.xml", calls=calls, rate=rate,
                             inf_file=inf, timeout=args.seconds * 4 + 20, extra=["-l", str(max(100, rate))])
                wall = time.monotonic() - t0
                cpu = cpu_seconds(proc.pid) - c0
                ok = r.successful
                per = cpu / ok * 1e6 if ok else float("nan")
                print(f"| {rate} | {calls} | {ok} | {r.failed} | {r.retransmissions} | {ok / wall:.0f} | {per:.0f} |", flush=True)
                if r.failed == 0 and ok == calls:
                    best = max(best, rate)
                else:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        print(f"\nhighest rate with 0 failures: {best} REGISTER/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
