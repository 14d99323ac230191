"""Flood benchmark: a banned source floods ``mss serve`` while legitimate users register.

Run (the issue's figure: >= 20,000 packets/s for 10 s, legitimate REGISTERs at 500/s)::

    .venv/bin/python benchmarks/flood.py
    .venv/bin/python benchmarks/flood.py --duration 2 --json out.json   # what the test suite runs

What it does, on loopback only, with a subprocess ``mss serve`` (uvloop when installed):

1. ``mss ban add 127.0.0.66`` before the start (so the ban is loaded from storage), 100 users,
   MD5 challenges (sipp 3.6 reads only the first challenge), drop summaries every second.
2. Phases, each ``--duration`` seconds, reading the server's CPU time (utime + stime from
   ``/proc/<pid>/stat``) around each:

   * ``idle``: nothing (the baseline: housekeeping timers);
   * ``flood``: a sender process bound to 127.0.0.66 sends a 440-byte scanner ``OPTIONS``
     from a raw UDP socket in a tight, paced loop (``--rate`` packets/s, bounded in count and
     time); every packet is dropped by the gate before parsing, with no reply;
   * ``legit``: sipp (``tests/mss/scenarios/register_uac.xml``, digest MD5) registers users
     from 127.0.0.2 at ``--legit-rate`` REGISTER transactions/s;
   * ``flood+legit``: both at once. Legitimate failures must be zero.

3. CPU per dropped packet = (phase CPU - baseline CPU) / packets. Two denominators are shown:
   packets *sent*, and packets the server *counted* as dropped (its ``drop_summary`` security
   events); they differ when the kernel drops datagrams because the socket buffer is full (then
   the server did not pay for them, and the per-counted figure is the honest one).

Prints a markdown table with the machine description (``benchmarks/machine.py``) and the
server's UDP receive path (its ``udp receive:`` log line: ``recvmmsg`` batches or the pure
``recvfrom_into`` twin); ``--json`` writes the figures. Exit status 1 when a legitimate REGISTER
failed. When the server dies during the run, its last log lines are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mss"))
sys.path.insert(0, str(ROOT))

FLOOD_SOURCE = "127.0.0.66"
LEGIT_SOURCE = "127.0.0.2"
USERS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCANNER_PACKET = (
    b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.66:5060;branch=z9hG4bK-2870981720;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "sipvicious"<sip:100@1.1.1.1>\r\n'
    b'From: "sipvicious"<sip:100@1.1.1.1>;tag=6434396635663237313463340131343631363530303434\r\n'
    b"User-Agent: friendly-scanner\r\n"
    b"Call-ID: 1135396125\r\n"
    b"Contact: sip:100@127.0.0.66:5060\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n\r\n"
)


# -- the flood sender (runs in its own process) ----------------------------------------------


def send_flood(
    target: tuple[str, int], source: str, rate: float, duration: float
) -> dict[str, Any]:
    """Send ``SCANNER_PACKET`` from ``source`` to ``target`` at ``rate``/s for ``duration`` s.

    Paced in 1 ms slices (each slice sends what is due, then sleeps), bounded by both count
    (``rate * duration``) and time (``duration`` + 1 s).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((source, 0))
    sock.connect(target)  # send() on a connected socket skips the address conversion
    send = sock.send
    packet = SCANNER_PACKET
    limit = int(rate * duration)
    sent = errors = 0
    t0 = time.perf_counter()
    deadline = t0 + duration + 1.0
    while sent < limit:
        now = time.perf_counter()
        if now >= deadline:
            break
        due = min(limit, int((now - t0) * rate) + 1)
        while sent < due:
            try:
                send(packet)
            except OSError:  # ENOBUFS / ECONNREFUSED bursts: count and go on
                errors += 1
            sent += 1
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    sock.close()
    return {"sent": sent - errors, "errors": errors, "elapsed": elapsed}


