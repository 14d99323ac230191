# cython: language_level=3
# distutils: define_macros=CYTHON_VECTORCALL_TPNEW=0
"""The value classes of parsed headers and URIs: the Cython twin of ``_values_py``.

Same classes, same behaviour (``_values_py.py`` is the specification; the tests run against
both and compare them on random values). What the C types add is speed for the parser: they
are allocated from free lists and freed without the generic slot walk, their hot fields are
C members, and a value the C parser built may keep the checked text it came from (``_src``)
and build ``params`` / ``uri`` from it on first access, through the builder the parser
registers (``set_builder``): most messages never read a Contact's params or a To URI's
parameters. While ``params`` is not built, ``branch`` (Via) and ``tag`` (Address) come from
``_found``, which the parser filled while checking the text. A URI's empty ``params`` and
``headers`` dicts are made on first access.
"""

cimport cython
import sys as _sys
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject, PyObject_GenericGetAttr
from cpython.bytes cimport PyBytes_AS_STRING

from fastsip._values_py import _clone, _rebuild, _render_params, escape_user, quote  # no-cython-lint
from fastsip._values_py import _changed, _q_value, _render_uri, _uri_aor

__all__ = ("URI", "Address", "CSeq", "Via", "escape_user", "quote")

cdef lazy_fn _builder = NULL
cdef str S_SIP = _sys.intern("sip")
cdef str S_SIPS = _sys.intern("sips")
# attribute names __getattribute__ answers itself (compared by identity: names in code are
# interned; any other str with the same text takes the generic path, with the same result)
cdef str S_URI = _sys.intern("uri")
cdef str S_TAG = _sys.intern("tag")
cdef str S_DISPLAY = _sys.intern("display")
cdef str S_BRANCH = _sys.intern("branch")
cdef str S_HOST = _sys.intern("host")
cdef str S_PORT = _sys.intern("port")
cdef str S_TRANSPORT = _sys.intern("transport")
cdef str S_USER = _sys.intern("user")
cdef str S_SCHEME = _sys.intern("scheme")
cdef str S_SEQ = _sys.intern("seq")
cdef str S_METHOD = _sys.intern("method")


cdef int set_builder(lazy_fn fn) except -1:
    global _builder
    _builder = fn
    return 0


cdef inline object _build(object src, Py_ssize_t a, Py_ssize_t b, int field):
    if _builder is NULL:   # pragma: no cover - only the parser makes lazy values
        raise SystemError("fastsip._values_c: lazy value without a builder")
    return _builder(src, a, b, field)


cdef inline object _get(object d, str key):
    """d.get(key) for the params dicts (a dict subclass or any mapping goes through .get)."""
    cdef PyObject* r
    if type(d) is dict:
        r = PyDict_GetItem(d, key)
        return None if r is NULL else <object>r
    return d.get(key)


# ---------------------------------------------------------------------------------------------
cdef inline object _ascii(const char* p, Py_ssize_t a, Py_ssize_t b):
    """p[a:b] as a str: octets the parser checked as ASCII."""
    return ascii_str(<const unsigned char*>p + a, b - a)


cdef int _uri_fill(URI u) except -1:
    """Build the user, host and text of a URI read from a message's octets."""
    cdef const char* p = PyBytes_AS_STRING(u._src)
    u._user = None if u.sp[0] < 0 else _ascii(p, u.sp[0], u.sp[1])
    u._host = _ascii(p, u.sp[2], u.sp[3])
    u._txt = _ascii(p, u.sp[4], u.sp[5])
    u.lazy &= ~LZ_TEXT
    u._src = None
    return 0


cdef inline object _uri_user(URI u):
    if u.lazy & LZ_TEXT:
        _uri_fill(u)
    return u._user


cdef inline object _uri_host(URI u):
    if u.lazy & LZ_TEXT:
        _uri_fill(u)
    return u._host


cdef inline object _param_found(object found, unsigned char lazy, object params, str key):
    """Via.branch / Address.tag: what the parser found while params is not built."""
    return found if lazy & LZ_PARAMS else _get(params, key)


