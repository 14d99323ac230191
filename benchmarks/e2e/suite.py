"""The end-to-end run: every scenario of the table against Kamailio and mss, then the report.

See :mod:`benchmarks.e2e` for the command line and what is measured. The order of work:

1. check the tools (sipp, kamailio, py-spy when profiling), make a private run directory;
2. for each scenario of :data:`benchmarks.e2e.scenarios.SCENARIOS` and each server: provision,
   start, run (a rate ladder, the flood phases, or a memory measurement), stop;
3. stop anything still running, check that no process whose command line names the run
   directory survives (and end it by pid if one does: the run then exits 1);
4. write ``benchmarks/results/e2e-<timestamp>.{json,md,png}`` and print the markdown.

Every sipp run is bounded (``-m`` calls and ``-timeout``), every ladder by its rungs and
``--ladder-seconds``, the whole run by ``--budget``; traffic goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests" / "mss") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "mss"))  # the sipp harness (tests/mss/sipp.py)

from sipp import SippResult, free_udp_port, run_sipp, start_sipp_uas, write_inf_file  # noqa: E402

from . import procs, profile, report  # noqa: E402
from .scenarios import LEGIT_IP, SCENARIOS, Ladder, Scenario  # noqa: E402
from .servers import KamailioServer, MssServer, Server, user_rows  # noqa: E402

__all__ = ("FLOOD_SOURCE", "Suite", "is_clean", "main")

try:  # the flood generator of benchmarks/flood.py (issue 6), reused rather than copied
    from benchmarks import flood as floodgen

    FLOOD_SOURCE = floodgen.FLOOD_SOURCE
except ImportError:  # pragma: no cover - flood.py not there yet
    floodgen = None  # type: ignore[assignment]
    FLOOD_SOURCE = "127.0.0.66"

RESULTS = ROOT / "benchmarks" / "results"
SERVER_CLASSES: dict[str, type[Server]] = {"kamailio": KamailioServer, "mss": MssServer}

#: The clean-rate criteria (issue 9).
MAX_RETRANS_PCT = 1.0
MIN_FAST_PCT = 95.0  # responses under 10 ms

MULTI_PROCESS_NOTE = (
    "not measured: `mss serve` cannot share a UDP port between processes yet, and its state is "
    "per process. (1) The transport binds its UDP socket without SO_REUSEPORT "
    "(`loop.create_datagram_endpoint(..., local_addr=...)` in mss/transport/layer.py, no "
    "`reuse_port`), so a second `mss serve` on the same port fails with EADDRINUSE. (2) Even with "
    "it, the kernel spreads datagrams by the sender's address and port: one sipp socket lands on "
    "one worker, and a callee's responses and in-dialog requests land on whichever worker their "
    "4-tuple hashes to, not the one holding the transaction or the B2BUA call (transactions, "
    "dialogs, the B2BUA's call table and the timer wheel live in one process's memory). "
    "(3) Bindings are in each process's LocationService, loaded from SQLite once at start and "
    "followed by nobody afterwards (the change feed is followed for users, bans and lists, not "
    "bindings): a phone registered through worker A is offline for worker B. (4) Nonce-count "
    "replay state (NonceCounter) and fail-to-ban counters are per process, so a replay or a "
    "password-guessing source spread over workers is seen only partly. What would make it "
    "correct: `reuse_port` on the listener, bindings followed through the change feed (or a "
    "shared store), and either stateless routing of responses to the owning worker (a worker id "
    "in the Via branch / Contact, as Kamailio's shared-memory transaction table avoids needing) "
    "or one process owning each dialog."
)


def is_clean(step: dict[str, Any]) -> bool:
    """0 failed calls, every call done, < 1 % retransmissions, >= 95 % of responses < 10 ms."""
    return bool(
        step["failed"] == 0
        and step["ok"] == step["calls"]
        and step["retrans_pct"] < MAX_RETRANS_PCT
        and step["fast_pct"] >= MIN_FAST_PCT
    )


def is_delivered(step: dict[str, Any]) -> bool:
    """Every call done, none failed, < 1 % retransmissions: clean but for the response times."""
    return bool(
        step["failed"] == 0
        and step["ok"] == step["calls"]
        and step["retrans_pct"] < MAX_RETRANS_PCT
    )


class Suite:
    """Options and shared state of one run."""

    def __init__(self, args: argparse.Namespace, run_dir: Path) -> None:
        self.args = args
        self.users: int = args.users
        self.step_seconds: float = args.step_seconds
        self.memory_bindings: int = args.memory_bindings
        self.memory_calls: int = args.memory_calls
        self.run_dir = run_dir
        self.uas_port = free_udp_port()
        self.started = time.monotonic()
        self.budget: float = args.budget
        self.servers: list[Server] = []
        self._inf: dict[int, Path] = {}
        self.best: dict[tuple[str, str], int] = {}  # (scenario, server) -> highest clean rate
        #: (scenario, server) -> highest rate with every call done and < 1 % retransmissions
        self.best_delivered: dict[tuple[str, str], int] = {}

    def inf(self, n: int) -> Path:
        if n not in self._inf:
            self._inf[n] = write_inf_file(self.run_dir / f"users-{n}.csv", user_rows(n))
        return self._inf[n]

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.budget - self.elapsed()

    def sipp_dir(self) -> Path:
        return self.run_dir / "sipp"

    def new_server(self, scenario: Scenario, kind: str) -> Server:
        server = SERVER_CLASSES[kind](
            self.run_dir / f"{scenario.key}-{kind}", scenario.provision(self), kind
        )
        self.servers.append(server)
        return server


# --------------------------------------------------------------------------- sipp results


def _epoch(stats: dict[str, str], key: str) -> float | None:
    value = stats.get(key, "")
    try:
        return float(value.split("\t")[-1])
    except ValueError:
        return None


def response_buckets(stats: dict[str, str]) -> dict[str, int]:
    """sipp's ResponseTimeRepartition1 counters (cumulative): ``{"<10": n, "<20": n, ...}``."""
    out = {}
    for key, value in stats.items():
        if key.startswith("ResponseTimeRepartition1_"):
            with contextlib.suppress(ValueError):
                out[key.split("_", 1)[1]] = int(value)
    return out


