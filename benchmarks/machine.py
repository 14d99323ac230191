"""Machine description printed with every benchmark table."""

from __future__ import annotations

import os
import platform
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> str:
    import fastsip

    return (
        f"machine: {platform.system()} {platform.release()} {platform.machine()}, {cpu_model()}, "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]} ({platform.python_implementation()}); "
        f"fastsip {fastsip.__version__}, extensions in use: {fastsip.USING_EXTENSIONS}"
    )
