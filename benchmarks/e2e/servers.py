"""The two servers under test, provisioned alike, started and stopped by the harness.

Both get the same users: numbers ``100000 .. 100000+N-1`` with password ``pw<i:06d>`` in the
realm (and domain) ``example.test``, plus, per scenario, IP authorizations (:class:`Provision`).

* :class:`MssServer`: ``python -m mss serve`` on ``udp:127.0.0.1:PORT`` with a fresh SQLite data
  dir. Users are written through the storage API before the start (the HA1 of every algorithm,
  as ``mss user add`` stores them; :class:`mss.features.users.UserDirectory` is not used to add
  them because it rebuilds its IP-grant list after every add, O(N²) for N users). Challenges
  offer MD5 only (``MSS_AUTH_ALGORITHMS=MD5``): sipp 3.6 answers only the first challenge and
  only MD5. Banned sources (flood scenario) are added with ``mss ban add`` before the start.
  The registrar runs with ``[registrar] persist = "write-back"`` unless ``--mss-persist
  write-through`` is given: Kamailio's registrar here keeps bindings in memory only (usrloc
  ``db_mode 0``), so the like-for-like mss mode is the one that answers before its (batched)
  commit; ``write-through`` (the server's default) commits each binding before its 200.
* :class:`KamailioServer`: the Debian ``kamailio`` binary with ``benchmarks/kamailio/kamailio.cfg``
  in the foreground (``-DD``: the main process stays the harness's child and forks 2 UDP workers
  plus its timers), users as MD5 HA1s in a db_text table that ``htable`` loads at start-up, IP
  authorizations in a second table, ``-A WITH_PIKE`` for the flood scenario.

Every file either server uses, and so every command line, is under the run's private directory,
which is how the final check finds a survivor (:func:`benchmarks.e2e.procs.leftovers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs

__all__ = (
    "DOMAIN",
    "FIRST_NUMBER",
    "KAMAILIO_CFG",
    "KamailioServer",
    "MssServer",
    "Provision",
    "Server",
    "password",
    "register_contact",
    "user_rows",
)

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "benchmarks" / "kamailio" / "kamailio.cfg"
DOMAIN = "example.test"
FIRST_NUMBER = 100000


def password(index: int) -> str:
    return f"pw{index:06d}"


def user_rows(n: int) -> list[tuple[str, str, str]]:
    """(number, password, domain) of the N provisioned users: the sipp injection rows."""
    return [(str(FIRST_NUMBER + i), password(i), DOMAIN) for i in range(n)]


@dataclass(frozen=True)
class Provision:
    """What a scenario needs in both servers.

    Attributes:
        users: N numbered users (see the module docstring).
        grant_all: give every numbered user an IP authorization for this address (mss
            ``allow_ips=[addr]``, Kamailio ``ipauth`` row ``number -> addr``).
        extra: more users, number -> (mss allow_ips, Kamailio ipauth address or "").
        ban: sources banned before the start (mss ``mss ban add``); Kamailio gets pike instead.
        pike: start Kamailio with ``-A WITH_PIKE``.
        bindings: mss only: write a binding for each of the first N users into storage before
            the start (it loads them), instead of registering them.
    """

    users: int
    grant_all: str | None = None
    extra: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    ban: tuple[str, ...] = ()
    pike: bool = False
    bindings: int = 0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_bound(port: int) -> bool:
    return procs.socket_drops(port) is not None


class Server:
    """A server process tree on ``127.0.0.1:port`` (UDP)."""

    kind = "server"

    def __init__(self, workdir: Path, provision: Provision, label: str) -> None:
        self.workdir = workdir
        self.provision = provision
        self.label = label
        self.port = _free_udp_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.start_seconds = 0.0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return procs.tree_pids([self.proc.pid]) if self.proc is not None else []

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Write the users (and anything else) before the start."""

    def start(self, timeout: float = 90.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        t0 = time.monotonic()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.workdir,
            )
        finally:
            log.close()
        deadline = t0 + timeout
        while not _udp_bound(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        time.sleep(0.5)  # workers forked / event loop running
        self.start_seconds = time.monotonic() - t0

    def log_tail(self, limit: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def stop(self) -> None:
        """SIGTERM the main process, wait, then SIGKILL whatever of the tree is left."""
        if self.proc is None:
            return
        tree = self.pids()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        survivors = [p for p in tree if Path(f"/proc/{p}").exists() and p != self.proc.pid]
        if self.proc.poll() is None:
            survivors.append(self.proc.pid)
        if survivors:
            procs.reap(survivors)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


class MssServer(Server):
    kind = "mss"
    #: ``[registrar] persist`` of the server under test (``--mss-persist``)
    registrar_persist = "write-back"
    #: further ``MSS_*`` settings of the server under test (``--mss-set``)
    extra_env: dict[str, str] = {}

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mss",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"udp:127.0.0.1:{self.port}",
            "--domain",
            DOMAIN,
            "--log-format",
            "json",
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSS_")}
        env.update(
            {
                "MSS_AUTH_ALGORITHMS": "MD5",
                "MSS_STUN_PORT": "",
                "MSS_API_ENABLED": "0",
                "MSS_LOG_LEVEL": "warning",
                "MSS_REGISTRAR_PERSIST": self.registrar_persist,
            }
        )
        env.update(self.extra_env)
        return env

    def prepare(self) -> None:
        if self.data_dir.exists():
            return
        asyncio.run(self._write_users())
        if self.provision.bindings:
            asyncio.run(self.write_bindings(self.provision.bindings))
        for source in self.provision.ban:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mss",
                    "ban",
                    "add",
                    source,
                    "--for",
                    "1d",
                    "--reason",
                    "e2e flood benchmark",
                    "--data-dir",
                    str(self.data_dir),
                ],
                check=True,
                capture_output=True,
                env=self.environment(),
                timeout=60,
            )

    def set_allow_ips(self, number: str, allow: tuple[str, ...]) -> None:
        """Change a user's IP authorizations in storage (the running server follows within 1 s)."""
        asyncio.run(self._set_allow_ips(number, allow))

    async def _set_allow_ips(self, number: str, allow: tuple[str, ...]) -> None:
        from dataclasses import replace

        from mss.app import open_configured_storage
        from mss.config import load_config

        cfg = load_config(
            None, env={}, overrides={"data_dir": str(self.data_dir), "sip.domain": DOMAIN}
        )
        storage = await open_configured_storage(cfg)
        try:
            user = await storage.users.get(number)
            if user is None:
                raise LookupError(f"no user {number}")
            await storage.users.update(replace(user, allow_ips=allow, updated_at=time.time()))
        finally:
            await storage.close()

    async def write_bindings(self, n: int) -> None:
        """One binding for each of the first ``n`` users, as a sipp REGISTER would leave it."""
        from mss.app import open_configured_storage
        from mss.config import load_config
        from mss.storage.base import BindingRecord

        cfg = load_config(
            None, env={}, overrides={"data_dir": str(self.data_dir), "sip.domain": DOMAIN}
        )
        storage = await open_configured_storage(cfg)
        try:
            now = time.time()
            batch: list[tuple[str, list[BindingRecord]]] = []
            for i in range(n):
                number = str(FIRST_NUMBER + i)
                port = 20000 + i % 40000
                batch.append(
                    (
                        number,
                        [
                            BindingRecord(
                                aor=number,
                                contact=f"sip:{number}@127.0.0.1:{port};transport=UDP",
                                expires_at=now + 3600,
                                call_id=f"{i + 1}-4242@127.0.0.1",
                                cseq=2,
                                source=f"udp:127.0.0.1:{port}",
                                user_agent="mss-tests sipp",
                                registered_at=now,
                            )
                        ],
                    )
                )
                if len(batch) == 1000:
                    await storage.bindings.apply(batch)
                    batch = []
            if batch:
                await storage.bindings.apply(batch)
        finally:
            await storage.close()

    async def _write_users(self) -> None:
        from fastsip.digest import ALGORITHMS, ha1
        from mss.app import open_configured_storage, resolve_realm
        from mss.config import load_config
        from mss.storage.base import UserRecord

        p = self.provision
        cfg = load_config(
            None, env={}, overrides={"data_dir": str(self.data_dir), "sip.domain": DOMAIN}
        )
        storage = await open_configured_storage(cfg)
        try:
            realm = await resolve_realm(cfg, storage)
            now = time.time()
            grant = (p.grant_all,) if p.grant_all else ()

            def record(number: str, pw: str, allow: tuple[str, ...]) -> UserRecord:
                return UserRecord(
                    number=number,
                    ha1={a: ha1(number, realm, pw, a) for a in ALGORITHMS},
                    realm=realm,
                    allow_ips=allow,
                    created_at=now,
                    updated_at=now,
                )

            for i in range(p.users):
                await storage.users.add(record(str(FIRST_NUMBER + i), password(i), grant))
            for number, (allow, _) in p.extra.items():
                await storage.users.add(record(number, f"pw-{number}", tuple(allow)))
        finally:
            await storage.close()


