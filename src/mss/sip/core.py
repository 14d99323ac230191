"""The SIP core: transactions wired to the transports, the clock and the request handlers.

``SipCore`` is the transports' sink. For each request it:

1. validates it (``Message.validate``); a malformed request gets a stateless 400 (or the
   parser's status) naming the problem when its Via is usable, and is dropped otherwise; a
   malformed response is dropped;
2. stamps the top Via with ``received`` / ``rport`` (RFC 3261 §18.2.1, RFC 3581 §4);
3. matches it to a server transaction (retransmissions are answered from the transaction and go
   no further) or creates one. INVITE and CANCEL get theirs at once; other requests get theirs
   when the handler first responds, or when the handler returns without a final response, so a
   handler can answer a challenge statelessly (:meth:`RequestContext.respond_stateless`, RFC
   3261 §8.2.7: unauthenticated requests then leave no transaction state behind, and a
   retransmission is challenged anew);
4. answers what the core can answer alone — 505 for another SIP version, 416 for a Request-URI
   scheme we do not serve, 420 for unsupported ``Require`` options, CANCEL (200 + 487 to the
   INVITE through the handler, or 481) — and hands everything else to the handler with a
   :class:`RequestContext` through which the handler responds.

ACKs for 2xx (no transaction) and responses that match no client transaction go to the
handler's ``on_ack`` / ``on_stray_response``. Handlers send requests with :meth:`SipCore.send_request`
and get each response (a local 408 on timeout, 503 on transport failure, RFC 3261 §8.1.3.1)
through a callback. Timers run on the server's single :class:`~mss.transport.clock.Clock`.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any, Protocol

from fastsip import ParseError
from fastsip.message import Request, Response, make_response
from fastsip.transaction import (
    DEFAULT_TIMERS,
    CancelTimer,
    ClientTransaction,
    Deliver,
    Send,
    ServerInviteTransaction,
    ServerTransaction,
    StartTimer,
    Terminated,
    Timeout,
    Timers,
    Transaction,
    TransactionLayer,
    TransportFailure,
    response_target,
)

from .addressing import Source, Target

__all__ = (
    "KNOWN_METHODS",
    "Handler",
    "HandlerTimings",
    "RequestContext",
    "SipCore",
    "target_for_response",
)

log = logging.getLogger("mss.sip")

ResponseCallback = Callable[[Response, ClientTransaction], None]

SUPPORTED_SCHEMES = frozenset(("sip", "sips", "tel"))
#: methods whose server transaction is created on receipt (INVITE: its 100 Trying and CANCEL
#: matching; CANCEL: answered by the core; ACK: never a transaction of its own)
_EAGER_TRANSACTION = frozenset(("INVITE", "CANCEL", "ACK"))
#: methods counted under their own name in the per-method counters; others count as "other"
#: (a peer must not be able to grow the counter tables without bound).
KNOWN_METHODS = frozenset(
    (
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "MESSAGE",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "PUBLISH",
    )
)


class HandlerTimings:
    """A sampled histogram of handler run times per method (read by the metrics exporter).

    Only every ``2**sample_shift``-th request is timed, so the hot path pays a counter increment
    and a mask test; ``counts[method][i]`` counts samples ``<= BUCKETS[i]`` (the last slot is
    +Inf), non-cumulative.
    """

    #: bucket upper bounds, seconds
    BUCKETS: tuple[float, ...] = (
        1e-5,
        2.5e-5,
        5e-5,
        1e-4,
        2.5e-4,
        5e-4,
        1e-3,
        2.5e-3,
        5e-3,
        1e-2,
        2.5e-2,
        0.1,
    )

    __slots__ = ("counts", "mask", "sums", "tick")

    def __init__(self, sample_shift: int = 3) -> None:
        self.mask = (1 << sample_shift) - 1
        self.tick = 0
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, method: str, seconds: float) -> None:
        counts = self.counts.get(method)
        if counts is None:
            counts = self.counts[method] = [0] * (len(self.BUCKETS) + 1)
            self.sums[method] = 0.0
        counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        self.sums[method] += seconds


#: option tags we implement (RFC 3261 §19.2); Require with anything else gets 420.
SUPPORTED_OPTIONS: tuple[str, ...] = ("path", "outbound", "replaces", "timer")


class Sender(Protocol):
    """The transports, as the core sees them."""

    def send(self, target: Target, data: bytes) -> None: ...


class TimerService(Protocol):
    """The server clock, as the core sees it (``mss.transport.clock.Clock``)."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any: ...

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Any: ...

    def cancel(self, handle: Any) -> bool: ...