@cython.freelist(32)
cdef class URI:
    """A parsed URI. Treat as immutable; use :meth:`replace` to derive a changed copy."""

    def __init__(self, scheme, user=None, host=None, port=None, params=None, headers=None, *,
                 password=None, opaque=None, text=None):
        self.scheme = scheme.lower()
        self._user = user
        self.password = password
        self._host = host
        self.port = port
        self._params = {} if params is None else params
        self._headers = {} if headers is None else headers
        self.opaque = opaque
        self._txt = text
        self.lazy = 0

    def __getattribute__(self, name):
        # as Address.__getattribute__
        if type(self) is URI:
            if name is S_USER:
                return _uri_user(self)
            if name is S_HOST:
                return _uri_host(self)
            if name is S_PORT:
                return self.port
            if name is S_SCHEME:
                return self.scheme
        return PyObject_GenericGetAttr(self, name)

    @property
    def user(self):
        return _uri_user(self)

    @user.setter
    def user(self, value):
        if self.lazy & LZ_TEXT:
            _uri_fill(self)
        self._user = value

    @property
    def host(self):
        return _uri_host(self)

    @host.setter
    def host(self, value):
        if self.lazy & LZ_TEXT:
            _uri_fill(self)
        self._host = value

    @property
    def _text(self):
        if self.lazy & LZ_TEXT:
            _uri_fill(self)
        return self._txt

    @_text.setter
    def _text(self, value):
        if self.lazy & LZ_TEXT:
            _uri_fill(self)
        self._txt = value

    @property
    def params(self):
        if self.lazy & LZ_PARAMS:
            self._params = {}
            self.lazy &= ~LZ_PARAMS
        return self._params

    @params.setter
    def params(self, value):
        self._params = value
        self.lazy &= ~LZ_PARAMS

    @property
    def headers(self):
        if self.lazy & LZ_HEADERS:
            self._headers = {}
            self.lazy &= ~LZ_HEADERS
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = value
        self.lazy &= ~LZ_HEADERS

    # -- derived values -------------------------------------------------------------------
    @property
    def host_address(self):
        """The host without IPv6 brackets, e.g. for socket addresses."""
        h = self.host
        if h is not None and h.startswith("[") and h.endswith("]"):
            return h[1:len(h) - 1]
        return h

    @property
    def transport(self):
        """The ``transport`` uri-parameter, lower case, or None."""
        if self.lazy & LZ_PARAMS:
            return None
        t = _get(self._params, "transport")
        return t.lower() if t else None

    @property
    def lr(self):
        """True when the loose-routing parameter is present (RFC 3261 §19.1.1)."""
        if self.lazy & LZ_PARAMS:
            return False
        return "lr" in self._params

    @property
    def is_sip(self):
        return self.scheme in ("sip", "sips")

    @property
    def aor(self):
        """The address of record key ``scheme:user@host`` (host lower case, no port/params)."""
        return _uri_aor(self)

    # -- copying and text -----------------------------------------------------------------
    def replace(self, **changes):
        """Return a copy with the given fields changed; it serializes from its fields."""
        fields = {
            "scheme": self.scheme,
            "user": self.user,
            "host": self.host,
            "port": self.port,
            "params": dict(self.params),
            "headers": dict(self.headers),
            "password": self.password,
            "opaque": self.opaque,
        }
        return URI(**_changed("URI", fields, changes))

    def __reduce__(self):
        args = (self.scheme, self.user, self.host, self.port, self.params, self.headers)
        kwargs = {"password": self.password, "opaque": self.opaque, "text": self._text}
        return (_rebuild, ("URI", args, kwargs))

    def __copy__(self):
        return _clone(self)

    def __deepcopy__(self, memo):
        return _clone(self, memo)

    def _render(self):
        return _render_uri(self)

    def __str__(self):
        if self.lazy & LZ_TEXT:
            _uri_fill(self)
        text = self._txt
        if text is None:
            text = self._render()
            self._txt = text
        return text

    def __repr__(self):
        return f"URI({str(self)!r})"

    def _key(self):
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

    def __eq__(self, other):
        if not isinstance(other, URI):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other):
        if not isinstance(other, URI):
            return NotImplemented
        return self._key() != other._key()

    def __hash__(self):
        return hash(self._key())


