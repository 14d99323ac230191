"""The run's markdown report and its plot (achieved vs offered rate, both servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("markdown", "plot")

SERVERS = ("kamailio", "mss")


def _f(value: Any, fmt: str = "{:.0f}", none: str = "-") -> str:
    if value is None:
        return none
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _loaded(value: float) -> str:
    """The flood's cost under load is a difference of two noisy CPU figures: below 0 is noise."""
    return f"{value:.2f}" if value > 0 else "(lost in the noise)"


def _mib(kib: Any) -> str:
    return "-" if not kib else f"{kib / 1024:.1f}"


def _common_rate(
    m: dict[str, Any], k: dict[str, Any]
) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """The highest rate both servers ran cleanly, with both steps there."""
    ms = {s["rate"]: s for s in m.get("steps", []) if s["clean"]}
    ks = {s["rate"]: s for s in k.get("steps", []) if s["clean"]}
    common = sorted(set(ms) & set(ks))
    if not common:
        return None
    r = common[-1]
    return r, ms[r], ks[r]


def _rate_summary(item: dict[str, Any]) -> list[str]:
    rows = []
    srv = item["servers"]
    k, m = srv.get("kamailio", {}), srv.get("mss", {})
    for kind in SERVERS:
        e = srv.get(kind)
        if e is None:
            continue
        if e.get("status", "ok") != "ok" and not e.get("steps"):
            rows.append(f"| {item['key']} | {kind} | {e['status']} | | | | | |")
            continue
        best = e.get("best")
        first = e["steps"][0] if e.get("steps") else {}
        rate = _f(e.get("best_rate")) if best else f"none (< {first.get('rate', '?')})"
        cpu = best["cpu_us_per_call"] if best else first.get("cpu_us_per_call")
        ratio_rate = ratio_cpu = ""
        if kind == "mss":
            ratio_rate = _ratio(m.get("best_rate"), k.get("best_rate"))
            if m.get("best") and k.get("best"):
                ratio_cpu = _ratio(m["best"]["cpu_us_per_call"], k["best"]["cpu_us_per_call"])
        rows.append(
            f"| {item['key']} | {kind} | {rate} | {_f(best and best['achieved'])} | {_f(cpu)} | "
            f"{_mib(e.get('peak_pss_kib'))} | {ratio_rate} | {ratio_cpu} |"
        )
    common = _common_rate(m, k) if m and k else None
    if common:
        r, ms, ks = common
        rows.append(
            f"| {item['key']} | at {r}/s, both clean | | | mss {_f(ms['cpu_us_per_call'])} / "
            f"Kamailio {_f(ks['cpu_us_per_call'])} | | | {_ratio(ms['cpu_us_per_call'], ks['cpu_us_per_call'])} |"
        )
    return rows