class Handler(Protocol):
    """What the core hands requests to (the router in front of registrar, B2BUA...)."""

    def on_request(self, ctx: RequestContext) -> None: ...

    def on_cancel(self, ctx: RequestContext) -> None:
        """The INVITE of ``ctx`` was cancelled; answer it (487) unless already answered."""

    def on_ack(self, request: Request, source: Source) -> None:
        """An ACK outside any transaction (the ACK for a 2xx)."""

    def on_stray_response(self, response: Response, source: Source) -> None:
        """A response that matches no client transaction (e.g. a retransmitted 2xx)."""


def target_for_response(request: Request, source: Source) -> Target:
    """Where responses to ``request`` go (RFC 3261 §18.2.2, RFC 3581)."""
    if source.reliable:
        return Target(source.transport, source.host, source.port, conn=source.conn)
    via = request.via
    assert via is not None
    host, port = response_target(
        via.host_address,
        via.port,
        via.has_rport,
        via.maddr,
        (source.host, source.port),
        reliable=False,
    )
    return Target("udp", host, port, listener=source.listener)


class _TxnData:
    """The core's state on a transaction (``Transaction.driver_data``).

    ``ctx`` is dropped once the request is answered with a final response (the context refers
    back to the transaction: keeping it would keep the parsed request and a reference cycle
    alive for Timer J/L); ``source`` stays for the ACKs an accepted INVITE passes on.
    """

    __slots__ = ("callback", "ctx", "source", "timers")

    def __init__(self) -> None:
        self.timers: dict[str, Any] = {}
        self.callback: ResponseCallback | None = None
        self.ctx: RequestContext | None = None
        self.source: Source | None = None


class RequestContext:
    """A request being handled: who sent it, and how to answer it (through its transaction).

    ``txn`` is None while the transaction of a non-INVITE request is not created yet (see the
    module docstring, step 3); :meth:`respond` creates it.
    """

    __slots__ = ("_answered", "_key", "_reply_to", "cancel", "core", "request", "source", "txn")

    def __init__(
        self,
        core: SipCore,
        request: Request,
        source: Source,
        txn: ServerTransaction | None,
        reply_to: Target | None = None,
        key: tuple[Any, ...] | None = None,
    ) -> None:
        self.core = core
        self.request = request
        self.source = source
        self.txn = txn
        self._reply_to = reply_to
        self._key = key
        self._answered = False
        #: the CANCEL that cancelled this INVITE (its Reason header, RFC 3326), once received
        self.cancel: Request | None = None

    def _open(self) -> ServerTransaction:
        """Create the deferred server transaction (before the first response, or when the
        handler returned without answering)."""
        txn = self.txn
        if txn is not None:
            return txn
        core = self.core
        txn, actions = core.layer.create_server(
            self.request,
            self._reply_to,
            reliable=self.source.reliable,
            now=core.clock.now(),
            key=self._key,
        )
        self.txn = txn
        data = txn.driver_data = _TxnData()
        data.ctx = self
        data.source = self.source
        core.perform([a for a in actions if type(a) is not Deliver])
        return txn

    def respond_stateless(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """Answer without creating a transaction (RFC 3261 §8.2.7, the stateless UAS).

        For challenges (401/407) to requests without valid credentials: nothing is kept, and a
        retransmission of the request is handled (challenged) again. An INVITE or CANCEL, which
        has its transaction already, is answered through it as :meth:`respond` does.
        """
        if self.txn is not None or self._reply_to is None or self._answered:
            return self.respond(status, reason, headers=headers)
        core = self.core
        resp = make_response(
            self.request,
            status,
            reason,
            to_tag=core.to_tag_for(self.request),
            headers=[*headers, ("Server", core.server_name)],
        )
        self._answered = True
        core.sender.send(self._reply_to, bytes(resp))
        out = core.responses_out
        out[status] = out.get(status, 0) + 1
        core.stats["stateless"] += 1
        return resp

    @property
    def answered(self) -> bool:
        """True once a final response was sent."""
        return self._answered

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
    ) -> Response:
        """Build and send a response to the request (a To tag is added to non-100 responses)."""
        if to_tag is None and status > 100:
            to_tag = self.core.to_tag_for(self.request)
        resp = make_response(
            self.request,
            status,
            reason,
            to_tag=to_tag,
            headers=[*headers, ("Server", self.core.server_name)],
            body=body,
            content_type=content_type,
        )
        self.send(resp)
        return resp

    def send(self, response: Response) -> None:
        """Send a prepared response through the transaction."""
        if response.status >= 200:
            if self._answered and not (
                200 <= response.status < 300 and isinstance(self.txn, ServerInviteTransaction)
            ):
                log.debug("%s already answered; dropping %d", self.request.method, response.status)
                return
            self._answered = True
        core = self.core
        try:
            txn = self.txn if self.txn is not None else self._open()
            actions = core.layer.send_response(txn, response, core.clock.now())
        except ValueError as e:
            log.debug("cannot respond: %s", e)
            return
        out = core.responses_out
        out[response.status] = out.get(response.status, 0) + 1
        if response.status >= 200:
            data = txn.driver_data
            if data is not None:
                data.ctx = None  # the transaction no longer needs the context (see _TxnData)
        core.perform(actions)


