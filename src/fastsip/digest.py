"""SIP digest authentication primitives, sans-IO: hashes, stateless nonces, replay counts.

Theory of operation
-------------------
A registrar or proxy challenges a request with one ``WWW-Authenticate`` (401) or
``Proxy-Authenticate`` (407) value per offered algorithm (RFC 3261 §22.1, §22.4; RFC 8760 §2.3:
most preferred first, so :data:`ALGORITHMS` lists SHA-256 before MD5). The UAC answers with
``Authorization`` / ``Proxy-Authorization`` whose ``response`` is a keyed hash over the request
(RFC 7616 §3.4.1, RFC 2617 §3.2.2)::

    HA1      = H(username ":" realm ":" password)                  (stored per user and algorithm)
    HA1-sess = H(HA1 ":" nonce ":" cnonce)                         (the "-sess" algorithms, §3.4.2)
    HA2      = H(method ":" uri)               qop=auth or absent  (§3.4.3)
             = H(method ":" uri ":" H(body))   qop=auth-int
    response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   qop present (§3.4.1)
             = H(HA1 ":" nonce ":" HA2)                             qop absent (RFC 2069)

This module holds the pieces, and the server glues them together:

1. **Nonces** come from :class:`NonceFactory`: ``base64url(ts || random || MAC)`` where ``ts``
   is the issue time in milliseconds (8 bytes, big-endian), ``random`` 8 bytes, and ``MAC`` the
   first 16 bytes of HMAC-SHA256(secret, ts || random). Checking a nonce needs no per-nonce
   state, so any node holding the secret accepts nonces issued by the others, and a forged or
   altered nonce is :attr:`NonceStatus.INVALID` (anyone can read the issue time; only the key
   is secret). A genuine nonce older than its lifetime (or dated in the future beyond a small
   clock skew) is :attr:`NonceStatus.STALE`: the server
   answers a *correct* response for it with a fresh challenge carrying ``stale=true``, so the
   UAC retries without asking its user for the password again (RFC 7616 §3.3, RFC 3261 §22.4).
2. **Verification** (:func:`verify_response`) recomputes the response from the credentials'
   parameters and the HA1 the caller looked up, and compares in constant time. It never raises
   on what a peer sent: a missing or garbled field is simply a failed verification. The caller
   checks the rest of the policy: the scheme is Digest, ``realm`` is ours, ``uri`` matches the
   Request-URI (RFC 2617 §3.2.2.5), ``opaque`` is the one we sent, the nonce is
   :attr:`~NonceStatus.VALID`, and the nonce count is fresh.
3. **Unknown users** are verified against :func:`dummy_ha1` so that they cost the same work as
   a real user with a wrong password, and get the same answer: :func:`challenge_values` is
   deterministic, so the two 401s differ only in the nonce.
4. **Replays** within a nonce's lifetime are caught by :class:`NonceCounter`, which remembers
   the highest ``nc`` accepted per nonce (RFC 7616 §3.4 ``nc``; RFC 2617 §3.2.2, §4.5: a count
   seen twice is a replay). It is bounded: when full it forgets the least recently used nonce, whose count
   then restarts. That is why nonces expire: a replay needs a nonce that is both evicted and
   still within its lifetime, so size ``max_entries`` above the number of nonces one node
   issues per lifetime. Counts are per node; nodes sharing a secret do not share counts.
   Credentials without ``qop`` (RFC 2069) carry no ``nc``: a caller that accepts them can make
   such a nonce single-use with ``counter.accept(nonce, 1)``.
5. **Clients** (our own outbound lines answering a trunk's challenge) use
   :func:`pick_challenge` to choose among several challenges and
   :func:`client_authorization` to build the header value.

Algorithms are the IANA "HTTP Digest Hash Algorithms" names, matched case-insensitively:
``MD5``, ``SHA-256``, ``SHA-512-256`` (SHA-512/256, when the hashlib build has it) and each
with ``-sess``. Strings are hashed as UTF-8. ``userhash`` (RFC 7616 §3.4.4) and ``username*``
(§3.4, §4) are not supported.

Invariants
----------
* :func:`verify_response`, :func:`pick_challenge` and :meth:`NonceFactory.check` never raise on
  peer input; they return ``False`` / ``None`` / :attr:`NonceStatus.INVALID`.
* Secret-dependent comparisons use :func:`hmac.compare_digest`.
* No clock is read: every time is the caller's ``now`` (seconds, any epoch >= 0).
* Header values built here contain no control characters: inputs that would inject them raise
  ``ValueError``.

RFC sections: RFC 3261 §22.1, §22.2, §22.4, §25.1 (credentials grammar); RFC 2617 §3.2.1,
§3.2.2, §3.2.2.1-3, §3.2.2.5, §3.5 (example), §4.5; RFC 2069 (no-qop form); RFC 7616 §3.3, §3.4,
§3.4.1-3, §3.7, §3.9.1 (examples); RFC 8760 §2.3, §2.4 (SIP use of SHA-256 and SHA-512/256).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from .headers import quote

__all__ = (
    "ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "NonceCounter",
    "NonceFactory",
    "NonceStatus",
    "challenge_values",
    "client_authorization",
    "dummy_ha1",
    "expected_response",
    "h",
    "ha1",
    "normalize_algorithm",
    "parse_nc",
    "pick_challenge",
    "verify_response",
)

_Hasher = Callable[[bytes], "hashlib._Hash"]


def _sha512_256(data: bytes) -> hashlib._Hash:
    return hashlib.new("sha512_256", data)


def _have_sha512_256() -> bool:
    try:
        hashlib.new("sha512_256", b"")
    except ValueError:  # pragma: no cover - depends on the OpenSSL build
        return False
    return True


# canonical base name -> (hash constructor, strength rank used by pick_challenge)
_BASES: dict[str, tuple[_Hasher, int]] = {"MD5": (hashlib.md5, 1), "SHA-256": (hashlib.sha256, 2)}
if _have_sha512_256():
    _BASES["SHA-512-256"] = (_sha512_256, 3)

# lower-case name -> (canonical name, base name, is "-sess")
_NAMES: dict[str, tuple[str, str, bool]] = {}
for _base in _BASES:
    _NAMES[_base.lower()] = (_base, _base, False)
    _NAMES[_base.lower() + "-sess"] = (_base + "-sess", _base, True)
del _base

#: The algorithms offered in a challenge, most preferred first (RFC 8760 §2.3).
ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")

#: Every algorithm name this module computes, in canonical spelling.
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(canon for canon, _, _ in _NAMES.values())

_QOPS = ("auth", "auth-int")
_HEX = frozenset("0123456789abcdefABCDEF")
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def normalize_algorithm(name: str | None) -> str | None:
    """Return the canonical spelling of a digest algorithm name, or None if unsupported.

    Args:
        name: an ``algorithm`` parameter as received (any case); None means absent, which is
            MD5 (RFC 2617 §3.2.1).

    Returns:
        e.g. ``"SHA-256"`` for ``"sha-256"``, ``"MD5-sess"`` for ``"md5-SESS"``; None for an
        unknown name or a non-string.
    """
    entry = _entry(name)
    return None if entry is None else entry[0]


def _hasher(algorithm: str) -> _Hasher:
    entry = _NAMES.get(algorithm.lower()) if isinstance(algorithm, str) else None
    if entry is None:
        raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
    return _BASES[entry[1]][0]


def _encode(data: str) -> bytes:
    # surrogatepass: a lone surrogate in peer input hashes (to a mismatch) instead of raising.
    return data.encode("utf-8", "surrogatepass")


def h(algorithm: str, data: str | bytes) -> str:
    """Hash ``data`` with the base hash of ``algorithm``, as lower-case hex (RFC 7616 §3.4: H).

    Args:
        algorithm: a supported name; a ``-sess`` name uses its base hash.
        data: text (hashed as UTF-8) or bytes.

    Returns:
        the hex digest (32 characters for MD5, 64 for the SHA-2 algorithms).

    Raises:
        ValueError: unsupported algorithm.
    """
    hasher = _hasher(algorithm)
    return hasher(_encode(data) if isinstance(data, str) else data).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """Return HA1 = H(username:realm:password), the value a server stores per user.

    For a ``-sess`` algorithm this is the stored part; the per-nonce HA1-sess is derived during
    verification (RFC 7616 §3.4.2).

    Args:
        username: the user name as the UAC sends it.
        realm: the protection realm.
        password: the clear-text password.
        algorithm: a supported algorithm name.

    Returns:
        the hex digest.

    Raises:
        ValueError: unsupported algorithm.
    """
    return h(algorithm, f"{username}:{realm}:{password}")


_DUMMY_SEED = os.urandom(32).hex()
_DUMMY_HA1: dict[str, str] = {}


def dummy_ha1(algorithm: str) -> str:
    """Return a fixed, random-per-process HA1 to verify unknown users against.

    Verifying an unknown user against it costs the same hashing as a real user with a wrong
    password and never succeeds (short of guessing a random 256-bit seed), so neither the answer
    nor its timing tells whether the user exists.

    Args:
        algorithm: a supported algorithm name (``-sess`` names share their base's value).

    Returns:
        a hex string of the algorithm's digest length.

    Raises:
        ValueError: unsupported algorithm.
    """
    entry = _entry(algorithm)
    if entry is None:
        raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
    value = _DUMMY_HA1.get(entry[1])
    if value is None:
        value = h(entry[1], "fastsip-dummy-ha1:" + _DUMMY_SEED)
        _DUMMY_HA1[entry[1]] = value
    return value


def parse_nc(value: str | None) -> int | None:
    """Return the integer of a nonce-count (``nc``) parameter, or None if malformed.

    Args:
        value: the parameter as received; the grammar is exactly 8 hex digits (RFC 7616 §3.4,
            RFC 2617 §3.2.2: ``nc-value = 8LHEX``; upper case is tolerated).

    Returns:
        the count, e.g. 1 for ``"00000001"``; None for anything else.
    """
    if not isinstance(value, str) or len(value) != 8 or not _HEX.issuperset(value):
        return None
    return int(value, 16)


# -- response computation ----------------------------------------------------------------------


def _entry(algorithm: object) -> tuple[str, str, bool] | None:
    """The table entry of an ``algorithm`` parameter (None: absent, so MD5), or None if bad."""
    if algorithm is None:
        return _NAMES["md5"]
    return _NAMES.get(algorithm.lower()) if isinstance(algorithm, str) else None


def _compute(
    entry: tuple[str, str, bool] | None,
    ha1_hex: str,
    nonce: object,
    method: str,
    uri: object,
    qop: object,
    nc: object,
    cnonce: object,
    body: bytes,
) -> str | None:
    """The expected response, or None when the inputs cannot form one (RFC 7616 §3.4.1-3)."""
    if entry is None or not isinstance(nonce, str) or not isinstance(uri, str):
        return None
    if qop is not None:
        if not isinstance(qop, str):
            return None
        qop = qop.lower()
        if qop not in _QOPS or not isinstance(nc, str) or parse_nc(nc) is None:
            return None
    if (qop is not None or entry[2]) and (not isinstance(cnonce, str) or not cnonce):
        return None
    hasher = _BASES[entry[1]][0]
    key = ha1_hex.lower()
    if entry[2]:  # RFC 7616 §3.4.2: HA1-sess = H(HA1:nonce:cnonce)
        key = hasher(_encode(f"{key}:{nonce}:{cnonce}")).hexdigest()
    if qop == "auth-int":  # RFC 7616 §3.4.3: A2 = method:uri:H(body)
        a2 = f"{method}:{uri}:{hasher(body).hexdigest()}"
    else:
        a2 = f"{method}:{uri}"
    ha2 = hasher(_encode(a2)).hexdigest()
    if qop is None:  # RFC 2069 / RFC 2617 §3.2.2.1 compatibility form
        return hasher(_encode(f"{key}:{nonce}:{ha2}")).hexdigest()
    return hasher(_encode(f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")).hexdigest()


def _nc_text(nc: int | str) -> str:
    if isinstance(nc, int):
        if not 1 <= nc <= 0xFFFFFFFF:
            raise ValueError(f"nonce count out of range: {nc}")
        return f"{nc:08x}"
    if parse_nc(nc) is None:
        raise ValueError(f"malformed nonce count: {nc!r}")
    return nc


def expected_response(
    *,
    algorithm: str = "MD5",
    ha1_hex: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = "auth",
    nc: int | str = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """Compute the ``response`` parameter for the given credentials (RFC 7616 §3.4.1).

    Args:
        algorithm: a supported algorithm name.
        ha1_hex: H(username:realm:password) for the algorithm's base hash (see :func:`ha1`).
        nonce: the server nonce.
        method: the request method (for ACK and CANCEL see RFC 3261 §22.1).
        uri: the ``uri`` parameter (digest-uri), exactly as sent.
        qop: ``"auth"``, ``"auth-int"`` or None (RFC 2069 form, no nc/cnonce).
        nc: the nonce count, as an int (formatted as 8 hex digits) or as the 8-digit text.
        cnonce: the client nonce; required with a qop or a ``-sess`` algorithm.
        body: the message body, hashed for ``auth-int``.

    Returns:
        the lower-case hex response.

    Raises:
        ValueError: unsupported algorithm or qop, malformed nc, or missing cnonce.
    """
    entry = _entry(algorithm)
    if entry is None:
        raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
    if qop is not None and qop.lower() not in _QOPS:
        raise ValueError(f"unsupported qop: {qop!r}")
    nc_text = _nc_text(nc) if qop is not None else None
    result = _compute(entry, ha1_hex, nonce, method, uri, qop, nc_text, cnonce, body)
    if result is None:
        raise ValueError("a cnonce is required with a qop or a -sess algorithm")
    return result


def _param(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return value if isinstance(value, str) else None


def verify_response(
    params: Mapping[str, str], *, method: str, ha1_hex: str, body: bytes = b""
) -> bool:
    """Check the ``response`` of Digest credentials against the expected one, in constant time.

    The computation follows ``algorithm`` (absent: MD5; any case) and ``qop`` (``auth``,
    ``auth-int`` over ``body``, or absent: RFC 2069 form) from ``params``, using ``nonce``,
    ``uri``, ``nc`` and ``cnonce`` as sent. Nothing else is checked here: realm, uri against the
    Request-URI, opaque, nonce freshness (:class:`NonceFactory`) and nonce count
    (:class:`NonceCounter`) are the caller's policy.

    Args:
        params: the credentials' parameters, names lower case, values unquoted (the
            ``params`` of a parsed :class:`~fastsip.headers.Auth`).
        method: the method of the request being authenticated.
        ha1_hex: the user's HA1 for the algorithm's base hash, or :func:`dummy_ha1` for an
            unknown user.
        body: the request body, used when ``qop=auth-int``.

    Returns:
        True when the response matches; False otherwise, including for missing, malformed or
        unsupported fields (this function never raises on ``params``). With ``qop``, a True
        result implies ``parse_nc(params["nc"])`` is not None.
    """
    get = params.get
    got = get("response")
    expected = _compute(
        _entry(get("algorithm")),
        ha1_hex,
        get("nonce"),
        method,
        get("uri"),
        get("qop"),
        get("nc"),
        get("cnonce"),
        body,
    )
    if expected is None or not isinstance(got, str) or not got.isascii():
        return False
    return hmac.compare_digest(expected.encode("ascii"), got.lower().encode("ascii"))


# -- nonces -------------------------------------------------------------------------------------


class NonceStatus(enum.Enum):
    """The verdict of :meth:`NonceFactory.check`."""

    #: issued by a holder of the secret and within its lifetime.
    VALID = "valid"
    #: genuine but expired (or dated in the future beyond the skew): answer with stale=true.
    STALE = "stale"
    #: not issued with this secret, or not a nonce at all.
    INVALID = "invalid"


_TS_LEN = 8
_RANDOM_LEN = 8
_MAC_LEN = 16
_RAW_LEN = _TS_LEN + _RANDOM_LEN + _MAC_LEN  # 32 bytes
_NONCE_LEN = 43  # base64 of 32 bytes, without the one '=' of padding


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class NonceFactory:
    """Issue and check self-validating nonces (no per-nonce state; see the module docstring).

    A nonce is 43 characters of URL-safe base64 (``A-Z a-z 0-9 - _``, all SIP token
    characters): 8 bytes of issue time in milliseconds, 8 random bytes, and 16 bytes of
    HMAC-SHA256(secret, time || random). Nodes sharing ``secret`` accept each other's nonces.
    Rotating the secret makes every outstanding nonce INVALID, so clients are challenged anew.

    Args:
        secret: the MAC key, at least 16 bytes (use ``os.urandom(32)``).
        lifetime: seconds a nonce stays VALID after issue.
        max_skew: seconds a nonce may be dated in the future (clocks of nodes sharing the
            secret) before it counts as STALE.

    Raises:
        ValueError: secret shorter than 16 bytes, or a non-positive lifetime / negative skew.
    """

    __slots__ = ("_secret", "lifetime", "max_skew")

    def __init__(self, *, secret: bytes, lifetime: float = 300.0, max_skew: float = 5.0) -> None:
        if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if not lifetime > 0:
            raise ValueError(f"lifetime must be positive: {lifetime!r}")
        if not max_skew >= 0:
            raise ValueError(f"max_skew must not be negative: {max_skew!r}")
        self._secret = bytes(secret)
        self.lifetime = float(lifetime)
        self.max_skew = float(max_skew)

    def __repr__(self) -> str:
        return f"NonceFactory(lifetime={self.lifetime}, max_skew={self.max_skew})"

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._secret, payload, "sha256")[:_MAC_LEN]

    def make(self, now: float, *, random: bytes | None = None) -> str:
        """Issue a nonce dated ``now``.

        Args:
            now: the current time in seconds (>= 0).
            random: 8 bytes to use instead of ``os.urandom(8)`` (tests, reproducible runs).

        Returns:
            a 43-character nonce of token characters.

        Raises:
            ValueError: ``now`` negative or too large, or ``random`` not 8 bytes.
        """
        if random is None:
            random = os.urandom(_RANDOM_LEN)
        elif len(random) != _RANDOM_LEN:
            raise ValueError(f"random must be {_RANDOM_LEN} bytes")
        try:
            ts = int(now * 1000).to_bytes(_TS_LEN, "big")
        except OverflowError:
            raise ValueError(f"time out of range: {now!r}") from None
        payload = ts + bytes(random)
        return _b64(payload + self._mac(payload))

    def check(self, nonce: str, now: float) -> NonceStatus:
        """Judge a nonce the UAC sent back.

        Args:
            nonce: the ``nonce`` parameter as received.
            now: the current time in seconds.

        Returns:
            VALID, STALE (genuine but older than ``lifetime``, or more than ``max_skew`` in the
            future) or INVALID (wrong length, alphabet, encoding or MAC). Never raises.
        """
        if not isinstance(nonce, str) or len(nonce) != _NONCE_LEN or not _B64URL.issuperset(nonce):
            return NonceStatus.INVALID
        raw = base64.urlsafe_b64decode(nonce + "=")
        # The last character carries 2 spare bits; only the canonical spelling is accepted, so
        # one nonce has one string (NonceCounter keys on it).
        if len(raw) != _RAW_LEN or _b64(raw) != nonce:
            return NonceStatus.INVALID
        payload = raw[: _TS_LEN + _RANDOM_LEN]
        if not hmac.compare_digest(self._mac(payload), raw[_TS_LEN + _RANDOM_LEN :]):
            return NonceStatus.INVALID
        age = now - int.from_bytes(raw[:_TS_LEN], "big") / 1000.0
        if age > self.lifetime or age < -self.max_skew:
            return NonceStatus.STALE
        return NonceStatus.VALID


class NonceCounter:
    """Remember the highest nonce count accepted per nonce, to refuse replays (RFC 2617 §3.2.2).

    Bounded: past ``max_entries`` nonces, the least recently accepted one is forgotten and its
    count restarts (see the module docstring for why expiry makes this safe). Every operation
    is O(1). Feed it only nonces that :meth:`NonceFactory.check` found VALID and whose response
    verified, or an attacker can flush it with junk.

    Args:
        max_entries: how many nonces to remember (> 0).

    Raises:
        ValueError: ``max_entries`` < 1.
    """

    __slots__ = ("_last", "max_entries")

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive: {max_entries!r}")
        self.max_entries = max_entries
        self._last: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def __repr__(self) -> str:
        return f"NonceCounter(max_entries={self.max_entries}, len={len(self._last)})"

    def last(self, nonce: str) -> int | None:
        """The highest count accepted for ``nonce``, or None if not remembered."""
        return self._last.get(nonce)

    def accept(self, nonce: str, nc: int) -> bool:
        """Record a use of ``nonce`` with count ``nc`` if it is fresh.

        Args:
            nonce: the nonce (as sent; nonces from :class:`NonceFactory` have one spelling).
            nc: the nonce count (see :func:`parse_nc`).

        Returns:
            True when ``nc`` is greater than every count accepted before for this nonce (any
            ``nc >= 1`` on first use); False for a replay or a count below 1.
        """
        last = self._last.get(nonce)
        if last is not None:
            if nc <= last:
                return False
            self._last[nonce] = nc
            self._last.move_to_end(nonce)
            return True
        if nc < 1:
            return False
        self._last[nonce] = nc
        if len(self._last) > self.max_entries:
            self._last.popitem(last=False)
        return True


# -- challenges and client credentials ---------------------------------------------------------


def _checked(name: str, value: str) -> str:
    """Refuse text that would break the header line (CR, LF, other controls)."""
    if not isinstance(value, str) or any((c < " " and c != "\t") or c == "\x7f" for c in value):
        raise ValueError(f"{name} contains control characters: {value!r}")
    return value


def challenge_values(
    realm: str,
    nonce: str,
    *,
    stale: bool = False,
    algorithms: Sequence[str] = ALGORITHMS,
    qop: str | None = "auth",
    opaque: str | None = None,
) -> list[str]:
    """Build one ``WWW-Authenticate`` / ``Proxy-Authenticate`` value per algorithm.

    Formatting is deterministic: the same arguments give byte-identical values, in the order
    ``realm, nonce, algorithm, qop, opaque, stale``, e.g.
    ``Digest realm="example.com", nonce="...", algorithm=SHA-256, qop="auth"``.

    Args:
        realm: the protection realm (quoted).
        nonce: from :meth:`NonceFactory.make` (quoted).
        stale: add ``stale=true`` (RFC 7616 §3.3: the nonce was stale, the password right).
        algorithms: algorithm names, most preferred first (RFC 8760 §2.3), written in their
            canonical spelling.
        qop: the qop-options (``"auth"``, ``"auth-int"``, ``"auth,auth-int"``), or None to
            omit it (RFC 2069 clients only).
        opaque: a value the client must echo (quoted), or None.

    Returns:
        the header values, in the order of ``algorithms``.

    Raises:
        ValueError: unsupported algorithm or qop, or control characters in a value.
    """
    tail = ""
    if qop is not None:
        if not all(part.strip().lower() in _QOPS for part in qop.split(",")):
            raise ValueError(f"unsupported qop: {qop!r}")
        tail += f", qop={quote(_checked('qop', qop))}"
    if opaque is not None:
        tail += f", opaque={quote(_checked('opaque', opaque))}"
    if stale:
        tail += ", stale=true"
    head = (
        f"Digest realm={quote(_checked('realm', realm))}, nonce={quote(_checked('nonce', nonce))}"
    )
    values = []
    for algorithm in algorithms:
        canonical = normalize_algorithm(algorithm)
        if canonical is None:
            raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
        values.append(f"{head}, algorithm={canonical}{tail}")
    return values


def client_authorization(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    nc: int = 1,
    cnonce: str | None = None,
    opaque: str | None = None,
    body: bytes = b"",
) -> str:
    """Build the ``Authorization`` / ``Proxy-Authorization`` value a UAC sends (RFC 3261 §22.2).

    Output order: ``username, realm, nonce, uri, response, algorithm`` then, with a qop,
    ``qop, nc, cnonce`` (qop and nc unquoted, RFC 2617 §3.2.2), then ``opaque`` when given.

    Args:
        username: the user name (quoted; no ``userhash``).
        realm: the realm of the challenge being answered.
        password: the clear-text password.
        method: the request method.
        uri: the Request-URI, as text.
        nonce: the challenge's nonce.
        algorithm: the challenge's algorithm (written in canonical spelling).
        qop: the qop chosen from the challenge's options, or None if it offered none.
        nc: how many requests this client has sent with this nonce, this one included.
        cnonce: the client nonce; a random 32-hex-digit one when None and one is needed.
        opaque: the challenge's opaque, echoed when given.
        body: the request body, for ``auth-int``.

    Returns:
        e.g. ``Digest username="alice", realm="example.com", nonce="...", uri="sip:...",
        response="...", algorithm=MD5, qop=auth, nc=00000001, cnonce="..."``.

    Raises:
        ValueError: unsupported algorithm or qop, nc out of range, or control characters.
    """
    canonical = normalize_algorithm(algorithm)
    if canonical is None:
        raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
    if qop is not None:
        qop = qop.lower()
    if cnonce is None and (qop is not None or canonical.endswith("-sess")):
        cnonce = os.urandom(16).hex()
    response = expected_response(
        algorithm=canonical,
        ha1_hex=ha1(username, realm, password, canonical),
        nonce=nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f"Digest username={quote(_checked('username', username))}",
        f"realm={quote(_checked('realm', realm))}",
        f"nonce={quote(_checked('nonce', nonce))}",
        f"uri={quote(_checked('uri', uri))}",
        f'response="{response}"',
        f"algorithm={canonical}",
    ]
    if qop is not None:
        parts.append(f"qop={qop}")
        parts.append(f"nc={_nc_text(nc)}")
    if cnonce is not None:
        parts.append(f"cnonce={quote(_checked('cnonce', cnonce))}")
    if opaque is not None:
        parts.append(f"opaque={quote(_checked('opaque', opaque))}")
    return ", ".join(parts)


def pick_challenge(challenges: Sequence[Mapping[str, str]]) -> Mapping[str, str] | None:
    """Choose the challenge to answer among several Digest challenges.

    A challenge is usable when it has a ``realm`` and a ``nonce``, its ``algorithm`` (absent:
    MD5) is supported, and its ``qop`` is absent or offers ``auth`` or ``auth-int``. Among the
    usable ones the strongest algorithm wins (SHA-512-256 > SHA-256 > MD5, a ``-sess`` variant
    ranking with its base); ties go to the earliest, i.e. the topmost header field, which is the
    server's preference (RFC 8760 §2.3, §2.4).

    Args:
        challenges: the ``params`` of the ``Digest`` challenges (the caller drops other schemes),
            in header order.

    Returns:
        the chosen mapping itself, or None when none is usable. Never raises on the contents.
    """
    best: Mapping[str, str] | None = None
    best_rank = 0
    for challenge in challenges:
        if not isinstance(challenge, Mapping):
            continue
        if _param(challenge, "realm") is None or not _param(challenge, "nonce"):
            continue
        entry = _entry(challenge.get("algorithm"))
        if entry is None:
            continue
        qop = challenge.get("qop")
        if qop is not None and (
            not isinstance(qop, str)
            or not any(part.strip().lower() in _QOPS for part in qop.split(","))
        ):
            continue
        rank = _BASES[entry[1]][1]
        if rank > best_rank:
            best, best_rank = challenge, rank
    return best
