"""Loopback SIP phones for in-process call tests: register, call (with 407 digest), answer, hang up.

A :class:`Phone` is a UDP socket with a number. It builds raw requests and responses itself, so
tests can drive every step of a call (and misbehave on purpose) and look at exactly what the
server sent. Only what the B2BUA tests need.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from netutil import UdpClient
from serverutil import Uac

from fastsip.digest import client_authorization
from fastsip.message import Request, Response, make_response
from fastsip.parser import parse_auth, parse_datagram

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_ANSWER = SDP.replace(b"40000", b"40002")

Msg = Any


class Phone:
    """One loopback UA (see the module docstring)."""

    def __init__(
        self,
        client: UdpClient,
        server_port: int,
        number: str,
        password: str = "",
        domain: str = "example.test",
    ) -> None:
        self.client = client
        self.server = ("127.0.0.1", server_port)
        self.number = number
        self.password = password
        self.domain = domain
        self.seen: list[Msg] = []
        self.cseq = 0

    @classmethod
    async def open(cls, server_port: int, number: str, password: str = "", **kw: Any) -> Phone:
        return cls(await UdpClient.open(), server_port, number, password, **kw)

    def close(self) -> None:
        self.client.close()

    @property
    def addr(self) -> tuple[str, int]:
        return self.client.addr

    @property
    def contact(self) -> str:
        host, port = self.addr
        return f"<sip:{self.number}@{host}:{port}>"

    # -- sending -------------------------------------------------------------------------------
    def send(self, data: bytes | Request | Response) -> None:
        self.client.send(bytes(data), self.server)

    async def register(self, expires: int = 3600) -> Response:
        uac = Uac(self.client, self.server[1], domain=self.domain)
        r = await uac.register(self.number, self.password, expires=expires)
        assert r.status == 200, r
        return r

    def request(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_tag: str,
        to: str,
        cseq: int,
        headers: list[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = "application/sdp",
        branch: str | None = None,
    ) -> bytes:
        host, port = self.addr
        branch = branch or f"z9hG4bK{secrets.token_hex(6)}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.number}@{self.domain}>;tag={from_tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {self.contact}",
        ]
        lines += [f"{n}: {v}" for n, v in headers]
        if body and content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def call(
        self,
        callee: str,
        *,
        body: bytes = SDP,
        headers: list[tuple[str, str]] = (),
        auth: bool = True,
        content_type: str = "application/sdp",
    ) -> Dialog:
        """Send an INVITE (answering the 407 challenge); returns the caller's dialog."""
        d = Dialog(
            self,
            call_id=f"{secrets.token_hex(8)}@phone",
            local_tag=secrets.token_hex(4),
            uri=f"sip:{callee}@{self.domain}",
            to=f"<sip:{callee}@{self.domain}>",
        )
        d.invite_body = body
        d.invite_headers = list(headers)
        d.content_type = content_type
        d.cseq = 1
        data = d.invite_bytes()
        self.send(data)
        if not auth:
            return d
        first = await self.wait(lambda m: isinstance(m, Response) and m.status >= 200, 3)
        assert first.status == 407, first
        self.send(d.ack_for(first))
        chosen = None
        for value in first.get_all("Proxy-Authenticate"):
            a = parse_auth(value)
            if a.params.get("algorithm", "MD5") == "MD5":
                chosen = a.params
        assert chosen is not None
        cred = client_authorization(
            username=self.number,
            realm=chosen["realm"],
            password=self.password,
            method="INVITE",
            uri=d.uri,
            nonce=chosen["nonce"],
            algorithm="MD5",
            qop="auth",
        )
        d.cseq = 2
        d.invite_headers.append(("Proxy-Authorization", cred))
        self.send(d.invite_bytes())
        return d

    # -- receiving -----------------------------------------------------------------------------
    async def recv(self, timeout: float = 3.0) -> Msg:
        msg = parse_datagram(await self.client.recv(timeout))
        self.seen.append(msg)
        return msg

    async def wait(self, pred: Callable[[Msg], bool], timeout: float = 3.0) -> Msg:
        """The next message matching ``pred`` (others are skipped, still kept in ``seen``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError(f"{self.number}: nothing matching within {timeout}s")
            msg = await self.recv(left)
            if pred(msg):
                return msg

    async def response(
        self, status: int | None = None, timeout: float = 3.0, *, final: bool = True
    ) -> Response:
        def ok(m: Msg) -> bool:
            if not isinstance(m, Response):
                return False
            if status is not None:
                return m.status == status
            return m.status >= 200 if final else True

        return await self.wait(ok, timeout)

    async def request_in(self, method: str, timeout: float = 3.0) -> Request:
        return await self.wait(lambda m: isinstance(m, Request) and m.method == method, timeout)

    async def nothing(self, method: str | None = None, wait: float = 0.5) -> bool:
        """True when no message (of ``method``) arrives within ``wait`` seconds."""
        try:
            await self.wait(
                lambda m: method is None or (isinstance(m, Request) and m.method == method), wait
            )
        except asyncio.TimeoutError:
            return True
        return False

    # -- answering -----------------------------------------------------------------------------
    def reply(
        self,
        req: Request,
        status: int,
        *,
        tag: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> Response:
        hs = list(headers)
        if (status < 300 and req.method == "INVITE") or (
            req.method in ("UPDATE",) and status < 300
        ):
            hs.append(("Contact", self.contact))
        resp = make_response(
            req,
            status,
            reason,
            to_tag=tag,
            headers=hs,
            body=body,
            content_type="application/sdp" if body else None,
        )
        self.send(resp)
        return resp

    def answer_dialog(self, invite: Request, tag: str) -> Dialog:
        """The callee's view of the dialog an INVITE created (after it answered 2xx)."""
        frm = invite.from_
        c = invite.contact
        d = Dialog(
            self,
            call_id=invite.call_id or "",
            local_tag=tag,
            uri=str(c.uri) if c is not None else "",
            to=invite.get("From") or "",
        )
        d.local_from = f"{invite.get('To')};tag={tag}"
        d.remote_tag = frm.tag if frm is not None else None
        d.cseq = 100
        return d