class _TimerFifo:
    """Transaction timers of one fixed delay on one clock timer, fired in order.

    Every transaction gets the same delay (64*T1), so deadlines arrive in order and a deque
    replaces a wheel timer (and its handle) per transaction; a deadline out of order is left
    to the wheel by the caller (:meth:`in_order`).
    """

    __slots__ = ("armed", "core", "deadlines", "entries")

    def __init__(self, core: SipCore) -> None:
        self.core = core
        self.deadlines: deque[float] = deque()
        self.entries: deque[tuple[Transaction, str]] = deque()
        self.armed = False

    def in_order(self, deadline: float) -> bool:
        return not self.deadlines or deadline >= self.deadlines[-1]

    def push(self, deadline: float, txn: Transaction, name: str) -> None:
        self.deadlines.append(deadline)
        self.entries.append((txn, name))
        if not self.armed:
            self.armed = True
            clock = self.core.clock
            clock.call_later(max(0.0, self.deadlines[0] - clock.now()), self.expire)

    def expire(self) -> None:
        self.armed = False
        core = self.core
        now = core.clock.now()
        due = now + 0.001  # the clock may run a timer slightly early: never re-arm for dust
        deadlines, entries = self.deadlines, self.entries
        layer = core.layer
        while deadlines and deadlines[0] <= due:
            deadlines.popleft()
            txn, name = entries.popleft()
            try:
                core.perform(layer.timer_fired(txn, name, now))
            except Exception:  # one broken transaction must not stop the others' expiry
                log.exception("timer %s of %r failed", name, txn)
        if deadlines:
            self.armed = True
            core.clock.call_later(max(0.0, deadlines[0] - now), self.expire)


