"""What a server process tree costs, read from /proc, and the proof that nothing was left behind.

A server is measured as its whole process tree: ``mss serve`` is one process (with threads, which
``/proc/PID/stat`` already sums), Kamailio is a main process and its forked workers and timers.

* CPU: utime + stime (``/proc/PID/stat`` fields 14 and 15) summed over the tree, read before and
  after a step; the difference divided by the step's successful calls is "server CPU µs per call".
  Workers live for the whole run, so no CPU is lost with exited children.
* Memory: the proportional set size (``Pss`` in ``/proc/PID/smaps_rollup``) summed over the tree.
  Summed RSS would count Kamailio's shared memory pool once per process that touched it; PSS
  splits each shared page between the processes that map it, so the sum counts it once. Peak
  memory is sampled every 0.2 s by :class:`Sampler` (RSS summed too, kept in the JSON).
* Leftovers: every process the harness starts carries the run's private directory in its
  command line (data dir, runtime dir, sipp work dir), so :func:`leftovers` finds any survivor
  by scanning ``/proc/*/cmdline`` for it; :func:`reap` ends them by pid (never by name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = (
    "Sampler",
    "cpu_seconds",
    "leftovers",
    "memory_kib",
    "reap",
    "socket_drops",
    "tree_pids",
)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    return text[text.rindex(")") + 2 :].split()


def tree_pids(roots: Iterable[int]) -> list[int]:
    """The given pids and all their live descendants (from the ppid in ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid for pid in roots if Path(f"/proc/{pid}").exists()]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes, in seconds (vanished ones count 0)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def memory_kib(pids: Iterable[int]) -> tuple[int, int]:
    """(PSS, RSS) summed over the processes, KiB."""
    pss = rss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return pss, rss


def socket_drops(port: int, host_hex: str = "0100007F") -> int | None:
    """Datagrams the kernel dropped on the UDP socket bound to 127.0.0.1:``port`` (full buffer).

    The ``drops`` column of ``/proc/net/udp``; summed over sockets bound to that address (one
    here: Kamailio's workers share theirs). None when no such socket exists.
    """
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) < 13:
            continue
        addr, _, port_hex = fields[1].partition(":")
        if addr == host_hex and int(port_hex, 16) == port:
            found = (found or 0) + int(fields[12])
    return found


class Sampler:
    """Samples the PSS/RSS of a process tree in a thread; keeps the peaks since :meth:`reset`."""

    def __init__(
        self,
        roots: Iterable[int],
        interval: float = 0.2,
        probe: Callable[[], int | None] | None = None,
    ) -> None:
        self.roots = list(roots)
        self.interval = interval
        self.probe = (
            probe  # another figure to keep the peak of, read every 5th sample (Kamailio shm)
        )
        self.peak_probe = 0
        self.peak_pss = 0
        self.peak_rss = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> tuple[int, int]:
        pss, rss = memory_kib(tree_pids(self.roots))
        with self._lock:
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_rss = max(self.peak_rss, rss)
        return pss, rss

    def reset(self) -> None:
        with self._lock:
            self.peak_pss = self.peak_rss = self.peak_probe = 0
        self.sample()
        self._read_probe()

    def _read_probe(self) -> None:
        if self.probe is not None:
            value = self.probe()
            if value is not None:
                with self._lock:
                    self.peak_probe = max(self.peak_probe, value)

    def peaks(self) -> tuple[int, int]:
        self.sample()
        with self._lock:
            return self.peak_pss, self.peak_rss

    def _run(self) -> None:
        count = 0
        while not self._stop.wait(self.interval):
            count += 1
            with contextlib.suppress(Exception):
                self.sample()
                if count % 5 == 0:
                    self._read_probe()


def leftovers(marker: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose command line contains ``marker``, but not this one."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if not raw:
            continue  # kernel threads and zombies have an empty command line
        cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if marker in cmd:
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] != "Z":
                found.append((int(entry), cmd[:200]))
    return found


def reap(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM the given pids, then SIGKILL those still alive after ``grace`` seconds."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