def _peak_calls(screen: str) -> int:
    found = re.findall(r"Peak was (\d+) calls", screen)
    return int(found[-1]) if found else 0


def step_figures(
    r: SippResult, *, rate: float, calls: int, requests_per_call: int, tail: float = 0.0
) -> dict[str, Any]:
    """The figures of one sipp run. ``tail``: seconds each call lasts after the server's part
    (hold time and the final timewait), left out of the time the achieved rate is taken over."""
    buckets = response_buckets(r.stats)
    total = sum(buckets.values())
    start, end = _epoch(r.stats, "StartTime"), _epoch(r.stats, "CurrentTime")
    elapsed = (end - start) if start and end and end > start else r.elapsed
    try:
        created = float(r.stats.get("CallRate(C)", "0"))
    except ValueError:
        created = 0.0
    return {
        "rate": rate,
        "calls": calls,
        "ok": r.successful,
        "failed": r.failed,
        "unexpected": r.unexpected,
        "retrans": r.retransmissions,
        "retrans_pct": 100.0 * r.retransmissions / max(1, calls * requests_per_call),
        "fast_pct": 100.0 * buckets.get("<10", 0) / total if total else 0.0,
        "response_buckets": buckets,
        "sipp_seconds": round(elapsed, 3),
        "achieved": r.successful / max(0.5, elapsed - tail) if elapsed > 0 else 0.0,
        "created_rate": created,
        "returncode": r.returncode,
        "peak_calls": _peak_calls(r.screen),
    }


def _sipp_kwargs(
    suite: Suite, scenario: Scenario, server: Server
) -> tuple[dict[str, Any], list[str]]:
    opts = dict(scenario.sipp_options(suite, server))
    extra = list(opts.pop("extra", []))
    return opts, extra


# --------------------------------------------------------------------------- rate ladders


