"""Run a real Kamailio (Debian package ``kamailio``) as a registrar for the external-line tests.

:func:`run_kamailio` writes ``tests/mss/kamailio/registrar.cfg`` with its placeholders filled in
to a private directory, starts ``kamailio -DD -E`` (foreground, logs on stderr, which go to a
file) in its own process group on a loopback port, waits until it answers SIP, and stops it
(SIGTERM to the group, then SIGKILL) when the block ends. :meth:`Kamailio.restart` stops it
and starts it again on the same port: its in-memory location table is then empty.

Bounds: every wait has a deadline; the process group is always killed on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from sipp import free_udp_port

CONFIG = Path(__file__).resolve().parent / "kamailio" / "registrar.cfg"


def kamailio_binary() -> str | None:
    return shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None
    )


def require_kamailio() -> str:
    """The kamailio path; skips when missing, except under CI (scripts/test.sh installs it)."""
    path = kamailio_binary()
    if path is not None:
        return path
    # a missing tool fails the run (scripts/test.sh installs it): a skip would hide it
    raise RuntimeError("kamailio is not installed (apt-get install kamailio; scripts/test.sh does)")


def sip_probe(host: str, port: int, user: str = "probe", timeout: float = 1.0) -> str | None:
    """Send one OPTIONS to ``sip:user@host`` and return the status line of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        lport = s.getsockname()[1]
        msg = (
            f"OPTIONS sip:{user}@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            "Max-Forwards: 10\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{user}@{host}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@probe\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), (host, port))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                data = s.recv(65535)
            except TimeoutError:
                return None
            line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            if line.startswith("SIP/2.0 ") and not line.startswith("SIP/2.0 1"):
                return line
        return None


class Kamailio:
    """A running Kamailio registrar (see :func:`run_kamailio`)."""

    def __init__(self, binary: str, workdir: Path, port: int, values: dict[str, str]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.values = values
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = workdir / "kamailio.cfg"
        text = CONFIG.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"@[A-Z_]+@", code), "unfilled placeholder in the Kamailio config"
        self.config.write_text(text, encoding="utf-8")
        self.log = workdir / "kamailio.log"

    def start(self, timeout: float = 10.0) -> None:
        rundir = self.workdir / "run"
        rundir.mkdir(exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-f",
                    str(self.config),
                    "-DD",
                    "-E",
                    "-m",
                    "32",
                    "-M",
                    "4",
                    "-Y",
                    str(rundir),
                    "-P",
                    str(rundir / "kamailio.pid"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited {self.proc.returncode}:\n{self.output()}")
            if sip_probe("127.0.0.1", self.port, timeout=0.3) is not None:
                return
        self.stop()
        raise RuntimeError(f"kamailio did not answer on port {self.port}:\n{self.output()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # children of the group that outlived the main process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]
        except OSError:
            return ""

    def probe(self, user: str, timeout: float = 1.0) -> str | None:
        return sip_probe("127.0.0.1", self.port, user, timeout)


@contextlib.contextmanager
def run_kamailio(
    workdir: Path,
    *,
    account: str,
    password: str,
    algorithm: str = "MD5",
    domain: str = "kamailio.test",
    min_expires: int = 1,
    max_expires: int = 3600,
) -> Iterator[Kamailio]:
    """Start a Kamailio registrar on a free loopback UDP port for the ``with`` block."""
    binary = require_kamailio()
    port = free_udp_port()
    workdir.mkdir(parents=True, exist_ok=True)
    k = Kamailio(
        binary,
        workdir,
        port,
        {
            "LISTEN": f"127.0.0.1:{port}",
            "DOMAIN": domain,
            "ACCOUNT": account,
            "PASSWORD": password,
            "ALGORITHM": algorithm,
            "MIN_EXPIRES": str(min_expires),
            "MAX_EXPIRES": str(max_expires),
        },
    )
    k.start()
    try:
        yield k
    finally:
        k.stop()
