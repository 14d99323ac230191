"""sipp (Debian ``sip-tester``) against ``mss serve`` running as a real process, on loopback.

Issue 3: OPTIONS and an INVITE that gets a final response, with sipp dropping packets on purpose
(``-lost``): every transaction completes, retransmissions are answered from the transaction.
Issue 4: REGISTER with MD5 digest for many users; wrong password and unknown user give the same
answer (byte for byte, nonces masked); expiry bounds; ``Contact: *``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import free_udp_port, serve
from sipp import run_sipp, write_inf_file

from mss.app import open_configured_storage, resolve_realm
from mss.config import load_config
from mss.features.users import UserDirectory

pytestmark = pytest.mark.slow


def add_users(data_dir: Path, users: list[tuple[str, str]], **fields: object) -> None:
    """Create users straight in storage (fast for hundreds) with the CLI's code path."""

    async def go() -> None:
        cfg = load_config(
            None, env={}, overrides={"data_dir": str(data_dir), "sip.domain": "example.test"}
        )
        storage = await open_configured_storage(cfg)
        try:
            directory = UserDirectory(storage, realm=await resolve_realm(cfg, storage))
            for number, password in users:
                await directory.add(number, password, **fields)
        finally:
            await storage.close()

    asyncio.run(go())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    data = tmp_path / "data"
    add_users(data, [("1001", "secret-1001")])
    port = free_udp_port()
    # sipp 3.6 answers only the first challenge and only with MD5: offer MD5 alone for it
    with serve(data, port, env_extra={"MSS_AUTH_ALGORITHMS": "MD5"}):
        yield data, port


def test_options_with_packet_loss(server: tuple[Path, int], tmp_path: Path) -> None:
    _, port = server
    r = run_sipp(
        f"127.0.0.1:{port}",
        scenario="options_uac.xml",
        calls=50,
        rate=100,
        timeout=60,
        workdir=tmp_path,
    )
    assert r.successful == 50 and r.failed == 0, r.describe()
    lossy = run_sipp(
        f"127.0.0.1:{port}",
        scenario="options_uac.xml",
        calls=50,
        rate=50,
        lost=20,
        timeout=90,
        workdir=tmp_path,
    )
    assert lossy.successful == 50 and lossy.failed == 0, lossy.describe()
    assert lossy.retransmissions > 0, lossy.describe()


def test_invite_final_response_with_packet_loss(server: tuple[Path, int], tmp_path: Path) -> None:
    """INVITE → 100 + final (501 while calls are not routed, 407 once they are): sipp ACKs the
    final response; with 15 % loss sipp retransmits the INVITE and the ACK, and the server
    answers retransmissions from the INVITE server transaction (timer G resends the final)."""
    _, port = server
    r = run_sipp(
        f"127.0.0.1:{port}",
        scenario="invite_uac_final.xml",
        calls=30,
        rate=30,
        lost=15,
        timeout=120,
        workdir=tmp_path,
    )
    assert r.successful == 30 and r.failed == 0, r.describe()
    assert r.retransmissions > 0, r.describe()


def test_register_many_users_md5(tmp_path: Path) -> None:
    data = tmp_path / "data"
    users = [(str(2000 + i), f"pw-{i:04d}x") for i in range(200)]
    add_users(data, users)
    port = free_udp_port()
    inf = write_inf_file(tmp_path / "users.csv", [(n, p, "example.test") for n, p in users])
    # sipp 3.6 answers only the first challenge and only with MD5: offer MD5 alone for it
    with serve(data, port, env_extra={"MSS_AUTH_ALGORITHMS": "MD5"}):
        r = run_sipp(
            f"127.0.0.1:{port}",
            scenario="register_uac.xml",
            calls=200,
            rate=200,
            inf_file=inf,
            timeout=60,
            workdir=tmp_path,
        )
        assert r.successful == 200 and r.failed == 0, r.describe()
    from serverutil import mss_cli

    listed = mss_cli("reg", "list", data_dir=data).stdout
    assert all(n in listed for n, _ in users[:10])


def _final_401s(log: str) -> list[str]:
    """The 401 responses that answered a REGISTER carrying credentials (sipp -trace_msg)."""
    out = []
    for block in re.split(r"\n-{10,}[^\n]*\n", log):
        if "SIP/2.0 401" in block and "received" in block.lower():
            out.append(block[block.index("SIP/2.0 401") :].strip())
    return out


def test_wrong_password_and_unknown_user_same_answer(
    server: tuple[Path, int], tmp_path: Path
) -> None:
    _, port = server
    answers = {}
    for label, user in (("wrong", "1001"), ("unknown", "1999")):
        inf = write_inf_file(tmp_path / f"{label}.csv", [(user, "bad-password", "example.test")])
        r = run_sipp(
            f"127.0.0.1:{port}",
            scenario="register_uac.xml",
            calls=1,
            rate=1,
            inf_file=inf,
            timeout=20,
            workdir=tmp_path,
            trace_msg=True,
        )
        assert r.failed == 1, r.describe()  # the scenario wanted 200 and got a second 401
        responses = _final_401s(r.message_log)
        assert len(responses) >= 2, r.message_log
        answers[label] = responses[1]  # the answer to the request with credentials

    def mask(text: str) -> str:
        text = re.sub(r'nonce="[^"]*"', 'nonce="X"', text)
        return "\n".join(
            ln for ln in text.splitlines() if not re.match(r"(?i)(via|from|to|call-id|cseq):", ln)
        )

    assert "401 Unauthorized" in answers["wrong"]
    assert mask(answers["wrong"]) == mask(answers["unknown"])
