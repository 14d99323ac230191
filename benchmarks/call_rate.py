"""Calls through the B2BUA at stepped rates: sipp UAC → ``mss serve`` → sipp UAS, on loopback.

    python -m benchmarks.call_rate [--rates 50,100,200,300,400] [--seconds 5] [--hold-ms 0]

Starts ``mss serve`` (SQLite in a temporary data dir, so every call writes its call record),
provisions two IP-authorized users (the caller at the sipp UAC's address, the callee at the sipp
UAS's), starts a sipp UAS (``uas_answer.xml``: 180, 200, ACK required, BYE → 200) and runs the
sipp UAC ``b2bua_uac_call.xml`` (INVITE, 100/180, 200, ACK, optional hold, BYE, 200) at each
rate for a bounded number of calls. Each call is 7 transactions across the server (INVITE and
BYE on both legs, the ACKs, the relayed provisional) and one call record.

Prints per rate: calls attempted / ok / failed, retransmissions, achieved calls/s and server CPU
µs per call (utime + stime of the server process from /proc). Steps stop at the first rate with
a failure; the highest rate with 0 failures is the figure quoted. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "mss"), str(ROOT / "tests")]

from sipp import free_udp_port, run_sipp, start_sipp_uas  # noqa: E402

from benchmarks import machine  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def provision(data: Path, caller_port: int, callee_port: int) -> None:
    from mss.app import open_configured_storage, resolve_realm
    from mss.config import load_config
    from mss.features.users import UserDirectory

    async def go() -> None:
        cfg = load_config(
            None, env={}, overrides={"data_dir": str(data), "sip.domain": "example.test"}
        )
        storage = await open_configured_storage(cfg)
        try:
            directory = UserDirectory(storage, realm=await resolve_realm(cfg, storage))
            await directory.add("1001", "pw-1001", allow_ips=[f"127.0.0.1:{caller_port}"])
            await directory.add("1002", "pw-1002", allow_ips=[f"127.0.0.1:{callee_port}"])
        finally:
            await storage.close()

    asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rates", default="50,100,200,300,400,500")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    ap.add_argument(
        "--hold-ms", type=int, default=0, help="call duration between ACK and BYE (sipp -d)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        caller_port, callee_port, port = free_udp_port(), free_udp_port(), free_udp_port()
        provision(data, caller_port, callee_port)
        env = dict(os.environ, MSS_STUN_PORT="", MSS_API_ENABLED="0", MSS_LOG_LEVEL="warning")
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
            f"step duration: {args.seconds} s; hold {args.hold_ms} ms; sipp b2bua_uac_call.xml → mss → uas_answer.xml; "
            "SQLite call records\n"
        )
        print(
            "| offered calls/s | attempted | ok | failed | retrans | achieved calls/s | server CPU µs/call |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        best = 0
        try:
            with start_sipp_uas(
                scenario="uas_answer.xml", port=callee_port, timeout=3600, extra=["-l", "100000"]
            ) as uas:
                for rate in [int(r) for r in args.rates.split(",")]:
                    calls = int(rate * args.seconds)
                    c0 = cpu_seconds(proc.pid)
                    t0 = time.monotonic()
                    r = run_sipp(
                        f"127.0.0.1:{port}",
                        scenario="b2bua_uac_call.xml",
                        calls=calls,
                        rate=rate,
                        service="1002",
                        local_port=caller_port,
                        timeout=args.seconds * 4 + 30,
                        extra=[
                            "-key",
                            "caller",
                            "1001",
                            "-d",
                            str(args.hold_ms),
                            "-l",
                            str(max(1000, rate * 10)),
                        ],
                    )
                    wall = time.monotonic() - t0
                    cpu = cpu_seconds(proc.pid) - c0
                    ok = r.successful
                    per = cpu / ok * 1e6 if ok else float("nan")
                    row = {
                        "rate": rate,
                        "calls": calls,
                        "ok": ok,
                        "failed": r.failed,
                        "retransmissions": r.retransmissions,
                        "achieved": ok / wall,
                        "cpu_us_per_call": per,
                    }
                    rows.append(row)
                    print(
                        f"| {rate} | {calls} | {ok} | {r.failed} | {r.retransmissions} | {ok / wall:.0f} | {per:.0f} |",
                        flush=True,
                    )
                    if r.failed == 0 and ok == calls:
                        best = max(best, rate)
                    else:
                        break
                uas.stop(grace=5)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        print(f"\nhighest rate with 0 failures: {best} calls/s")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine.describe(), "rows": rows, "best": best}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
