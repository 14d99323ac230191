"""STUN Binding, sans-IO (RFC 5389): the server side a SIP port needs, plus a tiny client codec.

Theory of operation
-------------------
A SIP server answers STUN Binding requests on its own SIP ports: SIP Outbound clients send them
as UDP keep-alives and to learn their public address (RFC 5626 §4.4.2, §8), and softphones use
them to discover their mapping. The transport demultiplexes each datagram: :func:`is_stun`
is a cheap check on the fixed header (a SIP message starts with an ASCII letter, so its first
two bits are never both zero, RFC 5389 §6 / RFC 7983), and :func:`handle_request` is the whole
server: bytes and the source address go in, the reply datagram (or ``None``) comes out. No
sockets, no clock, no state between calls.

The stages, each with its RFC rule:

1. **Header** (RFC 5389 §6, §7.3): the two top bits of the type are 0, the length field is a
   multiple of 4 and equals the datagram length minus the 20-byte header, and the magic cookie
   ``0x2112A442`` follows. A datagram failing any of these is not STUN and is dropped silently;
   classic RFC 3489 messages (no cookie) are not accepted.
2. **Attributes** (RFC 5389 §15): type-length-value, each value padded to a multiple of 4.
   An attribute running past the message, or anything after FINGERPRINT, makes the message
   malformed: a request gets a 400 error response, anything else is dropped.
3. **FINGERPRINT** (RFC 5389 §15.5): CRC-32 of the message up to the attribute, XOR
   ``0x5354554E``, computed with the header length already covering the attribute. A wrong
   value means the datagram is not STUN after all (that is what the attribute is for when
   STUN shares a port with another protocol), so it is dropped silently (§7.3).
4. **Comprehension** (RFC 5389 §7.3.1): a request carrying a comprehension-required attribute
   (type < 0x8000) that this server does not know gets a 420 error response listing those
   types in UNKNOWN-ATTRIBUTES (§15.9). USERNAME, MESSAGE-INTEGRITY, REALM and NONCE are known
   and ignored: this server uses no credentials (§10 leaves authentication to the usage).
5. **Binding** (RFC 5389 §7.3.1, §15.2): the success response echoes the transaction id and
   carries XOR-MAPPED-ADDRESS for the source: the port is XORed with the cookie's top 16 bits,
   an IPv4 address with the cookie, an IPv6 address with the cookie followed by the
   transaction id. MAPPED-ADDRESS (§15.1) is added on request for old clients, SOFTWARE
   (§15.10) when configured, FINGERPRINT when the request carried one.

Indications and responses are never answered (§7.3.2, §7.3.3): this module is a server only.

Invariants
----------
* :func:`parse_message` raises :class:`StunError` and nothing else on any input, and never
  reads past the buffer (every read is bounds-checked before ``struct.unpack_from``).
* :func:`handle_request` never raises on any ``data``; only a malformed ``source`` or
  ``software`` (programming errors of the caller) raise ``ValueError``.
* Every message built here has attributes padded to 4 bytes with zeros and a header length
  that covers them all.

RFC sections: RFC 5389 §6 (header), §7.3 (receiving), §7.3.1 (requests), §15.1, §15.2, §15.5,
§15.6, §15.9, §15.10, §18.2 (attribute registry); RFC 5769 (test vectors); RFC 5626 §8 (SIP
Outbound keep-alives); RFC 7983 (demultiplexing).
"""

from __future__ import annotations

import binascii
import enum
import ipaddress
import os
import struct
from dataclasses import dataclass

from .errors import FastsipError

__all__ = (
    "ATTR_ERROR_CODE",
    "ATTR_FINGERPRINT",
    "ATTR_MAPPED_ADDRESS",
    "ATTR_MESSAGE_INTEGRITY",
    "ATTR_NONCE",
    "ATTR_REALM",
    "ATTR_SOFTWARE",
    "ATTR_UNKNOWN_ATTRIBUTES",
    "ATTR_USERNAME",
    "ATTR_XOR_MAPPED_ADDRESS",
    "BINDING",
    "FINGERPRINT_XOR",
    "HEADER_LENGTH",
    "MAGIC_COOKIE",
    "StunClass",
    "StunError",
    "StunMessage",
    "binding_request",
    "handle_request",
    "is_stun",
    "parse_error_code",
    "parse_message",
    "parse_xor_mapped_address",
)

