"""A bounded, typed harness around the real ``sipp`` (SIPp 3.6, Debian package ``sip-tester``).

End-to-end tests and load benchmarks drive the real server with real peers on loopback (house
style 15 and 17). This module is the only place that knows how to start sipp, bound it and read
what it counted; tests call:

* :func:`run_sipp` -- a client (UAC) run to completion: ``-m calls`` calls against ``target``,
  returning a :class:`SippResult` parsed from sipp's final statistics. Blocks; from a coroutine
  use :func:`arun_sipp`, which runs it in a worker thread so the event loop (and an in-process
  server on it) keeps running.
* :func:`start_sipp_uas` -- a context manager running a sipp UAS (the built-in ``uas`` or one of
  our XML scenarios) on a free loopback port while the test body runs; ``stop()`` returns its
  :class:`SippResult`.

Theory of operation
-------------------
sipp runs in the foreground as a plain subprocess (never ``-bg``, which forks and loses the exit
code), with ``-nostdin`` and stdin on /dev/null. Every output goes to files in a private work
directory: ``-trace_stat -stf`` (the statistics CSV; its last row is written when sipp exits),
``-trace_screen -screen_file`` (the final screens, whose scenario table gives per-message
counts), ``-trace_err -error_file`` (unexpected messages, aborted calls, timeouts), optionally
``-trace_msg -message_file`` (every message sent and received). stdout and stderr go to files
too, so a chatty sipp cannot fill a pipe and block. Relative names sipp makes up itself land in
the work directory (it is sipp's cwd), never in the repository.

Bounds: sipp's own ``-timeout T -timeout_error`` makes it exit with 255 after T seconds whatever
its calls are doing; the harness adds its own deadline a few seconds later (SIGTERM, which sipp
handles by writing its final statistics, then SIGKILL), so a run never outlives
``timeout + 8 s`` even if sipp wedges. A UAS is stopped with SIGUSR1 (sipp's soft exit: no new
calls, ongoing ones finish), then SIGTERM, then SIGKILL.

Loopback only: ``target`` and ``local_ip`` must be loopback addresses unless
``allow_non_loopback=True`` (for test hosts in network namespaces the suite creates itself).
Besides its SIP socket sipp binds a UDP control socket (default 0.0.0.0:8888, cycling up to
8947) and RTP echo sockets (local IP, 6000/6002 upwards); the harness pins the control socket to
127.0.0.1 on a free port (``-ci``/``-cp``) and binds the SIP socket to ``local_ip`` only
(``-bind_local``).

sipp gotchas found while writing this (SIPp v3.6.1)
---------------------------------------------------
* Exit codes: 0 all calls succeeded; 1 at least one failed; 97 stopped by the global timeout
  (without ``-timeout_error``) with no successful call; 99 normal exit without any call, and
  ``-v``/``-h``/``-sd``; 255 fatal error, including ``-timeout_error`` firing; 254 cannot bind
  a socket; 253 RTP check failure. On SIGTERM/SIGINT sipp writes its final statistics and exits
  0 or 1 from its counters.
* ``-timeout`` alone is a *soft* quit that waits for the open calls to end, which may never happen;
  with ``-timeout_error`` it exits at once. It is armed with ``alarm()`` in whole seconds, so
  sub-second values are no timeout at all (the harness rounds up).
* SIGUSR1 twice ("force quit") can leave sipp stuck forever with "Waiting for active calls to
  end" and a CurrentCall counter that never drops; the harness never sends it twice.
* ``Retransmissions(C)`` in the CSV counts every retransmission sipp *sent*: on its timers
  (``retrans="500"`` elements, T1 doubling) and in reply to a retransmission it received (a 200
  resent for a retransmitted BYE, an ACK resent for a retransmitted 2xx). It equals the sum of
  the "Retrans" column over the send rows of the scenario screen (:attr:`SippResult.steps`);
  on receive rows that column counts retransmissions received. ``-lost N`` drops N % of the
  messages sipp sends *and* receives (the screen's "Lost" column, shown only when loss is on).
* Under loss, sipp's own peers are not robust, so loss tests need care (see
  ``scenarios/uas_answer_lossy.xml``): (1) sipp matches a response by status code and CSeq
  method only, so in the built-in ``uac`` a late retransmission of the INVITE's 200 satisfies
  the ``<recv response="200">`` meant for the BYE (our scenarios use ``start_txn`` /
  ``response_txn``); (2) a sipp UAS remembers what to resend for a retransmitted request only
  for the first message it sent after it (180, not the 200), so an INVITE retransmitted after
  180 and 200 were both lost aborts the call, which the built-in ``uas`` does; (3) a UAS whose
  ``<timewait>`` is shorter than the caller's BYE retransmissions fails calls when a 200 is lost
  repeatedly. The built-in ``uac`` against the built-in ``uas`` with ``-lost 10`` failed a call
  in about 1 run of 15 (20 calls each) and left UAS calls hanging in a third of the runs.
* A call counts as successful only when it reaches the end of the scenario, after the final
  ``<timewait>``/``<pause>``: a UAS stopped early reports fewer successful calls.
* Unexpected messages: sipp aborts the call (sending CANCEL or BYE by default) and counts it in
  ``FailedUnexpectedMessage(C)``; the screen's "Unexpected-Msg" column counts the messages.
* The error log (``-trace_err``) has no line breaks between events; the harness adds them.
* The scenario screen is written to ``-screen_file`` on a normal exit only; after a fatal error
  (for instance ``-timeout_error``) it is only on stdout, where the harness looks for it.
* Inside ``[authentication ...]``, field references must be quoted
  (``username="[field0]"``), and the digest-uri sipp puts in it is ``sip:remote_ip:port`` (or
  ``-auth_uri``), never the Request-URI: see ``scenarios/register_uac.xml``.
* Over TCP, when the peer closes the connection (a sipp client exiting), a sipp UAS ends the
  calls still in ``<timewait>`` and may count them as failed (``FailedTcpClosed(C)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = (
    "BUILTIN_SCENARIOS",
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_NO_CALLS",
    "EXIT_OK",
    "EXIT_SOCKET_BIND",
    "EXIT_TIMEOUT_NO_SUCCESS",
    "SCENARIOS_DIR",
    "SippResult",
    "SippStep",
    "SippUas",
    "arun_sipp",
    "free_tcp_port",
    "free_udp_port",
    "require_sipp",
    "run_sipp",
    "sipp_binary",
    "start_sipp_uas",
    "write_inf_file",
)

#: Our XML scenarios; a relative scenario name is looked up here.
SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"

#: Names that mean sipp's embedded scenarios (``-sn NAME``) rather than a file (``-sf PATH``).
BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B"}
)

# sipp's exit codes (SIPp 3.6 ``sipp -h``, ``sipp_exit``); -1, -2 and -3 wrap to 255, 254, 253.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT_NO_SUCCESS = 97
EXIT_NO_CALLS = 99
EXIT_FATAL = 255
EXIT_SOCKET_BIND = 254

#: Socket buffer sizes asked of sipp (the kernel caps them at net.core.[rw]mem_max).
BUFF_SIZE = 4 * 1024 * 1024
#: How long after sipp's own -timeout the harness stops waiting and signals it.
_DEADLINE_SLACK = 5.0
#: How long sipp gets to write its statistics after SIGTERM before SIGKILL.
_TERM_WAIT = 3.0
#: How much of stdout a result keeps (sipp prints its screens there).
_STDOUT_KEEP = 256 * 1024

_TRANSPORTS = re.compile(r"^[utlsc][1ni]$")
_ERROR_EVENT = re.compile(r"(?<=[^\n])(?=\d{4}-\d{2}-\d{2}\t\d{2}:\d{2}:\d{2}\.\d+\t)")


# --------------------------------------------------------------------------- binaries, ports


def sipp_binary() -> str | None:
    """The path of the ``sipp`` executable on PATH, or None when it is not installed."""
    return shutil.which("sipp")


def require_sipp() -> str:
    """The ``sipp`` path; skips the calling test when missing, except under CI where it fails.

    scripts/test.sh installs sipp (``sipp:sip-tester`` in scripts/apt-test-packages.txt), so a CI
    run without it is a broken machine, not a reason to skip.

    Raises:
        RuntimeError: sipp is missing and the ``CI`` environment variable is set.
    """
    path = sipp_binary()
    if path is not None:
        return path
    # a missing tool fails the run (scripts/test.sh installs it): a skip would hide it
    raise RuntimeError("sipp is not installed (apt-get install sip-tester; scripts/test.sh does)")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORT_RNG = random.Random()


def _free_port(kind: socket.SocketKind, host: str) -> int:
    """A port that was free a moment ago, picked below the kernel's ephemeral range.

    The caller binds it later. A port from the ephemeral range (what binding port 0 gives)
    could be handed in between to any socket that binds or connects without a port, in this
    run or in another process; a port below that range can only be taken by an explicit bind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = min(_ephemeral_low(), 65536)
    if low > 12000:
        for _ in range(64):
            port = _PORT_RNG.randrange(10000, low)
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        got: int = sock.getsockname()[1]
        return got


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that was free on ``host`` a moment ago (bind to port 0, read it, close)."""
    return _free_port(socket.SOCK_DGRAM, host)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (bind to port 0, read it, close)."""
    return _free_port(socket.SOCK_STREAM, host)


