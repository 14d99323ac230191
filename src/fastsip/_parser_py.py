"""Reference SIP parser (the pure-Python twin; ``_parser_c.pyx`` must behave identically).

Theory of operation
-------------------
Framing (RFC 3261 §7, §18.3):

* ``parse_datagram`` takes one UDP datagram. Leading CRLFs are skipped (§7.5). The header
  section ends at the first empty line. The body is ``Content-Length`` octets; a datagram
  carrying more is truncated to it (RFC 4475 §3.1.1.8), one carrying less is an error (§3.1.2.2);
  without Content-Length the body is the rest of the datagram (§18.3, RFC 4475 §3.4.1).
* ``StreamParser.feed`` frames a TCP/TLS byte stream by Content-Length (absent = 0), buffering
  partial messages, and treats CRLFs between messages as RFC 5626 §4.4.1 keepalives: each
  ``CRLF CRLF`` is a ping (counted in ``pings`` for the transport to answer with a CRLF pong);
  a single CRLF before a message is a pong and is ignored.
* ``classify`` looks at the first bytes only: STUN (RFC 5389 magic cookie), keepalive
  (only CR/LF), SIP (starts with a token character), garbage.

Header section: lines end in CRLF; a bare CR or LF is an error. A line starting with SP/HTAB
continues the previous header (folding); the parts are joined with one SP. Names are tokens,
optionally followed by whitespace before the colon (§7.3.1).

Start line: exactly ``Method SP Request-URI SP SIP-Version`` (RFC 4475 §3.1.2.7-10 reject extra
or trailing SP and <> around the URI) or ``SIP-Version SP 3DIGIT [SP Reason-Phrase]``.

Value parsers (``parse_uri``, ``parse_via``, ``parse_address``, ``parse_address_list``,
``parse_cseq``, ``parse_auth``) implement RFC 3261 §25.1 with the RFC 4475 / RFC 5118
tolerances; they are called lazily by the message accessors.

Every failure is a :class:`~fastsip.errors.ParseError`; limits bound all work.
"""

from __future__ import annotations

from .errors import ParseError
from .headers import Address, Auth, CSeq, Via, header_key
from .limits import DEFAULT_LIMITS, Limits
from .message import Kind, Message, Request, Response
from .uri import URI

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

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
#: RFC 3261 §25.1 token characters.
TOKEN = frozenset(_ALNUM + "-.!%*_+`'~")
_TOKEN_BYTES = frozenset(ord(c) for c in TOKEN)
_WS = " \t"
_HOST_CHARS = frozenset(_ALNUM + "-._")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_SCHEME_CHARS = frozenset(_ALNUM + "+-.")
_USER_CHARS = frozenset(_ALNUM + "-_.!~*'()&=+$,;?/%")
_PASSWORD_CHARS = frozenset(_ALNUM + "-_.!~*'()&=+$,%")
_PARAM_CHARS = frozenset(_ALNUM + "-_.!~*'()[]/:&+$%")
_HEADER_CHARS = frozenset(_ALNUM + "-_.!~*'()[]/?:+$%=")
_TEL_CHARS = frozenset(_ALNUM + "-_.!~*'()&=+$,/%#:@")
_BAD_URI_CHARS = frozenset(' \t<>"\x7f' + "".join(chr(c) for c in range(32)))
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_MAX_U32 = (1 << 32) - 1
_STUN_COOKIE = b"\x21\x12\xa4\x42"


def _err(reason: str, offset: int = -1, status: int = 400) -> ParseError:
    return ParseError(reason, status_hint=status, offset=offset)


# --------------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------------
def classify(data: bytes) -> Kind:
    """Say what a datagram is, from its first bytes, without parsing it.

    Args:
        data: the datagram (or the first chunk on a new stream).

    Returns:
        ``Kind.STUN`` for an RFC 5389 message (two zero bits, length = size - 20, multiple of 4,
        magic cookie), ``Kind.KEEPALIVE`` for only CR/LF octets, ``Kind.SIP`` when the first
        octet that is not CR/LF is a token character, else ``Kind.GARBAGE``.
    """
    n = len(data)
    if n == 0:
        return Kind.GARBAGE
    b0 = data[0]
    if b0 < 0x40:
        if (
            b0 < 2
            and n >= 20
            and data[4:8] == _STUN_COOKIE
            and ((data[2] << 8) | data[3]) == n - 20
            and (n & 3) == 0
        ):
            return Kind.STUN
        if b0 == 13 or b0 == 10:
            i = 0
            while i < n and (data[i] == 13 or data[i] == 10):
                i += 1
            if i == n:
                return Kind.KEEPALIVE
            b0 = data[i]
    if b0 < 128 and chr(b0) in TOKEN:
        return Kind.SIP
    return Kind.GARBAGE