class KamailioServer(Server):
    kind = "kamailio"

    def command(self) -> list[str]:
        run = self.workdir / "run"
        cmd = [
            shutil.which("kamailio") or "/usr/sbin/kamailio",
            "-f",
            str(KAMAILIO_CFG),
            "-DD",
            "-E",
            "-Y",
            str(run),
            "-w",
            str(run),
            "-m",
            "512",
            "-M",
            "16",
            "-A",
            f"LISTEN=udp:127.0.0.1:{self.port}",
            "-A",
            f'DBDIR="text://{self.workdir / "db"}"',
            "-A",
            f'REALM="{DOMAIN}"',
            "-A",
            f'CTLSOCK="unix:{run / "kamailio_ctl"}"',
        ]
        if self.provision.pike:
            cmd += ["-A", "WITH_PIKE"]
        return cmd

    def shm_used(self) -> int | None:
        """Kamailio's shared memory in use (``kamcmd core.shmmem`` real_used), bytes."""
        sock = self.workdir / "run" / "kamailio_ctl"
        try:
            out = subprocess.run(
                [shutil.which("kamcmd") or "/usr/sbin/kamcmd", "-s", f"unix:{sock}", "core.shmmem"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        for line in out.splitlines():
            key, _, value = line.strip().partition(":")
            if key.strip() == "real_used" and value.strip().isdigit():
                return int(value.strip())
        return None

    def prepare(self) -> None:
        db = self.workdir / "db"
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        if db.exists():
            return
        db.mkdir(parents=True)
        p = self.provision
        header = "id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int) \n"
        # db_text rows: id:key_name:key_type:value_type:key_value:expires (0 = simple key, string value)
        with open(db / "htable", "w", encoding="ascii") as fh:
            fh.write(header)
            row = 0
            for i in range(p.users):
                number = str(FIRST_NUMBER + i)
                row += 1
                fh.write(f"{row}:{number}:0:0:{_md5_ha1(number, password(i))}:0\n")
            for number in p.extra:
                row += 1
                fh.write(f"{row}:{number}:0:0:{_md5_ha1(number, f'pw-{number}')}:0\n")
        with open(db / "ipauth", "w", encoding="ascii") as fh:
            fh.write(header)
            row = 0
            if p.grant_all:
                for i in range(p.users):
                    row += 1
                    fh.write(f"{row}:{FIRST_NUMBER + i}:0:0:{p.grant_all}:0\n")
            for number, (_, address) in p.extra.items():
                if address:
                    row += 1
                    fh.write(f"{row}:{number}:0:0:{address}:0\n")
        (db / "version").write_text("table_name(string) table_version(int) \nhtable:2\nipauth:2\n")


def _md5_ha1(number: str, pw: str) -> str:
    return hashlib.md5(f"{number}:{DOMAIN}:{pw}".encode()).hexdigest()


def register_contact(
    server: Server, number: str, contact_port: int, *, timeout: float = 3.0
) -> str:
    """REGISTER ``number`` at ``sip:number@127.0.0.1:contact_port`` from 127.0.0.1, no credentials.

    Used to put a sipp UAS in Kamailio's location table (the number's ``ipauth`` row must name
    127.0.0.1). Returns the status line of the answer.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        port = s.getsockname()[1]
        msg = (
            f"REGISTER sip:127.0.0.1:{server.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-e2e-{number}-{port};rport\r\n"
            f"From: <sip:{number}@{DOMAIN}>;tag=e2e{port}\r\n"
            f"To: <sip:{number}@{DOMAIN}>\r\n"
            f"Call-ID: e2e-callee-{number}-{port}\r\n"
            "CSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{number}@127.0.0.1:{contact_port}>\r\n"
            "Expires: 3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        s.sendto(msg, ("127.0.0.1", server.port))
        while True:
            line = s.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
            if not line.startswith("SIP/2.0 1"):
                return line
