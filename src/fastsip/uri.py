"""SIP, SIPS and tel URIs as values (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118).

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

__all__ = ("URI", "escape_user")

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


class URI:
    """A parsed URI. Treat as immutable; use :meth:`replace` to derive a changed copy."""

    # A compiled parser twin may leave ``params`` and ``headers`` unset when they are empty;
    # the descriptor it installs then makes the empty dict on first access
    # (``headers._install_lazy_fields``).

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
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        host = (self.host or "").lower()
        if self.user is None:
            return f"{self.scheme}:{host}"
        if self.host is None:
            return f"{self.scheme}:{self.user}"
        return f"{self.scheme}:{escape_user(self.user)}@{host}"

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
        for key, value in changes.items():
            if key not in fields:
                raise TypeError(f"URI has no field {key!r}")
            fields[key] = value
        return URI(**fields)  # type: ignore[arg-type]

    def _render(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(_escape(self.user or "", _PARAM_SAFE))
        else:
            if self.user is not None:
                parts.append(escape_user(self.user))
                if self.password is not None:
                    parts.append(":" + _escape(self.password, _PASSWORD_SAFE))
                parts.append("@")
            parts.append(self.host or "")
            if self.port is not None:
                parts.append(f":{self.port}")
        for name, value in self.params.items():
            parts.append(";" + _escape(name, _PARAM_SAFE))
            if value is not None:
                parts.append("=" + _escape(value, _PARAM_SAFE))
        if self.headers:
            parts.append(
                "?"
                + "&".join(
                    f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(parts)

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
