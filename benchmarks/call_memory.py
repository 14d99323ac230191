"""Memory per established call and CPU per call through the B2BUA, in process (no sipp).

    python -m benchmarks.call_memory [--calls 2000] [--cpu-calls 2000] [--storage sqlite]
                                     [--t1 0.2] [--rss] [--top 15] [--frames 1]
                                     [--profile FILE]

Starts the :class:`mss.app.Server` that ``mss serve`` runs (UDP on 127.0.0.1, port chosen by
the system; SQLite in a temporary data dir, or ``--storage memory``) with two IP-authorized
users: the caller 1001 at 127.0.0.1:5061 and the callee 1002 at 127.0.0.1:5062 (the grant
names the port, so the callee counts as online there, as in ``benchmarks.e2e``). The server's
sender is replaced by a list, and two fake peers exchange datagrams with
:meth:`mss.sip.core.SipCore.on_message` directly: every message the server gets is parsed from
bytes as the UDP transport would, and everything the server sends is serialised. The messages
are those of sipp's ``b2bua_uac_call.xml`` (caller) and ``uas_answer_rr.xml`` (callee):
INVITE with SDP, 100 / 180 / 200 with SDP relayed, ACK relayed, BYE, 200.

1. Memory: after 200 warm-up calls (INVITE…BYE), ``gc.collect()`` and a ``tracemalloc``
   snapshot, then ``--calls`` calls are set up and left established; ``gc.collect()`` and a
   second snapshot give the bytes per established call and the allocation sites (by line) that
   hold them. Measured twice: right after set-up (the INVITE transactions on both legs are
   still in their Accepted/Completed states until Timer L/M, 64*T1, as in a server where calls
   last longer than that) and once every transaction timer has fired (64*T1 + 0.5 s later:
   what an established dialog alone costs). ``--rss`` measures the resident set size delta
   instead (``/proc/self/statm``, without tracemalloc's own overhead).
2. CPU: ``--cpu-calls`` full calls (set-up, then the caller's BYE and the callee's 200), 100
   up at a time (call i is set up, then call i - 100 hung up), one loop turn after each set-up
   and each hang-up (so the call records' writer runs as it would between datagrams), then the
   transaction timers left running to the end. Prints the process CPU time per call, minus the time spent
   in the fake peers (building and parsing their side of the messages); ``--profile FILE``
   writes a cProfile of that phase (``python -m pstats FILE``).

``--t1`` shortens the SIP timers (T1; T2 = 8*T1; Timer B/F/H/J/L/M = 64*T1) so that the
state after them is reached in seconds; it changes no data structure. The collector is set up as
in ``mss serve`` (``transport.gc_threshold``, ``gc_freeze_interval``, ``gc_full_interval``); the
CPU phase prints the collections it saw. Bounded: at most ``--calls`` + ``--cpu-calls``
+ 200 calls, loopback only, nothing leaves the process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import linecache
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import fastsip
from fastsip.message import Request, Response, make_response
from fastsip.parser import parse_datagram
from mss.app import GcKeeper, Server, tune_gc
from mss.config import load_config
from mss.sip.addressing import Source

CALLER = ("127.0.0.1", 5061)
CALLEE = ("127.0.0.1", 5062)
SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ANSWER = SDP.replace(b"6000", b"6002")
#: calls up at once in the CPU phase
HELD = 100


class _Sent:
    """The server's sender: keeps what it sends, by destination port."""

    def __init__(self) -> None:
        self.out: list[tuple[int, bytes]] = []

    def send(self, target: Any, data: bytes) -> None:
        self.out.append((target.port, data))


