"""Build script: declares only the Cython extension modules (metadata lives in pyproject.toml).

Every ``src/fastsip/_*_c.pyx`` is one extension module, the fast twin of ``_*_py.py``; so is
every ``src/mss/transport/_*_c.pyx`` on Linux (socket code: ``_rx_c`` reads with ``recvmmsg``,
a Linux call; other platforms use its pure twin).

Knobs (environment):
  FASTSIP_NO_EXTENSIONS=1   build no extension (pure-Python install).
  FASTSIP_CYTHON_TRACE=1    compile with line tracing (coverage of .pyx).
  FASTSIP_CYTHON_ANNOTATE=1 write Cython's HTML annotation next to each .pyx.
  FASTSIP_DEBUG=1           -O0 -g, bounds checks on.
  FASTSIP_PGO=0|1           profile-guided build of the fastsip modules with gcc (see below):
                            unset, it is tried on Linux with gcc and left out, with a warning,
                            when a step fails; 0 never; 1 always (a failed step is an error).
An extension that fails to compile is skipped (``optional=True``); fastsip then runs on the pure
twins and ``fastsip.USING_EXTENSIONS`` is False.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


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


class BuildExt(build_ext):
    """build_ext with gcc's profile-guided optimisation of the ``fastsip.*`` modules.

    The parser's hot paths are chains of branches on message octets; which way each goes on
    real traffic is not something the compiler can see. So, as CPython's own
    ``--enable-optimizations`` build does: (1) compile the fastsip modules with
    ``-fprofile-generate`` into a scratch directory, (2) run ``build_support/pgo_train.py``
    on them (SIP server work on messages of its own, not the benchmarks'), (3) compile them
    again with ``-fprofile-use``, at the same object paths so gcc finds the counts. Other
    modules, and other compilers, build as usual.
    """

    def build_extensions(self) -> None:
        mode = os.environ.get("FASTSIP_PGO", "").strip().lower()
        if mode in ("0", "false", "no") or not self._pgo_possible():
            if mode in ("1", "true", "yes"):
                raise RuntimeError("FASTSIP_PGO=1 needs gcc on Linux and a non-debug build")
            super().build_extensions()
            return
        try:
            self._pgo_build()
        except Exception as exc:
            if mode in ("1", "true", "yes"):
                raise
            print(f"fastsip: profile-guided build left out ({exc}); building as usual")
            self._set_pgo_flags([])
            super().build_extensions()

    def _pgo_possible(self) -> bool:
        if not sys.platform.startswith("linux") or _flag("FASTSIP_DEBUG"):
            return False
        if _flag("FASTSIP_CYTHON_TRACE") or self.compiler.compiler_type != "unix":
            return False
        try:
            out = subprocess.run(
                [self.compiler.compiler_so[0], "--version"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return "Free Software Foundation" in out and "clang" not in out

    def _pgo_exts(self) -> list[Extension]:
        return [e for e in self.extensions if e.name.startswith("fastsip.")]

    def _set_pgo_flags(self, flags: list[str]) -> None:
        for ext in self._pgo_exts():
            base = getattr(ext, "_fastsip_base", None)
            if base is None:
                base = ext._fastsip_base = (list(ext.extra_compile_args), list(ext.extra_link_args))
            ext.extra_compile_args = base[0] + flags
            ext.extra_link_args = base[1] + [f for f in flags if f.startswith("-fprofile-gen")]

    def _pgo_build(self) -> None:
        profiles = tempfile.mkdtemp(prefix="fastsip-pgo-prof-")
        scratch = tempfile.mkdtemp(prefix="fastsip-pgo-lib-")
        saved = (self.extensions, self.inplace, self.build_lib, self.force)
        try:
            # (1) instrumented, into the scratch directory
            self._set_pgo_flags(
                [
                    "-DFASTSIP_BUILD_PGO=1",  # (in both builds: gcc wants the same code twice)
                    f"-fprofile-generate={profiles}",
                    "-fprofile-update=single",
                ]
            )
            self.extensions, self.inplace, self.build_lib, self.force = (
                self._pgo_exts(),
                0,
                scratch,
                True,
            )
            super().build_extensions()
            # (2) the training run, on a copy of the package around those modules
            shutil.copytree(
                os.path.join(HERE, "src", "fastsip"),
                os.path.join(scratch, "fastsip"),
                ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "*.html", "__pycache__"),
                dirs_exist_ok=True,
            )
            env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
            env.pop("FASTSIP_NO_EXTENSIONS", None)
            script = os.path.join(HERE, "build_support", "pgo_train.py")
            run = subprocess.run(
                [sys.executable, script, scratch],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if run.returncode != 0:
                raise RuntimeError(f"training run failed: {run.stderr.strip()[-500:]}")
            counts = [n for _, _, names in os.walk(profiles) for n in names if n.endswith(".gcda")]
            if len(counts) < len(self._pgo_exts()):
                raise RuntimeError(f"training left {len(counts)} profiles")
            # (3) the build that ships, with the counts
            self.extensions, self.inplace, self.build_lib, self.force = saved
            self.force = True
            self._set_pgo_flags(
                [
                    "-DFASTSIP_BUILD_PGO=1",
                    f"-fprofile-use={profiles}",
                    "-fprofile-partial-training",  # code the run did not reach: optimised as usual
                    "-Wno-missing-profile",
                ]
            )
            # (an optional extension that fails to compile is only a warning: check the files,
            # so that a flag this gcc lacks ends in the usual build, not in no extension)
            outputs = [self.get_ext_fullpath(e.name) for e in self._pgo_exts()]
            for path in outputs:
                if os.path.exists(path):
                    os.remove(path)
            super().build_extensions()
            missing = [p for p in outputs if not os.path.exists(p)]
            if missing:
                raise RuntimeError(f"the profile-guided build did not make {missing}")
            print(f"fastsip: profile-guided build of {len(counts)} modules")
        finally:
            self.extensions, self.inplace, self.build_lib, self.force = saved
            shutil.rmtree(profiles, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