def _is_udp(transport: str) -> bool:
    return transport[0] in "uc"


def _check_transport(transport: str) -> None:
    if not _TRANSPORTS.match(transport):
        raise ValueError(f"sipp transport must be like u1, un, t1, tn, l1 ...: {transport!r}")


def _split_host(target: str) -> str:
    """The host part of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if target.startswith("["):
        return target[1 : target.index("]")]
    if target.count(":") == 1:
        return target.split(":", 1)[0]
    return target


def _check_loopback(what: str, host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"{what} {host!r} is not a loopback address: tests send traffic to this machine "
            "only (pass allow_non_loopback=True for a test host in a network namespace)"
        )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SippStep:
    """One row of sipp's scenario screen: the counts for one element of the scenario.

    Attributes:
        name: the method or status code (``INVITE``, ``180``), ``Pause`` or the raw label.
        direction: ``send`` or ``recv`` from sipp's point of view, ``pause``, or ``other``.
        label: the row's text left of the counters, as sipp printed it.
        messages: messages sent or received at this step (calls that passed a pause).
        retrans: retransmissions sent (timer) or received (and answered) at this step.
        timeouts: receive timeouts or send failures at this step.
        unexpected: unexpected messages received while at this step.
        lost: messages dropped on purpose by ``-lost`` / ``lost=`` at this step.
    """

    name: str
    direction: str
    label: str
    messages: int
    retrans: int
    timeouts: int
    unexpected: int
    lost: int


@dataclass(frozen=True)
class SippResult:
    """What one sipp run did, from its statistics files and screens.

    Attributes:
        successful: calls that reached the end of the scenario (``SuccessfulCall(C)``).
        failed: calls that failed for any reason (``FailedCall(C)``).
        retransmissions: retransmissions sipp sent on its timers (``Retransmissions(C)``).
        unexpected: unexpected messages received (sum of the screen's Unexpected column; at
            least ``FailedUnexpectedMessage(C)``, the calls that failed because of one).
        returncode: sipp's exit status (see the ``EXIT_*`` constants); negative when killed by
            a signal the harness sent after its deadline.
        stats: the last row of the ``-trace_stat`` CSV, column name to raw text (``(C)``
            columns are cumulative); empty when sipp died before writing it.
        stdout: sipp's standard output (the last 256 KiB).
        errors: the ``-trace_err`` log, one event per line.
        screen: the final screens (``-trace_screen``, or the last ones printed on stdout).
        stderr: sipp's standard error (fatal errors such as a bad scenario are here).
        steps: the scenario screen's rows, in scenario order.
        command: the command line that ran.
        elapsed: seconds from start to exit.
        killed: True when the harness had to signal sipp because it outlived its deadline.
        message_log: the ``-trace_msg`` log when asked for with ``trace_msg=True``.
        workdir: where the files are, when kept (``workdir=`` given), else None.
    """

    successful: int
    failed: int
    retransmissions: int
    unexpected: int
    returncode: int
    stats: dict[str, str]
    stdout: str
    errors: str
    screen: str
    stderr: str = ""
    steps: tuple[SippStep, ...] = ()
    command: tuple[str, ...] = ()
    elapsed: float = 0.0
    killed: bool = False
    message_log: str = ""
    workdir: Path | None = None

    @property
    def ok(self) -> bool:
        """sipp exited 0, at least one call succeeded and none failed."""
        return self.returncode == EXIT_OK and self.failed == 0 and self.successful > 0

    @property
    def timed_out(self) -> bool:
        """sipp hit its global ``-timeout`` or the harness had to kill it."""
        return self.killed or (
            self.returncode in (EXIT_FATAL, EXIT_TIMEOUT_NO_SUCCESS)
            and "timed out after" in self.errors + self.stderr + self.stdout[-4096:]
        )

    def counter(self, name: str) -> int:
        """A cumulative counter of the statistics CSV as an int, 0 when absent.

        Args:
            name: the counter without its suffix (``"FailedTimeoutOnRecv"``) or a full column
                name (``"CurrentCall"``, ``"OutgoingCall(P)"``).
        """
        raw = self.stats.get(name, self.stats.get(f"{name}(C)", ""))
        try:
            return int(raw)
        except ValueError:
            return 0

    def step(self, name: str, direction: str | None = None) -> SippStep:
        """The first scenario row for ``name`` (``"INVITE"``, ``"200"``), optionally by direction.

        Raises:
            KeyError: no such row.
        """
        for step in self.steps:
            if step.name == name and (direction is None or step.direction == direction):
                return step
        raise KeyError(f"no scenario step {name!r} ({direction or 'any direction'})")

    def describe(self) -> str:
        """A compact report for assertion messages: command, counts, errors, the table."""
        table = _scenario_block(self.screen)
        parts = [
            f"sipp exited {self.returncode}{' (killed by the harness)' if self.killed else ''}"
            f" after {self.elapsed:.1f}s: successful={self.successful} failed={self.failed}"
            f" retransmissions={self.retransmissions} unexpected={self.unexpected}",
            "command: " + " ".join(self.command),
        ]
        if table:
            parts.append(table.rstrip())
        if self.errors.strip():
            parts.append("errors:\n" + _tail(self.errors, 3000))
        if self.stderr.strip():
            parts.append("stderr:\n" + _tail(self.stderr, 2000))
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.describe()


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _parse_stats(text: str) -> dict[str, str]:
    """The last row of a ``-trace_stat`` CSV (';'-separated, header first) as a dict."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].split(";")
    values = lines[-1].split(";")
    return {name: value for name, value in zip(header, values, strict=False) if name}


