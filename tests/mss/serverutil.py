"""Run a real mss Server in the test's event loop, and a small SIP UAC over loopback UDP."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from netutil import UdpClient

from fastsip.digest import client_authorization
from fastsip.message import Response
from fastsip.parser import parse_auth, parse_datagram
from mss.app import Server
from mss.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def make_config(data_dir: Path, **overrides: Any) -> Any:
    ov: dict[str, Any] = {
        "data_dir": str(data_dir),
        "transport.listen": "udp:127.0.0.1:0,tcp:127.0.0.1:0",
        "stun.port": 0,  # no dedicated STUN port (None would mean "not given": 3478)
        "api.enabled": False,
        "sip.domain": "example.test",
    }
    ov.update(overrides)
    return load_config(None, env={}, overrides=ov)


@asynccontextmanager
async def running(data_dir: Path, **overrides: Any) -> AsyncIterator[Server]:
    server = Server(make_config(data_dir, **overrides))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


_counter = itertools.count(1)


class Uac:
    """A minimal SIP UAC: builds requests, answers digest challenges."""

    def __init__(
        self, client: UdpClient, server_port: int, *, domain: str = "example.test"
    ) -> None:
        self.client = client
        self.server = ("127.0.0.1", server_port)
        self.domain = domain
        self.call_id = f"{secrets.token_hex(6)}@test"
        self.cseq = 0
        self.tag = secrets.token_hex(4)

    @classmethod
    async def open(cls, server_port: int, host: str = "127.0.0.1", **kw: Any) -> Uac:
        return cls(await UdpClient.open(host), server_port, **kw)

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        user: str,
        *,
        contact: str | None = None,
        headers: list[tuple[str, str]] = (),
        uri: str | None = None,
        call_id: str | None = None,
        cseq: int | None = None,
        from_user: str | None = None,
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        host, port = self.client.addr
        branch = f"z9hG4bK{next(_counter)}x{secrets.token_hex(4)}"
        ruri = uri or f"sip:{self.domain}"
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{from_user or user}@{self.domain}>;tag={self.tag}",
            f"To: <sip:{user}@{self.domain}>",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {cseq} {method}",
        ]
        if contact is not None:
            lines.append(f"Contact: {contact}")
        lines += [f"{n}: {v}" for n, v in headers]
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send(self, data: bytes, timeout: float = 3.0) -> Response:
        """Send and return the first final response (provisional ones are skipped)."""
        self.client.send(data, self.server)
        while True:
            msg = parse_datagram(await self.client.recv(timeout))
            assert isinstance(msg, Response)
            if msg.status >= 200:
                return msg

    async def register(
        self,
        user: str,
        password: str | None,
        *,
        contact: str | None = None,
        expires: int | None = 3600,
        algorithm: str = "MD5",
        extra: list[tuple[str, str]] = (),
        username: str | None = None,
    ) -> Response:
        host, port = self.client.addr
        contact = contact or f"<sip:{user}@{host}:{port}>"
        headers = list(extra)
        if expires is not None:
            headers.append(("Expires", str(expires)))
        first = await self.send(self.request("REGISTER", user, contact=contact, headers=headers))
        if first.status not in (401, 407) or password is None:
            return first
        return await self.answer(
            first,
            "REGISTER",
            user,
            password,
            contact=contact,
            headers=headers,
            algorithm=algorithm,
            username=username,
        )

    async def answer(
        self,
        challenge: Response,
        method: str,
        user: str,
        password: str,
        *,
        algorithm: str = "MD5",
        username: str | None = None,
        **kw: Any,
    ) -> Response:
        name = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
        chosen = None
        for value in challenge.get_all(name):
            auth = parse_auth(value)
            if auth.params.get("algorithm", "MD5") == algorithm:
                chosen = auth.params
        assert chosen is not None, f"no {algorithm} challenge"
        uri = kw.pop("uri", None) or f"sip:{self.domain}"
        value = client_authorization(
            username=username or user,
            realm=chosen["realm"],
            password=password,
            method=method,
            uri=uri,
            nonce=chosen["nonce"],
            algorithm=algorithm,
            qop="auth",
        )
        hname = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
        headers = [*kw.pop("headers", []), (hname, value)]
        return await self.send(self.request(method, user, headers=headers, uri=uri, **kw))


def mss_cli(
    *args: str,
    data_dir: Path,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mss`` command (as ``python -m mss``) in a subprocess."""
    e = dict(os.environ)
    e.update(env or {})
    e.pop("MSS_CONFIG", None)
    cmd = [sys.executable, "-m", "mss", *args, "--data-dir", str(data_dir)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    data_dir: Path, port: int, *extra: str, env_extra: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    env = dict(os.environ)
    env.pop("MSS_CONFIG", None)
    cmd = [
        sys.executable,
        "-m",
        "mss",
        "serve",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"udp:127.0.0.1:{port}",
        "--listen",
        f"tcp:127.0.0.1:{port}",
        "--domain",
        "example.test",
        "--log-format",
        "json",
        *extra,
    ]
    env.update({"MSS_STUN_PORT": "", "MSS_API_ENABLED": "0"})
    env.update(env_extra or {})
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "mss started" in line:
                break
        else:  # pragma: no cover
            raise AssertionError("server did not start:\n" + "".join(lines))
        assert proc.poll() is None, "".join(lines) + proc.stdout.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