class SipCore:
    """Transaction layer + timers + handler dispatch. The transports' :class:`Sink`."""

    def __init__(
        self,
        *,
        sender: Sender,
        clock: TimerService,
        handler: Handler,
        timers: Timers = DEFAULT_TIMERS,
        server_name: str = "mss",
        supported: Iterable[str] = SUPPORTED_OPTIONS,
    ) -> None:
        self.sender = sender
        self.clock = clock
        self.handler = handler
        self.layer = TransactionLayer(timers=timers, auto_trying=True)
        self.server_name = server_name
        self.supported = frozenset(supported)
        self.stats = {
            "requests": 0,
            "responses": 0,
            "invalid": 0,
            "retransmissions": 0,
            "stateless": 0,
        }
        #: per-method / per-status message counters (the metrics exporter reads them)
        self.requests_in: dict[str, int] = {}
        self.requests_out: dict[str, int] = {}
        self.responses_in: dict[int, int] = {}
        self.responses_out: dict[int, int] = {}
        self.timings = HandlerTimings()
        self._tag_secret = id(self) & 0xFFFFFF
        # Timer J of completed non-INVITE server transactions (RFC 3261 §17.2.2): every one has
        # the same delay, so they expire in the order they started. Two parallel FIFOs and one
        # clock timer for the head replace a wheel timer (a payload tuple, its arguments, a
        # bound method) and the driver data per transaction: a completed transaction retained
        # for 32 s is 3 objects for the garbage collector to walk instead of 7.
        self._timer_j = _TimerFifo(self)
        # Timers L and M (RFC 6026 §8.4, §8.7: the Accepted state of a server / client INVITE
        # transaction that a 2xx ended, one of each per answered call) have the same delay as
        # Timer J, 64*T1, and run alone in that state: the same kind of FIFO instead of two
        # wheel timers per call. The core's data stays: a server transaction passes on the ACK
        # with its source, a client one hands retransmitted 2xx to its callback.
        self._timer_lm = _TimerFifo(self)

    # -- helpers ----------------------------------------------------------------------------
    def to_tag_for(self, request: Request) -> str:
        """A To tag that is stable for one transaction (retransmitted answers keep it)."""
        via = request.via
        base = f"{via.branch if via else ''}|{request.call_id}|{self._tag_secret}"
        return f"{hash(base) & 0xFFFFFFFFFFFF:012x}"

    # -- receive ----------------------------------------------------------------------------
    def on_message(self, message: Request | Response, source: Source) -> None:
        if isinstance(message, Request):
            self._on_request(message, source)
        else:
            self._on_response(message, source)

    def _on_request(self, request: Request, source: Source) -> None:
        self.stats["requests"] += 1
        method = request.method if request.method in KNOWN_METHODS else "other"
        self.requests_in[method] = self.requests_in.get(method, 0) + 1
        try:
            request.validate()
        except ParseError as e:
            self.stats["invalid"] += 1
            self._stateless_reply(request, source, e.status_hint, e.reason)
            return
        via = request.via
        assert via is not None
        params = via.params
        if "rport" in params:
            # RFC 3261 §18.2.1 received, RFC 3581 §4 rport. The parsed top Via belongs to this
            # request alone: stamp it in place and re-render its header line.
            params["received"] = source.host
            params["rport"] = str(source.port)
            request.replace_top_via(via)
        elif via.host_address != source.host:
            params["received"] = source.host
            request.replace_top_via(via)
        now = self.clock.now()
        reply_to = target_for_response(request, source)
        if request.method not in _EAGER_TRANSACTION:
            # The transaction is created when the handler responds (or returns unanswered), so
            # a stateless challenge leaves nothing behind (module docstring, step 3).
            try:
                found, key = self.layer.find_server(request)
            except ParseError as e:
                self.stats["invalid"] += 1
                self._stateless_reply(request, source, e.status_hint, e.reason)
                return
            if found is not None:
                self.stats["retransmissions"] += 1
                self.perform(self.layer.retransmission(found, request, now))
                return
            ctx = RequestContext(self, request, source, None, reply_to, key)
            self._dispatch(ctx)
            if ctx.txn is None and not ctx._answered:
                try:
                    ctx._open()  # the handler answers later: retransmissions must match
                except (ValueError, ParseError):  # pragma: no cover - key checked above
                    log.exception("cannot create the transaction of %s", request.method)
            return
        try:
            txn, actions = self.layer.receive_request(
                request, reply_to, reliable=source.reliable, now=now
            )
        except ParseError as e:
            self.stats["invalid"] += 1
            self._stateless_reply(request, source, e.status_hint, e.reason)
            return
        if txn is None:
            if request.method == "ACK":
                self._call(self.handler.on_ack, request, source)
            return
        if not any(type(a) is Deliver for a in actions):
            self.stats["retransmissions"] += 1
            self.perform(actions)
            return
        data = txn.driver_data
        if data is None:
            data = txn.driver_data = _TxnData()
        ctx = RequestContext(self, request, source, txn)
        data.ctx = ctx
        data.source = source
        # perform the 100 Trying etc., but hand the request to our own dispatch below
        self.perform([a for a in actions if type(a) is not Deliver])
        self._dispatch(ctx)

    def _dispatch(self, ctx: RequestContext) -> None:
        request = ctx.request
        if request.version.upper() != "SIP/2.0":
            ctx.respond(505)
            return
        if request.uri.scheme not in SUPPORTED_SCHEMES:
            ctx.respond(416)
            return
        if request.method not in ("ACK", "CANCEL"):
            unsupported = [t for t in request.require if t not in self.supported]
            if unsupported:
                ctx.respond(420, headers=[("Unsupported", ", ".join(unsupported))])
                return
        if request.method == "CANCEL":
            self._on_cancel(ctx)
            return
        timings = self.timings
        timings.tick += 1
        try:
            if timings.tick & timings.mask:
                self.handler.on_request(ctx)
            else:  # sampled: time the handler
                t0 = perf_counter()
                self.handler.on_request(ctx)
                method = request.method if request.method in KNOWN_METHODS else "other"
                timings.observe(method, perf_counter() - t0)
        except Exception:
            log.exception("handler failed on %s", request.method)
            if not ctx.answered:
                ctx.respond(500)

    def _on_cancel(self, ctx: RequestContext) -> None:
        invite = self.layer.find_invite(ctx.request)
        if invite is None or invite.state != "proceeding":
            ctx.respond(481)  # §9.2
            return
        ctx.respond(200, to_tag=None)
        data = invite.driver_data
        target = data.ctx if data is not None else None
        if target is not None and not target.answered:
            target.cancel = ctx.request
            try:
                self.handler.on_cancel(target)
            except Exception:
                log.exception("handler failed on CANCEL")
            if not target.answered:
                target.respond(487)

    def _on_response(self, response: Response, source: Source) -> None:
        self.stats["responses"] += 1
        status = response.status
        self.responses_in[status] = self.responses_in.get(status, 0) + 1
        try:
            response.validate()
        except ParseError:
            self.stats["invalid"] += 1
            return  # RFC 4475 §3.1.2.5/19: malformed responses are dropped
        try:
            txn, actions = self.layer.receive_response(response, self.clock.now())
        except ParseError:
            self.stats["invalid"] += 1
            return
        if txn is None:
            self._call(self.handler.on_stray_response, response, source)
            return
        self.perform(actions)

    def _stateless_reply(self, request: Request, source: Source, status: int, reason: str) -> None:
        if request.method == "ACK":
            return
        try:
            via = request.via
        except ParseError:
            return
        if via is None:
            return
        status = status if 300 <= status <= 699 else 400
        from fastsip.message import REASON_PHRASES

        phrase = f"{REASON_PHRASES.get(status, 'Bad Request')} ({reason})"
        try:
            resp = make_response(request, status, phrase, headers=[("Server", self.server_name)])
            self.sender.send(target_for_response(request, source), bytes(resp))
        except (ParseError, ValueError):
            return
        self.responses_out[status] = self.responses_out.get(status, 0) + 1

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("handler %r failed", fn)

    # -- send -------------------------------------------------------------------------------
    def send_request(
        self, request: Request, target: Target, callback: ResponseCallback | None = None
    ) -> ClientTransaction:
        """Send a request through a new client transaction; ``callback`` gets each response.

        A timeout is reported as a local 408 and a transport failure as a local 503
        (RFC 3261 §8.1.3.1, §8.1.3.1).
        """
        txn, actions = self.layer.send_request(
            request, target, reliable=target.reliable, now=self.clock.now()
        )
        method = request.method if request.method in KNOWN_METHODS else "other"
        self.requests_out[method] = self.requests_out.get(method, 0) + 1
        data = txn.driver_data = _TxnData()
        data.callback = callback
        self.perform(actions)
        return txn

    def send_stateless(self, target: Target, data: bytes) -> None:
        """Send bytes outside any transaction (ACK for 2xx, 2xx retransmissions)."""
        self.sender.send(target, data)

    # -- actions ----------------------------------------------------------------------------
    def perform(self, actions: list[Any]) -> None:
        clock = self.clock
        for a in actions:
            t = type(a)
            if t is Send:
                self.sender.send(a.dest, a.data)
            elif t is StartTimer:
                name = a.name
                if name == "J":
                    if self._expire_in_order(a):
                        continue
                elif (name == "L" or name == "M") and self._accepted_in_order(a):
                    continue
                data = self._data(a.txn)
                old = data.timers.pop(a.name, None)
                if old is not None:
                    clock.cancel(old)
                data.timers[a.name] = clock.call_later(a.delay, self._timer, a.txn, a.name)
            elif t is CancelTimer:
                data = a.txn.driver_data
                if data is not None:
                    old = data.timers.pop(a.name, None)
                    if old is not None:
                        clock.cancel(old)
            elif t is Deliver:
                self._deliver(a)
            elif t is Timeout or t is TransportFailure:
                self._failed(a.txn, 408 if t is Timeout else 503)
            elif t is Terminated:
                data = a.txn.driver_data
                if data is not None:
                    for handle in data.timers.values():
                        clock.cancel(handle)
                    data.timers.clear()
                    data.ctx = None

    def _expire_in_order(self, action: StartTimer) -> bool:
        """Queue Timer J on its FIFO (False: its deadline is out of order, use the wheel)."""
        deadline = self.clock.now() + action.delay
        fifo = self._timer_j
        if not fifo.in_order(deadline):
            return False
        txn = action.txn
        data = txn.driver_data
        if data is not None:
            if data.timers:
                return False
            txn.driver_data = None  # completed: nothing of the core's state is needed any more
        fifo.push(deadline, txn, "J")
        return True

    def _accepted_in_order(self, action: StartTimer) -> bool:
        """Queue Timer L or M on its FIFO (False: out of order or other timers run: the wheel)."""
        deadline = self.clock.now() + action.delay
        fifo = self._timer_lm
        if not fifo.in_order(deadline):
            return False
        data = action.txn.driver_data
        if data is not None and data.timers:
            return False
        fifo.push(deadline, action.txn, action.name)
        return True

    @property
    def completed_pending(self) -> int:
        """Completed non-INVITE server transactions waiting for Timer J."""
        return len(self._timer_j.entries)

    @staticmethod
    def _data(txn: Transaction) -> _TxnData:
        data = txn.driver_data
        if data is None:
            data = txn.driver_data = _TxnData()
        return data  # type: ignore[no-any-return]

    def _timer(self, txn: Transaction, name: str) -> None:
        data = txn.driver_data
        if data is not None:
            data.timers.pop(name, None)
        self.perform(self.layer.timer_fired(txn, name, self.clock.now()))

    def _deliver(self, action: Deliver) -> None:
        txn = action.txn
        msg = action.message
        if isinstance(txn, ClientTransaction):
            data = txn.driver_data
            if data is not None and data.callback is not None:
                self._call(data.callback, msg, txn)
        elif isinstance(msg, Request) and msg.method == "ACK":
            source = txn.driver_data.source if txn.driver_data is not None else None
            self._call(self.handler.on_ack, msg, source)

    def _failed(self, txn: Transaction, status: int) -> None:
        if isinstance(txn, ClientTransaction):
            data = txn.driver_data
            # a transaction that already had its final response (request released) has
            # nothing to report: the TU got that response
            if data is not None and data.callback is not None and txn.request is not None:
                local = make_response(txn.request, status)
                self._call(data.callback, local, txn)
        else:
            log.debug("server transaction %r ended with %d (no ACK)", txn, status)