def run_step(
    suite: Suite,
    scenario: Scenario,
    server: Server,
    sampler: procs.Sampler,
    rate: int,
    seconds: float,
) -> dict[str, Any]:
    calls = max(1, int(rate * seconds))
    hold = scenario.hold_ms / 1000
    timeout = seconds * 2 + hold + 15
    opts, extra = _sipp_kwargs(suite, scenario, server)
    if scenario.hold_ms:
        extra += ["-d", str(scenario.hold_ms)]
    extra += ["-l", str(max(200, int(rate * (hold + 3))))]
    if scenario.before_step is not None:
        scenario.before_step(suite, server)
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        uas = None
        if scenario.uas is not None:
            uas = stack.enter_context(
                start_sipp_uas(
                    scenario=scenario.uas,
                    port=suite.uas_port,
                    timeout=timeout + hold + 20,
                    stop_grace=hold + 8,
                    extra=["-l", "200000"],
                    workdir=suite.sipp_dir(),
                )
            )
        tree = server.pids()
        sampler.reset()
        drops0 = procs.socket_drops(server.port) or 0
        cpu0 = procs.cpu_seconds(tree)
        t0 = time.monotonic()
        r = run_sipp(
            server.target,
            scenario=scenario.uac,
            calls=calls,
            rate=rate,
            local_ip=scenario.local_ip,
            timeout=timeout,
            extra=extra,
            workdir=suite.sipp_dir(),
            **opts,
        )
        wall = time.monotonic() - t0
        cpu = procs.cpu_seconds(tree) - cpu0
        drops = (procs.socket_drops(server.port) or 0) - drops0
        peak_pss, peak_rss = sampler.peaks()
        u = uas.stop() if uas is not None else None
    step = step_figures(
        r,
        rate=rate,
        calls=calls,
        requests_per_call=scenario.requests_per_call,
        tail=hold + scenario.tail_ms / 1000,
    )
    if u is not None:
        step["uas_ok"], step["uas_failed"], step["uas_retrans"] = (
            u.successful,
            u.failed,
            u.retransmissions,
        )
        step["failed"] += u.failed
        step["retrans"] += u.retransmissions
        step["retrans_pct"] = 100.0 * step["retrans"] / max(1, calls * scenario.requests_per_call)
    step.update(
        {
            "wall": round(wall, 3),
            "server_cpu_s": round(cpu, 4),
            "cpu_us_per_call": 1e6 * cpu / step["ok"] if step["ok"] else None,
            "server_cores": cpu / wall if wall > 0 else 0.0,
            "peak_pss_kib": peak_pss,
            "peak_rss_kib": peak_rss,
            "socket_drops": drops,
            "loadavg": [round(x, 2) for x in load],
        }
    )
    step["clean"] = is_clean(step)
    step["delivered"] = is_delivered(step)
    if not step["clean"]:
        step["sipp"] = r.describe()[-2500:]
        if u is not None and u.failed:
            step["sipp_uas"] = u.describe()[-1500:]
    return step


def preflight(suite: Suite, scenario: Scenario, server: Server) -> str | None:
    """5 calls at 5/s; None when they all succeed, else what went wrong."""
    opts, extra = _sipp_kwargs(suite, scenario, server)
    extra += ["-d", "100"]
    with start_sipp_uas(
        scenario=scenario.uas, port=suite.uas_port, timeout=40, workdir=suite.sipp_dir()
    ) as uas:
        r = run_sipp(
            server.target,
            scenario=scenario.uac,
            calls=5,
            rate=5,
            local_ip=scenario.local_ip,
            timeout=20,
            extra=extra,
            workdir=suite.sipp_dir(),
            **opts,
        )
        u = uas.stop()
    if r.successful == 5 and r.failed == 0 and u.failed == 0:
        return None
    return str(r.describe())[-1500:]


def _step_line(scenario: Scenario, kind: str, s: dict[str, Any]) -> str:
    cpu = f"{s['cpu_us_per_call']:.0f}" if s["cpu_us_per_call"] else "-"
    return (
        f"  {scenario.key:16} {kind:8} offered {s['rate']:>6}/s  achieved {s['achieved']:>8.0f}/s  "
        f"ok {s['ok']:>6}/{s['calls']:<6} failed {s['failed']:>4}  retrans {s['retrans_pct']:5.2f}%  "
        f"<10ms {s['fast_pct']:5.1f}%  cpu {cpu:>5} us/call  load {s['loadavg'][0]:.2f}  "
        f"{'clean' if s['clean'] else 'NOT clean'}"
    )


