"""Per-IP ban table: the public module (selects the Cython or pure twin; IP packing helpers).

:class:`BanTable` is the first gate for every datagram and new connection (``check(ip, now)``,
O(1)); the full theory of operation, the exact sliding-window rule and the eviction rules are in
the specification, :mod:`fastsip._bantable_py`. The fast twin is ``fastsip._bantable_c``.

Addresses are packed bytes, 4 (IPv4) or 16 (IPv6), so the hot path never formats or parses
text. :func:`pack_ip` converts the text form once, at the edge, and folds IPv4-mapped IPv6
(``::ffff:a.b.c.d``, what a dual-stack socket reports for IPv4 peers) to the 4-byte IPv4 form so
one host has one key. fastsip is sans-IO and does not import :mod:`socket`; a transport that
already has ``socket`` at hand may use ``socket.inet_pton`` with the same mapped-address fold.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ._compat import twin

__all__ = ("BanTable", "pack_ip", "unpack_ip")

if TYPE_CHECKING:
    from ._bantable_py import BanTable
else:
    BanTable = twin("bantable").BanTable

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def pack_ip(text: str) -> bytes:
    """Pack an IP address written as text into the table's key.

    Args:
        text: ``"192.0.2.1"``, ``"2001:db8::1"``, ``"::ffff:192.0.2.1"`` (folded to IPv4),
            optionally with an IPv6 zone (``"fe80::1%eth0"``, the zone is dropped).

    Returns:
        4 bytes for IPv4 (and IPv4-mapped IPv6), 16 bytes for IPv6.

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: ``text`` is not an IP address.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    packed = ipaddress.ip_address(text).packed
    if len(packed) == 16 and packed[:12] == _V4_MAPPED_PREFIX:
        return packed[12:]
    return packed


def unpack_ip(ip: bytes) -> str:
    """The text form of a packed address (compressed form for IPv6).

    Raises:
        TypeError: ``ip`` is not ``bytes``.
        ValueError: ``ip`` is not 4 or 16 bytes long.
    """
    if not isinstance(ip, bytes):
        raise TypeError(f"ip must be bytes, not {type(ip).__name__}")
    if len(ip) == 4:
        return str(ipaddress.IPv4Address(ip))
    if len(ip) == 16:
        return str(ipaddress.IPv6Address(ip))
    raise ValueError(f"ip must be 4 or 16 bytes, got {len(ip)}")
