"""Small SIP peers speaking UDP on loopback, for the external-line tests.

* :class:`SipPeer` — a UDP endpoint that parses every datagram with fastsip and hands requests
  to a handler, which answers with responses built by :meth:`SipPeer.reply`.
* :class:`DigestRegistrar` — a registrar stub: challenges (MD5 and/or SHA-256, qop=auth),
  verifies digest credentials against one account, grants expiries, and records every REGISTER.
  Options model the real networks of issue 7: an IMS core that answers 403 unless the
  authorization user name is ``account@domain``, a provider that answers 400 with
  ``P-Registrar-Error: Invalid CSeq number`` to any REGISTER reusing a Call-ID, a Min-Expires.
* :class:`Relay` — a stateless relay (a proxy / SBC "Via" address) that forwards requests from
  one loopback address to an upstream and routes the responses back by their Via.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastsip.digest import ha1, verify_response
from fastsip.message import Request, Response, make_response
from fastsip.parser import parse_auth, parse_datagram

Handler = Callable[["SipPeer", Request, tuple[str, int]], None]


class SipPeer(asyncio.DatagramProtocol):
    """A UDP SIP endpoint on loopback."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self.requests: list[tuple[Request, tuple[str, int]]] = []
        self.responses: list[tuple[Response, tuple[str, int]]] = []
        self.on_response: Callable[[Response, tuple[str, int]], None] | None = None

    @classmethod
    async def open(
        cls, handler: Handler | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> SipPeer:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(handler), local_addr=(host, port)
        )
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            msg = parse_datagram(data)
        except Exception:
            return
        if isinstance(msg, Request):
            self.requests.append((msg, addr))
            if self.handler is not None:
                self.handler(self, msg, addr)
        elif isinstance(msg, Response):
            self.responses.append((msg, addr))
            if self.on_response is not None:
                self.on_response(msg, addr)

    def send(self, data: bytes | Request | Response, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(data), addr)

    def reply(
        self,
        request: Request,
        addr: tuple[str, int],
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    ) -> Response:
        resp = make_response(
            request, status, reason, to_tag=secrets.token_hex(4), headers=list(headers)
        )
        self.send(resp, addr)
        return resp

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def methods(self, method: str = "REGISTER") -> list[Request]:
        return [r for r, _ in self.requests if r.method == method]


@dataclass
class Seen:
    """One REGISTER the registrar received, and what it answered."""

    request: Request
    source: tuple[str, int]
    status: int = 0
    username: str | None = None