def run_rate(suite: Suite, scenario: Scenario, kind: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"server": kind, "status": "ok", "steps": []}
    server = suite.new_server(scenario, kind)
    try:
        server.start()
        entry["start_seconds"] = round(server.start_seconds, 2)
        if scenario.after_start is not None:
            scenario.after_start(suite, server)
        with procs.Sampler([server.proc.pid]) as sampler:  # type: ignore[union-attr]
            entry["idle_pss_kib"] = sampler.sample()[0]
            if scenario.preflight:
                problem = preflight(suite, scenario, server)
                if problem is not None:
                    entry["status"] = "not supported (5 calls at 5/s failed)"
                    entry["preflight"] = problem
                    print(f"  {scenario.key} {kind}: preflight failed, not stepped", flush=True)
                    return entry
            t0 = time.monotonic()
            fixed = tuple(int(x) for x in suite.args.rates.split(",")) if suite.args.rates else ()
            ladder = Ladder(
                scenario.start_rate,
                scenario.max_rate,
                refine=suite.args.refine,
                fixed=fixed,
                stop_after=suite.args.stop_after,
            )
            cap = suite.args.ladder_seconds
            if not suite.args.quick:
                cap = max(cap, scenario.ladder_seconds)
            while (rate := ladder.next()) is not None:
                need = suite.step_seconds * 2 + scenario.hold_ms / 1000 + 8
                if time.monotonic() - t0 + need > cap:
                    entry["note"] = f"search stopped by its wall-time cap ({cap:g} s)"
                    break
                if suite.remaining() < need + suite.args.reserve:
                    entry["note"] = "search stopped by the time budget"
                    break
                step = run_step(suite, scenario, server, sampler, rate, suite.step_seconds)
                entry["steps"].append(step)
                print(_step_line(scenario, kind, step), flush=True)
                ladder.record(rate, step["clean"])
                time.sleep(0.5)
            if kind == "mss" and scenario.key in suite.args.profile and suite.remaining() > 60:
                entry["profile"] = run_profile(suite, scenario, server, entry["steps"])
    except Exception as exc:  # a broken server or harness: reported, the run goes on
        entry["status"] = f"error: {exc}"
        entry["log_tail"] = server.log_tail()
        print(f"  {scenario.key} {kind}: error: {exc}", flush=True)
    finally:
        server.stop()
    clean = [s for s in entry["steps"] if s["clean"]]
    if clean:
        best = max(clean, key=lambda s: s["rate"])
        entry["best_rate"] = best["rate"]
        entry["best"] = {
            k: best[k]
            for k in (
                "rate",
                "achieved",
                "cpu_us_per_call",
                "fast_pct",
                "retrans_pct",
                "server_cores",
                "peak_pss_kib",
            )
        }
        suite.best[(scenario.key, kind)] = best["rate"]
    else:
        entry["best_rate"] = 0
    delivered = [s["rate"] for s in entry["steps"] if s.get("delivered")]
    entry["best_delivered_rate"] = max(delivered, default=0)
    suite.best_delivered[(scenario.key, kind)] = entry["best_delivered_rate"]
    entry["peak_pss_kib"] = max(
        (s["peak_pss_kib"] for s in entry["steps"]), default=entry.get("idle_pss_kib", 0)
    )
    return entry


def run_profile(
    suite: Suite, scenario: Scenario, server: Server, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """py-spy on ``mss serve`` while sipp runs the scenario at 80 % of the highest rate where
    every call succeeded with < 1 % retransmissions (response times aside: the point is to see
    where the CPU goes under load, not at the trickle a latency bound may allow).

    Two passes of ``--profile-seconds`` each: Python frames only, sampling the thread that
    holds the GIL (``--gil``: the CPU the interpreter spends, without idle worker threads), then
    with native frames (``--native``: the C code of uvloop, libc, the interpreter -- where the
    garbage collector and the syscalls show up). Native samples are wall-clock samples of a
    running thread: time preempted inside a syscall (on this 2-core machine, sipp runs as soon
    as a send wakes it) counts too, so syscalls are over-represented there.
    """
    good = [s["rate"] for s in steps if s.get("delivered")] or [
        s["rate"] for s in steps if s["clean"]
    ]
    rate = max(10, int(0.8 * max(good))) if good else scenario.start_rate
    seconds = suite.args.profile_seconds
    suite.args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"rate": rate, "seconds": seconds}
    sampler = procs.Sampler([server.proc.pid])  # type: ignore[union-attr]  # read, not started
    for mode in ("python", "native"):
        out = suite.args.out / f"{suite.args.stamp}-pyspy-{scenario.key}-{mode}.txt"
        assert server.proc is not None
        spy = profile.record(
            server.proc.pid,
            out,
            seconds + scenario.hold_ms / 1000 + 4,  # the step's set-up and its calls' hold too
            native=mode == "native",
            gil=mode == "python",
        )
        err = b""
        try:
            time.sleep(0.5)
            # the same step as the search ran: callee UAS, fresh callee port, call hold
            step = run_step(suite, scenario, server, sampler, rate, seconds)
            _, err = spy.communicate(timeout=seconds + scenario.hold_ms / 1000 + 40)
        finally:
            if spy.poll() is None:
                procs.reap([spy.pid])
                spy.wait(5)
        if not out.exists():
            result[mode] = {"error": (err or b"").decode(errors="replace")[-1000:]}
            continue
        ranking = profile.rank(out.read_text(errors="replace"))
        print(
            f"  profile ({mode}): {ranking.samples} samples at {rate}/s -> {out.name}", flush=True
        )
        result[mode] = {
            "ok": step["ok"],
            "failed": step["failed"],
            "cpu_us_per_call": step["cpu_us_per_call"],
            "file": str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
            **ranking.as_dict(40),
        }
    return result


# --------------------------------------------------------------------------- flood


