"""Machine description printed with every benchmark table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_revision() -> str:
    """The commit of the source tree the benchmark runs (``+dirty`` with local changes), or "".

    An editable install keeps the version it had when it was installed, which says nothing of
    the commit measured; the checkout does.
    """
    import fastsip

    tree = Path(fastsip.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def describe() -> str:
    import fastsip

    revision = source_revision()
    build = ""
    if fastsip.USING_EXTENSIONS:
        from fastsip import _parser_c

        pgo = getattr(_parser_c, "BUILD_PGO", False)
        build = " (profile-guided build)" if pgo else " (built without profile guidance)"
    return (
        f"machine: {platform.system()} {platform.release()} {platform.machine()}, {cpu_model()}, "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]} ({platform.python_implementation()}); "
        f"fastsip {fastsip.__version__}{f' (source {revision})' if revision else ''}, "
        f"extensions in use: {fastsip.USING_EXTENSIONS}{build}"
    )
