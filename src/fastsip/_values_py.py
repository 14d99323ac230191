"""The value classes of parsed headers and URIs: the pure-Python twin, and the specification.

:class:`Via`, :class:`Address`, :class:`CSeq` and :class:`URI` are what both parser twins
produce (``fastsip.headers`` and ``fastsip.uri`` export the twin in use: the Cython classes of
``_values_c`` when the extensions are built, these otherwise). The Cython twin behaves the same
(``tests/fastsip/test_values.py`` runs every test against both and compares them on random
values) and adds one thing the parser uses: a value built by the C parser may keep the checked
text it came from and build ``params`` / ``uri`` from it on first access.

A :class:`URI` is produced by a parser twin (``parse_uri``) and is treated as immutable: change
one with :meth:`URI.replace`, which returns a new URI that serializes from its fields. A URI that
came from the wire serializes to exactly the text it was parsed from.

Field conventions (shared by both parser twins, which must produce equal values):

* ``scheme`` lower case (``sip``, ``sips``, ``tel`` or any other scheme, RFC 3261 §19.1.1 allows
  unknown schemes; RFC 4475 §3.3.2 requires parsing them).
* ``user`` and ``password`` with %HH escapes decoded exactly once (RFC 4475 §3.1.1.3); for tel
  URIs ``user`` is the telephone-subscriber number; None when absent.
* ``host`` as written (an IPv6 reference keeps its brackets); :attr:`URI.host_address` strips them.
* ``port`` an int or None (no default applied: RFC 5118 §4.3).
* ``params``: uri-parameters in order, names lower-cased and decoded, values decoded, a valueless
  parameter maps to None (``lr``). ``headers``: URI headers (after ``?``), decoded.
* ``opaque``: for schemes other than sip/sips/tel, everything after ``scheme:`` verbatim.
"""

from __future__ import annotations

from typing import Any

__all__ = ("URI", "Address", "CSeq", "Via", "escape_user", "quote")


