"""Header names and the typed header values both parser twins produce.

Names: header names are case-insensitive and many have a compact form (RFC 3261 §7.3.3, §20).
:func:`header_key` maps any spelling to one *key*: the long name in lower case ("v" -> "via").
Messages store each header as ``(key, name_as_written, value)``.

Values (all treated as immutable, compared by value):

* :class:`Via` (RFC 3261 §20.42, RFC 3581, RFC 5118): protocol, transport, host, port, params.
* :class:`Address` (§20.10, §20.20, §20.39): display name, :class:`~fastsip.uri.URI`, header
  params. Used for From, To, Contact, Route, Record-Route, Path, Refer-To.
* :class:`CSeq` (§20.16), :class:`Auth` (§20.7, §20.27, §20.28, §20.44; RFC 7616).

Header parameters (Via params, Address params) keep their values *as written*, quotes included,
so that re-serialization is lossless; names are lower case; a valueless parameter maps to None.
:func:`unquote` turns a quoted-string into its text.
"""

from __future__ import annotations

from .uri import URI

__all__ = (
    "COMPACT_FORMS",
    "DISPLAY_NAMES",
    "SINGLE_VALUE_HEADERS",
    "Address",
    "Auth",
    "CSeq",
    "Via",
    "header_key",
    "quote",
    "unquote",
)

#: compact form -> long name, lower case (RFC 3261 §7.3.3 and the IANA registry).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

#: key -> the canonical spelling used when we write a header by key.
DISPLAY_NAMES: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}

#: headers that may appear at most once (RFC 3261 §7.3.1, §20: not comma-list headers).
SINGLE_VALUE_HEADERS: frozenset[str] = frozenset(
    ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "expires", "content-type")
)

_KEY_CACHE: dict[str, str] = {}


def header_key(name: str) -> str:
    """Return the lookup key of a header name: lower case, compact form expanded.

    Args:
        name: a header name in any case or its compact form.

    Returns:
        e.g. ``"via"`` for ``"Via"``, ``"v"`` or ``"VIA"``.
    """
    key = _KEY_CACHE.get(name)
    if key is None:
        low = name.lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_KEY_CACHE) < 4096:
            _KEY_CACHE[name] = key
    return key


def display_name(key: str) -> str:
    """The canonical spelling of a header key (``call-id`` -> ``Call-ID``)."""
    name = DISPLAY_NAMES.get(key)
    if name is None:
        name = "-".join(part[:1].upper() + part[1:] for part in key.split("-"))
    return name


