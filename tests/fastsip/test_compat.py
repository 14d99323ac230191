"""The twin switch: FASTSIP_REQUIRE_EXTENSIONS really means the Cython twins are live."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastsip
from fastsip import _compat


def test_loaded_matches_flag() -> None:
    assert fastsip.USING_EXTENSIONS == (bool(_compat.LOADED) and all(_compat.LOADED.values()))


@pytest.mark.skipif(
    os.environ.get("FASTSIP_REQUIRE_EXTENSIONS", "") in ("", "0"),
    reason="only meaningful when the run requires the extension",
)
def test_extensions_really_loaded() -> None:
    # yarl's test_quoting_c_loaded: the run that requires extensions must be using them.
    assert fastsip.USING_EXTENSIONS
    assert all(_compat.LOADED.values())
    for name in _compat.LOADED:
        mod = sys.modules[f"fastsip._{name}_c"]
        assert mod.__file__ is not None and not mod.__file__.endswith(".py")


def test_no_extensions_forces_pure() -> None:
    code = "import fastsip, fastsip._compat as c; print(fastsip.USING_EXTENSIONS, sorted(set(c.LOADED.values())))"
    env = dict(os.environ, FASTSIP_NO_EXTENSIONS="1")
    env.pop("FASTSIP_REQUIRE_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[0] == "False"
    assert "True" not in out.stdout
