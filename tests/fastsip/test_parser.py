"""Parser behaviour beyond the corpus: framing, streams, keepalives, limits, value parsers."""

from __future__ import annotations

import pytest

from conftest import TWINS, twin_module
from fastsip import Limits, ParseError
from fastsip.headers import Address, Via
from fastsip.message import Kind, Request, Response
from fastsip.uri import URI

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
    b"Content-Length: 0\r\n\r\n"
)
INVITE_BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
INVITE = (
    b"INVITE sip:1002@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"
    b'f: "Alice" <sip:1001@example.com>;tag=a1\r\n'
    b"t: <sip:1002@example.com>\r\n"
    b"i: call-1@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:1001@192.0.2.1:5060;transport=tcp>\r\n"
    b"c: application/sdp\r\n"
    b"l: " + str(len(INVITE_BODY)).encode() + b"\r\n\r\n" + INVITE_BODY
)


@pytest.fixture(params=TWINS)
def P(request: pytest.FixtureRequest):
    return twin_module("parser", request.param)


# -- classify ------------------------------------------------------------------------------
def _stun(length: int = 0) -> bytes:
    return (
        b"\x00\x01"
        + length.to_bytes(2, "big")
        + b"\x21\x12\xa4\x42"
        + b"\x00" * 12
        + b"\x00" * length
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (REGISTER, Kind.SIP),
        (b"SIP/2.0 200 OK\r\n\r\n", Kind.SIP),
        (b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\n", Kind.SIP),
        (b"\r\n\r\n", Kind.KEEPALIVE),
        (b"\r\n", Kind.KEEPALIVE),
        (_stun(), Kind.STUN),
        (_stun(8), Kind.STUN),
        (_stun()[:19], Kind.GARBAGE),
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12, Kind.GARBAGE),  # length mismatch
        (b"", Kind.GARBAGE),
        (b"\x00\x00\x00\x00", Kind.GARBAGE),
        (b"<xml>", Kind.GARBAGE),
        (b"\xff\xfe", Kind.GARBAGE),
    ],
)
def test_classify(P, data: bytes, kind: Kind) -> None:
    assert P.classify(data) == kind
    assert type(P.classify(data)) is Kind


# -- datagrams -----------------------------------------------------------------------------
def test_register_accessors(P) -> None:
    m = P.parse_datagram(REGISTER)
    assert isinstance(m, Request)
    assert (m.method, m.uri_text, m.version) == ("REGISTER", "sip:example.com", "SIP/2.0")
    assert m.via == Via("UDP", "192.0.2.10", 5060, {"branch": "z9hG4bK776asdhds", "rport": None})
    assert m.via.has_rport and m.via.rport is None and m.via.has_magic_cookie
    assert m.from_.tag == "456248"
    assert m.to.uri == URI("sip", "1001", "example.com")
    assert m.call_id == "843817637684230@998sdasdh09"
    assert (m.cseq.seq, m.cseq.method) == (1826, "REGISTER")
    assert m.contacts[0].expires == 3600
    assert m.contacts[0].uri.transport == "udp"
    assert m.expires == 3600
    assert m.max_forwards == 70
    assert m.content_length == 0
    m.validate()


def test_compact_names(P) -> None:
    m = P.parse_datagram(INVITE)
    assert m.get("Via") == m.get("v")
    assert m.from_.display == "Alice"
    assert m.call_id == "call-1@192.0.2.1"
    assert m.contact.uri.port == 5060
    assert m.content_type == "application/sdp"
    assert m.body == INVITE_BODY
    assert "content-length" in m and "Content-Length" in m and "l" in m


def test_header_names_case_insensitive_and_duplicates_kept(P) -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVIA: SIP/2.0/UDP h1;branch=z9hG4bK1\r\n"
        b"via: SIP/2.0/UDP h2;branch=z9hG4bK2, SIP/2.0/UDP h3\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    )
    m = P.parse_datagram(data)
    assert [v.host for v in m.vias] == ["h1", "h2", "h3"]
    assert m.get_all("X-a") == ["1", "2"]
    assert m.count("VIA") == 2
    assert m.headers[0] == ("VIA", "SIP/2.0/UDP h1;branch=z9hG4bK1")