def run_flood(suite: Suite, scenario: Scenario, kind: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"server": kind, "status": "ok"}
    if floodgen is None:
        entry["status"] = "pending: benchmarks/flood.py (the flood generator) is missing"
        return entry
    seconds = suite.args.flood_seconds
    rate, legit_rate = suite.args.flood_rate, suite.args.legit_rate
    server = suite.new_server(scenario, kind)
    phases: dict[str, dict[str, Any]] = {}
    opts, extra = _sipp_kwargs(suite, scenario, server)
    calls = max(1, int(legit_rate * seconds))

    def legit() -> SippResult:
        return run_sipp(
            server.target,
            scenario=scenario.uac,
            calls=calls,
            rate=legit_rate,
            local_ip=LEGIT_IP,
            timeout=seconds + 20,
            extra=[*extra, "-l", str(max(200, legit_rate * 3))],
            workdir=suite.sipp_dir(),
            **opts,
        )

    def measure(name: str, body: Any) -> None:
        tree = server.pids()
        d0 = procs.socket_drops(server.port) or 0
        c0, t0 = procs.cpu_seconds(tree), time.monotonic()
        extra_fields = body() or {}
        phases[name] = {
            "cpu": procs.cpu_seconds(tree) - c0,
            "wall": time.monotonic() - t0,
            "socket_drops": (procs.socket_drops(server.port) or 0) - d0,
            **extra_fields,
        }

    def flood_only() -> dict[str, Any]:
        with floodgen.flood_process(server.port, rate, seconds) as proc:
            return dict(floodgen.sender_result(proc))

    def legit_only() -> dict[str, Any]:
        r = legit()
        return {
            "calls": calls,
            "ok": r.successful,
            "failed": r.failed,
            "retrans": r.retransmissions,
        }

    def both() -> dict[str, Any]:
        with floodgen.flood_process(server.port, rate, seconds) as proc:
            r = legit()
            sent = dict(floodgen.sender_result(proc))
        out = {
            "calls": calls,
            "ok": r.successful,
            "failed": r.failed,
            "retrans": r.retransmissions,
            **sent,
        }
        if r.failed or r.successful != calls:
            out["sipp"] = r.describe()[-2000:]
        return out

    try:
        server.start()
        time.sleep(1.0)
        measure("idle", lambda: time.sleep(seconds))
        measure("flood", flood_only)
        time.sleep(1.0)
        measure("legit", legit_only)
        time.sleep(1.0)
        measure("flood+legit", both)
    except Exception as exc:
        entry["status"] = f"error: {exc}"
        entry["log_tail"] = server.log_tail()
        print(f"  flood {kind}: error: {exc}", flush=True)
        return entry
    finally:
        server.stop()
    idle_rate = phases["idle"]["cpu"] / phases["idle"]["wall"]
    f, lg, fl = phases["flood"], phases["legit"], phases["flood+legit"]
    received = max(1, f["sent"] - f["socket_drops"])
    received_fl = max(1, fl["sent"] - fl["socket_drops"])
    extra_cpu = fl["cpu"] - lg["cpu"] * (fl["wall"] / lg["wall"])
    entry.update(
        {
            "phases": phases,
            "flood_rate_sent": f["sent"] / f["elapsed"],
            "flood_received": received,
            "us_per_dropped": 1e6 * (f["cpu"] - idle_rate * f["wall"]) / received,
            "loaded_us_per_dropped": 1e6 * extra_cpu / received_fl,
            "legit_calls": fl["calls"],
            "legit_ok": fl["ok"],
            "legit_failed": fl["failed"],
            "legit_success_pct": 100.0 * fl["ok"] / max(1, fl["calls"]),
            "legit_only_ok": lg["ok"],
            "legit_only_failed": lg["failed"],
        }
    )
    print(
        f"  flood {kind:8} {entry['flood_rate_sent']:.0f} packets/s sent, {received} reached the server: "
        f"{entry['us_per_dropped']:.2f} us CPU per dropped packet; legit {fl['ok']}/{fl['calls']} ok",
        flush=True,
    )
    return entry


# --------------------------------------------------------------------------- memory


