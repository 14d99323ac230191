"""The value classes (Via, Address, CSeq, URI): both twins, and the one against the other.

``fastsip._values_py`` is the specification; ``fastsip._values_c`` has the C types the C parser
fills directly. Every test runs against both (``py`` / ``c``), and a hypothesis test builds the
same random values with both and compares everything observable. (Values the C *parser* builds
lazily are compared with the pure parser's in ``test_parser_twins.py``.)
"""

from __future__ import annotations

import copy
import pickle
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import twin_module
from fastsip import headers, uri

PY = twin_module("values", "py")


@pytest.fixture(params=["py", "c"], scope="module")
def tv(request: pytest.FixtureRequest) -> ModuleType:
    return twin_module("values", request.param)


def test_public_modules_export_the_twin_in_use() -> None:
    from fastsip import _compat

    mod = twin_module("values", "c" if _compat.LOADED.get("values") else "py")
    assert headers.Via is mod.Via and headers.Address is mod.Address
    assert headers.CSeq is mod.CSeq and uri.URI is mod.URI


def test_uri_fields_and_derived_values(tv: ModuleType) -> None:
    u = tv.URI("SIP", "alice", "[2001:db8::1]", 5070, {"transport": "TCP", "lr": None})
    assert (u.scheme, u.user, u.host, u.port) == ("sip", "alice", "[2001:db8::1]", 5070)
    assert u.host_address == "2001:db8::1" and u.transport == "tcp" and u.lr and u.is_sip
    assert u.aor == "sip:alice@[2001:db8::1]"
    assert str(u) == "sip:alice@[2001:db8::1]:5070;transport=TCP;lr"
    assert repr(u) == "URI('sip:alice@[2001:db8::1]:5070;transport=TCP;lr')"
    t = tv.URI("tel", "+1 555", params={"phone-context": "x"})
    assert str(t) == "tel:+1%20555;phone-context=x" and not t.is_sip and t.transport is None
    o = tv.URI("urn", opaque="service:sos", text="urn:service:sos")
    assert str(o) == "urn:service:sos" and o.aor == "urn:service:sos" and o.params == {}
    assert tv.URI("sip", host="h", text="sip:H").__str__() == "sip:H"  # text wins while kept
    e = tv.URI("sip", "a b", "h", password="p:w", headers={"subject": "x y"})
    assert str(e) == "sip:a%20b:p%3Aw@h?subject=x%20y"


def test_uri_equality_replace_and_hash(tv: ModuleType) -> None:
    a = tv.URI("sip", "a", "Example.COM", None, {"x": "1"})
    b = tv.URI("sip", "a", "example.com", None, {"x": "1"})
    assert a == b and hash(a) == hash(b) and not (a != b)
    c = a.replace(port=5061)
    assert c.port == 5061 and c != a and a.port is None and c.params is not a.params
    assert str(c) == "sip:a@Example.COM:5061;x=1"
    with pytest.raises(TypeError, match="no field"):
        a.replace(nope=1)
    assert (a == "sip:a@example.com") is False and a != 3


def test_via_fields_and_derived_values(tv: ModuleType) -> None:
    v = tv.Via("UDP", "[::1]", 5060, {"branch": "z9hG4bKx", "rport": None, "ttl": "3"})
    assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0", "UDP", "[::1]", 5060)
    assert v.branch == "z9hG4bKx" and v.has_magic_cookie and v.has_rport and v.rport is None
    assert v.ttl == 3 and v.received is None and v.maddr is None
    assert v.sent_by == "[::1]:5060" and v.host_address == "::1"
    assert str(v) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx;rport;ttl=3"
    assert repr(v) == f"Via({str(v)!r})"
    v.params["rport"] = "5070"
    v.params["received"] = "192.0.2.1"
    assert v.rport == 5070 and v.received == "192.0.2.1"
    w = v.replace(host="h", params={"branch": "old"})
    assert w.branch == "old" and not w.has_magic_cookie and w.sent_by == "h:5060"
    assert tv.Via("TLS", "h", protocol="SIP/3.0").__str__() == "SIP/3.0/TLS h"
    with pytest.raises(TypeError, match="no field"):
        v.replace(branch="x")
    with pytest.raises(AttributeError):
        v.branch = "x"  # type: ignore[misc]


