"""The import arrows of house-style "the shape at a glance", checked on the source (AST).

    mss.cli → mss.app ─┬→ mss.api ───────────────→ mss.features → mss.storage
                       └→ mss.transport → mss.sip → mss.features → mss.storage
                                          mss.sip → mss.media → mss.features
    mss.transport / mss.sip / mss.media / mss.features → fastsip (sans-IO) → stdlib only
    mss.config, mss.errors: imported by every mss layer; they import nothing from mss

A layer never imports one above it. fastsip imports only the standard library.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: layer -> the mss layers (and fastsip) it may import
ALLOWED: dict[str, set[str]] = {
    "mss.storage": {"mss.storage"},
    "mss.features": {"mss.features", "mss.storage", "fastsip"},
    "mss.media": {"mss.media", "mss.features", "mss.storage", "fastsip"},
    "mss.sip": {"mss.sip", "mss.media", "mss.features", "mss.storage", "fastsip"},
    "mss.transport": {
        "mss.transport",
        "mss.sip",
        "mss.media",
        "mss.features",
        "mss.storage",
        "fastsip",
    },
    "mss.api": {"mss.api", "mss.features", "mss.storage", "fastsip"},
    "mss.config": set(),
    "mss.errors": set(),
    "mss.logs": set(),
}
COMMON = {"mss.config", "mss.errors", "mss.logs"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    out += [f"{target}.{a.name}" for a in node.names]
                else:
                    out.append(target)
            else:
                out.append(node.module or "")
    return out


def _layer(name: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if name == layer or name.startswith(layer + "."):
            return layer
    return None


FILES = sorted(SRC.rglob("*.py")) + sorted(SRC.rglob("*.pyx"))


@pytest.mark.parametrize(
    "path",
    [p for p in FILES if p.parts[-2] == "fastsip" or "fastsip" in p.parts],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_fastsip_imports_only_stdlib(path: Path) -> None:
    if path.suffix == ".pyx":
        names = []
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*(?:from\s+(\.*[\w.]*)\s+c?import|c?import\s+([\w.]+))", line)
            if m:
                names.append((m.group(1) or m.group(2)).lstrip("."))
        for name in names:
            top = name.split(".")[0] or "fastsip"
            ok = (
                top in ("fastsip", "cython", "cpython", "libc", "")
                or top in sys.stdlib_module_names
            )
            ok = ok or (path.parent.name == "fastsip" and (path.parent / f"{top}.py").exists())
            assert ok, f"{path.name} imports {name}"
            assert top not in ("asyncio", "socket", "time", "selectors"), (
                f"{path.name} imports {name}"
            )
        return
    for name in _imports(path):
        top = name.split(".")[0]
        assert top == "fastsip" or top in sys.stdlib_module_names, f"{path.name} imports {name}"
        assert top not in ("asyncio", "socket", "time", "selectors"), (
            f"{path.name} imports {name}: fastsip is sans-IO"
        )


@pytest.mark.parametrize(
    "path",
    [p for p in FILES if "mss" in p.parts and p.suffix == ".py"],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_mss_layers(path: Path) -> None:
    layer = _layer(_module_name(path))
    if layer is None:
        return  # mss.cli, mss.app, mss.__init__: the top assembles everything
    allowed = ALLOWED[layer] | COMMON - ({layer} if layer in COMMON else set())
    for name in _imports(path):
        top = name.split(".")[0]
        if top not in ("mss", "fastsip"):
            continue
        target = "fastsip" if top == "fastsip" else _layer(name)
        assert target is not None and (target in allowed or target == layer), (
            f"{_module_name(path)} ({layer}) imports {name}"
        )
