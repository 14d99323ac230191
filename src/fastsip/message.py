"""SIP requests and responses: ordered raw headers, typed lazy accessors, serialization.

Theory of operation
-------------------
A parser twin builds a :class:`Request` or :class:`Response` from wire bytes. It stores:

* the start-line fields, the body bytes and the exact wire bytes (``_raw``);
* every header as a tuple ``(key, name, value)`` in wire order, where ``key`` is
  :func:`~fastsip.headers.header_key` of the name, ``name`` is the name as written and ``value``
  is the unfolded value (each folding ``CRLF 1*WSP`` and the whitespace around it becomes one SP,
  RFC 3261 §7.3.1) with leading/trailing whitespace removed (the C twin keeps offsets into
  the bytes instead and builds this list on the first read of ``_headers``: see
  :func:`_install_lazy_headers`);
* ``_p``: the twin module whose value parsers (``parse_via``, ``parse_address``...) the lazy
  accessors call, so a message parsed by the C twin also parses its headers in C.

Invariants:

1. While ``_raw`` is not None, ``bytes(message) == _raw``: an unmodified message round-trips
   byte for byte. Every mutation sets ``_raw`` to None; serialization then writes the start line
   and each header as ``name: value``.
2. Typed accessors parse on first use and cache the result per header key; a mutation of a
   header drops that key's cached value. Accessors raise :class:`~fastsip.errors.ParseError`
   when the header is malformed; they never raise anything else.
3. :meth:`Message.validate` checks what a server needs before it acts on a message (RFC 3261
   §8.2, §16.3): mandatory headers present and well-formed, single-value headers not repeated,
   CSeq method equal to the request method, scalars in range, a usable Request-URI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from enum import IntEnum
from types import ModuleType
from typing import Any

from .errors import ParseError
from .headers import SINGLE_VALUE_HEADERS, Address, Auth, CSeq, Via, display_name, header_key
from .limits import DEFAULT_LIMITS, Limits
from .uri import URI

__all__ = (
    "REASON_PHRASES",
    "Kind",
    "Message",
    "Request",
    "Response",
    "error_response_for",
    "make_ack",
    "make_cancel",
    "make_response",
)

Header = tuple[str, str, str]


class Kind(IntEnum):
    """What :func:`fastsip.parser.classify` says a datagram or stream chunk is."""

    GARBAGE = 0
    SIP = 1
    STUN = 2
    KEEPALIVE = 3


#: Default reason phrases (RFC 3261 §21 and later RFCs).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_MISSING: Any = object()
_MAX_U32 = (1 << 32) - 1
_DATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"
)


def _default_parsers() -> ModuleType:
    from . import parser  # late: parser imports this module

    return parser._impl  # type: ignore[attr-defined]


def _uint(text: str, name: str, maximum: int) -> int:
    """Parse a non-negative decimal scalar, bounded (RFC 4475 §3.1.2.4: no overflow)."""
    if len(text) <= 10 and text.isdigit() and text.isascii():  # the common case, same result
        value = int(text)
        if value > maximum:
            raise ParseError(f"{name} out of range")
        return value
    t = text.strip()
    if not t or not t.isdigit() or not t.isascii():
        raise ParseError(f"bad {name} value")
    if len(t) > 10 and len(t.lstrip("0")) > 10:
        raise ParseError(f"{name} out of range")
    value = int(t)
    if value > maximum:
        raise ParseError(f"{name} out of range")
    return value


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    __slots__ = ("_cache", "_headers", "_limits", "_p", "_raw", "body", "version")

    _headers: list[Header]
    _cache: dict[str, Any]
    _raw: bytes | None
    _p: ModuleType | None
    _limits: Limits
    body: bytes
    version: str

    def __init__(
        self,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        version: str = "SIP/2.0",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._headers = [(header_key(n), n, v) for n, v in headers]
        self._cache = {}
        self._raw = None
        self._p = None
        self._limits = limits
        self.body = bytes(body)
        self.version = version

    # -- the value-parser twin ------------------------------------------------------------
    @property
    def _parsers(self) -> ModuleType:
        p = self._p
        if p is None:
            p = self._p = _default_parsers()
        return p

    # -- raw header access ----------------------------------------------------------------
    @property
    def headers(self) -> list[tuple[str, str]]:
        """A copy of all headers as ``(name, value)`` in order."""
        return [(n, v) for _, n, v in self._headers]

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of the first header with this name (any case/compact form)."""
        key = header_key(name)
        for k, _, v in self._headers:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Return the values of every header line with this name, in order."""
        key = header_key(name)
        return [v for k, _, v in self._headers if k == key]

    def count(self, name: str) -> int:
        key = header_key(name)
        return sum(1 for k, _, _ in self._headers if k == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(k == key for k, _, _ in self._headers)

    def _touch(self, key: str) -> None:
        self._raw = None
        cache = self._cache
        cache.pop(key, None)
        if key == "via":
            cache.pop("@via", None)

    def set(self, name: str, value: object) -> None:
        """Replace every header with this name by one header (at the first one's place)."""
        key = header_key(name)
        text = str(value)
        _check_value(text)
        hs = self._headers
        idx = next((i for i, h in enumerate(hs) if h[0] == key), None)
        self._headers = [h for h in hs if h[0] != key]
        entry = (key, name if name != key else display_name(key), text)
        if idx is None:
            self._headers.append(entry)
        else:
            self._headers.insert(idx, entry)
        self._touch(key)

    def add(self, name: str, value: object, *, first: bool = False) -> None:
        """Add a header line; ``first=True`` puts it before the existing ones of that name."""
        key = header_key(name)
        text = str(value)
        _check_value(text)
        entry = (key, name if name != key else display_name(key), text)
        hs = self._headers
        if first:
            idx = next((i for i, h in enumerate(hs) if h[0] == key), None)
            if idx is not None:
                hs.insert(idx, entry)
                self._touch(key)
                return
        hs.append(entry)
        self._touch(key)

    def remove(self, name: str) -> int:
        """Remove every header with this name; return how many lines were removed."""
        key = header_key(name)
        before = len(self._headers)
        self._headers = [h for h in self._headers if h[0] != key]
        removed = before - len(self._headers)
        if removed:
            self._touch(key)
        return removed

    def push_via(self, via: Via | str) -> None:
        """Add a Via value on top (a proxy or B2BUA sending the request on)."""
        self.add("Via", via, first=True)

    def pop_via(self) -> Via | None:
        """Remove the top Via value (a proxy forwarding a response) and return it."""
        vias = self.vias
        if not vias:
            return None
        top = vias[0]
        hs = self._headers
        for i, (k, n, v) in enumerate(hs):
            if k == "via":
                line_vias = self._parsers.parse_via(v, self._limits.max_via)
                if len(line_vias) > 1:
                    hs[i] = (k, n, ", ".join(str(x) for x in line_vias[1:]))
                else:
                    del hs[i]
                break
        self._touch("via")
        return top

    def replace_top_via(self, via: Via | str) -> None:
        """Replace the top Via value (e.g. to add ``received``/``rport``, RFC 3581 §4)."""
        hs = self._headers
        for i, (k, n, v) in enumerate(hs):
            if k == "via":
                if "," not in v and isinstance(via, Via):
                    # fast path (one value on the line): keep the parsed list, swap the top
                    hs[i] = (k, n, str(via))
                    self._raw = None
                    cache = self._cache
                    cached = cache.get("via")
                    if cached:
                        cached[0] = via
                    cache["@via"] = via
                    return
                line_vias = self._parsers.parse_via(v, self._limits.max_via)
                rest = ", ".join(str(x) for x in line_vias[1:])
                hs[i] = (k, n, f"{via}, {rest}" if rest else str(via))
                break
        else:
            raise ValueError("message has no Via")
        self._touch("via")

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Set the body, Content-Length and (when given) Content-Type."""
        self.body = bytes(body)
        if content_type is not None:
            self.set("Content-Type", content_type)
        elif not body:
            self.remove("Content-Type")
        self.set("Content-Length", len(self.body))

    # -- typed accessors ------------------------------------------------------------------
    def _single(self, key: str) -> str | None:
        for k, _, v in self._headers:
            if k == key:
                return v
        return None

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first (RFC 3261 §20.42)."""
        cache = self._cache
        cached = cache.get("via", _MISSING)
        if cached is _MISSING:
            p = self._parsers
            limit = self._limits.max_via
            cached = []
            for k, _, v in self._headers:
                if k == "via":
                    cached.extend(p.parse_via(v, limit))
                    if len(cached) > limit:
                        raise ParseError("too many Via values", status_hint=513)
            top = cache.get("@via")
            if top is not None and cached:
                cached[0] = top  # the object ``via`` already returned (equal value)
            cache["via"] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def via(self) -> Via | None:
        """The top Via value, or None (later Via lines are not parsed: see :attr:`vias`)."""
        cache = self._cache
        cached = cache.get("via", _MISSING)
        if cached is not _MISSING:
            return cached[0] if cached else None
        top = cache.get("@via", _MISSING)
        if top is _MISSING:
            top = None
            for k, _, v in self._headers:
                if k == "via":
                    top = self._parsers.parse_via(v, self._limits.max_via)[0]
                    break
            cache["@via"] = top
        return top  # type: ignore[no-any-return]

    def _address(self, key: str) -> Address | None:
        cached = self._cache.get(key, _MISSING)
        if cached is _MISSING:
            value = self._single(key)
            cached = None if value is None else self._parsers.parse_address(value)
            self._cache[key] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def from_(self) -> Address | None:
        """The From value (RFC 3261 §20.20)."""
        return self._address("from")

    @property
    def to(self) -> Address | None:
        """The To value (RFC 3261 §20.39)."""
        return self._address("to")

    @property
    def call_id(self) -> str | None:
        return self._single("call-id")

    @property
    def cseq(self) -> CSeq | None:
        cached = self._cache.get("cseq", _MISSING)
        if cached is _MISSING:
            value = self._single("cseq")
            cached = None if value is None else self._parsers.parse_cseq(value)
            self._cache["cseq"] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def max_forwards(self) -> int | None:
        value = self._single("max-forwards")
        return None if value is None else _uint(value, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        value = self._single("expires")
        return None if value is None else _uint(value, "Expires", _MAX_U32)

    @property
    def content_length(self) -> int | None:
        value = self._single("content-length")
        return None if value is None else _uint(value, "Content-Length", _MAX_U32)

    @property
    def content_type(self) -> str | None:
        """The media type, lower case, without parameters (``application/sdp``)."""
        value = self._single("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def _address_list(self, key: str) -> list[Address]:
        cached = self._cache.get(key, _MISSING)
        if cached is _MISSING:
            p = self._parsers
            cached = []
            for k, _, v in self._headers:
                if k == key:
                    cached.extend(p.parse_address_list(v))
            self._cache[key] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (RFC 3261 §10.2.2)."""
        return any(k == "contact" and v == "*" for k, _, v in self._headers)

    @property
    def contacts(self) -> list[Address]:
        """Every Contact value (empty for ``Contact: *``); ``*`` mixed with others is an error."""
        cached = self._cache.get("contact", _MISSING)
        if cached is _MISSING:
            p = self._parsers
            values = [v for k, _, v in self._headers if k == "contact"]
            if "*" in values:
                if len(values) > 1:
                    raise ParseError("Contact: * must be the only Contact")
                cached = []
            else:
                cached = []
                for v in values:
                    cached.extend(p.parse_address_list(v))
            self._cache["contact"] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def contact(self) -> Address | None:
        c = self.contacts
        return c[0] if c else None

    @property
    def routes(self) -> list[Address]:
        return self._address_list("route")

    @property
    def record_routes(self) -> list[Address]:
        return self._address_list("record-route")

    @property
    def paths(self) -> list[Address]:
        return self._address_list("path")

    def _auth(self, key: str) -> list[Auth]:
        cached = self._cache.get(key, _MISSING)
        if cached is _MISSING:
            p = self._parsers
            cached = [p.parse_auth(v) for k, _, v in self._headers if k == key]
            self._cache[key] = cached
        return cached  # type: ignore[no-any-return]

    @property
    def authorization(self) -> list[Auth]:
        return self._auth("authorization")

    @property
    def proxy_authorization(self) -> list[Auth]:
        return self._auth("proxy-authorization")

    @property
    def www_authenticate(self) -> list[Auth]:
        return self._auth("www-authenticate")

    @property
    def proxy_authenticate(self) -> list[Auth]:
        return self._auth("proxy-authenticate")

    def _tokens(self, key: str) -> list[str]:
        out: list[str] = []
        for k, _, v in self._headers:
            if k == key:
                out.extend(t.strip() for t in v.split(",") if t.strip())
        return out

    @property
    def supported(self) -> list[str]:
        return self._tokens("supported")

    @property
    def require(self) -> list[str]:
        return self._tokens("require")

    @property
    def proxy_require(self) -> list[str]:
        return self._tokens("proxy-require")

    @property
    def allow(self) -> list[str]:
        return self._tokens("allow")

    @property
    def user_agent(self) -> str | None:
        return self._single("user-agent")

    @property
    def server(self) -> str | None:
        return self._single("server")

    # -- checks ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Check what a server needs before acting (RFC 3261 §8.2, §16.3; RFC 4475).

        Raises:
            ParseError: with ``status_hint`` 400 (or 513 for limits) naming the problem.
        """
        counts: dict[str, int] = {}
        for k, _, _ in self._headers:
            if k in SINGLE_VALUE_HEADERS:
                counts[k] = counts.get(k, 0) + 1
        for key, n in counts.items():
            if n > 1:
                raise ParseError(f"multiple {display_name(key)} headers")
        for key in ("call-id", "from", "to", "cseq"):
            if key not in counts:
                raise ParseError(f"missing {display_name(key)} header")
        if not self.vias:
            raise ParseError("missing Via header")
        if not (self.call_id or "").strip():
            raise ParseError("empty Call-ID")
        self.from_
        self.to
        cseq = self.cseq
        self.max_forwards
        self.expires
        self.contacts
        for k, _, v in self._headers:
            if k == "date" and not _DATE_RE.match(v):
                raise ParseError("bad Date header")
        self._validate_start(cseq)

    def _validate_start(self, cseq: CSeq | None) -> None:
        raise NotImplementedError

    # -- serialization --------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        raw = self._raw
        if raw is not None:
            return raw
        parts = [self._start_line()]
        for _, n, v in self._headers:
            parts.append(f"{n}: {v}")
        parts.append("\r\n")
        return "\r\n".join(parts).encode("utf-8", "surrogateescape") + self.body

    @property
    def modified(self) -> bool:
        """False while the message still equals the bytes it was parsed from."""
        return self._raw is None


#: Accessors a compiled parser twin may take over (see :func:`_install_fast_accessors`).
_FAST_ACCESSORS = (
    "via",
    "vias",
    "from_",
    "to",
    "call_id",
    "cseq",
    "contacts",
    "expires",
    "max_forwards",
    "content_length",
    "supported",
    "require",
    "proxy_require",
    "contact_star",
    "authorization",
    "proxy_authorization",
    "www_authenticate",
    "proxy_authenticate",
    "user_agent",
    "server",
    "paths",
    "routes",
    "record_routes",
)
#: Methods a compiled parser twin may take over (installed as they are, not as properties).
_FAST_METHODS = ("replace_top_via",)
_PURE: dict[str, Callable[..., Any]] = {}


def _install_fast_accessors(
    getters: dict[str, Any],
    serialize: Callable[[Message], bytes],
    fast_response: Callable[..., Response | None],
    validate: Callable[[Message], None] | None = None,
) -> dict[str, Callable[[Message], Any]]:
    """Let a compiled parser twin read and write the messages it parsed in C.

    The Cython twin calls this once at import with C functions for the hot accessors
    (``_FAST_ACCESSORS``), for ``bytes(message)`` and for :func:`make_response`. Each C
    function handles a message whose
    ``_p`` is that twin and defers to the pure definition above for any other message, so a
    message parsed by the pure twin still runs the pure code, which stays the specification
    (``tests/fastsip`` compares the two). A property whose getter is a C function costs about a
    third of a Python-level property, and the C bodies skip the interpreter in the loops over
    headers.

    Args:
        getters: accessor name -> C function taking the message, or a read-only descriptor
            (not callable) whose ``__get__`` calls one: it is installed as it is; a name in
            ``_FAST_METHODS`` -> the compiled method, installed as it is.
        serialize: the C ``__bytes__``.
        fast_response: called by :func:`make_response` with its arguments (positionally); returns
            the response, or None to let the pure code build it (any case it does not handle,
            errors included).
        validate: the C :meth:`Message.validate` (the same checks, in the same order, through the
            C accessors), or None.

    Returns:
        The pure functions the C ones defer to: each accessor name, ``"__bytes__"`` and
        ``"validate"``.
    """
    global _fast_response
    if not _PURE:
        for name in _FAST_ACCESSORS:
            _PURE[name] = Message.__dict__[name].fget
        for name in _FAST_METHODS:
            _PURE[name] = Message.__dict__[name]
        _PURE["__bytes__"] = Message.__bytes__
        _PURE["validate"] = Message.validate
    for name, fn in getters.items():
        if name in _FAST_METHODS:
            setattr(Message, name, fn)  # a compiled function binds as a method
            continue
        if name not in _FAST_ACCESSORS:
            raise ValueError(f"not a fast accessor: {name}")
        if callable(fn):
            setattr(Message, name, property(fn, doc=_PURE[name].__doc__))
        else:  # already a descriptor (a C type with ``__get__``)
            setattr(Message, name, fn)
    Message.__bytes__ = serialize  # type: ignore[method-assign,assignment]
    if validate is not None:
        Message.validate = validate  # type: ignore[method-assign,assignment]
    _fast_response = fast_response
    return dict(_PURE)


def _install_lazy_headers(descriptor: object) -> object:
    """Let a compiled parser twin keep a message's headers as offsets until they are read.

    The Cython twin calls this once at import with a descriptor that reads and writes the
    ``_headers`` slot like the slot's own descriptor, except that, when the slot holds its
    private offsets object instead of a list, the first read builds the list (the one the pure
    twin builds for the same bytes) and stores it. Pure code, which always goes through the
    attribute, therefore always sees a list; the C accessors read the offsets directly.

    Args:
        descriptor: the replacement for ``Message._headers``.

    Returns:
        The descriptor replaced (the slot's member descriptor).
    """
    replaced = Message.__dict__["_headers"]
    setattr(Message, "_headers", descriptor)  # noqa: B010 (a slot name: mypy refuses the assignment)
    return replaced


def _check_value(text: str) -> None:
    if "\r" in text or "\n" in text:
        raise ValueError("header values must not contain CR or LF")


class Request(Message):
    """A SIP request. ``uri`` is the parsed Request-URI; ``uri_text`` the text as written."""

    __slots__ = ("method", "uri_text")

    method: str
    uri_text: str

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        version: str = "SIP/2.0",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(headers, body, version=version, limits=limits)
        self.method = method
        self.uri_text = str(uri)
        if isinstance(uri, URI):
            self._cache["@uri"] = uri

    @property
    def uri(self) -> URI:
        """The Request-URI, parsed on first use (ParseError when malformed)."""
        cached = self._cache.get("@uri", _MISSING)
        if cached is _MISSING:
            cached = self._parsers.parse_uri(self.uri_text)
            self._cache["@uri"] = cached
        return cached  # type: ignore[no-any-return]

    @uri.setter
    def uri(self, value: URI | str) -> None:
        self.uri_text = str(value)
        self._raw = None
        if isinstance(value, URI):
            self._cache["@uri"] = value
        else:
            self._cache.pop("@uri", None)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri_text} {self.version}"

    def _validate_start(self, cseq: CSeq | None) -> None:
        uri = self.uri
        if uri.headers and uri.is_sip:
            # RFC 4475 §3.1.2.11: headers in a Request-URI must never become real headers.
            raise ParseError("headers not allowed in Request-URI")
        if cseq is not None and cseq.method != self.method:
            raise ParseError("CSeq method does not match request method")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    status: int
    reason: str

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        version: str = "SIP/2.0",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not 100 <= status <= 699:
            raise ValueError("status must be 100..699")
        super().__init__(headers, body, version=version, limits=limits)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def _validate_start(self, cseq: CSeq | None) -> None:
        return None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


_RESPONSE_COPY = frozenset(("via", "from", "to", "call-id", "cseq"))


#: make_response's C version, installed by the C twin (None: pure only).
_fast_response: Callable[..., Response | None] | None = None


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build a response to ``request`` (RFC 3261 §8.2.6).

    Copies every Via (in order), From, To, Call-ID and CSeq as written; adds ``;tag=to_tag`` to
    To when given and To has no tag yet (never on 100); then ``headers``; then Content-Type (when
    ``content_type`` is given) and a correct Content-Length.

    Args:
        request: the request answered.
        status: 100..699.
        reason: reason phrase; the standard phrase when None.
        to_tag: the UAS tag for To.
        headers: extra ``(name, value)`` headers.
        body: the body bytes.
        content_type: Content-Type of the body.

    Returns:
        The response, sharing the request's value-parser twin and limits.
    """
    fast = _fast_response
    if fast is not None:
        made = fast(request, status, reason, to_tag, headers, body, content_type)
        if made is not None:
            return made
    if not 100 <= status <= 699:
        raise ValueError("status must be 100..699")
    # Built slot by slot (as Response.__init__ would) without its generic header handling:
    # this runs for every request a server answers.
    resp = Response.__new__(Response)
    resp.status = status
    resp.reason = REASON_PHRASES.get(status, "") if reason is None else reason
    resp.version = "SIP/2.0"
    resp._cache = {}
    resp._raw = None
    resp._p = request._p
    resp._limits = request._limits
    copy = _RESPONSE_COPY
    out = [h for h in request._headers if h[0] in copy]
    resp._headers = out
    if to_tag is not None and status > 100:
        tagged: str | None = None
        for i, h in enumerate(out):
            if h[0] == "to":
                if tagged is None:
                    try:
                        to = request.to
                    except ParseError:
                        to = None
                    if to is None or to.tag is not None:
                        break
                    tagged = f";tag={to_tag}"
                out[i] = (h[0], h[1], h[2] + tagged)
    for n, v in headers:
        _check_value(v)
        out.append((header_key(n), n, v))
    if content_type is not None:
        out.append(("content-type", "Content-Type", content_type))
    if type(body) is not bytes:  # bytes(b) is b itself, but costs a special-method lookup
        body = bytes(body)
    out.append(("content-length", "Content-Length", str(len(body))))
    resp.body = body
    return resp


def _first_header(msg: Message, key: str) -> Header | None:
    for h in msg._headers:
        if h[0] == key:
            return h
    return None


def _request_like(invite: Request, method: str, to_value: Header | None) -> Request:
    """Common part of ACK-for-non-2xx and CANCEL (RFC 3261 §17.1.1.3, §9.1)."""
    req = Request(method, invite.uri_text, limits=invite._limits)
    req._p = invite._p
    if "@uri" in invite._cache:
        req._cache["@uri"] = invite._cache["@uri"]
    out = req._headers
    # Exactly one Via: the top Via of the request being acknowledged/cancelled (same branch).
    top = invite.via
    if top is not None:
        out.append(("via", "Via", str(top)))
    for h in invite._headers:
        if h[0] == "route":
            out.append(h)
    out.append(("max-forwards", "Max-Forwards", "70"))
    f = _first_header(invite, "from")
    if f is not None:
        out.append(f)
    t = to_value if to_value is not None else _first_header(invite, "to")
    if t is not None:
        out.append(t)
    c = _first_header(invite, "call-id")
    if c is not None:
        out.append(c)
    cseq = invite.cseq
    if cseq is not None:
        out.append(("cseq", "CSeq", f"{cseq.seq} {method}"))
    out.append(("content-length", "Content-Length", "0"))
    return req


def make_ack(invite: Request, response: Response) -> Request:
    """Build the ACK a client INVITE transaction sends for a 300-699 response (§17.1.1.3).

    Request-URI, Call-ID, From, Route and the CSeq number come from the INVITE, the one Via is
    the INVITE's top Via (same branch), and To is the response's To (with its tag).
    """
    return _request_like(invite, "ACK", _first_header(response, "to"))


def make_cancel(invite: Request) -> Request:
    """Build a CANCEL for a pending INVITE (RFC 3261 §9.1): same branch, To without new tag."""
    return _request_like(invite, "CANCEL", None)


_SALVAGE_KEYS = ("via", "from", "to", "call-id", "cseq")


def error_response_for(data: bytes, error: ParseError) -> tuple[bytes, Via] | None:
    """A stateless error response for a request that failed to parse (RFC 3261 §8.2 / RFC 4475).

    Salvages Via, From, To, Call-ID and CSeq lines from the raw bytes and answers with the error's
    ``status_hint`` and a reason phrase naming the problem. Used on UDP only, where there is no
    connection to close.

    Args:
        data: the datagram that failed.
        error: what the parser raised.

    Returns:
        ``(response bytes, top Via)`` so the caller can route the response (§18.2.2), or None
        when there is nothing usable: a response, an ACK, or no parseable Via.
    """
    from .parser import parse_via  # late: parser imports this module

    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return None
    start = lines[0].split(b" ")
    if not start[0] or start[0][:4].upper() == b"SIP/" or start[0] == b"ACK" or len(start) < 2:
        return None
    found: list[tuple[str, str]] = []
    current: list[str] | None = None
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current[1] += " " + line.strip(b" \t").decode("utf-8", "surrogateescape")
            continue
        current = None
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            text_name = name.strip(b" \t").decode("ascii")
        except UnicodeDecodeError:
            continue
        key = header_key(text_name)
        if key in _SALVAGE_KEYS:
            current = [key, value.strip(b" \t").decode("utf-8", "surrogateescape")]
            found.append(current)  # type: ignore[arg-type]
    top: Via | None = None
    for fkey, fval in found:
        if fkey == "via":
            try:
                top = parse_via(fval)[0]
            except ParseError:
                return None
            break
    if top is None:
        return None
    status = error.status_hint if 300 <= error.status_hint <= 699 else 400
    phrase = REASON_PHRASES.get(status, "Bad Request")
    reason = "".join(ch if " " <= ch != "\x7f" else " " for ch in error.reason)[:120]
    out = [f"SIP/2.0 {status} {phrase} ({reason})"]
    found.sort(key=lambda kv: kv[0] != "via")  # stable: Vias first, in order
    for fkey, fval in found:
        if "\r" in fval or "\n" in fval:
            continue
        out.append(f"{display_name(fkey)}: {fval}")
    out.append("Content-Length: 0\r\n\r\n")
    return "\r\n".join(out).encode("utf-8", "surrogateescape"), top
