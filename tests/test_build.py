"""The profile-guided build's training run (setup.py, build_support/pgo_train.py).

setup.py falls back to the unguided build when the training run fails; this test keeps an API
change from making that fallback the norm unnoticed. It runs the script as setup.py does, in a
fresh interpreter, on the fastsip this run tests, with a few rounds (through the pure twins in
a ``FASTSIP_NO_EXTENSIONS=1`` run, where the same calls must work).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fastsip

SCRIPT = Path(__file__).resolve().parents[1] / "build_support" / "pgo_train.py"


def test_training_run_parses_every_message(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "4"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONHASHSEED="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    # 12 messages a round, all parsed and read; the 5 malformed ones all rejected
    assert run.stdout.strip() == (
        "pgo training: 4 rounds, 48 messages parsed and read, 20 rejected,"
        f" extensions: {fastsip.USING_EXTENSIONS}"
    )


def test_build_reports_whether_it_was_profile_guided() -> None:
    expect_pgo = os.environ.get("FASTSIP_EXPECT_PGO", "") not in ("", "0")
    if not fastsip.USING_EXTENSIONS:
        # a pure-Python run has no compiled module, so it cannot be the guided build
        assert not expect_pgo
        return
    from fastsip import _parser_c

    assert type(_parser_c.BUILD_PGO) is bool
    if expect_pgo:
        assert _parser_c.BUILD_PGO