def quote(text: str) -> str:
    """Quote text as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _clone(value: Any, memo: dict[int, object] | None = None) -> Any:
    """``copy.copy`` (memo None) / ``copy.deepcopy`` of a value: the same class, from the fields
    its ``__reduce__`` gives (which names the public class, for pickles)."""
    _, (_, args, kwargs) = value.__reduce__()
    if memo is not None:
        import copy

        args = copy.deepcopy(args, memo)
        kwargs = copy.deepcopy(kwargs, memo)
    return type(value)(*args, **kwargs)


def _rebuild(name: str, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
    """Unpickle a value as the class of the twin in use (pickles made by either twin load in
    both: they name this function, not the class)."""
    from . import headers, uri

    cls: Any = uri.URI if name == "URI" else getattr(headers, name)
    return cls(*args, **kwargs)


_USER_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/"
)
_PARAM_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/:&+$"
)
_HEADER_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/?:+$"
)
_PASSWORD_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,"
)


def _escape(text: str, safe: frozenset[str]) -> str:
    if all(c in safe for c in text):
        return text
    out = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def escape_user(user: str) -> str:
    """Escape a user part for a SIP URI (RFC 3261 §25.1 ``user``)."""
    return _escape(user, _USER_SAFE)


# -- the parts of the values both twins share (none is on the parser's hot path) ---------------
def _changed(name: str, fields: dict[str, object], changes: dict[str, object]) -> dict[str, object]:
    """``fields`` updated with ``changes`` (``replace``), a TypeError for an unknown field."""
    for key, value in changes.items():
        if key not in fields:
            raise TypeError(f"{name} has no field {key!r}")
        fields[key] = value
    return fields


def _q_value(q: str | None) -> float | None:
    """A Contact ``q`` parameter as a float in 0..1, None when absent or malformed."""
    if q is None:
        return None
    try:
        value = float(q)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def _uri_aor(u: Any) -> str:
    """``URI.aor``."""
    if u.opaque is not None:
        return f"{u.scheme}:{u.opaque}"
    host = (u.host or "").lower()
    if u.user is None:
        return f"{u.scheme}:{host}"
    if u.host is None:
        return f"{u.scheme}:{u.user}"
    return f"{u.scheme}:{escape_user(u.user)}@{host}"


def _render_uri(u: Any) -> str:
    """The text of a URI from its fields (RFC 3261 §25.1 escaping)."""
    if u.opaque is not None:
        return f"{u.scheme}:{u.opaque}"
    parts = [u.scheme, ":"]
    if u.scheme == "tel":
        parts.append(_escape(u.user or "", _PARAM_SAFE))
    else:
        if u.user is not None:
            parts.append(escape_user(u.user))
            if u.password is not None:
                parts.append(":" + _escape(u.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(u.host or "")
        if u.port is not None:
            parts.append(f":{u.port}")
    for name, value in u.params.items():
        parts.append(";" + _escape(name, _PARAM_SAFE))
        if value is not None:
            parts.append("=" + _escape(value, _PARAM_SAFE))
    if u.headers:
        parts.append(
            "?"
            + "&".join(
                f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}"
                for k, v in u.headers.items()
            )
        )
    return "".join(parts)


class URI:
    """A parsed URI. Treat as immutable; use :meth:`replace` to derive a changed copy."""

    __slots__ = (
        "_text",
        "headers",
        "host",
        "opaque",
        "params",
        "password",
        "port",
        "scheme",
        "user",
    )

    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    params: dict[str, str | None]
    headers: dict[str, str]
    opaque: str | None
    _text: str | None

    def __init__(
        self,
        scheme: str,
        user: str | None = None,
        host: str | None = None,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        *,
        password: str | None = None,
        opaque: str | None = None,
        text: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = {} if headers is None else headers
        self.opaque = opaque
        self._text = text

    # -- derived values -------------------------------------------------------------------
    @property
    def host_address(self) -> str | None:
        """The host without IPv6 brackets, e.g. for socket addresses."""
        h = self.host
        if h is not None and h.startswith("[") and h.endswith("]"):
            return h[1:-1]
        return h

    @property
    def transport(self) -> str | None:
        """The ``transport`` uri-parameter, lower case, or None."""
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        """True when the loose-routing parameter is present (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def aor(self) -> str:
        """The address of record key ``scheme:user@host`` (host lower case, no port/params)."""
        return _uri_aor(self)

    # -- copying and text -----------------------------------------------------------------
    def replace(self, **changes: object) -> URI:
        """Return a copy with the given fields changed; it serializes from its fields."""
        fields: dict[str, object] = {
            "scheme": self.scheme,
            "user": self.user,
            "host": self.host,
            "port": self.port,
            "params": dict(self.params),
            "headers": dict(self.headers),
            "password": self.password,
            "opaque": self.opaque,
        }
        return URI(**_changed("URI", fields, changes))  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[object, ...]:
        args = (self.scheme, self.user, self.host, self.port, self.params, self.headers)
        kwargs = {"password": self.password, "opaque": self.opaque, "text": self._text}
        return (_rebuild, ("URI", args, kwargs))

    def __copy__(self) -> Any:
        return _clone(self)

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return _clone(self, memo)

    def _render(self) -> str:
        return _render_uri(self)

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self._render()
            self._text = text
        return text

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def _key(self) -> tuple[object, ...]:
        return (
            self.scheme,
            self.user,
            self.password,
            self.host.lower() if self.host else self.host,
            self.port,
            tuple(self.params.items()),
            tuple(self.headers.items()),
            self.opaque,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, URI):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    __slots__ = ("host", "params", "port", "protocol", "transport")

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
        return Via(**_changed("Via", fields, changes))  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[object, ...]:
        args = (self.transport, self.host, self.port, self.params)
        return (_rebuild, ("Via", args, {"protocol": self.protocol}))

    def __copy__(self) -> Any:
        return _clone(self)

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return _clone(self, memo)

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

    __slots__ = ("display", "params", "uri")

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
        return _q_value(self.params.get("q"))

    def replace(self, **changes: object) -> Address:
        fields: dict[str, object] = {
            "uri": self.uri,
            "display": self.display,
            "params": dict(self.params),
        }
        return Address(**_changed("Address", fields, changes))  # type: ignore[arg-type]

    def with_tag(self, tag: str) -> Address:
        params = dict(self.params)
        params["tag"] = tag
        return Address(self.uri, self.display, params)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, ("Address", (self.uri, self.display, self.params), {}))

    def __copy__(self) -> Any:
        return _clone(self)

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return _clone(self, memo)

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


class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number (0..2**32-1) and method."""

    __slots__ = ("method", "seq")

    seq: int
    method: str

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, ("CSeq", (self.seq, self.method), {}))

    def __copy__(self) -> Any:
        return _clone(self)

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return _clone(self, memo)

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
