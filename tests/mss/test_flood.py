"""A bounded flood from a banned address while legitimate users register (issue 6).

Runs ``benchmarks/flood.py`` for 2 s per phase (the benchmark itself runs 10 s): a sender
process bound to 127.0.0.66 (banned with ``mss ban add`` before the server starts) sends
>= 20,000 scanner packets/s to a subprocess ``mss serve`` while sipp registers users from
127.0.0.2 at 500 REGISTERs/s. Asserts zero legitimate failures; prints the server CPU time per
dropped packet (``/proc/<pid>/stat``), which is reported, not asserted (it depends on the
machine and on what else runs on it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_flood_from_a_banned_source_costs_no_legitimate_registration(tmp_path: Path) -> None:
    out = tmp_path / "flood.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "flood.py"),
            "--duration",
            "2",
            "--rate",
            "25000",
            "--legit-rate",
            "500",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    print("\n" + res.stdout + res.stderr[-2000:])
    assert out.exists(), res.stderr
    s = json.loads(out.read_text())
    # the flood really happened: bounded in count (50,000) and at >= 20,000 packets/s
    assert s["flood_sent"] == 50_000 and s["loaded_flood_sent"] == 50_000
    assert s["flood_rate_sent"] >= 20_000
    # the server saw (and dropped without parsing or answering) most of it
    assert s["flood_counted"] >= 0.5 * s["flood_sent"]
    # zero legitimate failures, with and without the flood
    assert s["legit_failed"] == 0 and s["legit_ok"] == s["legit_calls"] == 1000, s["phases"]
    assert s["legit_only_failed"] == 0
    assert res.returncode == 0
