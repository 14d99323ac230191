# The value classes of the Cython twin, shared with _parser_c (which fills their fields directly).
# The specification is _values_py.py.

from libc.string cimport memcpy

cdef extern from "Python.h":
    object __fastsip_unicode_decode_utf8 "PyUnicode_DecodeUTF8"(
        const char* s, Py_ssize_t size, const char* errors)
    object __fastsip_unicode_new "PyUnicode_New"(Py_ssize_t size, Py_UCS4 maxchar)
    void* __fastsip_unicode_data "PyUnicode_DATA"(object o)


cdef inline object ascii_str(const unsigned char* p, Py_ssize_t n):
    """The str PyUnicode_DecodeUTF8 would build from octets already checked as ASCII, without
    checking them again (both C modules build their strs from message octets with it)."""
    if n <= 1:
        return __fastsip_unicode_decode_utf8(<const char*>p, n, NULL)   # shared 0/1-char strs
    s = __fastsip_unicode_new(n, 127)
    memcpy(__fastsip_unicode_data(s), p, n)
    return s

cdef enum:
    # ``lazy`` bits: the field is not built yet (``_src`` holds the checked text it comes from,
    # or, for a URI's params / headers, it is an empty dict made on first access).
    LZ_PARAMS = 1
    LZ_URI = 2
    LZ_HEADERS = 4
    LZ_TEXT = 8      # URI: user, host and text not built yet (ASCII octets of _src at sp)
    LZ_USPANS = 16   # Address (with LZ_URI): its URI is plain, without parameters, at usp

cdef enum:
    # what the builder registered by the parser makes from ``_src``
    F_VIA_PARAMS = 1
    F_ADDR_URI = 3
    F_ADDR_PARAMS = 4

# src: the checked text (a str), or the message's bytes with the text at [a:b] (ASCII)
ctypedef object (*lazy_fn)(object src, Py_ssize_t a, Py_ssize_t b, int field)

cdef int set_builder(lazy_fn fn) except -1


cdef class URI:
    cdef public object scheme, password, port, opaque
    cdef object _user, _host, _txt, _params, _headers   # _txt: ``_text``
    cdef object _src                  # the message's bytes, while LZ_TEXT
    cdef Py_ssize_t sp[6]             # user (sp[0] < 0: none), host and text spans in _src
    cdef unsigned char lazy


cdef class Via:
    cdef public object protocol, transport, host, port
    cdef object _params, _src, _found   # _found: the branch, while params is lazy
    cdef Py_ssize_t srca, srcb          # the text's span when _src is bytes
    cdef unsigned char lazy


cdef class Address:
    cdef public object display
    cdef object _uri, _params, _src, _found   # _found: the tag, while params is lazy
    cdef Py_ssize_t srca, srcb                # the text's span when _src is bytes
    cdef Py_ssize_t usp[6]                    # with LZ_USPANS: the URI's spans, as URI.sp
    cdef object _uport                        # with LZ_USPANS: the URI's port
    cdef bint _usips                          # with LZ_USPANS: a sips URI
    cdef unsigned char lazy


cdef class CSeq:
    cdef public object seq, method