#: RFC 5389 §6: the fixed value at bytes 4-7 of every message.
MAGIC_COOKIE = 0x2112A442
#: RFC 5389 §15.5: XORed into the CRC-32 of the FINGERPRINT attribute.
FINGERPRINT_XOR = 0x5354554E
#: RFC 5389 §6: type (2) + length (2) + cookie (4) + transaction id (12).
HEADER_LENGTH = 20

#: RFC 5389 §18.1: the only method defined by the base specification.
BINDING = 0x001

# RFC 5389 §18.2: attribute registry (the ones this module reads or writes).
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_USERNAME = 0x0006
ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_ERROR_CODE = 0x0009
ATTR_UNKNOWN_ATTRIBUTES = 0x000A
ATTR_REALM = 0x0014
ATTR_NONCE = 0x0015
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028

#: Comprehension-required attributes (type < 0x8000) a Binding request may carry without a 420:
#: the address attributes are meaningless in a request but harmless, and the credential
#: attributes are understood and ignored because this server does not authenticate (§10).
_KNOWN_REQUIRED = frozenset(
    {
        ATTR_MAPPED_ADDRESS,
        ATTR_USERNAME,
        ATTR_MESSAGE_INTEGRITY,
        ATTR_ERROR_CODE,
        ATTR_UNKNOWN_ATTRIBUTES,
        ATTR_REALM,
        ATTR_NONCE,
        ATTR_XOR_MAPPED_ADDRESS,
    }
)

_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02
_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_FINGERPRINT_ATTR_LENGTH = 8  # type + length + CRC-32

# RFC 5389 §15.6: the recommended reason phrases.
_REASONS = {400: "Bad Request", 420: "Unknown Attribute"}
# RFC 5389 §15.10: SOFTWARE is fewer than 128 characters, at most 763 bytes of UTF-8.
_MAX_SOFTWARE_CHARS = 127
_MAX_SOFTWARE_BYTES = 763