def _scenario_block(screen: str) -> str:
    """The last scenario screen in ``screen`` (up to the next screen's banner)."""
    start = screen.rfind("Scenario Screen")
    if start < 0:
        return ""
    start = screen.rfind("\n", 0, start) + 1
    end = screen.find("Statistics Screen", start)
    if end >= 0:
        end = screen.rfind("\n", start, end)
    return screen[start:] if end < 0 else screen[start:end]


_COLUMNS = (
    ("messages", "Messages"),
    ("retrans", "Retrans"),
    ("timeouts", "Timeout"),
    ("unexpected", "Unexp"),
    ("lost", "Lost"),
)


def _parse_steps(screen: str) -> tuple[SippStep, ...]:
    """The rows of the scenario table: counters sliced at the header's column positions."""
    lines = _scenario_block(screen).splitlines()
    for index, line in enumerate(lines):
        if "Messages" in line and "Retrans" in line:
            header, rows = line, lines[index + 1 :]
            break
    else:
        return ()
    starts = [(key, header.find(title)) for key, title in _COLUMNS if title in header]
    first = starts[0][1]
    steps = []
    for row in rows:
        if not row.strip():
            continue
        # Banners ("------- Waiting for ...") start in column 0; UAS rows start "  ---------->".
        if row.startswith("---") or row.startswith("Last Error") or len(row) <= first:
            break
        counts: dict[str, int] = {}
        for position, (key, start) in enumerate(starts):
            stop = starts[position + 1][1] if position + 1 < len(starts) else len(row)
            words = row[start:stop].split()
            counts[key] = int(words[0]) if words and words[0].isdigit() else 0
        label = row[:first].rstrip()
        name, direction = _step_name(label)
        steps.append(
            SippStep(
                name=name,
                direction=direction,
                label=label.strip(),
                messages=counts.get("messages", 0),
                retrans=counts.get("retrans", 0),
                timeouts=counts.get("timeouts", 0),
                unexpected=counts.get("unexpected", 0),
                lost=counts.get("lost", 0),
            )
        )
    return tuple(steps)


