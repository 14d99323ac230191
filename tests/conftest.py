"""Shared fixtures: every fastsip test runs against both twins (ids ``py`` / ``c``).

``twin_module("parser", "c")`` imports ``fastsip._parser_c``. The C id is skipped only when the
extension is absent *and* not required (``FASTSIP_NO_EXTENSIONS=1`` runs, i.e. the pure-only CI
leg); with ``FASTSIP_REQUIRE_EXTENSIONS=1`` a missing extension fails the run instead.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

# No per-example deadline: CI machines are shared and timing is not what these tests check.
settings.register_profile("fastsip", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fastsip")

TWINS = ("py", "c")
ROOT = Path(__file__).resolve().parent.parent


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def twin_module(name: str, which: str) -> ModuleType:
    """Import one twin of ``fastsip.<name>``; skip ``c`` only in a pure-only run."""
    if which == "py":
        return importlib.import_module(f"fastsip._{name}_py")
    if _flag("FASTSIP_NO_EXTENSIONS"):
        pytest.skip("pure-only run (FASTSIP_NO_EXTENSIONS=1)")
    try:
        return importlib.import_module(f"fastsip._{name}_c")
    except ImportError:
        if _flag("FASTSIP_REQUIRE_EXTENSIONS") or _flag("CI"):
            raise
        pytest.skip(f"fastsip._{name}_c is not built")


def corpus_dir(name: str) -> Path:
    """The shared torture corpus, falling back to the copy under tests/data."""
    for base in (ROOT.parent / "shared" / "corpus", ROOT / "tests" / "data"):
        if (base / name / "index.tsv").exists():
            return base / name
    raise FileNotFoundError(f"corpus {name} not found")
