"""fastsip.digest: RFC 2617 / RFC 7616 vectors, nonces, replay counts, challenges, round trips.

Digest has no Cython twin (a few hashes per authenticated request are not the hot path), so these
tests call the module directly rather than through the ``py`` / ``c`` implementation fixture.
Credentials are parsed with ``fastsip.parser.parse_auth`` where a test needs the wire form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsip import digest
from fastsip.digest import (
    ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    NonceCounter,
    NonceFactory,
    NonceStatus,
    challenge_values,
    client_authorization,
    dummy_ha1,
    expected_response,
    h,
    ha1,
    normalize_algorithm,
    parse_nc,
    pick_challenge,
    verify_response,
)
from fastsip.parser import parse_auth

SECRET = bytes(range(32))
NOW = 1_700_000_000.0
HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _hex(algorithm: str, text: str) -> str:
    """Independent H(): hashlib by name, no fastsip code involved."""
    base = algorithm.removesuffix("-sess")
    return hashlib.new(HASHLIB[base], text.encode()).hexdigest()


# -- RFC vectors ---------------------------------------------------------------------------------


def test_rfc2617_example() -> None:
    # RFC 2617 §3.5: Mufasa / "Circle Of Life", MD5, qop=auth.
    params = {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
        "response": "6629fae49393a05397450978507c4ef1",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
    }
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert verify_response(params, method="GET", ha1_hex=key)
    assert verify_response(params, method="POST", ha1_hex=key) is False
    assert (
        expected_response(
            ha1_hex=key,
            nonce=params["nonce"],
            method="GET",
            uri="/dir/index.html",
            cnonce="0a4f113b",
        )
        == params["response"]
    )


RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "nc": "00000001",
    "qop": "auth",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_examples(algorithm: str, response: str) -> None:
    # RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    params = {**RFC7616, "algorithm": algorithm, "response": response}
    assert verify_response(params, method="GET", ha1_hex=key)
    assert verify_response({**params, "response": response.upper()}, method="GET", ha1_hex=key)
    assert not verify_response({**params, "nc": "00000002"}, method="GET", ha1_hex=key)
    assert not verify_response({**params, "uri": "/dir/other.html"}, method="GET", ha1_hex=key)
    assert not verify_response({**params, "cnonce": "x"}, method="GET", ha1_hex=key)


def test_rfc7616_authorization_header_parsed() -> None:
    # The §3.9.1 SHA-256 Authorization value, through our own parser.
    value = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    auth = parse_auth(value)
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256")
    assert auth.scheme == "Digest"
    assert verify_response(auth.params, method="GET", ha1_hex=key)


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int", None])
def test_sip_register_independent_hashlib(algorithm: str, qop: str | None) -> None:
    # A SIP REGISTER, the expected response computed here straight from RFC 7616 §3.4 / RFC 2069.
    user, realm, password = "alice", "example.com", "s3cr\u00e9t"
    nonce, cnonce, nc, uri = "abc123", "0a4f113b", "0000002a", "sip:example.com;transport=tcp"
    body = b"v=0\r\n"
    key = _hex(algorithm, f"{user}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        key = _hex(algorithm, f"{key}:{nonce}:{cnonce}")
    a2 = f"REGISTER:{uri}"
    if qop == "auth-int":
        a2 += ":" + hashlib.new(HASHLIB[algorithm.removesuffix("-sess")], body).hexdigest()
    ha2 = _hex(algorithm, a2)
    if qop is None:
        want = _hex(algorithm, f"{key}:{nonce}:{ha2}")
    else:
        want = _hex(algorithm, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")

    stored = ha1(user, realm, password, algorithm)
    assert stored == _hex(algorithm, f"{user}:{realm}:{password}")
    got = expected_response(
        algorithm=algorithm,
        ha1_hex=stored,
        nonce=nonce,
        method="REGISTER",
        uri=uri,
        qop=qop,
        nc=42,
        cnonce=cnonce,
        body=body,
    )
    assert got == want
    params = {"algorithm": algorithm.lower(), "nonce": nonce, "uri": uri, "response": want}
    if algorithm.endswith("-sess") or qop is not None:
        params["cnonce"] = cnonce
    if qop is not None:
        params.update(qop=qop.upper(), nc=nc)
    assert verify_response(params, method="REGISTER", ha1_hex=stored, body=body)
    assert verify_response(params, method="REGISTER", ha1_hex=stored.upper(), body=body)
    assert not verify_response(params, method="INVITE", ha1_hex=stored, body=body)
    wrong = ha1(user, realm, "wrong", algorithm)
    assert not verify_response(params, method="REGISTER", ha1_hex=wrong, body=body)
    if qop == "auth-int":
        assert not verify_response(params, method="REGISTER", ha1_hex=stored, body=b"v=1\r\n")


# -- hashing helpers -----------------------------------------------------------------------------


def test_h_and_ha1() -> None:
    assert h("MD5", "") == hashlib.md5(b"").hexdigest()
    assert h("sha-256", b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert h("SHA-256-sess", "abc") == hashlib.sha256(b"abc").hexdigest()
    assert h("SHA-512-256", "abc") == hashlib.new("sha512_256", b"abc").hexdigest()
    assert ha1("a", "b", "c") == hashlib.md5(b"a:b:c").hexdigest()
    assert ha1("a", "b", "\u00e9", "SHA-256") == hashlib.sha256("a:b:\u00e9".encode()).hexdigest()
    for bad in ("SHA-1", "", "md5-sess-sess"):
        with pytest.raises(ValueError):
            h(bad, "x")
        with pytest.raises(ValueError):
            ha1("a", "b", "c", bad)


def test_algorithm_names() -> None:
    assert ALGORITHMS == ("SHA-256", "MD5")
    assert set(ALGORITHMS) <= set(SUPPORTED_ALGORITHMS)
    assert normalize_algorithm(None) == "MD5"
    assert normalize_algorithm("md5") == "MD5"
    assert normalize_algorithm("sha-256-SESS") == "SHA-256-sess"
    assert normalize_algorithm("Sha-512-256") == "SHA-512-256"
    assert normalize_algorithm("SHA-1") is None
    assert normalize_algorithm("") is None
    assert normalize_algorithm(5) is None  # type: ignore[arg-type]


def test_parse_nc() -> None:
    assert parse_nc("00000001") == 1
    assert parse_nc("0000002A") == 42
    assert parse_nc("ffffffff") == 0xFFFFFFFF
    for bad in (
        None,
        "",
        "1",
        "000000001",
        "0x000001",
        "+0000001",
        "0000_001",
        " 0000001",
        "g0000000",
    ):
        assert parse_nc(bad) is None


def test_dummy_ha1() -> None:
    for algorithm in SUPPORTED_ALGORITHMS:
        value = dummy_ha1(algorithm)
        assert value == dummy_ha1(algorithm)  # fixed for the process
        assert len(value) == len(h(algorithm, "x"))
        assert value == dummy_ha1(algorithm.lower().removesuffix("-sess"))
    assert dummy_ha1("MD5") != dummy_ha1("SHA-256")
    with pytest.raises(ValueError):
        dummy_ha1("SHA-1")
    # An unknown user never verifies, whatever the password the client used.
    nonce = NonceFactory(secret=SECRET).make(NOW)
    value = client_authorization(
        username="ghost",
        realm="example.com",
        password="",
        method="REGISTER",
        uri="sip:example.com",
        nonce=nonce,
        algorithm="SHA-256",
    )
    params = parse_auth(value).params
    assert not verify_response(params, method="REGISTER", ha1_hex=dummy_ha1("SHA-256"))


# -- expected_response argument checking ---------------------------------------------------------


def test_expected_response_rejects_bad_arguments() -> None:
    base: dict[str, Any] = {"ha1_hex": "0" * 32, "nonce": "n", "method": "GET", "uri": "/"}
    with pytest.raises(ValueError):
        expected_response(**base, algorithm="SHA-1", cnonce="c")
    with pytest.raises(ValueError):
        expected_response(**base, qop="auth-conf", cnonce="c")
    with pytest.raises(ValueError):
        expected_response(**base, nc=0, cnonce="c")
    with pytest.raises(ValueError):
        expected_response(**base, nc=2**32, cnonce="c")
    with pytest.raises(ValueError):
        expected_response(**base, nc="1", cnonce="c")
    with pytest.raises(ValueError):
        expected_response(**base)  # qop=auth needs a cnonce
    with pytest.raises(ValueError):
        expected_response(**base, qop=None, algorithm="MD5-sess")  # -sess needs a cnonce
    assert expected_response(**base, qop=None) == expected_response(**base, qop=None, nc=0)
    assert expected_response(**base, nc="0000000a", cnonce="c") == expected_response(
        **base, nc=10, cnonce="c"
    )


# -- verify_response on garbled input -----------------------------------------------------------


def _good_params() -> dict[str, str]:
    value = client_authorization(
        username="alice",
        realm="example.com",
        password="pw",
        method="INVITE",
        uri="sip:bob@example.com",
        nonce="n0nce",
        algorithm="SHA-256",
        cnonce="c",
        nc=3,
    )
    return dict(parse_auth(value).params)


KEY = ha1("alice", "example.com", "pw", "SHA-256")


def test_verify_good_params() -> None:
    assert verify_response(_good_params(), method="INVITE", ha1_hex=KEY)


@pytest.mark.parametrize("field", ["response", "nonce", "uri", "nc", "cnonce", "qop", "algorithm"])
def test_verify_missing_field_is_false(field: str) -> None:
    params = _good_params()
    del params[field]
    assert verify_response(params, method="INVITE", ha1_hex=KEY) is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("algorithm", "SHA-1"),
        ("algorithm", ""),
        ("algorithm", "MD5"),
        ("qop", "auth-conf"),
        ("qop", ""),
        ("qop", "auth,auth-int"),
        ("nc", "3"),
        ("nc", "0x000003"),
        ("nc", "00000004"),
        ("cnonce", ""),
        ("response", ""),
        ("response", "\u00e9" * 64),
        ("response", "zz"),
        ("nonce", "\ud800"),
    ],
)
def test_verify_garbled_field_is_false(field: str, value: str) -> None:
    params = {**_good_params(), field: value}
    assert verify_response(params, method="INVITE", ha1_hex=KEY) is False


def test_verify_non_string_values_are_false() -> None:
    for field in ("response", "nonce", "uri", "nc", "cnonce", "qop", "algorithm"):
        params: dict[str, Any] = {**_good_params(), field: 1}
        assert verify_response(params, method="INVITE", ha1_hex=KEY) is False


PARAM_NAMES = st.sampled_from(
    ["response", "nonce", "uri", "nc", "cnonce", "qop", "algorithm", "realm", "username", "x"]
)
PARAM_VALUES = st.one_of(
    st.text(),
    st.sampled_from(["auth", "auth-int", "MD5", "sha-256-sess", "00000001", "", "SHA-512-256"]),
    st.none(),
    st.integers(),
    st.binary(),
)


@given(params=st.dictionaries(PARAM_NAMES, PARAM_VALUES), body=st.binary(max_size=64))
def test_verify_never_raises(params: dict[str, Any], body: bytes) -> None:
    assert verify_response(params, method="REGISTER", ha1_hex=KEY, body=body) in (True, False)


@given(
    overrides=st.dictionaries(
        st.sampled_from(["nonce", "uri", "nc", "cnonce", "qop", "algorithm", "response"]),
        st.text(max_size=70),
    )
)
def test_verify_altered_never_passes(overrides: dict[str, str]) -> None:
    good = _good_params()
    params = {**good, **overrides}
    changed = any(
        params[k].lower() != good[k].lower()
        if k in ("qop", "algorithm", "response")
        else params[k] != good[k]
        for k in overrides
    )
    # Changing any hashed field (other than in case, where it is case-insensitive) fails.
    assert verify_response(params, method="INVITE", ha1_hex=KEY) is not changed


# -- nonces --------------------------------------------------------------------------------------


def test_nonce_format_and_valid() -> None:
    factory = NonceFactory(secret=SECRET)
    nonce = factory.make(NOW, random=b"\x01" * 8)
    assert len(nonce) == 43
    assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(nonce + "=")
    assert int.from_bytes(raw[:8], "big") == int(NOW * 1000)
    assert raw[8:16] == b"\x01" * 8
    assert raw[16:] == hmac.new(SECRET, raw[:16], "sha256").digest()[:16]
    assert factory.make(NOW, random=b"\x01" * 8) == nonce  # deterministic given the random
    assert factory.check(nonce, NOW) is NonceStatus.VALID
    assert factory.check(nonce, NOW + 300.0) is NonceStatus.VALID
    # Token characters only: it survives a header round trip unquoted.
    assert parse_auth(f"Digest nonce={nonce}").params["nonce"] == nonce


def test_nonce_random_by_default() -> None:
    factory = NonceFactory(secret=SECRET)
    nonces = {factory.make(NOW) for _ in range(100)}
    assert len(nonces) == 100
    assert all(factory.check(n, NOW) is NonceStatus.VALID for n in nonces)


def test_nonce_stale_after_lifetime() -> None:
    factory = NonceFactory(secret=SECRET, lifetime=30.0)
    nonce = factory.make(NOW)
    assert factory.check(nonce, NOW + 29.9) is NonceStatus.VALID
    assert factory.check(nonce, NOW + 30.1) is NonceStatus.STALE
    assert factory.check(nonce, NOW + 1e6) is NonceStatus.STALE


def test_nonce_from_the_future() -> None:
    factory = NonceFactory(secret=SECRET)
    nonce = factory.make(NOW + 4.0)  # another node's clock, slightly ahead
    assert factory.check(nonce, NOW) is NonceStatus.VALID
    nonce = factory.make(NOW + 6.0)
    assert factory.check(nonce, NOW) is NonceStatus.STALE
    strict = NonceFactory(secret=SECRET, max_skew=0.0)
    assert strict.check(strict.make(NOW + 0.01), NOW) is NonceStatus.STALE


def test_nonce_shared_secret_across_nodes() -> None:
    a = NonceFactory(secret=SECRET)
    b = NonceFactory(secret=SECRET, lifetime=60.0)
    assert b.check(a.make(NOW), NOW + 1) is NonceStatus.VALID
    other = NonceFactory(secret=bytes(32))
    assert other.check(a.make(NOW), NOW) is NonceStatus.INVALID


def test_nonce_tampered_is_invalid() -> None:
    factory = NonceFactory(secret=SECRET)
    nonce = factory.make(NOW, random=bytes(8))
    raw = bytearray(base64.urlsafe_b64decode(nonce + "="))
    for index in (0, 7, 8, 15, 16, 31):  # timestamp, random and MAC bytes
        altered = bytearray(raw)
        altered[index] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        assert factory.check(forged, NOW) is NonceStatus.INVALID
    # Moving the timestamp back to dodge expiry breaks the MAC as well.
    old = bytearray(raw)
    old[:8] = int(NOW * 1000 + 10_000_000).to_bytes(8, "big")
    forged = base64.urlsafe_b64encode(bytes(old)).rstrip(b"=").decode()
    assert factory.check(forged, NOW + 1000.0) is NonceStatus.INVALID


def test_nonce_non_canonical_spelling_is_invalid() -> None:
    # The last base64 character carries 2 spare bits; a second spelling must not be accepted.
    factory = NonceFactory(secret=SECRET)
    for seed in range(64):
        nonce = factory.make(NOW, random=seed.to_bytes(8, "big"))
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(nonce[-1])
        for spare in (1, 2, 3):
            variant = nonce[:-1] + alphabet[last ^ spare]
            assert factory.check(variant, NOW) is NonceStatus.INVALID


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "A" * 43,
        "A" * 44,
        "A" * 42 + "=",
        "+" * 43,
        "/" * 43,
        "=" * 43,
        " " * 43,
        "\u00e9" * 43,
        "\ud800" * 43,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    ],
)
def test_nonce_garbage_is_invalid(garbage: str) -> None:
    assert NonceFactory(secret=SECRET).check(garbage, NOW) is NonceStatus.INVALID


@given(st.text(max_size=60))
def test_nonce_check_never_raises(text: str) -> None:
    assert NonceFactory(secret=SECRET).check(text, NOW) is NonceStatus.INVALID


def test_nonce_factory_arguments() -> None:
    with pytest.raises(ValueError):
        NonceFactory(secret=b"short")
    with pytest.raises(ValueError):
        NonceFactory(secret=SECRET, lifetime=0)
    with pytest.raises(ValueError):
        NonceFactory(secret=SECRET, max_skew=-1)
    factory = NonceFactory(secret=SECRET)
    with pytest.raises(ValueError):
        factory.make(NOW, random=b"123")
    with pytest.raises(ValueError):
        factory.make(-1.0)
    assert "SECRET" not in repr(factory) and SECRET.hex() not in repr(factory)
    assert factory.check(factory.make(0.0), 0.0) is NonceStatus.VALID


# -- nonce counts --------------------------------------------------------------------------------


def test_nonce_counter_replay() -> None:
    counter = NonceCounter()
    assert counter.accept("n1", 1)
    assert not counter.accept("n1", 1)  # replay
    assert counter.accept("n1", 2)
    assert counter.accept("n1", 5)  # gaps are fine (parallel requests, lost ones)
    assert not counter.accept("n1", 4)
    assert not counter.accept("n1", 5)
    assert counter.last("n1") == 5
    assert counter.accept("n2", 7)  # first use: any count >= 1
    assert not counter.accept("n3", 0)
    assert counter.last("n3") is None
    assert len(counter) == 2


def test_nonce_counter_evicts_least_recently_used() -> None:
    counter = NonceCounter(max_entries=3)
    for nonce in ("a", "b", "c"):
        assert counter.accept(nonce, 1)
    assert counter.accept("a", 2)  # "a" is now the most recent
    assert counter.accept("d", 1)  # evicts "b", the least recently used
    assert len(counter) == 3
    assert counter.last("b") is None
    assert counter.last("a") == 2
    # An evicted nonce's count restarts (why nonces expire): a replay would now pass.
    assert counter.accept("b", 1)
    assert counter.last("c") is None
    # A rejected replay does not refresh the entry.
    assert not counter.accept("a", 1)
    assert counter.accept("e", 1)
    assert counter.last("a") is None


def test_nonce_counter_bounded() -> None:
    counter = NonceCounter(max_entries=100)
    for i in range(10_000):
        assert counter.accept(f"n{i}", 1)
    assert len(counter) == 100
    with pytest.raises(ValueError):
        NonceCounter(max_entries=0)


# -- challenges ----------------------------------------------------------------------------------


def test_challenge_values_format() -> None:
    values = challenge_values("example.com", "N")
    assert values == [
        'Digest realm="example.com", nonce="N", algorithm=SHA-256, qop="auth"',
        'Digest realm="example.com", nonce="N", algorithm=MD5, qop="auth"',
    ]
    values = challenge_values(
        "example.com", "N", stale=True, algorithms=["md5"], qop="auth,auth-int", opaque="o"
    )
    assert values == [
        'Digest realm="example.com", nonce="N", algorithm=MD5, qop="auth,auth-int", '
        'opaque="o", stale=true'
    ]
    assert challenge_values("r", "N", qop=None, algorithms=["SHA-512-256-sess"]) == [
        'Digest realm="r", nonce="N", algorithm=SHA-512-256-sess'
    ]
    assert challenge_values('a"b\\c', "N", algorithms=["MD5"])[0].startswith(
        'Digest realm="a\\"b\\\\c", '
    )


def test_challenge_values_parse_back() -> None:
    for value, algorithm in zip(
        challenge_values("example.com", "N", opaque="o"), ALGORITHMS, strict=True
    ):
        auth = parse_auth(value)
        assert auth.scheme == "Digest"
        assert auth.params == {
            "realm": "example.com",
            "nonce": "N",
            "algorithm": algorithm,
            "qop": "auth",
            "opaque": "o",
        }


def test_challenge_values_deterministic() -> None:
    # Unknown user and wrong password: byte-identical challenges except the nonce.
    factory = NonceFactory(secret=SECRET)
    first = challenge_values("example.com", factory.make(NOW), opaque="x")
    second = challenge_values("example.com", factory.make(NOW), opaque="x")
    nonce_a = parse_auth(first[0]).params["nonce"]
    nonce_b = parse_auth(second[0]).params["nonce"]
    assert nonce_a != nonce_b
    assert [v.replace(nonce_a, "*") for v in first] == [v.replace(nonce_b, "*") for v in second]
    assert challenge_values("example.com", nonce_a) == challenge_values("example.com", nonce_a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": ["SHA-1"]},
        {"qop": "auth-conf"},
        {"qop": "auth,"},
        {"opaque": "a\r\nVia: x"},
        {"realm": "example.com\r\nX: y"},
        {"nonce": "n\x00"},
    ],
)
def test_challenge_values_rejects(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"realm": "example.com", "nonce": "N", **kwargs}
    with pytest.raises(ValueError):
        challenge_values(**args)


# -- client side ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int", None])
def test_client_authorization_round_trip(algorithm: str, qop: str | None) -> None:
    factory = NonceFactory(secret=SECRET)
    counter = NonceCounter()
    nonce = factory.make(NOW)
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    for nc in (1, 2, 3):
        value = client_authorization(
            username="alice",
            realm="example.com",
            password='pa:ss"word',
            method="INVITE",
            uri="sip:bob@example.com",
            nonce=nonce,
            algorithm=algorithm,
            qop=qop,
            nc=nc,
            opaque="op",
            body=body,
        )
        auth = parse_auth(value)
        params = auth.params
        assert auth.scheme == "Digest"
        assert params["username"] == "alice"
        assert params["realm"] == "example.com"
        assert params["uri"] == "sip:bob@example.com"
        assert params["opaque"] == "op"
        assert normalize_algorithm(params["algorithm"]) == algorithm
        assert ("qop" in params) is (qop is not None)
        assert ("cnonce" in params) is (qop is not None or algorithm.endswith("-sess"))
        key = ha1("alice", "example.com", 'pa:ss"word', algorithm)
        assert verify_response(params, method="INVITE", ha1_hex=key, body=body)
        assert not verify_response(params, method="BYE", ha1_hex=key, body=body)
        assert not verify_response(params, method="INVITE", ha1_hex=dummy_ha1(algorithm), body=body)
        # The server's whole check, as mss.sip.auth will do it.
        assert factory.check(params["nonce"], NOW + 1) is NonceStatus.VALID
        count = parse_nc(params["nc"]) if qop is not None else 1
        assert count is not None
        assert counter.accept(params["nonce"], count) is (qop is not None or nc == 1)


def test_client_authorization_exact_form() -> None:
    value = client_authorization(
        username="Mufasa",
        realm="http-auth@example.org",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        nonce=RFC7616["nonce"],
        algorithm="sha-256",
        cnonce=RFC7616["cnonce"],
        opaque=RFC7616["opaque"],
    )
    assert value == (
        'Digest username="Mufasa", realm="http-auth@example.org", '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", uri="/dir/index.html", '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        "algorithm=SHA-256, qop=auth, nc=00000001, "
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    rfc2069 = client_authorization(
        username="u", realm="r", password="p", method="REGISTER", uri="sip:r", nonce="n", qop=None
    )
    assert "qop" not in rfc2069 and "nc=" not in rfc2069 and "cnonce" not in rfc2069


def test_client_authorization_random_cnonce() -> None:
    kwargs: dict[str, Any] = {
        "username": "u",
        "realm": "r",
        "password": "p",
        "method": "REGISTER",
        "uri": "sip:r",
        "nonce": "n",
    }
    cnonces = {parse_auth(client_authorization(**kwargs)).params["cnonce"] for _ in range(20)}
    assert len(cnonces) == 20
    assert all(len(c) == 32 for c in cnonces)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithm": "SHA-1"},
        {"qop": "auth-conf"},
        {"nc": 0},
        {"nc": 2**32},
        {"username": "a\r\nb"},
        {"uri": "sip:x\n"},
        {"cnonce": "c\r"},
    ],
)
def test_client_authorization_rejects(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "username": "u",
        "realm": "r",
        "password": "p",
        "method": "REGISTER",
        "uri": "sip:r",
        "nonce": "n",
        **kwargs,
    }
    with pytest.raises(ValueError):
        client_authorization(**args)


def _challenge(algorithm: str | None, **extra: str) -> dict[str, str]:
    params = {"realm": "example.com", "nonce": f"n-{algorithm}", **extra}
    if algorithm is not None:
        params["algorithm"] = algorithm
    return params


def test_pick_challenge_strongest() -> None:
    md5, sha256, sha512 = _challenge(None), _challenge("SHA-256"), _challenge("SHA-512-256")
    assert pick_challenge([md5, sha256]) is sha256
    assert pick_challenge([sha256, md5]) is sha256
    assert pick_challenge([md5, sha512, sha256]) is sha512
    assert pick_challenge([md5]) is md5
    sess = _challenge("sha-256-sess")
    assert pick_challenge([sess, sha256]) is sess  # equal strength: the topmost wins
    assert pick_challenge([sha256, sess]) is sha256
    assert pick_challenge([]) is None


def test_pick_challenge_skips_unusable() -> None:
    md5 = _challenge("MD5", qop="auth-int, auth")
    unusable: list[dict[str, Any]] = [
        _challenge("SHA-1"),
        _challenge("SHA-256", qop="auth-conf"),
        {"nonce": "n", "algorithm": "SHA-256"},  # no realm
        {"realm": "r", "algorithm": "SHA-256"},  # no nonce
        {"realm": "r", "nonce": "", "algorithm": "SHA-256"},
        {"realm": "r", "nonce": "n", "algorithm": 1},
        {"token68": "abc=="},
    ]
    assert pick_challenge([*unusable, md5]) is md5
    assert pick_challenge(unusable) is None


@given(st.lists(st.dictionaries(PARAM_NAMES, PARAM_VALUES), max_size=5))
def test_pick_challenge_never_raises(challenges: list[dict[str, Any]]) -> None:
    chosen = pick_challenge(challenges)
    assert chosen is None or any(chosen is c for c in challenges)


def test_pick_challenge_then_answer() -> None:
    # A trunk offers SHA-256 and MD5 (our own challenge format); we answer the SHA-256 one.
    nonce = NonceFactory(secret=SECRET).make(NOW)
    offered = [parse_auth(v).params for v in challenge_values("trunk.example", nonce)]
    chosen = pick_challenge(offered)
    assert chosen is offered[0]
    assert chosen is not None
    value = client_authorization(
        username="line1",
        realm=chosen["realm"],
        password="pw",
        method="INVITE",
        uri="sip:+15551234@trunk.example",
        nonce=chosen["nonce"],
        algorithm=chosen["algorithm"],
        qop=chosen["qop"],
    )
    key = ha1("line1", "trunk.example", "pw", "SHA-256")
    assert verify_response(parse_auth(value).params, method="INVITE", ha1_hex=key)


def test_module_surface() -> None:
    assert isinstance(digest.__all__, tuple)
    for name in digest.__all__:
        assert hasattr(digest, name)
    assert list(NonceStatus) == [
        NonceStatus.VALID,
        NonceStatus.STALE,
        NonceStatus.INVALID,
    ]