# -- the server ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds (``/proc/<pid>/stat`` fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mss(*args: str, data_dir: Path) -> None:
    env = dict(os.environ)
    env.pop("MSS_CONFIG", None)
    subprocess.run(
        [sys.executable, "-m", "mss", *args, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def add_users(data_dir: Path) -> None:
    """``USERS`` users 1000... with password ``pw-<number>-secret``, written in one process."""
    import asyncio

    from mss.app import open_configured_storage, resolve_realm
    from mss.config import load_config
    from mss.features.users import UserDirectory

    async def go() -> None:
        cfg = load_config(
            None, env={}, overrides={"data_dir": str(data_dir), "sip.domain": "mss.test"}
        )
        storage = await open_configured_storage(cfg)
        try:
            users = UserDirectory(storage, realm=await resolve_realm(cfg, storage))
            for n in range(USERS):
                await users.add(str(1000 + n), f"pw-{1000 + n}-secret")
        finally:
            await storage.close()

    asyncio.run(go())


class ServerProcess:
    """``mss serve`` in a subprocess; its JSON log lines are collected by a thread."""

    def __init__(self, data_dir: Path, port: int) -> None:
        env = dict(os.environ)
        env.pop("MSS_CONFIG", None)
        env.update(
            {
                "MSS_STUN_PORT": "",
                "MSS_API_ENABLED": "0",
                "MSS_AUTH_ALGORITHMS": "MD5",
                "MSS_SECURITY_DROP_LOG_INTERVAL": "1",
            }
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mss",
                "serve",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"udp:127.0.0.1:{port}",
                "--domain",
                "mss.test",
                "--log-format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[dict[str, Any]] = []
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(30) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("mss serve did not start:\n" + "\n".join(map(str, self.lines[-20:])))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"message": line.rstrip()}
            self.lines.append(record)
            if "mss started" in str(record.get("message", "")):
                self._started.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def dropped(self, ip: str) -> int:
        return sum(
            int(r.get("dropped", 0))
            for r in self.lines
            if r.get("event") == "drop_summary" and r.get("ip") == ip
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@contextlib.contextmanager
def flood_process(port: int, rate: float, duration: float) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--sender",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            try:
                proc.wait(duration + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sender_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=60)
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- the benchmark ---------------------------------------------------------------------------


def run(duration: float, rate: float, legit_rate: float, workdir: Path) -> dict[str, Any]:
    from sipp import require_sipp, run_sipp, write_inf_file

    require_sipp()
    data = workdir / "data"
    add_users(data)
    mss("ban", "add", FLOOD_SOURCE, "--for", "1d", "--reason", "flood benchmark", data_dir=data)
    inf = write_inf_file(
        workdir / "users.csv",
        [(str(1000 + n), f"pw-{1000 + n}-secret", "mss.test") for n in range(USERS)],
    )
    port = free_udp_port()
    server = ServerProcess(data, port)
    phases: dict[str, dict[str, Any]] = {}
    calls = max(1, int(legit_rate * duration))
    target = f"127.0.0.1:{port}"

    def legit() -> Any:
        return run_sipp(
            target,
            scenario="register_uac.xml",
            calls=calls,
            rate=legit_rate,
            inf_file=inf,
            local_ip=LEGIT_SOURCE,
            timeout=duration + 20,
        )

    try:
        time.sleep(1.0)  # let start-up settle
        # idle
        c0, t0 = cpu_seconds(server.pid), time.perf_counter()
        time.sleep(duration)
        phases["idle"] = {"cpu": cpu_seconds(server.pid) - c0, "wall": time.perf_counter() - t0}
        # flood only
        d0 = server.dropped(FLOOD_SOURCE)
        c0, t0 = cpu_seconds(server.pid), time.perf_counter()
        with flood_process(port, rate, duration) as proc:
            sent = sender_result(proc)
        time.sleep(0.05)
        phases["flood"] = {
            "cpu": cpu_seconds(server.pid) - c0,
            "wall": time.perf_counter() - t0,
            **sent,
        }
        time.sleep(2.5)  # the last drop summary (every 1 s) comes out
        phases["flood"]["counted"] = server.dropped(FLOOD_SOURCE) - d0
        # legit only
        c0, t0 = cpu_seconds(server.pid), time.perf_counter()
        result = legit()
        phases["legit"] = {
            "cpu": cpu_seconds(server.pid) - c0,
            "wall": time.perf_counter() - t0,
            "calls": calls,
            "ok": result.successful,
            "failed": result.failed,
        }
        # flood + legit
        d0 = server.dropped(FLOOD_SOURCE)
        c0, t0 = cpu_seconds(server.pid), time.perf_counter()
        with flood_process(port, rate, duration) as proc:
            result = legit()
            sent = sender_result(proc)
        phases["flood+legit"] = {
            "cpu": cpu_seconds(server.pid) - c0,
            "wall": time.perf_counter() - t0,
            "calls": calls,
            "ok": result.successful,
            "failed": result.failed,
            **sent,
        }
        time.sleep(2.5)
        phases["flood+legit"]["counted"] = server.dropped(FLOOD_SOURCE) - d0
        if result.failed or result.successful != calls:
            phases["flood+legit"]["sipp"] = result.describe()
    finally:
        server.stop()
    if server.proc.returncode not in (0, -signal.SIGTERM):  # it died: show why
        phases["server_exit"] = {"returncode": server.proc.returncode, "log": server.lines[-40:]}
        print(
            f"mss serve exited with {server.proc.returncode}; its last log lines:", file=sys.stderr
        )
        for line in server.lines[-40:]:
            print("   ", line, file=sys.stderr)
    idle_rate = phases["idle"]["cpu"] / phases["idle"]["wall"]
    f = phases["flood"]
    f_cpu = f["cpu"] - idle_rate * f["wall"]
    fl = phases["flood+legit"]
    lg = phases["legit"]
    # same number of REGISTERs in both phases; the rest of the wall time costs the idle rate
    extra = fl["cpu"] - lg["cpu"] - idle_rate * max(0.0, fl["wall"] - lg["wall"])
    receive = [
        str(r.get("message")) for r in server.lines if "udp receive:" in str(r.get("message"))
    ]
    summary = {
        "duration": duration,
        "server_udp_receive": receive[0].split(":", 1)[1].strip()
        if receive
        else "asyncio datagram transport",
        "rate_asked": rate,
        "flood_rate_sent": f["sent"] / f["elapsed"],
        "flood_sent": f["sent"],
        "flood_counted": f["counted"],
        "us_per_sent": 1e6 * f_cpu / max(1, f["sent"]),
        "us_per_counted": 1e6 * f_cpu / max(1, f["counted"]),
        "loaded_flood_sent": fl["sent"],
        "loaded_flood_counted": fl["counted"],
        "loaded_us_per_counted": 1e6 * extra / max(1, fl["counted"]),
        "legit_calls": fl["calls"],
        "legit_ok": fl["ok"],
        "legit_failed": fl["failed"],
        "legit_success_rate": fl["ok"] / max(1, fl["calls"]),
        "legit_only_ok": lg["ok"],
        "legit_only_failed": lg["failed"],
        "phases": phases,
    }
    return summary


def table(s: dict[str, Any]) -> str:
    from benchmarks.machine import describe

    p = s["phases"]
    rows = [
        "| phase | seconds | server CPU s | packets sent | dropped (server count) | legit REGISTERs ok / asked |",
        "|---|---|---|---|---|---|",
        f"| idle | {p['idle']['wall']:.2f} | {p['idle']['cpu']:.2f} | - | - | - |",
        f"| flood | {p['flood']['wall']:.2f} | {p['flood']['cpu']:.2f} | {p['flood']['sent']:,} "
        f"({s['flood_rate_sent']:,.0f}/s) | {p['flood']['counted']:,} | - |",
        f"| legit | {p['legit']['wall']:.2f} | {p['legit']['cpu']:.2f} | - | - | "
        f"{p['legit']['ok']} / {p['legit']['calls']} |",
        f"| flood+legit | {p['flood+legit']['wall']:.2f} | {p['flood+legit']['cpu']:.2f} | "
        f"{p['flood+legit']['sent']:,} | {p['flood+legit']['counted']:,} | "
        f"{p['flood+legit']['ok']} / {p['flood+legit']['calls']} |",
    ]
    return "\n".join(
        [
            describe(),
            f"server UDP receive path: {s['server_udp_receive']}",
            "",
            *rows,
            "",
            f"server CPU per dropped packet (flood - idle): {s['us_per_sent']:.2f} µs per packet sent, "
            f"{s['us_per_counted']:.2f} µs per packet the server counted",
            f"under load ((flood+legit) - legit): {s['loaded_us_per_counted']:.2f} µs per counted packet "
            f"({s['loaded_flood_counted']:,} of {s['loaded_flood_sent']:,} reached the server; the rest "
            "overflowed the socket buffer while it was busy)",
            f"legitimate REGISTER success rate during the flood: {100 * s['legit_success_rate']:.2f} % "
            f"({s['legit_ok']} / {s['legit_calls']}, {s['legit_failed']} failed)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase (default 10)")
    ap.add_argument("--rate", type=float, default=25000, help="flood packets/s (default 25000)")
    ap.add_argument("--legit-rate", type=float, default=500, help="REGISTERs/s (default 500)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sender:
        print(
            json.dumps(send_flood(("127.0.0.1", args.port), FLOOD_SOURCE, args.rate, args.duration))
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="mss-flood-") as tmp:
        summary = run(args.duration, args.rate, args.legit_rate, Path(tmp))
    print(table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return (
        0 if summary["legit_failed"] == 0 and summary["legit_ok"] == summary["legit_calls"] else 1
    )


if __name__ == "__main__":
    sys.exit(main())
