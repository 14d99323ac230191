"""The sipvicious scanners (PyPI ``sipvicious``, the "friendly-scanner") against ``mss serve``.

Issue 6: ``svmap`` finds the server; ``svwar`` finds no extension among 100-199 although 150 and
160 exist (every request gets the same answer, with or without ``--force``, REGISTER, INVITE or
OPTIONS); ``svcrack`` with a 1000-word list whose right password is word 500 never succeeds and
its source is banned after at most 5 failures, after which it gets no reply; a legitimate user at
another address registers normally during and after the attack. A control run with fail-to-ban
off shows that svcrack does crack the same server when the password comes early in its list, so
it is the ban that stops it.

The server offers only MD5 challenges here (``MSS_AUTH_ALGORITHMS=MD5``): svcrack reads the
first challenge and cannot compute SHA-256 (it crashes on it), which would make "never cracks"
meaningless.

sipvicious 0.3.8 quirk: ``svcrack -b IP`` does not bind (the option is not passed to its
scanner), so its packets to 127.0.0.1 come from 127.0.0.1; the legitimate user therefore runs
from 127.0.0.2, and ``svmap``/``svwar`` (which honour ``-b``) from 127.0.0.50/51.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sipvicious  # noqa: F401  (test extra; a missing tool fails, never skips)
from netutil import run_on
from serverutil import Uac, free_udp_port, mss_cli, serve

BIN = Path(sys.executable).parent
MD5_ONLY = {"MSS_AUTH_ALGORITHMS": "MD5"}
PASSWORD = "Tr0ub4dor-150"


def tool(name: str, *args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    exe = BIN / f"sipvicious_{name}"
    if not exe.exists():
        pytest.fail(f"{exe} is not installed (pip install sipvicious)")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def wordlist(path: Path, size: int, right: int) -> Path:
    """``size`` words, the right password at 1-based position ``right``."""
    words = [f"guess{i:04d}" for i in range(1, size + 1)]
    words[right - 1] = PASSWORD
    path.write_text("\n".join(words) + "\n")
    return path


def register_status(port: int, host: str, user: str, password: str) -> int:
    async def go() -> int:
        uac = await Uac.open(port, host=host)
        try:
            return (await uac.register(user, password)).status
        finally:
            uac.close()

    return int(run_on("asyncio", go))


def answered(port: int, host: str) -> bool:
    async def go() -> bool:
        uac = await Uac.open(port, host=host)
        try:
            uac.client.send(uac.request("OPTIONS", "150"), uac.server)
            return not await uac.client.nothing(0.5)
        finally:
            uac.close()

    return bool(run_on("asyncio", go))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    mss_cli("user", "add", "150", "--password", PASSWORD, data_dir=d)
    mss_cli("user", "add", "160", "--password", "pw-160-legit", data_dir=d)
    return d


def test_svmap_finds_the_server_and_svwar_finds_no_extension(
    data_dir: Path, tmp_path: Path
) -> None:
    port = free_udp_port()
    with serve(data_dir, port, env_extra=MD5_ONLY):
        out = tool("svmap", "-b", "127.0.0.50", "-p", str(port), "127.0.0.1", cwd=tmp_path)
        assert f"127.0.0.1:{port}" in out.stdout and "mss" in out.stdout, out
        runs = {
            "REGISTER": (),
            "REGISTER --force": ("--force",),
            "INVITE --force": ("--force", "-m", "INVITE"),
            "OPTIONS --force": ("--force", "-m", "OPTIONS"),
        }
        for label, extra in runs.items():
            out = tool(
                "svwar",
                "-b",
                "127.0.0.51",
                "-p",
                str(port),
                "-e100-199",
                *extra,
                "127.0.0.1",
                cwd=tmp_path,
            )
            text = out.stdout + out.stderr
            print(f"\nsvwar {label}: exit {out.returncode}; {text.strip().splitlines()[-1]}")
            assert "found nothing" in text, (label, text)
            assert "exists" not in text and "| 150" not in text and "| 160" not in text, (
                label,
                text,
            )
        # scanning without credentials is no failure: the scanner's address is not banned
        assert answered(port, "127.0.0.51")
    assert mss_cli("ban", "list", data_dir=data_dir).stdout.strip() == "no bans"


def test_svcrack_is_banned_after_five_failures(data_dir: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    words = wordlist(tmp_path / "words.txt", 1000, 500)
    legit: list[int] = []
    stop = threading.Event()

    def legitimate_user() -> None:
        while not stop.is_set():
            legit.append(register_status(port, "127.0.0.2", "160", "pw-160-legit"))
            time.sleep(0.25)

    with serve(data_dir, port, env_extra=MD5_ONLY) as proc:
        worker = threading.Thread(target=legitimate_user)
        worker.start()
        try:
            t0 = time.monotonic()
            out = tool(
                "svcrack",
                "-u",
                "150",
                "-d",
                str(words),
                "-p",
                str(port),
                "--maximumtime",
                "2",
                "127.0.0.1",
                cwd=tmp_path,
            )
            took = time.monotonic() - t0
        finally:
            stop.set()
            worker.join(30)
        text = out.stdout + out.stderr
        print(
            f"\nsvcrack: exit {out.returncode} after {took:.1f} s; {text.strip().splitlines()[-1]}"
        )
        assert PASSWORD not in text and out.returncode != 40, text  # 40: svcrack found a password
        assert "found nothing" in text
        # banned: later packets from the attacker get nothing
        assert not answered(port, "127.0.0.1")
        # the legitimate user registered all along, and still does
        assert legit and set(legit) == {200}, legit
        assert register_status(port, "127.0.0.2", "160", "pw-160-legit") == 200
        bans = json.loads(mss_cli("ban", "list", "--json", data_dir=data_dir).stdout)
        assert [b["ip"] for b in bans] == ["127.0.0.1"]
        assert bans[0]["users"] == ["150"]
        assert bans[0]["reason"].startswith("5 failed authentications within 60 s (5 since")
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        log = [json.loads(ln) for ln in proc.stdout.read().splitlines() if ln.startswith("{")]
    security = [ln for ln in log if ln.get("logger") == "mss.security" and "event" in ln]
    ban = [ln for ln in security if ln["event"] == "ban"]
    assert len(ban) == 1 and ban[0]["failures"] == 5 and ban[0]["ip"] == "127.0.0.1"
    dropped = sum(ln["dropped"] for ln in security if ln["event"] == "drop_summary")
    print(f"the server dropped {dropped} packets from svcrack after the ban without answering")
    assert dropped > 0


def test_control_svcrack_cracks_when_fail_to_ban_is_off(data_dir: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    words = wordlist(tmp_path / "words.txt", 10, 3)
    with serve(data_dir, port, env_extra={**MD5_ONLY, "MSS_SECURITY_F2B_ENABLED": "0"}):
        out = tool(
            "svcrack",
            "-u",
            "150",
            "-d",
            str(words),
            "-p",
            str(port),
            "--maximumtime",
            "2",
            "127.0.0.1",
            cwd=tmp_path,
        )
    assert out.returncode == 40 and PASSWORD in out.stdout, out
