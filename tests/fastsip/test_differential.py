"""Differential tests: the Cython twin must do exactly what the pure twin does (house style 14).

Inputs are the torture corpus and hypothesis mutations of it (byte flips, insertions, deletions,
truncations, CRLF and LWS injections) plus random text for the value parsers. Outcomes compare
values, or the exception type and status hint. A non-ParseError from either twin fails too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twin_outcome import datagram_outcome, stream_outcome, value_outcome

from conftest import corpus_dir, twin_module

SEEDS = sorted(
    p.read_bytes()
    for corpus in ("rfc4475", "rfc5118")
    for p in Path(corpus_dir(corpus)).glob("*.sip")
)


@pytest.fixture(scope="module")
def twins():
    return twin_module("parser", "py"), twin_module("parser", "c")


INSERTS = [
    b"\r\n",
    b" ",
    b"\t",
    b";",
    b",",
    b":",
    b"<",
    b">",
    b'"',
    b"\\",
    b"%",
    b"\x00",
    b"\xff",
    b"@",
    b"[",
    b"]",
    b"=",
    b"\r\n ",
    b"Via: SIP/2.0/UDP x\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(data) - 1))
        if op == 0:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif op == 2:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == 3:
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(max_size=8))
    return bytes(data)


def test_corpus_identical(twins) -> None:
    py, c = twins
    for data in SEEDS:
        a, b = datagram_outcome(py, data), datagram_outcome(c, data)
        assert a == b
        assert "'BUG'" not in repr(a)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_datagrams_identical(twins, data: bytes) -> None:
    py, c = twins
    a = datagram_outcome(py, data)
    assert a == datagram_outcome(c, data)
    assert "'BUG'" not in repr(a)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.lists(st.integers(0, 2000), max_size=4))
def test_mutated_streams_identical(twins, data: bytes, cuts: list[int]) -> None:
    py, c = twins
    points = sorted({min(x, len(data)) for x in cuts})
    chunks = [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]
    a = stream_outcome(py, chunks)
    assert a == stream_outcome(c, chunks)
    assert "'BUG'" not in repr(a)


TEXT_ALPHABET = st.sampled_from(
    list('sip:tel@[]<>";,=?&%: \tabcXYZ019.-_/\\\x00é')
    + ["SIP/2.0/UDP ", "z9hG4bK", "Digest ", "sip:", "<sip:a@b>"]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(TEXT_ALPHABET, max_size=30).map("".join))
def test_value_parsers_identical(twins, text: str) -> None:
    py, c = twins
    a = value_outcome(py, text)
    assert a == value_outcome(c, text)
    assert "'BUG'" not in repr(a)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_identical(twins, data: bytes) -> None:
    py, c = twins
    a = datagram_outcome(py, data)
    assert a == datagram_outcome(c, data)
    assert "'BUG'" not in repr(a)


# URIs around the plain shape the C twin checks in one pass (``_plain_sip_uri``): every
# boundary of that shape (scheme spelling, user with its allowed ";=?&", "@" twice, password,
# escapes, IPv6, port length and range, empty and doubled params, headers) next to the usual.
_URI_PART = st.sampled_from(
    list("abcAZ09.-_;=?&%@:[]!~*'()+$,/ é\t")
    + ["%41", "%zz", "5060", "65535", "65536", "123456", "transport=udp", ";lr", "::1"]
)


@st.composite
def near_plain_uri(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "SIP", "sips", "SiPs", "sipx", "tel", "si"]))
    user = draw(st.lists(_URI_PART, max_size=4).map("".join))
    host = draw(st.sampled_from(["example.com", "a", "192.0.2.1", "[::1]", "", "h_st", "-"]))
    host += draw(st.lists(_URI_PART, max_size=2).map("".join))
    port = draw(st.sampled_from(["", ":", ":5060", ":065535", ":65536", ":1234567", ":0"]))
    params = draw(st.lists(_URI_PART, max_size=5).map("".join))
    at = draw(st.sampled_from(["@", "", "@@"])) if user else ""
    return f"{scheme}:{user}{at}{host}{port}{params}"


@settings(max_examples=3000, deadline=None)
@given(near_plain_uri(), st.sampled_from(["<{}>;tag=1", "{}", "{};tag=2", '"A" <{}>']))
def test_uris_near_the_plain_shape_identical(twins, uri: str, form: str) -> None:
    py, c = twins
    text = form.format(uri)
    a = value_outcome(py, text)
    assert a == value_outcome(c, text)
    assert value_outcome(py, uri) == value_outcome(c, uri)
    assert "'BUG'" not in repr(a)


# Via values around the plain shape the C twin checks in one pass (``_plain_via``).
_VIA_PART = st.sampled_from(
    list("abAZ09.-_;=,:[]\"' \t()é@!%")
    + ["branch", "BRANCH", "z9hG4bK", "rport", "received=1.2.3.4", "65535", "65536", "123456"]
)


@st.composite
def near_plain_via(draw: st.DrawFn) -> str:
    proto = draw(st.sampled_from(["SIP/2.0/", "sip/2.0/", "SIP/2.1/", "SIP /2.0/", "SIP/2.0"]))
    transport = draw(st.sampled_from(["UDP", "tcp", "TLS", "", "U(P", "SCTP"]))
    gap = draw(st.sampled_from([" ", "  ", "\t", "", " \t"]))
    host = draw(st.sampled_from(["192.0.2.1", "h.example", "[::1]", "", "a_b"]))
    port = draw(st.sampled_from(["", ":5060", ":", ":065535", ":65536", " :5060", ":5060 "]))
    params = draw(st.lists(_VIA_PART, max_size=6).map("".join))
    return f"{proto}{transport}{gap}{host}{port}{params}"


@settings(max_examples=3000, deadline=None)
@given(st.lists(near_plain_via(), min_size=1, max_size=3), st.sampled_from([",", ", ", " ,"]))
def test_vias_near_the_plain_shape_identical(twins, vias: list[str], sep: str) -> None:
    py, c = twins
    text = sep.join(vias)
    a = value_outcome(py, text)
    assert a == value_outcome(c, text)
    assert "'BUG'" not in repr(a)
