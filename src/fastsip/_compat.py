"""The one switch between the Cython twins and their pure-Python references.

Each hot module ``x`` has a reference ``_x_py.py`` (the specification) and a fast twin
``_x_c.pyx`` with the same public names. :func:`twin` picks one at import time:

* ``FASTSIP_NO_EXTENSIONS=1`` (or a non-CPython interpreter) forces the pure twin;
* ``FASTSIP_REQUIRE_EXTENSIONS=1`` turns a missing/broken extension into an ImportError;
* otherwise the extension is used when it imports, the pure twin when it does not.

``LOADED`` records the choice per module; ``fastsip.USING_EXTENSIONS`` is True only when every
twin loaded its extension (multidict's ``_compat.py`` does the same).
"""

from __future__ import annotations

import importlib
import os
import platform
from types import ModuleType

__all__ = ("LOADED", "NO_EXTENSIONS", "REQUIRE_EXTENSIONS", "twin")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no", "False")


NO_EXTENSIONS: bool = _env_flag("FASTSIP_NO_EXTENSIONS") or (
    platform.python_implementation() != "CPython"
)
REQUIRE_EXTENSIONS: bool = _env_flag("FASTSIP_REQUIRE_EXTENSIONS")

if NO_EXTENSIONS and REQUIRE_EXTENSIONS:  # pragma: no cover - contradictory setup
    raise ImportError("FASTSIP_NO_EXTENSIONS and FASTSIP_REQUIRE_EXTENSIONS are both set")

#: module name -> True when its Cython twin is the one in use.
LOADED: dict[str, bool] = {}


def twin(name: str) -> ModuleType:
    """Import and return the twin of ``fastsip.<name>`` that this process uses.

    Args:
        name: the public module name, e.g. ``"parser"``.

    Returns:
        ``fastsip._<name>_c`` or ``fastsip._<name>_py``.

    Raises:
        ImportError: the extension is required but cannot be imported.
    """
    if not NO_EXTENSIONS:
        try:
            mod = importlib.import_module(f"fastsip._{name}_c")
        except ImportError:
            if REQUIRE_EXTENSIONS:
                raise
        else:
            LOADED[name] = True
            return mod
    LOADED[name] = False
    return importlib.import_module(f"fastsip._{name}_py")
