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

from typing import TYPE_CHECKING

from ._compat import twin
from ._values_py import quote

if TYPE_CHECKING:
    from ._values_py import Address, CSeq, Via
else:
    _impl = twin("values")
    Address = _impl.Address
    CSeq = _impl.CSeq
    Via = _impl.Via
    del _impl

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
