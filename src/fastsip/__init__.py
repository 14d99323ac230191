"""fastsip: a sans-IO SIP core (parser, transactions, timers, ban table) with Cython twins."""

from __future__ import annotations

from ._compat import LOADED
from .errors import FastsipError, ParseError
from .limits import DEFAULT_LIMITS, Limits

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - tree without setuptools-scm metadata
    __version__ = "0.1.0.dev0"

#: True when every hot module runs its Cython twin (see fastsip._compat).
USING_EXTENSIONS: bool = bool(LOADED) and all(LOADED.values())

__all__ = (
    "DEFAULT_LIMITS",
    "USING_EXTENSIONS",
    "FastsipError",
    "Limits",
    "ParseError",
    "__version__",
)
