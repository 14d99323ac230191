# cython: language_level=3, annotation_typing=False
"""Cython SIP parser: the fast twin of :mod:`fastsip._parser_py`, which is the specification.

Theory of operation
-------------------
Everything observable is identical to the pure twin: the same public functions with the same
(keyword-only) options and defaults, the same shared result classes (``fastsip.message``,
``fastsip.headers``, ``fastsip.uri``), equal field values, and on bad input a
:class:`~fastsip.errors.ParseError` with the same reason, ``status_hint`` and offset, raised at
the same point of the same checks (RFC 3261 §7, §18.3, §25.1; RFC 4475; RFC 5118; RFC 5626
§4.4.1). Read ``_parser_py.py`` for *what* each step does; comments here say *why* a step is C.

What is different is only how the work is done:

* Framing scans ``const unsigned char*`` buffers: ``memchr`` finds line ends, one 256-entry table
  classifies token/host/param... characters, and well-known header names are mapped to
  pre-built interned keys (and the name as written to a shared constant when it is the common
  spelling) through a small open-addressing table, without allocating.
* Value parsers read ``str`` objects through ``PyUnicode_KIND``/``PyUnicode_DATA`` with index
  arithmetic instead of slicing, splitting and partitioning, so only the result strings are
  allocated. Rare paths (``%HH`` escapes, quoted-pairs, folded lines, non-ASCII lower-casing)
  call the same Python operations the pure twin uses, which keeps their corner cases (and
  exception types) identical.
* The values (``URI``, ``Via``, ``Address``, ``CSeq``) are the C types of ``_values_c``
  (cimported: taken from free lists and filled field by field); messages are allocated with the
  type's allocator and their ``__slots__`` written at their C offsets (checked at import; falls
  back to ``setattr`` when a class is not a plain slotted class), so building one costs a few
  nanoseconds per field instead of a Python-level ``__init__`` call with keyword arguments.
* The hot message accessors (``via``, ``from_``, ``cseq``...), ``bytes(message)`` and
  ``make_response`` have C versions, installed into the shared ``Message`` class at import
  (``message._install_fast_accessors``); they serve the messages this twin parsed and hand any
  other message to the pure definitions, so the pure code stays the specification.
  ``Message.validate`` has a C version installed the same way.
* A parsed message keeps its header fields as offsets into its bytes (``_Head``) instead of
  the ``(key, name, value)`` list; the C accessors read them directly, and the list is built
  on the first Python-level read of ``_headers`` (``_HeadersSlot``, installed into Message by
  ``message._install_lazy_headers``), so pure code, mss and the serializer see what the pure
  twin builds. Header *syntax* is still checked at parse time, as in the pure twin.
* ``parse_via`` and the address parsers check the whole value (same errors, same order) but
  leave ``Via.params``, ``Address.uri`` and ``Address.params`` to be built from the value's
  text on first access (``_values_c`` calls this module's ``_lazy_value``), and note
  ``Via.branch`` / ``Address.tag`` while checking, so reading them builds no dict.

Invariants: every index is checked against its buffer's length before it is read; all work is
bounded by the input length and the :class:`~fastsip.limits.Limits`.
"""

from libc.string cimport memchr, memcmp, memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF, Py_XINCREF
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
cimport cython
from fastsip._values_c cimport (URI, Via, Address, CSeq, set_builder, LZ_PARAMS, LZ_URI, LZ_USPANS,
                                LZ_HEADERS, F_VIA_PARAMS, F_ADDR_URI)
from fastsip._values_c cimport ascii_str as _ascii_str

import sys as _sys
import inspect as _inspect
import types as _types

from .errors import ParseError
from .headers import COMPACT_FORMS, Auth, header_key
from .limits import DEFAULT_LIMITS, Limits
from .message import Kind, Message, Request, Response, _install_fast_accessors
from .message import _install_lazy_headers
from .message import REASON_PHRASES as _REASON_PHRASES, _RESPONSE_COPY, _check_value
from .message import _DATE_RE, _uint as _py_uint
from .headers import SINGLE_VALUE_HEADERS, display_name

__all__ = (
    "StreamParser",
    "classify",
    "parse_address",
    "parse_address_list",
    "parse_auth",
    "parse_cseq",
    "parse_datagram",
    "parse_uri",
    "parse_via",
)


ctypedef unsigned int UC   # a code point as a plain C integer (Py_UCS4 would coerce to str)


cdef extern from "Python.h":
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    object PyUnicode_DecodeASCII(const char* s, Py_ssize_t size, const char* errors)
    object PyUnicode_Substring(object s, Py_ssize_t start, Py_ssize_t end)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    object PyUnicode_New(Py_ssize_t size, UC maxchar)
    object PyList_New(Py_ssize_t n)
    void PyList_SET_ITEM(object lst, Py_ssize_t i, PyObject* o)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    int PyUnicode_KIND(object s)
    void* PyUnicode_DATA(object s)
    UC PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil
    bint PyBytes_Check(object o)
    bint PyBytes_CheckExact(object o)
    char* PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    object PyBytes_FromStringAndSize(const char* s, Py_ssize_t n)
    bint PyByteArray_Check(object o)
    char* PyByteArray_AS_STRING(object o)
    Py_ssize_t PyByteArray_GET_SIZE(object o)
    object PyLong_FromSsize_t(Py_ssize_t v)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    long PyLong_AsLongAndOverflow(object o, int* overflow) except? -1
    bint PyLong_CheckExact(object o)
    object PyType_GenericAlloc(PyTypeObject* t, Py_ssize_t n)
    int PyObject_GetBuffer(object o, Py_buffer* view, int flags) except -1
    void PyBuffer_Release(Py_buffer* view)
    int PyBUF_SIMPLE
    Py_ssize_t PY_SSIZE_T_MAX

cdef extern from *:
    """
    /* PyUnicode_READY is a no-op (and deprecated) from Python 3.12 on */
    #if PY_VERSION_HEX >= 0x030C0000
    #define __fastsip_unicode_ready(o) 0
    #else
    #define __fastsip_unicode_ready(o) PyUnicode_READY(o)
    #endif
    """
    int _unicode_ready "__fastsip_unicode_ready"(object o) except -1

cdef extern from *:
    """
    /* 1 when setup.py built this module profile-guided (FASTSIP_PGO) */
    #ifndef FASTSIP_BUILD_PGO
    #define FASTSIP_BUILD_PGO 0
    #endif
    """
    int _BUILD_PGO "FASTSIP_BUILD_PGO"

# True when this module was compiled with gcc's profile-guided optimisation (setup.py)
BUILD_PGO = bool(_BUILD_PGO)

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject* Py_TYPE(object o)
    bint PyType_IsSubtype(PyTypeObject* a, PyTypeObject* b)


# ---------------------------------------------------------------------------------------------
# character classes (one table for framing bytes and for the ASCII part of value strings)
# ---------------------------------------------------------------------------------------------
cdef enum:
    C_TOKEN = 1 << 0      # RFC 3261 token
    C_HOST = 1 << 1       # hostname / IPv4 characters
    C_IPV6 = 1 << 2
    C_SCHEME = 1 << 3
    C_USER = 1 << 4
    C_PASSWORD = 1 << 5
    C_PARAM = 1 << 6
    C_HEADER = 1 << 7
    C_TEL = 1 << 8
    C_BADURI = 1 << 9
    C_HEX = 1 << 10
    C_DIGIT = 1 << 11
    C_TOKEN68 = 1 << 12
    C_GPSTOP = 1 << 13    # ends an unquoted generic-param value: SP HTAB ; , " < >
    C_VIASTOP = 1 << 14   # ends a sent-by / addr-spec: SP HTAB ; ,
    C_WS = 1 << 15        # SP HTAB
    C_USER_NP = 1 << 16   # C_USER less "%" (the one-pass checks leave escapes to the full ones)
    C_PARAM_NP = 1 << 17  # C_PARAM less "%"
    C_PVALUE = 1 << 18    # printable ASCII but SP and C_GPSTOP: a plain unquoted param value

cdef enum:
    CH_HT = 9
    CH_LF = 10
    CH_CR = 13
    CH_SP = 32
    CH_DQUOTE = 34
    CH_PCT = 37
    CH_AMP = 38
    CH_SLASH = 47
    CH_COLON = 58
    CH_SEMI = 59
    CH_LT = 60
    CH_EQ = 61
    CH_GT = 62
    CH_QMARK = 63
    CH_AT = 64
    CH_LBRACKET = 91
    CH_BSLASH = 92
    CH_RBRACKET = 93
    CH_COMMA = 44

cdef unsigned int _ct[256]
cdef unsigned char _lc[256]   # a token octet lower-cased; 0 for octets that are not token


def _build_classes():
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    classes = (
        (C_TOKEN, alnum + "-.!%*_+`'~"),
        (C_HOST, alnum + "-._"),
        (C_IPV6, "0123456789abcdefABCDEF:."),
        (C_SCHEME, alnum + "+-."),
        (C_USER, alnum + "-_.!~*'()&=+$,;?/%"),
        (C_PASSWORD, alnum + "-_.!~*'()&=+$,%"),
        (C_PARAM, alnum + "-_.!~*'()[]/:&+$%"),
        (C_HEADER, alnum + "-_.!~*'()[]/?:+$%="),
        (C_TEL, alnum + "-_.!~*'()&=+$,/%#:@"),
        (C_BADURI, ' \t<>"\x7f' + "".join(chr(c) for c in range(32))),
        (C_HEX, "0123456789abcdefABCDEF"),
        (C_DIGIT, "0123456789"),
        (C_TOKEN68, alnum + "-._~+/"),
        (C_GPSTOP, ' \t;,"<>'),
        (C_VIASTOP, " \t;,"),
        (C_WS, " \t"),
        (C_USER_NP, alnum + "-_.!~*'()&=+$,;?/"),
        (C_PARAM_NP, alnum + "-_.!~*'()[]/:&+$"),
        (C_PVALUE, "".join(chr(c) for c in range(33, 127) if chr(c) not in ' \t;,"<>')),
    )
    cdef int i
    for i in range(256):
        _ct[i] = 0
    for bit, chars in classes:
        for ch in chars:
            _ct[ord(ch)] |= bit
    for i in range(256):
        _lc[i] = (i + 32 if 65 <= i <= 90 else i) if _ct[i] & C_TOKEN else 0


_build_classes()


cdef inline bint _is(UC c, unsigned int mask) noexcept nogil:
    """c is in the class (all classes are ASCII: _ct is 0 from 128 on, and ``c < 256`` costs
    nothing for an octet)."""
    return c < 256 and (_ct[c] & mask) != 0


# ---------------------------------------------------------------------------------------------
# interned names: C hash tables so that common names cost no allocation
# ---------------------------------------------------------------------------------------------
cdef enum:
    NAME_MAX = 32
    F_CONTENT_LENGTH = 1

ctypedef struct Ent:
    Py_ssize_t n                 # 0 = empty slot
    unsigned char low[NAME_MAX]  # lookup bytes (lower case, or exact for the exact table)
    unsigned char canon[NAME_MAX]
    PyObject* key                # header key / interned value
    PyObject* canon_obj          # common spelling as written
    PyObject* low_obj            # all-lower-case spelling as written
    int flags

cdef Ent _htab[512]   # header names, case-insensitive -> key (hashed by _name_hash)
cdef Ent _ptab[256]   # parameter names, case-insensitive -> lower-case name
cdef Ent _xtab[128]   # exact spellings: methods, transports, auth schemes
_KEEP = []            # owns the objects the tables point to


cdef inline size_t _hash_step(size_t h, unsigned char c) noexcept nogil:
    return (h * 33) ^ c


cdef inline Ent* _lookup(Ent* tab, size_t mask, const unsigned char* s, Py_ssize_t n,
                         size_t h) noexcept nogil:
    cdef Ent* e
    while True:
        e = &tab[h & mask]
        if e.n == 0:
            return NULL
        if e.n == n and memcmp(e.low, s, n) == 0:
            return e
        h += 1


cdef inline size_t _name_hash(Py_ssize_t n, unsigned char first,
                              unsigned char last) noexcept nogil:
    """_htab's hash of a lower-case header name: its length and its first and last octets
    (spread the ~100 known names over 512 slots with 18 extra probes in all)."""
    return (<size_t>first * 33 + last) * 33 + <size_t>n


cdef inline bint _lc_equal(const unsigned char* s, const unsigned char* low,
                           Py_ssize_t n) noexcept nogil:
    """The token octets s[:n], lower-cased, are low[:n]."""
    cdef Py_ssize_t k
    for k in range(n):
        if _lc[s[k]] != low[k]:
            return False
    return True


cdef inline Ent* _header_name(const unsigned char* s, Py_ssize_t n, PyObject** name,
                              bint wide=False) noexcept nogil:
    """The _htab entry of the header name s[:n] (token octets, 0 < n < NAME_MAX), or NULL;
    name: its shared str when written in its common or all-lower-case spelling, else NULL.
    wide: s[0:16] may be read (n <= 16: one 16-octet compare instead of memcmp)."""
    cdef size_t h = _name_hash(n, _lc[s[0]], _lc[s[n - 1]])
    cdef Ent* e
    while True:
        e = &_htab[h & 511]
        if e.n == 0:
            return NULL
        if e.n == n:
            if _eq16(s, e.canon, n) if wide and n <= 16 else memcmp(s, e.canon, n) == 0:
                name[0] = e.canon_obj
                return e
            if _lc_equal(s, e.low, n):
                name[0] = e.low_obj if memcmp(s, e.low, n) == 0 else NULL
                return e
        h += 1


cdef int _insert(Ent* tab, size_t mask, bytes lookup, object key, object canon,
                 object low, int flags) except -1:
    cdef Py_ssize_t n = len(lookup), k
    cdef size_t h = 5381
    cdef bytes cb = canon.encode("ascii")
    cdef PyObject* unused
    if tab == _htab:
        h = _name_hash(n, lookup[0], lookup[n - 1])
        if _header_name(lookup, n, &unused) != NULL:
            return 0
    else:
        for k in range(n):
            h = _hash_step(h, lookup[k])
        if _lookup(tab, mask, lookup, n, h) != NULL:
            return 0
    cdef Ent* e
    while True:
        e = &tab[h & mask]
        if e.n == 0:
            break
        h += 1
    for k in range(n):
        e.low[k] = lookup[k]
        e.canon[k] = cb[k]
    e.n = n
    _KEEP.extend((key, canon, low))
    e.key = <PyObject*>key
    e.canon_obj = <PyObject*>canon
    e.low_obj = <PyObject*>low
    e.flags = flags
    return 0


_HEADER_NAMES = (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Expires",
    "Content-Length", "Content-Type", "User-Agent", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Route", "Record-Route", "Path", "Authorization",
    "WWW-Authenticate", "Proxy-Authorization", "Proxy-Authenticate", "Authentication-Info",
    "Event", "Subject", "Server", "Accept", "Accept-Encoding", "Accept-Language", "Allow-Events",
    "Date", "Min-Expires", "Organization", "Priority", "Reply-To", "Retry-After", "Timestamp",
    "Warning", "Content-Disposition", "Content-Encoding", "Content-Language", "MIME-Version",
    "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info", "Refer-To", "Referred-By",
    "Session-Expires", "Min-SE", "RSeq", "RAck", "Subscription-State", "P-Asserted-Identity",
    "P-Preferred-Identity", "Privacy", "Reason", "Replaces", "SIP-ETag", "SIP-If-Match",
    "Accept-Contact", "Reject-Contact", "Request-Disposition", "Identity", "Identity-Info",
    "Security-Client", "Security-Server", "Security-Verify", "Diversion", "Remote-Party-ID",
    "Service-Route", "P-Associated-URI", "P-Called-Party-ID", "P-Charging-Vector",
    "P-Access-Network-Info", "Recv-Info", "Info-Package", "Content-ID", "Target-Dialog",
    "Join", "Refer-Sub", "History-Info", "Geolocation", "Feature-Caps",
)

_PARAM_NAMES = (
    "transport", "user", "method", "ttl", "maddr", "lr", "branch", "received", "rport", "tag",
    "expires", "q", "ob", "reg-id", "+sip.instance", "gr", "comp", "sigcomp-id", "alias", "keep",
    "nonce", "realm", "username", "uri", "response", "algorithm", "qop", "nc", "cnonce",
    "opaque", "stale", "domain", "purpose", "handling", "duration", "reason", "cause", "text",
    "pub-gruu", "temp-gruu", "methods", "events", "isfocus", "video", "audio", "phone-context",
    "to-tag", "from-tag", "early-only", "id", "retry-after", "refresher", "ext", "isub",
)

_EXACT_NAMES = (
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    "UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "TLS-SCTP", "DTLS",
    "Digest", "Basic", "Bearer",
    "SIP/2.0", "sip", "sips", "tel",
)


_HOT_KEYS = {"via": HOT_VIA, "from": HOT_FROM, "to": HOT_TO, "call-id": HOT_CALL_ID,
             "cseq": HOT_CSEQ, "contact": HOT_CONTACT, "expires": HOT_EXPIRES}


def _name_flags(key):
    """Ent.flags of a header name: F_CONTENT_LENGTH, and its HOT_ id in the bits from 8."""
    return (F_CONTENT_LENGTH if key == "content-length" else 0) | (_HOT_KEYS.get(key, 0) << 8)


def _build_names():
    for name in _HEADER_NAMES:
        low = _sys.intern(name.lower())
        key = _sys.intern(header_key(name))
        _insert(_htab, 511, low.encode(), key, _sys.intern(name), low, _name_flags(key))
    for letter, _long_name in COMPACT_FORMS.items():
        key = _sys.intern(header_key(letter))
        _insert(_htab, 511, letter.encode(), key, _sys.intern(letter), _sys.intern(letter),
                _name_flags(key))
    for name in _PARAM_NAMES:
        name = _sys.intern(name)
        _insert(_ptab, 255, name.encode(), name, name, name, 0)
    for name in _EXACT_NAMES:
        name = _sys.intern(name)
        _insert(_xtab, 127, name.encode(), name, name, name, 0)


_build_names()

cdef str S_SIP20 = _sys.intern("SIP/2.0")
cdef str S_SIP = _sys.intern("sip")
cdef str S_SIPS = _sys.intern("sips")
cdef str S_TEL = _sys.intern("tel")
cdef str S_TOKEN68 = _sys.intern("token68")
cdef str S_EMPTY = ""
cdef str S_CONTENT_LENGTH = _sys.intern("content-length")


# _EXACT_NAMES of up to 8 octets by their octets packed into a word (little end first, zeros
# after): one multiply and a compare or two instead of a hash loop and a memcmp.
cdef uint64_t _x8key[128]
cdef Py_ssize_t _x8len[128]   # (a NUL octet would pack as the zeros after a shorter name)
cdef PyObject* _x8obj[128]


cdef inline size_t _x8slot(uint64_t v) noexcept nogil:
    return <size_t>((v * <uint64_t>0x9E3779B97F4A7C15ULL) >> 57)