def _step_name(label: str) -> tuple[str, str]:
    """Name and direction of a row: ``INVITE ---------->`` is sent by a UAC, ``----------> INVITE``
    received by a UAS; ``<----------`` likewise the other way round."""
    for arrow, before, after in (("---------->", "send", "recv"), ("<----------", "recv", "send")):
        if arrow in label:
            head, _, rest = label.partition(arrow)
            if head.strip():
                return head.split()[0], before
            words = rest.split()
            return (words[0] if words else rest.strip()), after
    if "Pause" in label:
        return "Pause", "pause"
    return label.strip(), "other"


def _parse_screen_counts(screen: str) -> tuple[int, int]:
    """Successful / failed calls from the statistics screen (used when the CSV is missing)."""
    values = []
    for title in ("Successful call", "Failed call"):
        match = re.search(rf"{title}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
        values.append(int(match.group(1)) if match else 0)
    return values[0], values[1]


@dataclass
class _Run:
    """A started sipp process with its files; ``collect()`` waits and parses."""

    command: tuple[str, ...]
    process: subprocess.Popen[bytes]
    directory: Path
    keep: bool
    started: float
    trace_msg: bool
    stdout_file: Any
    stderr_file: Any
    killed: bool = False
    result: SippResult | None = field(default=None)

    def terminate(self) -> None:
        """SIGTERM (sipp writes its final statistics), then SIGKILL if it does not go."""
        if self.process.poll() is not None:
            return
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=_TERM_WAIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()

    def collect(self) -> SippResult:
        if self.result is not None:
            return self.result
        returncode = self.process.wait()
        elapsed = time.monotonic() - self.started
        for handle in (self.stdout_file, self.stderr_file):
            handle.close()
        directory = self.directory
        stdout = _tail(_read(directory / "stdout.txt"), _STDOUT_KEEP)
        stderr = _read(directory / "stderr.txt")
        stats = _parse_stats(_read(directory / "stats.csv"))
        screen = _read(directory / "screen.log")
        if "Scenario Screen" not in screen and "Scenario Screen" in stdout:
            # A fatal exit (-timeout_error among them) prints the screens to stdout only.
            screen = stdout[stdout.rfind("\n", 0, stdout.rfind("Scenario Screen")) + 1 :]
        errors = _ERROR_EVENT.sub("\n", _read(directory / "errors.log"))
        message_log = _read(directory / "messages.log") if self.trace_msg else ""
        steps = _parse_steps(screen)

        def counter(name: str) -> int:
            try:
                return int(stats.get(f"{name}(C)", ""))
            except ValueError:
                return 0

        if stats:
            successful, failed = counter("SuccessfulCall"), counter("FailedCall")
        else:
            successful, failed = _parse_screen_counts(screen)
        unexpected = max(sum(step.unexpected for step in steps), counter("FailedUnexpectedMessage"))
        if not self.keep:
            shutil.rmtree(directory, ignore_errors=True)
        self.result = SippResult(
            successful=successful,
            failed=failed,
            retransmissions=counter("Retransmissions"),
            unexpected=unexpected,
            returncode=returncode,
            stats=stats,
            stdout=stdout,
            errors=errors,
            screen=screen,
            stderr=stderr,
            steps=steps,
            command=self.command,
            elapsed=elapsed,
            killed=self.killed,
            message_log=message_log,
            workdir=directory if self.keep else None,
        )
        return self.result


def _scenario_args(scenario: str | Path) -> list[str]:
    if isinstance(scenario, str) and scenario in BUILTIN_SCENARIOS:
        return ["-sn", scenario]
    path = Path(scenario)
    if not path.is_absolute() and not path.exists():
        path = SCENARIOS_DIR / path
    if not path.is_file():
        raise FileNotFoundError(f"sipp scenario not found: {scenario}")
    return ["-sf", str(path.resolve())]


def _start(
    *,
    target: str | None,
    scenario: str | Path,
    local_ip: str,
    local_port: int,
    transport: str,
    calls: int | None,
    rate: float | None,
    lost: float,
    timeout: float,
    recv_timeout: float | None,
    service: str | None,
    inf_file: Path | None,
    extra: Sequence[str],
    env: Mapping[str, str] | None,
    workdir: Path | None,
    trace_msg: bool,
) -> _Run:
    binary = sipp_binary()
    if binary is None:
        raise FileNotFoundError("sipp is not installed (apt-get install sip-tester)")
    if timeout <= 0:
        raise ValueError("timeout must be positive: every sipp run is bounded")
    if calls is not None and calls < 1:
        raise ValueError("calls must be at least 1")
    scenario_args = _scenario_args(scenario)  # before making the directory: may raise
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="sipp-", dir=workdir))
    else:
        directory = Path(tempfile.mkdtemp(prefix="mss-sipp-"))
    command = [binary]
    if target is not None:
        command.append(target)
    command += scenario_args
    command += ["-i", local_ip, "-p", str(local_port), "-bind_local", "-t", transport]
    # The control socket binds 0.0.0.0:8888 (cycling upwards) unless told otherwise.
    command += ["-ci", "127.0.0.1", "-cp", str(free_udp_port())]
    command += ["-nostdin", "-buff_size", str(BUFF_SIZE)]
    # alarm() takes whole seconds: round up, or a sub-second timeout would be no timeout.
    command += ["-timeout", f"{max(1, math.ceil(timeout))}s", "-timeout_error"]
    if calls is not None:
        command += ["-m", str(calls)]
    if rate is not None:
        command += ["-r", f"{rate:g}"]
    if recv_timeout is not None and recv_timeout > 0:
        command += ["-recv_timeout", f"{max(1, round(recv_timeout * 1000))}ms"]
    if lost:
        command += ["-lost", f"{lost:g}"]
    if service is not None:
        command += ["-s", service]
    if inf_file is not None:
        command += ["-inf", str(Path(inf_file).resolve())]
    command += ["-trace_stat", "-stf", str(directory / "stats.csv")]
    command += ["-trace_screen", "-screen_file", str(directory / "screen.log")]
    command += ["-trace_err", "-error_file", str(directory / "errors.log")]
    if trace_msg:
        command += ["-trace_msg", "-message_file", str(directory / "messages.log")]
    command += list(extra)
    stdout_file = open(directory / "stdout.txt", "wb")  # closed in collect()
    stderr_file = open(directory / "stderr.txt", "wb")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout_file,
            stderr=stderr_file,
            cwd=directory,
            env=None if env is None else {**os.environ, **env},
        )
    except BaseException:
        stdout_file.close()
        stderr_file.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return _Run(
        command=tuple(command),
        process=process,
        directory=directory,
        keep=workdir is not None,
        started=time.monotonic(),
        trace_msg=trace_msg,
        stdout_file=stdout_file,
        stderr_file=stderr_file,
    )