@dataclass
class DigestRegistrar:
    """A registrar stub with digest authentication (see the module docstring)."""

    account: str
    password: str
    realm: str = "provider.test"
    algorithms: tuple[str, ...] = ("MD5",)
    #: the authorization user name required; None = the account
    username: str | None = None
    #: answer 403 (IMS) instead of 401 when the user name is not the required one
    forbid_wrong_username: bool = False
    #: any REGISTER reusing a Call-ID seen before gets 400 Invalid CSeq number
    reject_reused_call_id: bool = False
    #: shortest expiry accepted (423 below it); 0 = any
    min_expires: int = 0
    #: expiry granted at most
    max_expires: int = 3600
    #: a status to answer every REGISTER with (after nothing else), e.g. 403 or 503
    fail_with: int | None = None
    fail_headers: list[tuple[str, str]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    bindings: dict[str, float] = field(default_factory=dict)
    call_ids: set[str] = field(default_factory=set)
    nonces: set[str] = field(default_factory=set)
    peer: SipPeer | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> DigestRegistrar:
        self.peer = await SipPeer.open(self.handle, host, port)
        return self

    @property
    def addr(self) -> tuple[str, int]:
        assert self.peer is not None
        return self.peer.addr

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()

    # -- counters for the tests ----------------------------------------------------------------
    def statuses(self) -> list[int]:
        return [s.status for s in self.seen]

    def ok_count(self) -> int:
        return sum(1 for s in self.seen if s.status == 200)

    def unregistrations(self) -> list[Seen]:
        return [s for s in self.seen if s.status == 200 and s.request.expires == 0]

    # -- the registrar -------------------------------------------------------------------------
    def handle(self, peer: SipPeer, request: Request, addr: tuple[str, int]) -> None:
        if request.method != "REGISTER":
            peer.reply(request, addr, 200 if request.method == "OPTIONS" else 405)
            return
        seen = Seen(request, addr)
        self.seen.append(seen)

        def answer(
            status: int, reason: str | None = None, headers: list[tuple[str, str]] = ()
        ) -> None:  # type: ignore[assignment]
            seen.status = status
            peer.reply(request, addr, status, reason, list(headers))

        call_id = request.call_id or ""
        if self.reject_reused_call_id and call_id in self.call_ids:
            answer(400, "Bad Request", [("P-Registrar-Error", "Invalid CSeq number")])
            return
        self.call_ids.add(call_id)
        if self.fail_with is not None:
            answer(self.fail_with, None, self.fail_headers)
            return
        creds = [a for a in request.authorization if a.scheme.lower() == "digest"]
        if not creds:
            self._challenge(answer)
            return
        params = creds[0].params
        seen.username = params.get("username")
        wanted = self.username or self.account
        if params.get("username") != wanted:
            if self.forbid_wrong_username:
                answer(403, "Forbidden")
            else:
                self._challenge(answer)
            return
        algorithm = params.get("algorithm", "MD5")
        if params.get("nonce") not in self.nonces or algorithm not in self.algorithms:
            self._challenge(answer, stale=params.get("nonce") not in self.nonces)
            return
        key = ha1(wanted, self.realm, self.password, algorithm)
        if not verify_response(params, method="REGISTER", ha1_hex=key):
            self._challenge(answer)
            return
        expires = request.expires if request.expires is not None else 3600
        if 0 < expires < self.min_expires:
            answer(423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))])
            return
        contact = request.contact
        assert contact is not None
        granted = min(expires, self.max_expires)
        if granted == 0:
            self.bindings.pop(str(contact.uri), None)
            answer(200, "OK")
            return
        self.bindings[str(contact.uri)] = granted
        answer(200, "OK", [("Contact", f"<{contact.uri}>;expires={granted}")])

    def _challenge(self, answer: Callable[..., None], *, stale: bool = False) -> None:
        headers = []
        for algorithm in self.algorithms:
            nonce = secrets.token_hex(12)
            self.nonces.add(nonce)
            value = (
                f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, qop="auth"'
            )
            if stale:
                value += ", stale=true"
            headers.append(("WWW-Authenticate", value))
        answer(401, "Unauthorized", headers)


class Relay:
    """A stateless UDP relay: requests go upstream with our Via on top; responses go back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.peer: SipPeer | None = None
        self.forwarded: list[Request] = []

    async def start(self, host: str, port: int = 0) -> Relay:
        self.peer = await SipPeer.open(self._request, host, port)
        self.peer.on_response = self._response
        return self

    @property
    def addr(self) -> tuple[str, int]:
        assert self.peer is not None
        return self.peer.addr

    def _request(self, peer: SipPeer, request: Request, addr: tuple[str, int]) -> None:
        host, port = peer.addr
        request.push_via(f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport")
        self.forwarded.append(request)
        peer.send(request, self.upstream)

    def _response(self, response: Response, addr: tuple[str, int]) -> None:
        assert self.peer is not None
        response.pop_via()
        via = response.via
        if via is None:
            return
        host = via.params.get("received") or via.host
        port = int(via.params.get("rport") or 0) or via.port or 5060
        self.peer.send(response, (host, port))

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()


def auth_params(request: Request) -> dict[str, str] | None:
    for value in request.get_all("Authorization"):
        return dict(parse_auth(value).params)
    return None