# ---------------------------------------------------------------------------------------------
@cython.freelist(32)
cdef class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    def __init__(self, transport, host, port=None, params=None, *, protocol="SIP/2.0"):
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self._params = {} if params is None else params
        self.lazy = 0

    @property
    def params(self):
        if self.lazy & LZ_PARAMS:
            self._params = _build(self._src, self.srca, self.srcb, F_VIA_PARAMS)
            self.lazy &= ~LZ_PARAMS
            self._src = None
            self._found = None
        return self._params

    @params.setter
    def params(self, value):
        self._params = value
        self.lazy &= ~LZ_PARAMS
        self._src = None
        self._found = None

    def __getattribute__(self, name):
        # as Address.__getattribute__
        if type(self) is Via:
            if name is S_BRANCH:
                return _param_found(self._found, self.lazy, self._params, "branch")
            if name is S_HOST:
                return self.host
            if name is S_PORT:
                return self.port
            if name is S_TRANSPORT:
                return self.transport
        return PyObject_GenericGetAttr(self, name)

    @property
    def branch(self):
        return _param_found(self._found, self.lazy, self._params, "branch")

    @property
    def received(self):
        return _get(self.params, "received")

    @property
    def maddr(self):
        return _get(self.params, "maddr")

    @property
    def ttl(self):
        t = _get(self.params, "ttl")
        return int(t) if t is not None and t.isdigit() else None

    @property
    def has_rport(self):
        """True when the rport parameter is present, with or without a value (RFC 3581)."""
        return "rport" in self.params

    @property
    def rport(self):
        """The rport value as an int (filled in by a server), None when absent or empty."""
        r = _get(self.params, "rport")
        return int(r) if r is not None and r.isdigit() else None

    @property
    def sent_by(self):
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def host_address(self):
        h = self.host
        return h[1:len(h) - 1] if h.startswith("[") and h.endswith("]") else h

    @property
    def has_magic_cookie(self):
        """True for RFC 3261 branches (``z9hG4bK`` prefix, §8.1.1.7)."""
        b = self.branch
        return b is not None and b.startswith("z9hG4bK")

    def replace(self, **changes):
        fields = {
            "transport": self.transport,
            "host": self.host,
            "port": self.port,
            "params": dict(self.params),
            "protocol": self.protocol,
        }
        return Via(**_changed("Via", fields, changes))

    def __reduce__(self):
        args = (self.transport, self.host, self.port, self.params)
        return (_rebuild, ("Via", args, {"protocol": self.protocol}))

    def __copy__(self):
        return _clone(self)

    def __deepcopy__(self, memo):
        return _clone(self, memo)

    def __str__(self):
        return f"{self.protocol}/{self.transport} {self.sent_by}{_render_params(self.params)}"

    def __repr__(self):
        return f"Via({str(self)!r})"

    def _key(self):
        return (self.protocol, self.transport, self.host, self.port, tuple(self.params.items()))

    def __eq__(self, other):
        if not isinstance(other, Via):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other):
        if not isinstance(other, Via):
            return NotImplemented
        return self._key() != other._key()

    def __hash__(self):
        return hash(self._key())


# ---------------------------------------------------------------------------------------------
cdef inline void _addr_built(Address a) noexcept:
    """Drop the source text once nothing is left to build from it."""
    if not (a.lazy & (LZ_URI | LZ_PARAMS)):
        a._src = None
        a._found = None


cdef object _addr_uri(Address self):
    cdef URI u
    if self.lazy & LZ_URI:
        if self.lazy & LZ_USPANS:   # checked by the parser: strings made on first use
            u = URI.__new__(URI)
            u.scheme = S_SIPS if self._usips else S_SIP
            u.port = self._uport
            u._src = self._src
            u.sp[:] = self.usp
            u.lazy = LZ_TEXT | LZ_PARAMS | LZ_HEADERS
            self._uri = u
            self._uport = None
        else:
            self._uri = _build(self._src, self.srca, self.srcb, F_ADDR_URI)
        self.lazy &= ~(LZ_URI | LZ_USPANS)
        _addr_built(self)
    return self._uri