class StunClass(enum.IntEnum):
    """The two class bits of a STUN message type (RFC 5389 §6)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS_RESPONSE = 0b10
    ERROR_RESPONSE = 0b11


class StunError(FastsipError):
    """A datagram is not STUN, or is a malformed STUN message.

    Attributes:
        reason: a short, printable reason.
        status_hint: the STUN error code a server should answer a request with (400), or
            ``None`` when the datagram must be dropped silently (it failed the header or
            FINGERPRINT checks, RFC 5389 §7.3).
    """

    __slots__ = ("reason", "status_hint")

    def __init__(self, reason: str, *, status_hint: int | None = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint

    def __repr__(self) -> str:
        return f"StunError({self.reason!r}, status_hint={self.status_hint})"


@dataclass(frozen=True, slots=True)
class StunMessage:
    """One parsed STUN message.

    Attributes:
        msg_class: request, indication, success or error response.
        method: the 12-bit method (``BINDING`` is 0x001).
        msg_type: the raw 14-bit message type (class and method bits interleaved, §6).
        transaction_id: the 12-byte transaction id.
        attributes: ``(type, value)`` pairs in wire order, padding stripped, FINGERPRINT
            included when present.
        has_fingerprint: the message ends with a FINGERPRINT attribute.
        fingerprint_ok: that FINGERPRINT matched (``False`` when absent, or when it was wrong
            and the message was parsed with ``verify_fingerprint=False``).
    """

    msg_class: StunClass
    method: int
    msg_type: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...]
    has_fingerprint: bool
    fingerprint_ok: bool

    def get(self, attr_type: int) -> bytes | None:
        """Return the value of the first attribute of ``attr_type``, or ``None``.

        Args:
            attr_type: the 16-bit attribute type, e.g. ``ATTR_SOFTWARE``.

        Returns:
            The attribute's value without padding, or ``None`` when absent.
        """
        for typ, value in self.attributes:
            if typ == attr_type:
                return value
        return None


def _split_type(msg_type: int) -> tuple[StunClass, int]:
    # RFC 5389 §6: M11..M7 C1 M6..M4 C0 M3..M0.
    cls = StunClass(((msg_type >> 4) & 0b01) | ((msg_type >> 7) & 0b10))
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    return cls, method


def _join_type(cls: StunClass, method: int) -> int:
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0b01) << 4)
        | ((cls & 0b10) << 7)
    )


def _fingerprint(data: bytes) -> int:
    # RFC 5389 §15.5: ``data`` is the message up to (excluding) FINGERPRINT, whose header
    # length field already counts the 8 bytes of the attribute.
    return (binascii.crc32(data) & 0xFFFFFFFF) ^ FINGERPRINT_XOR


def is_stun(data: bytes) -> bool:
    """Tell whether a datagram looks like an RFC 5389 STUN message (header checks only).

    Args:
        data: one datagram as received.

    Returns:
        ``True`` when the two top bits are zero, the length field is a multiple of 4 equal to
        ``len(data) - 20`` and the magic cookie is present (RFC 5389 §6, §7.3).
    """
    if len(data) < HEADER_LENGTH or data[0] & 0xC0:
        return False
    length = int.from_bytes(data[2:4], "big")
    return data[4:8] == _COOKIE_BYTES and length & 3 == 0 and length == len(data) - HEADER_LENGTH


def parse_message(data: bytes, *, verify_fingerprint: bool = True) -> StunMessage:
    """Parse one STUN message.

    Args:
        data: one datagram (or one framed message from a stream).
        verify_fingerprint: raise when FINGERPRINT does not match; when ``False`` the result
            reports it in ``fingerprint_ok`` instead.

    Returns:
        The parsed message.

    Raises:
        StunError: with ``status_hint=None`` when the header checks (see :func:`is_stun`) or
            the FINGERPRINT check fail, i.e. the datagram is not STUN; with ``status_hint=400``
            when the attributes are malformed (truncated, running past the message, or
            following FINGERPRINT).
    """
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise StunError("shorter than the STUN header", status_hint=None)
    msg_type, length, cookie, transaction_id = _HEADER.unpack_from(data, 0)
    if msg_type & 0xC000:
        raise StunError("top two bits of the message type are not zero", status_hint=None)
    if cookie != MAGIC_COOKIE:
        raise StunError("no magic cookie (classic RFC 3489 STUN is not accepted)", status_hint=None)
    if length & 3:
        raise StunError("message length is not a multiple of 4", status_hint=None)
    if length != len(data) - HEADER_LENGTH:
        raise StunError("message length does not match the datagram", status_hint=None)
    msg_class, method = _split_type(msg_type)

    attributes: list[tuple[int, bytes]] = []
    has_fingerprint = False
    fingerprint_ok = False
    end = len(data)
    pos = HEADER_LENGTH
    while pos < end:
        if has_fingerprint:
            # RFC 5389 §15.5: FINGERPRINT MUST be the last attribute.
            raise StunError("attribute after FINGERPRINT")
        if end - pos < _ATTR_HEADER.size:  # pragma: no cover - the length % 4 check forbids it
            raise StunError("truncated attribute header")
        attr_type, attr_len = _ATTR_HEADER.unpack_from(data, pos)
        value_start = pos + _ATTR_HEADER.size
        padded = (attr_len + 3) & ~3  # RFC 5389 §15: values are padded to 4 bytes
        if value_start + padded > end:
            raise StunError(f"attribute 0x{attr_type:04x} runs past the end of the message")
        value = data[value_start : value_start + attr_len]
        if attr_type == ATTR_FINGERPRINT:
            if attr_len != 4:
                raise StunError("FINGERPRINT value is not 4 bytes")
            has_fingerprint = True
            (received,) = struct.unpack("!I", value)
            fingerprint_ok = received == _fingerprint(data[:pos])
            if not fingerprint_ok and verify_fingerprint:
                # RFC 5389 §7.3: a failed FINGERPRINT check means "not STUN": drop silently.
                raise StunError("FINGERPRINT does not match", status_hint=None)
        attributes.append((attr_type, value))
        pos = value_start + padded

    return StunMessage(
        msg_class=msg_class,
        method=method,
        msg_type=msg_type,
        transaction_id=transaction_id,
        attributes=tuple(attributes),
        has_fingerprint=has_fingerprint,
        fingerprint_ok=fingerprint_ok,
    )


# -- building -----------------------------------------------------------------------------------


def _attr(attr_type: int, value: bytes) -> bytes:
    pad = -len(value) & 3
    return _ATTR_HEADER.pack(attr_type, len(value)) + value + b"\x00" * pad


def _encode(
    cls: StunClass,
    method: int,
    transaction_id: bytes,
    attributes: list[bytes],
    *,
    fingerprint: bool,
) -> bytes:
    body = b"".join(attributes)
    length = len(body) + (_FINGERPRINT_ATTR_LENGTH if fingerprint else 0)
    message = _HEADER.pack(_join_type(cls, method), length, MAGIC_COOKIE, transaction_id) + body
    if fingerprint:
        message += _attr(ATTR_FINGERPRINT, struct.pack("!I", _fingerprint(message)))
    return message


def _software_value(software: str | None) -> bytes | None:
    if software is None:
        return None
    encoded = software.encode("utf-8")
    if len(software) > _MAX_SOFTWARE_CHARS or len(encoded) > _MAX_SOFTWARE_BYTES:
        # RFC 5389 §15.10.
        raise ValueError("SOFTWARE must be fewer than 128 characters and at most 763 bytes")
    return encoded


def _xor_address(packed: bytes, transaction_id: bytes) -> bytes:
    # RFC 5389 §15.2: IPv4 is XORed with the cookie, IPv6 with the cookie then the transaction
    # id (the port, XORed with the cookie's top 16 bits, is done by the callers).
    key = (_COOKIE_BYTES + transaction_id)[: len(packed)]
    return bytes(a ^ b for a, b in zip(packed, key, strict=True))


def _address_value(source: tuple[str, int], transaction_id: bytes, *, xor: bool) -> bytes:
    host, port = source[0], source[1]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"invalid port {port!r}")
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the peer knows itself as IPv4.
        address = address.ipv4_mapped
    family = _FAMILY_IPV4 if address.version == 4 else _FAMILY_IPV6
    packed = address.packed
    if xor:
        port ^= MAGIC_COOKIE >> 16
        packed = _xor_address(packed, transaction_id)
    return struct.pack("!BBH", 0, family, port) + packed


def _decode_address(value: bytes, transaction_id: bytes, *, xor: bool) -> tuple[str, int]:
    if len(value) < 4:
        raise StunError("address attribute shorter than 4 bytes")
    _, family, port = struct.unpack_from("!BBH", value, 0)
    packed = value[4:]
    if family == _FAMILY_IPV4 and len(packed) == 4:
        pass
    elif family == _FAMILY_IPV6 and len(packed) == 16:
        pass
    else:
        raise StunError(f"bad address family 0x{family:02x} or length {len(value)}")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        packed = _xor_address(packed, transaction_id)
    address = (
        ipaddress.IPv4Address(packed) if family == _FAMILY_IPV4 else ipaddress.IPv6Address(packed)
    )
    return str(address), port


def _error_response(
    request: StunMessage | tuple[int, bytes],
    code: int,
    *,
    software: bytes | None,
    unknown: list[int] | None = None,
    fingerprint: bool = False,
) -> bytes:
    if isinstance(request, StunMessage):
        method, transaction_id = request.method, request.transaction_id
    else:
        method, transaction_id = request
    reason = _REASONS[code].encode("utf-8")
    # RFC 5389 §15.6: 21 reserved bits, 3-bit class (hundreds), 8-bit number, reason phrase.
    attrs = [_attr(ATTR_ERROR_CODE, struct.pack("!HBB", 0, code // 100, code % 100) + reason)]
    if unknown:
        # RFC 5389 §15.9: a list of 16-bit types, padded like any attribute.
        attrs.append(_attr(ATTR_UNKNOWN_ATTRIBUTES, struct.pack(f"!{len(unknown)}H", *unknown)))
    if software is not None:
        attrs.append(_attr(ATTR_SOFTWARE, software))
    return _encode(StunClass.ERROR_RESPONSE, method, transaction_id, attrs, fingerprint=fingerprint)


def handle_request(
    data: bytes,
    source: tuple[str, int],
    *,
    software: str | None = None,
    legacy_mapped_address: bool = False,
) -> bytes | None:
    """Answer one datagram as a STUN server (RFC 5389 §7.3).

    Args:
        data: the datagram as received.
        source: the sender's ``(host, port)`` as the socket reports it (extra items of an IPv6
            4-tuple are ignored; ``::ffff:a.b.c.d`` is answered as IPv4).
        software: a SOFTWARE attribute value for every response (RFC 5389 §15.10).
        legacy_mapped_address: also send MAPPED-ADDRESS, for clients that only read that one
            (RFC 5389 §12.2, §15.1).

    Returns:
        The response datagram to send back to ``source``: a Binding success response, or an
        error response (400 for a malformed request, 420 with UNKNOWN-ATTRIBUTES for unknown
        comprehension-required attributes, 400 for a method other than Binding). ``None``
        when nothing must be sent: not STUN, a failed FINGERPRINT, an indication, a response.

    Raises:
        ValueError: ``source`` is not an IP address and port, or ``software`` is too long.
    """
    software_value = _software_value(software)
    try:
        request = parse_message(data)
    except StunError as exc:
        if exc.status_hint is None:
            return None
        # The header passed every check, so type and transaction id are readable.
        msg_type, _, _, transaction_id = _HEADER.unpack_from(data, 0)
        cls, method = _split_type(msg_type)
        if cls is not StunClass.REQUEST:
            return None  # RFC 5389 §7.3.2, §7.3.3: never answer indications or responses
        return _error_response((method, transaction_id), 400, software=software_value)

    if request.msg_class is not StunClass.REQUEST:
        return None
    fingerprint = request.has_fingerprint
    if request.method != BINDING:
        return _error_response(request, 400, software=software_value, fingerprint=fingerprint)

    # RFC 5389 §7.3.1: unknown comprehension-required attributes -> 420 + UNKNOWN-ATTRIBUTES.
    unknown: list[int] = []
    for attr_type, _ in request.attributes:
        if attr_type < 0x8000 and attr_type not in _KNOWN_REQUIRED and attr_type not in unknown:
            unknown.append(attr_type)
    if unknown:
        return _error_response(
            request, 420, software=software_value, unknown=unknown, fingerprint=fingerprint
        )

    txn = request.transaction_id
    attrs = [_attr(ATTR_XOR_MAPPED_ADDRESS, _address_value(source, txn, xor=True))]
    if legacy_mapped_address:
        attrs.append(_attr(ATTR_MAPPED_ADDRESS, _address_value(source, txn, xor=False)))
    if software_value is not None:
        attrs.append(_attr(ATTR_SOFTWARE, software_value))
    return _encode(StunClass.SUCCESS_RESPONSE, BINDING, txn, attrs, fingerprint=fingerprint)


# -- client side --------------------------------------------------------------------------------


def binding_request(
    *,
    transaction_id: bytes | None = None,
    fingerprint: bool = False,
    software: str | None = None,
) -> bytes:
    """Build a Binding request (RFC 5389 §7.1), e.g. a SIP Outbound keep-alive.

    Args:
        transaction_id: 12 bytes; random (``os.urandom``) when not given (§6).
        fingerprint: end the message with FINGERPRINT (§15.5).
        software: a SOFTWARE attribute value (§15.10).

    Returns:
        The encoded request.

    Raises:
        ValueError: ``transaction_id`` is not 12 bytes, or ``software`` is too long.
    """
    if transaction_id is None:
        transaction_id = os.urandom(12)
    elif len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    software_value = _software_value(software)
    attrs = [] if software_value is None else [_attr(ATTR_SOFTWARE, software_value)]
    return _encode(
        StunClass.REQUEST, BINDING, bytes(transaction_id), attrs, fingerprint=fingerprint
    )


def parse_xor_mapped_address(msg: StunMessage | bytes) -> tuple[str, int]:
    """Read the XOR-MAPPED-ADDRESS of a (success) response (RFC 5389 §15.2).

    Args:
        msg: a parsed message, or the raw bytes of one.

    Returns:
        ``(host, port)``, with the host in ``ipaddress`` text form.

    Raises:
        StunError: the message is malformed, has no XOR-MAPPED-ADDRESS, or its value is not a
            valid IPv4/IPv6 address attribute.
    """
    if not isinstance(msg, StunMessage):
        msg = parse_message(msg)
    value = msg.get(ATTR_XOR_MAPPED_ADDRESS)
    if value is None:
        raise StunError("no XOR-MAPPED-ADDRESS attribute")
    return _decode_address(value, msg.transaction_id, xor=True)


def parse_error_code(msg: StunMessage | bytes) -> tuple[int, str]:
    """Read the ERROR-CODE of an error response (RFC 5389 §15.6).

    Args:
        msg: a parsed message, or the raw bytes of one.

    Returns:
        ``(code, reason phrase)``, e.g. ``(420, "Unknown Attribute")``.

    Raises:
        StunError: the message is malformed or has no valid ERROR-CODE attribute.
    """
    if not isinstance(msg, StunMessage):
        msg = parse_message(msg)
    value = msg.get(ATTR_ERROR_CODE)
    if value is None or len(value) < 4:
        raise StunError("no valid ERROR-CODE attribute")
    _, cls, number = struct.unpack_from("!HBB", value, 0)
    try:
        reason = value[4:].decode("utf-8")
    except UnicodeDecodeError:
        raise StunError("ERROR-CODE reason is not UTF-8") from None
    return (cls & 0x07) * 100 + number, reason