def test_address_fields_and_derived_values(tv: ModuleType) -> None:
    u = tv.URI("sip", "b", "h")
    a = tv.Address(u, 'Bob "B"', {"tag": "t", "expires": "60", "q": "0.5"})
    assert a.uri is u and a.tag == "t" and a.expires == 60 and a.q == 0.5
    assert str(a) == '"Bob \\"B\\"" <sip:b@h>;tag=t;expires=60;q=0.5'
    assert repr(a) == f"Address({str(a)!r})"
    b = a.with_tag("n")
    assert b.tag == "n" and a.tag == "t" and b.uri is u
    assert tv.Address(u, params={"q": "2"}).q is None
    assert tv.Address(u, params={"q": "x"}).q is None
    assert tv.Address(u, params={"expires": "-1"}).expires is None
    c = a.replace(display=None)
    assert str(c) == "<sip:b@h>;tag=t;expires=60;q=0.5" and c.params is not a.params
    assert a == a.replace() and hash(a) == hash(a.replace()) and a != c
    a.params = {"tag": "z"}
    assert a.tag == "z"
    with pytest.raises(TypeError, match="no field"):
        a.replace(tag="x")


def test_cseq(tv: ModuleType) -> None:
    c = tv.CSeq(4711, "INVITE")
    assert (c.seq, c.method, str(c), repr(c)) == (
        4711,
        "INVITE",
        "4711 INVITE",
        "CSeq(4711, 'INVITE')",
    )
    assert c == tv.CSeq(4711, "INVITE") and hash(c) == hash(tv.CSeq(4711, "INVITE"))
    assert c != tv.CSeq(4712, "INVITE") and (c == (4711, "INVITE")) is False
    c.seq = 1
    assert str(c) == "1 INVITE"


def test_values_pickle_and_copy_as_the_twin_in_use(tv: ModuleType) -> None:
    """A pickle names no twin class: it loads as the class fastsip exports in this process."""
    u = tv.URI("sip", "a", "h", 5060, {"lr": None}, {"x": "y"}, text="sip:a@h:5060;lr?x=y")
    values = [
        u,
        tv.Via("TCP", "h", 5061, {"branch": "z9hG4bKq"}, protocol="SIP/2.0"),
        tv.Address(u, "A", {"tag": "1"}),
        tv.CSeq(7, "BYE"),
    ]
    public = {"URI": uri.URI, "Via": headers.Via, "Address": headers.Address, "CSeq": headers.CSeq}
    for v in values:
        for clone in (pickle.loads(pickle.dumps(v, protocol)) for protocol in (2, 5)):
            assert type(clone) is public[type(v).__name__]
            assert str(clone) == str(v) and repr(clone) == repr(v)
        for clone in (copy.copy(v), copy.deepcopy(v)):
            assert type(clone) is type(v) and clone == v and str(clone) == str(v)
    deep = copy.deepcopy(values[1])
    deep.params["branch"] = "other"
    assert values[1].branch == "z9hG4bKq"


def test_values_have_no_instance_dict(tv: ModuleType) -> None:
    for v in (
        tv.URI("sip", host="h"),
        tv.Via("UDP", "h"),
        tv.Address(tv.URI("sip", host="h")),
        tv.CSeq(1, "A"),
    ):
        with pytest.raises(AttributeError):
            v.nope = 1  # type: ignore[attr-defined]


def test_attribute_reads_by_any_spelling_and_in_subclasses(tv: ModuleType) -> None:
    # The C types answer their hot attribute names themselves when the name is the interned
    # str; a name built at run time, getattr, and a subclass's override give the same values.
    u = tv.URI("sip", "alice", "h", 5060)
    via = tv.Via("UDP", "h", 5060, {"branch": "z9hG4bK1"})
    a = tv.Address(u, "Al", {"tag": "t1"})
    c = tv.CSeq(7, "INVITE")
    for obj, name, want in (
        (u, "user", "alice"),
        (u, "host", "h"),
        (u, "port", 5060),
        (u, "scheme", "sip"),
        (via, "branch", "z9hG4bK1"),
        (via, "host", "h"),
        (via, "port", 5060),
        (via, "transport", "UDP"),
        (a, "uri", u),
        (a, "tag", "t1"),
        (a, "display", "Al"),
        (c, "seq", 7),
        (c, "method", "INVITE"),
    ):
        built = "".join(list(name))  # same text, not the interned object
        assert getattr(obj, name) == want and getattr(obj, built) == want
        with pytest.raises(AttributeError):
            getattr(obj, name + "_nope")

    class MyAddress(tv.Address):  # type: ignore[name-defined,misc]
        @property
        def tag(self) -> str:
            return "mine"

    class MyVia(tv.Via):  # type: ignore[name-defined,misc]
        @property
        def branch(self) -> str:
            return "mine"

    assert MyAddress(u, None, {"tag": "t1"}).tag == "mine"
    assert MyVia("UDP", "h", None, {"branch": "b"}).branch == "mine"