def run_memory_bindings(suite: Suite, scenario: Scenario, kind: str) -> dict[str, Any]:
    """Memory of the server tree with N users, before and with N bindings.

    Kamailio: the bindings are registered with sipp (digest) at 80 % of its highest clean
    REGISTER rate, at most 8,000/s. mss: they are written to its storage and loaded at start,
    as a restart would load them (the brief allows it; registering 100,000 with sipp at the
    rate mss sustains would not fit the time budget, and right after a registration burst mss
    still holds every REGISTER's transaction for Timer J, 32 s, which the ladders' peak PSS
    shows). Baseline: the same server with the N users and no binding.
    """
    entry: dict[str, Any] = {"server": kind, "status": "ok"}
    n = suite.memory_bindings
    server = suite.new_server(scenario, kind)
    try:
        t0 = time.monotonic()
        server.start(timeout=240)
        entry["start_seconds"] = round(time.monotonic() - t0, 1)
        time.sleep(1.5)
        base_pss, base_rss = procs.memory_kib(server.pids())
        base_shm = server.shm_used() if isinstance(server, KamailioServer) else None
        if isinstance(server, MssServer):
            server.stop()
            asyncio.run(server.write_bindings(n))
            server.start(timeout=240)
            time.sleep(1.5)
            bindings, failed, rate = n, 0, 0
            entry["method"] = "written to storage, loaded at start"
        else:
            best = suite.best_delivered.get(("register-digest", kind), 0)
            rate = max(500, min(8000, int(0.8 * best) if best else 2000))
            calls = min(n, int(rate * suite.args.memory_seconds))
            r = run_sipp(
                server.target,
                scenario=scenario.uac,
                calls=calls,
                rate=rate,
                inf_file=suite.inf(n),
                timeout=calls / rate * 2 + 30,
                extra=["-l", str(max(200, rate * 3))],
                workdir=suite.sipp_dir(),
            )
            bindings, failed = r.successful, r.failed
            entry["method"] = f"registered with sipp at {rate}/s"
            time.sleep(2.0)
        pss, rss = procs.memory_kib(server.pids())
        shm = server.shm_used() if isinstance(server, KamailioServer) else None
    except Exception as exc:
        entry["status"] = f"error: {exc}"
        entry["log_tail"] = server.log_tail()
        print(f"  memory-bindings {kind}: error: {exc}", flush=True)
        return entry
    finally:
        server.stop()
    entry.update(
        {
            "users": n,
            "rate": rate,
            "bindings": bindings,
            "failed": failed,
            "base_pss_kib": base_pss,
            "pss_kib": pss,
            "base_rss_kib": base_rss,
            "rss_kib": rss,
            "bytes_per_binding": (pss - base_pss) * 1024 / bindings if bindings else None,
            "base_shm_bytes": base_shm,
            "shm_bytes": shm,
            "shm_bytes_per_binding": (shm - base_shm) / bindings
            if bindings and shm and base_shm
            else None,
        }
    )
    print(
        f"  memory-bindings {kind:8} {bindings} bindings ({entry['method']}): PSS "
        f"{base_pss / 1024:.1f} -> {pss / 1024:.1f} MiB",
        flush=True,
    )
    return entry


def run_memory_calls(suite: Suite, scenario: Scenario, kind: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"server": kind, "status": "ok"}
    best = suite.best_delivered.get(("calls", kind), 0)
    rate = max(50, min(1000, int(0.8 * best) if best else 200))
    hold = min(suite.memory_calls / rate, suite.args.memory_seconds / 2)
    calls = int(rate * (hold + 2))
    server = suite.new_server(scenario, kind)
    try:
        server.start()
        if scenario.after_start is not None:
            scenario.after_start(suite, server)
        problem = preflight(suite, scenario, server)
        if problem is not None:
            entry["status"] = "not supported (5 calls at 5/s failed)"
            entry["preflight"] = problem
            return entry
        time.sleep(1.0)
        opts, extra = _sipp_kwargs(suite, scenario, server)
        extra += ["-d", str(int(hold * 1000)), "-l", str(calls + 100)]
        probe = server.shm_used if isinstance(server, KamailioServer) else None
        base_shm = probe() if probe is not None else None
        with procs.Sampler([server.proc.pid], probe=probe) as sampler:  # type: ignore[union-attr]
            base_pss, base_rss = sampler.sample()
            sampler.reset()
            with start_sipp_uas(
                scenario=scenario.uas,
                port=suite.uas_port,
                timeout=calls / rate + hold + 60,
                stop_grace=15,
                extra=["-l", "200000"],
                workdir=suite.sipp_dir(),
            ) as uas:
                r = run_sipp(
                    server.target,
                    scenario=scenario.uac,
                    calls=calls,
                    rate=rate,
                    local_ip=scenario.local_ip,
                    timeout=calls / rate + hold + 40,
                    extra=extra,
                    workdir=suite.sipp_dir(),
                    **opts,
                )
                u = uas.stop()
            peak_pss, peak_rss = sampler.peaks()
            peak_shm = sampler.peak_probe or None
    except Exception as exc:
        entry["status"] = f"error: {exc}"
        entry["log_tail"] = server.log_tail()
        return entry
    finally:
        server.stop()
    concurrent = int(min(calls, rate * hold))
    entry.update(
        {
            "rate": rate,
            "hold_s": round(hold, 1),
            "calls": calls,
            "ok": r.successful,
            "failed": r.failed + u.failed,
            "concurrent": concurrent,
            "uac_peak_calls": _peak_calls(r.screen),
            "base_pss_kib": base_pss,
            "peak_pss_kib": peak_pss,
            "base_rss_kib": base_rss,
            "peak_rss_kib": peak_rss,
            "kib_per_call": (peak_pss - base_pss) / concurrent if concurrent else None,
            "base_shm_bytes": base_shm,
            "peak_shm_bytes": peak_shm,
            "shm_kib_per_call": (peak_shm - base_shm) / 1024 / concurrent
            if concurrent and peak_shm and base_shm
            else None,
        }
    )
    if r.failed or u.failed:
        entry["sipp"] = r.describe()[-2000:]
    print(
        f"  memory-calls {kind:8} ~{concurrent} concurrent calls: PSS {base_pss / 1024:.1f} -> "
        f"{peak_pss / 1024:.1f} MiB ({r.successful} ok, {r.failed + u.failed} failed)",
        flush=True,
    )
    return entry


