"""Instructions per message of the parser workloads, counted with valgrind's callgrind.

    python -m benchmarks.parser_instructions [--only NAME ...] [--peers] [--annotate NAME]

Timings on a shared VM move by tens of percent from one run to the next; an instruction count
does not. Each workload runs twice under ``valgrind --tool=callgrind`` in a fresh interpreter,
with a short and a long loop; the difference of the two totals divided by the difference of
the loop lengths is the cost of one iteration, with start-up, imports and setup cancelled
out. Instructions are not time (cache misses and branch mispredictions cost nothing here),
but a change that removes instructions from this loop removes them on every machine.

``--peers`` adds sippy and sipmessage (slow under valgrind: fewer iterations).
``--annotate NAME`` keeps the long run's callgrind file and prints ``callgrind_annotate`` of
it (where the instructions go, by function).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> (setup, loop body): run in this module's ``_child`` with ``data`` = the message.
_READ = "(m.via.branch, m.from_.tag, m.to.uri, m.call_id, m.cseq, m.contacts, m.expires)"
WORKLOADS: dict[str, tuple[str, str]] = {
    "fastsip-c parse REGISTER": ("c|REGISTER", "parse(data)"),
    "fastsip-c parse+read REGISTER": ("c|REGISTER", f"m = parse(data); {_READ}"),
    "fastsip-c parse INVITE+SDP": ("c|INVITE+SDP", "parse(data)"),
    "fastsip-c parse+read INVITE+SDP": ("c|INVITE+SDP", f"m = parse(data); {_READ}"),
    "fastsip-c parse 200 OK 5 Via": ("c|200 OK 5 Via", "parse(data)"),
    "fastsip-c parse+read 200 OK 5 Via": ("c|200 OK 5 Via", f"m = parse(data); {_READ}"),
    "fastsip-c parse+validate REGISTER": ("c|REGISTER", "parse(data).validate()"),
    "fastsip-c parse REGISTER +10 known headers": ("c|REGISTER +10 known", "parse(data)"),
    "fastsip-c parse REGISTER +10 unknown headers": ("c|REGISTER +10 unknown", "parse(data)"),
    "fastsip-c make_response+bytes (INVITE)": (
        "c|INVITE+SDP",
        "bytes(make_response(req, 200, to_tag='8321234356'))",
    ),
    "httptools parse HTTP": ("httptools|HTTP", "parse(data)"),
}
PEERS: dict[str, tuple[str, str]] = {
    "sippy parse+read REGISTER": ("sippy|REGISTER", "read(data)"),
    "sipmessage parse+read REGISTER": ("sipmessage|REGISTER", "read(data)"),
}
SHORT, LONG = 2_000, 12_000
PEER_SHORT, PEER_LONG = 200, 1_200


def _child(spec: str, body: str, n: int) -> None:
    """Run inside valgrind: set up, one warm-up iteration, then ``n`` iterations of ``body``."""
    from benchmarks.messages import EXTRA, HTTP, MESSAGES
    from benchmarks.parsers import fastsip_fns, httptools_fn, sipmessage_fns, sippy_fns

    impl, message = spec.split("|")
    data = HTTP if message == "HTTP" else MESSAGES.get(message) or EXTRA[message]
    ns: dict[str, object] = {"data": data}
    if impl == "httptools":
        ns["parse"] = httptools_fn()
    else:
        parse, read = {"c": lambda: fastsip_fns("c"), "py": lambda: fastsip_fns("py")}.get(
            impl, {"sippy": sippy_fns, "sipmessage": sipmessage_fns}.get(impl)
        )()
        ns["parse"], ns["read"] = parse, read
        if impl in ("c", "py"):
            from fastsip.message import make_response

            ns["make_response"] = make_response
            ns["req"] = parse(data)
    # A function, so that the loop's names are fast locals (as in the timing benchmarks).
    src = (
        "def _loop(n, data, parse, read=None, make_response=None, req=None):\n"
        f"    {body}\n"
        "    for _ in range(n):\n"
        f"        {body}\n"
    )
    exec(compile(src, "<workload>", "exec"), ns)
    ns["_loop"](n, **{k: v for k, v in ns.items() if k != "_loop" and not k.startswith("__")})


def _run(spec: str, body: str, n: int, out: Path) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.parser_instructions",
        "--child",
        spec,
        body,
        str(n),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec}: valgrind failed:\n{proc.stderr[-2000:]}")
    m = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if m is None:
        m = re.search(r"^summary:\s*(\d+)", out.read_text(), re.M)
    if m is None:
        raise RuntimeError(f"{spec}: no instruction total in callgrind output")
    return int(m.group(1))


def measure(spec: str, body: str, short: int, long: int, keep: Path | None = None) -> float:
    """Instructions per iteration of ``body``."""
    with tempfile.TemporaryDirectory() as tmp:
        a = _run(spec, body, short, Path(tmp) / "short.out")
        long_out = keep if keep is not None else Path(tmp) / "long.out"
        b = _run(spec, body, long, long_out)
    return (b - a) / (long - short)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child", nargs=3, metavar=("SPEC", "BODY", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", help="workload names containing any of these strings")
    ap.add_argument("--peers", action="store_true", help="also sippy and sipmessage (slow)")
    ap.add_argument("--annotate", metavar="NAME", help="callgrind_annotate this workload")
    args = ap.parse_args(argv)
    if args.child:
        spec, body, n = args.child
        _child(spec, body, int(n))
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")  # same dict/set layouts in both runs
    todo = dict(WORKLOADS)
    if args.peers:
        todo.update(PEERS)
    if args.only:
        todo = {k: v for k, v in todo.items() if any(s in k for s in args.only)}
    print("| workload | instructions per message |")
    print("|---|---:|")
    for name, (spec, body) in todo.items():
        short, long = (PEER_SHORT, PEER_LONG) if name in PEERS else (SHORT, LONG)
        keep = None
        if args.annotate and args.annotate in name:
            keep = Path(tempfile.gettempdir()) / "parser_instructions.callgrind.out"
        per = measure(spec, body, short, long, keep)
        print(f"| {name} | {per:,.0f} |", flush=True)
        if keep is not None:
            ann = subprocess.run(
                ["callgrind_annotate", "--inclusive=no", str(keep)],
                capture_output=True,
                text=True,
                check=False,
            )
            print(ann.stdout[:12000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