cdef inline uint64_t _x8pack(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """s[:n] (n <= 8) as one word, s[0] in the low octet."""
    cdef uint64_t v = 0
    cdef Py_ssize_t k
    for k in range(n):
        v |= (<uint64_t>s[k]) << (8 * k)
    return v


cdef inline PyObject* _x8find(uint64_t v, Py_ssize_t n) noexcept nogil:
    cdef size_t i = _x8slot(v)
    while _x8key[i] != 0:
        if _x8key[i] == v and _x8len[i] == n:
            return _x8obj[i]
        i = (i + 1) & 127
    return NULL


def _build_x8():
    cdef size_t i
    cdef uint64_t v
    cdef bytes b
    for name in _EXACT_NAMES:
        b = name.encode("ascii")
        if len(b) > 8:
            continue
        v = _x8pack(b, len(b))
        if _x8find(v, len(b)) == NULL:
            i = _x8slot(v)
            while _x8key[i] != 0:
                i = (i + 1) & 127
            name = _sys.intern(name)
            _KEEP.append(name)
            _x8key[i] = v
            _x8len[i] = len(b)
            _x8obj[i] = <PyObject*>name


_build_x8()


# Header names the table above does not know ("X-Custom", "P-Foo"...), as written: the name
# str and its key (header_key, interned), made once per distinct spelling and kept for the
# life of the process, so that a message's entry can point to them as it does to _htab's
# (no str, no header_key call per line). Insert-only and bounded: when full (a scanner
# sending random names), further names take the general path, as before.
ctypedef struct UEnt:
    Py_ssize_t n                 # 0 = empty slot
    unsigned char s[NAME_MAX]
    PyObject* name
    PyObject* key

cdef enum:
    UTAB_N = 1024                # slots
    UTAB_MAX = 640               # names kept at most

cdef UEnt _utab[UTAB_N]
cdef Py_ssize_t _utab_count = 0


cdef UEnt* _unknown_name(const unsigned char* s, Py_ssize_t n) except? NULL:
    """The kept name and key for the token octets s[:n] (0 < n < NAME_MAX), made on first
    sight; NULL when the table is full."""
    global _utab_count
    cdef size_t h = 5381
    cdef Py_ssize_t k
    cdef UEnt* e
    for k in range(n):
        h = _hash_step(h, s[k])
    while True:
        e = &_utab[h & (UTAB_N - 1)]
        if e.n == 0:
            break
        if e.n == n and memcmp(e.s, s, n) == 0:
            return e
        h += 1
    if _utab_count >= UTAB_MAX:
        return NULL
    name = _sys.intern(_ascii_str(s, n))
    key = _sys.intern(header_key(name))
    _KEEP.append(name)
    _KEEP.append(key)
    memcpy(e.s, s, n)
    e.name = <PyObject*>name
    e.key = <PyObject*>key
    e.n = n
    _utab_count += 1
    return e


cdef object _exact_ascii(const unsigned char* s, Py_ssize_t n):
    """The interned str for an exact well-known spelling (a method, "UDP"...), else a new str."""
    cdef size_t h = 5381
    cdef Py_ssize_t k
    cdef Ent* e
    cdef PyObject* o
    if 0 < n <= 8:
        o = _x8find(_x8pack(s, n), n)
        if o != NULL:
            return <object>o
    elif 8 < n < NAME_MAX:
        for k in range(n):
            h = _hash_step(h, s[k])
        e = _lookup(_xtab, 127, s, n, h)
        if e != NULL:
            return <object>e.key
    return PyUnicode_DecodeASCII(<const char*>s, n, NULL)


# ---------------------------------------------------------------------------------------------
# building the shared pure result objects without calling their __init__
# ---------------------------------------------------------------------------------------------
cdef Py_ssize_t _slot_offset(object cls, str name) except -1:
    """C offset of the ``__slots__`` member ``name`` of ``cls``, or 0 to use setattr."""
    d = getattr(cls, name, None)
    if type(d) is not _types.MemberDescriptorType:
        return 0
    cdef PyMemberDef* m = (<PyMemberDescrObject*><PyObject*>d).d_member
    # T_OBJECT_EX (16), writable, inside the instance.
    if m.type != 16 or (m.flags & 1) or m.offset < <Py_ssize_t>sizeof(PyObject) \
            or m.offset + <Py_ssize_t>sizeof(PyObject*) > cls.__basicsize__:
        return 0
    return m.offset


cdef bint _plain_class(object cls) except -1:
    """True when instances can be made by the generic allocator and filled slot by slot."""
    return (
        type(cls) is type
        and cls.__new__ is object.__new__
        and cls.__setattr__ is object.__setattr__
        and cls.__basicsize__ > 0
        and not getattr(cls, "__abstractmethods__", None)
    )


cdef extern from *:
    """
    /* Instances of Request and Response kept for reuse when they go (like the free list
       Cython gives a cdef class): a parse then neither allocates nor frees its message, and
       the dealloc clears the slots it knows instead of subtype_dealloc's generic walk. Only
       installed when the class is exactly what this code expects (see _install_pool). The
       ``keep`` slot (_cache) keeps its dict when it is empty and nobody else holds it. */
    #define __FASTSIP_POOL_N 16
    typedef struct {
        PyTypeObject* tp;
        Py_ssize_t off[12];
        int noff;
        Py_ssize_t keep;
        int n;
        PyObject* items[__FASTSIP_POOL_N];
    } __fastsip_pool;
    static __fastsip_pool __fastsip_pools[2];

    static void __fastsip_pooled_dealloc(PyObject* o) {
        PyTypeObject* tp = Py_TYPE(o);
        __fastsip_pool* pl = tp == __fastsip_pools[0].tp ? &__fastsip_pools[0]
                                                         : &__fastsip_pools[1];
        PyObject** kept = NULL;
        int i;
        PyObject_GC_UnTrack(o);
        for (i = 0; i < pl->noff; i++) {
            PyObject** a = (PyObject**)((char*)o + pl->off[i]);
            PyObject* v = *a;
            if (v == NULL)
                continue;
            if (pl->off[i] == pl->keep && PyDict_CheckExact(v) && Py_REFCNT(v) == 1
                    && PyDict_GET_SIZE(v) == 0) {
                kept = a;
                continue;
            }
            *a = NULL;
            Py_DECREF(v);   /* (may run other deallocs, this one included: pl->n is read after) */
        }
        if (pl->n < __FASTSIP_POOL_N) {
            pl->items[pl->n++] = o;
        } else {
            if (kept != NULL)
                Py_CLEAR(*kept);
            tp->tp_free(o);
        }
        Py_DECREF(tp);   /* the reference each instance of a heap type holds */
    }

    static PyObject* __fastsip_pooled_new(int k) {
        __fastsip_pool* pl = &__fastsip_pools[k];
        PyObject* o;
        if (pl->n > 0) {
            o = pl->items[--pl->n];
            (void)PyObject_Init(o, pl->tp);
            PyObject_GC_Track(o);
            return o;
        }
        return PyType_GenericAlloc(pl->tp, 0);
    }

    #ifndef Py_TPFLAGS_MANAGED_DICT
    #define Py_TPFLAGS_MANAGED_DICT 0
    #endif
    #ifndef Py_TPFLAGS_MANAGED_WEAKREF
    #define Py_TPFLAGS_MANAGED_WEAKREF 0
    #endif
    /* The type's instances are plain: GC, heap type, fixed size, no dict, no weak references,
       no finalizer, freed by PyObject_GC_Del. */
    static int __fastsip_pool_type_ok(PyTypeObject* tp) {
    #ifdef Py_GIL_DISABLED
        (void)tp;
        return 0;   /* the pool is shared state: the GIL guards it */
    #endif
        return (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) && (tp->tp_flags & Py_TPFLAGS_HAVE_GC)
            && !(tp->tp_flags & (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF))
            && tp->tp_itemsize == 0 && tp->tp_dictoffset == 0 && tp->tp_weaklistoffset == 0
            && tp->tp_finalize == NULL && tp->tp_del == NULL && tp->tp_free == PyObject_GC_Del;
    }

    static void __fastsip_pool_install(int k, PyTypeObject* tp, const Py_ssize_t* off, int n,
                                       Py_ssize_t keep) {
        int i;
        __fastsip_pools[k].tp = tp;
        for (i = 0; i < n; i++)
            __fastsip_pools[k].off[i] = off[i];
        __fastsip_pools[k].noff = n;
        __fastsip_pools[k].keep = keep;
        tp->tp_dealloc = __fastsip_pooled_dealloc;
    }
    """
    object _pooled_new "__fastsip_pooled_new"(int k)
    bint _pool_type_ok "__fastsip_pool_type_ok"(PyTypeObject* tp)
    void _pool_install "__fastsip_pool_install"(
        int k, PyTypeObject* tp, const Py_ssize_t* off, int n, Py_ssize_t keep)


cdef class _Shape:
    """How to build instances of one shared class fast (offsets per slot, in a fixed order)."""

    cdef object cls
    cdef bint plain
    cdef Py_ssize_t off[12]
    cdef tuple names
    cdef int pool   # which instance pool new() takes from (_install_pool), -1: none

    def __init__(self, cls, names):
        if len(names) > 12:
            raise ValueError("too many slots for _Shape")
        self.cls = cls
        self.names = tuple(names)
        self.plain = _plain_class(cls)
        self.pool = -1
        cdef int k
        for k, name in enumerate(self.names):
            self.off[k] = _slot_offset(cls, name) if self.plain else 0

    cdef inline object new(self):
        if self.pool >= 0:
            return _pooled_new(self.pool)
        if self.plain:
            return PyType_GenericAlloc(<PyTypeObject*>self.cls, 0)
        return self.cls.__new__(self.cls)

    cdef inline int put(self, object obj, int k, object value) except -1:
        cdef Py_ssize_t off = self.off[k]
        cdef PyObject** addr
        cdef PyObject* old
        if off:   # (small enough to be inlined: the setattr path is a call)
            addr = <PyObject**>((<char*><PyObject*>obj) + off)
            old = addr[0]
            Py_INCREF(value)
            addr[0] = <PyObject*>value
            Py_XDECREF(old)
            return 0
        return self.put_attr(obj, k, value)

    cdef int put_attr(self, object obj, int k, object value) except -1:
        setattr(obj, self.names[k], value)
        return 0


# slot orders used with _Shape.put
cdef enum:
    M_CACHE = 0
    M_HEADERS = 1
    M_LIMITS = 2
    M_P = 3
    M_RAW = 4
    M_BODY = 5
    M_VERSION = 6
    M_METHOD = 7     # Request
    M_URI_TEXT = 8
    M_STATUS = 7     # Response
    M_REASON = 8

_MSG_SLOTS = ("_cache", "_headers", "_limits", "_p", "_raw", "body", "version")
cdef _Shape _REQ = _Shape(Request, _MSG_SLOTS + ("method", "uri_text"))
cdef _Shape _RESP = _Shape(Response, _MSG_SLOTS + ("status", "reason"))
cdef _Shape _AUTH = _Shape(Auth, ("scheme", "params", "quoted"))


cdef int _install_pool(_Shape shape, int k) except -1:
    """Give shape's class (Request or Response) the instance pool k, when its instances are
    exactly the slots the shape names (every ``__slots__`` member of the class and its bases)."""
    cdef PyTypeObject* tp = <PyTypeObject*>shape.cls
    cdef int i, n = len(shape.names)
    members = set()
    for klass in shape.cls.__mro__:
        for d in vars(klass).values():
            if type(d) is _types.MemberDescriptorType:
                members.add((<PyMemberDescrObject*><PyObject*>d).d_member.offset)
    if not shape.plain or not _pool_type_ok(tp) or len(members) != n:
        return 0
    if shape.cls.__basicsize__ != object.__basicsize__ + n * sizeof(PyObject*):
        return 0
    for i in range(n):
        if shape.off[i] == 0 or shape.off[i] not in members:
            return 0
    _pool_install(k, tp, shape.off, n, shape.off[M_CACHE])
    shape.pool = k
    return 0


_install_pool(_REQ, 0)
_install_pool(_RESP, 1)


def _message_pools() -> tuple[bool, bool]:
    """Whether requests and responses are kept for reuse (see _install_pool): for the tests."""
    return _REQ.pool >= 0, _RESP.pool >= 0


cdef object _new_uri(object scheme, object user, object password, object host, object port,
                     object params, object headers, object opaque, object text):
    """A URI; ``params`` / ``headers`` None is an empty dict made on first access (most URIs
    have neither, and nobody reads them)."""
    cdef URI o = URI.__new__(URI)
    o.scheme = scheme
    o._user = user
    o.password = password
    o._host = host
    o.port = port
    if params is None:
        o.lazy = LZ_PARAMS
    else:
        o._params = params
    if headers is None:
        o.lazy |= LZ_HEADERS
    else:
        o._headers = headers
    o.opaque = opaque
    o._txt = text
    return o


cdef object _new_via(object protocol, object transport, object host, object port, object params,
                     object src, object found=None):
    """A Via; ``params`` None leaves it to be built from ``src`` on first access; ``found`` is
    its branch (None when absent), read while ``params`` is not built."""
    cdef Via o = Via.__new__(Via)
    o.protocol = protocol
    o.transport = transport
    o.host = host
    o.port = port
    if params is not None:
        o._params = params
    else:
        o._src = src
        o._found = found
        o.lazy = LZ_PARAMS
    return o


cdef object _new_address(object uri, object display, object params, object src,
                         object found=None):
    """An Address; ``uri`` None leaves uri and params to be built from ``src`` on first
    access; ``found`` is its tag (None when absent), read while ``params`` is not built."""
    cdef Address o = Address.__new__(Address)
    if uri is not None:
        o._uri = uri
        o._params = params
    else:
        o._src = src
        o._found = found
        o.lazy = LZ_URI | LZ_PARAMS
    o.display = display
    return o


cdef object _new_auth(object scheme, object params, object quoted):
    cdef object o = _AUTH.new()
    _AUTH.put(o, 0, scheme)
    _AUTH.put(o, 1, params)
    _AUTH.put(o, 2, quoted)
    return o


cdef bint _LAZY_HEADERS = False   # messages may hold a _Head in _headers (_HeadersSlot installed)
cdef object _SELF = None   # this module: messages' ``_p`` (value parsers used lazily)
cdef object _K_GARBAGE = Kind.GARBAGE
cdef object _K_SIP = Kind.SIP
cdef object _K_STUN = Kind.STUN
cdef object _K_KEEPALIVE = Kind.KEEPALIVE


cdef object _err(str reason, Py_ssize_t offset=-1, int status=400):
    return ParseError(reason, status_hint=status, offset=offset)


# ---------------------------------------------------------------------------------------------
# limits, copied into C ints once per Limits object (house style 8)
# ---------------------------------------------------------------------------------------------
ctypedef struct CLimits:
    Py_ssize_t max_message_size
    Py_ssize_t max_headers
    Py_ssize_t max_header_length
    Py_ssize_t max_start_line
    Py_ssize_t max_via

cdef object _lim_obj = None
cdef CLimits _lim_c
cdef object _lim_max_via = None   # _lim_obj.max_via (read by every Via accessor)


cdef Py_ssize_t _clamp(object v) except? -1:
    """An int limit as a C size; values beyond the C range compare the same when clamped."""
    cdef int overflow = 0
    cdef long r
    if not PyLong_CheckExact(v):
        v = v.__index__()
    r = PyLong_AsLongAndOverflow(v, &overflow)
    if overflow > 0:
        return PY_SSIZE_T_MAX
    if overflow < 0:
        return -PY_SSIZE_T_MAX
    return <Py_ssize_t>r


cdef int _load_limits(object limits, CLimits* out) except -1:
    global _lim_obj, _lim_c, _lim_max_via
    if limits is _lim_obj:
        out[0] = _lim_c
        return 0
    out.max_message_size = _clamp(limits.max_message_size)
    out.max_headers = _clamp(limits.max_headers)
    out.max_header_length = _clamp(limits.max_header_length)
    out.max_start_line = _clamp(limits.max_start_line)
    out.max_via = _clamp(limits.max_via)
    if type(limits) is Limits:   # frozen: safe to remember
        _lim_obj = limits
        _lim_c = out[0]
        _lim_max_via = limits.max_via
    return 0


# --------------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------------
cdef object _classify(const unsigned char* p, Py_ssize_t n):
    cdef unsigned char b0
    cdef Py_ssize_t i
    if n == 0:
        return _K_GARBAGE
    b0 = p[0]
    if b0 < 0x40:
        if (
            b0 < 2
            and n >= 20
            and p[4] == 0x21 and p[5] == 0x12 and p[6] == 0xA4 and p[7] == 0x42
            and ((<Py_ssize_t>p[2] << 8) | p[3]) == n - 20
            and (n & 3) == 0
        ):
            return _K_STUN
        if b0 == CH_CR or b0 == CH_LF:
            i = 0
            while i < n and (p[i] == CH_CR or p[i] == CH_LF):
                i += 1
            if i == n:
                return _K_KEEPALIVE
            b0 = p[i]
    if _ct[b0] & C_TOKEN:
        return _K_SIP
    return _K_GARBAGE


def classify(data: bytes) -> Kind:
    """Say what a datagram is, from its first bytes, without parsing it.

    Args:
        data: the datagram (or the first chunk on a new stream).

    Returns:
        ``Kind.STUN`` for an RFC 5389 message (two zero bits, length = size - 20, multiple of 4,
        magic cookie), ``Kind.KEEPALIVE`` for only CR/LF octets, ``Kind.SIP`` when the first
        octet that is not CR/LF is a token character, else ``Kind.GARBAGE``.
    """
    cdef Py_buffer view
    if PyBytes_Check(data):
        return _classify(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    if PyByteArray_Check(data):
        return _classify(<const unsigned char*>PyByteArray_AS_STRING(data),
                         PyByteArray_GET_SIZE(data))
    if len(data) == 0:   # as the pure twin, for any empty sized object
        return _K_GARBAGE
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _classify(<const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------------
cdef inline Py_ssize_t _find_crlfcrlf(const unsigned char* p, Py_ssize_t i,
                                      Py_ssize_t n) noexcept nogil:
    """Index of the first CRLFCRLF at or after i (like bytes.find), or -1."""
    cdef const unsigned char* q
    cdef Py_ssize_t j
    while i + 3 < n:
        q = <const unsigned char*>memchr(p + i, CH_CR, <size_t>(n - 3 - i))
        if q == NULL:
            return -1
        j = q - p
        if p[j + 1] == CH_LF and p[j + 2] == CH_CR and p[j + 3] == CH_LF:
            return j
        i = j + 1
    return -1


cdef extern from *:
    """
    /* Index of the first CR or LF in p[i:n] (n when none); *hi gets the OR of the octets
       before it (bit 7 set: not ASCII). SSE2 (every x86-64) looks at 16 octets per step,
       which for header lines of 20-60 octets costs a third of two memchr calls; elsewhere
       memchr finds the CR and the LF (CFLAGS=-DFASTSIP_NO_SIMD builds that path on x86 too,
       to test it). Never reads outside p[i:n]. */
    #if (defined(__SSE2__) || defined(_M_X64) || defined(_M_AMD64)) && !defined(FASTSIP_NO_SIMD)
    #include <emmintrin.h>
    #if defined(_MSC_VER)
    #include <intrin.h>
    static __inline unsigned __fastsip_ctz(unsigned m) {
        unsigned long r;
        _BitScanForward(&r, m);
        return (unsigned)r;
    }
    #else
    #define __fastsip_ctz(m) ((unsigned)__builtin_ctz(m))
    #endif
    static CYTHON_INLINE Py_ssize_t __fastsip_crlf_scan(const unsigned char* p, Py_ssize_t i,
                                                       Py_ssize_t n, unsigned* hi) {
        const __m128i cr = _mm_set1_epi8(13), lf = _mm_set1_epi8(10);
        unsigned acc = 0;
        while (i + 16 <= n) {
            __m128i v = _mm_loadu_si128((const __m128i*)(p + i));
            unsigned m = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
            unsigned h = (unsigned)_mm_movemask_epi8(v);
            if (m) {
                unsigned k = __fastsip_ctz(m);
                *hi |= acc | (h & ((1u << k) - 1u));
                return i + (Py_ssize_t)k;
            }
            acc |= h;
            i += 16;
        }
        while (i < n && p[i] != 13 && p[i] != 10) {
            acc |= p[i] & 0x80u;
            i++;
        }
        *hi |= acc;
        return i;
    }
    /* The first ":" of p[i:e] when it is one of p[i:i + 16], else -1 (one 16-octet load when
       p[i:i + 16] lies before limit). */
    static CYTHON_INLINE Py_ssize_t __fastsip_colon16(const unsigned char* p, Py_ssize_t i,
                                                     Py_ssize_t e, Py_ssize_t limit) {
        Py_ssize_t k, stop;
        if (i + 16 <= limit) {
            unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
                _mm_loadu_si128((const __m128i*)(p + i)), _mm_set1_epi8(58)));
            if (!m)
                return -1;
            k = i + (Py_ssize_t)__fastsip_ctz(m);
            return k < e ? k : -1;
        }
        stop = e < i + 16 ? e : i + 16;
        for (k = i; k < stop; k++)
            if (p[k] == 58)
                return k;
        return -1;
    }
    /* s[:n] == t[:n] for 0 < n <= 16, with one 16-octet compare: both s[0:16] and t[0:16]
       must be readable (the caller checks s; t is a 32-octet table entry). */
    static CYTHON_INLINE int __fastsip_eq16(const unsigned char* s, const unsigned char* t,
                                           Py_ssize_t n) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
            _mm_loadu_si128((const __m128i*)s), _mm_loadu_si128((const __m128i*)t)));
        unsigned want = n >= 16 ? 0xFFFFu : ((1u << n) - 1u);
        return (m & want) == want;
    }
    #else
    static CYTHON_INLINE int __fastsip_eq16(const unsigned char* s, const unsigned char* t,
                                           Py_ssize_t n) {
        return memcmp(s, t, (size_t)n) == 0;
    }
    static CYTHON_INLINE Py_ssize_t __fastsip_colon16(const unsigned char* p, Py_ssize_t i,
                                                     Py_ssize_t e, Py_ssize_t limit) {
        Py_ssize_t k, stop = e < i + 16 ? e : i + 16;
        (void)limit;
        for (k = i; k < stop; k++)
            if (p[k] == 58)
                return k;
        return -1;
    }
    static CYTHON_INLINE Py_ssize_t __fastsip_crlf_scan(const unsigned char* p, Py_ssize_t i,
                                                       Py_ssize_t n, unsigned* hi) {
        const unsigned char* a = (const unsigned char*)memchr(p + i, 13, (size_t)(n - i));
        Py_ssize_t e = a ? (Py_ssize_t)(a - p) : n, k;
        const unsigned char* b = (const unsigned char*)memchr(p + i, 10, (size_t)(e - i));
        unsigned acc = 0;
        if (b) e = (Py_ssize_t)(b - p);
        for (k = i; k < e; k++) acc |= p[k];
        *hi |= acc & 0x80u;
        return e;
    }
    #endif
    """
    Py_ssize_t _crlf_scan "__fastsip_crlf_scan"(const unsigned char* p, Py_ssize_t i,
                                                Py_ssize_t n, unsigned* hi) noexcept nogil
    Py_ssize_t _colon16 "__fastsip_colon16"(const unsigned char* p, Py_ssize_t i, Py_ssize_t e,
                                            Py_ssize_t limit) noexcept nogil
    bint _eq16 "__fastsip_eq16"(const unsigned char* s, const unsigned char* t,
                                Py_ssize_t n) noexcept nogil


cdef inline Py_ssize_t _line_end(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n,
                                 unsigned* hi) noexcept nogil:
    """End of the line starting at pos: the index of its CR, followed by LF, both before n.

    -1: the line holds a bare CR or LF (what ``split(b"\\r\\n")`` would leave in it);
    -2: there is no CRLF after pos. *hi: as _crlf_scan, for the line's octets.
    """
    cdef Py_ssize_t e = _crlf_scan(p, pos, n, hi)
    if e + 1 >= n:
        return -2
    if p[e] != CH_CR or p[e + 1] != CH_LF:
        return -1
    return e


cdef inline bint _version_ok(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ASCII ``SIP/1*DIGIT.1*DIGIT`` (case-insensitive SIP), at least 7 octets."""
    cdef Py_ssize_t i, digits
    if b - a < 7:
        return False
    if (p[a] | 0x20) != 0x73 or (p[a + 1] | 0x20) != 0x69 or (p[a + 2] | 0x20) != 0x70 \
            or p[a + 3] != CH_SLASH:
        return False
    i = a + 4
    digits = 0
    while i < b and (_ct[p[i]] & C_DIGIT):
        i += 1
        digits += 1
    if digits == 0 or i >= b or p[i] != 0x2E:
        return False
    i += 1
    digits = 0
    while i < b and (_ct[p[i]] & C_DIGIT):
        i += 1
        digits += 1
    return digits > 0 and i == b


cdef PyObject* _new_ascii(const unsigned char* p, Py_ssize_t n) except NULL:
    """_ascii_str as a new reference the caller owns."""
    s = _ascii_str(p, n)
    Py_INCREF(s)
    return <PyObject*>s


cdef inline object _decode(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, bint ascii):
    if ascii:
        return _ascii_str(p + a, b - a)
    return PyUnicode_DecodeUTF8(<const char*>p + a, b - a, "surrogateescape")


cdef object _parse_start(const unsigned char* p, Py_ssize_t s, Py_ssize_t e, CLimits* lim,
                         bint ascii):
    """Start line p[s:e] -> a Request or Response with its start-line slots set."""
    cdef Py_ssize_t sp1, sp2, k
    cdef const unsigned char* q
    cdef object msg, version
    cdef bint v20
    if e - s > lim.max_start_line:
        raise _err("start line too long", s, 513)
    if e - s >= 4 and (p[s] | 0x20) == 0x73 and (p[s + 1] | 0x20) == 0x69 \
            and (p[s + 2] | 0x20) == 0x70 and p[s + 3] == CH_SLASH:
        # Status-Line
        q = <const unsigned char*>memchr(p + s, CH_SP, <size_t>(e - s))
        sp1 = (q - p) if q != NULL else -1
        k = sp1 if sp1 >= 0 else e
        if not _version_ok(p, s, k):
            raise _err("bad SIP-Version", s)
        if sp1 < 0:
            raise _err("bad Status-Line", s)
        q = <const unsigned char*>memchr(p + sp1 + 1, CH_SP, <size_t>(e - sp1 - 1))
        sp2 = (q - p) if q != NULL else -1
        k = sp2 if sp2 >= 0 else e
        if k - sp1 - 1 != 3 or not (_ct[p[sp1 + 1]] & C_DIGIT) \
                or not (_ct[p[sp1 + 2]] & C_DIGIT) or not (_ct[p[sp1 + 3]] & C_DIGIT) \
                or p[sp1 + 1] < 0x31 or p[sp1 + 1] > 0x36:
            raise _err("bad Status-Code", sp1 + 1)
        msg = _RESP.new()
        _RESP.put(msg, M_STATUS, PyLong_FromSsize_t(
            (p[sp1 + 1] - 48) * 100 + (p[sp1 + 2] - 48) * 10 + (p[sp1 + 3] - 48)))
        _RESP.put(msg, M_REASON, _decode(p, sp2 + 1, e, ascii) if sp2 >= 0 else S_EMPTY)
        if sp1 - s == 7 and memcmp(p + s, b"SIP/2.0", 7) == 0:
            version = S_SIP20
        else:
            version = _decode(p, s, sp1, ascii)
        _RESP.put(msg, M_VERSION, version)
        return msg
    # Request-Line: exactly three non-empty parts separated by single SPs.
    q = <const unsigned char*>memchr(p + s, CH_SP, <size_t>(e - s))
    if q == NULL:
        raise _err("bad Request-Line", s)
    sp1 = q - p
    q = <const unsigned char*>memchr(p + sp1 + 1, CH_SP, <size_t>(e - sp1 - 1))
    if q == NULL:
        raise _err("bad Request-Line", s)
    sp2 = q - p
    v20 = e - sp2 - 1 == 7 and memcmp(p + sp2 + 1, b"SIP/2.0", 7) == 0   # (no SP in it)
    if sp1 == s or sp2 == sp1 + 1 or sp2 + 1 == e \
            or (not v20 and memchr(p + sp2 + 1, CH_SP, <size_t>(e - sp2 - 1)) != NULL):
        raise _err("bad Request-Line", s)
    for k in range(s, sp1):
        if not (_ct[p[k]] & C_TOKEN):
            raise _err("bad method", s)
    for k in range(sp1 + 1, sp2):
        if _ct[p[k]] & C_BADURI:
            raise _err("bad Request-URI", sp1 + 1)
    if v20:
        version = S_SIP20
    else:
        if not _version_ok(p, sp2 + 1, e):
            raise _err("bad SIP-Version", sp2 + 1)
        version = _decode(p, sp2 + 1, e, ascii)
    msg = _REQ.new()
    _REQ.put(msg, M_METHOD, _exact_ascii(p + s, sp1 - s))
    _REQ.put(msg, M_URI_TEXT, _decode(p, sp1 + 1, sp2, ascii))
    _REQ.put(msg, M_VERSION, version)
    return msg


ctypedef struct HeadInfo:
    int cl_count           # Content-Length header lines seen
    PyObject* cl_value     # the first one's value when folded (borrowed from the _Head)
    const unsigned char* cl_p   # else its octets: cl_p[0:cl_n]
    Py_ssize_t cl_n
    PyObject* head         # the message's _Head (borrowed: the message holds it)
    bint is_request
    Py_ssize_t end         # index of the CRLFCRLF that ends the header section


cdef object _fold(const unsigned char* p, Py_ssize_t vs, Py_ssize_t ve, Py_ssize_t* pos_io,
                  Py_ssize_t* e_io, Py_ssize_t limit, Py_ssize_t* size_io, Py_ssize_t name_pos,
                  Py_ssize_t max_len, unsigned* hi):
    """Unfold a header whose first line's value is p[vs:ve]; continuation lines follow e_io.

    On return pos_io/e_io describe the last continuation line. Rare path: Python objects.
    """
    cdef Py_ssize_t pos, e = e_io[0], a, b
    parts = [PyBytes_FromStringAndSize(<const char*>p + vs, ve - vs)] if ve > vs else []
    while e + 2 < limit and (p[e + 2] == CH_SP or p[e + 2] == CH_HT):
        pos = e + 2
        e = _line_end(p, pos, limit, hi)
        if e == -2:
            raise _err("no empty line after the header section", limit)
        if e < 0:
            raise _err("bare CR or LF in header", pos)
        a = pos
        b = e
        while a < b and (p[a] == CH_SP or p[a] == CH_HT):
            a += 1
        while b > a and (p[b - 1] == CH_SP or p[b - 1] == CH_HT):
            b -= 1
        size_io[0] += e - pos
        if size_io[0] > max_len:
            raise _err("header too long", name_pos, 513)
        if b > a:
            parts.append(PyBytes_FromStringAndSize(<const char*>p + a, b - a))
        pos_io[0] = pos
    e_io[0] = e
    return b" ".join(parts).decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# the header section as offsets: the lazy form of Message._headers
# ---------------------------------------------------------------------------------------------
# A message this twin parses keeps, instead of the list of (key, name, value) tuples, a _Head:
# per header field its key and name (shared interned strs for the well-known names) and the
# span of its value in the message's bytes. The C accessors read values straight from it and
# build the value str of only the headers they read (kept, so a value read twice is the same
# object). The first Python-level read of ``_headers`` (pure Message code, mss, the tests)
# goes through _HeadersSlot, installed into Message in place of the slot's member descriptor,
# which builds the exact list the pure twin builds, stores it in the slot and returns it; from
# then on the message is an ordinary one. Why: the tuples and the value strs nobody reads were
# a third of the cost of parsing a message.
ctypedef struct HEnt:
    PyObject* key          # owned, or borrowed from _htab (own & OWN_KEY clear)
    PyObject* name         # owned, or borrowed from _htab (own & OWN_NAME clear)
    PyObject* value        # owned, or NULL until built from buf[vs:ve]
    Py_ssize_t vs
    Py_ssize_t ve
    int own                # OWN_KEY | OWN_NAME: which of key and name hold a reference

cdef enum:
    # HEnt.own. The keys and names of the header-name table (_htab) live as long as the
    # process (the table is never freed), so an entry that points to them needs no reference:
    # no INCREF per header when parsing and no DECREF when the message goes.
    OWN_KEY = 1
    OWN_NAME = 2
    HEAD_CAP0 = 16          # entries allocated at first (most messages have fewer headers)
    # _Head.vc: the parsed values kept with the offsets, by the _cache key they stand for
    VC_AT_VIA = 0           # "@via"
    VC_FROM = 1             # "from"
    VC_TO = 2               # "to"
    VC_CSEQ = 3             # "cseq"
    VC_CONTACT = 4          # "contact"
    VC_N = 5
    # _Head.first / cnt: the headers every message has and the accessors look up, by id
    HOT_VIA = 1
    HOT_FROM = 2
    HOT_TO = 3
    HOT_CALL_ID = 4
    HOT_CSEQ = 5
    HOT_CONTACT = 6
    HOT_EXPIRES = 7
    HOT_N = 8


@cython.no_gc
@cython.freelist(16)
cdef class _Head:
    """Header fields of a parsed message as offsets into its bytes (never seen by pure code).

    No reference cycle can go through it (it holds bytes and strs only): not GC-tracked.
    """

    cdef object buf         # bytes the spans index: the datagram, or the framed stream message
    cdef HEnt* ents         # small, or a heap array for a message with more headers
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef Py_ssize_t nref    # entries that hold a reference (own set or value built)
    cdef bint ascii         # the whole header section is ASCII (how values are decoded)
    # The values the C accessors parsed (top Via, From, To, CSeq, Contact list), kept here
    # while the headers are offsets instead of in the message's ``_cache`` dict (no dict
    # insert per value; moved into ``_cache`` when the list is built, see _headers_list).
    # They are parsed values of this message: a cycle through them would need a caller to
    # store the message inside one of them, which is why the class can stay untracked.
    cdef PyObject* vc[VC_N]
    # Where the first header of each HOT_ key is (entry index + 1, 0: none) and how many
    # there are (up to 2), recorded by the parse: an accessor finds its header without a scan.
    cdef bint indexed
    cdef uint16_t first[HOT_N]
    cdef unsigned char cnt[HOT_N]
    # Entries of the usual message stored in the object itself: with the freelist, parsing
    # a message allocates no memory for its headers at all.
    cdef HEnt small[HEAD_CAP0]

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(VC_N):
            Py_XDECREF(self.vc[i])
            self.vc[i] = NULL
        cdef Py_ssize_t left = self.nref   # (most entries hold none: stop after the last)
        if self.ents != NULL:
            i = 0
            while left > 0 and i < self.n:
                if self.ents[i].own or self.ents[i].value != NULL:
                    left -= 1
                    if self.ents[i].own & OWN_KEY:
                        Py_XDECREF(self.ents[i].key)
                    if self.ents[i].own & OWN_NAME:
                        Py_XDECREF(self.ents[i].name)
                    Py_XDECREF(self.ents[i].value)
                i += 1
            if self.ents != self.small:
                _head_free(self.ents, self.cap)
            self.ents = NULL


# The arrays of HEAD_CAP1 entries that messages with more than HEAD_CAP0 headers grow into
# (an INVITE through proxies often has 17-30) are kept when freed, for the next such message:
# no malloc and free (too big for pymalloc) per message.
cdef enum:
    HEAD_CAP1 = 64
    BIG_POOL_N = 8

cdef HEnt* _big_pool[BIG_POOL_N]
cdef int _big_count = 0


cdef inline void _head_free(HEnt* ents, Py_ssize_t cap) noexcept:
    global _big_count
    if cap == HEAD_CAP1 and _big_count < BIG_POOL_N:
        _big_pool[_big_count] = ents
        _big_count += 1
    else:
        PyMem_Free(ents)


cdef int _head_grow(_Head h) except -1:
    global _big_count
    cdef Py_ssize_t cap
    cdef HEnt* grown
    if h.cap == 0:
        h.ents = h.small
        h.cap = HEAD_CAP0
        return 0
    cap = h.cap * 2
    if h.ents == h.small:
        cap = HEAD_CAP1
        if _big_count > 0:
            _big_count -= 1
            grown = _big_pool[_big_count]
        else:
            grown = <HEnt*>PyMem_Malloc(cap * sizeof(HEnt))
        if grown != NULL:
            memcpy(grown, h.small, h.n * sizeof(HEnt))
    else:
        grown = <HEnt*>PyMem_Realloc(h.ents, cap * sizeof(HEnt))
    if grown == NULL:
        raise MemoryError()
    h.ents = grown
    h.cap = cap
    return 0


cdef inline int _head_push(_Head h, PyObject* key, PyObject* name, PyObject* value,
                           Py_ssize_t vs, Py_ssize_t ve, int own) except -1:
    """Append an entry; takes the references own says key and name carry (the caller gives
    them up), and a new one to value (NULL: built from the span on first use)."""
    cdef HEnt* e
    if h.n == h.cap:
        try:
            _head_grow(h)
        except BaseException:
            if own & OWN_KEY:
                Py_XDECREF(key)
            if own & OWN_NAME:
                Py_XDECREF(name)
            raise
    e = &h.ents[h.n]
    e.key = key
    e.name = name
    e.own = own
    Py_XINCREF(value)
    e.value = value
    e.vs = vs
    e.ve = ve
    h.n += 1
    if own or value != NULL:
        h.nref += 1
    return 0


cdef inline PyObject* _head_value(_Head h, Py_ssize_t i) except NULL:
    """The value str of entry i (borrowed; built from the bytes and kept on first use)."""
    if h.ents[i].value != NULL:
        return h.ents[i].value
    return _head_value_new(h, i)


cdef PyObject* _head_value_new(_Head h, Py_ssize_t i) except NULL:
    cdef HEnt* e = &h.ents[i]
    cdef const unsigned char* p
    if e.value == NULL:
        p = <const unsigned char*>PyBytes_AS_STRING(h.buf)
        v = _decode(p, e.vs, e.ve, h.ascii)
        Py_INCREF(v)
        e.value = <PyObject*>v
        if not e.own:
            h.nref += 1
    return e.value


cdef list _head_list(_Head h):
    """The ``_headers`` list the pure twin builds for the same bytes."""
    cdef Py_ssize_t i
    cdef list lst = PyList_New(h.n)
    cdef tuple t
    for i in range(h.n):
        t = (<object>h.ents[i].key, <object>h.ents[i].name, <object>_head_value(h, i))
        Py_INCREF(t)
        PyList_SET_ITEM(lst, i, <PyObject*>t)
    return lst


cdef object _parse_head(const unsigned char* p, Py_ssize_t start, Py_ssize_t limit,
                        object limits, CLimits* lim, HeadInfo* info):
    """Start line and header fields from p[start], up to the first CRLFCRLF before limit
    (info.end gets its index; none: "no empty line" ParseError, offset limit).

    The caller sets the _Head's ``buf`` (info.head) to the bytes p points into.
    """
    cdef _Head head = _Head.__new__(_Head)
    msg = _parse_fields(p, start, limit, lim, info, head)
    head.indexed = head.n < 65535   # (first[] holds entry indexes + 1 as uint16)
    global _SELF
    cdef _Shape shape = _REQ if info.is_request else _RESP
    if _SELF is None:
        _SELF = _sys.modules[__name__]
    info.head = <PyObject*>head
    shape.put(msg, M_HEADERS, head)
    if _slot(msg, _O_CACHE) == NULL:   # (a pooled message keeps its empty dict)
        shape.put(msg, M_CACHE, {})
    shape.put(msg, M_LIMITS, limits)
    shape.put(msg, M_P, _SELF)
    return msg


cdef inline int _head_done(object msg, HeadInfo* info, object buf) except -1:
    """Point the message's _Head at the bytes its offsets index (materialize when not lazy)."""
    cdef _Head head = <_Head>info.head
    head.buf = buf
    if not _LAZY_HEADERS:
        (_REQ if info.is_request else _RESP).put(msg, M_HEADERS, _head_list(head))
    return 0


cdef object _parse_fields(const unsigned char* p, Py_ssize_t start, Py_ssize_t limit,
                          CLimits* lim, HeadInfo* info, _Head head):
    """The lines from p[start] to the first CRLFCRLF, which must start before limit - 3.

    A line is checked before the next one is looked at, so every line seen lies before that
    CRLFCRLF: the same lines, in the same order, as when it is found first. Sets head.ascii.
    """
    cdef Py_ssize_t e, pos, j, k, nl, vs, ve, size, name_pos, nh = 0
    cdef unsigned hi = 0
    cdef Py_ssize_t max_headers = lim.max_headers, max_len = lim.max_header_length
    cdef int hot
    cdef Ent* ent
    cdef PyObject* shared = NULL
    cdef PyObject* kp
    cdef PyObject* np
    cdef PyObject* vp
    cdef int own
    cdef UEnt* ue
    cdef const unsigned char* q
    cdef object msg, name, key, value

    e = _line_end(p, start, limit, &hi)
    if e == -2:
        raise _err("no empty line after the header section", limit)
    if e < 0:
        raise _err("bare CR or LF in start line", start)
    msg = _parse_start(p, start, e, lim, hi == 0)
    info.is_request = Py_TYPE(msg) == _T_REQUEST
    info.cl_count = 0
    info.cl_value = NULL
    # (p[e + 2], p[e + 3] exist: _line_end found a CRLF at e, and a CRLF at e + 2 or more
    # octets follow it, else the next _line_end says -2)
    while not (e + 3 < limit and p[e + 2] == CH_CR and p[e + 3] == CH_LF):
        pos = e + 2
        e = _line_end(p, pos, limit, &hi)
        if e == -2:
            raise _err("no empty line after the header section", limit)
        if e < 0:
            raise _err("bare CR or LF in header", pos)
        if pos < e and (p[pos] == CH_SP or p[pos] == CH_HT):
            # every continuation line is consumed with the header it continues (_fold)
            raise _err("continuation line before any header", pos)
        # The usual field: a known name, as written up to its colon (table names are tokens,
        # so a match is a valid name). Else the name is scanned and checked octet by octet.
        ent = NULL
        k = _colon16(p, pos, e, limit)
        if k > pos:
            ent = _header_name(p + pos, k - pos, &shared, pos + 16 <= limit)
        if ent != NULL:
            j = k
        else:
            j = pos
            while j < e and (_ct[p[j]] & C_TOKEN):
                j += 1
            k = j
            while k < e and (p[k] == CH_SP or p[k] == CH_HT):
                k += 1
            nl = j - pos
            if 0 < nl < NAME_MAX:
                ent = _header_name(p + pos, nl, &shared)
        if j == pos or k >= e or p[k] != CH_COLON:
            q = <const unsigned char*>memchr(p + pos, CH_COLON, <size_t>(e - pos))
            if q == NULL:
                raise _err("header line without colon", pos)
            k = q - p
            while k > pos and (p[k - 1] == CH_SP or p[k - 1] == CH_HT):
                k -= 1
            if k == pos:
                raise _err("empty header name", pos)
            raise _err("bad header name", pos)
        if nh >= max_headers:
            raise _err("too many headers", pos, 513)
        nl = j - pos
        name_pos = pos
        size = e - pos
        if size > max_len:
            raise _err("header too long", pos, 513)
        vs = k + 1
        ve = e
        while vs < ve and (p[vs] == CH_SP or p[vs] == CH_HT):
            vs += 1
        while ve > vs and (p[ve - 1] == CH_SP or p[ve - 1] == CH_HT):
            ve -= 1
        vp = NULL   # the value is built from p[vs:ve] when first read
        if e + 2 < limit and (p[e + 2] == CH_SP or p[e + 2] == CH_HT):
            value = _fold(p, vs, ve, &pos, &e, limit, &size, name_pos, max_len, &hi)
            vp = <PyObject*>value
        # key and name point to _htab's strs when the name is known and spelt as usual (no
        # reference taken: see OWN_KEY); any other str made here is handed to the entry
        if ent != NULL:
            kp = ent.key
            if shared != NULL:
                np = shared
                own = 0
            else:
                np = _new_ascii(p + name_pos, nl)
                own = OWN_NAME
        else:
            ue = _unknown_name(p + name_pos, nl) if nl < NAME_MAX else NULL
            if ue != NULL:
                kp = ue.key
                np = ue.name
                own = 0
            else:
                name = _ascii_str(p + name_pos, nl)
                key = header_key(name)
                Py_INCREF(key)
                Py_INCREF(name)
                kp = <PyObject*>key
                np = <PyObject*>name
                own = OWN_KEY | OWN_NAME
        if (ent != NULL and (ent.flags & F_CONTENT_LENGTH)) or \
                (ent == NULL and (kp == <PyObject*>S_CONTENT_LENGTH or (
                    own and <object>kp == S_CONTENT_LENGTH))):
            info.cl_count += 1
            if info.cl_count == 1:
                info.cl_value = vp
                info.cl_p = p + vs
                info.cl_n = ve - vs
        _head_push(head, kp, np, vp, vs, ve, own)
        if ent != NULL and (ent.flags >> 8):
            hot = ent.flags >> 8
            if head.cnt[hot] == 0:
                head.first[hot] = <uint16_t>(nh + 1)
                head.cnt[hot] = 1
            else:
                head.cnt[hot] = 2
        nh += 1
    info.end = e
    head.ascii = hi == 0
    return msg


cdef Py_ssize_t _content_length_octets(HeadInfo* info, CLimits* lim,
                                       Py_ssize_t offset) except -2:
    """_content_length from the value's octets (not folded). Any octet that is not an ASCII
    digit fails as the decoded value would (a non-ASCII character is not a digit either), so
    only all-digit values get further, and for them octets and characters are the same."""
    cdef const unsigned char* d = info.cl_p
    cdef Py_ssize_t n = info.cl_n, i, z
    cdef unsigned long long v = 0
    if n == 0:
        raise _err("bad Content-Length", offset)
    for i in range(n):
        if d[i] < 48 or d[i] > 57:
            raise _err("bad Content-Length", offset)
    z = 0
    while z < n and d[z] == 48:
        z += 1
    if n - z > 10:
        raise _err("Content-Length too large", offset, 413 if info.is_request else 513)
    for i in range(z, n):
        v = v * 10 + (d[i] - 48)
    if v > <unsigned long long>lim.max_message_size:
        raise _err("Content-Length too large", offset, 413 if info.is_request else 513)
    return <Py_ssize_t>v


cdef Py_ssize_t _content_length(HeadInfo* info, CLimits* lim, Py_ssize_t offset) except -2:
    """The Content-Length value, or -1 when absent (checks as the pure twin)."""
    cdef Py_ssize_t n, i, z
    cdef UC c
    cdef unsigned long long v = 0
    cdef int kind
    cdef const void* data
    if info.cl_count > 1:
        raise _err("multiple Content-Length headers", offset)
    if info.cl_count == 0:
        return -1
    if info.cl_value == NULL:
        return _content_length_octets(info, lim, offset)
    cdef str value = <str><object>info.cl_value
    n = PyUnicode_GET_LENGTH(value)
    kind = PyUnicode_KIND(value)
    data = PyUnicode_DATA(value)
    if n == 0:
        raise _err("bad Content-Length", offset)
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 48 or c > 57:
            raise _err("bad Content-Length", offset)
    z = 0
    while z < n and PyUnicode_READ(kind, data, z) == 48:
        z += 1
    if n - z > 10:
        raise _err("Content-Length too large", offset, 413 if info.is_request else 513)
    for i in range(z, n):
        v = v * 10 + (PyUnicode_READ(kind, data, i) - 48)
    if v > <unsigned long long>lim.max_message_size:
        raise _err("Content-Length too large", offset, 413 if info.is_request else 513)
    return <Py_ssize_t>v


def parse_datagram(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one SIP message from a UDP datagram.

    Args:
        data: the datagram (``bytes``; a ``bytearray`` is copied to ``bytes`` first).
        limits: parser limits.

    Returns:
        The message. Header values are parsed lazily by its accessors.

    Raises:
        ParseError: malformed start line or header section, bad framing, or a limit exceeded.
        TypeError: data is neither bytes nor bytearray.
    """
    cdef CLimits lim
    cdef Py_ssize_t n, start, end, body_start, stop, cl
    cdef const unsigned char* p
    cdef HeadInfo info
    cdef object buf, msg
    cdef _Shape shape
    cdef bint found = True
    _load_limits(limits, &lim)
    if PyBytes_Check(data):
        buf = data
        n = PyBytes_GET_SIZE(data)
    else:
        n = len(data)
        if n > lim.max_message_size:
            raise _err("message too large", limits.max_message_size, 513)
        if not PyByteArray_Check(data):
            raise TypeError(f"a bytes-like datagram is required, not {type(data).__name__}")
        # a private copy (nothing can resize it while we hold pointers), and the message's body
        # and raw bytes are bytes, as for bytes input (the pure twin copies too)
        data = buf = bytes(data)
    if n > lim.max_message_size:
        raise _err("message too large", limits.max_message_size, 513)
    p = <const unsigned char*>PyBytes_AS_STRING(buf)
    start = 0
    while start + 1 < n and p[start] == CH_CR and p[start + 1] == CH_LF:
        start += 2
    # One pass finds the lines and the CRLFCRLF that ends them. The pure twin looks for that
    # CRLFCRLF first: when there is none, its error is the one to raise, whatever went wrong.
    try:
        msg = _parse_head(p, start, n, limits, &lim, &info)
    except ParseError:
        if _find_crlfcrlf(p, start, n) >= 0:
            raise
        found = False
    if not found:
        raise _err("no empty line after the header section", n)
    end = info.end
    _head_done(msg, &info, buf)   # the offsets index buf (p points into it)
    body_start = end + 4
    cl = _content_length(&info, &lim, start)
    if cl < 0:
        stop = n
    else:
        stop = body_start + cl
        if stop > n:
            raise _err("Content-Length larger than the body", n)
    shape = _REQ if info.is_request else _RESP
    shape.put(msg, M_BODY,
              PyBytes_FromStringAndSize(<const char*>p + body_start, stop - body_start))
    if start == 0 and stop == n:
        shape.put(msg, M_RAW, data)
    else:
        shape.put(msg, M_RAW, PyBytes_FromStringAndSize(<const char*>p + start, stop - start))
    return msg


def _stream_parser_init(*, limits: Limits = DEFAULT_LIMITS) -> None:
    pass


cdef class StreamParser:
    """Frames SIP messages on a TCP/TLS byte stream (RFC 3261 §18.3, RFC 5626 §4.4.1).

    After a :class:`ParseError` the stream cannot be resynchronised: the parser stays broken and
    the transport must close the connection.
    """

    cdef bytearray _buf
    cdef int _crlf
    cdef bint _broken
    cdef object _limits
    cdef CLimits _lim
    #: CRLFCRLF keepalive pings seen by the last :meth:`feed` call (answer each with CRLF).
    cdef public Py_ssize_t pings

    # inspect.signature() cannot see into an extension type's __init__: state the pure twin's.
    __signature__ = _inspect.signature(_stream_parser_init)

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        _load_limits(limits, &self._lim)
        self._buf = bytearray()
        self._crlf = 0
        self._broken = False
        self._limits = limits
        self.pings = 0

    def __reduce__(self):
        # picklable like the pure twin (whose __slots__ state pickles by default)
        return (_stream_parser_restore,
                (self._limits, bytes(self._buf), self._crlf, self._broken, self.pings))

    @property
    def buffered(self) -> int:
        """Bytes received but not yet framed into a message."""
        return PyByteArray_GET_SIZE(self._buf)

    def feed(self, data: bytes) -> list[Request | Response]:
        """Add bytes; return every message completed by them, in order.

        Raises:
            ParseError: the stream is malformed; close the connection.
        """
        if self._broken:
            raise _err("stream parser is broken by an earlier error")
        self.pings = 0
        cdef bytearray buf = self._buf
        cdef bint direct = PyByteArray_GET_SIZE(buf) == 0 and PyBytes_CheckExact(data)
        cdef list out = []
        cdef Py_ssize_t i, o = 0, n, end, cl, total
        cdef const unsigned char* p
        cdef Py_buffer view
        cdef HeadInfo info
        cdef object msg, raw
        cdef _Shape shape
        if direct:
            # Nothing buffered: frame straight from the immutable bytes, copy only a remainder.
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            buf += data
            # A buffer export pins the bytearray (no resize, no move) while we hold p.
            PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
            p = <const unsigned char*>view.buf
            n = view.len
        try:
            while o < n:
                # RFC 5626 §4.4.1 keepalives between messages.
                i = o
                while i + 1 < n and p[i] == CH_CR and p[i + 1] == CH_LF:
                    i += 2
                    self._crlf += 1
                    if self._crlf == 2:
                        self.pings += 1
                        self._crlf = 0
                o = i
                if o == n or (n - o == 1 and p[o] == CH_CR):
                    break
                self._crlf = 0
                end = _find_crlfcrlf(p + o, 0, n - o)
                if end < 0:
                    if n - o > self._lim.max_message_size:
                        raise _err("header section too large", self._limits.max_message_size, 513)
                    break
                if end + 4 > self._lim.max_message_size:
                    raise _err("header section too large", self._limits.max_message_size, 513)
                msg = _parse_head(p + o, 0, end + 4, self._limits, &self._lim, &info)
                cl = _content_length(&info, &self._lim, 0)
                if cl < 0:
                    cl = 0
                total = end + 4 + cl
                if total > self._lim.max_message_size:
                    raise _err("message too large", 0, 413 if info.is_request else 513)
                if n - o < total:
                    break
                if direct and o == 0 and total == n:
                    raw = data
                else:
                    raw = PyBytes_FromStringAndSize(<const char*>p + o, total)
                o += total
                shape = _REQ if info.is_request else _RESP
                shape.put(msg, M_BODY,
                          PyBytes_FromStringAndSize(PyBytes_AS_STRING(raw) + end + 4, cl))
                shape.put(msg, M_RAW, raw)
                _head_done(msg, &info, raw)   # the offsets (from p + o) index raw
                out.append(msg)
        except ParseError:
            self._broken = True
            raise
        finally:
            # what was framed (messages, keepalives) leaves the buffer, even on error
            if direct:
                if o < n:
                    buf += (<bytes>data)[o:]
            else:
                PyBuffer_Release(&view)
                if o:
                    del buf[:o]
        return out


def _stream_parser_restore(limits, buf, crlf, broken, pings):
    cdef StreamParser sp = StreamParser(limits=limits)
    sp._buf += buf
    sp._crlf = crlf
    sp._broken = broken
    sp.pings = pings
    return sp


# --------------------------------------------------------------------------------------------
# value parsers: str scanned through PyUnicode_KIND/DATA
# --------------------------------------------------------------------------------------------
# Every scanning function is specialised (fused type) for the three PyUnicode storage kinds, so
# reading a character is a plain array load; the public functions dispatch once on the kind.
ctypedef fused UCH:
    uint8_t
    uint16_t
    uint32_t


cdef inline Py_ssize_t _skip_ws(const UCH* d, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and (d[i] == CH_SP or d[i] == CH_HT):
        i += 1
    return i


cdef inline Py_ssize_t _find(const UCH* d, UC ch, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """First index of the ASCII character ch in d[a:b], or -1."""
    cdef const uint8_t* q
    if UCH is uint8_t:
        if b - a > 16:
            q = <const uint8_t*>memchr(d + a, <int>ch, <size_t>(b - a))
            return -1 if q == NULL else q - d
    while a < b:
        if d[a] == ch:
            return a
        a += 1
    return -1


cdef inline bint _chars_ok(const UCH* d, Py_ssize_t a, Py_ssize_t b,
                           unsigned int mask) noexcept nogil:
    """The pure ``_check_chars``: every ASCII character in the class; non-ASCII is allowed."""
    cdef UC c
    while a < b:
        c = d[a]
        if c < 128 and not (_ct[c] & mask):
            return False
        a += 1
    return True


cdef inline int _chars_ok_pct(const UCH* d, Py_ssize_t a, Py_ssize_t b,
                              unsigned int mask) noexcept nogil:
    """_chars_ok, and whether a "%" was seen (one pass instead of two): 0 a bad character,
    1 fine, 2 fine with an escape to decode (every class this is used with has "%")."""
    cdef UC c
    cdef int r = 1
    while a < b:
        c = d[a]
        if c < 128:
            if not (_ct[c] & mask):
                return 0
            if c == CH_PCT:
                r = 2
        a += 1
    return r


cdef inline bint _all_in(const UCH* d, Py_ssize_t a, Py_ssize_t b,
                         unsigned int mask) noexcept nogil:
    """Every character in the (ASCII) class."""
    while a < b:
        if not _is(d[a], mask):
            return False
        a += 1
    return True


cdef inline Py_ssize_t _span(const UCH* d, Py_ssize_t i, Py_ssize_t n,
                             unsigned int mask) noexcept nogil:
    """First index at or after i whose character is not in the (ASCII) class."""
    while i < n and _is(d[i], mask):
        i += 1
    return i


cdef inline object _sub(str s, Py_ssize_t a, Py_ssize_t b):
    """s[a:b] (0 <= a <= b <= len(s)).

    An ASCII slice of two or more characters that is not the whole string is copied straight
    into a new ASCII str: the same result as PyUnicode_Substring, without its generic checks
    (it is called for every host, user, tag and branch read).
    """
    if b - a > 1 and PyUnicode_IS_COMPACT_ASCII(s) and b - a < PyUnicode_GET_LENGTH(s):
        return _ascii_str(<const unsigned char*>PyUnicode_DATA(s) + a, b - a)
    return PyUnicode_Substring(s, a, b)


cdef Py_ssize_t _token_end(const UCH* d, Py_ssize_t i, Py_ssize_t n, str what) except -1:
    cdef Py_ssize_t j = _span(d, i, n, C_TOKEN)
    if j == i:
        raise _err(f"expected a token in {what}")
    return j


cdef Py_ssize_t _quoted_end(const UCH* d, Py_ssize_t i, Py_ssize_t n, str what) except -1:
    """Index just past the quoted-string starting at i (the opening DQUOTE)."""
    cdef Py_ssize_t j = i + 1
    cdef UC c
    while j < n:
        c = d[j]
        if c == CH_BSLASH:
            j += 2
            continue
        if c == CH_DQUOTE:
            return j + 1
        j += 1
    raise _err(f"unterminated quoted string in {what}")


cdef object _unquote_pairs(str raw):
    """Resolve quoted-pairs (``\\x`` -> ``x``): the pure twin's algorithm (rare path)."""
    chars = []
    cdef Py_ssize_t k = 0, n = len(raw)
    while k < n:
        if raw[k] == "\\":
            k += 1
        if k < n:
            chars.append(raw[k])
        k += 1
    return "".join(chars)


cdef inline object _unquote(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b):
    """Inside of a quoted-string with quoted-pairs resolved."""
    if _find(d, CH_BSLASH, a, b) < 0:
        return _sub(text, a, b)
    return _unquote_pairs(_sub(text, a, b))


cdef object _unescape_slow(str text, str what):
    # The pure twin's algorithm, step for step (a lone surrogate outside U+DC80..U+DCFF, which
    # only a caller's str can hold, is a ParseError).
    out = bytearray()
    cdef Py_ssize_t i = 0, n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            h = text[i + 1 : i + 3]
            if len(h) != 2 or not _is(ord(h[0]), C_HEX) or not _is(ord(h[1]), C_HEX):
                raise _err(f"bad escape in {what}")
            out.append(int(h, 16))
            i += 3
        else:
            try:
                out += ch.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise _err(f"bad character in {what}") from None
            i += 1
    return out.decode("utf-8", "surrogateescape")


cdef inline object _unescape(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b, str what):
    """text[a:b] with %HH decoded exactly once (RFC 3261 §19.1.2, RFC 4475 §3.1.1.3)."""
    if _find(d, CH_PCT, a, b) < 0:
        return _sub(text, a, b)
    return _unescape_slow(_sub(text, a, b), what)


cdef inline int _check_unescape(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b,
                                str what) except -1:
    """Raise what ``_unescape`` would raise for text[a:b], without building its result."""
    if _find(d, CH_PCT, a, b) >= 0:
        _unescape_slow(_sub(text, a, b), what)
    return 0


cdef object _lower_name(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b, bint unescape,
                        str what):
    """``text[a:b].lower()`` (after ``_unescape`` when asked), interned for common names."""
    cdef unsigned char low[NAME_MAX]
    cdef Py_ssize_t k, n = b - a
    cdef UC c
    cdef size_t h = 5381
    cdef bint up = False
    cdef Ent* e
    for k in range(n):
        c = d[a + k]
        if c >= 128 or (unescape and c == CH_PCT):
            # str.lower() is Unicode-aware: leave such names to it
            if unescape:
                return _unescape(text, d, a, b, what).lower()
            return _sub(text, a, b).lower()
        if 65 <= c <= 90:
            c += 32
            up = True
        if k < NAME_MAX:
            low[k] = <unsigned char>c
        h = _hash_step(h, <unsigned char>c)
    if n < NAME_MAX:
        e = _lookup(_ptab, 255, low, n, h)
        if e != NULL:
            return <object>e.key
    s = _sub(text, a, b)
    return s.lower() if up else s


cdef object _parse_host(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b, str what,
                        Py_ssize_t* port_out, bint build=True):
    """host [":" port] in text[a:b] (RFC 3261 §25.1, RFC 5118); port -1 when absent.

    With ``build`` False only the checks run and the result is None.
    """
    cdef Py_ssize_t close, colon, pa, he, k
    cdef long port
    if a < b and d[a] == CH_LBRACKET:
        close = _find(d, CH_RBRACKET, a, b)
        if close < 0:
            raise _err(f"unterminated IPv6 reference in {what}")
        if close - a - 1 < 2 or _find(d, CH_COLON, a + 1, close) < 0 \
                or not _all_in(d, a + 1, close, C_IPV6):
            raise _err(f"bad IPv6 reference in {what}")
        host = _sub(text, a, close + 1) if build else None
        if close + 1 == b:
            port_out[0] = -1
            return host
        if d[close + 1] != CH_COLON:
            raise _err(f"bad host in {what}")
        pa = close + 2
    else:
        # host characters never include ":", so the first colon is at or after their span
        k = _span(d, a, b, C_HOST)
        colon = k if (k < b and d[k] == CH_COLON) else _find(d, CH_COLON, k, b)
        he = colon if colon >= 0 else b
        if he == a:
            raise _err(f"missing host in {what}")
        if k != he:   # a character that cannot be in a host before the colon / end
            raise _err(f"bad host in {what}")
        host = _sub(text, a, he) if build else None
        if colon < 0:
            port_out[0] = -1
            return host
        pa = colon + 1
    if pa == b or b - pa > 5 or not _all_in(d, pa, b, C_DIGIT):
        raise _err(f"bad port in {what}")
    port = 0
    for k in range(pa, b):
        port = port * 10 + <long>(d[k] - 48)
    if port > 65535:
        raise _err(f"bad port in {what}")
    port_out[0] = port
    return host


cdef tuple _SIP_PORTS = tuple(range(5060, 5071))   # shared int objects for the usual ports


cdef inline object _port_obj(Py_ssize_t port):
    if port < 0:
        return None
    if 5060 <= port <= 5070:
        return _SIP_PORTS[port - 5060]
    return PyLong_FromSsize_t(port)


cdef int _uri_params(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b, dict params,
                     str what) except -1:
    cdef Py_ssize_t ia = a, ib, semi, eq, ne
    cdef int ok
    while True:
        semi = _find(d, CH_SEMI, ia, b)
        ib = semi if semi >= 0 else b
        eq = _find(d, CH_EQ, ia, ib)
        ne = eq if eq >= 0 else ib
        if ne == ia:
            raise _err(f"empty parameter in {what}")
        ok = _chars_ok_pct(d, ia, ne, C_PARAM)
        if ok == 0:
            raise _err(f"bad character in {what}")
        if params is None:   # check only (a lazy value, built on first access)
            if ok == 2:
                _unescape_slow(_sub(text, ia, ne), what)
            if eq >= 0:
                ok = _chars_ok_pct(d, eq + 1, ib, C_PARAM)
                if ok == 0:
                    raise _err(f"bad character in {what}")
                if ok == 2:
                    _unescape_slow(_sub(text, eq + 1, ib), what)
        else:
            key = _lower_name(text, d, ia, ne, True, what)
            if eq >= 0:
                if not _chars_ok(d, eq + 1, ib, C_PARAM):
                    raise _err(f"bad character in {what}")
                val = _unescape(text, d, eq + 1, ib, what)
            else:
                val = None
            if key not in params:
                params[key] = val
        if semi < 0:
            return 0
        ia = semi + 1


cdef inline bint _in(UC c, unsigned int mask) noexcept nogil:
    """A character of the class (C_USER_NP, C_HOST, C_PARAM_NP: ASCII, no "%", so the fast
    checks never decode). ``c < 256`` is free for octets: _ct is 0 from 128 on."""
    return c < 256 and (_ct[c] & mask) != 0


cdef bint _plain_sip_uri(const UCH* d, Py_ssize_t s, Py_ssize_t e, Py_ssize_t* out) noexcept nogil:
    """True when d[s:e] is a sip/sips URI of the plain shape that _parse_uri's checks accept:
    ``sip[s]:[user@]host[:port]*(;name[=value])``, all ASCII, no escapes, no password, no IPv6
    reference, no headers. False means "not that shape" (the full checks then decide), never
    "invalid". One pass, instead of the several scans of the full checks.

    out: [0] 1 for sips, [1:3] the user span (-1, -1 when none), [3:5] the host span, [5] the
    port (-1 when none), [6] where the params start (their ";", or e).
    """
    cdef Py_ssize_t i, j, hs, ps, na
    cdef long port = -1
    if e - s < 5 or (d[s] | 0x20) != 0x73 or (d[s + 1] | 0x20) != 0x69 \
            or (d[s + 2] | 0x20) != 0x70:
        return False
    i = s + 3
    out[0] = 0
    if (d[i] | 0x20) == 0x73:
        i += 1
        out[0] = 1
    if d[i] != CH_COLON:
        return False
    i += 1
    # user: the text up to the first "@" (the full checks split there), if there is one
    out[1] = -1
    out[2] = -1
    j = i
    while j < e and _in(d[j], C_USER_NP):
        j += 1
    if j < e and d[j] == CH_AT:
        if j == i:
            return False
        out[1] = i
        out[2] = j
        i = j + 1
    # host (any "@" left ends up below as a character no class allows: the full checks)
    hs = i
    while i < e and _in(d[i], C_HOST):
        i += 1
    if i == hs:
        return False
    out[3] = hs
    out[4] = i
    if i < e and d[i] == CH_COLON:
        i += 1
        ps = i
        port = 0
        while i < e and 48 <= d[i] <= 57 and i - ps < 6:
            port = port * 10 + <long>(d[i] - 48)
            i += 1
        if i == ps or i - ps > 5 or port > 65535:
            return False
    out[5] = port
    out[6] = i
    while i < e:
        if d[i] != CH_SEMI:
            return False
        i += 1
        na = i
        while i < e and _in(d[i], C_PARAM_NP):
            i += 1
        if i == na:
            return False
        if i < e and d[i] == CH_EQ:
            i += 1
            while i < e and _in(d[i], C_PARAM_NP):
                i += 1
    return True


cdef object _parse_uri(str src, const UCH* d, Py_ssize_t s, Py_ssize_t e, object text,
                       bint build=True):
    """Parse the URI src[s:e]; ``text`` is that same string (kept as the URI's text).

    With ``build`` False only the checks run (in the same order) and the result is None.
    """
    cdef Py_ssize_t colon, i, rs, at = -1, at2 = -1, uc, ue, hs, he, q, ia, ib, amp, eq, semi
    cdef Py_ssize_t port
    cdef int ok
    cdef UC c0, c
    cdef Py_ssize_t plain[7]
    cdef dict pparams
    if _plain_sip_uri(d, s, e, plain):
        # the usual URI: one pass did the checks; the values are those the steps below build
        if not build:
            return None
        pparams = None
        if plain[6] < e:
            pparams = {}
            _uri_params(src, d, plain[6] + 1, e, pparams, "URI")
        return _new_uri(S_SIPS if plain[0] else S_SIP,
                        _sub(src, plain[1], plain[2]) if plain[1] >= 0 else None, None,
                        _sub(src, plain[3], plain[4]), _port_obj(plain[5]), pparams, None, None,
                        text)
    # scheme: ASCII letter, then scheme characters, up to the first colon
    colon = _span(d, s, e, C_SCHEME)
    if colon >= e or d[colon] != CH_COLON:
        colon = _find(d, CH_COLON, colon, e)
    if colon <= s:
        raise _err("URI without scheme")
    c0 = d[s]
    if not (c0 < 128 and ((65 <= c0 <= 90) or (97 <= c0 <= 122))) \
            or not _all_in(d, s, colon, C_SCHEME):
        raise _err("bad URI scheme")
    for i in range(colon + 1, e):
        c = d[i]
        if c < 128:
            if _ct[c] & C_BADURI:
                raise _err("bad character in URI")
            # the first and second "@" (used for sip / sips below), found in the same pass
            if c == CH_AT:
                if at < 0:
                    at = i
                elif at2 < 0:
                    at2 = i
    rs = colon + 1
    if colon - s == 3 and (c0 | 0x20) == 0x73 and (d[s + 1] | 0x20) == 0x69 \
            and (d[s + 2] | 0x20) == 0x70:
        scheme = S_SIP
    elif colon - s == 4 and (c0 | 0x20) == 0x73 and (d[s + 1] | 0x20) == 0x69 \
            and (d[s + 2] | 0x20) == 0x70 and (d[s + 3] | 0x20) == 0x73:
        scheme = S_SIPS
    elif colon - s == 3 and (c0 | 0x20) == 0x74 and (d[s + 1] | 0x20) == 0x65 \
            and (d[s + 2] | 0x20) == 0x6C:
        # RFC 3966 tel URI
        semi = _find(d, CH_SEMI, rs, e)
        ue = semi if semi >= 0 else e
        if ue == rs:
            raise _err("empty tel URI")
        if not _chars_ok(d, rs, ue, C_TEL):
            raise _err("bad character in tel URI")
        if not build:
            if semi >= 0:
                _uri_params(src, d, semi + 1, e, None, "tel URI")
            _check_unescape(src, d, rs, ue, "tel URI")
            return None
        tparams = {}
        if semi >= 0:
            _uri_params(src, d, semi + 1, e, tparams, "tel URI")
        return _new_uri(S_TEL, _unescape(src, d, rs, ue, "tel URI"), None, None, None, tparams,
                        None, None, text)
    else:
        # RFC 3261 §19.1.1 / RFC 4475 §3.3.2: other schemes are opaque
        if rs == e:
            raise _err("empty URI")
        if not build:
            return None
        return _new_uri(_sub(src, s, colon).lower(), None, None, None, None, None, None,
                        _sub(src, rs, e), text)
    # sip / sips (RFC 3261 §19.1)
    user = None
    password = None
    if at >= 0:
        if at2 >= 0:
            raise _err("more than one @ in URI")
        uc = _find(d, CH_COLON, rs, at)
        ue = uc if uc >= 0 else at
        if ue == rs:
            raise _err("empty user in URI")
        ok = _chars_ok_pct(d, rs, ue, C_USER)
        if ok == 0:
            raise _err("bad character in URI user")
        if build:
            user = _unescape_slow(_sub(src, rs, ue), "URI user") if ok == 2 else _sub(src, rs, ue)
        elif ok == 2:
            _unescape_slow(_sub(src, rs, ue), "URI user")
        if uc >= 0:
            ok = _chars_ok_pct(d, uc + 1, at, C_PASSWORD)
            if ok == 0:
                raise _err("bad character in URI password")
            if build:
                password = (_unescape_slow(_sub(src, uc + 1, at), "URI password") if ok == 2
                            else _sub(src, uc + 1, at))
            elif ok == 2:
                _unescape_slow(_sub(src, uc + 1, at), "URI password")
        hs = at + 1
    else:
        hs = rs
    # host part: the host ends at the first character that cannot be in a host
    he = _span(d, hs, e, C_HOST)
    q = _find(d, CH_QMARK, he, e)
    cdef dict headers = {} if build and q >= 0 else None   # None: empty (see _new_uri)
    if q >= 0:
        if q + 1 == e:
            raise _err("empty URI headers")
        ia = q + 1
        while True:
            amp = _find(d, CH_AMP, ia, e)
            ib = amp if amp >= 0 else e
            eq = _find(d, CH_EQ, ia, ib)
            if eq <= ia:
                raise _err("bad URI header")
            if not _chars_ok(d, ia, eq, C_HEADER) or not _chars_ok(d, eq + 1, ib, C_HEADER):
                raise _err("bad character in URI header")
            if build:
                hname = _unescape(src, d, ia, eq, "URI header")
                hvalue = _unescape(src, d, eq + 1, ib, "URI header")
                headers.setdefault(hname, hvalue)
            else:
                _check_unescape(src, d, ia, eq, "URI header")
                _check_unescape(src, d, eq + 1, ib, "URI header")
            if amp < 0:
                break
            ia = amp + 1
    else:
        q = e
    semi = _find(d, CH_SEMI, he, q)
    cdef dict params = {} if build and semi >= 0 else None
    if semi >= 0:
        _uri_params(src, d, semi + 1, q, params, "URI")
        q = semi
    host = _parse_host(src, d, hs, q, "URI", &port, build)
    if not build:
        return None
    return _new_uri(scheme, user, password, host, _port_obj(port), params, headers, None, text)


cdef inline int _kind(str t) except -1:
    _unicode_ready(t)
    return PyUnicode_KIND(t)


def parse_uri(text: str) -> URI:
    """Parse a URI: sip/sips (RFC 3261 §19.1), tel (RFC 3966), or any other scheme (opaque).

    Raises:
        ParseError: malformed URI.
    """
    cdef str t = text   # TypeError for anything but str
    cdef int kind = _kind(t)
    cdef const void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        return _parse_uri(t, <const uint8_t*>data, 0, n, t)
    if kind == 2:
        return _parse_uri(t, <const uint16_t*>data, 0, n, t)
    return _parse_uri(t, <const uint32_t*>data, 0, n, t)


cdef inline bint _name_is(const UCH* d, Py_ssize_t na, Py_ssize_t nb, const char* key,
                          Py_ssize_t klen) noexcept nogil:
    """d[na:nb] (a token) is the lower-case ASCII key, in any case."""
    cdef Py_ssize_t k
    cdef UC c
    if nb - na != klen:
        return False
    for k in range(klen):
        c = d[na + k]
        if 65 <= c <= 90:
            c += 32
        if c != <UC>(<unsigned char>key[k]):
            return False
    return True


cdef Py_ssize_t _gen_params(str text, const UCH* d, Py_ssize_t i, Py_ssize_t n, dict params,
                            str what, bint in_list, const char* fkey=NULL, Py_ssize_t fklen=0,
                            Py_ssize_t* found=NULL) except -1:
    """``*( SEMI generic-param )``; stops at the end, or at a comma when in_list.

    With ``fkey`` (lower case), found[0:2] gets the span of the first parameter of that name
    (what ``params.get(key)`` returns): -2 when there is none, -1 when it has no value.
    """
    cdef Py_ssize_t j, na, nb
    cdef UC c
    if fkey != NULL:
        found[0] = -2
    while True:
        i = _skip_ws(d, i, n)
        if i >= n:
            return i
        c = d[i]
        if c == CH_COMMA:
            if in_list:
                return i
            raise _err(f"unexpected comma in {what}")
        if c != CH_SEMI:
            raise _err(f"unexpected character in {what}")
        i = _skip_ws(d, i + 1, n)
        na = i
        nb = _token_end(d, i, n, what)
        i = _skip_ws(d, nb, n)
        value = None
        if i < n and d[i] == CH_EQ:
            i = _skip_ws(d, i + 1, n)
            if i < n and d[i] == CH_DQUOTE:
                j = _quoted_end(d, i, n, what)
            else:
                j = i
                while j < n and not _is(d[j], C_GPSTOP):
                    j += 1
                if j == i:
                    raise _err(f"empty parameter value in {what}")
            if params is not None:
                value = _sub(text, i, j)
            if fkey != NULL and found[0] == -2 and _name_is(d, na, nb, fkey, fklen):
                found[0] = i
                found[1] = j
            i = j
        elif fkey != NULL and found[0] == -2 and _name_is(d, na, nb, fkey, fklen):
            found[0] = -1
        if params is not None:
            key = _lower_name(text, d, na, nb, False, what)
            if key not in params:
                params[key] = value


cdef object _ascii_exact(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b, bint upper):
    """text[a:b] (a token; upper-cased when asked), interned when a well-known spelling."""
    cdef unsigned char buf[NAME_MAX]
    cdef Py_ssize_t k, n = b - a
    cdef UC c
    cdef size_t h = 5381
    cdef Ent* e
    cdef uint64_t v = 0
    cdef PyObject* o
    if 0 < n <= 8:   # every exact name this short is in _x8key: a miss is final
        for k in range(n):
            c = d[a + k]           # token: ASCII
            if upper and 97 <= c <= 122:
                c -= 32
            v |= (<uint64_t><unsigned char>c) << (8 * k)
        o = _x8find(v, n)
        if o != NULL:
            return <object>o
    elif 8 < n < NAME_MAX:
        for k in range(n):
            c = d[a + k]           # token: ASCII
            if upper and 97 <= c <= 122:
                c -= 32
            buf[k] = <unsigned char>c
            h = _hash_step(h, buf[k])
        e = _lookup(_xtab, 127, buf, n, h)
        if e != NULL:
            return <object>e.key
    if text is None:   # d points into ASCII octets (a value read from the message's bytes)
        if UCH is uint8_t:
            s = _ascii_str(<const unsigned char*>d + a, b - a)
            return s.upper() if upper else s
        else:
            raise SystemError("_ascii_exact: no text")
    if upper:
        return _sub(text, a, b).upper()
    return _sub(text, a, b)


cdef object _parse_host_str(str s, str what, Py_ssize_t* port_out):
    cdef int kind = _kind(s)
    cdef const void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s)
    if kind == 1:
        return _parse_host(s, <const uint8_t*>data, 0, n, what, port_out)
    if kind == 2:
        return _parse_host(s, <const uint16_t*>data, 0, n, what, port_out)
    return _parse_host(s, <const uint32_t*>data, 0, n, what, port_out)


cdef inline object _found_value(str text, Py_ssize_t* found):
    """The value _gen_params found (its span in text), or None."""
    if found[0] < 0:
        return None
    return _sub(text, found[0], found[1])


cdef Py_ssize_t _plain_params(const UCH* d, Py_ssize_t j, Py_ssize_t n, bint in_list,
                              const char* fkey, Py_ssize_t fklen,
                              Py_ssize_t* found) noexcept nogil:
    """``*(;name[=value])`` at j in the plain form _gen_params accepts (token names, unquoted
    values of printable ASCII, no whitespace): its end (n, or a comma when in_list), else -1
    (_gen_params then decides). found[0:2]: the span of the first ``fkey`` value, as
    _gen_params reports it (-2 none, -1 no value)."""
    cdef Py_ssize_t na, va
    found[0] = -2
    found[1] = -2
    while j < n:
        if d[j] != CH_SEMI:
            return j if in_list and d[j] == CH_COMMA else -1
        j += 1
        na = j
        while j < n and _in(d[j], C_TOKEN):
            j += 1
        if j == na:
            return -1
        va = -1
        if j < n and d[j] == CH_EQ:
            j += 1
            va = j
            # an unquoted value: what _gen_params takes, less non-ASCII and controls
            while j < n and _in(d[j], C_PVALUE):
                j += 1
            if j == va:
                return -1
        if found[0] == -2 and _name_is(d, na, va - 1 if va >= 0 else j, fkey, fklen):
            found[0] = va
            found[1] = j
    return j


cdef Py_ssize_t _plain_via(const UCH* d, Py_ssize_t i, Py_ssize_t n,
                           Py_ssize_t* out) noexcept nogil:
    """The end (n, or the index of the comma before the next value) of the via-parm at i when
    it has the plain shape the full steps of _parse_via accept: ``SIP/2.0/TRANSPORT SP
    host[:port]*(;name[=value])`` with a token transport, a host of host characters, no other
    whitespace, no quoted value; else -1 (the full steps then decide: -1 never means invalid).

    out: [0:2] the transport span, [2:4] the host span, [4] the port (-1 when none), [5:7] the
    branch value span as _gen_params reports it (-2 none, -1 no value).
    """
    cdef Py_ssize_t j, ps
    cdef long port = -1
    if n - i < 10 or d[i] != 0x53 or d[i + 1] != 0x49 or d[i + 2] != 0x50 \
            or d[i + 3] != CH_SLASH or d[i + 4] != 0x32 or d[i + 5] != 0x2E \
            or d[i + 6] != 0x30 or d[i + 7] != CH_SLASH:
        return -1
    i += 8
    j = i
    while j < n and _in(d[j], C_TOKEN):
        j += 1
    if j == i or j >= n or d[j] != CH_SP:
        return -1
    out[0] = i
    out[1] = j
    i = j + 1
    j = i
    while j < n and _in(d[j], C_HOST):
        j += 1
    if j == i:
        return -1
    out[2] = i
    out[3] = j
    if j < n and d[j] == CH_COLON:
        j += 1
        ps = j
        port = 0
        while j < n and 48 <= d[j] <= 57 and j - ps < 6:
            port = port * 10 + <long>(d[j] - 48)
            j += 1
        if j == ps or j - ps > 5 or port > 65535:
            return -1
    out[4] = port
    return _plain_params(d, j, n, True, b"branch", 6, &out[5])


cdef Py_ssize_t _protocol_part(const UCH* d, Py_ssize_t i, Py_ssize_t n,
                               Py_ssize_t* end) except -1:
    """A sent-protocol token at i and the "/" after it (LWS around it allowed): end gets the
    token's end; returns where the next part starts."""
    end[0] = _token_end(d, i, n, "Via")
    i = _skip_ws(d, end[0], n)
    if i >= n or d[i] != CH_SLASH:
        raise _err("bad sent-protocol in Via")
    return _skip_ws(d, i + 1, n)


cdef object _parse_via(str text, const UCH* d, Py_ssize_t n, object max_via, bint top_only):
    """The Via values of one header value (all checked); with top_only the first one, not
    the list (``Message.via`` reads only the top value: no list to build and drop)."""
    cdef Py_ssize_t i = 0, j, k, pp, close, na, nb, va, vb, ta, tb, port, limit = 0, count = 0
    cdef Py_ssize_t found[2]
    cdef Py_ssize_t pv[7]
    cdef bint c_limit = PyLong_CheckExact(max_via)
    if c_limit:
        limit = _clamp(max_via)
    cdef list out = None if top_only else []
    cdef object top = None
    while True:
        i = _skip_ws(d, i, n)
        na = i
        k = _plain_via(d, i, n, pv)
        if k >= 0:   # the usual via-parm: one pass did the checks of the steps below
            i = k
            via = _new_via(S_SIP20, _ascii_exact(text, d, pv[0], pv[1], True),
                           _sub(text, pv[2], pv[3]), _port_obj(pv[4]), None,
                           text if (na == 0 and i == n) else _sub(text, na, i),
                           _found_value(text, &pv[5]))
        else:
            i = _protocol_part(d, i, n, &nb)
            va = i
            i = _protocol_part(d, i, n, &vb)
            ta = i
            tb = _token_end(d, i, n, "Via")
            i = tb
            j = _skip_ws(d, i, n)
            if j == i:
                raise _err("missing sent-by in Via")
            i = j
            if j < n and d[j] == CH_LBRACKET:
                close = _find(d, CH_RBRACKET, j, n)
                if close < 0:
                    raise _err("unterminated IPv6 reference in Via")
                j = close + 1
            while j < n and not _is(d[j], C_VIASTOP):
                j += 1
            k = _skip_ws(d, j, n)
            if k < n and d[k] == CH_COLON:
                # LWS before the port colon (RFC 3261 allows ``host : port``): rare, rebuild text
                pp = _skip_ws(d, k + 1, n)
                k = pp
                pp = _span(d, pp, n, C_DIGIT)
                hostport = _sub(text, i, j) + ":" + _sub(text, k, pp)
                host = _parse_host_str(hostport, "Via", &port)
                i = pp
            else:
                host = _parse_host(text, d, i, j, "Via", &port)
                i = k
            # params: checked now, built on first access (_values_c.Via.params) from the
            # via-parm's text
            i = _gen_params(text, d, i, n, None, "Via", True, b"branch", 6, found)
            if vb - va == 3 and nb - na == 3 and d[na] == 0x53 and d[na + 1] == 0x49 \
                    and d[na + 2] == 0x50 and d[va] == 0x32 and d[va + 1] == 0x2E \
                    and d[va + 2] == 0x30:
                protocol = S_SIP20
            else:
                protocol = f"{_sub(text, na, nb)}/{_sub(text, va, vb)}"
            via = _new_via(protocol, _ascii_exact(text, d, ta, tb, True), host, _port_obj(port),
                           None, text if (na == 0 and i == n) else _sub(text, na, i),
                           _found_value(text, found))
        count += 1
        if top_only:
            if count == 1:
                top = via
        else:
            out.append(via)
        if (count > limit) if c_limit else (count > max_via):
            raise _err("too many Via values", -1, 513)
        if i >= n:
            return top if top_only else out
        i += 1  # the comma


def parse_via(text: str, max_via: int = 70) -> list[Via]:
    """Parse one Via header field value, which may hold several via-parms (RFC 3261 §20.42).

    Raises:
        ParseError: malformed value, or more than ``max_via`` values (513).
    """
    return _via_values(text, max_via)


cdef object _via_values(object text, object max_via, bint top_only=False):
    cdef str t = text   # TypeError for anything but str
    cdef int kind = _kind(t)
    cdef const void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        return _parse_via(t, <const uint8_t*>data, n, max_via, top_only)
    if kind == 2:
        return _parse_via(t, <const uint16_t*>data, n, max_via, top_only)
    return _parse_via(t, <const uint32_t*>data, n, max_via, top_only)


cdef object _words(str text, const UCH* d, Py_ssize_t a, Py_ssize_t b):
    """``" ".join(text[a:b].split()) or None`` for a run of token characters, SP and HTAB."""
    cdef Py_ssize_t k
    cdef UC c, prev = 0
    while a < b and _is(d[a], C_WS):
        a += 1
    while b > a and _is(d[b - 1], C_WS):
        b -= 1
    if a == b:
        return None
    for k in range(a, b):
        c = d[k]
        if c == CH_HT or (c == CH_SP and prev == CH_SP):
            return " ".join(_sub(text, a, b).split())
        prev = c
    return _sub(text, a, b)


cdef object _parse_address_at(str text, const UCH* d, Py_ssize_t i, Py_ssize_t n,
                              bint in_list, str what, Py_ssize_t* end_out):
    """One address starting at text[i]; its end index goes to end_out.

    The URI and the params are checked here and built on first access (_values_c.Address) from the
    address's text, kept in ``_src``.
    """
    cdef Py_ssize_t j, close, a, b, start
    cdef bint name_addr
    cdef Py_ssize_t found[2]
    i = _skip_ws(d, i, n)
    if i >= n:
        raise _err(f"empty {what}")
    start = i
    display = None
    if d[i] == CH_DQUOTE:
        j = _quoted_end(d, i, n, what)
        display = _unquote(text, d, i + 1, j - 1)
        i = _skip_ws(d, j, n)
        if i >= n or d[i] != CH_LT:
            raise _err(f"expected < after display name in {what}")
        name_addr = True
    else:
        j = _span(d, i, n, C_TOKEN | C_WS)
        if j < n and d[j] == CH_LT:
            display = _words(text, d, i, j) if j > i else None
            i = j
            name_addr = True
        else:
            name_addr = False
    if name_addr:
        close = _find(d, CH_GT, i, n)
        if close < 0:
            raise _err(f"missing > in {what}")
        a = i + 1
        b = close
        if a == b or _is(d[a], C_WS) or _is(d[b - 1], C_WS):
            raise _err(f"whitespace inside <> in {what}")
        _parse_uri(text, d, a, b, None, False)
        i = close + 1
    else:
        j = i
        while j < n and not _is(d[j], C_VIASTOP):
            j += 1
        if _find(d, CH_QMARK, i, j) >= 0:
            raise _err(f"URI with headers must be in <> in {what}")
        _parse_uri(text, d, i, j, None, False)
        i = j
    j = _plain_params(d, i, n, in_list, b"tag", 3, found)
    i = j if j >= 0 else _gen_params(text, d, i, n, None, what, in_list, b"tag", 3, found)
    end_out[0] = i
    return _new_address(None, display, None,
                        text if (start == 0 and i == n) else _sub(text, start, i),
                        _found_value(text, found))


cdef object _parse_addresses(str text, const UCH* d, Py_ssize_t n, bint in_list):
    cdef Py_ssize_t i = 0
    cdef list out
    if not in_list:
        return _parse_address_at(text, d, 0, n, False, "address", &i)
    out = [_parse_address_at(text, d, 0, n, True, "address list", &i)]
    while i < n:
        out.append(_parse_address_at(text, d, i + 1, n, True, "address list", &i))
    return out


cdef object _dispatch_addresses(object text, bint in_list):
    cdef str t = text   # TypeError for anything but str
    cdef int kind = _kind(t)
    cdef const void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        return _parse_addresses(t, <const uint8_t*>data, n, in_list)
    if kind == 2:
        return _parse_addresses(t, <const uint16_t*>data, n, in_list)
    return _parse_addresses(t, <const uint32_t*>data, n, in_list)


def parse_address(text: str) -> Address:
    """Parse a From/To-style value: ``[display] <uri>;params`` or ``uri;params`` (§20.10).

    Raises:
        ParseError: malformed value.
    """
    return _dispatch_addresses(text, False)


def parse_address_list(text: str) -> list[Address]:
    """Parse a comma-separated list of addresses (Contact, Route, Record-Route, Path).

    Raises:
        ParseError: malformed value (including empty list elements).
    """
    return _dispatch_addresses(text, True)


cdef object _parse_cseq(str text, const UCH* d, Py_ssize_t n):
    cdef Py_ssize_t i, j, z, k, m
    cdef unsigned long long seq = 0
    i = _skip_ws(d, 0, n)
    j = _span(d, i, n, C_DIGIT)
    if j == i:
        raise _err("bad CSeq number")
    z = i
    while z < j and d[z] == 48:
        z += 1
    if j - z > 10:
        raise _err("CSeq number out of range")
    for k in range(z, j):
        seq = seq * 10 + <unsigned long long>(d[k] - 48)
    if seq > 0xFFFFFFFFULL:
        raise _err("CSeq number out of range")
    k = _skip_ws(d, j, n)
    if k == j:
        raise _err("bad CSeq")
    m = _token_end(d, k, n, "CSeq")
    if _skip_ws(d, m, n) != n:
        raise _err("bad CSeq")
    cdef CSeq o = CSeq.__new__(CSeq)
    o.seq = PyLong_FromUnsignedLongLong(seq)
    o.method = _ascii_exact(text, d, k, m, False)
    return o


def parse_cseq(text: str) -> CSeq:
    """Parse ``1*DIGIT LWS Method`` with the number in 0..2**32-1 (RFC 4475 §3.1.2.4).

    Raises:
        ParseError: malformed or out of range.
    """
    return _cseq_value(text)


cdef object _cseq_value(object text):
    cdef str t = text   # TypeError for anything but str
    cdef int kind = _kind(t)
    cdef const void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        return _parse_cseq(t, <const uint8_t*>data, n)
    if kind == 2:
        return _parse_cseq(t, <const uint16_t*>data, n)
    return _parse_cseq(t, <const uint32_t*>data, n)


cdef object _parse_auth(str text, const UCH* d, Py_ssize_t n):
    cdef Py_ssize_t i, j, r, r2, na, nb
    i = _skip_ws(d, 0, n)
    j = _token_end(d, i, n, "authorization")
    scheme = _ascii_exact(text, d, i, j, False)
    cdef dict params = {}
    i = _skip_ws(d, j, n)
    if i >= n:
        return _new_auth(scheme, params, frozenset())
    r = n
    while r > i and _is(d[r - 1], C_WS):
        r -= 1
    r2 = r
    while r2 > i and d[r2 - 1] == CH_EQ:
        r2 -= 1
    if r2 > i and _all_in(d, i, r2, C_TOKEN68):
        return _new_auth(scheme, {S_TOKEN68: _sub(text, i, r)}, frozenset())
    cdef set quoted = set()
    while True:
        i = _skip_ws(d, i, n)
        na = i
        nb = _token_end(d, i, n, "authorization")
        i = _skip_ws(d, nb, n)
        if i >= n or d[i] != CH_EQ:
            raise _err("bad auth-param")
        i = _skip_ws(d, i + 1, n)
        key = _lower_name(text, d, na, nb, False, "authorization")
        if i < n and d[i] == CH_DQUOTE:
            j = _quoted_end(d, i, n, "authorization")
            raw = _unquote(text, d, i + 1, j - 1)
            if key not in params:
                params[key] = raw
                quoted.add(key)
            i = j
        else:
            j = _token_end(d, i, n, "authorization")
            if key not in params:
                params[key] = _sub(text, i, j)
            i = j
        i = _skip_ws(d, i, n)
        if i >= n:
            return _new_auth(scheme, params, frozenset(quoted))
        if d[i] != CH_COMMA:
            raise _err("bad auth-param list")
        i += 1


def parse_auth(text: str) -> Auth:
    """Parse a credentials/challenge value: ``scheme [auth-param *(COMMA auth-param)]``.

    Values are unquoted; a ``token68`` form (``Basic abc==``) is kept under the name
    ``token68``.

    Raises:
        ParseError: malformed value.
    """
    cdef str t = text   # TypeError for anything but str
    cdef int kind = _kind(t)
    cdef const void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        return _parse_auth(t, <const uint8_t*>data, n)
    if kind == 2:
        return _parse_auth(t, <const uint16_t*>data, n)
    return _parse_auth(t, <const uint32_t*>data, n)


# --------------------------------------------------------------------------------------------
# message accessors and serialization in C (installed into fastsip.message.Message)
# --------------------------------------------------------------------------------------------
# The pure definitions in message.py are the specification. These run only for messages whose
# ``_p`` is this module (parsed here, or built from such a message), with the Message slots
# read at their C offsets, and defer to the pure function for any other message or for any
# header entry that is not a 3-tuple with a str key: the exceptions are then the pure ones.
# Why C: a Python-level property plus its dict look-ups and header loop cost more than the
# value parse itself (m.cseq was 0.8 µs for a 0.13 µs parse_cseq).
cdef extern from "Python.h":
    # borrowed; unlike PyDict_GetItem it does not save and restore the error state each call
    PyObject* PyDict_GetItem "PyDict_GetItemWithError"(object d, object k) except? NULL
    PyObject* _dict_get_noerr "PyDict_GetItemWithError"(object d, object k) noexcept
    PyObject* PyErr_Occurred() noexcept
    void PyErr_Clear() noexcept
    bint PyUnicode_CHECK_INTERNED(object o)
    bint PyDict_CheckExact(object o)
    bint PyList_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    Py_ssize_t PyList_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    bint PyObject_TypeCheck(object o, PyTypeObject* t)
    Py_ssize_t PyDict_GET_SIZE(object o)
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* o) noexcept


cdef Py_ssize_t _O_CACHE = _slot_offset(Message, "_cache")
cdef Py_ssize_t _O_HEADERS = _slot_offset(Message, "_headers")
cdef Py_ssize_t _O_LIMITS = _slot_offset(Message, "_limits")
cdef Py_ssize_t _O_P = _slot_offset(Message, "_p")
cdef Py_ssize_t _O_RAW = _slot_offset(Message, "_raw")
cdef Py_ssize_t _O_BODY = _slot_offset(Message, "body")
cdef Py_ssize_t _O_VERSION = _slot_offset(Message, "version")
cdef Py_ssize_t _O_METHOD = _slot_offset(Request, "method")
cdef Py_ssize_t _O_URI_TEXT = _slot_offset(Request, "uri_text")
cdef Py_ssize_t _O_STATUS = _slot_offset(Response, "status")
cdef Py_ssize_t _O_REASON = _slot_offset(Response, "reason")
cdef bint _FAST_OK = (
    _plain_class(Message) and _plain_class(Request) and _plain_class(Response)
    and _O_CACHE and _O_HEADERS and _O_LIMITS and _O_P and _O_RAW and _O_BODY and _O_VERSION
    and _O_METHOD and _O_URI_TEXT and _O_STATUS and _O_REASON
)

cdef str S_VIA = _sys.intern("via")
cdef str S_AT_VIA = _sys.intern("@via")
cdef str S_FROM = _sys.intern("from")
cdef str S_TO = _sys.intern("to")
cdef str S_CALL_ID = _sys.intern("call-id")
cdef str S_CSEQ = _sys.intern("cseq")
cdef str S_CONTACT = _sys.intern("contact")
cdef str S_EXPIRES = _sys.intern("expires")
cdef str S_MAX_FORWARDS = _sys.intern("max-forwards")
cdef str S_STAR = "*"

cdef object _P_VIA = None, _P_VIAS = None, _P_FROM = None, _P_TO = None, _P_CALL_ID = None
cdef object _P_CSEQ = None, _P_CONTACTS = None, _P_EXPIRES = None, _P_MAX_FORWARDS = None
cdef object _P_CONTENT_LENGTH = None, _P_BYTES = None


cdef inline PyObject* _cached(dict cache, str key) noexcept:
    """cache.get(key) (borrowed); a fresh message's empty cache costs no look-up. (A str key
    in a dict of str keys cannot raise: an error would be dropped, as PyDict_GetItem does.)"""
    cdef PyObject* r
    if PyDict_GET_SIZE(cache) == 0:
        return NULL
    r = _dict_get_noerr(cache, key)
    if r == NULL and PyErr_Occurred() != NULL:
        PyErr_Clear()
    return r


cdef inline PyObject* _slot(object o, Py_ssize_t off) noexcept:
    return (<PyObject**>((<char*><PyObject*>o) + off))[0]


cdef tuple _VC_KEYS = (S_AT_VIA, S_FROM, S_TO, S_CSEQ, S_CONTACT)   # by VC_ index


cdef inline PyObject* _vget(object msg, int idx, str key) noexcept:
    """The cached value for this key (borrowed), or NULL: in the _Head while the headers are
    offsets, else in ``_cache``."""
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    if type(<object>hs) is _Head:
        return (<_Head><object>hs).vc[idx]
    return _cached(<dict>_slot(msg, _O_CACHE), key)


cdef inline int _vput(object msg, int idx, str key, object value) except -1:
    """Cache a parsed value where _vget finds it."""
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    cdef PyObject* old
    if type(<object>hs) is _Head:
        old = (<_Head>hs).vc[idx]
        Py_INCREF(value)
        (<_Head>hs).vc[idx] = <PyObject*>value
        Py_XDECREF(old)
        return 0
    (<dict><object>_slot(msg, _O_CACHE))[key] = value
    return 0


# the classes _mine tests for, without a module-global look-up (the module holds them)
cdef PyTypeObject* _T_MESSAGE = <PyTypeObject*>Message
cdef PyTypeObject* _T_REQUEST = <PyTypeObject*>Request
cdef PyTypeObject* _T_RESPONSE = <PyTypeObject*>Response


cdef inline bint _mine(object msg) noexcept:
    """A Message whose value-parser twin is this module, with a dict cache and list headers.

    (Every slot the C accessors read is set: an unset one makes the pure code raise.)
    """
    cdef PyObject* x
    cdef PyTypeObject* t = Py_TYPE(msg)
    if not _FAST_OK or not (t == _T_REQUEST or t == _T_RESPONSE
                            or PyType_IsSubtype(t, _T_MESSAGE)):
        return False
    if _slot(msg, _O_P) != <PyObject*>_SELF or _SELF is None:
        return False
    if _slot(msg, _O_LIMITS) == NULL or _slot(msg, _O_RAW) == NULL:
        return False
    x = _slot(msg, _O_CACHE)
    if x == NULL or not PyDict_CheckExact(<object>x):
        return False
    x = _slot(msg, _O_HEADERS)
    return x != NULL and (PyList_CheckExact(<object>x) or type(<object>x) is _Head)


cdef object _headers_list(object msg):
    """The message's ``_headers`` list, built from its _Head (and stored) on first use."""
    cdef PyObject** addr = <PyObject**>((<char*><PyObject*>msg) + _O_HEADERS)
    cdef PyObject* old = addr[0]
    cdef list lst
    cdef PyObject* cache
    cdef _Head h
    cdef int i
    if old != NULL and type(<object>old) is _Head:
        h = <_Head><object>old
        lst = _head_list(h)
        cache = _slot(msg, _O_CACHE)
        if cache != NULL and PyDict_CheckExact(<object>cache):
            for i in range(VC_N):
                if h.vc[i] != NULL:
                    (<dict><object>cache).setdefault(_VC_KEYS[i], <object>h.vc[i])
        Py_INCREF(lst)
        addr[0] = <PyObject*>lst
        Py_XDECREF(old)
        return lst
    if old == NULL:
        raise AttributeError(f"'{type(msg).__name__}' object has no attribute '_headers'")
    return <object>old


cdef class _HeadersSlot:
    """``Message._headers``: the slot, with a _Head turned into the list on first read.

    Installed into Message in place of the slot's member descriptor (message.py's
    ``_install_lazy_headers``); reads and writes the same slot, so pure code sees a list.
    """

    def __get__(self, obj, objtype):
        if obj is None:
            return self
        if not PyObject_TypeCheck(obj, <PyTypeObject*>Message):
            raise TypeError(f"descriptor '_headers' for 'Message' objects "
                            f"doesn't apply to a {type(obj).__name__!r} object")
        return _headers_list(obj)

    def __set__(self, obj, value):
        if not PyObject_TypeCheck(obj, <PyTypeObject*>Message):
            raise TypeError(f"descriptor '_headers' for 'Message' objects "
                            f"doesn't apply to a {type(obj).__name__!r} object")
        cdef PyObject** addr = <PyObject**>((<char*><PyObject*>obj) + _O_HEADERS)
        cdef PyObject* old = addr[0]
        Py_INCREF(value)
        addr[0] = <PyObject*>value
        Py_XDECREF(old)

    def __delete__(self, obj):
        if not PyObject_TypeCheck(obj, <PyTypeObject*>Message):
            raise TypeError(f"descriptor '_headers' for 'Message' objects "
                            f"doesn't apply to a {type(obj).__name__!r} object")
        cdef PyObject** addr = <PyObject**>((<char*><PyObject*>obj) + _O_HEADERS)
        cdef PyObject* old = addr[0]
        if old == NULL:
            raise AttributeError("_headers")
        addr[0] = NULL
        Py_XDECREF(old)


cdef inline bint _same_key(PyObject* k, str key) noexcept:
    """k == key for a str k (interned keys compare by identity)."""
    if k == <PyObject*>key:
        return True
    if PyUnicode_CHECK_INTERNED(<object>k) and PyUnicode_CHECK_INTERNED(key):
        return False   # two different interned strs are never equal
    return PyUnicode_GET_LENGTH(<object>k) == PyUnicode_GET_LENGTH(key) and <str><object>k == key


cdef inline int _first(object hs, str key, PyObject** out) except -2:
    """out = the value (borrowed) of the first header with this key, or NULL.

    Returns -1 when an entry is not a 3-tuple with a str key (the caller defers to pure).
    """
    cdef int hid
    if type(hs) is _Head and (<_Head>hs).indexed:
        hid = _hot_id(key)
        if hid:
            out[0] = NULL
            if (<_Head>hs).first[hid]:
                out[0] = _head_value(<_Head>hs, (<_Head>hs).first[hid] - 1)
            return 0
    return _first_any(hs, key, out)


cdef int _first_any(object hs, str key, PyObject** out) except -2:
    """_first by a scan of the entries (a key without a HOT_ id, no index, or a list)."""
    cdef Py_ssize_t i, n
    cdef PyObject* t
    cdef PyObject* k
    cdef _Head h
    cdef bint key_interned = PyUnicode_CHECK_INTERNED(key)
    out[0] = NULL
    if type(hs) is _Head:   # keys are strs the parser made, interned for the known names
        h = <_Head>hs
        for i in range(h.n):
            k = h.ents[i].key
            if k == <PyObject*>key or (
                    not (key_interned and PyUnicode_CHECK_INTERNED(<object>k))
                    and _same_key(k, key)):
                out[0] = _head_value(h, i)
                return 0
        return 0
    n = PyList_GET_SIZE(hs)
    for i in range(n):
        t = PyList_GET_ITEM(hs, i)
        if not PyTuple_CheckExact(<object>t) or PyTuple_GET_SIZE(<object>t) != 3:
            return -1
        k = PyTuple_GET_ITEM(<object>t, 0)
        if k == <PyObject*>key:
            out[0] = PyTuple_GET_ITEM(<object>t, 2)
            return 0
        if not PyUnicode_CheckExact(<object>k):
            return -1
        if PyUnicode_CHECK_INTERNED(<object>k) and PyUnicode_CHECK_INTERNED(key):
            continue   # two different interned strs are never equal
        if PyUnicode_GET_LENGTH(<object>k) == PyUnicode_GET_LENGTH(key) and <str><object>k == key:
            out[0] = PyTuple_GET_ITEM(<object>t, 2)
            return 0
    return 0


cdef inline int _hot_id(str key) noexcept:
    """The HOT_ id of one of the accessors' interned keys, else 0."""
    if key is S_VIA:
        return HOT_VIA
    if key is S_FROM:
        return HOT_FROM
    if key is S_TO:
        return HOT_TO
    if key is S_CALL_ID:
        return HOT_CALL_ID
    if key is S_CSEQ:
        return HOT_CSEQ
    if key is S_CONTACT:
        return HOT_CONTACT
    if key is S_EXPIRES:
        return HOT_EXPIRES
    return 0


cdef inline bint _first_octets(object hs, str key, int hid, const unsigned char** p,
                               Py_ssize_t* n) noexcept:
    """For a _Head whose header section is ASCII: the octets of the first header with this
    (interned) key when its value str is not built yet (p, n set; True). False otherwise:
    no such header, the str exists, or the headers are a list (the caller takes _first)."""
    if type(hs) is not _Head:
        return False
    return _head_octets(<_Head>hs, key, hid, p, n)


cdef inline bint _head_octets(_Head h, str key, int hid, const unsigned char** p,
                              Py_ssize_t* n) noexcept:
    """_first_octets of a _Head (h borrowed: no reference counting on this path)."""
    cdef Py_ssize_t i
    cdef PyObject* buf = <PyObject*>h.buf
    if not h.ascii or buf == <PyObject*>None:
        return False
    if hid and h.indexed:   # hid: the caller's _hot_id(key)
        i = h.first[hid] - 1
        if i < 0 or h.ents[i].value != NULL:
            return False
        p[0] = <const unsigned char*>_bytes_data(buf) + h.ents[i].vs
        n[0] = h.ents[i].ve - h.ents[i].vs
        return True
    return _head_octets_scan(h, key, p, n)


cdef bint _head_octets_scan(_Head h, str key, const unsigned char** p,
                            Py_ssize_t* n) noexcept:
    """_head_octets by a scan of the entries (a key without a HOT_ id, or no index)."""
    cdef Py_ssize_t i
    cdef PyObject* k
    cdef PyObject* buf = <PyObject*>h.buf
    cdef bint key_interned = PyUnicode_CHECK_INTERNED(key)
    for i in range(h.n):
        k = h.ents[i].key
        if k == <PyObject*>key or (
                not (key_interned and PyUnicode_CHECK_INTERNED(<object>k))
                and _same_key(k, key)):
            if h.ents[i].value != NULL:
                return False
            p[0] = <const unsigned char*>_bytes_data(buf) + h.ents[i].vs
            n[0] = h.ents[i].ve - h.ents[i].vs
            return True
    return False


cdef int _all(object hs, str key, list out) except -2:
    """Append the value of every header with this key to out; -1 as _first."""
    cdef Py_ssize_t i, n
    cdef PyObject* t
    cdef PyObject* k
    cdef _Head h
    cdef bint key_interned = PyUnicode_CHECK_INTERNED(key)
    if type(hs) is _Head:
        h = <_Head>hs
        for i in range(h.n):
            k = h.ents[i].key
            if k == <PyObject*>key or (
                    not (key_interned and PyUnicode_CHECK_INTERNED(<object>k))
                    and _same_key(k, key)):
                out.append(<object>_head_value(h, i))
        return 0
    n = PyList_GET_SIZE(hs)
    for i in range(n):
        t = PyList_GET_ITEM(hs, i)
        if not PyTuple_CheckExact(<object>t) or PyTuple_GET_SIZE(<object>t) != 3:
            return -1
        k = PyTuple_GET_ITEM(<object>t, 0)
        if k != <PyObject*>key:
            if not PyUnicode_CheckExact(<object>k):
                return -1
            if (PyUnicode_CHECK_INTERNED(<object>k) and PyUnicode_CHECK_INTERNED(key)) \
                    or PyUnicode_GET_LENGTH(<object>k) != PyUnicode_GET_LENGTH(key) \
                    or <str><object>k != key:
                continue
        out.append(<object>PyTuple_GET_ITEM(<object>t, 2))
    return 0


# --- values parsed straight from the message's octets ----------------------------------------
# When the header section is ASCII and a value's str was never built, the usual (plain) Via and
# address shapes are checked and built from the octets: no value str is made, and the value
# keeps the message's bytes and its span (``_src``, ``srca``, ``srcb``) for the fields it builds
# on first access. Anything not plain (-1 from the one-pass checks, which never means invalid)
# takes the str path, which decides and raises exactly as the pure twin.

cdef inline object _oct(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    return _ascii_str(p + a, b - a)


cdef object _top_via_octets(object buf, const unsigned char* base, Py_ssize_t vs,
                            Py_ssize_t ve, object max_via):
    """The top Via of the header value base[vs:ve] when every via-parm in it is plain (all are
    checked, as _parse_via does), else None."""
    cdef const unsigned char* d = base + vs
    cdef Py_ssize_t n = ve - vs, i = 0, k, ta = 0, tb = 0, limit, count = 0
    cdef Py_ssize_t pv[7]
    cdef Py_ssize_t top[7]
    if not PyLong_CheckExact(max_via):
        return None
    # (_lim_c.max_via is _lim_max_via clamped: no conversion for the usual Limits)
    limit = _lim_c.max_via if max_via is _lim_max_via else _clamp(max_via)
    while True:
        i = _skip_ws(d, i, n)
        k = _plain_via(d, i, n, pv)
        if k < 0:
            return None
        if count == 0:
            ta = i
            tb = k
            memcpy(top, pv, sizeof(top))
        count += 1
        if count > limit:
            raise _err("too many Via values", -1, 513)
        if k >= n:
            break
        i = k + 1   # the comma
    cdef Via o = Via.__new__(Via)
    o.protocol = S_SIP20
    o.transport = _ascii_exact(None, d, top[0], top[1], True)
    o.host = _oct(d, top[2], top[3])
    o.port = _port_obj(top[4])
    o._src = buf
    o.srca = vs + ta
    o.srcb = vs + tb
    o._found = None if top[5] < 0 else _oct(d, top[5], top[6])
    o.lazy = LZ_PARAMS
    return o


cdef Py_ssize_t _plain_address(const unsigned char* d, Py_ssize_t i, Py_ssize_t n, bint in_list,
                               Py_ssize_t* o, Py_ssize_t* uo) noexcept nogil:
    """The end (n, or the comma before the next address when in_list) of the address at i when
    it has a plain shape that _parse_address_at accepts: an optional display name (a quoted
    string without quoted-pairs, or words separated by single spaces), a plain sip/sips URI
    (_plain_sip_uri) in <> or bare, plain params (_plain_params); else -1.

    o: [0:2] the display name span ([0] -1: none), [2:4] the tag value span as _gen_params
    reports it, [4] where the address starts, [5:7] the URI's span; uo: what _plain_sip_uri
    found in it.
    """
    cdef Py_ssize_t j, a, b, close
    cdef bint name_addr = False
    cdef UC c, prev = 0
    i = _skip_ws(d, i, n)
    if i >= n:
        return -1
    o[4] = i
    o[0] = -1
    if d[i] == CH_DQUOTE:
        j = i + 1
        while j < n and d[j] != CH_DQUOTE:
            if d[j] == CH_BSLASH:
                return -1
            j += 1
        if j >= n:
            return -1
        o[0] = i + 1
        o[1] = j
        i = _skip_ws(d, j + 1, n)
        if i >= n or d[i] != CH_LT:
            return -1
        name_addr = True
    else:
        j = _span(d, i, n, C_TOKEN | C_WS)
        if j < n and d[j] == CH_LT:
            a = i
            b = j
            while a < b and _is(d[a], C_WS):
                a += 1
            while b > a and _is(d[b - 1], C_WS):
                b -= 1
            if a < b:
                for close in range(a, b):
                    c = d[close]
                    if c == CH_HT or (c == CH_SP and prev == CH_SP):
                        return -1
                    prev = c
                o[0] = a
                o[1] = b
            i = j
            name_addr = True
    if name_addr:
        close = _find(d, CH_GT, i, n)
        if close < 0:
            return -1
        if not _plain_sip_uri(d, i + 1, close, uo):
            return -1
        o[5] = i + 1
        o[6] = close
        i = close + 1
    else:
        j = i
        while j < n and not _is(d[j], C_VIASTOP):
            j += 1
        # a "?" (allowed in a plain user part) is an error outside <>: the str path raises it
        if _find(d, CH_QMARK, i, j) >= 0 or not _plain_sip_uri(d, i, j, uo):
            return -1
        o[5] = i
        o[6] = j
        i = j
    return _plain_params(d, i, n, in_list, b"tag", 3, &o[2])


cdef object _address_octets(object buf, const unsigned char* base, Py_ssize_t vs,
                            Py_ssize_t* o, Py_ssize_t* uo, Py_ssize_t end):
    """The Address _plain_address found (base + vs is the value's start). A URI without
    parameters is made from its spans when read (its strings when they are read)."""
    cdef const unsigned char* d = base + vs
    cdef Address a = Address.__new__(Address)
    a.display = None if o[0] < 0 else _oct(d, o[0], o[1])
    a._src = buf
    a.srca = vs + o[4]
    a.srcb = vs + end
    a._found = None if o[2] < 0 else _oct(d, o[2], o[3])
    a.lazy = LZ_URI | LZ_PARAMS
    if uo[6] == o[6]:   # the plain URI has no parameters
        a.usp[0] = vs + uo[1] if uo[1] >= 0 else -1
        a.usp[1] = vs + uo[2]
        a.usp[2] = vs + uo[3]
        a.usp[3] = vs + uo[4]
        a.usp[4] = vs + o[5]
        a.usp[5] = vs + o[6]
        a._uport = _port_obj(uo[5])
        a._usips = uo[0] != 0
        a.lazy |= LZ_USPANS
    return a


cdef object _addresses_octets(object buf, const unsigned char* base, Py_ssize_t vs,
                              Py_ssize_t ve, bint in_list):
    """The Address (a list of them when in_list) of base[vs:ve] when all are plain, else None."""
    cdef Py_ssize_t n = ve - vs, i, k
    cdef Py_ssize_t o[7]
    cdef Py_ssize_t uo[7]
    cdef list out
    k = _plain_address(base + vs, 0, n, in_list, o, uo)
    if k < 0:
        return None
    if not in_list:
        return _address_octets(buf, base, vs, o, uo, k)
    out = [_address_octets(buf, base, vs, o, uo, k)]
    while k < n:
        i = k + 1
        k = _plain_address(base + vs, i, n, True, o, uo)
        if k < 0:
            return None
        out.append(_address_octets(buf, base, vs, o, uo, k))
    return out


cdef inline object _head_addresses(PyObject* hs, const unsigned char* p, Py_ssize_t n,
                                   bint in_list):
    """_addresses_octets of p[:n], octets of a header value in the bytes of the _Head hs."""
    cdef PyObject* buf = <PyObject*>(<_Head>hs).buf
    cdef const unsigned char* base = <const unsigned char*>_bytes_data(buf)
    return _addresses_octets(<object>buf, base, p - base, p - base + n, in_list)


cdef bint _one_octets(object hs, str key, int hid, const unsigned char** p,
                      Py_ssize_t* n) noexcept:
    """As _first_octets, for the only header with this hot key (False when there are several)."""
    if type(hs) is not _Head or not (<_Head>hs).indexed or (<_Head>hs).cnt[hid] != 1:
        return False
    return _first_octets(hs, key, hid, p, n)


cdef object _acc_via(object msg):
    # (borrowed pointers on the usual path: no reference counting for the lookups)
    if not _mine(msg):
        return _P_VIA(msg)
    cdef PyObject* r = _cached(<dict>_slot(msg, _O_CACHE), S_VIA)
    if r != NULL:
        return (<object>r)[0] if <object>r else None
    r = _vget(msg, VC_AT_VIA, S_AT_VIA)
    if r != NULL:
        return <object>r
    cdef const unsigned char* p
    cdef Py_ssize_t n
    cdef const unsigned char* base
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    cdef PyObject* buf
    if _first_octets(<object>hs, S_VIA, HOT_VIA, &p, &n):
        buf = <PyObject*>(<_Head>hs).buf
        base = <const unsigned char*>_bytes_data(buf)
        top = _top_via_octets(<object>buf, base, p - base, p - base + n,
                              _max_via(<object>_slot(msg, _O_LIMITS)))
        if top is not None:
            _vput(msg, VC_AT_VIA, S_AT_VIA, top)
            return top
    return _acc_via_slow(msg)


cdef object _acc_via_slow(object msg):
    """_acc_via when the top Via is not read from the octets."""
    cdef PyObject* v
    top = None
    if _first(<object>_slot(msg, _O_HEADERS), S_VIA, &v) < 0:
        return _P_VIA(msg)
    if v != NULL:
        top = _via_values(<object>v, _max_via(<object>_slot(msg, _O_LIMITS)), True)
    _vput(msg, VC_AT_VIA, S_AT_VIA, top)
    return top


cdef object _acc_vias(object msg):
    if not _mine(msg):
        return _P_VIAS(msg)
    cdef dict cache = <dict>_slot(msg, _O_CACHE)
    cdef PyObject* r = _cached(cache, S_VIA)
    if r != NULL:
        return <object>r
    limit = _max_via(<object>_slot(msg, _O_LIMITS))
    cdef list values = []
    if _all(<object>_slot(msg, _O_HEADERS), S_VIA, values) < 0:
        return _P_VIAS(msg)
    cdef list cached = []
    for value in values:
        cached.extend(_via_values(value, limit))
        if len(cached) > limit:
            raise ParseError("too many Via values", status_hint=513)
    r = _vget(msg, VC_AT_VIA, S_AT_VIA)
    if r != NULL and <object>r is not None and cached:
        cached[0] = <object>r
    cache[S_VIA] = cached
    return cached


cdef object _address_acc(object msg, int idx, str key, int hid, object pure):
    if not _mine(msg):
        return pure(msg)
    cdef PyObject* r = _vget(msg, idx, key)
    cdef PyObject* v
    cdef const unsigned char* p
    cdef Py_ssize_t n
    if r != NULL:
        return <object>r
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    if _first_octets(<object>hs, key, hid, &p, &n):
        cached = _head_addresses(hs, p, n, False)
        if cached is not None:
            _vput(msg, idx, key, cached)
            return cached
    cached = None
    if _first(<object>hs, key, &v) < 0:
        return pure(msg)
    if v != NULL:
        cached = _dispatch_addresses(<object>v, False)
    _vput(msg, idx, key, cached)
    return cached


cdef object _acc_from(object msg):
    return _address_acc(msg, VC_FROM, S_FROM, HOT_FROM, _P_FROM)


cdef object _acc_to(object msg):
    return _address_acc(msg, VC_TO, S_TO, HOT_TO, _P_TO)


cdef object _acc_call_id(object msg):
    cdef PyObject* v
    if not _mine(msg) or _first(<object>_slot(msg, _O_HEADERS), S_CALL_ID, &v) < 0:
        return _P_CALL_ID(msg)
    return None if v == NULL else <object>v


cdef object _acc_cseq(object msg):
    if not _mine(msg):
        return _P_CSEQ(msg)
    cdef PyObject* r = _vget(msg, VC_CSEQ, S_CSEQ)
    cdef PyObject* v
    cdef const unsigned char* raw
    cdef Py_ssize_t nraw
    if r != NULL:
        return <object>r
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    if _first_octets(<object>hs, S_CSEQ, HOT_CSEQ, &raw, &nraw):
        cached = _parse_cseq(<str>None, raw, nraw)   # no value str: parsed from the octets
    else:
        if _first(<object>hs, S_CSEQ, &v) < 0:
            return _P_CSEQ(msg)
        cached = None if v == NULL else _cseq_value(<object>v)
    _vput(msg, VC_CSEQ, S_CSEQ, cached)
    return cached


cdef inline object _max_via(object limits):
    """limits.max_via, without the attribute look-up for the Limits object last parsed with."""
    return _lim_max_via if limits is _lim_obj else limits.max_via


cdef object _one_value(object hs, str key):
    """The value of the only header with this (interned) key in a _Head, else None (no such
    header, several, or headers that are a list: the caller then takes the general path)."""
    cdef _Head h
    cdef Py_ssize_t i, found = -1
    if type(hs) is not _Head:
        return None
    h = <_Head>hs
    cdef int hid = _hot_id(key)
    if hid and h.indexed:
        if h.cnt[hid] != 1:
            return None
        return <object>_head_value(h, h.first[hid] - 1)
    for i in range(h.n):
        if h.ents[i].key == <PyObject*>key or (
                not PyUnicode_CHECK_INTERNED(<object>h.ents[i].key)
                and _same_key(h.ents[i].key, key)):
            if found >= 0:
                return None
            found = i
    if found < 0:
        return None
    return <object>_head_value(h, found)


cdef bint _has_star(list values, bint strs) except -1:
    """``"*" in values``; in C when the values are known to be exact strs (from a _Head)."""
    cdef Py_ssize_t i
    cdef PyObject* v
    if not strs:
        return S_STAR in values
    for i in range(PyList_GET_SIZE(values)):
        v = PyList_GET_ITEM(values, i)
        if PyUnicode_GET_LENGTH(<object>v) == 1 \
                and PyUnicode_READ(PyUnicode_KIND(<object>v), PyUnicode_DATA(<object>v), 0) == 42:
            return True
    return False


cdef object _acc_contacts(object msg):
    if not _mine(msg):
        return _P_CONTACTS(msg)
    cdef PyObject* r = _vget(msg, VC_CONTACT, S_CONTACT)
    if r != NULL:
        return <object>r
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    cdef list cached
    cdef const unsigned char* p
    cdef Py_ssize_t n
    if _one_octets(<object>hs, S_CONTACT, HOT_CONTACT, &p, &n):
        if n == 1 and p[0] == 42:   # "*" (RFC 3261 §10.2.2)
            cached = []
        else:
            cached = _head_addresses(hs, p, n, True)
        if cached is not None:
            _vput(msg, VC_CONTACT, S_CONTACT, cached)
            return cached
    return _acc_contacts_slow(msg)


cdef object _acc_contacts_slow(object msg):
    """_acc_contacts when the Contact list is not read from the octets."""
    hs = <object>_slot(msg, _O_HEADERS)
    cdef list cached
    cdef object one = _one_value(hs, S_CONTACT)
    if one is not None:   # the usual message: exactly one Contact line
        if one == S_STAR:   # RFC 3261 §10.2.2 (an exact str: no __eq__ of a caller's object)
            cached = []
        else:
            cached = _dispatch_addresses(one, True)
        _vput(msg, VC_CONTACT, S_CONTACT, cached)
        return cached
    cdef list values = []
    if _all(hs, S_CONTACT, values) < 0:
        return _P_CONTACTS(msg)
    cached = []
    if _has_star(values, type(<object>_slot(msg, _O_HEADERS)) is _Head):
        if len(values) > 1:
            raise ParseError("Contact: * must be the only Contact")
    elif len(values) == 1:
        cached = _dispatch_addresses(values[0], True)   # a new list: the one the pure code builds
    else:
        for value in values:
            cached.extend(_dispatch_addresses(value, True))
    _vput(msg, VC_CONTACT, S_CONTACT, cached)
    return cached


cdef object _uint_acc(object msg, str key, int hid, str name, unsigned long long maximum,
                      object pure):
    """A bounded decimal header (message._uint): digits only in C, anything else in Python."""
    cdef PyObject* v
    cdef Py_ssize_t n, i
    cdef const unsigned char* d
    cdef unsigned long long value = 0
    if not _mine(msg):
        return pure(msg)
    cdef PyObject* hs = _slot(msg, _O_HEADERS)
    if _first_octets(<object>hs, key, hid, &d, &n):   # no value str: digits read from the octets
        if 0 < n <= 10:
            for i in range(n):
                if d[i] < 48 or d[i] > 57:
                    break
                value = value * 10 + (d[i] - 48)
            else:
                if value <= maximum:
                    return PyLong_FromUnsignedLongLong(value)
    if _first(<object>hs, key, &v) < 0:
        return pure(msg)
    if v == NULL:
        return None
    value = 0
    if PyUnicode_CheckExact(<object>v) and PyUnicode_IS_COMPACT_ASCII(<object>v):
        n = PyUnicode_GET_LENGTH(<object>v)
        if 0 < n <= 10:
            d = <const unsigned char*>PyUnicode_DATA(<object>v)
            for i in range(n):
                if d[i] < 48 or d[i] > 57:
                    break
                value = value * 10 + (d[i] - 48)
            else:
                if value <= maximum:
                    return PyLong_FromUnsignedLongLong(value)
    return _py_uint(<object>v, name, maximum)


cdef object _acc_expires(object msg):
    return _uint_acc(msg, S_EXPIRES, HOT_EXPIRES, "Expires", 0xFFFFFFFFULL, _P_EXPIRES)


cdef object _acc_max_forwards(object msg):
    return _uint_acc(msg, S_MAX_FORWARDS, 0, "Max-Forwards", 255, _P_MAX_FORWARDS)


cdef object _acc_content_length(object msg):
    return _uint_acc(msg, S_CONTENT_LENGTH, 0, "Content-Length", 0xFFFFFFFFULL,
                     _P_CONTENT_LENGTH)


cdef inline bint _ascii_text(PyObject* o) noexcept:
    return o != NULL and PyUnicode_CheckExact(<object>o) and PyUnicode_IS_COMPACT_ASCII(<object>o)


cdef inline char* _put(char* w, PyObject* s) noexcept:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(<object>s)
    memcpy(w, PyUnicode_DATA(<object>s), n)
    return w + n


def _serialize(msg):
    """``bytes(message)``: the pure ``Message.__bytes__`` for ASCII text, in one allocation."""
    cdef PyObject* raw
    cdef PyObject* a
    cdef PyObject* b
    cdef PyObject* c
    cdef PyObject* t
    cdef PyObject* body
    cdef object hs, out
    cdef Py_ssize_t i, nh, total, status = 0
    cdef bint is_request
    cdef char* w
    if not _mine(msg):
        return _P_BYTES(msg)
    raw = _slot(msg, _O_RAW)
    if raw != NULL and raw != <PyObject*>None:
        return <object>raw
    _headers_list(msg)   # modified without a header change (e.g. the Request-URI): rare
    if type(msg) is Request:
        is_request = True
        a = _slot(msg, _O_METHOD)
        b = _slot(msg, _O_URI_TEXT)
        c = _slot(msg, _O_VERSION)
        if not (_ascii_text(a) and _ascii_text(b) and _ascii_text(c)):
            return _P_BYTES(msg)
        total = PyUnicode_GET_LENGTH(<object>a) + PyUnicode_GET_LENGTH(<object>b) \
            + PyUnicode_GET_LENGTH(<object>c) + 2
    elif type(msg) is Response:
        is_request = False
        a = _slot(msg, _O_VERSION)
        b = _slot(msg, _O_STATUS)
        c = _slot(msg, _O_REASON)
        if not (_ascii_text(a) and _ascii_text(c)) or b == NULL \
                or not PyLong_CheckExact(<object>b):
            return _P_BYTES(msg)
        status = <object>b
        if status < 100 or status > 999:
            return _P_BYTES(msg)
        total = PyUnicode_GET_LENGTH(<object>a) + 3 + PyUnicode_GET_LENGTH(<object>c) + 2
    else:
        return _P_BYTES(msg)
    body = _slot(msg, _O_BODY)
    if body == NULL or not PyBytes_CheckExact(<object>body):
        return _P_BYTES(msg)
    hs = <object>_slot(msg, _O_HEADERS)
    nh = PyList_GET_SIZE(hs)
    for i in range(nh):
        t = PyList_GET_ITEM(hs, i)
        if not PyTuple_CheckExact(<object>t) or PyTuple_GET_SIZE(<object>t) != 3 \
                or not _ascii_text(PyTuple_GET_ITEM(<object>t, 1)) \
                or not _ascii_text(PyTuple_GET_ITEM(<object>t, 2)):
            return _P_BYTES(msg)
        total += PyUnicode_GET_LENGTH(<object>PyTuple_GET_ITEM(<object>t, 1)) \
            + PyUnicode_GET_LENGTH(<object>PyTuple_GET_ITEM(<object>t, 2)) + 4
    total += 4 + PyBytes_GET_SIZE(<object>body)
    # (no Python code runs between the checks above and the copy below: the list is unchanged)
    out = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(out)
    w = _put(w, a)
    w[0] = 32
    w += 1
    if is_request:
        w = _put(w, b)
        w[0] = 32
        w += 1
        w = _put(w, c)
    else:
        w[0] = <char>(48 + status // 100)
        w[1] = <char>(48 + (status // 10) % 10)
        w[2] = <char>(48 + status % 10)
        w[3] = 32
        w = _put(w + 4, c)
    w[0] = 13
    w[1] = 10
    w += 2
    for i in range(nh):
        t = PyList_GET_ITEM(hs, i)
        w = _put(w, PyTuple_GET_ITEM(<object>t, 1))
        w[0] = 58
        w[1] = 32
        w = _put(w + 2, PyTuple_GET_ITEM(<object>t, 2))
        w[0] = 13
        w[1] = 10
        w += 2
    w[0] = 13
    w[1] = 10
    w += 2
    memcpy(w, PyBytes_AS_STRING(<object>body), PyBytes_GET_SIZE(<object>body))
    return out


cdef extern from "Python.h":
    int PySet_Contains(object s, object key) except -1


cdef inline bint _copied(PyObject* k) except -1:
    """A key make_response copies into the response (message._RESPONSE_COPY)."""
    return k == <PyObject*>S_VIA or k == <PyObject*>S_FROM or k == <PyObject*>S_TO \
        or k == <PyObject*>S_CALL_ID or k == <PyObject*>S_CSEQ \
        or (not PyUnicode_CHECK_INTERNED(<object>k) and PySet_Contains(_RESPONSE_COPY, <object>k))


cdef list _head_copy(_Head h):
    """The (key, name, value) tuples of the headers a response copies, in order."""
    cdef Py_ssize_t i
    cdef list out = []
    for i in range(h.n):
        if _copied(h.ents[i].key):
            out.append((<object>h.ents[i].key, <object>h.ents[i].name,
                        <object>_head_value(h, i)))
    return out


def _fast_response(request, status, reason, to_tag, headers, body, content_type):
    """message.make_response for a request this twin parsed: the same steps, compiled.

    Returns None (the pure code then runs, and raises what it raises) for a request it does not
    own or a status that is not an int in 100..699.
    """
    cdef Py_ssize_t i, n, st
    cdef PyObject* t
    cdef PyObject* k
    cdef list out
    if not _mine(request) or not PyLong_CheckExact(status):
        return None
    st = status
    if st < 100 or st > 699:
        return None
    hs = <object>_slot(request, _O_HEADERS)
    if type(hs) is _Head:   # the request's headers stay offsets: copy only these five
        out = _head_copy(<_Head>hs)
    else:
        n = PyList_GET_SIZE(hs)
        for i in range(n):   # checked first: no Python code may run while reading borrowed items
            t = PyList_GET_ITEM(hs, i)
            if not PyTuple_CheckExact(<object>t) or PyTuple_GET_SIZE(<object>t) < 1 \
                    or not PyUnicode_CheckExact(<object>PyTuple_GET_ITEM(<object>t, 0)):
                return None
        out = []
        for i in range(n):   # RFC 3261 §8.2.6.2: Via, From, To, Call-ID, CSeq as written
            t = PyList_GET_ITEM(hs, i)
            k = PyTuple_GET_ITEM(<object>t, 0)
            if _copied(k):
                out.append(<object>t)
    cdef object resp = _RESP.new()
    _RESP.put(resp, M_STATUS, status)
    _RESP.put(resp, M_REASON,
              (<dict>_REASON_PHRASES).get(status, "") if reason is None else reason)
    _RESP.put(resp, M_VERSION, S_SIP20)
    if _slot(resp, _O_CACHE) == NULL:
        _RESP.put(resp, M_CACHE, {})
    _RESP.put(resp, M_RAW, None)
    _RESP.put(resp, M_P, <object>_slot(request, _O_P))
    _RESP.put(resp, M_LIMITS, <object>_slot(request, _O_LIMITS))
    _RESP.put(resp, M_HEADERS, out)
    tagged = None
    if to_tag is not None and st > 100:
        for i in range(len(out)):
            h = out[i]
            if h[0] == S_TO:
                if tagged is None:
                    try:
                        to = _acc_to(request)
                    except ParseError:
                        to = None
                    if to is None or to.tag is not None:
                        break
                    tagged = f";tag={to_tag}"
                out[i] = (h[0], h[1], h[2] + tagged)
    for name, value in headers:
        _check_value(value)
        out.append((header_key(name), name, value))
    if content_type is not None:
        out.append(("content-type", "Content-Type", content_type))
    if not PyBytes_CheckExact(body):   # bytes(b) is b itself, but costs a special-method lookup
        body = bytes(body)
    out.append(("content-length", "Content-Length", str(len(body))))
    _RESP.put(resp, M_BODY, body)
    return resp


# --------------------------------------------------------------------------------------------
# lazy Via / Address fields (built for _values_c's Via / Address)
# --------------------------------------------------------------------------------------------
# The value parsers above check a whole Via or address when they parse it (so exactly the
# values the pure twin rejects fail, at the same point) but leave ``Via.params``,
# ``Address.uri`` and ``Address.params`` unbuilt, keeping the value's text in ``_src``; the
# value builds them from it with the functions below, once, on first access. ``Via.branch``
# and ``Address.tag`` were noted while checking (``_found``). Why: a registrar or proxy reads
# the branch, the tags and one URI, and the dicts, URIs and strings nobody reads were most of
# the cost of reading a message.


cdef Py_ssize_t _via_params_start(const UCH* d, Py_ssize_t n) noexcept nogil:
    """Where the params of a checked via-parm d[:n] start (the steps of _parse_via)."""
    cdef Py_ssize_t i, j, k
    i = _span(d, _skip_ws(d, 0, n), n, C_TOKEN)
    i = _skip_ws(d, i, n) + 1   # "/"
    i = _span(d, _skip_ws(d, i, n), n, C_TOKEN)
    i = _skip_ws(d, i, n) + 1   # "/"
    i = _span(d, _skip_ws(d, i, n), n, C_TOKEN)
    j = _skip_ws(d, i, n)
    if j < n and d[j] == CH_LBRACKET:
        k = _find(d, CH_RBRACKET, j, n)
        if k >= 0:
            j = k + 1
    while j < n and not _is(d[j], C_VIASTOP):
        j += 1
    k = _skip_ws(d, j, n)
    if k < n and d[k] == CH_COLON:
        return _span(d, _skip_ws(d, k + 1, n), n, C_DIGIT)
    return k


cdef Py_ssize_t _addr_parts(const UCH* d, Py_ssize_t n, Py_ssize_t* ua,
                            Py_ssize_t* ub) except -1:
    """URI span and params start of a checked address d[:n] (the steps of _parse_address_at)."""
    cdef Py_ssize_t i, j
    i = _skip_ws(d, 0, n)
    if i < n and d[i] == CH_DQUOTE:
        i = _skip_ws(d, _quoted_end(d, i, n, "address"), n)
    else:
        j = _span(d, i, n, C_TOKEN | C_WS)
        if j < n and d[j] == CH_LT:
            i = j
        else:
            j = i
            while j < n and not _is(d[j], C_VIASTOP):
                j += 1
            ua[0] = i
            ub[0] = j
            return j
    j = _find(d, CH_GT, i, n)
    if j < 0:
        j = n
    ua[0] = i + 1
    ub[0] = j
    return j + 1


cdef object _lazy_in(str text, const UCH* d, Py_ssize_t n, int field):
    cdef Py_ssize_t ps, ua = 0, ub = 0
    cdef dict params = {}
    if field == F_VIA_PARAMS:
        _gen_params(text, d, _via_params_start(d, n), n, params, "Via", True)
        return params
    ps = _addr_parts(d, n, &ua, &ub)
    if field == F_ADDR_URI:
        return _parse_uri(text, d, ua, ub, _sub(text, ua, ub))
    _gen_params(text, d, ps, n, params, "address", True)
    return params


cdef object _lazy_value(object src, Py_ssize_t a, Py_ssize_t b, int field):
    """Build a lazy field (``_values_c``'s builder) from the checked text ``src``, or from
    ``src[a:b]`` when src is the message's (ASCII) bytes."""
    cdef str t
    if type(src) is bytes:   # (a URI without parameters is made by Address.uri itself)
        t = _ascii_str(<const unsigned char*>PyBytes_AS_STRING(src) + a, b - a)
    else:
        t = src
    cdef int kind = _kind(t)
    cdef const void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if kind == 1:
        return _lazy_in(t, <const uint8_t*>data, n, field)
    if kind == 2:
        return _lazy_in(t, <const uint16_t*>data, n, field)
    return _lazy_in(t, <const uint32_t*>data, n, field)


set_builder(_lazy_value)


cdef dict _VKEYS = {_sys.intern(k): i for i, k in enumerate(sorted(SINGLE_VALUE_HEADERS))}
cdef Py_ssize_t _V_DATE = len(_VKEYS)
_VKEYS[_sys.intern("date")] = _V_DATE
cdef tuple _VNAMES = tuple(sorted(SINGLE_VALUE_HEADERS))
cdef PyObject* _VK[16]   # the interned keys of _VKEYS, by index (owned by _VKEYS)
for _k, _i in _VKEYS.items():
    _VK[<Py_ssize_t>_i] = <PyObject*>_k
cdef object _P_VALIDATE = None
cdef str S_AT_URI = _sys.intern("@uri")


def _validate(msg):
    """Message.validate for a message this twin parsed: the pure checks, in the same order.

    One pass over the headers counts the single-value headers (the pure code builds a dict in
    Python), then the same accessors run, in C. Any other message runs the pure method.
    """
    cdef Py_ssize_t i, nh, idx, first_dup = -1, dup_pos = 0
    cdef Py_ssize_t counts[16]
    cdef Py_ssize_t firsts[16]
    cdef PyObject* t
    cdef PyObject* r
    cdef PyObject* k
    cdef Py_ssize_t j
    cdef bint date = False
    cdef UC c
    t_msg = type(msg)
    if not _mine(msg) or (t_msg is not Request and t_msg is not Response):
        return _P_VALIDATE(msg)
    hs = <object>_slot(msg, _O_HEADERS)
    cdef bint lazy = type(hs) is _Head
    nh = (<_Head>hs).n if lazy else PyList_GET_SIZE(hs)
    for i in range(_V_DATE):
        counts[i] = 0
        firsts[i] = 0
    for i in range(nh):
        if lazy:
            k = (<_Head>hs).ents[i].key
        else:
            t = PyList_GET_ITEM(hs, i)
            if not PyTuple_CheckExact(<object>t) or PyTuple_GET_SIZE(<object>t) != 3:
                return _P_VALIDATE(msg)
            k = PyTuple_GET_ITEM(<object>t, 0)
        idx = -1
        for j in range(_V_DATE + 1):
            if k == _VK[j]:
                idx = j
                break
        if idx < 0:
            if PyUnicode_CheckExact(<object>k) and PyUnicode_CHECK_INTERNED(<object>k):
                continue   # interned and none of the interned keys: not equal to any
            r = PyDict_GetItem(_VKEYS, <object>k)
            if r == NULL:
                continue
            idx = <object>r
        if idx == _V_DATE:
            date = True
            continue
        if counts[idx] == 0:
            firsts[idx] = i
        counts[idx] += 1
    # RFC 3261 §7.3.1: the first (in wire order) single-value header that is repeated
    for i in range(_V_DATE):
        if counts[i] > 1 and (first_dup < 0 or firsts[i] < dup_pos):
            first_dup = i
            dup_pos = firsts[i]
    if first_dup >= 0:
        raise ParseError(f"multiple {display_name(_VNAMES[first_dup])} headers")
    for key in ("call-id", "from", "to", "cseq"):
        if counts[<Py_ssize_t>_VKEYS[key]] == 0:
            raise ParseError(f"missing {display_name(key)} header")
    if not _acc_vias(msg):
        raise ParseError("missing Via header")
    call_id = _acc_call_id(msg)
    if call_id is None:
        raise ParseError("empty Call-ID")
    if PyUnicode_CheckExact(call_id) and PyUnicode_GET_LENGTH(call_id) > 0:
        c = PyUnicode_READ(_kind(call_id), PyUnicode_DATA(call_id), 0)
        if not (32 < c < 128) and not call_id.strip():
            raise ParseError("empty Call-ID")
    elif not call_id.strip():
        raise ParseError("empty Call-ID")
    _acc_from(msg)
    _acc_to(msg)
    cseq = _acc_cseq(msg)
    _acc_max_forwards(msg)
    _acc_expires(msg)
    _acc_contacts(msg)
    if date:
        for hk, _, hv in _headers_list(msg):
            if hk == "date" and not _DATE_RE.match(hv):
                raise ParseError("bad Date header")
    if t_msg is Response:
        return None
    # Request._validate_start (Request.uri: parsed once, cached under "@uri")
    cdef dict cache = <dict>_slot(msg, _O_CACHE)
    r = _cached(cache, S_AT_URI)
    if r != NULL:
        uri = <object>r
    else:
        uri = parse_uri(<object>_slot(msg, _O_URI_TEXT))
        cache[S_AT_URI] = uri
    if uri.headers and uri.is_sip:
        # RFC 4475 §3.1.2.11: headers in a Request-URI must never become real headers.
        raise ParseError("headers not allowed in Request-URI")
    if cseq is not None and cseq.method != <object>_slot(msg, _O_METHOD):
        raise ParseError("CSeq method does not match request method")
    return None


# --------------------------------------------------------------------------------------------
# reads the SIP core makes on every request (token lists, credentials, Contact: *) and the
# received/rport stamp: on a message whose headers are still offsets they read or change the
# entries in place, so the message never has to build its header list (message.py's pure
# definitions, which these defer to for any other message, stay the specification).
# --------------------------------------------------------------------------------------------
cdef str S_SUPPORTED = _sys.intern("supported")
cdef str S_REQUIRE = _sys.intern("require")
cdef str S_PROXY_REQUIRE = _sys.intern("proxy-require")
cdef str S_AUTHORIZATION = _sys.intern("authorization")
cdef str S_PROXY_AUTHORIZATION = _sys.intern("proxy-authorization")
cdef str S_WWW_AUTHENTICATE = _sys.intern("www-authenticate")
cdef str S_PROXY_AUTHENTICATE = _sys.intern("proxy-authenticate")
cdef str S_COMMA = ","
cdef object _P_SUPPORTED = None, _P_REQUIRE = None, _P_PROXY_REQUIRE = None
cdef object _P_CONTACT_STAR = None, _P_AUTHORIZATION = None, _P_PROXY_AUTHORIZATION = None
cdef object _P_WWW_AUTHENTICATE = None, _P_PROXY_AUTHENTICATE = None
cdef object _P_REPLACE_TOP_VIA = None
cdef str S_USER_AGENT = _sys.intern("user-agent")
cdef str S_SERVER = _sys.intern("server")
cdef str S_PATH = _sys.intern("path")
cdef str S_ROUTE = _sys.intern("route")
cdef str S_RECORD_ROUTE = _sys.intern("record-route")
cdef object _P_USER_AGENT = None, _P_SERVER = None
cdef object _P_PATHS = None, _P_ROUTES = None, _P_RECORD_ROUTES = None


cdef object _single_acc(object msg, str key, object pure):
    """message.Message._single: the value of the first header with this key, or None."""
    cdef PyObject* v
    if not _mine(msg) or _first(<object>_slot(msg, _O_HEADERS), key, &v) < 0:
        return pure(msg)
    return None if v == NULL else <object>v


cdef object _acc_user_agent(object msg):
    return _single_acc(msg, S_USER_AGENT, _P_USER_AGENT)


cdef object _acc_server(object msg):
    return _single_acc(msg, S_SERVER, _P_SERVER)


cdef object _address_list_acc(object msg, str key, object pure):
    """message.Message._address_list: every header with this key as addresses, cached."""
    if not _mine(msg):
        return pure(msg)
    cdef dict cache = <dict>_slot(msg, _O_CACHE)
    cdef PyObject* r = _cached(cache, key)
    if r != NULL:
        return <object>r
    cdef list values = []
    if _all(<object>_slot(msg, _O_HEADERS), key, values) < 0:
        return pure(msg)
    cdef list cached = []
    for v in values:
        cached.extend(parse_address_list(v))
    cache[key] = cached
    return cached


cdef object _acc_paths(object msg):
    return _address_list_acc(msg, S_PATH, _P_PATHS)


cdef object _acc_routes(object msg):
    return _address_list_acc(msg, S_ROUTE, _P_ROUTES)


cdef object _acc_record_routes(object msg):
    return _address_list_acc(msg, S_RECORD_ROUTE, _P_RECORD_ROUTES)


cdef object _tokens_acc(object msg, str key, object pure):
    """message.Message._tokens: the comma-separated tokens of every header with this key."""
    if not _mine(msg):
        return pure(msg)
    cdef list values = []
    if _all(<object>_slot(msg, _O_HEADERS), key, values) < 0:
        return pure(msg)
    cdef list out = []
    for v in values:
        for t in (<str>v).split(S_COMMA):
            t = (<str>t).strip()
            if t:
                out.append(t)
    return out


cdef object _acc_supported(object msg):
    return _tokens_acc(msg, S_SUPPORTED, _P_SUPPORTED)


cdef object _acc_require(object msg):
    return _tokens_acc(msg, S_REQUIRE, _P_REQUIRE)


cdef object _acc_proxy_require(object msg):
    return _tokens_acc(msg, S_PROXY_REQUIRE, _P_PROXY_REQUIRE)


cdef object _acc_contact_star(object msg):
    if not _mine(msg):
        return _P_CONTACT_STAR(msg)
    cdef list values = []
    if _all(<object>_slot(msg, _O_HEADERS), S_CONTACT, values) < 0:
        return _P_CONTACT_STAR(msg)
    for v in values:
        if v == S_STAR:
            return True
    return False


cdef object _auth_acc(object msg, str key, object pure):
    """message.Message._auth: every header with this key parsed as credentials, cached."""
    if not _mine(msg):
        return pure(msg)
    cdef dict cache = <dict>_slot(msg, _O_CACHE)
    cdef PyObject* r = _cached(cache, key)
    if r != NULL:
        return <object>r
    cdef list values = []
    if _all(<object>_slot(msg, _O_HEADERS), key, values) < 0:
        return pure(msg)
    cdef list cached = [parse_auth(v) for v in values]
    cache[key] = cached
    return cached


cdef object _acc_authorization(object msg):
    return _auth_acc(msg, S_AUTHORIZATION, _P_AUTHORIZATION)


cdef object _acc_proxy_authorization(object msg):
    return _auth_acc(msg, S_PROXY_AUTHORIZATION, _P_PROXY_AUTHORIZATION)


cdef object _acc_www_authenticate(object msg):
    return _auth_acc(msg, S_WWW_AUTHENTICATE, _P_WWW_AUTHENTICATE)


cdef object _acc_proxy_authenticate(object msg):
    return _auth_acc(msg, S_PROXY_AUTHENTICATE, _P_PROXY_AUTHENTICATE)


def _replace_top_via(self, via):
    """message.Message.replace_top_via: on a message whose headers are offsets, the fast path
    of the pure method (one value on the top Via line, a Via object) done on the entry."""
    cdef _Head h
    cdef Py_ssize_t i
    cdef PyObject* old
    cdef dict cache
    if _mine(self) and type(via) is Via:
        hs = <object>_slot(self, _O_HEADERS)
        if type(hs) is _Head:
            h = <_Head>hs
            for i in range(h.n):
                if h.ents[i].key == <PyObject*>S_VIA or _same_key(h.ents[i].key, S_VIA):
                    if S_COMMA in <object>_head_value(h, i):
                        break   # several values on the line: the pure method's other path
                    text = str(via)
                    old = h.ents[i].value
                    Py_INCREF(text)
                    h.ents[i].value = <PyObject*>text
                    Py_XDECREF(old)
                    self._raw = None
                    cache = <dict>_slot(self, _O_CACHE)
                    cached = cache.get(S_VIA)
                    if cached:
                        cached[0] = via
                    _vput(self, VC_AT_VIA, S_AT_VIA, via)
                    return None
                # not a Via: go on (the pure method takes the first Via line)
    return _P_REPLACE_TOP_VIA(self, via)


ctypedef object (*getter_t)(object)


cdef class _Accessor:
    """A read-only Message attribute computed by a C function.

    What ``property(fn)`` does, without the call through Python: the attribute lookup calls
    ``__get__``, which calls the C function directly (about half the cost of a property).
    """

    cdef getter_t fn
    cdef str name

    def __get__(self, obj, objtype):
        if obj is None:
            return self
        return self.fn(obj)

    def __set__(self, obj, value):
        raise AttributeError(f"property {self.name!r} of {type(obj).__name__!r} object "
                             "has no setter")

    def __delete__(self, obj):
        raise AttributeError(f"property {self.name!r} of {type(obj).__name__!r} object "
                             "has no deleter")


cdef _Accessor _accessor(getter_t fn, str name):
    cdef _Accessor a = _Accessor.__new__(_Accessor)
    a.fn = fn
    a.name = name
    return a


_SELF = _sys.modules.get(__name__)

if _FAST_OK:
    _install_lazy_headers(_HeadersSlot())
    _LAZY_HEADERS = True
    _PURE_FNS = _install_fast_accessors(
        {
            "via": _accessor(_acc_via, "via"),
            "vias": _accessor(_acc_vias, "vias"),
            "from_": _accessor(_acc_from, "from_"),
            "to": _accessor(_acc_to, "to"),
            "call_id": _accessor(_acc_call_id, "call_id"),
            "cseq": _accessor(_acc_cseq, "cseq"),
            "contacts": _accessor(_acc_contacts, "contacts"),
            "expires": _accessor(_acc_expires, "expires"),
            "max_forwards": _accessor(_acc_max_forwards, "max_forwards"),
            "content_length": _accessor(_acc_content_length, "content_length"),
            "supported": _accessor(_acc_supported, "supported"),
            "require": _accessor(_acc_require, "require"),
            "proxy_require": _accessor(_acc_proxy_require, "proxy_require"),
            "contact_star": _accessor(_acc_contact_star, "contact_star"),
            "authorization": _accessor(_acc_authorization, "authorization"),
            "proxy_authorization": _accessor(_acc_proxy_authorization, "proxy_authorization"),
            "www_authenticate": _accessor(_acc_www_authenticate, "www_authenticate"),
            "proxy_authenticate": _accessor(_acc_proxy_authenticate, "proxy_authenticate"),
            "user_agent": _accessor(_acc_user_agent, "user_agent"),
            "server": _accessor(_acc_server, "server"),
            "paths": _accessor(_acc_paths, "paths"),
            "routes": _accessor(_acc_routes, "routes"),
            "record_routes": _accessor(_acc_record_routes, "record_routes"),
            "replace_top_via": _replace_top_via,
        },
        _serialize,
        _fast_response,
        _validate,
    )
    _P_VALIDATE = _PURE_FNS["validate"]
    _P_VIA = _PURE_FNS["via"]
    _P_VIAS = _PURE_FNS["vias"]
    _P_FROM = _PURE_FNS["from_"]
    _P_TO = _PURE_FNS["to"]
    _P_CALL_ID = _PURE_FNS["call_id"]
    _P_CSEQ = _PURE_FNS["cseq"]
    _P_CONTACTS = _PURE_FNS["contacts"]
    _P_EXPIRES = _PURE_FNS["expires"]
    _P_MAX_FORWARDS = _PURE_FNS["max_forwards"]
    _P_CONTENT_LENGTH = _PURE_FNS["content_length"]
    _P_BYTES = _PURE_FNS["__bytes__"]
    _P_SUPPORTED = _PURE_FNS["supported"]
    _P_REQUIRE = _PURE_FNS["require"]
    _P_PROXY_REQUIRE = _PURE_FNS["proxy_require"]
    _P_CONTACT_STAR = _PURE_FNS["contact_star"]
    _P_AUTHORIZATION = _PURE_FNS["authorization"]
    _P_PROXY_AUTHORIZATION = _PURE_FNS["proxy_authorization"]
    _P_WWW_AUTHENTICATE = _PURE_FNS["www_authenticate"]
    _P_PROXY_AUTHENTICATE = _PURE_FNS["proxy_authenticate"]
    _P_REPLACE_TOP_VIA = _PURE_FNS["replace_top_via"]
    _P_USER_AGENT = _PURE_FNS["user_agent"]
    _P_SERVER = _PURE_FNS["server"]
    _P_PATHS = _PURE_FNS["paths"]
    _P_ROUTES = _PURE_FNS["routes"]
    _P_RECORD_ROUTES = _PURE_FNS["record_routes"]