RUNNERS = {
    "rate": run_rate,
    "flood": run_flood,
    "memory-bindings": run_memory_bindings,
    "memory-calls": run_memory_calls,
}


# --------------------------------------------------------------------------- the run


def mss_settings(items: list[str]) -> dict[str, str]:
    """``--mss-set section.key=value`` options as the ``MSS_SECTION_KEY`` variables of mss."""
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, _, key = name.strip().partition(".")
        if not sep or not section or not key:
            raise SystemExit(f"--mss-set: expected SECTION.KEY=VALUE, got {item!r}")
        env[f"MSS_{section.upper()}_{key.upper()}"] = value
    return env


def versions() -> dict[str, str]:
    import fastsip

    def first_line(cmd: list[str], pattern: str = "") -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "missing"
        for line in (out.stdout + out.stderr).splitlines():
            if pattern in line and line.strip():
                return line.strip()
        return "?"

    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        loop = "asyncio"
    try:
        from importlib.metadata import version

        mss_version = version("fastsip")
    except Exception:
        mss_version = fastsip.__version__
    from benchmarks.machine import source_revision

    revision = source_revision()
    if revision:
        mss_version = f"{mss_version} (source {revision})"
    return {
        "kamailio": first_line(["kamailio", "-v"], "version"),
        "sipp": first_line(["sipp", "-v"], "SIPp"),
        "python": sys.version.split()[0],
        "fastsip": f"{fastsip.__version__} (extensions in use: {fastsip.USING_EXTENSIONS})",
        "mss": mss_version,
        "event_loop": loop,
    }