# --------------------------------------------------------------------------- UAC


def run_sipp(
    target: str,
    *,
    scenario: str | Path,
    calls: int,
    rate: float = 10,
    local_port: int = 0,
    transport: str = "u1",
    lost: float = 0,
    timeout: float = 30,
    recv_timeout: float | None = None,
    extra: Sequence[str] = (),
    service: str | None = None,
    inf_file: Path | None = None,
    local_ip: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    trace_msg: bool = False,
    allow_non_loopback: bool = False,
) -> SippResult:
    """Run a sipp client to completion against ``target`` and return what it counted.

    Args:
        target: ``host:port`` of the server under test (``[::1]:5060`` for IPv6).
        scenario: a built-in name (``"uac"`` means ``-sn uac``, see :data:`BUILTIN_SCENARIOS`),
            or an XML file: absolute, relative to the cwd, or a name in ``tests/mss/scenarios``
            (``"options_uac.xml"``).
        calls: how many calls to place (``-m``); sipp exits when they are all done.
        rate: new calls per second (``-r``).
        local_port: sipp's SIP port; 0 picks a free one (UDP or TCP after ``transport``).
        transport: sipp's ``-t``: ``u1`` (UDP, one socket), ``un`` (UDP, one per call), ``t1``,
            ``tn`` (TCP), ``l1``/``ln`` (TLS, needs certificates in ``extra``).
        lost: percentage of messages sipp drops on purpose, sent and received (``-lost``).
        timeout: seconds sipp may run (``-timeout ... -timeout_error``: it then exits 255); the
            harness signals it a few seconds after that if it is still there.
        recv_timeout: seconds a call may wait for an expected message before it fails
            (``-recv_timeout``); None means half of ``timeout`` (at least 1 s), so calls that
            get no answer are counted as failed before the global timeout ends the run; 0 turns
            it off.
        extra: more sipp options, appended last (``["-d", "1000"]`` for a 1 s pause).
        service: the user part of the Request-URI, ``[service]`` in scenarios (``-s``).
        inf_file: an injection CSV (``-inf``), see :func:`write_inf_file`.
        local_ip: the address sipp binds and puts in Via/Contact/From (``-i``, ``-bind_local``).
        env: variables added to sipp's environment.
        workdir: keep sipp's files in a new directory under this one (e.g. pytest's
            ``tmp_path``) instead of deleting them.
        trace_msg: log every message (``-trace_msg``) into :attr:`SippResult.message_log`.
        allow_non_loopback: allow a target or local address outside 127.0.0.0/8 and ::1.

    Returns:
        The parsed statistics; see :class:`SippResult`. A failed run is a result, not an
        exception: assert on it with ``result.describe()`` as the message.

    Raises:
        FileNotFoundError: sipp or the scenario file is missing.
        ValueError: bad arguments, or a non-loopback address without ``allow_non_loopback``.
    """
    _check_transport(transport)
    if not allow_non_loopback:
        _check_loopback("target", _split_host(target))
        _check_loopback("local_ip", local_ip)
    if local_port == 0:
        local_port = free_udp_port(local_ip) if _is_udp(transport) else free_tcp_port(local_ip)
    if recv_timeout is None:
        recv_timeout = max(1.0, timeout / 2)
    run = _start(
        target=target,
        scenario=scenario,
        local_ip=local_ip,
        local_port=local_port,
        transport=transport,
        calls=calls,
        rate=rate,
        lost=lost,
        timeout=timeout,
        recv_timeout=recv_timeout,
        service=service,
        inf_file=inf_file,
        extra=extra,
        env=env,
        workdir=workdir,
        trace_msg=trace_msg,
    )
    try:
        run.process.wait(timeout=max(1, math.ceil(timeout)) + _DEADLINE_SLACK)
    except subprocess.TimeoutExpired:
        pass
    finally:
        # Also on KeyboardInterrupt or any exception: never leave sipp behind.
        run.terminate()
    return run.collect()