def _steps_table(item: dict[str, Any]) -> list[str]:
    out = [
        f"#### {item['key']}: {item['title']}",
        "",
        "| server | offered/s | achieved/s | ok / calls | failed | retrans % | < 10 ms % | server CPU µs/call "
        "| server cores busy | peak PSS MiB | load avg | clean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind in SERVERS:
        e = item["servers"].get(kind)
        if not e:
            continue
        for s in e.get("steps", []):
            out.append(
                f"| {kind} | {s['rate']} | {s['achieved']:.0f} | {s['ok']} / {s['calls']} | {s['failed']} | "
                f"{s['retrans_pct']:.2f} | {s['fast_pct']:.1f} | {_f(s['cpu_us_per_call'])} | "
                f"{s['server_cores']:.2f} | {_mib(s['peak_pss_kib'])} | {s['loadavg'][0]:.2f} | "
                f"{'yes' if s['clean'] else 'no'} |"
            )
        if e.get("note"):
            out.append(f"| {kind} | {e['note']} | | | | | | | | | | |")
        if e.get("status", "ok") != "ok":
            out.append(f"| {kind} | {e['status']} | | | | | | | | | | |")
    return out


def markdown(results: dict[str, Any]) -> str:
    v = results["versions"]
    lines = [
        f"### End-to-end run {results['stamp']} ({results.get('duration_s', '?')} s)",
        "",
        results["machine"],
        "",
        f"Kamailio: {v['kamailio']}; sipp: {v['sipp']}; mss {v['mss']} on {v['event_loop']}; "
        f"fastsip {v['fastsip']}.",
        f"Load average (1, 5, 15 min) at start {results['loadavg_start']}, at end "
        f"{results.get('loadavg_end')} (other work on the machine shares the 2 cores with the servers and sipp).",
        f"Command: `{results['command'].strip()}`",
        "",
        "Clean = 0 failed calls, < 1 % retransmissions, ≥ 95 % of responses (sipp response-time "
        "repartition, first request to final response) under 10 ms. CPU = utime+stime of the "
        "server's whole process tree per successful call; PSS summed over the tree.",
        "",
        "| scenario | server | highest clean rate/s | achieved/s | server CPU µs/call | peak PSS MiB "
        "| mss/Kamailio rate | mss/Kamailio CPU/call |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    flood = mem_b = mem_c = None
    for item in results["scenarios"]:
        if item.get("pending"):
            lines.append(f"| {item['key']} | both | pending: {item['pending']} | | | | | |")
            continue
        if item["kind"] == "rate":
            lines += _rate_summary(item)
        elif item["kind"] == "flood":
            flood = item
        elif item["kind"] == "memory-bindings":
            mem_b = item
        elif item["kind"] == "memory-calls":
            mem_c = item
    lines += ["| (any) | mss, 2 processes (SO_REUSEPORT) | not measured, see below | | | | | |", ""]

    if flood:
        lines += [
            "#### Flood",
            "",
            "| server | flood packets/s sent | reached the server | CPU µs per dropped packet (idle-corrected) "
            "| same, under legitimate load | legitimate REGISTERs ok / asked (during the flood) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for kind in SERVERS:
            e = flood["servers"].get(kind)
            if not e:
                continue
            if e.get("status", "ok") != "ok":
                lines.append(f"| {kind} | {e['status']} | | | | |")
                continue
            lines.append(
                f"| {kind} | {e['flood_rate_sent']:.0f} | {e['flood_received']} | {e['us_per_dropped']:.2f} | "
                f"{_loaded(e['loaded_us_per_dropped'])} | {e['legit_ok']} / {e['legit_calls']} "
                f"({e['legit_success_pct']:.2f} %) |"
            )
        m, k = flood["servers"].get("mss", {}), flood["servers"].get("kamailio", {})
        if m.get("us_per_dropped") and k.get("us_per_dropped"):
            lines.append(
                f"| mss/Kamailio | | | {_ratio(m['us_per_dropped'], k['us_per_dropped'])} | | |"
            )
        lines += [
            "",
            "mss drops the banned source's datagrams at the transport gate before parsing; Kamailio "
            "parses each one and pike_check_req() drops it (the first ~2,000 of a flood pass and are "
            "answered until pike marks the source). 'Reached the server' = sent minus the kernel's "
            "socket-buffer drops (`/proc/net/udp`).",
            "",
        ]
    if mem_b or mem_c:
        lines += [
            "#### Memory",
            "",
            "| measurement | server | count | PSS before MiB | PSS with them MiB | per item | mss/Kamailio |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        if mem_b:
            vals = {}
            for kind in SERVERS:
                e = mem_b["servers"].get(kind)
                if not e:
                    continue
                if e.get("status", "ok") != "ok":
                    lines.append(f"| bindings | {kind} | {e['status']} | | | | |")
                    continue
                # Kamailio's own allocator figure when there is one (its PSS under-counts)
                vals[kind] = e.get("shm_bytes_per_binding") or e["bytes_per_binding"]
                ratio = _ratio(vals.get("mss"), vals.get("kamailio")) if kind == "mss" else ""
                lines.append(
                    f"| registration bindings ({e['users']} users provisioned; {e.get('method', '')}) | {kind} | "
                    f"{e['bindings']} | {_mib(e['base_pss_kib'])} | {_mib(e['pss_kib'])} | "
                    f"{_f(e['bytes_per_binding'])} B | {ratio} |"
                )
                if e.get("shm_bytes_per_binding"):
                    lines.append(
                        f"| same, Kamailio shared memory in use (kamcmd core.shmmem) | {kind} | | "
                        f"{_mib(e['base_shm_bytes'] / 1024)} | {_mib(e['shm_bytes'] / 1024)} | "
                        f"{_f(e['shm_bytes_per_binding'])} B | |"
                    )
        if mem_c:
            vals = {}
            for kind in SERVERS:
                e = mem_c["servers"].get(kind)
                if not e:
                    continue
                if e.get("status", "ok") != "ok":
                    lines.append(f"| concurrent calls | {kind} | {e['status']} | | | | |")
                    continue
                vals[kind] = e.get("shm_kib_per_call") or e["kib_per_call"]
                ratio = _ratio(vals.get("mss"), vals.get("kamailio")) if kind == "mss" else ""
                lines.append(
                    f"| concurrent calls ({e['rate']}/s held {e['hold_s']} s; {e['ok']} ok, {e['failed']} failed) "
                    f"| {kind} | ~{e['concurrent']} | {_mib(e['base_pss_kib'])} | {_mib(e['peak_pss_kib'])} | "
                    f"{_f(e['kib_per_call'], '{:.1f}')} KiB | {ratio} |"
                )
                if e.get("shm_kib_per_call"):
                    lines.append(
                        f"| same, Kamailio shared memory in use (kamcmd core.shmmem) | {kind} | | "
                        f"{_mib(e['base_shm_bytes'] / 1024)} | {_mib(e['peak_shm_bytes'] / 1024)} | "
                        f"{_f(e['shm_kib_per_call'], '{:.1f}')} KiB | |"
                    )
        lines += [
            "",
            "The mss/Kamailio memory ratios use Kamailio's shared-memory figure where there is one "
            "(its PSS grows less than its data: the allocator reuses pages touched at start-up).",
            "",
        ]
    lines += [
        "#### Multi-core",
        "",
        "Kamailio runs 2 UDP worker processes (children=2) sharing one socket. mss runs one process. "
        "mss with several processes: " + results["multi_process"]["reason"],
        "",
    ]
    lines += ["#### Every step", ""]
    for item in results["scenarios"]:
        if item["kind"] == "rate" and not item.get("pending"):
            lines += [*_steps_table(item), ""]
    for item in results["scenarios"]:
        for e in item.get("servers", {}).values():
            prof = e.get("profile") or {}
            for mode, what in (
                ("python", "Python frames, GIL holder"),
                ("native", "with native frames"),
            ):
                p = prof.get(mode) or {}
                if not p.get("self"):
                    continue
                lines += [
                    f"#### Where mss spends its time: {item['key']} at {prof['rate']}/s, {what} "
                    f"(py-spy, {p['samples']} samples; raw stacks in {p['file']})",
                    "",
                    "| # | self % | function | | inclusive % | function |",
                    "|---:|---:|---|---|---:|---|",
                ]
                for i in range(min(25, len(p["self"]))):
                    a = p["self"][i]
                    b = (
                        p["inclusive"][i]
                        if i < len(p["inclusive"])
                        else {"pct": "", "function": ""}
                    )
                    lines.append(
                        f"| {i + 1} | {a['pct']} | `{a['function']}` | | {b['pct']} | `{b['function']}` |"
                    )
                lines.append("")
    if results.get("leftovers"):
        lines.append(f"LEFTOVER PROCESSES (ended by pid at the end): {results['leftovers']}")
    else:
        lines.append(
            "Final check: no process started by the run is left (none whose command line names the "
            "run directory)."
        )
    if results.get("interrupted"):
        lines.append(f"Interrupted: {results['interrupted']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Achieved vs offered rate per rate scenario, both servers (matplotlib, headless Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    items = [
        i
        for i in results["scenarios"]
        if i["kind"] == "rate"
        and not i.get("pending")
        and any(e.get("steps") for e in i["servers"].values())
    ]
    if not items:
        return
    cols = 2
    rows = (len(items) + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(11, 4.2 * rows), squeeze=False)
    colors = {"kamailio": "tab:blue", "mss": "tab:orange"}
    for ax, item in zip(axes.flat, items, strict=False):
        top, low = 0.0, float("inf")
        for kind in SERVERS:
            e = item["servers"].get(kind)
            if not e or not e.get("steps"):
                continue
            steps = sorted(e["steps"], key=lambda s: s["rate"])
            xs = [s["rate"] for s in steps]
            ys = [max(1.0, s["achieved"]) for s in steps]
            top = max(top, *xs, *ys)
            low = min(low, *xs, *ys)
            ax.plot(
                xs,
                ys,
                "-",
                color=colors[kind],
                label=f"{kind} (clean up to {e.get('best_rate', 0)}/s)",
            )
            clean = [(x, y) for x, y, s in zip(xs, ys, steps, strict=True) if s["clean"]]
            dirty = [(x, y) for x, y, s in zip(xs, ys, steps, strict=True) if not s["clean"]]
            if clean:
                ax.plot(*zip(*clean, strict=True), "o", color=colors[kind])
            if dirty:
                ax.plot(*zip(*dirty, strict=True), "x", color=colors[kind], markersize=9)
        low = low / 1.5 if low != float("inf") else 1.0
        ax.plot([low, top], [low, top], ":", color="grey", label="achieved = offered")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(item["key"])
        ax.set_xlabel("offered rate (calls/s)")
        ax.set_ylabel("achieved (successful calls/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in list(axes.flat)[len(items) :]:
        ax.axis("off")
    fig.suptitle(
        f"mss vs Kamailio, {results['stamp']} (o clean, x not clean; load avg at start "
        f"{results['loadavg_start'][0]})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
