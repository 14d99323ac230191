"""Build script: declares only the Cython extension modules (metadata lives in pyproject.toml).

Every ``src/fastsip/_*_c.pyx`` is one extension module, the fast twin of ``_*_py.py``; so is
every ``src/mss/transport/_*_c.pyx`` on Linux (socket code: ``_rx_c`` reads with ``recvmmsg``,
a Linux call; other platforms use its pure twin).

Knobs (environment):
  FASTSIP_NO_EXTENSIONS=1   build no extension (pure-Python install).
  FASTSIP_CYTHON_TRACE=1    compile with line tracing (coverage of .pyx).
  FASTSIP_CYTHON_ANNOTATE=1 write Cython's HTML annotation next to each .pyx.
  FASTSIP_DEBUG=1           -O0 -g, bounds checks on.
An extension that fails to compile is skipped (``optional=True``); fastsip then runs on the pure
twins and ``fastsip.USING_EXTENSIONS`` is False.
"""

from __future__ import annotations

import os
import sys
from glob import glob

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def _extensions() -> list[Extension]:
    if _flag("FASTSIP_NO_EXTENSIONS") or sys.implementation.name != "cpython":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # pragma: no cover - Cython is a build requirement
        return []
    debug = _flag("FASTSIP_DEBUG")
    trace = _flag("FASTSIP_CYTHON_TRACE")
    macros: list[tuple[str, str | None]] = []
    if trace:
        macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
    compile_args: list[str] = []
    if sys.platform != "win32":
        compile_args = ["-O0", "-g"] if debug else ["-O3"]
    if sys.platform.startswith("linux") and not debug:
        # Calls into libpython through the GOT instead of a PLT stub: one jump less per call
        # (a REGISTER parsed and read makes over a hundred: 0.4 to 1 % of its instructions).
        compile_args.append("-fno-plt")
    exts = []
    sources = sorted(glob("src/fastsip/_*_c.pyx"))
    if sys.platform.startswith("linux"):
        sources += sorted(glob("src/mss/transport/_*_c.pyx"))
    for pyx in sources:
        package = os.path.dirname(os.path.relpath(pyx, "src")).replace(os.sep, ".")
        name = package + "." + os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                name,
                [pyx],
                define_macros=macros,
                extra_compile_args=compile_args,
                optional=not _flag("FASTSIP_REQUIRE_EXTENSIONS"),
            )
        )
    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "binding": True,
            "boundscheck": debug,
            "wraparound": debug,
            "cdivision": True,
            "linetrace": trace,
        },
        annotate=_flag("FASTSIP_CYTHON_ANNOTATE"),
    )


setup(ext_modules=_extensions())