# ---------------------------------------------------------------------------------------------
# the twins against each other on random values
# ---------------------------------------------------------------------------------------------
# characters that matter to rendering and escaping, non-ASCII included
_text = st.text(st.sampled_from(list('aZ09-_.!~ ;=:@%&?,/"\\[]<>\t\u00e9\u00ff\u4e00')), max_size=8)
_opt = st.none() | _text
_params = st.dictionaries(_text, _opt, max_size=4)
_port = st.none() | st.integers(0, 70000)


def _observe(v: Any, top: bool = True) -> Any:
    """Everything observable of a value, in a twin-neutral form."""

    def call(fn: Any) -> Any:
        try:
            return ("ok", fn())
        except Exception as e:  # the same exception type in both twins
            return ("exc", type(e).__name__)

    name = type(v).__name__
    if name == "URI":
        fields = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")
        derived = ("host_address", "transport", "lr", "is_sip", "aor")
        extra = [] if not top else [call(lambda: _observe(v.replace(port=1), False))]
    elif name == "Via":
        fields = ("protocol", "transport", "host", "port", "params")
        derived = (
            "branch",
            "received",
            "maddr",
            "ttl",
            "has_rport",
            "rport",
            "sent_by",
            "host_address",
            "has_magic_cookie",
        )
        extra = [] if not top else [call(lambda: _observe(v.replace(host="x"), False))]
    elif name == "Address":
        fields = ("display", "params")
        derived = ("tag", "expires", "q")
        extra = (
            []
            if not top
            else [
                call(lambda: _observe(v.uri, False)),
                call(lambda: _observe(v.with_tag("t"), False)),
            ]
        )
    else:
        fields = ("seq", "method")
        derived = ()
        extra = []
    return (
        name,
        [call(lambda f=f: getattr(v, f)) for f in fields + derived],
        call(lambda: str(v)),
        call(lambda: repr(v)),
        call(lambda: hash(v)),
        extra,
    )


def _build(tv: ModuleType, kind: str, a: tuple[Any, ...]) -> Any:
    if kind == "URI":
        scheme, user, host, port, params, hdrs, pw = a
        return tv.URI(scheme, user, host, port, dict(params), dict(hdrs), password=pw)
    if kind == "Via":
        transport, host, port, params, protocol = a
        return tv.Via(transport, host, port, dict(params), protocol=protocol)
    if kind == "Address":
        u, display, params = a
        return tv.Address(_build(tv, "URI", u), display, dict(params))
    return tv.CSeq(*a)


_uri_args = st.tuples(
    st.sampled_from(["sip", "SIPS", "tel", "urn"]) | _text.filter(bool),
    _opt,
    _opt,
    _port,
    _params,
    st.dictionaries(_text, _text, max_size=2),
    _opt,
)
_cases = st.one_of(
    st.tuples(st.just("URI"), _uri_args),
    st.tuples(st.just("Via"), st.tuples(_text, _text, _port, _params, _text)),
    st.tuples(st.just("Address"), st.tuples(_uri_args, _opt, _params)),
    st.tuples(st.just("CSeq"), st.tuples(st.integers(0, 2**32), _text)),
)


@settings(max_examples=300, deadline=None)
@given(_cases, _cases)
def test_hypothesis_twins_agree(case: tuple[str, Any], other: tuple[str, Any]) -> None:
    c = twin_module("values", "c")
    (kind, args), (okind, oargs) = case, other
    a, b = _build(PY, kind, args), _build(c, kind, args)
    assert _observe(a) == _observe(b)
    oa, ob = _build(PY, okind, oargs), _build(c, okind, oargs)
    assert (a == oa, a != oa) == (b == ob, b != ob)
    assert (a == _build(PY, kind, args)) == (b == _build(c, kind, args))
    assert str(pickle.loads(pickle.dumps(a))) == str(pickle.loads(pickle.dumps(b)))