# --------------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------------
def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _check_version(v: str, offset: int) -> None:
    # ASCII only: str.upper() maps some non-ASCII letters onto ASCII ("\u017f".upper() == "S").
    if len(v) < 7 or not v.isascii() or v[:4].upper() != "SIP/":
        raise _err("bad SIP-Version", offset)
    major, dot, minor = v[4:].partition(".")
    if not dot or not major or not minor or not (major + minor).isdigit():
        raise _err("bad SIP-Version", offset)


def _parse_start(line: bytes, base: int, limits: Limits) -> Message:
    if len(line) > limits.max_start_line:
        raise _err("start line too long", base, 513)
    if line[:4].upper() == b"SIP/":
        parts = line.split(b" ", 2)
        version = _decode(parts[0])
        _check_version(version, base)
        if len(parts) < 2:
            raise _err("bad Status-Line", base)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or code[0] < 49 or code[0] > 54:
            raise _err("bad Status-Code", base + len(parts[0]) + 1)
        reason = _decode(parts[2]) if len(parts) == 3 else ""
        resp = Response.__new__(Response)
        resp.status = int(code)
        resp.reason = reason
        resp.version = version
        return resp
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise _err("bad Request-Line", base)
    method = _decode(parts[0])
    for ch in method:
        if ch not in TOKEN:
            raise _err("bad method", base)
    uri = _decode(parts[1])
    for ch in uri:
        if ch in _BAD_URI_CHARS:
            raise _err("bad Request-URI", base + len(parts[0]) + 1)
    version = _decode(parts[2])
    _check_version(version, base + len(parts[0]) + len(parts[1]) + 2)
    req = Request.__new__(Request)
    req.method = method
    req.uri_text = uri
    req.version = version
    return req


def _parse_head(data: bytes, start: int, end: int, limits: Limits) -> Message:
    """Parse start line and header fields in data[start:end] (end = index of CRLFCRLF)."""
    lines = data[start:end].split(b"\r\n")
    first = lines[0]
    if b"\r" in first or b"\n" in first:
        raise _err("bare CR or LF in start line", start)
    msg = _parse_start(first, start, limits)
    headers: list[tuple[str, str, str]] = []
    max_headers = limits.max_headers
    max_len = limits.max_header_length
    pos = start + len(first) + 2
    name: str | None = None
    parts: list[bytes] = []
    size = 0
    name_pos = pos

    def flush() -> None:
        assert name is not None
        value = _decode(b" ".join(parts))
        headers.append((header_key(name), name, value))

    for line in lines[1:]:
        if b"\r" in line or b"\n" in line:
            raise _err("bare CR or LF in header", pos)
        if line[:1] in (b" ", b"\t"):
            if name is None:
                raise _err("continuation line before any header", pos)
            part = line.strip(b" \t")
            size += len(line)
            if size > max_len:
                raise _err("header too long", name_pos, 513)
            if part:
                parts.append(part)
        else:
            if name is not None:
                flush()
            colon = line.find(b":")
            if colon < 0:
                raise _err("header line without colon", pos)
            raw_name = line[:colon].rstrip(b" \t")
            if not raw_name:
                raise _err("empty header name", pos)
            for b in raw_name:
                if b not in _TOKEN_BYTES:
                    raise _err("bad header name", pos)
            if len(headers) >= max_headers:
                raise _err("too many headers", pos, 513)
            name = raw_name.decode("ascii")
            name_pos = pos
            size = len(line)
            if size > max_len:
                raise _err("header too long", pos, 513)
            part = line[colon + 1 :].strip(b" \t")
            parts = [part] if part else []
        pos += len(line) + 2
    if name is not None:
        flush()
    msg._headers = headers
    msg._cache = {}
    msg._limits = limits
    msg._p = _SELF
    return msg