def test_response(P) -> None:
    data = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 2 INVITE\r\n\r\n"
    m = P.parse_datagram(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (180, "Ringing")
    assert P.parse_datagram(b"SIP/2.0 200\r\n\r\n").reason == ""


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:a SIP/2.0\r\n",  # no end of headers
        b"INVITE  sip:a SIP/2.0\r\n\r\n",
        b"INVITE sip:a SIP/2.0 \r\n\r\n",
        b"INVITE sip:a\r\n\r\n",
        b"INVITE <sip:a> SIP/2.0\r\n\r\n",
        b"INV@TE sip:a SIP/2.0\r\n\r\n",
        b"INVITE sip:a HTTP/1.1\r\n\r\n",
        b"INVITE sip:a SIP/2\r\n\r\n",
        b"SIP/2.0 20 OK\r\n\r\n",
        b"SIP/2.0 700 Nope\r\n\r\n",
        b"SIP/2.0 099 Nope\r\n\r\n",
        b"SIP/2.0 4294967301 x\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\n continued\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\nNoColon\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\nBad Name: x\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\n: x\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\nA: x\nB: y\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5\r\n\r\nabc",
        b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\na",
        b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ],
)
def test_malformed_datagrams(P, data: bytes) -> None:
    with pytest.raises(ParseError) as info:
        P.parse_datagram(data)
    assert info.value.status_hint in (400, 413, 513)
    assert info.value.reason


def test_leading_crlf_skipped(P) -> None:
    m = P.parse_datagram(b"\r\n\r\n" + REGISTER)
    assert m.method == "REGISTER"
    assert bytes(m) == REGISTER


def test_body_without_content_length_is_rest_of_datagram(P) -> None:
    m = P.parse_datagram(b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nhello")
    assert m.body == b"hello"


# -- limits ---------------------------------------------------------------------------------
def test_limits(P) -> None:
    with pytest.raises(ParseError) as info:
        P.parse_datagram(REGISTER, limits=Limits(max_message_size=100))
    assert info.value.status_hint == 513
    with pytest.raises(ParseError) as info:
        P.parse_datagram(REGISTER, limits=Limits(max_headers=3))
    assert info.value.status_hint == 513
    with pytest.raises(ParseError) as info:
        P.parse_datagram(REGISTER, limits=Limits(max_header_length=40))
    assert info.value.status_hint == 513
    with pytest.raises(ParseError) as info:
        P.parse_datagram(REGISTER, limits=Limits(max_start_line=10))
    assert info.value.status_hint == 513
    many = b"OPTIONS sip:a SIP/2.0\r\nVia: " + b", ".join([b"SIP/2.0/UDP h"] * 5) + b"\r\n\r\n"
    m = P.parse_datagram(many, limits=Limits(max_via=4))
    with pytest.raises(ParseError) as info:
        m.vias
    assert info.value.status_hint == 513
    with pytest.raises(ValueError):
        Limits(max_headers=0)


def test_huge_folded_header_is_bounded(P) -> None:
    data = b"OPTIONS sip:a SIP/2.0\r\nX: a\r\n" + b" b\r\n" * 5000 + b"\r\n"
    with pytest.raises(ParseError) as info:
        P.parse_datagram(data)
    assert info.value.status_hint == 513


# -- streams --------------------------------------------------------------------------------
def test_stream_two_messages_in_one_segment(P) -> None:
    sp = P.StreamParser()
    msgs = sp.feed(REGISTER + INVITE)
    assert [m.method for m in msgs] == ["REGISTER", "INVITE"]
    assert msgs[1].body == INVITE_BODY
    assert bytes(msgs[0]) == REGISTER and bytes(msgs[1]) == INVITE
    assert sp.buffered == 0


def test_stream_split_at_every_byte(P) -> None:
    stream = REGISTER + b"\r\n\r\n" + INVITE
    for cut in range(1, len(stream)):
        sp = P.StreamParser()
        got = sp.feed(stream[:cut])
        pings = sp.pings
        got += sp.feed(stream[cut:])
        pings += sp.pings
        assert [m.method for m in got] == ["REGISTER", "INVITE"], cut
        assert pings == 1, cut
        assert got[1].body == INVITE_BODY


def test_stream_byte_by_byte(P) -> None:
    sp = P.StreamParser()
    got = []
    for b in INVITE:
        got += sp.feed(bytes([b]))
    assert len(got) == 1 and bytes(got[0]) == INVITE


def test_stream_keepalives(P) -> None:
    sp = P.StreamParser()
    assert sp.feed(b"\r\n\r\n") == [] and sp.pings == 1
    assert sp.feed(b"\r\n\r\n\r\n\r\n") == [] and sp.pings == 2
    assert sp.feed(b"\r\n") == [] and sp.pings == 0  # half a ping so far
    assert sp.feed(b"\r\n") == [] and sp.pings == 1
    # a lone CRLF (pong) before a message is ignored
    msgs = sp.feed(b"\r\n" + REGISTER)
    assert sp.pings == 0 and len(msgs) == 1


def test_stream_missing_content_length_means_empty_body(P) -> None:
    sp = P.StreamParser()
    msgs = sp.feed(
        b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\nOPTIONS sip:b SIP/2.0\r\n\r\n"
    )
    assert [m.uri_text for m in msgs] == ["sip:a", "sip:b"]
    assert msgs[0].body == b""


def test_stream_errors_break_the_parser(P) -> None:
    sp = P.StreamParser()
    with pytest.raises(ParseError):
        sp.feed(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n")
    with pytest.raises(ParseError):
        sp.feed(REGISTER)


def test_stream_bounds(P) -> None:
    sp = P.StreamParser(limits=Limits(max_message_size=1000))
    with pytest.raises(ParseError) as info:
        sp.feed(b"OPTIONS sip:a SIP/2.0\r\nX: " + b"a" * 1200)
    assert info.value.status_hint == 513
    sp = P.StreamParser(limits=Limits(max_message_size=1000))
    with pytest.raises(ParseError) as info:
        sp.feed(b"MESSAGE sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    assert info.value.status_hint == 413
    sp = P.StreamParser()
    with pytest.raises(ParseError):
        sp.feed(b"MESSAGE sip:a SIP/2.0\r\nContent-Length: -999\r\n\r\n")


# -- value parsers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("sip:alice@atlanta.com", ("sip", "alice", None, "atlanta.com", None, {}, {})),
        (
            "sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent",
            (
                "sips",
                "alice",
                "secret",
                "atlanta.com",
                5061,
                {"transport": "tcp", "lr": None},
                {"subject": "project x", "priority": "urgent"},
            ),
        ),
        ("SIP:%61lice@[::1]:5070", ("sip", "alice", None, "[::1]", 5070, {}, {})),
        ("sip:192.0.2.4", ("sip", None, None, "192.0.2.4", None, {}, {})),
        (
            "tel:+1-201-555-0123;phone-context=example.com",
            ("tel", "+1-201-555-0123", None, None, None, {"phone-context": "example.com"}, {}),
        ),
    ],
)
def test_parse_uri(P, text: str, fields: tuple) -> None:
    u = P.parse_uri(text)
    assert (u.scheme, u.user, u.password, u.host, u.port, u.params, u.headers) == fields
    assert str(u) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "alice@example.com",
        "sip:a@b@c",
        "sip:@h",
        "sip:a@",
        "sip:h:",
        "sip:h:99999",
        "sip:h:5x",
        "sip:2001:db8::10",
        "sip:[2001:db8::10",
        "sip:[zz]",
        "sip:h;;lr",
        "sip:h?",
        "sip:a b@h",
        "sip:%4@h",
        "sip:h;a=%G0",
        "1sip:h",
        "tel:",
        "x:",
        "sip:h?a",
    ],
)
def test_parse_uri_rejects(P, text: str) -> None:
    with pytest.raises(ParseError):
        P.parse_uri(text)