class Peers:
    """The sipp UAC (caller) and UAS (callee) of the e2e call scenario, as plain functions."""

    def __init__(self, server: Server, server_port: int) -> None:
        self.server = server
        self.core = server.core
        assert self.core is not None
        self.sent = _Sent()
        self.core.sender = self.sent
        self.caller_src = Source("udp", *CALLER, None)
        self.callee_src = Source("udp", *CALLEE, None)
        self.server_port = server_port
        #: the time spent in the peers (not the server's work)
        self.peer_cpu = 0.0
        #: established calls: caller Call-ID -> (caller's To tag, caller contact, callee BYE info)
        self.dialogs: dict[str, tuple[str, str]] = {}
        self.failures = 0

    def _inject(self, data: bytes, source: Source) -> None:
        self.core.on_message(parse_datagram(data), source)  # type: ignore[union-attr]

    def _take(self) -> list[tuple[int, bytes]]:
        out, self.sent.out = self.sent.out, []
        return out

    def invite(self, i: int) -> bytes:
        host, port = CALLER
        sp = self.server_port
        return (
            f"INVITE sip:1002@127.0.0.1:{sp} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{i}-1;rport\r\n"
            f"From: <sip:1001@127.0.0.1:{sp}>;tag={i}SIPpTag001\r\n"
            f"To: <sip:1002@127.0.0.1:{sp}>\r\n"
            f"Call-ID: {i}-cm@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:1001@{host}:{port};transport=UDP>\r\nMax-Forwards: 70\r\n"
            f"Subject: mss test\r\nUser-Agent: mss-bench sipp\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
        ).encode() + SDP

    def in_dialog(self, method: str, i: int, cseq: int, to_tag: str, ruri: str) -> bytes:
        host, port = CALLER
        sp = self.server_port
        return (
            f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{i}-{cseq}{method};rport\r\n"
            f"From: <sip:1001@127.0.0.1:{sp}>;tag={i}SIPpTag001\r\n"
            f"To: <sip:1002@127.0.0.1:{sp}>;tag={to_tag}\r\n"
            f"Call-ID: {i}-cm@127.0.0.1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()

    def _callee_answers(self, data: bytes) -> list[bytes]:
        """What the sipp UAS sends for a request it receives."""
        req = parse_datagram(data)
        assert isinstance(req, Request)
        contact = [("Contact", f"<sip:{CALLEE[0]}:{CALLEE[1]};transport=UDP>")]
        if req.method == "INVITE":
            tag = f"{req.call_id[:12]}SIPpTag01"  # type: ignore[index]
            ring = make_response(req, 180, to_tag=tag, headers=contact)
            ok = make_response(
                req,
                200,
                to_tag=tag,
                headers=[*contact, ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")],
                body=ANSWER,
                content_type="application/sdp",
            )
            return [bytes(ring), bytes(ok)]
        if req.method == "BYE":
            return [bytes(make_response(req, 200, headers=contact))]
        return []  # the ACK

    def _run(self, data: bytes, source: Source) -> list[tuple[int, bytes]]:
        """Hand ``data`` to the server, then let the callee answer until it is quiet."""
        t0 = time.process_time()
        self._inject(data, source)
        self.peer_cpu -= time.process_time() - t0
        to_caller: list[tuple[int, bytes]] = []
        pending = self._take()
        while pending:
            nxt: list[bytes] = []
            for port, out in pending:
                if port == CALLEE[1]:
                    nxt += self._callee_answers(out)
                else:
                    to_caller.append((port, out))
            pending = []
            for answer in nxt:
                t1 = time.process_time()
                self._inject(answer, self.callee_src)
                self.peer_cpu -= time.process_time() - t1
                pending += self._take()
        return to_caller

    def setup(self, i: int) -> None:
        """INVITE → 100 / 180 / 200 → ACK: one established call."""
        t0 = time.process_time()
        got = self._run(self.invite(i), self.caller_src)
        final = [parse_datagram(d) for _, d in got]
        oks = [r for r in final if isinstance(r, Response) and r.status == 200]
        if not oks:
            self.failures += 1
            self.peer_cpu += time.process_time() - t0
            return
        ok = oks[0]
        to_tag = ok.to.tag  # type: ignore[union-attr]
        assert to_tag is not None and ok.contact is not None
        ruri = str(ok.contact.uri)
        self._remember(i, to_tag, ruri)
        ack = self.in_dialog("ACK", i, 1, to_tag, ruri)
        self._run(ack, self.caller_src)
        self.peer_cpu += time.process_time() - t0

    def _remember(self, i: int, to_tag: str, ruri: str) -> None:
        self.dialogs[f"{i}-cm@127.0.0.1"] = (to_tag, ruri)  # the peers' memory, filtered out

    def bye(self, i: int) -> None:
        """The caller hangs up: BYE → 200 (the callee's BYE → 200 on the other leg)."""
        t0 = time.process_time()
        to_tag, ruri = self.dialogs.pop(f"{i}-cm@127.0.0.1")
        got = self._run(self.in_dialog("BYE", i, 2, to_tag, ruri), self.caller_src)
        if not any(d.startswith(b"SIP/2.0 200") for _, d in got):
            self.failures += 1
        self.peer_cpu += time.process_time() - t0


class GcPauses:
    """``gc.callbacks`` entry: collections per generation, their total and longest pause."""

    def __init__(self) -> None:
        self.started = 0.0
        self.stats: dict[int, list[float]] = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        s = self.stats[info["generation"]]
        s[0] += 1
        s[1] += took
        s[2] = max(s[2], took)

    def describe(self) -> str:
        return "; ".join(
            f"gen {g}: {int(n)} collections, {total * 1e3:.1f} ms, longest {most * 1e3:.1f} ms"
            for g, (n, total, most) in self.stats.items()
        )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _where(stat: tracemalloc.StatisticDiff) -> str:
    return _frame(stat.traceback[0])


def _frame(frame: tracemalloc.Frame) -> str:
    fn = frame.filename
    for mark in ("/src/", "/lib/python"):
        if mark in fn:
            fn = fn.split(mark, 1)[1]
            break
    line = linecache.getline(frame.filename, frame.lineno).strip()
    return f"{fn}:{frame.lineno}  {line[:70]}"


async def run(args: argparse.Namespace, data_dir: Path) -> int:
    overrides: dict[str, Any] = {
        "data_dir": str(data_dir),
        "transport.listen": "udp:127.0.0.1:0",
        "stun.enabled": False,
        "stun.port": 0,
        "api.enabled": False,
        "sip.domain": "example.test",
        "storage.backend": args.storage,
        "timers.t1": args.t1,
        "timers.t2": args.t1 * 8,
        "log.level": "warning",
    }
    cfg = load_config(None, env={}, overrides=overrides)
    server = Server(cfg)
    await server.start()
    try:
        assert server.users is not None and server.b2bua is not None and server.cdr is not None
        await server.users.add("1001", "pw-1001", allow_ips=[f"{CALLER[0]}:{CALLER[1]}"])
        await server.users.add("1002", "pw-1002", allow_ips=[f"{CALLEE[0]}:{CALLEE[1]}"])
        peers = Peers(server, server.port("udp"))
        tcfg = cfg.transport
        tune_gc(tcfg.gc_threshold)  # the collector as `mss serve` sets it up
        if tcfg.gc_freeze_interval > 0:
            keeper = GcKeeper(
                freeze_interval=tcfg.gc_freeze_interval, full_interval=tcfg.gc_full_interval
            )
            server._tasks.append(asyncio.ensure_future(keeper.run()))
        settle = 64 * args.t1 + 0.5
        b2bua = server.b2bua
        print(
            f"fastsip {fastsip.__version__} (extensions: {fastsip.USING_EXTENSIONS}); "
            f"storage {args.storage}; T1 {args.t1} s; gc threshold {gc.get_threshold()}"
        )

        # warm-up: caches, interned strings, the CDR writer, the timer wheel's slots
        for i in range(200):
            peers.setup(i)
            peers.bye(i)
        await server.cdr.flush()
        await asyncio.sleep(settle)
        assert peers.failures == 0, "warm-up calls failed"

        # 1. memory of established calls
        n = args.calls
        gc.collect()
        if not args.rss:
            tracemalloc.start(args.frames)
        base = tracemalloc.take_snapshot() if not args.rss else None
        rss0 = rss_bytes()
        for i in range(1000, 1000 + n):
            peers.setup(i)
            if i % 100 == 0:
                await asyncio.sleep(0)
        await server.cdr.flush()
        assert peers.failures == 0 and b2bua.active_calls == n, (peers.failures, b2bua.active_calls)

        def measure(when: str) -> None:
            gc.collect()
            if args.rss:
                print(f"\n{when}: RSS {(rss_bytes() - rss0) / n:,.0f} B per established call")
                return
            own = Peers._remember.__code__.co_firstlineno + 1
            snap = tracemalloc.take_snapshot().filter_traces(
                (
                    tracemalloc.Filter(False, linecache.__file__),
                    tracemalloc.Filter(False, __file__, own),
                )
            )
            assert base is not None
            diff = snap.compare_to(base, "traceback" if args.frames > 1 else "lineno")
            total = sum(d.size_diff for d in diff)
            count = sum(d.count_diff for d in diff)
            print(
                f"\n{when}: {total / n:,.0f} B and {count / n:.1f} blocks per established call "
                f"(tracemalloc, {n} calls); top holders (B per call, blocks per call):"
            )
            for d in sorted(diff, key=lambda d: -d.size_diff)[: args.top]:
                print(f"  {d.size_diff / n:8,.0f} {d.count_diff / n:6.2f}  {_where(d)}")
                for frame in list(d.traceback)[1 : args.frames]:
                    print(f"  {'':15}  <- {_frame(frame)}")

        measure("right after set-up (INVITE transactions until Timer L/M)")
        await asyncio.sleep(settle)
        measure(f"after every transaction timer ({settle:.1f} s later)")
        if not args.rss:
            tracemalloc.stop()
        for i in range(1000, 1000 + n):
            peers.bye(i)
        await server.cdr.flush()
        await asyncio.sleep(settle)
        gc.collect()

        # 2. CPU per full call
        m = args.cpu_calls
        peers.peer_cpu = 0.0
        prof = cProfile.Profile() if args.profile else None
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        t0 = time.process_time()
        if prof is not None:
            prof.enable()
        first = 1000 + n
        for i in range(first, first + m + HELD):
            if i < first + m:
                peers.setup(i)
                await asyncio.sleep(0)
            if i - HELD >= first:
                peers.bye(i - HELD)
                await asyncio.sleep(0)
        await server.cdr.flush()
        calls_cpu = time.process_time() - t0
        await asyncio.sleep(settle)  # the transaction timers fire (their cost is the server's)
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
        total = time.process_time() - t0
        gc.callbacks.remove(pauses)
        server_cpu = total - peers.peer_cpu
        assert peers.failures == 0, f"{peers.failures} calls failed"
        print(
            f"\nCPU per full call (INVITE/180/200/ACK/BYE/200 on both legs, call record on "
            f"{args.storage}): {server_cpu / m * 1e6:,.0f} µs in the server "
            f"({(calls_cpu - peers.peer_cpu) / m * 1e6:,.0f} µs before the timers fire; "
            f"fake peers {peers.peer_cpu / m * 1e6:,.0f} µs, not counted), {m} calls"
        )
        print(f"garbage collector during those calls: {pauses.describe()}")
        if prof is not None:
            print(f"profile written to {args.profile} (python -m pstats {args.profile})")
        return 0
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=2000, help="established calls measured")
    ap.add_argument("--cpu-calls", type=int, default=2000, help="full calls timed")
    ap.add_argument("--storage", choices=("sqlite", "memory"), default="sqlite")
    ap.add_argument("--t1", type=float, default=0.2, help="SIP T1, seconds (see above)")
    ap.add_argument("--rss", action="store_true", help="RSS delta instead of tracemalloc")
    ap.add_argument("--top", type=int, default=15, help="allocation sites listed")
    ap.add_argument(
        "--frames", type=int, default=1, help="tracemalloc frames: >1 groups by call stack"
    )
    ap.add_argument("--profile", metavar="FILE", help="cProfile of the CPU phase")
    args = ap.parse_args(argv)
    args.calls = max(1, min(args.calls, 50000))
    args.cpu_calls = max(1, min(args.cpu_calls, 50000))
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
