"""Voicemail benchmark: how many calls can the answering machine take at once (issue 10)?

Run (one command; about 2-4 minutes)::

    .venv/bin/python benchmarks/voicemail_streams.py
    .venv/bin/python benchmarks/voicemail_streams.py --steps 20,50 --seconds 6    # a smoke run

What it does, on loopback only:

1. Starts the server in a child process (this file with ``--role server``: ``mss.app.Server``
   with uvloop when installed, memory storage, a caller ``1001`` IP-authorized from 127.0.0.1
   and a mailbox ``2000`` with voicemail on and no device: every call goes to voicemail as
   ``offline``). The child answers ``stats`` on stdin with its CPU time (``getrusage``) and the
   answering machine's packet counters (:meth:`VoicemailAnswerer.media_stats`).
2. For each step N (``--steps``; all of them unless ``--stop-on-fail``, and no new step once
   ``--budget`` seconds are spent): this process (the load, uvloop) places N calls from one SIP
   socket at ``--cps`` calls per second (INVITE with a PCMU + telephone-event offer, ACK), each
   with its own RTP socket that counts the greeting packets it receives and sends 20 ms of
   speech-like PCMU every 20 ms from its answer on (one paced grid timer for all streams). The
   step lasts N/cps + ``--seconds`` (greeting + beep = 4 s, then recording), then every call
   is hung up with BYE and the N messages must be deposited. Meanwhile a third process (the
   *idle probe*) only wakes every 20 ms on a grid and counts its own wake-ups more than 20 ms
   late: the machine's scheduling noise, which no server can beat.
3. Per step: greeting packets the server sent, how many left more than 20 ms after their slot
   (*late*, counted by the server's pacer), failed ``sendto`` (*dropped*) and packets that never
   reached the caller (*lost*); the step passes when (late + dropped + lost) / sent < 0.1 %,
   every call was answered and every message deposited. Also: how many pacer ticks ran over
   20 ms late (*loop stalls*: one stall makes every stream's packet of that slot late), the
   worst cost of one tick (the server's own work for all streams), and CPU per stream = the
   server's CPU seconds over the step divided by N and by the step's length.

Prints a markdown table (with the machine description and load average: the machine may be
shared) and writes ``benchmarks/results/voicemail-<stamp>.json``. Exit status 0 even when a
step fails (the table says where); 2 when the server could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HEADER_FMT = "!BBHII"


# ============================================================================================
# the server (child process)
# ============================================================================================
async def serve(data_dir: str, debug: bool = False) -> None:
    from mss.app import Server
    from mss.config import load_config

    if debug:  # asyncio debug mode: log every callback that holds the loop over 15 ms
        import logging

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        asyncio.get_running_loop().set_debug(True)
        asyncio.get_running_loop().slow_callback_duration = 0.015

    cfg = load_config(
        None,
        env={},
        overrides={
            "data_dir": data_dir,
            "transport.listen": "udp:127.0.0.1:0",
            "stun.enabled": False,
            "stun.port": 0,
            "api.enabled": False,
            "sip.domain": "bench.test",
            "storage.backend": "memory",
            "log.level": "warning",
        },
    )
    srv = Server(cfg)
    await srv.start()
    assert srv.users is not None and srv.b2bua is not None and srv.b2bua.voicemail is not None
    await srv.users.add("1001", "pw-bench-1001", allow_ips=["127.0.0.1"])
    await srv.users.add(
        "2000", "pw-bench-2000", extra={"voicemail": {"enabled": True, "max_seconds": 600}}
    )
    vm = srv.b2bua.voicemail
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": srv.port("udp"), "loop": type(loop).__module__}), flush=True)
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line != "stats":
                break
            ru = resource.getrusage(resource.RUSAGE_SELF)
            out = dict(vm.media_stats())
            out.update(
                cpu=ru.ru_utime + ru.ru_stime,
                deposited=vm.stats["deposited"],
                deposit_errors=vm.stats["deposit_errors"],
                empty=vm.stats["empty"],
                ports=vm.ports.in_use,
            )
            print(json.dumps(out), flush=True)
    finally:
        await srv.stop()


async def probe(seconds: float) -> None:
    """The machine's own scheduling noise: a process that only wakes every 20 ms on a grid
    and reports how often it woke more than 20 ms late (the same test as the server's pacer)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    late = []
    for k in range(1, int(seconds / 0.02) + 1):
        when = t0 + k * 0.02
        await asyncio.sleep(max(0.0, when - loop.time()))
        late.append(loop.time() - when)
    print(
        json.dumps({"stalls": sum(x > 0.02 for x in late), "max_ms": round(max(late) * 1e3, 1)}),
        flush=True,
    )


# ============================================================================================
# the load (this process)
# ============================================================================================
def speech_frames(seconds: float = 2.0) -> list[bytes]:
    from mss.media import g711

    t = np.arange(int(seconds * 8000)) / 8000
    f = 300 + 900 * (1 + np.sin(2 * np.pi * 0.7 * t))
    x = np.sin(2 * np.pi * np.cumsum(f) / 8000) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * 9000
    data = g711.encode(0, x.astype(np.int16))
    return [data[i : i + 160] for i in range(0, len(data), 160)]


class Media(asyncio.DatagramProtocol):
    """The caller's RTP socket of one call."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.remote: tuple[str, int] | None = None
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1

    def error_received(self, exc: Exception) -> None:
        pass


class Call:
    __slots__ = ("answered", "bye_ok", "call_id", "contact", "media", "tag", "to")

    def __init__(self, media: Media) -> None:
        self.media = media
        self.call_id = f"{secrets.token_hex(8)}@bench"
        self.tag = secrets.token_hex(4)
        self.to = ""
        self.contact = ""
        self.answered = asyncio.get_running_loop().create_future()
        self.bye_ok = asyncio.get_running_loop().create_future()


class Sip(asyncio.DatagramProtocol):
    """One UDP socket placing every call (IP-authorized caller: no digest)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: dict[str, Call] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, text: str, body: bytes = b"") -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode() + body, self.server)

    def _head(self, method: str, uri: str, call: Call, cseq: int, to: str) -> list[str]:
        return [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:1001@bench.test>;tag={call.tag}",
            f"To: {to}",
            f"Call-ID: {call.call_id}",
            f"CSeq: {cseq} {method}",
        ]

    def invite(self, call: Call) -> None:
        port = call.media.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        ).encode()
        self.calls[call.call_id] = call
        lines = self._head("INVITE", "sip:2000@bench.test", call, 1, "<sip:2000@bench.test>")
        lines += [
            f"Contact: <sip:1001@127.0.0.1:{self.port}>",
            "Content-Type: application/sdp",
            f"Content-Length: {len(sdp)}",
        ]
        self.send("\r\n".join(lines) + "\r\n\r\n", sdp)

    def ack(self, call: Call) -> None:
        lines = [*self._head("ACK", call.contact, call, 1, call.to), "Content-Length: 0"]
        self.send("\r\n".join(lines) + "\r\n\r\n")

    def bye(self, call: Call) -> None:
        lines = [*self._head("BYE", call.contact, call, 2, call.to), "Content-Length: 0"]
        self.send("\r\n".join(lines) + "\r\n\r\n")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        from fastsip.message import Request, Response
        from fastsip.parser import parse_datagram

        try:
            msg = parse_datagram(data)
        except Exception:
            return
        if isinstance(msg, Request):  # a BYE from the server: answer it
            if msg.method == "BYE":
                text = data.decode(errors="replace").split("\r\n")
                keep = [
                    h
                    for h in text[1:]
                    if h.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
                ]
                self.send("\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]) + "\r\n\r\n")
            return
        assert isinstance(msg, Response)
        call = self.calls.get(msg.call_id or "")
        if call is None or msg.status < 200:
            return
        cseq = msg.cseq
        if cseq is not None and cseq.method == "INVITE":
            if msg.status >= 300:
                if not call.answered.done():
                    call.answered.set_exception(RuntimeError(f"call refused: {msg.status}"))
                return
            call.to = msg.get("To") or ""
            c = msg.contact
            call.contact = (
                str(c.uri) if c is not None else f"sip:2000@{self.server[0]}:{self.server[1]}"
            )
            for line in msg.body.decode().splitlines():
                if line.startswith("m=audio"):
                    call.media.remote = ("127.0.0.1", int(line.split()[1]))
            self.ack(call)  # also for retransmitted 200s
            if not call.answered.done():
                call.answered.set_result(None)
        elif cseq is not None and cseq.method == "BYE" and not call.bye_ok.done():
            call.bye_ok.set_result(msg.status)


class ServerProc:
    def __init__(self, data_dir: str, debug: bool = False) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        extra = ["--debug-server"] if debug else []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "server", "--data-dir", data_dir, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the server did not start")
        info = json.loads(line)
        self.port = int(info["ready"])
        self.loop = str(info["loop"])

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def run_step(
    server: ServerProc, n: int, seconds: float, frames: list[bytes], cps: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, sip = await loop.create_datagram_endpoint(
        lambda: Sip(("127.0.0.1", server.port)), local_addr=("127.0.0.1", 0)
    )
    calls: list[Call] = []
    for _ in range(n):
        _, media = await loop.create_datagram_endpoint(Media, local_addr=("127.0.0.1", 0))
        calls.append(Call(media))
    before = await loop.run_in_executor(None, server.stats)
    wall0 = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)

    async def place() -> list[Any]:
        # calls arrive at ``cps`` per second (a busy PBX), not all in the same millisecond
        start = loop.time()
        for i, call in enumerate(calls):
            delay = start + i / cps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sip.invite(call)
        return await asyncio.gather(
            *(asyncio.wait_for(c.answered, 15) for c in calls), return_exceptions=True
        )

    placing = asyncio.ensure_future(place())
    prober = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--role",
        "probe",
        "--seconds",
        str(n / cps + seconds - 0.5),
        stdout=asyncio.subprocess.PIPE,
    )
    # every caller talks from its answer on: one 20 ms grid for all (slot k at t0 + k*20 ms);
    # the step lasts until ``seconds`` after the last call was placed
    import struct

    hdr = struct.Struct(HEADER_FMT)
    t0 = loop.time()
    k = 0
    nframes = len(frames)
    end = t0 + n / cps + seconds
    while True:
        now = loop.time()
        if now >= end:
            break
        slot = t0 + k * 0.02
        if slot > now:
            await asyncio.sleep(slot - now)
            continue
        payload = frames[k % nframes]
        for c in calls:
            m = c.media
            if m.remote is None or m.transport is None:
                continue
            m.transport.sendto(
                hdr.pack(0x80, 0, m.seq & 0xFFFF, m.ts & 0xFFFFFFFF, m.ssrc) + payload, m.remote
            )
            m.seq += 1
            m.ts += 160
        k += 1
    results = await placing
    probe_out, _ = await prober.communicate()
    try:
        noise = json.loads(probe_out)
    except ValueError:
        noise = {"stalls": None, "max_ms": None}
    answered = sum(1 for r in results if not isinstance(r, BaseException))
    live = [c for c, r in zip(calls, results, strict=False) if not isinstance(r, BaseException)]
    setup = n / cps
    after = await loop.run_in_executor(None, server.stats)
    window = time.monotonic() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    received = sum(c.media.received for c in calls)
    for c in live:
        sip.bye(c)
    byes = await asyncio.gather(
        *(asyncio.wait_for(c.bye_ok, 10) for c in live), return_exceptions=True
    )
    deposited_want = before["deposited"] + len(live)
    deadline = time.monotonic() + 30
    final = after
    while time.monotonic() < deadline:
        final = await loop.run_in_executor(None, server.stats)
        if final["deposited"] >= deposited_want and final["active"] == 0:
            break
        await asyncio.sleep(0.2)
    sip.transport.close()  # type: ignore[union-attr]
    for c in calls:
        if c.media.transport is not None:
            c.media.transport.close()
    sent = after["sent"] - before["sent"]
    late = after["late"] - before["late"]
    dropped = after["dropped"] - before["dropped"]
    lost = max(0, sent - received)
    bad = late + dropped + lost
    cpu = after["cpu"] - before["cpu"]
    load_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    ok = (
        answered == n
        and sent > 0
        and bad / sent < 0.001
        and final["deposited"] >= deposited_want
        and sum(1 for b in byes if b == 200) == len(live)
    )
    return {
        "streams": n,
        "answered": answered,
        "setup_s": round(setup, 3),
        "window_s": round(window, 3),
        "greeting_sent": sent,
        "late": late,
        "dropped": dropped,
        "lost": lost,
        "stalls": after.get("pacer_late_ticks", 0) - before.get("pacer_late_ticks", 0),
        "max_late_ms": round(after.get("pacer_max_late_us", 0) / 1000, 1),
        "max_tick_work_ms": round(after.get("pacer_max_work_us", 0) / 1000, 1),
        "max_tick_cpu_ms": round(after.get("pacer_max_cpu_us", 0) / 1000, 2),
        "idle_probe_stalls": noise["stalls"],
        "idle_probe_max_ms": noise["max_ms"],
        "bad_pct": round(100 * bad / sent, 4) if sent else None,
        "deposited": final["deposited"] - before["deposited"],
        "not_deposited": {
            "no voice recorded": final["empty"] - before["empty"],
            "mailbox errors": final["deposit_errors"] - before["deposit_errors"],
        },
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(100 * cpu / window, 1),
        "cpu_per_stream_pct": round(100 * cpu / window / n, 3),
        "load_cpu_pct": round(100 * load_cpu / window, 1),
        "loadavg": os.getloadavg()[0],
        "pass": ok,
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| streams | answered | greeting pkts | late | dropped | lost | bad % | loop stalls > 20 ms | worst (ms, cumulative) | pacer tick, worst ms (wall / CPU) | idle probe: stalls, worst ms | deposited | server CPU | CPU/stream | load CPU | loadavg | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['streams']} | {r['answered']} | {r['greeting_sent']} | {r['late']} | {r['dropped']} | "
            f"{r['lost']} | {r['bad_pct']} | {r['stalls']} | {r['max_late_ms']} | {r['max_tick_work_ms']} / {r['max_tick_cpu_ms']} | {r['idle_probe_stalls']}, {r['idle_probe_max_ms']} | {r['deposited']} | {r['server_cpu_pct']} % | "
            f"{r['cpu_per_stream_pct']} % | {r['load_cpu_pct']} % | {r['loadavg']:.2f} | {'yes' if r['pass'] else 'NO'} |"
        )
    return "\n".join(out)


