"""Comparable summaries of what a parser twin did with an input (for differential tests)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from fastsip import ParseError
from fastsip.message import Request

ACCESSORS = (
    "vias",
    "via",
    "from_",
    "to",
    "call_id",
    "cseq",
    "max_forwards",
    "expires",
    "content_length",
    "content_type",
    "contacts",
    "contact_star",
    "routes",
    "record_routes",
    "paths",
    "authorization",
    "proxy_authorization",
    "www_authenticate",
    "proxy_authenticate",
    "supported",
    "require",
    "allow",
    "user_agent",
)


def _call(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except ParseError as e:
        return ("ParseError", e.status_hint)
    except Exception as e:  # a non-ParseError is a bug in either twin: keep its type
        return ("BUG", type(e).__name__, str(e))


def message_outcome(msg: Any) -> tuple[Any, ...]:
    out: list[Any] = [type(msg).__name__, msg.headers, msg.body, bytes(msg), msg.version]
    if isinstance(msg, Request):
        out += [msg.method, msg.uri_text, _call(lambda: msg.uri)]
    else:
        out += [msg.status, msg.reason]
    for name in ACCESSORS:
        out.append(_call(lambda name=name: getattr(msg, name)))
    out.append(_call(msg.validate))
    return tuple(out)


def datagram_outcome(p: ModuleType, data: bytes) -> Any:
    r = _call(lambda: p.parse_datagram(data))
    if r[0] != "ok":
        return r
    return ("ok", message_outcome(r[1]))


def stream_outcome(p: ModuleType, chunks: list[bytes]) -> Any:
    sp = p.StreamParser()
    out: list[Any] = []
    for chunk in chunks:
        r = _call(lambda chunk=chunk: sp.feed(chunk))
        if r[0] != "ok":
            out.append(r)
            break
        out.append([message_outcome(m) for m in r[1]])
        out.append(sp.pings)
    return out


VALUE_FUNCS = (
    "parse_uri",
    "parse_via",
    "parse_address",
    "parse_address_list",
    "parse_cseq",
    "parse_auth",
)


def value_outcome(p: ModuleType, text: str) -> Any:
    return tuple(_call(lambda f=f: getattr(p, f)(text)) for f in VALUE_FUNCS) + (
        _call(lambda: p.classify(text.encode("utf-8", "surrogateescape"))),
    )