def unquote(value: str | None) -> str | None:
    """Return the text of a quoted-string (quoted-pairs resolved); other values unchanged."""
    if value is None or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    inner = value[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    n = len(inner)
    while i < n:
        ch = inner[i]
        if ch == "\\" and i + 1 < n:
            i += 1
            ch = inner[i]
        out.append(ch)
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """Quote text as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    # ``_src``: unset, or the text a compiled parser twin parsed this value from; it may then
    # leave ``params`` unset and build it on first access (see :func:`_install_lazy_fields`).
    # ``_found``: set with ``_src``, the branch that twin found while checking the params.
    __slots__ = ("_found", "_src", "host", "params", "port", "protocol", "transport")

    protocol: str
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        *,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        t = self.params.get("ttl")
        return int(t) if t is not None and t.isdigit() else None

    @property
    def has_rport(self) -> bool:
        """True when the rport parameter is present, with or without a value (RFC 3581)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The rport value as an int (filled in by a server), None when absent or empty."""
        r = self.params.get("rport")
        return int(r) if r is not None and r.isdigit() else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def host_address(self) -> str:
        h = self.host
        return h[1:-1] if h.startswith("[") and h.endswith("]") else h

    @property
    def has_magic_cookie(self) -> bool:
        """True for RFC 3261 branches (``z9hG4bK`` prefix, §8.1.1.7)."""
        b = self.params.get("branch")
        return b is not None and b.startswith("z9hG4bK")

    def replace(self, **changes: object) -> Via:
        fields: dict[str, object] = {
            "transport": self.transport,
            "host": self.host,
            "port": self.port,
            "params": dict(self.params),
            "protocol": self.protocol,
        }
        for key, value in changes.items():
            if key not in fields:
                raise TypeError(f"Via has no field {key!r}")
            fields[key] = value
        return Via(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_render_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def _key(self) -> tuple[object, ...]:
        return (self.protocol, self.transport, self.host, self.port, tuple(self.params.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class Address:
    """A name-addr or addr-spec with header params (From, To, Contact, Route...)."""

    # ``_src``, ``_found``: as for :class:`Via` (``uri`` and ``params`` may be built on first
    # access; ``_found`` is the tag).
    __slots__ = ("_found", "_src", "display", "params", "uri")

    display: str | None
    uri: URI
    params: dict[str, str | None]

    def __init__(
        self, uri: URI, display: str | None = None, params: dict[str, str | None] | None = None
    ) -> None:
        self.uri = uri
        self.display = display
        self.params = {} if params is None else params

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """Contact ``expires`` param as int (None when absent or not a number)."""
        e = self.params.get("expires")
        return int(e) if e is not None and e.isdigit() else None

    @property
    def q(self) -> float | None:
        """Contact ``q`` param (RFC 3261 §20.10), None when absent or malformed."""
        q = self.params.get("q")
        if q is None:
            return None
        try:
            value = float(q)
        except ValueError:
            return None
        return value if 0.0 <= value <= 1.0 else None

    def replace(self, **changes: object) -> Address:
        fields: dict[str, object] = {
            "uri": self.uri,
            "display": self.display,
            "params": dict(self.params),
        }
        for key, value in changes.items():
            if key not in fields:
                raise TypeError(f"Address has no field {key!r}")
            fields[key] = value
        return Address(**fields)  # type: ignore[arg-type]

    def with_tag(self, tag: str) -> Address:
        params = dict(self.params)
        params["tag"] = tag
        return Address(self.uri, self.display, params)

    def __str__(self) -> str:
        if self.display is not None:
            head = f"{quote(self.display)} <{self.uri}>"
        else:
            head = f"<{self.uri}>"
        return head + _render_params(self.params)

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"

    def _key(self) -> tuple[object, ...]:
        return (self.display, self.uri, tuple(self.params.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _install_lazy_fields(cls: type, fields: dict[str, object]) -> dict[str, object]:
    """Let a compiled parser twin build some fields of the values it parses on first access.

    The Cython twin calls this once at import for :class:`Via` (``params``, ``branch``),
    :class:`Address` (``uri``, ``params``, ``tag``) and :class:`~fastsip.uri.URI` (``params``
    and ``headers``, left unset when empty and made on first access). It checks the whole value when it parses
    it (so the same values fail, at the same point, as in the pure twin) but builds the
    parameter dicts and the URI only when they are read, from the text kept in ``_src``. The
    properties it installs read and write the original slots, so a value built any other way
    (the pure twin, ``__init__``, ``replace``) behaves as before; ``branch`` and ``tag`` are
    found by scanning the parameter text while ``params`` is not built yet.

    Args:
        cls: :class:`Via`, :class:`Address` or :class:`~fastsip.uri.URI`.
        fields: attribute name -> the descriptor replacing the slot or the pure property.

    Returns:
        The descriptors replaced, by name.
    """
    replaced: dict[str, object] = {}
    for name, prop in fields.items():
        replaced[name] = cls.__dict__[name]
        setattr(cls, name, prop)
    return replaced


class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number (0..2**32-1) and method."""

    __slots__ = ("method", "seq")

    seq: int
    method: str

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return (self.seq, self.method) == (other.seq, other.method)

    def __hash__(self) -> int:
        return hash((self.seq, self.method))


class Auth:
    """A credentials or challenge value: scheme plus auth-params (RFC 3261 §25.1, RFC 7616).

    ``params`` names are lower case and values are *unquoted* (quoted-pairs resolved);
    ``quoted`` lists the names whose value was written as a quoted-string, so that
    :func:`str` reproduces the form.
    """

    __slots__ = ("params", "quoted", "scheme")

    scheme: str
    params: dict[str, str]
    quoted: frozenset[str]

    def __init__(
        self,
        scheme: str,
        params: dict[str, str] | None = None,
        quoted: frozenset[str] | None = None,
    ) -> None:
        self.scheme = scheme
        self.params = {} if params is None else params
        self.quoted = frozenset() if quoted is None else quoted

    def get(self, name: str) -> str | None:
        return self.params.get(name)

    def __str__(self) -> str:
        items = ", ".join(
            f"{k}={quote(v)}" if k in self.quoted else f"{k}={v}" for k, v in self.params.items()
        )
        return f"{self.scheme} {items}" if items else self.scheme

    def __repr__(self) -> str:
        return f"Auth({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Auth):
            return NotImplemented
        return (self.scheme.lower(), self.params, self.quoted) == (
            other.scheme.lower(),
            other.params,
            other.quoted,
        )

    def __hash__(self) -> int:
        return hash((self.scheme.lower(), tuple(self.params.items())))