def test_uri_replace_and_aor() -> None:
    u = URI("sip", "alice smith", "Example.COM", 5060, {"lr": None})
    assert str(u) == "sip:alice%20smith@Example.COM:5060;lr"
    assert u.aor == "sip:alice%20smith@example.com"
    v = u.replace(port=None, params={})
    assert str(v) == "sip:alice%20smith@Example.COM" and u.port == 5060


def test_parse_via(P) -> None:
    vias = P.parse_via(
        "SIP / 2.0 / udp  host.example.com : 5060 ; branch = z9hG4bK1 ; received=10.0.0.1, SIP/2.0/TLS [::1];rport=5061"
    )
    assert vias[0] == Via(
        "UDP", "host.example.com", 5060, {"branch": "z9hG4bK1", "received": "10.0.0.1"}
    )
    assert vias[1].rport == 5061 and vias[1].host_address == "::1"
    for bad in [
        "",
        "SIP/2.0 h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h;",
        "SIP/2.0/UDP h;;x",
        "SIP/2.0/UDP h,",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h;branch=",
    ]:
        with pytest.raises(ParseError):
            P.parse_via(bad)


def test_parse_address(P) -> None:
    a = P.parse_address('"A \\"B\\"" <sip:a@b>;tag=x;q=0.5')
    assert a == Address(URI("sip", "a", "b"), 'A "B"', {"tag": "x", "q": "0.5"})
    assert a.q == 0.5
    a = P.parse_address("Bob Smith <sip:bob@b>")
    assert a.display == "Bob Smith"
    a = P.parse_address("sip:bob@b;tag=1")
    assert (a.display, a.tag, a.uri.params) == (None, "1", {})
    for bad in [
        "",
        "<sip:a@b",
        '"unterminated <sip:a@b>',
        "< sip:a@b>",
        "a, b <sip:a@b>",
        "sip:a@b?x=y",
        "<sip:a@b>;",
        "<sip:a@b>, <sip:c@d>",
    ]:
        with pytest.raises(ParseError):
            P.parse_address(bad)
    lst = P.parse_address_list('<sip:a@b>;expires=60, "C" <sip:c@d>, sip:e@f;q=1')
    assert [str(x.uri) for x in lst] == ["sip:a@b", "sip:c@d", "sip:e@f"]
    with pytest.raises(ParseError):
        P.parse_address_list("<sip:a@b>,,<sip:c@d>")


