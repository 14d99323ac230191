"""CPU per request through the SIP core, in process: no sockets, no sipp, no event-loop wake-ups.

    python -m benchmarks.core_cpu [--count 20000] [--repeat 3] [--gc-threshold 0]
    python -m benchmarks.core_cpu --scenario register [--users 2000]

``options``: parses ``count`` distinct OPTIONS datagrams and hands each to
:class:`mss.sip.core.SipCore` (validation, Via stamping, a new server transaction, a handler
answering 200 through it, the Timer J it arms on the server clock), with a sender that only
counts. ``register``: the registrar path of ``mss serve`` (router, registrar, digest
authenticator, user directory, location service on SQLite in a temporary directory): ``users``
REGISTERs without credentials (each answered 401), then the same with MD5 digest credentials
for the nonce of its 401 (computed outside the timing), one per loop turn, each committed to
SQLite before its 200, as at a few hundred REGISTERs per second.

Prints the process CPU time per request (per registration: both requests), median of
``repeat`` runs. The transactions stay alive as in a server (Timer J is 32 s), so the garbage
collector's cost of the retained state is included. Compare two trees with ``PYTHONPATH``;
``--gc-threshold N`` sets the collector's generation-0 threshold as ``transport.gc_threshold``
does in ``mss serve`` (0: Python's default, 700).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fastsip
from fastsip.parser import parse_datagram
from mss.sip.addressing import Source
from mss.sip.core import RequestContext, SipCore
from mss.transport.clock import Clock


def options(i: int) -> bytes:
    return (
        f"OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-1;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:a@example.test>;tag={i}\r\nTo: <sip:example.test>\r\n"
        f"Call-ID: {i}-cid@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class _Sender:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, target: object, data: bytes) -> None:
        self.sent += 1


class _Handler:
    def on_request(self, ctx: RequestContext) -> None:
        ctx.respond(200, headers=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER")])


async def one_run(count: int) -> float:
    sender = _Sender()
    core = SipCore(sender=sender, clock=Clock(asyncio.get_running_loop()), handler=_Handler())  # type: ignore[arg-type]
    source = Source("udp", "127.0.0.1", 5061, None)
    datagrams = [options(i) for i in range(count)]
    gc.collect()
    t0 = time.process_time()
    for data in datagrams:
        core.on_message(parse_datagram(data), source)
    cpu = time.process_time() - t0
    assert sender.sent == count
    return cpu / count


def register(i: int, cseq: int, authorization: str = "") -> bytes:
    number = 100000 + i
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"REGISTER sip:example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-{cseq};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{number}@example.test>;tag={i}\r\n"
        f"To: <sip:{number}@example.test>\r\nCall-ID: {i}-cid@127.0.0.1\r\nCSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{number}@127.0.0.1:5061>;expires=3600\r\n{auth}"
        f"User-Agent: core_cpu\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class _Keeper:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, target: object, data: bytes) -> None:
        self.sent.append(data)


async def register_run(users: int, data_dir: Path, backend: str = "sqlite") -> tuple[float, float]:
    """(CPU per challenged REGISTER, CPU per registration) in seconds."""
    from fastsip.digest import client_authorization
    from mss.features.location import LocationService
    from mss.features.users import UserDirectory
    from mss.sip.auth import Authenticator
    from mss.sip.registrar import Registrar
    from mss.sip.router import MethodRouter
    from mss.storage import open_storage

    storage = open_storage(backend, path=data_dir / "mss.sqlite3")
    await storage.open()
    try:
        directory = UserDirectory(storage, realm="example.test")
        for i in range(users):
            await directory.add(str(100000 + i), f"pw{i:06d}")
        await directory.load()
        location = LocationService(storage)
        await location.load()
        auth = Authenticator(directory, realm="example.test", secret=b"s" * 32, algorithms=("MD5",))
        registrar = Registrar(
            users=directory, location=location, auth=auth, domains=lambda: ["example.test"]
        )
        router = MethodRouter()
        router.route("REGISTER", registrar.on_register)
        sender = _Keeper()
        core = SipCore(sender=sender, clock=Clock(asyncio.get_running_loop()), handler=router)  # type: ignore[arg-type]
        source = Source("udp", "127.0.0.1", 5061, None)
        first = [register(i, 1) for i in range(users)]
        gc.collect()
        t0 = time.process_time()
        for data in first:
            core.on_message(parse_datagram(data), source)
        challenge = (time.process_time() - t0) / users
        nonces = []
        for raw in sender.sent:
            response = parse_datagram(raw)
            assert response.status == 401, response.status  # type: ignore[union-attr]
            nonces.append(response.www_authenticate[0].params["nonce"])  # type: ignore[union-attr]
        sender.sent.clear()
        second = [
            register(
                i,
                2,
                client_authorization(
                    username=str(100000 + i),
                    realm="example.test",
                    password=f"pw{i:06d}",
                    method="REGISTER",
                    uri="sip:example.test",
                    nonce=nonces[i],
                    cnonce="0a4f113b",
                ),
            )
            for i in range(users)
        ]
        gc.collect()
        t0 = time.process_time()
        for data in second:
            core.on_message(parse_datagram(data), source)
            await asyncio.sleep(0)  # the group commit's task, then the 200
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)
        cpu = time.process_time() - t0
        ok = sum(1 for raw in sender.sent if raw.startswith(b"SIP/2.0 200"))
        assert ok == users, (ok, users)
        return challenge, challenge + cpu / users
    finally:
        await storage.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gc-threshold", type=int, default=0)
    ap.add_argument("--scenario", choices=("options", "register"), default="options")
    ap.add_argument(
        "--users", type=int, default=2000, help="register: users, one registration each"
    )
    ap.add_argument(
        "--storage", choices=("sqlite", "memory"), default="sqlite", help="register: the backend"
    )
    args = ap.parse_args(argv)
    if args.gc_threshold > 0:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    if args.scenario == "register":
        reg = []
        for _ in range(args.repeat):  # a fresh data dir each time: no bindings from the last run
            with tempfile.TemporaryDirectory() as tmp:
                reg.append(asyncio.run(register_run(args.users, Path(tmp), args.storage)))
        print(
            f"fastsip {fastsip.__version__} (extensions: {fastsip.USING_EXTENSIONS}); gc threshold {gc.get_threshold()}"
        )
        print(
            f"storage {args.storage}; REGISTER answered 401: {statistics.median(r[0] for r in reg) * 1e6:.1f} µs CPU per request; "
            f"registration (401 + 200, SQLite commit): {statistics.median(r[1] for r in reg) * 1e6:.1f} µs "
            f"(median of {args.repeat}: {', '.join(f'{r[1] * 1e6:.1f}' for r in reg)})"
        )
        return 0
    runs = [asyncio.run(one_run(args.count)) for _ in range(args.repeat)]
    print(
        f"fastsip {fastsip.__version__} (extensions: {fastsip.USING_EXTENSIONS}); gc threshold {gc.get_threshold()}"
    )
    print(
        f"OPTIONS through SipCore: {statistics.median(runs) * 1e6:.1f} µs CPU per request "
        f"(median of {args.repeat}: {', '.join(f'{r * 1e6:.1f}' for r in runs)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
