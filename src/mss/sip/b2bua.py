"""The back-to-back user agent: calls between users as two (or more) independent dialogs.

Theory of operation
-------------------
Half-call model (miniSIPServer): the caller's INVITE ends at the server, which is the UAS of the
caller's dialog; the call is then re-originated as a new INVITE for each device to ring (new
Call-ID, From tag and branch), the server being the UAC of each callee dialog. Each side is a
:class:`Leg` with its own Call-ID, tags, CSeq space, remote target, route set and transactions.
Our Contact on each side points to the server, so every in-dialog request comes back here: a
B2BUA is the endpoint of both dialogs and needs no Record-Route.

Call set-up (:meth:`B2bua.on_invite`), in this order:

1. an INVITE with a To tag is a re-INVITE (relayed, see below);
2. Max-Forwards 0 → 483 (RFC 3261 §16.3 step 3); every new leg carries the caller's value
   minus one, so a routing loop through the server ends with 483 too;
3. the caller is identified: an IP-authorized user (no challenge), else digest with 407
   (:meth:`~mss.sip.auth.Authenticator.authenticate` with ``proxy=True``);
4. a body that is not ``application/sdp`` → 415 with ``Accept: application/sdp``;
5. the system blacklist (:mod:`mss.features.blacklist`, 403);
6. policy (:mod:`mss.features.calls`): caller limits (403), Python hooks, dial plan (404, 480,
   486), then the legs are forked in parallel and the no-answer timer starts.

Forking (RFC 3261 §16.7 for the choice of the final response): provisional responses are
relayed to the caller (one To tag towards the caller for all legs); the first 2xx wins and every
other leg gets CANCEL with ``Reason: SIP;cause=200;text="Call completed elsewhere"``; a 2xx
arriving later on another leg is ACKed and BYEd. When every leg failed the caller gets the best
response: a 6xx at once (the other legs are cancelled), else the lowest class, preferring
answers that say something (486, 603...) over 408/487. A CANCEL is only sent on a leg that has
had a provisional response (§9.1); until then it is remembered and sent when one arrives.

2xx and ACK (RFC 3261 §13.3.1.4, §13.2.2.4): the callee's 2xx is relayed to the caller and
retransmitted (T1 doubling up to T2) until the caller's ACK; that ACK triggers the ACK on the
callee leg, carrying the caller's SDP answer when the caller made a late offer (INVITE without
SDP). Without an ACK after 64*T1 the call is released with BYE on both sides. The callee's 2xx
retransmissions get our ACK again; the same machinery serves re-INVITEs in both directions.

Memory of an established call (issue 9): once the caller's ACK for the call's 2xx arrives
(:meth:`B2bua._established`), or the call ends, the call lets go of what only set-up needed —
the caller's INVITE context (parsed request, server transaction), the winning leg's INVITE and
client transaction, the routing and the INVITE headers in :class:`CallInfo` — and keeps each
leg's dialog state (Call-ID, tags, CSeq, remote target, route set, our Contact, the ACK bytes
resent on a retransmitted 2xx) and the call record. ``Call.ctx`` raises after that; nothing
reads it past the answer. A call the voicemail answered keeps its context (the deposit reads the
caller's From after the call ended).

In-dialog requests (BYE, re-INVITE, UPDATE, INFO, PRACK, MESSAGE, NOTIFY, OPTIONS...) are found
by (Call-ID, our tag) and relayed to the other leg as a new client transaction on that leg; the
final response is relayed back. BYE is answered 200 at once and a BYE goes to the other leg (the
call is over whatever the other side says). PRACK gets its RAck rewritten to the other leg's
INVITE CSeq. SDP, Session-Expires and Min-SE (RFC 4028) pass through unchanged.

Calls through external lines and SIP trunks (issue 7; the policy is
:mod:`mss.features.external`): a request from a trunk or a line's provider is identified by
its address before any user (no challenge); a leg whose destination names ``credentials``
answers a 401/407 once with the line's digest (same dialog, CSeq + 1, :meth:`B2bua.authorize`);
when every leg answered 5xx and the routing has a ``fallback``, the call is re-sent there.

Every way a call ends — final non-2xx, caller CANCEL, no-answer timer, BYE from either side, 2xx
never ACKed, shutdown — goes through :meth:`B2bua._end`, which releases the call-limit holds,
stops the timers and writes the call record (:class:`~mss.features.cdr.CdrService`).
A caller's CANCEL passes its ``Reason`` (RFC 3326) on to the callee legs and into the record.
:meth:`B2bua.hangup` (registered as ``CallService.control``, the API's ``DELETE /calls/{id}``)
releases a call from the server side: BYE both sides, or CANCEL the legs and 480 the caller.
Each call publishes ``callStatus`` events (setup, alerting, answered, released) to
:attr:`B2bua.events` when the server wires its event hub there.

Out-of-dialog MESSAGE (RFC 3428 pager mode) from a user to a local user is forked the same way,
as non-INVITE transactions; the first 2xx or the best final response is relayed back.

Voicemail (issue 10): where a call to a user fails — the dial plan's 480/486, every leg failed
(busy: 486/600/603, offline: 408/480/503), the no-answer timer — and before forking (``always``),
:meth:`B2bua._to_voicemail` asks :mod:`mss.sip.voicemail`, which may answer the caller itself;
requests and ACKs on such a call's dialog go there too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from fastsip.message import Request, Response, make_cancel
from fastsip.transaction import ClientTransaction

from ..features.blacklist import SystemBlacklist
from ..features.calls import CONTINUE, CallInfo, CallService, Decision, Destination, Reject, Routing
from ..features.cdr import CallLog, CdrService
from ..features.events import EventPublisher, call_status_event
from ..features.users import UserDirectory
from ..storage.base import UserRecord
from .addressing import Source, Target
from .auth import Authenticator
from .core import RequestContext, SipCore

if TYPE_CHECKING:
    from ..features.voicemail import VoicemailBox
    from .voicemail import VoicemailAnswerer, VoicemailMedia

__all__ = ("B2bua", "Call", "Leg", "best_response", "parse_reason")

log = logging.getLogger("mss.b2bua")

#: headers that belong to one dialog or hop and are never copied from one leg to the other
_HOP_HEADERS = frozenset(
    (
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "contact",
        "route",
        "record-route",
        "max-forwards",
        "content-length",
        "authorization",
        "proxy-authorization",
        "path",
        "server",
        "rack",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
    )
)
REASON_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
REASON_NO_ANSWER = 'SIP;cause=480;text="No answer"'
_CAUSE_RESULT = {486: "busy", 600: "busy", 487: "cancelled"}
_REJECTED = frozenset((401, 403, 404, 407, 415, 420, 480, 482, 483, 484, 485, 488, 603, 604, 606))


def parse_reason(value: str | None) -> tuple[int | None, str]:
    """``cause`` and ``text`` of a Reason header value (RFC 3326): ``SIP;cause=200;text="x"``."""
    if not value:
        return None, ""
    cause: int | None = None
    text = ""
    for part in value.split(",")[0].split(";")[1:]:
        k, _, v = part.partition("=")
        k = k.strip().lower()
        v = v.strip()
        if k == "cause" and v.isdigit():
            cause = int(v)
        elif k == "text":
            text = v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
    return cause, text


def best_response(responses: Iterable[Response]) -> Response | None:
    """The final response to forward when no branch answered (RFC 3261 §16.7 step 6).

    A 6xx wins; else the lowest class among 3xx-5xx; within a class an informative answer
    (486, 480, 404...) is preferred over 408 (timeout), 487 (our own CANCEL) and 503 (transport
    failure), then the first received.
    """
    finals = [r for r in responses if r.status >= 300]
    if not finals:
        return None
    six = [r for r in finals if r.status >= 600]
    if six:
        return six[0]
    low = min(r.status // 100 for r in finals)
    same = [r for r in finals if r.status // 100 == low]
    for r in same:
        if r.status not in (408, 487, 503):
            return r
    return same[0]


class _Entropy:
    """Random bytes from ``os.urandom`` read 4 KiB at a time.

    A call takes seven random values (its id, two tags, the callee leg's Call-ID, three Via
    branches); ``secrets.token_hex`` / ``uuid.uuid4`` make one ``getrandom`` system call each.
    The bytes are the same kind (the kernel's CSPRNG), only read in blocks. A forked child
    drops the parent's block, or both would hand out the same values.
    """

    __slots__ = ("_block", "_pos")

    SIZE = 4096

    def __init__(self) -> None:
        self._block = b""
        self._pos = 0

    def reset(self) -> None:
        self._block = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end > len(self._block):
            self._block = os.urandom(self.SIZE)
            pos, end = 0, n
        self._pos = end
        return self._block[pos:end]

    def hex(self, n: int) -> str:
        """What ``secrets.token_hex(n)`` returns: ``2 * n`` lower-case hex digits."""
        return self.take(n).hex()

    def uuid4_hex(self) -> str:
        """What ``uuid.uuid4().hex`` returns (RFC 4122 version 4: the version and variant bits
        set as :class:`uuid.UUID` sets them)."""
        n = int.from_bytes(self.take(16), "big")
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # variant RFC 4122
        n = (n & ~(0xF000 << 64)) | (4 << 76)  # version 4
        return f"{n:032x}"


_entropy = _Entropy()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_entropy.reset)


def _token() -> str:
    return _entropy.hex(6)


def _copied(msg: Request | Response, drop: frozenset[str] = _HOP_HEADERS) -> list[tuple[str, str]]:
    """The end-to-end headers of ``msg`` (everything but the per-hop/per-dialog ones)."""
    # _headers is fastsip's (key, name, value) list: reading it avoids re-normalising names.
    return [(n, v) for k, n, v in msg._headers if k not in drop]


def _with_tag(value: str, tag: str) -> str:
    return f"{value};tag={tag}"


class Leg:
    """One side of a call: a dialog where the server is the UAS (caller) or the UAC (callee)."""

    __slots__ = (
        "ack_waits",
        "acks",
        "auth_rounds",
        "byed",
        "call",
        "call_id",
        "cancel_pending",
        "cancel_reason",
        "cancelled",
        "contact",
        "credentials",
        "dest",
        "final",
        "invite",
        "local",
        "local_cseq",
        "local_tag",
        "relay_pending",
        "remote",
        "remote_tag",
        "remote_target",
        "route_set",
        "side",
        "state",
        "txn",
    )

    def __init__(
        self,
        call: Call,
        side: str,
        *,
        call_id: str,
        local_tag: str,
        local: str,
        remote: str,
        remote_target: str,
        dest: Target,
        contact: str,
        route_set: list[str] | None = None,
    ) -> None:
        self.call = call
        self.side = side
        self.call_id = call_id
        self.local_tag = local_tag
        #: our From/To header value (with our tag) on this dialog
        self.local = local
        #: the peer's header value (with its tag once known)
        self.remote = remote
        self.remote_tag: str | None = None
        self.remote_target = remote_target
        self.route_set: list[str] = list(route_set or [])
        self.dest = dest
        self.contact = contact
        self.local_cseq = 0
        #: callee legs: the INVITE, its client transaction, progress
        self.invite: Request | None = None
        self.txn: ClientTransaction | None = None
        self.state = "calling"  # calling, early, answered, failed, ended
        self.final: Response | None = None
        self.cancel_pending = False
        self.cancel_reason: str | None = None
        self.cancelled = False
        self.byed = False
        #: ACKs we sent for this leg's 2xx, by CSeq number (resent on 2xx retransmissions)
        self.acks: dict[int, bytes] = {}
        #: 2xx we sent on this leg waiting for the peer's ACK, by CSeq number
        self.ack_waits: dict[int, _AckWait] = {}
        #: an INVITE relayed on this leg is pending (glare → 491)
        self.relay_pending = False
        #: callee legs through a line: whose credentials answer a 401/407, and how often did
        self.credentials = ""
        self.auth_rounds = 0

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def __repr__(self) -> str:
        return f"<Leg {self.side} {self.call_id} {self.state}>"


class _AckWait:
    """A 2xx to an INVITE we sent on ``leg``: retransmitted until its ACK (§13.3.1.4)."""

    __slots__ = ("ctx", "deadline", "handle", "interval", "leg", "peer", "peer_cseq", "response")

    def __init__(
        self,
        ctx: RequestContext,
        response: Response,
        leg: Leg,
        peer: Leg,
        peer_cseq: int,
        interval: float,
        deadline: float,
    ) -> None:
        self.ctx = ctx
        self.response = response
        self.leg = leg
        self.peer = peer
        self.peer_cseq = peer_cseq
        self.interval = interval
        self.deadline = deadline
        self.handle: Any = None


class Call:
    """One call attempt: the caller's leg, the callee legs, timers and the call record."""

    __slots__ = (
        "_ctx",
        "b2bua",
        "caller",
        "early_leg",
        "id",
        "info",
        "legs",
        "log",
        "max_forwards",
        "no_answer",
        "routing",
        "state",
        "user",
        "voicemail",
        "winner",
    )

    def __init__(
        self, b2bua: B2bua, ctx: RequestContext, info: CallInfo, user: UserRecord, log_: CallLog
    ) -> None:
        self.b2bua = b2bua
        self._ctx: RequestContext | None = ctx
        self.info = info
        self.id = info.id
        self.user = user
        self.log = log_
        self.caller: Leg | None = None
        self.legs: list[Leg] = []
        self.winner: Leg | None = None
        self.early_leg: Leg | None = None
        self.state = "routing"  # routing, ringing, answered, ended
        self.no_answer: Any = None
        self.routing: Routing | None = None
        self.max_forwards = 70
        #: the voicemail answered this call (mss.sip.voicemail.VoicemailCall), issue 10
        self.voicemail: Any = None

    @property
    def ctx(self) -> RequestContext:
        """The caller's INVITE being answered; released once the call is established.

        Raises:
            LookupError: released (the caller's ACK for the 2xx arrived, or the call ended).
        """
        ctx = self._ctx
        if ctx is None:
            raise LookupError(f"call {self.id}: the caller's INVITE was released")
        return ctx

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.info.caller}->{self.info.callee} {self.state}>"


