"""The SIP core's transaction handling on a simulated clock: deferred server transactions,
stateless answers (RFC 3261 §8.2.7) and Timer J of completed non-INVITE transactions."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from fastsip.parser import parse_datagram
from mss.sip.addressing import Source, Target
from mss.sip.core import RequestContext, SipCore


class ManualClock:
    """``TimerService`` on simulated time: ``advance`` runs what is due, in deadline order."""

    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()

    def now(self) -> float:
        return self.t

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> int:
        n = next(self._seq)
        heapq.heappush(self._heap, (when, n, callback, args))
        return n

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> int:
        return self.call_at(self.t + delay, callback, *args)

    def cancel(self, handle: Any) -> bool:
        self._cancelled.add(handle)
        return True

    @property
    def pending(self) -> int:
        return sum(1 for _, n, _, _ in self._heap if n not in self._cancelled)

    def advance(self, seconds: float) -> None:
        end = self.t + seconds
        while self._heap and self._heap[0][0] <= end:
            when, n, callback, args = heapq.heappop(self._heap)
            self.t = max(self.t, when)
            if n not in self._cancelled:
                callback(*args)
        self.t = end


class Sent:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def send(self, target: Target, data: bytes) -> None:
        self.out.append(data)


class Handler:
    """Answers OPTIONS with 200 at once, challenges REGISTER statelessly, keeps MESSAGE
    unanswered (the test answers it later), challenges INVITE."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.held: list[RequestContext] = []

    def on_request(self, ctx: RequestContext) -> None:
        method = ctx.request.method
        self.seen.append(method)
        if method == "OPTIONS":
            ctx.respond(200)
        elif method in ("REGISTER", "INVITE"):
            ctx.respond_stateless(401 if method == "REGISTER" else 407)
        else:
            self.held.append(ctx)

    def on_cancel(self, ctx: RequestContext) -> None:
        pass

    def on_ack(self, request: Any, source: Source) -> None:
        pass

    def on_stray_response(self, response: Any, source: Source) -> None:
        pass


def request(method: str, n: int) -> bytes:
    return (
        f"{method} sip:example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{method}-{n};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@example.test>;tag=f1\r\nTo: <sip:b@example.test>\r\n"
        f"Call-ID: {n}-cid@127.0.0.1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def setup() -> tuple[SipCore, ManualClock, Sent, Handler, Source]:
    clock, sent, handler = ManualClock(), Sent(), Handler()
    core = SipCore(sender=sent, clock=clock, handler=handler)  # type: ignore[arg-type]
    return core, clock, sent, handler, Source("udp", "127.0.0.1", 5061, None)


def deliver(core: SipCore, data: bytes, source: Source) -> None:
    core.on_message(parse_datagram(data), source)


def test_completed_transactions_expire_after_timer_j_in_order_with_one_clock_timer() -> None:
    core, clock, sent, handler, src = setup()
    for n in range(100):
        deliver(core, request("OPTIONS", n), src)
        clock.advance(0.01)
    assert core.layer.server_count == 100 and core.completed_pending == 100
    assert clock.pending == 1  # one timer for the head of the FIFO, not one per transaction
    # a retransmission gets the very same bytes from the completed transaction
    deliver(core, request("OPTIONS", 50), src)
    assert sent.out[-1] == sent.out[50] and handler.seen.count("OPTIONS") == 100
    assert core.stats["retransmissions"] == 1
    clock.advance(32.0 - 1.0)  # t = 32.0: the first ones (started at t = 0.0 ...) are due
    expired = 100 - core.layer.server_count
    assert 0 < expired < 100
    assert core.completed_pending == core.layer.server_count
    clock.advance(2.0)
    assert core.layer.server_count == 0 and core.completed_pending == 0
    assert clock.pending == 0


def test_stateless_challenge_keeps_nothing_and_a_retransmission_is_handled_again() -> None:
    core, clock, sent, handler, src = setup()
    deliver(core, request("REGISTER", 1), src)
    deliver(core, request("REGISTER", 1), src)  # retransmission
    assert [parse_datagram(d).status for d in sent.out] == [401, 401]  # type: ignore[union-attr]
    assert handler.seen == ["REGISTER", "REGISTER"]
    assert core.layer.server_count == 0 and clock.pending == 0
    assert core.stats["stateless"] == 2


def test_invite_challenge_goes_through_its_transaction() -> None:
    core, clock, sent, _handler, src = setup()
    deliver(core, request("INVITE", 1), src)
    statuses = [parse_datagram(d).status for d in sent.out]  # type: ignore[union-attr]
    assert statuses == [100, 407]
    assert core.layer.server_count == 1 and core.stats["stateless"] == 0
    clock.advance(0.6)  # Timer G: the 407 is retransmitted until the ACK
    assert parse_datagram(sent.out[-1]).status == 407  # type: ignore[union-attr]
    assert len(sent.out) == 3


def test_unanswered_request_gets_its_transaction_when_the_handler_returns() -> None:
    core, clock, sent, handler, src = setup()
    deliver(core, request("MESSAGE", 1), src)
    assert core.layer.server_count == 1 and sent.out == []
    deliver(core, request("MESSAGE", 1), src)  # Trying: absorbed, not handled twice
    assert handler.seen == ["MESSAGE"] and sent.out == []
    ctx = handler.held[0]
    ctx.respond(202)
    assert parse_datagram(sent.out[0]).status == 202  # type: ignore[union-attr]
    deliver(core, request("MESSAGE", 1), src)  # Completed: the same bytes again
    assert sent.out[1] == sent.out[0]
    clock.advance(33.0)
    assert core.layer.server_count == 0 and core.completed_pending == 0