def _content_length(msg: Message, limits: Limits, offset: int) -> int | None:
    value: str | None = None
    for k, _, v in msg._headers:
        if k == "content-length":
            if value is not None:
                raise _err("multiple Content-Length headers", offset)
            value = v
    if value is None:
        return None
    if not value or not value.isdigit() or not value.isascii():
        raise _err("bad Content-Length", offset)
    if len(value) > 10 and len(value.lstrip("0")) > 10:
        raise _err("Content-Length too large", offset, 413 if isinstance(msg, Request) else 513)
    n = int(value)
    if n > limits.max_message_size:
        raise _err("Content-Length too large", offset, 413 if isinstance(msg, Request) else 513)
    return n


def _head_start(data: bytes | bytearray) -> int:
    start = 0
    n = len(data)
    while start + 1 < n and data[start] == 13 and data[start + 1] == 10:
        start += 2
    return start


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
    n = len(data)
    if n > limits.max_message_size:
        raise _err("message too large", limits.max_message_size, 513)
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray):
            raise TypeError(f"a bytes-like datagram is required, not {type(data).__name__}")
        data = bytes(data)  # body and raw bytes are bytes whatever came in
    start = _head_start(data)
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise _err("no empty line after the header section", n)
    msg = _parse_head(data, start, end, limits)
    body_start = end + 4
    cl = _content_length(msg, limits, start)
    if cl is None:
        stop = n
    else:
        stop = body_start + cl
        if stop > n:
            raise _err("Content-Length larger than the body", n)
    msg.body = data[body_start:stop]
    msg._raw = data if (start == 0 and stop == n) else data[start:stop]
    return msg  # type: ignore[return-value]


class StreamParser:
    """Frames SIP messages on a TCP/TLS byte stream (RFC 3261 §18.3, RFC 5626 §4.4.1).

    After a :class:`ParseError` the stream cannot be resynchronised: the parser stays broken and
    the transport must close the connection.
    """

    __slots__ = ("_broken", "_buf", "_crlf", "_limits", "pings")

    def __init__(self, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._buf = bytearray()
        self._crlf = 0
        self._broken = False
        self._limits = limits
        #: CRLFCRLF keepalive pings seen by the last :meth:`feed` call (answer each with CRLF).
        self.pings = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet framed into a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Request | Response]:
        """Add bytes; return every message completed by them, in order.

        Raises:
            ParseError: the stream is malformed; close the connection.
        """
        if self._broken:
            raise _err("stream parser is broken by an earlier error")
        self.pings = 0
        buf = self._buf
        buf += data
        out: list[Request | Response] = []
        limits = self._limits
        try:
            while buf:
                # RFC 5626 §4.4.1 keepalives between messages.
                i = 0
                n = len(buf)
                while i + 1 < n and buf[i] == 13 and buf[i + 1] == 10:
                    i += 2
                    self._crlf += 1
                    if self._crlf == 2:
                        self.pings += 1
                        self._crlf = 0
                if i:
                    del buf[:i]
                if not buf or (len(buf) == 1 and buf[0] == 13):
                    break
                self._crlf = 0
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > limits.max_message_size:
                        raise _err("header section too large", limits.max_message_size, 513)
                    break
                if end + 4 > limits.max_message_size:
                    raise _err("header section too large", limits.max_message_size, 513)
                head = bytes(buf[: end + 4])
                msg = _parse_head(head, 0, end, limits)
                cl = _content_length(msg, limits, 0) or 0
                total = end + 4 + cl
                if total > limits.max_message_size:
                    raise _err("message too large", 0, 413 if isinstance(msg, Request) else 513)
                if len(buf) < total:
                    break
                raw = bytes(buf[:total])
                del buf[:total]
                msg.body = raw[end + 4 :]
                msg._raw = raw
                out.append(msg)  # type: ignore[arg-type]
        except ParseError:
            self._broken = True
            raise
        return out


