"""The messages the parser benchmarks use (sizes as the issue asks: ~390 B, ~720 B, 5 Vias)."""

from __future__ import annotations

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:1001@example.com>\r\n"
    b"From: <sip:1001@example.com>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:1001@192.0.2.10:5060;transport=udp>;expires=3600\r\n"
    b"Expires: 3600\r\n"
    b"User-Agent: fastsip-bench/1.0\r\n"
    b"Allow: INVITE, ACK\r\n"
    b"Content-Length: 0\r\n\r\n"
)

_SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:1002@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:1001@example.com>;tag=9fxced76sl\r\n'
    b"To: <sip:1002@example.com>\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.101\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.101:5060>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, INFO, UPDATE\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: fastsip-bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(_SDP)).encode() + b"\r\n\r\n" + _SDP
)

OK_5VIA = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1aaa;received=192.0.2.1\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK2bbb\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.3:5060;branch=z9hG4bK3ccc\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK4ddd\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK5eee;rport=5060\r\n"
    b"From: <sip:1001@example.com>;tag=456248\r\n"
    b"To: <sip:1002@example.com>;tag=8321234356\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 INVITE\r\n"
    b"Contact: <sip:1002@192.0.2.200:5060>\r\n"
    b"Content-Length: 0\r\n\r\n"
)

# An HTTP request of the same size as REGISTER: the reference for a C parser through Python.
_HTTP_HEAD = (
    b"GET /api/v1/registrations/1001?domain=example.com HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"User-Agent: fastsip-bench/1.0\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n"
    b"Connection: keep-alive\r\n"
    b"X-Request-Id: 843817637684230-998sdasdh09\r\n"
)
HTTP = _HTTP_HEAD + b"X-Pad: " + b"p" * max(0, len(REGISTER) - len(_HTTP_HEAD) - 13) + b"\r\n\r\n"

MESSAGES = {"REGISTER": REGISTER, "INVITE+SDP": INVITE, "200 OK 5 Via": OK_5VIA}


def _with_lines(lines: bytes) -> bytes:
    head, sep, tail = REGISTER.partition(b"Content-Length: 0\r\n")
    return head + lines + sep + tail


#: The REGISTER with 10 more header lines (22 in all: past the 16 a parse keeps inline), of a
#: name the parser knows and of one it does not: what a header line costs
#: (``benchmarks.parser_instructions``), not part of the timed table.
EXTRA = {
    "REGISTER +10 known": _with_lines(b"Subject: hello there\r\n" * 10),
    "REGISTER +10 unknown": _with_lines(b"X-Unknown: hello there\r\n" * 10),
}
