"""The ``mss`` command line and ``mss serve`` as a real process: users, live changes, restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netutil import run_on
from serverutil import Uac, free_udp_port, mss_cli, serve, wait_for


def register(port: int, user: str, password: str, **kw: object) -> int:
    async def go() -> int:
        uac = await Uac.open(port)
        try:
            r = await uac.register(user, password, **kw)  # type: ignore[arg-type]
            return r.status
        finally:
            uac.close()

    return int(run_on("asyncio", go))


def test_user_commands_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "data"
    out = mss_cli("user", "add", "1001", "--password", "secret1", "--name", "Alice", data_dir=d)
    assert "added" in out.stdout and d.exists()
    mss_cli(
        "user",
        "add",
        "1002",
        "--password",
        "secret2",
        "--multi-device",
        "--max-devices",
        "2",
        "--allow-ip",
        "127.0.0.9",
        data_dir=d,
    )
    listed = json.loads(mss_cli("user", "list", "--json", data_dir=d).stdout)
    assert [u["number"] for u in listed] == ["1001", "1002"]
    assert (
        listed[1]["multi_device"]
        and listed[1]["max_devices"] == 2
        and listed[1]["allow_ips"] == ["127.0.0.9"]
    )
    mss_cli("user", "set", "1001", "--max-calls", "2", data_dir=d)
    assert json.loads(mss_cli("user", "list", "--json", data_dir=d).stdout)[0]["max_calls"] == 2
    # bad input: one line naming the field, exit 2, nothing written
    for args, field in [
        (("user", "add", "1001", "--password", "xxxxx"), "number"),
        (("user", "add", "1003", "--password", "x"), "password"),
        (
            ("user", "add", "1003", "--password", "secret3", "--allow-ip", "300.1.1.1"),
            "allow_ip[0]",
        ),
        (("user", "add", "1003", "--password", "secret3", "--max-devices", "0"), "max_devices"),
        (("user", "set", "1999", "--name", "x"), "number"),
        (("user", "del", "1999"), "number"),
    ]:
        res = mss_cli(*args, data_dir=d, check=False)
        assert res.returncode == 2, res
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mss: error: {field}:"), res.stderr
    assert [
        u["number"] for u in json.loads(mss_cli("user", "list", "--json", data_dir=d).stdout)
    ] == ["1001", "1002"]
    # bad configuration names the field too
    res = mss_cli("user", "list", data_dir=d, check=False, env={"MSS_REGISTRAR_MIN_EXPIRES": "0"})
    assert res.returncode == 2 and "registrar.min_expires" in res.stderr
    mss_cli("user", "del", "1002", data_dir=d)
    assert "1002" not in mss_cli("user", "list", data_dir=d).stdout
    assert mss_cli("reg", "list", data_dir=d).stdout.strip() == "no registrations"


def test_serve_live_changes_and_kill9_restart(tmp_path: Path) -> None:
    d = tmp_path / "data"
    port = free_udp_port()
    mss_cli("user", "add", "1001", "--password", "secret1", data_dir=d)
    with serve(d, port) as proc:
        assert register(port, "1001", "secret1") == 200
        # a user added by the CLI while the server runs can register within a second
        mss_cli("user", "add", "1002", "--password", "secret2", data_dir=d)
        t0 = time.monotonic()
        assert wait_for(lambda: register(port, "1002", "secret2") == 200, timeout=5, interval=0.1)
        took = time.monotonic() - t0
        print(f"\nnew user registered {took:.2f} s after `mss user add`")
        # a password change applies too
        mss_cli("user", "set", "1001", "--password", "changed1", data_dir=d)
        assert wait_for(lambda: register(port, "1001", "changed1") == 200, timeout=5, interval=0.1)
        listed = json.loads(mss_cli("user", "list", "--json", data_dir=d).stdout)
        assert [u["online"] for u in listed] == [True, True]
        # kill -9: nothing acknowledged is lost
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    regs = json.loads(mss_cli("reg", "list", "--json", data_dir=d).stdout)
    assert sorted(r["aor"] for r in regs) == ["1001", "1002"]
    with serve(d, port):
        # bindings that have not expired are valid after restart
        out = mss_cli("reg", "list", data_dir=d).stdout
        assert "1001" in out and "1002" in out
        assert register(port, "1001", "changed1") == 200


def test_serve_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = free_udp_port()
    with serve(tmp_path / "d", port) as proc:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stdout is not None
        rest = proc.stdout.read()
        assert "mss stopped" in rest


def test_serve_bad_listen_is_one_line_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mss", "serve", "--data-dir", str(tmp_path), "--listen", "udp:nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("mss: error: transport.listen")


@pytest.mark.parametrize(
    "cmd", [["--help"], ["serve", "--help"], ["user", "add", "--help"], ["reg", "list", "--help"]]
)
def test_help(cmd: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mss", *cmd], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0 and "--data-dir" in res.stdout


def test_json_logs_when_not_a_tty(tmp_path: Path) -> None:
    port = free_udp_port()
    with serve(tmp_path / "d", port) as proc:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        assert proc.stdout is not None
        lines = [ln for ln in proc.stdout.read().splitlines() if ln.strip()]
        assert lines and all(json.loads(ln)["level"] for ln in lines)
