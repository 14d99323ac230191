"""The parse / parse+read functions of every implementation the parser benchmarks compare.

Each entry maps a message kind to two callables taking the wire bytes: ``parse`` (build the
message object) and ``read`` (parse, then read top Via branch, From tag, To URI, Call-ID, CSeq,
Contact and Expires — the fields a registrar or proxy reads on every message).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

Fn = Callable[[bytes], Any]


def fastsip_twin(which: str) -> ModuleType:
    return importlib.import_module(f"fastsip._parser_{which}")


def fastsip_fns(which: str) -> tuple[Fn, Fn]:
    parse = fastsip_twin(which).parse_datagram

    def read(data: bytes) -> Any:
        m = parse(data)
        return (m.via.branch, m.from_.tag, m.to.uri, m.call_id, m.cseq, m.contacts, m.expires)

    return parse, read


def sippy_fns() -> tuple[Fn, Fn]:
    from sippy.SipRequest import SipRequest
    from sippy.SipResponse import SipResponse

    def parse(data: bytes) -> Any:
        text = data.decode()
        return SipResponse(buf=text) if text.startswith("SIP/") else SipRequest(buf=text)

    def read(data: bytes) -> Any:
        m = parse(data)
        contact = m.getHFBody("contact").getUrl() if m.countHFs("contact") else None
        expires = m.getHFBody("expires").getNum() if m.countHFs("expires") else None
        return (
            m.getHFBody("via").getBranch(),
            m.getHFBody("from").getTag(),
            m.getHFBody("to").getUrl(),
            m.getHFBody("call-id"),
            m.getHFBody("cseq").getCSeq(),
            contact,
            expires,
        )

    return parse, read


def sipmessage_fns() -> tuple[Fn, Fn]:
    from sipmessage import Message

    parse = Message.parse

    def read(data: bytes) -> Any:
        m = parse(data)
        return (
            m.via[0].parameters.get("branch"),
            m.from_address.parameters.get("tag"),
            m.to_address.uri,
            m.call_id,
            m.cseq,
            m.contact,
            m.expires,
        )

    return parse, read


def httptools_fn() -> Fn:
    """httptools (llhttp) on a keep-alive connection: one parser, one request per call.

    Reusing the parser is the most favourable setup for httptools (no parser allocation per
    message), so the comparison against it is a strict one.
    """
    import httptools

    class _Proto:
        __slots__ = ("done", "headers", "url")

        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.url = b""
            self.done = 0

        def on_message_begin(self) -> None:
            self.headers = []

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_message_complete(self) -> None:
            self.done += 1

    proto = _Proto()
    parser = httptools.HttpRequestParser(proto)

    def parse(data: bytes) -> Any:
        parser.feed_data(data)
        return proto.headers

    return parse


def implementations() -> dict[str, tuple[Fn, Fn]]:
    impls: dict[str, tuple[Fn, Fn]] = {"fastsip-py": fastsip_fns("py")}
    try:
        impls["fastsip-c"] = fastsip_fns("c")
    except ImportError:
        pass
    impls["sippy"] = sippy_fns()
    impls["sipmessage"] = sipmessage_fns()
    return impls