@cython.freelist(64)
cdef class Address:
    """A name-addr or addr-spec with header params (From, To, Contact, Route...)."""

    def __init__(self, uri, display=None, params=None):
        self._uri = uri
        self.display = display
        self._params = {} if params is None else params
        self.lazy = 0

    def __getattribute__(self, name):
        # The hot reads without the generic look-up (type dict, descriptor call): what
        # object.__getattribute__ returns for them, faster. Every other name, and every name
        # of a subclass (which may override it), goes there.
        if type(self) is Address:
            if name is S_URI:
                return _addr_uri(self)
            if name is S_TAG:
                return _param_found(self._found, self.lazy, self._params, "tag")
            if name is S_DISPLAY:
                return self.display
        return PyObject_GenericGetAttr(self, name)

    @property
    def uri(self):
        return _addr_uri(self)

    @uri.setter
    def uri(self, value):
        self._uri = value
        self._uport = None
        self.lazy &= ~(LZ_URI | LZ_USPANS)
        _addr_built(self)

    @property
    def params(self):
        if self.lazy & LZ_PARAMS:
            self._params = _build(self._src, self.srca, self.srcb, F_ADDR_PARAMS)
            self.lazy &= ~LZ_PARAMS
            _addr_built(self)
        return self._params

    @params.setter
    def params(self, value):
        self._params = value
        self.lazy &= ~LZ_PARAMS
        _addr_built(self)

    @property
    def tag(self):
        return _param_found(self._found, self.lazy, self._params, "tag")

    @property
    def expires(self):
        """Contact ``expires`` param as int (None when absent or not a number)."""
        e = _get(self.params, "expires")
        return int(e) if e is not None and e.isdigit() else None

    @property
    def q(self):
        """Contact ``q`` param (RFC 3261 §20.10), None when absent or malformed."""
        return _q_value(_get(self.params, "q"))

    def replace(self, **changes):
        fields = {
            "uri": self.uri,
            "display": self.display,
            "params": dict(self.params),
        }
        return Address(**_changed("Address", fields, changes))

    def with_tag(self, tag):
        params = dict(self.params)
        params["tag"] = tag
        return Address(self.uri, self.display, params)

    def __reduce__(self):
        return (_rebuild, ("Address", (self.uri, self.display, self.params), {}))

    def __copy__(self):
        return _clone(self)

    def __deepcopy__(self, memo):
        return _clone(self, memo)

    def __str__(self):
        if self.display is not None:
            head = f"{quote(self.display)} <{self.uri}>"
        else:
            head = f"<{self.uri}>"
        return head + _render_params(self.params)

    def __repr__(self):
        return f"Address({str(self)!r})"

    def _key(self):
        return (self.display, self.uri, tuple(self.params.items()))

    def __eq__(self, other):
        if not isinstance(other, Address):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other):
        if not isinstance(other, Address):
            return NotImplemented
        return self._key() != other._key()

    def __hash__(self):
        return hash(self._key())


# ---------------------------------------------------------------------------------------------
@cython.freelist(32)
cdef class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number (0..2**32-1) and method."""

    def __init__(self, seq, method):
        self.seq = seq
        self.method = method

    def __getattribute__(self, name):
        # as Address.__getattribute__
        if type(self) is CSeq:
            if name is S_SEQ:
                return self.seq
            if name is S_METHOD:
                return self.method
        return PyObject_GenericGetAttr(self, name)

    def __reduce__(self):
        return (_rebuild, ("CSeq", (self.seq, self.method), {}))

    def __copy__(self):
        return _clone(self)

    def __deepcopy__(self, memo):
        return _clone(self, memo)

    def __str__(self):
        return f"{self.seq} {self.method}"

    def __repr__(self):
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other):
        if not isinstance(other, CSeq):
            return NotImplemented
        return (self.seq, self.method) == (other.seq, other.method)

    def __ne__(self, other):
        if not isinstance(other, CSeq):
            return NotImplemented
        return (self.seq, self.method) != (other.seq, other.method)

    def __hash__(self):
        return hash((self.seq, self.method))