def check_tools(args: argparse.Namespace) -> list[str]:
    missing = [
        t
        for t in ("sipp", "kamailio")
        if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()
    ]
    return missing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from . import __doc__ as doc

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e",
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--users", type=int, default=10000, help="users provisioned in both servers (10000)"
    )
    ap.add_argument(
        "--step-seconds", type=float, default=5.0, help="duration of each rate step (5)"
    )
    ap.add_argument(
        "--refine",
        type=int,
        default=3,
        help="bisection steps between the last clean and the first unclean rate (3)",
    )
    ap.add_argument(
        "--stop-after",
        type=int,
        default=2,
        help="with --rates: stop after this many unclean steps in a row (2)",
    )
    ap.add_argument(
        "--ladder-seconds", type=float, default=75.0, help="wall-time cap of one ladder (75)"
    )
    ap.add_argument(
        "--budget", type=float, default=1140.0, help="wall-time budget of the whole run, s (1140)"
    )
    ap.add_argument("--reserve", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--scenarios",
        default=",".join(s.key for s in SCENARIOS),
        help="comma-separated scenario keys (default: all)",
    )
    ap.add_argument("--servers", default="kamailio,mss", help="kamailio,mss (default both)")
    ap.add_argument(
        "--mss-persist",
        choices=("write-back", "write-through"),
        default="write-back",
        help="mss [registrar] persist (default write-back, like Kamailio's in-memory usrloc)",
    )
    ap.add_argument(
        "--mss-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="another mss setting for the server under test, e.g. transport.gc_threshold=2000 "
        "(passed as MSS_SECTION_KEY; repeatable)",
    )
    ap.add_argument(
        "--rates",
        default="",
        help="a fixed list of rates for every rate scenario, instead of the search",
    )
    ap.add_argument("--flood-rate", type=float, default=25000, help="flood packets/s (25000)")
    ap.add_argument(
        "--flood-seconds", type=float, default=5.0, help="duration of each flood phase (5)"
    )
    ap.add_argument(
        "--legit-rate", type=int, default=500, help="legitimate REGISTERs/s during the flood (500)"
    )
    ap.add_argument(
        "--memory-bindings",
        type=int,
        default=100000,
        help="bindings for the memory scenario (100000)",
    )
    ap.add_argument(
        "--memory-calls",
        type=int,
        default=10000,
        help="concurrent calls for the memory scenario (10000)",
    )
    ap.add_argument(
        "--memory-seconds",
        type=float,
        default=70.0,
        help="cap on the registration time of memory-bindings, and twice the hold of memory-calls (70)",
    )
    ap.add_argument(
        "--profile",
        default="register-digest,calls",
        help="scenarios whose mss run is profiled with py-spy afterwards ('' for none)",
    )
    ap.add_argument("--profile-seconds", type=float, default=10.0)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1000 users, 2 s steps, short ladders, 5,000 bindings, 500 calls",
    )
    ap.add_argument(
        "--out", type=Path, default=RESULTS, help="results directory (benchmarks/results)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, sipp files)")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.users = min(args.users, 1000)
        args.step_seconds = 2.0
        args.memory_bindings = min(args.memory_bindings, 5000)
        args.memory_calls = min(args.memory_calls, 500)
        args.memory_seconds = min(args.memory_seconds, 20)
        args.flood_seconds = 2.0
        args.ladder_seconds = min(args.ladder_seconds, 30)
        args.profile_seconds = 3.0
        args.refine = min(args.refine, 1)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.servers = [s for s in args.servers.split(",") if s]
    args.profile = [s for s in args.profile.split(",") if s]
    args.stamp = "e2e-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = check_tools(args)
    if missing:
        print(
            f"missing: {', '.join(missing)} (run scripts/bench-e2e.sh, which installs them)",
            file=sys.stderr,
        )
        return 2
    unknown = [k for k in args.scenarios if k not in {s.key for s in SCENARIOS}]
    if unknown:
        print(f"unknown scenarios: {', '.join(unknown)}", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    from benchmarks import machine

    MssServer.registrar_persist = args.mss_persist
    MssServer.extra_env = mss_settings(args.mss_set)
    run_dir = Path(tempfile.mkdtemp(prefix="mss-e2e-"))
    suite = Suite(args, run_dir)
    results: dict[str, Any] = {
        "stamp": args.stamp,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "versions": versions(),
        "command": "python -m benchmarks.e2e "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "criteria": {
            "max_retrans_pct": MAX_RETRANS_PCT,
            "min_fast_pct": MIN_FAST_PCT,
            "fast_ms": 10,
            "max_failed": 0,
        },
        "scenarios": [],
        "multi_process": {"measured": False, "reason": MULTI_PROCESS_NOTE},
    }
    print(results["machine"])
    print("versions: " + "; ".join(f"{k} {v}" for k, v in results["versions"].items()))
    print(f"mss registrar persist: {args.mss_persist}")
    if args.mss_set:
        print(f"mss settings: {', '.join(args.mss_set)}")
    print(f"load average at start: {results['loadavg_start']}", flush=True)
    status = 0
    try:
        for scenario in SCENARIOS:
            if scenario.key not in args.scenarios:
                continue
            item: dict[str, Any] = {
                "key": scenario.key,
                "title": scenario.title,
                "kind": scenario.kind,
                "servers": {},
            }
            results["scenarios"].append(item)
            if scenario.pending:
                item["pending"] = scenario.pending
                continue
            print(f"\n== {scenario.key}: {scenario.title}", flush=True)
            for kind in args.servers:
                if suite.remaining() < 20:
                    item["servers"][kind] = {"server": kind, "status": "skipped: time budget"}
                    continue
                item["servers"][kind] = RUNNERS[scenario.kind](suite, scenario, kind)
    except KeyboardInterrupt as exc:
        results["interrupted"] = str(exc) or "interrupted"
        status = 130
    finally:
        for server in suite.servers:
            with contextlib.suppress(Exception):
                server.stop()
        left = procs.leftovers(str(run_dir))
        if left:
            procs.reap([pid for pid, _ in left])
            status = status or 1
        results["leftovers"] = [{"pid": pid, "cmd": cmd} for pid, cmd in left]
        results["leftovers_after_reap"] = [
            {"pid": pid, "cmd": cmd} for pid, cmd in procs.leftovers(str(run_dir))
        ]
        results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results["duration_s"] = round(suite.elapsed(), 1)
        if args.keep:
            results["run_dir"] = str(run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{args.stamp}.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    text = report.markdown(results)
    if not args.no_plot:
        png = out / f"{args.stamp}.png"
        try:
            report.plot(results, png)
            text += f"\n\nPlot: {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}"
        except ImportError as exc:
            text += f"\n\n(no plot: {exc}; `pip install -e .[bench]` brings matplotlib)"
    (out / f"{args.stamp}.md").write_text(text + "\n")
    print("\n" + text)
    print(f"\nJSON: {json_path}")
    print(
        "no process left behind"
        if not results["leftovers"]
        else f"LEFTOVER PROCESSES (ended by pid): {results['leftovers']}"
    )
    return status