async def arun_sipp(target: str, **options: Any) -> SippResult:
    """:func:`run_sipp` in a worker thread, for coroutines (the event loop keeps running).

    Args:
        target: as for :func:`run_sipp`.
        **options: the keyword arguments of :func:`run_sipp`.
    """
    return await asyncio.to_thread(run_sipp, target, **options)


# --------------------------------------------------------------------------- UAS


class SippUas:
    """A sipp UAS running in the background; made by :func:`start_sipp_uas`."""

    def __init__(self, run: _Run, *, local_ip: str, port: int, transport: str, grace: float):
        self._run = run
        self.local_ip = local_ip
        self.port = port
        self.transport = transport
        self.grace = grace

    @property
    def target(self) -> str:
        """``ip:port`` to send to (``[v6]:port`` for IPv6)."""
        host = f"[{self.local_ip}]" if ":" in self.local_ip else self.local_ip
        return f"{host}:{self.port}"

    @property
    def pid(self) -> int:
        """sipp's process id."""
        return self._run.process.pid

    @property
    def running(self) -> bool:
        """True while sipp has not exited."""
        return self._run.process.poll() is None

    @property
    def command(self) -> tuple[str, ...]:
        """The command line that started sipp."""
        return self._run.command

    def stop(self, grace: float | None = None) -> SippResult:
        """Stop sipp (if still running) and return its result; idempotent.

        SIGUSR1 first: sipp takes no new calls and exits once the ongoing ones have ended,
        including their final ``<timewait>`` (4 s in the built-in ``uas``, 2 s in ours), so
        their success is counted. After ``grace`` seconds SIGTERM (sipp writes its statistics
        and exits), then SIGKILL.

        Args:
            grace: seconds to wait after SIGUSR1; defaults to the one given at start.
        """
        run = self._run
        if run.result is None and run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                run.process.send_signal(signal.SIGUSR1)
            try:
                run.process.wait(timeout=self.grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                run.terminate()
        return run.collect()


def _port_listening(port: int, udp: bool) -> bool | None:
    """Whether some socket is bound to ``port`` (UDP) or listens on it (TCP), from /proc/net.

    None when /proc/net cannot be read (not Linux). Reading /proc never disturbs sipp, unlike
    probing the port by binding it, which could steal it during sipp's start-up.
    """
    names = ("udp", "udp6") if udp else ("tcp", "tcp6")
    seen_any = False
    for name in names:
        try:
            lines = Path("/proc/net", name).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_any = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port and (udp or fields[3] == "0A"):
                return True
    return False if seen_any else None


@contextlib.contextmanager
def start_sipp_uas(
    *,
    scenario: str | Path = "uas",
    port: int = 0,
    transport: str = "u1",
    calls: int | None = None,
    timeout: float = 60,
    recv_timeout: float | None = None,
    lost: float = 0,
    extra: Sequence[str] = (),
    service: str | None = None,
    inf_file: Path | None = None,
    local_ip: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    trace_msg: bool = False,
    ready_timeout: float = 5.0,
    stop_grace: float = 8.0,
    allow_non_loopback: bool = False,
) -> Iterator[SippUas]:
    """Run a sipp UAS in the background for the duration of a ``with`` block.

    Yields once sipp's SIP port is bound, and stops it on exit (:meth:`SippUas.stop`; call it
    yourself inside the block to read the result, it is idempotent).

    Args:
        scenario: ``"uas"`` (sipp's built-in: 180, 200, optional ACK, BYE -> 200), another
            built-in name, or an XML file (a name in ``tests/mss/scenarios`` such as
            ``"uas_answer.xml"``).
        port: the SIP port to listen on; 0 picks a free one.
        transport: sipp's ``-t`` (``u1``, ``t1`` ...).
        calls: exit by itself after this many calls (``-m``); None means until stopped.
        timeout: seconds before sipp exits on its own with 255 (``-timeout ... -timeout_error``).
        recv_timeout: per-message receive timeout in seconds (``-recv_timeout``); None = none,
            as a UAS waits for the caller's BYE as long as the call lasts.
        lost: percentage of messages dropped on purpose (``-lost``).
        extra: more sipp options, appended last.
        service: ``-s``.
        inf_file: an injection CSV (``-inf``).
        local_ip: the loopback address to bind.
        env: variables added to sipp's environment.
        workdir: keep sipp's files under this directory.
        trace_msg: log every message into :attr:`SippResult.message_log`.
        ready_timeout: seconds to wait for the port to be bound.
        stop_grace: seconds :meth:`SippUas.stop` waits for a soft exit before SIGTERM.
        allow_non_loopback: allow a ``local_ip`` outside loopback.

    Raises:
        RuntimeError: sipp exited or did not bind its port in time (its output is included).
    """
    _check_transport(transport)
    if not allow_non_loopback:
        _check_loopback("local_ip", local_ip)
    udp = _is_udp(transport)
    if port == 0:
        port = free_udp_port(local_ip) if udp else free_tcp_port(local_ip)
    run = _start(
        target=None,
        scenario=scenario,
        local_ip=local_ip,
        local_port=port,
        transport=transport,
        calls=calls,
        rate=None,
        lost=lost,
        timeout=timeout,
        recv_timeout=recv_timeout,
        service=service,
        inf_file=inf_file,
        extra=extra,
        env=env,
        workdir=workdir,
        trace_msg=trace_msg,
    )
    uas = SippUas(run, local_ip=local_ip, port=port, transport=transport, grace=stop_grace)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if run.process.poll() is not None:
                raise RuntimeError("sipp UAS exited during start-up:\n" + run.collect().describe())
            listening = _port_listening(port, udp)
            if listening is None:
                time.sleep(0.3)  # no /proc: give sipp a moment
                break
            if listening:
                break
            if time.monotonic() > deadline:
                run.terminate()
                raise RuntimeError(
                    f"sipp UAS did not bind port {port} within {ready_timeout}s:\n"
                    + run.collect().describe()
                )
            time.sleep(0.02)
        yield uas
    finally:
        uas.stop()


# --------------------------------------------------------------------------- injection files


def write_inf_file(path: Path, rows: Iterable[Sequence[str]], *, order: str = "SEQUENTIAL") -> Path:
    """Write a sipp injection CSV (``-inf``): the order line, then ``;``-joined fields.

    Args:
        path: the file to write.
        rows: one sequence of fields per line; ``[field0]``, ``[field1]``... in scenarios.
        order: ``SEQUENTIAL`` (call n uses line n, wrapping), ``RANDOM`` or ``USER``.

    Returns:
        ``path``.

    Raises:
        ValueError: a field contains ``;`` or a line break, or ``order`` is unknown.
    """
    if order not in ("SEQUENTIAL", "RANDOM", "USER"):
        raise ValueError(f"unknown injection order {order!r}")
    lines = [order]
    for row in rows:
        for value in row:
            if ";" in value or "\n" in value or "\r" in value:
                raise ValueError(f"sipp injection fields cannot contain ';' or newlines: {value!r}")
        lines.append(";".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