class Dialog:
    """One dialog as a phone sees it; builds its in-dialog requests."""

    def __init__(self, phone: Phone, *, call_id: str, local_tag: str, uri: str, to: str) -> None:
        self.phone = phone
        self.call_id = call_id
        self.local_tag = local_tag
        self.uri = uri
        self.to = to
        self.remote_tag: str | None = None
        self.remote_target: str | None = None
        self.cseq = 0
        self.local_from: str | None = None
        self.invite_body = b""
        self.invite_headers: list[tuple[str, str]] = []
        self.content_type = "application/sdp"
        self.branch = ""

    def invite_bytes(self) -> bytes:
        self.branch = f"z9hG4bK{secrets.token_hex(6)}"
        return self.phone.request(
            "INVITE",
            self.uri,
            call_id=self.call_id,
            from_tag=self.local_tag,
            to=self.to,
            cseq=self.cseq,
            headers=self.invite_headers,
            body=self.invite_body,
            content_type=self.content_type,
            branch=self.branch,
        )

    def ack_for(self, resp: Response) -> bytes:
        """ACK for a non-2xx final (same branch as the INVITE)."""
        host, port = self.phone.addr
        lines = [
            f"ACK {self.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={self.branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.phone.number}@{self.phone.domain}>;tag={self.local_tag}",
            f"To: {resp.get('To')}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} ACK",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def confirmed(self, resp: Response) -> None:
        """Learn the remote tag and target from a 2xx."""
        to = resp.to
        assert to is not None and to.tag
        self.remote_tag = to.tag
        c = resp.contact
        assert c is not None
        self.remote_target = str(c.uri)

    def in_dialog(
        self,
        method: str,
        *,
        cseq: int | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = self.to if self.to.find(";tag=") >= 0 else f"{self.to};tag={self.remote_tag}"
        host, port = self.phone.addr
        from_value = (
            self.local_from or f"<sip:{self.phone.number}@{self.phone.domain}>;tag={self.local_tag}"
        )
        lines = [
            f"{method} {self.remote_target or self.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: {from_value}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {self.phone.contact}",
        ]
        lines += [f"{n}: {v}" for n, v in headers]
        if body:
            lines.append(f"Content-Type: {content_type or 'application/sdp'}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def ack(self, body: bytes = b"") -> bytes:
        """ACK for the 2xx of the initial INVITE."""
        return self.in_dialog("ACK", cseq=self.cseq if self.local_from is None else 1, body=body)