async def orchestrate(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    from benchmarks.machine import describe

    steps = [int(s) for s in args.steps.split(",")]
    frames = speech_frames()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mss-vm-bench-") as tmp:
        try:
            server = ServerProc(tmp, args.debug_server)
        except Exception as e:
            print(f"server did not start: {e}", file=sys.stderr)
            return 2
        try:
            for n in steps:
                if time.monotonic() - started > args.budget:
                    print(
                        f"budget of {args.budget:.0f} s spent; stopping before {n} streams",
                        file=sys.stderr,
                    )
                    break
                row = await run_step(server, n, args.seconds, frames, args.cps)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if not row["pass"] and args.stop_on_fail:
                    break
                await asyncio.sleep(1.0)
        finally:
            server.stop()
    best = max((r["streams"] for r in rows if r["pass"]), default=0)
    passing = [r for r in rows if r["pass"]]
    per_stream = passing[-1]["cpu_per_stream_pct"] if passing else None
    print(describe())
    print(
        f"server event loop: {server.loop}; load generator: {type(asyncio.get_running_loop()).__module__}; "
        f"calls placed at {args.cps:g}/s; each step lasts N/{args.cps:g} s + {args.seconds:g} s "
        "(greeting + beep 4 s, then recording)"
    )
    print()
    print(table(rows))
    print()
    print(
        f"highest number of simultaneous recordings with < 0.1 % greeting packets late or lost: {best}"
        + (f" (server CPU per stream {per_stream} % of one core)" if per_stream is not None else "")
    )
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(args.json) if args.json else out_dir / f"voicemail-{stamp}.json"
    path.write_text(json.dumps({"machine": describe(), "rows": rows, "best": best}, indent=2))
    print(f"figures: {path}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=("load", "server", "probe"), default="load")
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--steps", default="50,100,200,300,400,500,600,800")
    ap.add_argument(
        "--seconds", type=float, default=10.0, help="length of each step (>= 5: greeting 4 s)"
    )
    ap.add_argument(
        "--stop-on-fail", action="store_true", help="stop the ladder at the first failing step"
    )
    ap.add_argument("--cps", type=float, default=100.0, help="calls placed per second")
    ap.add_argument(
        "--budget", type=float, default=600.0, help="no new step after this many seconds"
    )
    ap.add_argument("--json", default="", help="where to write the figures")
    ap.add_argument(
        "--debug-server",
        action="store_true",
        help="run the server on asyncio in debug mode: callbacks over 15 ms are logged",
    )
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.role == "probe":
        return asyncio.run(probe(args.seconds)) or 0
    coro = serve(args.data_dir, args.debug_server) if args.role == "server" else orchestrate(args)
    if args.debug_server and args.role == "server":
        return asyncio.run(coro) or 0
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro) or 0
    return uvloop.run(coro) or 0  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main())
