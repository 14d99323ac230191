"""Public SIP parser API; the implementation is the Cython twin when available.

``parse_datagram``, ``StreamParser`` and ``classify`` frame and parse messages; the value parsers
(``parse_uri``, ``parse_via``, ``parse_address``, ``parse_address_list``, ``parse_cseq``,
``parse_auth``) are used lazily by message accessors and are exported for direct use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import twin

if TYPE_CHECKING:
    from . import _parser_py as _impl
    from ._parser_py import (
        StreamParser,
        classify,
        parse_address,
        parse_address_list,
        parse_auth,
        parse_cseq,
        parse_datagram,
        parse_uri,
        parse_via,
    )
else:
    _impl = twin("parser")
    StreamParser = _impl.StreamParser
    classify = _impl.classify
    parse_address = _impl.parse_address
    parse_address_list = _impl.parse_address_list
    parse_auth = _impl.parse_auth
    parse_cseq = _impl.parse_cseq
    parse_datagram = _impl.parse_datagram
    parse_uri = _impl.parse_uri
    parse_via = _impl.parse_via

__all__ = (
    "StreamParser",
    "classify",
    "parse_address",
    "parse_address_list",
    "parse_auth",
    "parse_cseq",
    "parse_datagram",
    "parse_uri",
    "parse_via",
)
