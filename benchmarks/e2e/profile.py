"""py-spy profiles of ``mss serve`` under load, ranked by function.

``py-spy record -p PID -f raw --nolineno`` writes one line per distinct stack: the frames from
the outermost to the innermost, ``;``-separated, each ``function (file)``, then a space and the
number of samples. py-spy samples only threads that are running Python code unless ``--idle``
is given, so the samples are the server's busy time (waiting in epoll is left out).

:func:`rank` turns the file into two rankings: *self* (samples whose innermost frame is the
function: where the CPU is spent) and *inclusive* (samples with the function anywhere on the
stack: what a call costs including its callees; the trunk present in nearly every sample, the
interpreter's start-up and the event loop, is left out). Percentages are of the busy samples:
stacks of waiting threads (epoll, the storage executor's queue) are dropped.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ("Ranking", "parse_raw", "rank", "record", "shorten")


@dataclass
class Ranking:
    samples: int
    self_time: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]

    def as_dict(self, top: int = 30) -> dict[str, object]:
        return {
            "samples": self.samples,
            "self": [
                {"function": f, "samples": n, "pct": round(100 * n / max(1, self.samples), 2)}
                for f, n in self.self_time[:top]
            ],
            "inclusive": [
                {"function": f, "samples": n, "pct": round(100 * n / max(1, self.samples), 2)}
                for f, n in self.inclusive[:top]
            ],
        }

    def markdown(self, top: int = 25) -> str:
        lines = [
            f"{self.samples} samples of busy time (py-spy, 100 Hz)",
            "",
            "| # | self % | function (where the CPU is) | | inclusive % | function (with callees) |",
            "|---:|---:|---|---|---:|---|",
        ]
        for i in range(top):
            a = self.self_time[i] if i < len(self.self_time) else ("", 0)
            b = self.inclusive[i] if i < len(self.inclusive) else ("", 0)
            pa = f"{100 * a[1] / max(1, self.samples):.1f}" if a[0] else ""
            pb = f"{100 * b[1] / max(1, self.samples):.1f}" if b[0] else ""
            lines.append(f"| {i + 1} | {pa} | `{a[0]}` | | {pb} | `{b[0]}` |")
        return "\n".join(lines)


def shorten(frame: str) -> str:
    """``on_register (/work/main/src/mss/sip/registrar.py)`` -> ``on_register (mss/sip/registrar.py)``."""
    name, _, rest = frame.partition(" (")
    path = rest.rstrip(")")
    for marker in ("/src/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = "stdlib" + path[path.find("/") :]
            break
    return f"{name} ({path})" if path else name


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in body.split(";") if f and not f.startswith(("process ", "thread "))]
        stacks.append(([shorten(f) for f in frames], int(count)))
    return stacks


#: Innermost frames of a thread that waits rather than works. py-spy leaves idle threads out of
#: Python-only samples, but with --native it reports the event loop in epoll and the storage
#: executor's worker blocked on its queue as running.
_IDLE_LEAVES = (
    "epoll_wait",
    "epoll_pwait",
    "poll ",
    "select ",
    "pthread_cond_",
    "sem_wait",
    "sem_timedwait",
)
_IDLE_FRAMES = ("PyThread_acquire_lock_timed",)


def _idle(frames: list[str]) -> bool:
    if not frames:
        return True
    if frames[-1].startswith(_IDLE_LEAVES):
        return True
    return any(f.startswith(_IDLE_FRAMES) for f in frames[-4:])


def rank(text: str) -> Ranking:
    """Self and inclusive sample counts per function, idle stacks left out."""
    stacks = [(frames, n) for frames, n in parse_raw(text) if not _idle(frames)]
    total = sum(n for _, n in stacks)
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, n in stacks:
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    # the trunk (interpreter start-up, the event loop's run) is on every stack: leave it out
    branches = [(f, n) for f, n in incl.most_common() if n < 0.97 * total]
    return Ranking(total, own.most_common(), branches)


def record(
    pid: int, out: Path, seconds: float, *, native: bool = False, gil: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` on ``pid`` for ``seconds`` (returns the process; wait on it).

    Args:
        native: also sample C frames (``--native``).
        gil: sample only the thread holding the GIL (``--gil``).
    """
    exe = Path(sys.executable).with_name("py-spy")
    cmd = [
        str(exe if exe.exists() else "py-spy"),
        "record",
        "-p",
        str(pid),
        "-f",
        "raw",
        "-o",
        str(out),
        "-d",
        str(max(1, int(seconds))),
        "--nolineno",
    ]
    if native:
        cmd.append("--native")
    if gil:
        cmd.append("--gil")
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