# --------------------------------------------------------------------------------------------
# value parsers
# --------------------------------------------------------------------------------------------
def _unescape(text: str, what: str) -> str:
    """Decode %HH escapes exactly once (RFC 3261 §19.1.2, RFC 4475 §3.1.1.3)."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            h = text[i + 1 : i + 3]
            if len(h) != 2 or h[0] not in _HEX or h[1] not in _HEX:
                raise _err(f"bad escape in {what}")
            out.append(int(h, 16))
            i += 3
        else:
            try:
                out += ch.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # a lone surrogate outside U+DC80..U+DCFF
                raise _err(f"bad character in {what}") from None
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    for ch in text:
        if ch not in allowed and ord(ch) < 128:
            raise _err(f"bad character in {what}")


def _parse_host(hostport: str, what: str) -> tuple[str, int | None]:
    """host [":" port] with IPv6 references (RFC 3261 §25.1, RFC 5118)."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise _err(f"unterminated IPv6 reference in {what}")
        inner = hostport[1:close]
        if len(inner) < 2 or ":" not in inner:
            raise _err(f"bad IPv6 reference in {what}")
        for ch in inner:
            if ch not in _IPV6_CHARS:
                raise _err(f"bad IPv6 reference in {what}")
        host = hostport[: close + 1]
        rest = hostport[close + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise _err(f"bad host in {what}")
        port_text = rest[1:]
    else:
        host, sep, port_text = hostport.partition(":")
        if not host:
            raise _err(f"missing host in {what}")
        for ch in host:
            if ch not in _HOST_CHARS:
                raise _err(f"bad host in {what}")
        if not sep:
            return host, None
    if not port_text or len(port_text) > 5 or not port_text.isdigit() or not port_text.isascii():
        raise _err(f"bad port in {what}")
    port = int(port_text)
    if port > 65535:
        raise _err(f"bad port in {what}")
    return host, port


def _uri_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise _err(f"empty parameter in {what}")
        _check_chars(name, _PARAM_CHARS, what)
        key = _unescape(name, what).lower()
        if eq:
            _check_chars(value, _PARAM_CHARS, what)
            val: str | None = _unescape(value, what)
        else:
            val = None
        if key not in params:
            params[key] = val
    return params


def parse_uri(text: str) -> URI:
    """Parse a URI: sip/sips (RFC 3261 §19.1), tel (RFC 3966), or any other scheme (opaque).

    Raises:
        ParseError: malformed URI.
    """
    colon = text.find(":")
    if colon <= 0:
        raise _err("URI without scheme")
    scheme = text[:colon]
    if not ("a" <= scheme[0].lower() <= "z"):
        raise _err("bad URI scheme")
    for ch in scheme:
        if ch not in _SCHEME_CHARS:
            raise _err("bad URI scheme")
    for ch in text:
        if ch in _BAD_URI_CHARS:
            raise _err("bad character in URI")
    rest = text[colon + 1 :]
    low = scheme.lower()
    if low == "sip" or low == "sips":
        return _parse_sip_uri(low, rest, text)
    if low == "tel":
        number, semi, ptext = rest.partition(";")
        if not number:
            raise _err("empty tel URI")
        _check_chars(number, _TEL_CHARS, "tel URI")
        params = _uri_params(ptext, "tel URI") if semi else {}
        return URI("tel", _unescape(number, "tel URI"), None, None, params, text=text)
    if not rest:
        raise _err("empty URI")
    return URI(low, opaque=rest, text=text)


def _parse_sip_uri(scheme: str, rest: str, text: str) -> URI:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        if rest.find("@", at + 1) >= 0:
            raise _err("more than one @ in URI")
        userinfo = rest[:at]
        hostpart = rest[at + 1 :]
        u, sep, pw = userinfo.partition(":")
        if not u:
            raise _err("empty user in URI")
        _check_chars(u, _USER_CHARS, "URI user")
        user = _unescape(u, "URI user")
        if sep:
            _check_chars(pw, _PASSWORD_CHARS, "URI password")
            password = _unescape(pw, "URI password")
    else:
        hostpart = rest
    headers: dict[str, str] = {}
    q = hostpart.find("?")
    if q >= 0:
        htext = hostpart[q + 1 :]
        hostpart = hostpart[:q]
        if not htext:
            raise _err("empty URI headers")
        for item in htext.split("&"):
            hname, eq, hvalue = item.partition("=")
            if not hname or not eq:
                raise _err("bad URI header")
            _check_chars(hname, _HEADER_CHARS, "URI header")
            _check_chars(hvalue, _HEADER_CHARS, "URI header")
            headers.setdefault(_unescape(hname, "URI header"), _unescape(hvalue, "URI header"))
    semi = hostpart.find(";")
    params: dict[str, str | None] = {}
    if semi >= 0:
        params = _uri_params(hostpart[semi + 1 :], "URI")
        hostpart = hostpart[:semi]
    host, port = _parse_host(hostpart, "URI")
    return URI(scheme, user, host, port, params, headers, password=password, text=text)


def _skip_ws(text: str, i: int, n: int) -> int:
    while i < n and (text[i] == " " or text[i] == "\t"):
        i += 1
    return i


def _token(text: str, i: int, n: int, what: str) -> tuple[str, int]:
    j = i
    while j < n and text[j] in TOKEN:
        j += 1
    if j == i:
        raise _err(f"expected a token in {what}")
    return text[i:j], j


def _quoted_end(text: str, i: int, n: int, what: str) -> int:
    """Index just past the quoted-string starting at text[i] == '"'."""
    j = i + 1
    while j < n:
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == '"':
            return j + 1
        j += 1
    raise _err(f"unterminated quoted string in {what}")


def _unquote_pairs(raw: str) -> str:
    """Resolve quoted-pairs (``\\x`` -> ``x``) in the inside of a quoted-string."""
    if "\\" not in raw:
        return raw
    chars = []
    k = 0
    n = len(raw)
    while k < n:
        if raw[k] == "\\":
            k += 1
        if k < n:
            chars.append(raw[k])
        k += 1
    return "".join(chars)


def _gen_params(
    text: str, i: int, n: int, params: dict[str, str | None], what: str, in_list: bool
) -> int:
    """Parse ``*( SEMI generic-param )``; stop at end, or at a comma when in_list."""
    while True:
        i = _skip_ws(text, i, n)
        if i >= n:
            return i
        ch = text[i]
        if ch == ",":
            if in_list:
                return i
            raise _err(f"unexpected comma in {what}")
        if ch != ";":
            raise _err(f"unexpected character in {what}")
        i = _skip_ws(text, i + 1, n)
        name, i = _token(text, i, n, what)
        i = _skip_ws(text, i, n)
        value: str | None = None
        if i < n and text[i] == "=":
            i = _skip_ws(text, i + 1, n)
            if i < n and text[i] == '"':
                j = _quoted_end(text, i, n, what)
            else:
                j = i
                while j < n and text[j] not in ' \t;,"<>':
                    j += 1
                if j == i:
                    raise _err(f"empty parameter value in {what}")
            value = text[i:j]
            i = j
        key = name.lower()
        if key not in params:
            params[key] = value


def parse_via(text: str, max_via: int = 70) -> list[Via]:
    """Parse one Via header field value, which may hold several via-parms (RFC 3261 §20.42).

    Raises:
        ParseError: malformed value, or more than ``max_via`` values (513).
    """
    out: list[Via] = []
    n = len(text)
    i = 0
    while True:
        i = _skip_ws(text, i, n)
        name, i = _token(text, i, n, "Via")
        i = _skip_ws(text, i, n)
        if i >= n or text[i] != "/":
            raise _err("bad sent-protocol in Via")
        i = _skip_ws(text, i + 1, n)
        version, i = _token(text, i, n, "Via")
        i = _skip_ws(text, i, n)
        if i >= n or text[i] != "/":
            raise _err("bad sent-protocol in Via")
        i = _skip_ws(text, i + 1, n)
        transport, i = _token(text, i, n, "Via")
        j = _skip_ws(text, i, n)
        if j == i:
            raise _err("missing sent-by in Via")
        i = j
        j = i
        if j < n and text[j] == "[":
            close = text.find("]", j)
            if close < 0:
                raise _err("unterminated IPv6 reference in Via")
            j = close + 1
        while j < n and text[j] not in " \t;,":
            j += 1
        hostport = text[i:j]
        i = _skip_ws(text, j, n)
        if i < n and text[i] == ":":
            # LWS before the port colon (RFC 3261 allows ``host : port``)
            k = _skip_ws(text, i + 1, n)
            p = k
            while p < n and text[p] in _DIGITS:
                p += 1
            hostport = hostport + ":" + text[k:p]
            i = p
        host, port = _parse_host(hostport, "Via")
        params: dict[str, str | None] = {}
        i = _gen_params(text, i, n, params, "Via", True)
        out.append(Via(transport.upper(), host, port, params, protocol=f"{name}/{version}"))
        if len(out) > max_via:
            raise _err("too many Via values", -1, 513)
        if i >= n:
            return out
        i += 1  # the comma


def _parse_address_at(text: str, i: int, n: int, in_list: bool, what: str) -> tuple[Address, int]:
    i = _skip_ws(text, i, n)
    if i >= n:
        raise _err(f"empty {what}")
    display: str | None = None
    if text[i] == '"':
        j = _quoted_end(text, i, n, what)
        display = _unquote_pairs(text[i + 1 : j - 1])
        i = _skip_ws(text, j, n)
        if i >= n or text[i] != "<":
            raise _err(f"expected < after display name in {what}")
        name_addr = True
    else:
        j = i
        while j < n and (text[j] in TOKEN or text[j] == " " or text[j] == "\t"):
            j += 1
        if j < n and text[j] == "<":
            words = text[i:j].split()
            display = " ".join(words) if words else None
            i = j
            name_addr = True
        else:
            name_addr = False
    if name_addr:
        close = text.find(">", i)
        if close < 0:
            raise _err(f"missing > in {what}")
        inner = text[i + 1 : close]
        if not inner or inner[0] in " \t" or inner[-1] in " \t":
            raise _err(f"whitespace inside <> in {what}")
        uri = parse_uri(inner)
        i = close + 1
    else:
        j = i
        while j < n and text[j] not in ";," and text[j] not in _WS:
            j += 1
        spec = text[i:j]
        if "?" in spec:
            raise _err(f"URI with headers must be in <> in {what}")
        uri = parse_uri(spec)
        i = j
    params: dict[str, str | None] = {}
    i = _gen_params(text, i, n, params, what, in_list)
    return Address(uri, display, params), i


def parse_address(text: str) -> Address:
    """Parse a From/To-style value: ``[display] <uri>;params`` or ``uri;params`` (§20.10).

    Raises:
        ParseError: malformed value.
    """
    addr, _ = _parse_address_at(text, 0, len(text), False, "address")
    return addr


def parse_address_list(text: str) -> list[Address]:
    """Parse a comma-separated list of addresses (Contact, Route, Record-Route, Path).

    Raises:
        ParseError: malformed value (including empty list elements).
    """
    out: list[Address] = []
    n = len(text)
    i = 0
    while True:
        addr, i = _parse_address_at(text, i, n, True, "address list")
        out.append(addr)
        if i >= n:
            return out
        i += 1  # the comma


def parse_cseq(text: str) -> CSeq:
    """Parse ``1*DIGIT LWS Method`` with the number in 0..2**32-1 (RFC 4475 §3.1.2.4).

    Raises:
        ParseError: malformed or out of range.
    """
    n = len(text)
    i = _skip_ws(text, 0, n)
    j = i
    while j < n and text[j] in _DIGITS:
        j += 1
    digits = text[i:j]
    if not digits:
        raise _err("bad CSeq number")
    if len(digits.lstrip("0")) > 10:
        raise _err("CSeq number out of range")
    seq = int(digits)
    if seq > _MAX_U32:
        raise _err("CSeq number out of range")
    k = _skip_ws(text, j, n)
    if k == j:
        raise _err("bad CSeq")
    method, k = _token(text, k, n, "CSeq")
    if _skip_ws(text, k, n) != n:
        raise _err("bad CSeq")
    return CSeq(seq, method)


_TOKEN68 = frozenset(_ALNUM + "-._~+/")


def parse_auth(text: str) -> Auth:
    """Parse a credentials/challenge value: ``scheme [auth-param *(COMMA auth-param)]``.

    Values are unquoted; a ``token68`` form (``Basic abc==``) is kept under the name
    ``token68``.

    Raises:
        ParseError: malformed value.
    """
    n = len(text)
    i = _skip_ws(text, 0, n)
    scheme, i = _token(text, i, n, "authorization")
    params: dict[str, str] = {}
    quoted: set[str] = set()
    i = _skip_ws(text, i, n)
    if i >= n:
        return Auth(scheme, params, frozenset())
    rest = text[i:].rstrip(" \t")
    stripped = rest.rstrip("=")
    if stripped and all(c in _TOKEN68 for c in stripped) and "=" not in stripped:
        return Auth(scheme, {"token68": rest}, frozenset())
    while True:
        i = _skip_ws(text, i, n)
        name, i = _token(text, i, n, "authorization")
        i = _skip_ws(text, i, n)
        if i >= n or text[i] != "=":
            raise _err("bad auth-param")
        i = _skip_ws(text, i + 1, n)
        key = name.lower()
        if i < n and text[i] == '"':
            j = _quoted_end(text, i, n, "authorization")
            raw = _unquote_pairs(text[i + 1 : j - 1])
            if key not in params:
                params[key] = raw
                quoted.add(key)
            i = j
        else:
            value, i = _token(text, i, n, "authorization")
            if key not in params:
                params[key] = value
        i = _skip_ws(text, i, n)
        if i >= n:
            return Auth(scheme, params, frozenset(quoted))
        if text[i] != ",":
            raise _err("bad auth-param list")
        i += 1


import sys as _sys  # noqa: E402

_SELF = _sys.modules[__name__]