def test_parse_cseq_and_auth(P) -> None:
    c = P.parse_cseq(" 0009  INVITE ")
    assert (c.seq, c.method) == (9, "INVITE")
    assert P.parse_cseq("4294967295 ACK").seq == 4294967295
    for bad in ["4294967296 ACK", "1", "x INVITE", "1INVITE", "1 INVITE x", ""]:
        with pytest.raises(ParseError):
            P.parse_cseq(bad)
    a = P.parse_auth(
        'Digest username="1001", realm="example.com", nonce="a\\"b", uri="sip:example.com", response="x", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"'
    )
    assert a.scheme == "Digest"
    assert a.params["username"] == "1001" and a.params["nonce"] == 'a"b'
    assert a.params["algorithm"] == "SHA-256" and "algorithm" not in a.quoted
    assert P.parse_auth("Basic dXNlcjpwYXNz==").params == {"token68": "dXNlcjpwYXNz=="}
    for bad in ["", 'Digest realm="x', "Digest a=b c=d", "Digest =x"]:
        with pytest.raises(ParseError):
            P.parse_auth(bad)


# -- messages: mutation, serialization, responses ------------------------------------------
def test_mutation_serializes_and_reparses(P) -> None:
    m = P.parse_datagram(REGISTER)
    assert bytes(m) == REGISTER
    m.push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1")
    m.set("Max-Forwards", 69)
    m.add("Route", "<sip:next.example.com;lr>")
    m.remove("Expires")
    assert m.modified
    out = bytes(m)
    again = P.parse_datagram(out)
    assert [v.host for v in again.vias] == ["proxy.example.com", "192.0.2.10"]
    assert again.max_forwards == 69 and again.expires is None
    assert again.routes[0].uri.lr
    assert m.pop_via().host == "proxy.example.com"
    assert [v.host for v in m.vias] == ["192.0.2.10"]
    with pytest.raises(ValueError):
        m.set("X", "a\r\nInjected: 1")


def test_pop_via_from_a_multi_value_line(P) -> None:
    m = P.parse_datagram(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a, SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\n\r\n"
    )
    assert m.pop_via().host == "a"
    assert [v.host for v in m.vias] == ["b", "c"]
    assert P.parse_datagram(bytes(m)).get_all("Via") == ["SIP/2.0/UDP b", "SIP/2.0/UDP c"]


def test_make_response(P) -> None:
    from fastsip.message import make_response

    req = P.parse_datagram(INVITE)
    resp = make_response(req, 180, to_tag="t1", headers=[("Contact", "<sip:srv@192.0.2.9>")])
    out = bytes(resp)
    assert out.startswith(b"SIP/2.0 180 Ringing\r\n")
    again = P.parse_datagram(out)
    assert again.via == req.via and again.call_id == req.call_id and again.cseq == req.cseq
    assert again.to.tag == "t1" and again.from_.tag == "a1"
    assert again.content_length == 0 and again.body == b""
    assert make_response(req, 100, to_tag="t1").to.tag is None
    ok = make_response(req, 200, to_tag="t1", body=b"v=0\r\n", content_type="application/sdp")
    again = P.parse_datagram(bytes(ok))
    assert again.body == b"v=0\r\n" and again.content_type == "application/sdp"


def test_build_request_from_scratch() -> None:
    r = Request(
        "OPTIONS",
        URI("sip", None, "example.com"),
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Call-ID", "x")],
    )
    r.set_body(b"hi", "text/plain")
    assert bytes(r) == (
        b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert r.uri.host == "example.com"