LocalAddress = Callable[[str, str], tuple[str, int]]


class B2bua:
    """Calls and pager-mode MESSAGEs between users (see the module docstring)."""

    def __init__(
        self,
        *,
        core: SipCore,
        users: UserDirectory,
        auth: Authenticator,
        calls: CallService,
        cdr: CdrService | None = None,
        blacklist: SystemBlacklist | None = None,
        local_address: LocalAddress,
        domain: Callable[[], str | None] = lambda: None,
        is_self: Callable[[str, str, int], bool] = lambda t, h, p: False,
        max_forwards: int = 70,
        wall: Callable[[], float] = time.time,
        voicemail: VoicemailBox | None = None,
        voicemail_media: VoicemailMedia | None = None,
    ) -> None:
        self.core = core
        self.users = users
        self.auth = auth
        self.calls = calls
        self.cdr = cdr
        self.blacklist = blacklist
        self.local_address = local_address
        self.domain = domain
        self.is_self = is_self
        self.max_forwards = max_forwards
        self.wall = wall
        #: issue 10: the answering machine for calls to users with voicemail (mss.sip.voicemail)
        self.voicemail: VoicemailAnswerer | None = None
        if voicemail is not None:
            from .voicemail import VoicemailAnswerer, VoicemailMedia

            self.voicemail = VoicemailAnswerer(self, voicemail, voicemail_media or VoicemailMedia())
        #: (Call-ID, our tag) -> leg: where in-dialog requests and stray responses go
        self._dialogs: dict[tuple[str, str], Leg] = {}
        #: the caller's INVITE context -> its call (CANCEL)
        self._by_ctx: dict[RequestContext, Call] = {}
        #: a relayed re-INVITE's server context -> (leg it was sent on, the request) (CANCEL)
        self._relays: dict[RequestContext, tuple[Leg, Request]] = {}
        self._active: dict[str, Call] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        #: ``(credentials, request, challenge) -> (header, value, stale) | None``: answers a
        #: 401/407 on legs through external lines (``LineRegistrations.authorize``, issue 7)
        self.authorize: Callable[[str, Request, Response], tuple[str, str, bool] | None] | None = (
            None
        )
        self.stats = {"calls": 0, "answered": 0, "failed": 0, "messages": 0, "relayed": 0}
        #: where ``callStatus`` events go (the server's event hub; None = not published)
        self.events: EventPublisher | None = None
        calls.control = self  # CallService.hangup() reaches calls here (the API's DELETE /calls)

    # ========================================================================================
    # helpers
    # ========================================================================================
    @property
    def active_calls(self) -> int:
        return len(self._active)

    def calls_active(self) -> list[Call]:
        return list(self._active.values())

    def _status(self, call: Call, state: str) -> None:
        """Publish ``callStatus`` ``state`` for ``call`` (issue 8) when an event hub is wired."""
        if self.events is not None:
            try:
                self.events.publish_built("callStatus", call_status_event, state, call.log)
            except Exception:  # an event must never break a call
                log.exception("callStatus event failed")

    def _timers(self) -> Any:
        return self.core.layer.timers

    def _via(self, transport: str, host: str, port: int) -> str:
        hp = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{transport.upper()} {hp}:{port};branch=z9hG4bK{_entropy.hex(8)};rport"

    def _contact(self, user: str, transport: str, host: str, port: int) -> str:
        hp = f"[{host}]" if ":" in host else host
        tp = "" if transport == "udp" else f";transport={transport}"
        u = f"{user}@" if user else ""
        return f"<sip:{u}{hp}:{port}{tp}>"

    def _request(
        self,
        leg: Leg,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        cseq: int | None = None,
        contact: bool = True,
        max_forwards: int | None = None,
    ) -> Request:
        """A request on ``leg``'s dialog (RFC 3261 §12.2.1.1): new branch, our tags, its CSeq."""
        lhost, lport = self.local_address(leg.dest.transport, leg.dest.host)
        hs: list[tuple[str, str]] = [
            ("Via", self._via(leg.dest.transport, lhost, lport)),
            ("Max-Forwards", str(max_forwards if max_forwards is not None else self.max_forwards)),
        ]
        hs += [("Route", r) for r in leg.route_set]
        hs += [
            ("From", leg.local),
            ("To", leg.remote),
            ("Call-ID", leg.call_id),
            ("CSeq", f"{cseq if cseq is not None else leg.next_cseq()} {method}"),
        ]
        if contact and method not in ("ACK", "BYE", "CANCEL"):
            hs.append(("Contact", leg.contact))
        hs += headers
        hs.append(("Content-Length", str(len(body))))
        return Request(method, leg.remote_target, hs, body)

    def _spawn(self, coro: Any, done: Callable[[asyncio.Future[Any]], None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(done)

    def _identify(self, ctx: RequestContext) -> UserRecord | None:
        """The calling user: IP-authorized, else digest (407). None = already answered."""
        req = ctx.request
        frm = req.from_
        from_user = frm.uri.user if frm is not None else None
        src = ctx.source
        # a SIP trunk or a line's provider: trusted by address (issue 7, mss.features.external)
        user = self.calls.external_caller(
            src.transport, src.host, src.port, req.uri.user, from_user
        )
        if user is None:
            user = self.users.ip_user(src.host, src.port, from_user)
        if user is not None:
            return user
        return self.auth.authenticate(ctx, proxy=True)

    # ========================================================================================
    # new calls
    # ========================================================================================
    def on_invite(self, ctx: RequestContext) -> None:
        req = ctx.request
        to = req.to
        if to is not None and to.tag is not None:
            self.on_in_dialog(ctx)
            return
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            ctx.respond(483)  # RFC 3261 §16.3 step 3 (and loops through the server)
            return
        user = self._identify(ctx)
        if user is None:
            return
        if req.body and req.content_type != "application/sdp":
            ctx.respond(415, headers=[("Accept", "application/sdp")])
            return
        now = self.wall()
        src = ctx.source
        host = f"[{src.host}]" if ":" in src.host else src.host
        source = f"{src.transport}:{host}:{src.port}"
        dialed = req.uri.user or ""
        info = CallInfo(
            id=_entropy.uuid4_hex(),
            caller=user.number,
            callee=dialed,
            source=source,
            headers=tuple(req.headers),
            call_id=req.call_id or "",
        )
        clog = CallLog(info.id, user.number, dialed, now, call_id=info.call_id, caller_addr=source)
        call = Call(self, ctx, info, user, clog)
        call.max_forwards = min(self.max_forwards, (mf if mf is not None else 70) - 1)
        self.stats["calls"] += 1
        self._active[call.id] = call
        self._by_ctx[ctx] = call
        self._status(call, "setup")
        if self.blacklist is not None:
            screened = self.blacklist.screen(req, called=dialed, source=source)
            if screened.blocked:
                clog.reason = screened.reason
                self._fail(call, screened.status, screened.reason_phrase)
                return
        rejected = self.calls.admit(user, call.id)
        if rejected is not None:
            self._fail(call, rejected.status, rejected.reason)
            return
        if self.calls.hooks:
            self._spawn(self.calls.decide(info), lambda fut: self._decided(call, fut))
            return
        self._route(call, CONTINUE)

    def _decided(self, call: Call, fut: asyncio.Future[Any]) -> None:
        if call.state != "routing":
            return  # cancelled while the hooks ran
        if fut.cancelled():
            self._fail(call, 503, "Service Unavailable (server stopping)")
            return
        exc = fut.exception()
        if exc is not None:
            log.error("call policy failed: %r", exc)
            self._fail(call, 500, "Server Internal Error (call policy failed)")
            return
        try:
            self._route(call, fut.result())
        except Exception:
            log.exception("routing call %s failed", call.id)
            if call.state != "ended":
                self._fail(call, 500)

    def _route(self, call: Call, decision: Decision) -> None:
        if isinstance(decision, Reject):
            self._fail(call, decision.status, decision.reason)
            return
        routing = self.calls.route(call.info, decision)
        call.routing = routing
        clog = call.log
        clog.callee = routing.callee
        clog.route = routing.route
        clog.direction = routing.direction
        if routing.rejected:
            if self._to_voicemail(call, routing.status):
                return
            self._fail(call, routing.status, routing.reason)
            return
        if self._to_voicemail(call, "always"):
            return
        dests = [d for d in routing.destinations if not self.is_self(d.transport, d.host, d.port)]
        if not dests:
            self._fail(call, 482, "Loop Detected (the destination is this server)")
            return
        ctx = call.ctx
        req = ctx.request
        src = ctx.source
        # the caller's leg: we are its UAS
        tag = _token()
        lhost, lport = self.local_address(src.transport, src.host)
        to_value = req.get("To") or ""
        caller_contact = req.contact
        caller = Leg(
            call,
            "caller",
            call_id=req.call_id or "",
            local_tag=tag,
            local=_with_tag(to_value, tag),
            remote=req.get("From") or "",
            remote_target=str(caller_contact.uri) if caller_contact is not None else req.uri_text,
            dest=Target(src.transport, src.host, src.port, conn=src.conn, listener=src.listener),
            contact=self._contact(routing.callee, src.transport, lhost, lport),
            route_set=[str(r) for r in req.record_routes],
        )
        frm = req.from_
        caller.remote_tag = frm.tag if frm is not None else None
        call.caller = caller
        self._dialogs[(caller.call_id, tag)] = caller
        call.state = "ringing"
        for dest in dests:
            self._start_leg(call, dest, routing)
        if call.state == "ringing":
            call.no_answer = self.core.clock.call_later(
                routing.no_answer_timeout, self._on_no_answer, call
            )
            if self.cdr is not None:
                self.cdr.opened(clog)

    def _start_leg(self, call: Call, dest: Destination, routing: Routing) -> None:
        req = call.ctx.request
        lhost, lport = self.local_address(dest.transport, dest.host)
        domain = routing.domain or self.domain() or lhost
        dhost = f"[{domain}]" if ":" in domain and not domain.startswith("[") else domain
        from_user = routing.from_user or call.user.number
        frm = req.from_
        display = frm.display if frm is not None and frm.display else None
        if display is None and call.user.name:
            display = '"' + call.user.name.replace('"', "") + '"'
        tag = _token()
        local = f"{display + ' ' if display else ''}<sip:{from_user}@{dhost}>;tag={tag}"
        remote = f"<sip:{routing.callee}@{dhost}>"
        leg = Leg(
            call,
            "callee",
            call_id=f"{_entropy.hex(10)}@{lhost}",
            local_tag=tag,
            local=local,
            remote=remote,
            remote_target=dest.uri,
            dest=Target(dest.transport, dest.host, dest.port),
            route_set=list(dest.route),
            contact=self._contact(from_user, dest.transport, lhost, lport),
        )
        invite = self._request(
            leg,
            "INVITE",
            headers=_copied(req),
            body=req.body,
            cseq=1,
            max_forwards=call.max_forwards,
        )
        leg.local_cseq = 1
        leg.invite = invite
        leg.credentials = dest.credentials
        call.legs.append(leg)
        self._dialogs[(leg.call_id, tag)] = leg
        leg.txn = self.core.send_request(invite, leg.dest, partial(self._leg_callback, leg))

    # ========================================================================================
    # responses from callee legs
    # ========================================================================================
    def _leg_callback(self, leg: Leg, resp: Response, txn: ClientTransaction) -> None:
        self._on_leg_response(leg, resp)

    def _on_leg_response(self, leg: Leg, resp: Response) -> None:
        call = leg.call
        st = resp.status
        if st < 200:
            if leg.state == "calling":
                leg.state = "early"
            if leg.cancel_pending:
                self._send_cancel(leg)
                return
            if st == 100 or call.state != "ringing":
                return
            to = resp.to
            if to is not None and to.tag is not None:
                leg.remote_tag = to.tag
                leg.remote = resp.get("To") or leg.remote
                c = resp.contact
                if c is not None:
                    leg.remote_target = str(c.uri)
                call.early_leg = leg
            if call.log.ring_at is None:
                call.log.ring_at = self.wall()
                self._status(call, "alerting")
            self._relay_to_caller(call, resp)
            return
        if st < 300:
            self._on_leg_2xx(leg, resp)
            return
        # 300-699: the client transaction has ACKed it
        if st in (401, 407) and leg.credentials and self._answer_challenge(leg, resp):
            return
        leg.final = resp
        if leg.state != "ended":
            leg.state = "failed"
        if call.state != "ringing":
            return
        if st >= 600:
            self._cancel_legs(call, except_leg=leg)
            self._answer_failure(call, resp)
            return
        if all(lg.final is not None for lg in call.legs):
            best = best_response(lg.final for lg in call.legs if lg.final is not None)
            assert best is not None
            if 500 <= best.status < 600 and self._try_fallback(call):
                return
            self._answer_failure(call, best)

    # -- calls through lines and trunks (issue 7): digest towards the provider, fallback ----
    def _answer_challenge(self, leg: Leg, resp: Response) -> bool:
        """A 401/407 on a leg through a line: the INVITE again with the line's credentials.

        Same Call-ID and From tag, CSeq + 1, new branch (RFC 3261 §22.2); the client
        transaction has already ACKed the challenge. One answer per leg unless the new
        challenge says ``stale=true``. False: not answered (the challenge is the leg's final).
        """
        call = leg.call
        invite = leg.invite
        if self.authorize is None or invite is None or call.state != "ringing":
            return False
        if leg.cancel_pending or leg.cancelled:
            return False
        answer = self.authorize(leg.credentials, invite, resp)
        if answer is None:
            return False
        header, value, stale = answer
        if not value or leg.auth_rounds >= 3 or (leg.auth_rounds >= 1 and not stale):
            return False
        leg.auth_rounds += 1
        again = self._request(
            leg,
            "INVITE",
            headers=[*_copied(invite), (header, value)],
            body=invite.body,
            cseq=leg.next_cseq(),
            max_forwards=call.max_forwards,
        )
        leg.invite = again
        leg.state = "calling"  # a CANCEL waits for a provisional of the new transaction (§9.1)
        leg.txn = self.core.send_request(again, leg.dest, partial(self._leg_callback, leg))
        return True

    def _try_fallback(self, call: Call) -> bool:
        """Every leg answered 5xx: try the dial plan's fallback route. False: none usable."""
        routing = call.routing
        if routing is None or routing.fallback is None:
            return False
        nxt = routing.fallback()
        if nxt is None or nxt.rejected:
            return False
        dests = [d for d in nxt.destinations if not self.is_self(d.transport, d.host, d.port)]
        if not dests:
            return False
        log.info("call %s: route %s answered 5xx, trying %s", call.id, routing.route, nxt.route)
        call.routing = nxt
        clog = call.log
        clog.callee = nxt.callee
        clog.route = nxt.route
        clog.direction = nxt.direction
        call.early_leg = None
        for dest in dests:
            self._start_leg(call, dest, nxt)
        if call.no_answer is not None:
            self.core.clock.cancel(call.no_answer)
        call.no_answer = self.core.clock.call_later(nxt.no_answer_timeout, self._on_no_answer, call)
        return True

    def _on_leg_2xx(self, leg: Leg, resp: Response) -> None:
        call = leg.call
        cseq = resp.cseq
        n = cseq.seq if cseq is not None else 1
        sent = leg.acks.get(n)
        if sent is not None:
            self.core.send_stateless(leg.dest, sent)  # our ACK was lost: resend (§13.2.2.4)
            return
        if leg is call.winner:
            return  # retransmitted before the caller's ACK: ours keeps going to the caller
        self._learn_dialog(leg, resp)
        if call.winner is not None or call.state != "ringing":
            # a second 2xx (another fork answered first) or a call already released: ACK + BYE
            self._ack_and_bye(leg, n)
            return
        call.winner = leg
        call.state = "answered"
        leg.state = "answered"
        self.stats["answered"] += 1
        if call.no_answer is not None:
            self.core.clock.cancel(call.no_answer)
            call.no_answer = None
        now = self.wall()
        clog = call.log
        clog.answer_at = now
        clog.status = 200
        host = f"[{leg.dest.host}]" if ":" in leg.dest.host else leg.dest.host
        clog.callee_addr = f"{leg.dest.transport}:{host}:{leg.dest.port}"
        if self.cdr is not None:
            self.cdr.opened(clog)  # the marker now records the answer time
        self._status(call, "answered")
        self._cancel_legs(call, except_leg=leg, reason=REASON_ELSEWHERE)
        out = self._relay_to_caller(call, resp)
        if out is not None:
            caller = call.caller
            assert caller is not None
            self._wait_ack(call.ctx, out, caller, leg, n)

    def _learn_dialog(self, leg: Leg, resp: Response) -> None:
        """Remote tag, target and route set of a callee leg from its 2xx (§12.1.2)."""
        to = resp.to
        if to is not None and to.tag is not None:
            leg.remote_tag = to.tag
            leg.remote = resp.get("To") or leg.remote
        c = resp.contact
        if c is not None:
            leg.remote_target = str(c.uri)
        rr = [str(r) for r in resp.record_routes]
        rr.reverse()
        leg.route_set = rr

    def _relay_to_caller(self, call: Call, resp: Response) -> Response | None:
        ctx = call.ctx
        caller = call.caller
        if caller is None:
            return None
        headers = _copied(resp)
        if resp.status < 300:
            headers.insert(0, ("Contact", caller.contact))  # in-dialog requests come to us
        elif resp.status < 400:
            headers += [("Contact", v) for v in resp.get_all("Contact")]  # redirect targets
        return ctx.respond(
            resp.status, resp.reason, headers=headers, body=resp.body, to_tag=caller.local_tag
        )

    def _answer_failure(self, call: Call, resp: Response) -> None:
        status = resp.status
        reason = resp.reason
        if status in (401, 407):
            status, reason = (
                480,
                "Temporarily Unavailable",
            )  # the callee's credentials are not the caller's
        if self._to_voicemail(call, status):
            return
        cause, text = parse_reason(resp.get("Reason"))
        if cause is not None:
            call.log.cause = cause
            call.log.reason = text
        if call.no_answer is not None:
            self.core.clock.cancel(call.no_answer)
            call.no_answer = None
        headers = [
            (n, v)
            for n, v in _copied(resp)
            if n.lower() in ("reason", "retry-after", "warning", "error-info")
        ]
        if 300 <= status < 400:
            headers += [("Contact", v) for v in resp.get_all("Contact")]
        caller = call.caller
        call.ctx.respond(
            status, reason, headers=headers, to_tag=caller.local_tag if caller is not None else None
        )
        self._end(
            call,
            status=status,
            hangup="callee" if status not in (408, 503) else "system",
            reason=call.log.reason or reason,
        )

    # ========================================================================================
    # CANCEL, no answer
    # ========================================================================================
    def on_cancel(self, ctx: RequestContext) -> None:
        # the CANCEL's Reason (RFC 3326) is passed on to the callee legs and kept in the CDR
        reason_hdr = ctx.cancel.get("Reason") if ctx.cancel is not None else None
        relay = self._relays.pop(ctx, None)
        if relay is not None:
            leg, request = relay
            cancel = make_cancel(request)
            if reason_hdr:
                cancel.set("Reason", reason_hdr)
            self.core.send_request(cancel, leg.dest)
            return
        call = self._by_ctx.get(ctx)
        if call is None or call.state not in ("routing", "ringing"):
            return
        self._cancel_legs(call, reason=reason_hdr)
        caller = call.caller
        ctx.respond(487, to_tag=caller.local_tag if caller is not None else None)
        cause, text = parse_reason(reason_hdr)
        if cause is not None:
            call.log.cause = cause
        if text:
            call.log.reason = text
        self._end(call, status=487, hangup="caller", reason=text or "cancelled by the caller")

    def _on_no_answer(self, call: Call) -> None:
        call.no_answer = None
        if call.state != "ringing":
            return
        self._cancel_legs(call, reason=REASON_NO_ANSWER)
        if self._to_voicemail(call, "no-answer"):
            return
        caller = call.caller
        call.ctx.respond(
            480,
            headers=[("Reason", REASON_NO_ANSWER)],
            to_tag=caller.local_tag if caller is not None else None,
        )
        call.log.cause = 480
        self._end(call, status=480, hangup="system", reason="No answer", result="no_answer")

    def _to_voicemail(self, call: Call, condition: str | int) -> bool:
        """Issue 10: the callee's voicemail takes the call over (:mod:`mss.sip.voicemail`).

        ``condition``: ``"no-answer"``, ``"always"``, or the final status the call failed with
        (486/600/603 = busy; 480/408/503 = offline). True = answered or refused there.
        """
        vm = self.voicemail
        return vm is not None and vm.divert(call, condition)

    def _cancel_legs(
        self, call: Call, *, except_leg: Leg | None = None, reason: str | None = None
    ) -> None:
        for leg in call.legs:
            if leg is except_leg or leg.final is not None or leg.state in ("answered", "ended"):
                continue
            leg.cancel_reason = reason
            if leg.state == "early":
                self._send_cancel(leg)
            elif not leg.cancelled:
                leg.cancel_pending = True  # §9.1: wait for a provisional response

    def _send_cancel(self, leg: Leg) -> None:
        leg.cancel_pending = False
        if leg.cancelled or leg.invite is None or leg.final is not None:
            return
        leg.cancelled = True
        cancel = make_cancel(leg.invite)
        if leg.cancel_reason:
            cancel.set("Reason", leg.cancel_reason)
        self.core.send_request(cancel, leg.dest)

    # ========================================================================================
    # ACK for 2xx, retransmission of our 2xx
    # ========================================================================================
    def _wait_ack(
        self, ctx: RequestContext, response: Response, leg: Leg, peer: Leg, peer_cseq: int
    ) -> None:
        cseq = ctx.request.cseq
        n = cseq.seq if cseq is not None else 0
        timers = self._timers()
        aw = _AckWait(
            ctx, response, leg, peer, peer_cseq, timers.t1, self.core.clock.now() + timers.b
        )
        leg.ack_waits[n] = aw
        if not ctx.source.reliable:
            aw.handle = self.core.clock.call_later(aw.interval, self._retransmit, aw)
        else:
            aw.handle = self.core.clock.call_later(timers.b, self._retransmit, aw)

    def _retransmit(self, aw: _AckWait) -> None:
        aw.handle = None
        clock = self.core.clock
        if clock.now() >= aw.deadline - 1e-3:
            self._ack_timeout(aw)
            return
        aw.ctx.send(aw.response)
        timers = self._timers()
        aw.interval = min(aw.interval * 2, timers.t2)
        aw.handle = clock.call_later(
            min(aw.interval, max(0.0, aw.deadline - clock.now())), self._retransmit, aw
        )

    def _ack_timeout(self, aw: _AckWait) -> None:
        leg = aw.leg
        for n, w in list(leg.ack_waits.items()):
            if w is aw:
                del leg.ack_waits[n]
        call = leg.call
        log.info("no ACK for the 2xx on %r: releasing call %s", leg, call.id)
        if call.state == "ended":
            return
        # ACK the peer's 2xx so that it can take our BYE, then BYE both sides
        self._send_ack(aw.peer, aw.peer_cseq, b"", None)
        self._end(call, hangup="system", reason="no ACK for the 2xx", bye=True)

    def on_ack(self, request: Request, source: Source | None) -> None:
        to = request.to
        if to is None or to.tag is None:
            return
        leg = self._dialogs.get((request.call_id or "", to.tag))
        if leg is None:
            return
        if leg.call.voicemail is not None and self.voicemail is not None:
            self.voicemail.on_ack(leg, request)
            return
        cseq = request.cseq
        n = cseq.seq if cseq is not None else -1
        aw = leg.ack_waits.pop(n, None)
        if aw is None:
            return  # a retransmitted ACK, or the ACK of a non-2xx (absorbed by its transaction)
        if aw.handle is not None:
            self.core.clock.cancel(aw.handle)
            aw.handle = None
        self._send_ack(aw.peer, aw.peer_cseq, request.body, request.get("Content-Type"))
        call = leg.call
        if aw.ctx is call._ctx:
            self._established(call)

    def _established(self, call: Call) -> None:
        """The caller ACKed the call's 2xx: keep only what the two dialogs need.

        The caller's INVITE (its parsed request, server transaction and context), the callee
        INVITE and its client transaction, the routing and the INVITE's headers in the call
        information were needed to answer, cancel, fork or fall back; an established call only
        needs each leg's dialog state (ids, tags, CSeq, remote target, route set, the ACK
        sent) and the call record. The transaction layer keeps its transactions until their
        own timers end.
        """
        ctx = call._ctx
        if ctx is not None:
            self._by_ctx.pop(ctx, None)
            call._ctx = None
        call.routing = None
        if call.info.headers:
            call.info = replace(call.info, headers=())
        winner = call.winner
        if winner is not None:
            winner.invite = None
            winner.txn = None

    def _send_ack(self, leg: Leg, cseq: int, body: bytes, content_type: str | None) -> None:
        if cseq in leg.acks:
            return
        headers = [("Content-Type", content_type)] if body and content_type else []
        ack = self._request(leg, "ACK", headers=headers, body=body, cseq=cseq, contact=False)
        data = bytes(ack)
        leg.acks[cseq] = data
        self.core.send_stateless(leg.dest, data)

    def _ack_and_bye(self, leg: Leg, cseq: int) -> None:
        self._send_ack(leg, cseq, b"", None)
        leg.state = "ended"
        if not leg.byed:
            leg.byed = True
            bye = self._request(leg, "BYE", headers=[("Reason", REASON_ELSEWHERE)])
            self.core.send_request(bye, leg.dest)

    def on_stray_response(self, resp: Response, source: Source) -> None:
        """A 2xx retransmission after its transaction ended: resend our ACK (or ACK + BYE)."""
        if not 200 <= resp.status < 300:
            return
        cseq = resp.cseq
        frm = resp.from_
        if cseq is None or cseq.method != "INVITE" or frm is None or frm.tag is None:
            return
        leg = self._dialogs.get((resp.call_id or "", frm.tag))
        if leg is None:
            return
        sent = leg.acks.get(cseq.seq)
        if sent is not None:
            self.core.send_stateless(leg.dest, sent)
        elif leg.side == "callee" and leg is not leg.call.winner:
            self._learn_dialog(leg, resp)
            self._ack_and_bye(leg, cseq.seq)

    # ========================================================================================
    # in-dialog requests
    # ========================================================================================
    def _peer(self, leg: Leg) -> Leg | None:
        call = leg.call
        if leg.side == "caller":
            return call.winner or call.early_leg
        if leg is call.winner or leg is call.early_leg:
            return call.caller
        return None

    def on_in_dialog(self, ctx: RequestContext) -> None:
        """A request with a To tag (BYE, re-INVITE, UPDATE, INFO, PRACK, MESSAGE...)."""
        req = ctx.request
        to = req.to
        leg = self._dialogs.get((req.call_id or "", to.tag if to is not None and to.tag else ""))
        if leg is None or leg.state == "ended" or leg.call.state == "ended":
            ctx.respond(481)
            return
        if leg.call.voicemail is not None and self.voicemail is not None:
            self.voicemail.on_request(ctx, leg)  # the server is the other party (issue 10)
            return
        if req.method == "BYE":
            self._on_bye(ctx, leg)
            return
        peer = self._peer(leg)
        if peer is None or peer.state == "ended":
            ctx.respond(481)
            return
        if req.method in ("INVITE", "UPDATE"):
            c = req.contact
            if c is not None:
                leg.remote_target = str(c.uri)  # target refresh (§12.2.2)
        if req.method == "INVITE":
            if leg.relay_pending or peer.relay_pending or leg.ack_waits or peer.ack_waits:
                ctx.respond(491)  # RFC 3261 §14.2: an INVITE transaction is pending
                return
            if req.body and req.content_type != "application/sdp":
                ctx.respond(415, headers=[("Accept", "application/sdp")])
                return
        headers = _copied(req)
        if req.method == "PRACK" and leg.side == "caller" and peer.side == "callee":
            rack = req.get("RAck")
            if rack:
                parts = rack.split()
                if len(parts) == 3:
                    headers.append(("RAck", f"{parts[0]} 1 INVITE"))
        out = self._request(peer, req.method, headers=headers, body=req.body)
        if req.method == "INVITE":
            peer.relay_pending = True
            self._relays[ctx] = (peer, out)
        self.stats["relayed"] += 1
        self.core.send_request(
            out, peer.dest, lambda r, t: self._on_relay_response(ctx, leg, peer, out, r)
        )

    def _on_relay_response(
        self, ctx: RequestContext, leg: Leg, peer: Leg, out: Request, resp: Response
    ) -> None:
        """A response on ``peer`` to a request relayed from ``leg``: relay it back on ``ctx``."""
        st = resp.status
        invite = out.method == "INVITE"
        if invite and st >= 200:
            peer.relay_pending = False
            self._relays.pop(ctx, None)
        if st == 100:
            return
        if invite and 200 <= st < 300:
            c = resp.contact
            if c is not None:
                peer.remote_target = str(c.uri)  # target refresh (§12.2.1.2)
            cseq = resp.cseq
            n = cseq.seq if cseq is not None else 0
            sent = peer.acks.get(n)
            if sent is not None:
                self.core.send_stateless(peer.dest, sent)  # our ACK was lost
                return
            if any(w.peer is peer and w.peer_cseq == n for w in leg.ack_waits.values()):
                return  # a retransmission: our own 2xx keeps going until the ACK
            if ctx.answered or leg.call.state == "ended":
                self._send_ack(peer, n, b"", None)
                return
        elif ctx.answered:
            return
        headers = _copied(resp)
        if st < 300 and out.method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            headers.insert(0, ("Contact", leg.contact))
        sent_resp = ctx.respond(st, resp.reason, headers=headers, body=resp.body)
        if invite and 200 <= st < 300:
            cseq = resp.cseq
            self._wait_ack(ctx, sent_resp, leg, peer, cseq.seq if cseq is not None else 0)

    def _on_bye(self, ctx: RequestContext, leg: Leg) -> None:
        call = leg.call
        req = ctx.request
        ctx.respond(200)
        cause, text = parse_reason(req.get("Reason"))
        if cause is not None:
            call.log.cause = cause
            call.log.reason = text
        leg.state = "ended"
        if call.state in ("routing", "ringing") and leg.side == "caller":
            # BYE on the early dialog (§15): like a CANCEL
            self._cancel_legs(call)
            call.ctx.respond(487, to_tag=leg.local_tag)
            self._end(call, status=487, hangup="caller", reason=text or "BYE before answer")
            return
        reason_hdr = req.get("Reason")
        self._end(
            call, hangup=leg.side, reason=text or "normal clearing", bye=True, bye_reason=reason_hdr
        )

    # ========================================================================================
    # the end of a call
    # ========================================================================================
    def _fail(self, call: Call, status: int, reason: str = "") -> None:
        """Refuse a call before any leg exists."""
        call.ctx.respond(status, reason or None)
        self._end(call, status=status, hangup="system" if status >= 500 else "", reason=reason)

    def _end(
        self,
        call: Call,
        *,
        status: int | None = None,
        hangup: str = "",
        reason: str = "",
        result: str | None = None,
        bye: bool = False,
        bye_reason: str | None = None,
    ) -> None:
        if call.state == "ended":
            return
        answered = call.state == "answered"
        call.state = "ended"
        if call.voicemail is not None and self.voicemail is not None:
            self.voicemail.on_end(call)  # stops its media (issue 10)
        if call.no_answer is not None:
            self.core.clock.cancel(call.no_answer)
            call.no_answer = None
        self.calls.release(call.id)
        ctx = call._ctx
        if ctx is not None:
            self._by_ctx.pop(ctx, None)
            if call.voicemail is None:
                call._ctx = None  # kept a while by the dialogs (_forget); the voicemail needs it
        self._active.pop(call.id, None)
        legs = [lg for lg in (call.caller, *call.legs) if lg is not None]
        for leg in legs:
            for aw in leg.ack_waits.values():
                if aw.handle is not None:
                    self.core.clock.cancel(aw.handle)
            leg.ack_waits.clear()
        if bye and answered:
            extra = [("Reason", bye_reason)] if bye_reason else []
            for side in (call.caller, call.winner):
                if side is None or side.state == "ended" or side.byed:
                    continue
                if side.side == "callee":
                    self._send_ack(side, 1, b"", None)  # a BYE before the caller's ACK
                side.byed = True
                side.state = "ended"
                self.core.send_request(self._request(side, "BYE", headers=extra), side.dest)
        for leg in legs:
            leg.state = "ended"
        # keep the dialogs a while for retransmitted 2xx (resend ACK) and late requests (481)
        self.core.clock.call_later(self._timers().b, self._forget, legs)
        clog = call.log
        clog.end_at = self.wall()
        if status is not None and clog.status is None:
            clog.status = status
        if answered or clog.answer_at is not None:
            clog.status = 200
        clog.hangup = hangup
        if reason and not clog.reason:
            clog.reason = reason
        if result is None:
            if answered or clog.answer_at is not None:
                result = "answered"
            elif status is not None:
                result = _CAUSE_RESULT.get(status) or (
                    "rejected" if status in _REJECTED else "failed"
                )
            else:
                result = "failed"
        clog.result = result
        if result != "answered":
            self.stats["failed"] += 1
        if self.cdr is not None:
            self.cdr.closed(clog)
        self._status(call, "released")

    def _forget(self, legs: list[Leg]) -> None:
        for leg in legs:
            key = (leg.call_id, leg.local_tag)
            if self._dialogs.get(key) is leg:
                del self._dialogs[key]

    def hangup(self, id: str, reason: str) -> bool:
        """Release call ``id`` from the server side (``CallService.hangup``, API ``DELETE /calls``).

        Answered: BYE to both sides with ``Reason: Q.850;cause=16;text="<reason>"`` (normal
        clearing). Not yet answered: the callee legs get CANCEL and the caller 480, both with
        ``Reason: SIP;cause=480;text="<reason>"``. The CDR says hangup ``system`` with ``reason``
        (result ``answered``, or ``cancelled`` with status 480).

        Returns:
            False when no call with this id is in progress.
        """
        call = self._active.get(id)
        if call is None or call.state == "ended":
            return False
        text = "".join(c for c in reason if c.isprintable() and c not in '"\\')[:200].strip()
        text = text or "Released by the server"
        log.info("call %s released from the server side: %s", id, text)
        if call.state == "answered":
            call.log.reason = text
            self._end(
                call,
                hangup="system",
                reason=text,
                bye=True,
                bye_reason=f'Q.850;cause=16;text="{text}"',
            )
            return True
        header = f'SIP;cause=480;text="{text}"'
        self._cancel_legs(call, reason=header)
        caller = call.caller
        if not call.ctx.answered:
            call.ctx.respond(
                480,
                "Temporarily Unavailable",
                headers=[("Reason", header)],
                to_tag=caller.local_tag if caller is not None else None,
            )
        call.log.cause = 480
        call.log.reason = text
        self._end(call, status=480, hangup="system", reason=text, result="cancelled")
        return True

    async def close(self) -> None:
        """Server stopping: release every call (BYE / CANCEL / 503) and record it as interrupted."""
        if self.voicemail is not None:
            await self.voicemail.close()  # ends the recordings, waits for their deposits
        for call in list(self._active.values()):
            try:
                if call.state == "answered":
                    self._end(
                        call,
                        hangup="system",
                        reason="server stopped",
                        result="interrupted",
                        bye=True,
                    )
                elif call.state in ("routing", "ringing"):
                    self._cancel_legs(call)
                    caller = call.caller
                    call.ctx.respond(
                        503,
                        "Service Unavailable (server stopping)",
                        to_tag=caller.local_tag if caller is not None else None,
                    )
                    self._end(
                        call,
                        status=503,
                        hangup="system",
                        reason="server stopped",
                        result="interrupted",
                    )
            except Exception:
                log.exception("releasing call %s at shutdown failed", call.id)
        for task in list(self._tasks):
            task.cancel()

    # ========================================================================================
    # out-of-dialog MESSAGE (RFC 3428 pager mode)
    # ========================================================================================
    def on_message(self, ctx: RequestContext) -> None:
        req = ctx.request
        to = req.to
        if to is not None and to.tag is not None:
            self.on_in_dialog(ctx)
            return
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            ctx.respond(483)
            return
        user = self._identify(ctx)
        if user is None:
            return
        src = ctx.source
        host = f"[{src.host}]" if ":" in src.host else src.host
        info = CallInfo(
            id=_entropy.uuid4_hex(),
            caller=user.number,
            callee=req.uri.user or "",
            source=f"{src.transport}:{host}:{src.port}",
            headers=(),
            call_id=req.call_id or "",
        )
        routing = self.calls.route(info, hold=False)
        if routing.rejected:
            ctx.respond(routing.status, routing.reason or None)
            return
        dests = [d for d in routing.destinations if not self.is_self(d.transport, d.host, d.port)]
        if not dests:
            ctx.respond(482, "Loop Detected (the destination is this server)")
            return
        self.stats["messages"] += 1
        pager = _Pager(ctx, len(dests))
        mfwd = min(self.max_forwards, (mf if mf is not None else 70) - 1)
        frm = req.from_
        display = frm.display if frm is not None and frm.display else None
        for dest in dests:
            lhost, lport = self.local_address(dest.transport, dest.host)
            domain = self.domain() or lhost
            tag = _token()
            hs = [
                ("Via", self._via(dest.transport, lhost, lport)),
                ("Max-Forwards", str(mfwd)),
                *[("Route", r) for r in dest.route],
                (
                    "From",
                    f"{display + ' ' if display else ''}<sip:{user.number}@{domain}>;tag={tag}",
                ),
                ("To", f"<sip:{routing.callee}@{domain}>"),
                ("Call-ID", f"{_entropy.hex(10)}@{lhost}"),
                ("CSeq", "1 MESSAGE"),
                *_copied(req),
                ("Content-Length", str(len(req.body))),
            ]
            out = Request("MESSAGE", dest.uri, hs, req.body)
            self.core.send_request(
                out, Target(dest.transport, dest.host, dest.port), lambda r, t: pager.on_response(r)
            )


class _Pager:
    """One pager-mode MESSAGE forked to every device: first 2xx, else the best final."""

    __slots__ = ("ctx", "finals", "legs")

    def __init__(self, ctx: RequestContext, legs: int) -> None:
        self.ctx = ctx
        self.legs = legs
        self.finals: list[Response] = []

    def on_response(self, resp: Response) -> None:
        if resp.status < 200 or self.ctx.answered:
            return
        if resp.status < 300:
            self.ctx.respond(resp.status, resp.reason, headers=_copied(resp), body=resp.body)
            return
        self.finals.append(resp)
        if len(self.finals) == self.legs:
            best = best_response(self.finals)
            assert best is not None
            status, reason = best.status, best.reason
            if status in (401, 407):
                status, reason = 480, "Temporarily Unavailable"
            self.ctx.respond(status, reason)
