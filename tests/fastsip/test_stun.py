"""fastsip.stun: RFC 5389 Binding codec and server, checked against the RFC 5769 test vectors.

STUN has no Cython twin (it is not on the SIP hot path), so these tests call the module directly
rather than through the ``py`` / ``c`` implementation fixture.
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsip import stun
from fastsip.errors import FastsipError
from fastsip.stun import StunClass, StunError

# -- RFC 5769 test vectors (§2.1, §2.2, §2.3) ---------------------------------------------------

RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
RFC5769_TXN = bytes.fromhex("b7e7a701bc34d686fa87dfae")

# §2.1 Sample Request: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT.
RFC5769_REQUEST = bytes.fromhex(
    "00010058 2112a442 b7e7a701 bc34d686 fa87dfae"
    "80220010 5354554e 20746573 7420636c 69656e74"
    "00240004 6e0001ff"
    "80290008 932ff9b1 51263b36"
    "00060009 6576746a 3a683676 59202020"
    "00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2"
    "80280004 e57a3bcf"
)
# §2.2 Sample IPv4 Response: 192.0.2.1 port 32853.
RFC5769_RESPONSE_V4 = bytes.fromhex(
    "0101003c 2112a442 b7e7a701 bc34d686 fa87dfae"
    "8022000b 74657374 20766563 746f7220"
    "00200008 0001a147 e112a643"
    "00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7"
    "80280004 c07d4c96"
)
# §2.3 Sample IPv6 Response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
RFC5769_RESPONSE_V6 = bytes.fromhex(
    "01010048 2112a442 b7e7a701 bc34d686 fa87dfae"
    "8022000b 74657374 20766563 746f7220"
    "00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9"
    "00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41"
    "80280004 c8fb0b4c"
)
RFC5769_V4 = ("192.0.2.1", 32853)
RFC5769_V6 = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
VECTORS = {
    "request": RFC5769_REQUEST,
    "ipv4-response": RFC5769_RESPONSE_V4,
    "ipv6-response": RFC5769_RESPONSE_V6,
}


def _message_integrity_ok(data: bytes) -> bool:
    """RFC 5389 §15.4, to prove the transcribed vectors are byte-exact (not a fastsip feature)."""
    msg = stun.parse_message(data)
    offset = stun.HEADER_LENGTH
    for attr_type, value in msg.attributes:
        if attr_type == stun.ATTR_MESSAGE_INTEGRITY:
            covered = data[:2] + struct.pack("!H", offset - 20 + 24) + data[4:offset]
            return hmac.compare_digest(hmac.new(RFC5769_PASSWORD, covered, "sha1").digest(), value)
        offset += 4 + ((len(value) + 3) & ~3)
    return False


def _attr_bytes(data: bytes, attr_type: int) -> bytes:
    """The whole encoded attribute (header, value, padding) of the first ``attr_type``."""
    pos = stun.HEADER_LENGTH
    while pos < len(data):
        typ, length = struct.unpack_from("!HH", data, pos)
        size = 4 + ((length + 3) & ~3)
        if typ == attr_type:
            return data[pos : pos + size]
        pos += size
    raise AssertionError(f"attribute 0x{attr_type:04x} not found")


def _header(msg_type: int, body: bytes, txn: bytes = RFC5769_TXN) -> bytes:
    return struct.pack("!HHI12s", msg_type, len(body), stun.MAGIC_COOKIE, txn) + body


def _attr(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + b"\x00" * (-len(value) & 3)


@pytest.mark.parametrize("data", VECTORS.values(), ids=VECTORS.keys())
def test_rfc5769_vectors_parse_with_valid_fingerprint(data: bytes) -> None:
    assert stun.is_stun(data)
    msg = stun.parse_message(data)
    assert msg.transaction_id == RFC5769_TXN
    assert msg.has_fingerprint and msg.fingerprint_ok
    assert msg.attributes[-1][0] == stun.ATTR_FINGERPRINT
    # The HMAC passing proves the transcription; the fingerprint passing proves our CRC.
    assert _message_integrity_ok(data)


def test_rfc5769_request_fields() -> None:
    msg = stun.parse_message(RFC5769_REQUEST)
    assert msg.msg_class is StunClass.REQUEST
    assert msg.method == stun.BINDING
    assert msg.msg_type == 0x0001
    assert msg.get(stun.ATTR_SOFTWARE) == b"STUN test client"
    assert msg.get(stun.ATTR_USERNAME) == b"evtj:h6vY"  # padding stripped
    assert [t for t, _ in msg.attributes] == [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]


@pytest.mark.parametrize(
    ("data", "expected"),
    [(RFC5769_RESPONSE_V4, RFC5769_V4), (RFC5769_RESPONSE_V6, RFC5769_V6)],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_xor_mapped_address(data: bytes, expected: tuple[str, int]) -> None:
    msg = stun.parse_message(data)
    assert msg.msg_class is StunClass.SUCCESS_RESPONSE
    assert msg.method == stun.BINDING
    assert stun.parse_xor_mapped_address(msg) == expected
    assert stun.parse_xor_mapped_address(data) == expected


@pytest.mark.parametrize(
    ("vector", "source"),
    [(RFC5769_RESPONSE_V4, RFC5769_V4), (RFC5769_RESPONSE_V6, RFC5769_V6)],
    ids=["ipv4", "ipv6"],
)
def test_our_xor_mapped_address_matches_rfc5769(vector: bytes, source: tuple[str, int]) -> None:
    request = stun.binding_request(transaction_id=RFC5769_TXN)
    response = stun.handle_request(request, source)
    assert response is not None
    assert _attr_bytes(response, stun.ATTR_XOR_MAPPED_ADDRESS) == _attr_bytes(
        vector, stun.ATTR_XOR_MAPPED_ADDRESS
    )


def test_rfc5769_request_is_answered_420_for_ice_priority() -> None:
    # PRIORITY (0x0024) is ICE's, comprehension-required and unknown to a SIP server's STUN.
    response = stun.handle_request(RFC5769_REQUEST, RFC5769_V4)
    assert response is not None
    msg = stun.parse_message(response)
    assert msg.msg_class is StunClass.ERROR_RESPONSE
    assert msg.msg_type == 0x0111
    assert msg.transaction_id == RFC5769_TXN
    assert stun.parse_error_code(msg) == (420, "Unknown Attribute")
    assert msg.get(stun.ATTR_UNKNOWN_ATTRIBUTES) == b"\x00\x24"
    assert msg.has_fingerprint and msg.fingerprint_ok  # the request carried one


def test_rfc5769_request_without_priority_gets_success() -> None:
    # USERNAME and MESSAGE-INTEGRITY are known and ignored: no credentials on this server.
    body = b"".join(
        _attr(t, v) for t, v in stun.parse_message(RFC5769_REQUEST).attributes if t != 0x0024
    )
    body = body[:-8]  # drop the old FINGERPRINT; the request now carries none
    response = stun.handle_request(_header(0x0001, body), RFC5769_V4)
    assert response is not None
    msg = stun.parse_message(response)
    assert msg.msg_class is StunClass.SUCCESS_RESPONSE
    assert stun.parse_xor_mapped_address(msg) == RFC5769_V4
    assert not msg.has_fingerprint


# -- Binding round trips ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        ("127.0.0.1", 5060),
        ("203.0.113.7", 1),
        ("0.0.0.0", 0),
        ("255.255.255.255", 65535),
        ("::1", 5060),
        ("2001:db8::dead:beef", 65535),
        ("fe80::1", 40000),
    ],
)
def test_binding_round_trip(source: tuple[str, int]) -> None:
    request = stun.binding_request()
    response = stun.handle_request(request, source)
    assert response is not None and stun.is_stun(response)
    msg = stun.parse_message(response)
    assert msg.msg_type == 0x0101
    assert msg.transaction_id == request[8:20]
    assert stun.parse_xor_mapped_address(msg) == (str(ipaddress.ip_address(source[0])), source[1])
    assert [t for t, _ in msg.attributes] == [stun.ATTR_XOR_MAPPED_ADDRESS]


def test_ipv6_xor_uses_transaction_id() -> None:
    source = ("2001:db8::1", 5060)
    a = stun.handle_request(stun.binding_request(transaction_id=b"\x00" * 12), source)
    b = stun.handle_request(stun.binding_request(transaction_id=b"\xff" * 12), source)
    assert a is not None and b is not None
    va = stun.parse_message(a).get(stun.ATTR_XOR_MAPPED_ADDRESS)
    vb = stun.parse_message(b).get(stun.ATTR_XOR_MAPPED_ADDRESS)
    assert va is not None and vb is not None
    assert va[:8] == vb[:8]  # family, port and the cookie-XORed first 4 address bytes
    assert va[8:] != vb[8:]  # the rest is XORed with the transaction id
    assert stun.parse_xor_mapped_address(a) == stun.parse_xor_mapped_address(b) == source


def test_source_extra_items_and_ipv4_mapped() -> None:
    request = stun.binding_request()
    # An IPv6 socket's 4-tuple, and an IPv4 peer seen on a dual-stack socket.
    response = stun.handle_request(request, ("::ffff:192.0.2.9", 5062, 0, 0))  # type: ignore[arg-type]
    assert response is not None
    value = stun.parse_message(response).get(stun.ATTR_XOR_MAPPED_ADDRESS)
    assert value is not None and value[1] == 0x01  # IPv4 family
    assert stun.parse_xor_mapped_address(response) == ("192.0.2.9", 5062)


def test_legacy_mapped_address_and_software() -> None:
    request = stun.binding_request(software="softphone 1.0")
    response = stun.handle_request(
        request, ("198.51.100.4", 5070), software="mss", legacy_mapped_address=True
    )
    assert response is not None
    msg = stun.parse_message(response)
    assert [t for t, _ in msg.attributes] == [
        stun.ATTR_XOR_MAPPED_ADDRESS,
        stun.ATTR_MAPPED_ADDRESS,
        stun.ATTR_SOFTWARE,
    ]
    assert msg.get(stun.ATTR_MAPPED_ADDRESS) == b"\x00\x01" + struct.pack("!H", 5070) + bytes(
        [198, 51, 100, 4]
    )
    assert msg.get(stun.ATTR_SOFTWARE) == b"mss"
    # "mss" is 3 bytes: padded with one zero byte, length field says 3.
    assert _attr_bytes(response, stun.ATTR_SOFTWARE) == b"\x80\x22\x00\x03mss\x00"
    assert len(response) % 4 == 0


def test_software_too_long_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="SOFTWARE"):
        stun.handle_request(stun.binding_request(), ("127.0.0.1", 1), software="x" * 128)
    with pytest.raises(ValueError, match="SOFTWARE"):
        stun.binding_request(software="x" * 128)
    # 127 characters is the limit, whatever their UTF-8 size (here 508 bytes).
    request = stun.binding_request(software="\U0001f600" * 127)
    assert stun.parse_message(request).get(stun.ATTR_SOFTWARE) == "\U0001f600".encode() * 127


def test_bad_source_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        stun.handle_request(stun.binding_request(), ("not-an-ip", 5060))
    with pytest.raises(ValueError):
        stun.handle_request(stun.binding_request(), ("127.0.0.1", 70000))


def test_binding_request_shape() -> None:
    txn = bytes(range(12))
    request = stun.binding_request(transaction_id=txn)
    assert request == struct.pack("!HHI", 0x0001, 0, stun.MAGIC_COOKIE) + txn
    assert stun.binding_request()[8:20] != stun.binding_request()[8:20]  # os.urandom
    with pytest.raises(ValueError):
        stun.binding_request(transaction_id=b"short")


# -- FINGERPRINT (RFC 5389 §15.5) ------------------------------------------------------------


def test_fingerprint_present() -> None:
    request = stun.binding_request(fingerprint=True, software="x")
    msg = stun.parse_message(request)
    assert msg.has_fingerprint and msg.fingerprint_ok
    # Independent check: CRC-32 over everything before the attribute, length covering it.
    expected = (binascii.crc32(request[:-8]) & 0xFFFFFFFF) ^ 0x5354554E
    assert request[-8:] == struct.pack("!HHI", 0x8028, 4, expected)
    assert struct.unpack_from("!H", request, 2)[0] == len(request) - 20
    response = stun.handle_request(request, ("10.0.0.1", 5060))
    assert response is not None
    reply = stun.parse_message(response)
    assert reply.has_fingerprint and reply.fingerprint_ok
    assert reply.attributes[-1][0] == stun.ATTR_FINGERPRINT


def test_fingerprint_absent() -> None:
    request = stun.binding_request()
    msg = stun.parse_message(request)
    assert not msg.has_fingerprint and not msg.fingerprint_ok
    response = stun.handle_request(request, ("10.0.0.1", 5060))
    assert response is not None
    assert not stun.parse_message(response).has_fingerprint


@pytest.mark.parametrize(
    "offset",
    [-1, -2, 8, 24, -9],
    ids=["crc-last", "crc-byte-3", "transaction-id", "software-first", "software-last"],
)
def test_fingerprint_corrupted(offset: int) -> None:
    # Request: header (20) + SOFTWARE "abcd" (8) + FINGERPRINT (8); flip one bit at ``offset``.
    request = bytearray(stun.binding_request(fingerprint=True, software="abcd"))
    request[offset] ^= 0x01
    data = bytes(request)
    assert stun.is_stun(data)  # the header is still fine
    with pytest.raises(StunError) as info:
        stun.parse_message(data)
    assert info.value.status_hint is None
    lenient = stun.parse_message(data, verify_fingerprint=False)
    assert lenient.has_fingerprint and not lenient.fingerprint_ok
    # RFC 5389 §7.3: a failed FINGERPRINT means "not STUN": silently dropped.
    assert stun.handle_request(data, ("10.0.0.1", 5060)) is None


def test_attribute_after_fingerprint_is_400() -> None:
    # A FINGERPRINT that is itself correct (CRC over the header with the final length)...
    late = _attr(stun.ATTR_SOFTWARE, b"late")
    head = _header(0x0001, b"\x00" * (8 + len(late)))[:20]
    crc = (binascii.crc32(head) & 0xFFFFFFFF) ^ 0x5354554E
    data = head + struct.pack("!HHI", 0x8028, 4, crc) + late
    # ...but followed by another attribute.
    with pytest.raises(StunError, match="after FINGERPRINT") as info:
        stun.parse_message(data)
    assert info.value.status_hint == 400
    response = stun.handle_request(data, ("10.0.0.1", 5060))
    assert response is not None
    assert stun.parse_error_code(response) == (400, "Bad Request")


def test_fingerprint_wrong_length_is_400() -> None:
    data = _header(0x0001, _attr(stun.ATTR_FINGERPRINT, b"\x00" * 8))
    with pytest.raises(StunError, match="FINGERPRINT") as info:
        stun.parse_message(data)
    assert info.value.status_hint == 400


# -- is_stun and header checks (RFC 5389 §6, §7.3) -------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 19,
        b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n",
        b"\r\n\r\n",  # SIP keep-alive (RFC 5626 §4.4.1)
        b"\x00\x01\x00\x00" + b"\x00" * 16,  # RFC 3489: no magic cookie
        b"\x40\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12,  # top bits set
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12,  # length says 4, nothing follows
        b"\x00\x01\x00\x02\x21\x12\xa4\x42" + b"\x00" * 14,  # length not a multiple of 4
        b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 16,  # trailing bytes past length
    ],
)
def test_not_stun(data: bytes) -> None:
    assert not stun.is_stun(data)
    with pytest.raises(StunError) as info:
        stun.parse_message(data)
    assert info.value.status_hint is None
    assert stun.handle_request(data, ("10.0.0.1", 5060)) is None


def test_stun_error_is_a_fastsip_error() -> None:
    assert issubclass(StunError, FastsipError)
    err = StunError("x")
    assert err.reason == "x" and err.status_hint == 400
    assert "status_hint=400" in repr(err)


# -- malformed requests and the error responses ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\x80\x22\x00\x08abcd",  # attribute length runs past the message
        b"\x80\x22\x00\x05abcd",  # the value fits, its padding does not
        b"\x80\x22\x00\x04abcd\x00\x20\xff\xff",  # second attribute's length runs past
    ],
    ids=["value-past-end", "padding-past-end", "second-past-end"],
)
def test_malformed_request_gets_400(body: bytes) -> None:
    data = _header(0x0001, body)
    with pytest.raises(StunError) as info:
        stun.parse_message(data)
    assert info.value.status_hint == 400
    response = stun.handle_request(data, ("10.0.0.1", 5060), software="mss")
    assert response is not None
    msg = stun.parse_message(response)
    assert msg.msg_type == 0x0111
    assert msg.transaction_id == RFC5769_TXN
    assert stun.parse_error_code(msg) == (400, "Bad Request")
    assert msg.get(stun.ATTR_SOFTWARE) == b"mss"
    # ERROR-CODE layout: 21 zero bits, class 4, number 0.
    assert msg.get(stun.ATTR_ERROR_CODE) == b"\x00\x00\x04\x00Bad Request"


def test_zero_length_attribute_and_empty_body() -> None:
    # The body is a multiple of 4 and so is every attribute, so an attribute header can never be
    # cut short inside a message that passed the header checks; zero-length values are valid.
    assert stun.parse_message(_header(0x0001, b"\x00\x06\x00\x00")).attributes == ((6, b""),)
    assert stun.parse_message(_header(0x0001, b"")).attributes == ()


def test_unknown_comprehension_required_gets_420() -> None:
    body = (
        _attr(0x0003, b"\x00\x00\x00\x06")  # CHANGE-REQUEST (RFC 5780): not supported
        + _attr(0x7FFF, b"")
        + _attr(0x0003, b"\x00\x00\x00\x00")  # listed once
        + _attr(0x8055, b"optional")  # comprehension-optional: ignored
    )
    response = stun.handle_request(_header(0x0001, body), ("10.0.0.1", 5060))
    assert response is not None
    msg = stun.parse_message(response)
    assert msg.msg_type == 0x0111
    assert stun.parse_error_code(msg) == (420, "Unknown Attribute")
    assert msg.get(stun.ATTR_UNKNOWN_ATTRIBUTES) == b"\x00\x03\x7f\xff"
    # One type (2 bytes) is padded to 4 with zeros.
    one = stun.handle_request(_header(0x0001, _attr(0x0024, b"\x00" * 4)), ("10.0.0.1", 1))
    assert one is not None
    assert _attr_bytes(one, stun.ATTR_UNKNOWN_ATTRIBUTES) == b"\x00\x0a\x00\x02\x00\x24\x00\x00"


def test_comprehension_optional_only_gets_success() -> None:
    data = _header(0x0001, _attr(0x8055, b"xyz") + _attr(0xFFFF, b""))
    response = stun.handle_request(data, ("10.0.0.1", 5060))
    assert response is not None
    assert stun.parse_message(response).msg_class is StunClass.SUCCESS_RESPONSE


def test_other_method_request_gets_400() -> None:
    # An Allocate request (TURN, method 0x003): error response of that method (0x0113).
    response = stun.handle_request(_header(0x0003, b""), ("10.0.0.1", 5060))
    assert response is not None
    msg = stun.parse_message(response)
    assert msg.msg_type == 0x0113 and msg.method == 0x003
    assert stun.parse_error_code(msg) == (400, "Bad Request")


@pytest.mark.parametrize(
    "msg_type",
    [0x0011, 0x0101, 0x0111, 0x0016, 0x0113],
    ids=["binding-indication", "binding-success", "binding-error", "send-indication", "alloc-err"],
)
@pytest.mark.parametrize("malformed", [False, True])
def test_indications_and_responses_are_not_answered(msg_type: int, malformed: bool) -> None:
    body = b"\x80\x22\x00\x08abcd" if malformed else _attr(0x0024, b"\x00" * 4)
    assert stun.handle_request(_header(msg_type, body), ("10.0.0.1", 5060)) is None


@pytest.mark.parametrize(
    ("msg_type", "cls", "method"),
    [
        (0x0001, StunClass.REQUEST, 0x001),
        (0x0011, StunClass.INDICATION, 0x001),
        (0x0101, StunClass.SUCCESS_RESPONSE, 0x001),
        (0x0111, StunClass.ERROR_RESPONSE, 0x001),
        (0x3EEF, StunClass.REQUEST, 0xFFF),
        (0x3FFF, StunClass.ERROR_RESPONSE, 0xFFF),
    ],
)
def test_type_bits(msg_type: int, cls: StunClass, method: int) -> None:
    msg = stun.parse_message(_header(msg_type, b""))
    assert (msg.msg_class, msg.method, msg.msg_type) == (cls, method, msg_type)


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00\x01\x00", b"\x00\x03\x00\x00\x01\x02\x03\x04", b"\x00\x01\x00\x00\x01\x02\x03"],
    ids=["empty", "short", "bad-family", "v4-short"],
)
def test_parse_xor_mapped_address_rejects_bad_values(value: bytes) -> None:
    data = _header(0x0101, _attr(stun.ATTR_XOR_MAPPED_ADDRESS, value))
    with pytest.raises(StunError):
        stun.parse_xor_mapped_address(data)


def test_parse_xor_mapped_address_missing() -> None:
    with pytest.raises(StunError, match="no XOR-MAPPED-ADDRESS"):
        stun.parse_xor_mapped_address(_header(0x0101, b""))


def test_parse_error_code_bad() -> None:
    with pytest.raises(StunError):
        stun.parse_error_code(_header(0x0111, b""))
    with pytest.raises(StunError):
        stun.parse_error_code(_header(0x0111, _attr(stun.ATTR_ERROR_CODE, b"\x00\x00\x04\x00\xff")))


# -- properties (hypothesis) -----------------------------------------------------------------

addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str),
)
ports = st.integers(min_value=0, max_value=65535)
txns = st.binary(min_size=12, max_size=12)


@given(host=addresses, port=ports, txn=txns, fingerprint=st.booleans())
def test_round_trip_property(host: str, port: int, txn: bytes, fingerprint: bool) -> None:
    request = stun.binding_request(transaction_id=txn, fingerprint=fingerprint)
    response = stun.handle_request(request, (host, port), legacy_mapped_address=True)
    assert response is not None
    msg = stun.parse_message(response)
    assert msg.transaction_id == txn
    assert msg.has_fingerprint is fingerprint
    assert stun.parse_xor_mapped_address(msg) == (host, port)


def _only_stun_errors(data: bytes) -> None:
    try:
        msg = stun.parse_message(data)
    except StunError:
        pass
    else:
        assert stun.is_stun(data)
        assert len(msg.transaction_id) == 12
        for attr in (stun.parse_xor_mapped_address, stun.parse_error_code):
            try:
                attr(msg)
            except StunError:
                pass
    lenient_ok = True
    try:
        stun.parse_message(data, verify_fingerprint=False)
    except StunError:
        lenient_ok = False
    if not stun.is_stun(data):
        assert not lenient_ok
    response = stun.handle_request(data, ("192.0.2.1", 5060))
    if response is not None:
        assert stun.is_stun(data)
        reply = stun.parse_message(response)
        assert reply.msg_class in (StunClass.SUCCESS_RESPONSE, StunClass.ERROR_RESPONSE)
        assert reply.transaction_id == data[8:20]


@given(st.binary(max_size=256))
def test_garbage_never_raises_other_errors(data: bytes) -> None:
    _only_stun_errors(data)


attr_values = st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=24))


@st.composite
def stunlike(draw: st.DrawFn) -> bytes:
    """A valid header around well-formed, fuzzed or cut-short attributes."""
    msg_type = draw(st.integers(0, 0x3FFF))
    attrs = draw(st.lists(attr_values, max_size=6))
    body = b"".join(_attr(t, v) for t, v in attrs)
    if draw(st.booleans()):
        # Lie in one attribute length field, or truncate, keeping the body a multiple of 4.
        raw = bytearray(body + draw(st.binary(max_size=8)))
        if len(raw) >= 4 and draw(st.booleans()):
            pos = draw(st.integers(0, len(raw) - 4))
            struct.pack_into("!H", raw, pos, draw(st.integers(0, 0xFFFF)))
        body = bytes(raw[: len(raw) & ~3])
    data = _header(msg_type, body, draw(txns))
    if draw(st.booleans()):
        fp = binascii.crc32(data[:2] + struct.pack("!H", len(body) + 8) + data[4:]) & 0xFFFFFFFF
        data = data[:2] + struct.pack("!H", len(body) + 8) + data[4:]
        data += struct.pack("!HHI", 0x8028, 4, fp ^ 0x5354554E ^ draw(st.sampled_from([0, 1])))
    return data


@given(stunlike())
def test_fuzzed_stun_never_raises_other_errors(data: bytes) -> None:
    assert stun.is_stun(data)
    _only_stun_errors(data)


@given(stunlike(), st.integers(0, 300))
def test_truncated_stun_never_raises_other_errors(data: bytes, cut: int) -> None:
    _only_stun_errors(data[: max(0, len(data) - cut)])
    _only_stun_errors(data + b"\x00" * (cut % 9))
