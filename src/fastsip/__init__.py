"""fastsip: a sans-IO SIP core (parser, transactions, timers, ban table) with Cython twins."""

from __future__ import annotations

from ._compat import LOADED
from .bantable import BanTable, pack_ip, unpack_ip
from .errors import FastsipError, ParseError
from .headers import Address, Auth, CSeq, Via
from .limits import DEFAULT_LIMITS, Limits
from .message import Kind, Message, Request, Response, make_response
from .parser import StreamParser, classify, parse_datagram
from .timerwheel import TimerWheel
from .uri import URI

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - tree without setuptools-scm metadata
    __version__ = "0.1.0.dev0"

#: True when every hot module runs its Cython twin (see fastsip._compat).
USING_EXTENSIONS: bool = bool(LOADED) and all(LOADED.values())

__all__ = (
    "DEFAULT_LIMITS",
    "URI",
    "USING_EXTENSIONS",
    "Address",
    "Auth",
    "BanTable",
    "CSeq",
    "FastsipError",
    "Kind",
    "Limits",
    "Message",
    "ParseError",
    "Request",
    "Response",
    "StreamParser",
    "TimerWheel",
    "Via",
    "__version__",
    "classify",
    "make_response",
    "pack_ip",
    "parse_datagram",
    "unpack_ip",
)
