"""baresip ↔ baresip through ``mss serve``: a real softphone call with RTP, on loopback (issue 5).

Two baresip 1.0 instances (Debian ``baresip-core``) run with private config directories: no
sound device (``ausine`` 440 Hz tone as the source, ``aubridge`` as a null player), G.711, SIP
on 127.0.0.1 with an ephemeral port. 1002 registers with ``answermode=auto``; 1001 dials 1002
with ``-e "/dial 1002"`` and quits after a few seconds (``-t``), which hangs the call up. The
media goes phone to phone (the B2BUA passes SDP through), so each side logging "incoming rtp
... established" shows the SDP arrived intact.

baresip notes (v1.0.0): libre answers a digest challenge only when the *first* challenge is
MD5 (a first SHA-256 challenge fails with "Function not implemented"), so the server offers MD5
alone (``MSS_AUTH_ALGORITHMS=MD5``), as for sipp; ``ausine`` produces 48 kHz stereo only, hence
``ausrc_srate``/``ausrc_channels`` (baresip resamples to 8 kHz mono for PCMU); ``net_interface``
must be an address (``127.0.0.1``), not ``lo``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from serverutil import free_udp_port, mss_cli, serve, wait_for

pytestmark = pytest.mark.slow

CALL_SECONDS = 6


def require_baresip() -> str:
    path = shutil.which("baresip")
    if path is not None:
        return path
    raise RuntimeError(
        "baresip is not installed (apt-get install baresip-core; scripts/test.sh does)"
    )


def baresip_dir(base: Path, number: str, server_port: int, *, answermode: str) -> Path:
    d = base / f"baresip-{number}"
    d.mkdir(parents=True)
    rtp = 30000 + (int(number) % 100) * 40
    (d / "config").write_text(
        "poll_method\t\tepoll\n"
        "call_local_timeout\t120\n"
        "call_max_calls\t\t4\n"
        "sip_listen\t\t127.0.0.1:0\n"
        "net_interface\t\t127.0.0.1\n"
        "audio_player\t\taubridge,null\n"
        "audio_alert\t\taubridge,null\n"
        "audio_source\t\tausine,440\n"
        "ausrc_srate\t\t48000\n"
        "auplay_srate\t\t48000\n"
        "ausrc_channels\t\t2\n"
        "auplay_channels\t\t2\n"
        f"rtp_ports\t\t{rtp}-{rtp + 39}\n"
        "module_path\t\t/usr/lib/baresip/modules\n"
        "module\t\t\tg711.so\n"
        "module\t\t\tausine.so\n"
        "module\t\t\taubridge.so\n"
        "module_tmp\t\tuuid.so\n"
        "module_tmp\t\taccount.so\n"
        "module_app\t\tmenu.so\n"
    )
    (d / "accounts").write_text(
        f"<sip:{number}@127.0.0.1:{server_port};transport=udp>;auth_pass=pw-{number};regint=300;"
        f"answermode={answermode}\n"
    )
    return d


def test_baresip_calls_baresip(tmp_path: Path) -> None:
    binary = require_baresip()
    data = tmp_path / "data"
    for n in ("1001", "1002"):
        mss_cli("user", "add", n, "--password", f"pw-{n}", data_dir=data)
    port = free_udp_port()
    callee_dir = baresip_dir(tmp_path, "1002", port, answermode="auto")
    caller_dir = baresip_dir(tmp_path, "1001", port, answermode="manual")
    with (
        open(tmp_path / "callee.log", "wb") as callee_log,
        open(tmp_path / "caller.log", "wb") as caller_log,
        serve(data, port, env_extra={"MSS_AUTH_ALGORITHMS": "MD5"}),
    ):
        callee = subprocess.Popen(
            [binary, "-f", str(callee_dir), "-t", str(CALL_SECONDS + 15)],
            stdin=subprocess.DEVNULL,
            stdout=callee_log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            assert wait_for(
                lambda: json.loads(mss_cli("reg", "list", "--json", data_dir=data).stdout), 10, 0.2
            ), (tmp_path / "callee.log").read_text(errors="replace")
            # the softphone's registration shows in `mss user list` (issue 4)
            users = {
                u["number"]: u
                for u in json.loads(mss_cli("user", "list", "--json", data_dir=data).stdout)
            }
            assert users["1002"]["online"] and users["1002"]["bindings"], users
            assert "baresip" in users["1002"]["bindings"][0]["user_agent"].lower(), users
            t0 = time.monotonic()
            caller = subprocess.run(
                [binary, "-f", str(caller_dir), "-t", str(CALL_SECONDS), "-e", "/dial 1002"],
                stdin=subprocess.DEVNULL,
                stdout=caller_log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                timeout=CALL_SECONDS + 20,
            )
            elapsed = time.monotonic() - t0
            assert caller.returncode == 0
            rows: list[dict[str, object]] = []

            def closed() -> bool:
                nonlocal rows
                rows = json.loads(mss_cli("cdr", "list", "--json", data_dir=data).stdout)
                return bool(rows) and rows[0]["end_at"] is not None

            assert wait_for(closed, 10, 0.2), rows
        finally:
            callee.terminate()
            try:
                callee.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                callee.kill()
                callee.wait()
    caller_out = (tmp_path / "caller.log").read_text(errors="replace")
    callee_out = (tmp_path / "callee.log").read_text(errors="replace")
    assert "Call established" in caller_out, caller_out[-3000:]
    assert "answering call" in callee_out, callee_out[-3000:]
    # SDP passed through unchanged: media flows phone to phone, both ways
    assert "incoming rtp for 'audio' established" in caller_out, caller_out[-3000:]
    assert "incoming rtp for 'audio' established" in callee_out, callee_out[-3000:]
    [rec] = rows
    assert rec["result"] == "answered" and rec["status"] == 200, rec
    assert rec["caller"] == "1001" and rec["callee"] == "1002" and rec["hangup"] == "caller", rec
    assert CALL_SECONDS - 3 <= float(rec["duration"]) <= elapsed + 0.5, (rec, elapsed)
