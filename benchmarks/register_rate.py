"""REGISTER with digest at stepped rates: sipp UAC → ``mss serve`` on loopback.

    python -m benchmarks.register_rate [--users 2000] [--rates 500,1000,2000,3000] [--seconds 5]
    python -m benchmarks.register_rate --users 10000 --rates 300,300,300 --profile /tmp/reg

Starts ``mss serve`` (SQLite in a temporary data dir, MD5 challenges only because sipp 3.6
answers only the first challenge and only MD5), provisions the users, runs sipp's
``register_uac.xml`` (REGISTER → 401 → REGISTER with credentials → 200) at each rate for a
bounded number of registrations, and prints per rate: registrations attempted/succeeded/failed,
retransmissions, achieved rate, and server CPU µs per registration (utime+stime of the server
process from /proc). The highest rate with 0 failures is the figure quoted. Loopback only.
The machine may be shared: CPU per registration is the figure to compare, not the rate.

``--persist write-back`` runs the registrar in write-back mode (the 200 before a batched
commit). ``--profile PREFIX`` runs one more step at the first rate with py-spy recording the server
(``PREFIX-gil.txt``: Python frames of the thread holding the GIL; ``PREFIX-native.txt``: with C
frames, in a second step) and prints the top self-time functions.
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


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def provision(data: Path, n: int) -> list[tuple[str, str]]:
    from mss.app import open_configured_storage, resolve_realm
    from mss.config import load_config
    from mss.features.users import UserDirectory

    users = [(str(100000 + i), f"pw{i:06d}") for i in range(n)]

    async def go() -> None:
        cfg = load_config(
            None, env={}, overrides={"data_dir": str(data), "sip.domain": "example.test"}
        )
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
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--rates", default="500,1000,2000,3000,4000")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    ap.add_argument(
        "--persist",
        choices=("write-through", "write-back"),
        default="write-through",
        help="[registrar] persist of the server (default write-through, the server's default)",
    )
    ap.add_argument(
        "--profile",
        default="",
        help="py-spy output prefix: profile one more step at the first rate",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        users = provision(data, args.users)
        inf = write_inf_file(Path(tmp) / "users.csv", [(n, p, "example.test") for n, p in users])
        port = free_udp_port()
        env = dict(
            os.environ,
            MSS_AUTH_ALGORITHMS="MD5",
            MSS_STUN_PORT="",
            MSS_API_ENABLED="0",
            MSS_LOG_LEVEL="warning",
            MSS_REGISTRAR_PERSIST=args.persist,
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mss",
                "serve",
                "--data-dir",
                str(data),
                "--listen",
                f"udp:127.0.0.1:{port}",
                "--domain",
                "example.test",
                "--log-format",
                "json",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.0)
        print(machine.describe())
        print(
            f"users: {args.users}; step duration: {args.seconds} s; registrar persist: "
            f"{args.persist}; sipp register_uac.xml (REGISTER, 401, REGISTER+digest, 200)\n"
        )
        print(
            "| offered/s | attempted | ok | failed | retrans | achieved/s | server CPU µs/registration | of which user | system |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        best = 0
        try:
            rates = [int(r) for r in args.rates.split(",")]
            for rate in rates:
                calls = int(rate * args.seconds)
                u0, s0 = cpu_times(proc.pid)
                t0 = time.monotonic()
                r = run_sipp(
                    f"127.0.0.1:{port}",
                    scenario="register_uac.xml",
                    calls=calls,
                    rate=rate,
                    inf_file=inf,
                    timeout=args.seconds * 4 + 20,
                    extra=["-l", str(max(100, rate))],
                )
                wall = time.monotonic() - t0
                u1, s1 = cpu_times(proc.pid)
                ok = r.successful
                scale = 1e6 / ok if ok else float("nan")
                per, user, system = (
                    (u1 - u0 + s1 - s0) * scale,
                    (u1 - u0) * scale,
                    (s1 - s0) * scale,
                )
                print(
                    f"| {rate} | {calls} | {ok} | {r.failed} | {r.retransmissions} | {ok / wall:.0f} | {per:.0f} "
                    f"| {user:.0f} | {system:.0f} |",
                    flush=True,
                )
                if r.failed == 0 and ok == calls:
                    best = max(best, rate)
                else:
                    break
            if args.profile:
                from benchmarks.e2e import profile

                for kind in ("gil", "native"):
                    out = Path(f"{args.profile}-{kind}.txt")
                    spy = profile.record(
                        proc.pid, out, args.seconds, native=kind == "native", gil=kind == "gil"
                    )
                    run_sipp(
                        f"127.0.0.1:{port}",
                        scenario="register_uac.xml",
                        calls=int(rates[0] * args.seconds),
                        rate=rates[0],
                        inf_file=inf,
                        timeout=args.seconds * 4 + 20,
                        extra=["-l", str(max(100, rates[0]))],
                    )
                    spy.wait(args.seconds + 30)
                    if out.exists():
                        print(f"\npy-spy ({kind}) at {rates[0]}/s, self time, {out}:")
                        print(profile.rank(out.read_text()).markdown(top=25))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        print(f"\nhighest rate with 0 failures: {best} REGISTER/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
