"""RFC 3261 §17 transactions (+ RFC 6026), transition by transition.

A small simulated driver performs the layer's actions and drives its timers through a real
timer wheel — both twins (ids ``py`` / ``c``) — with a simulated clock, so retransmission
schedules, timeouts, losses and late responses are checked deterministically.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import TWINS, twin_module
from fastsip import ParseError
from fastsip._parser_py import parse_datagram
from fastsip.message import Request, Response, make_cancel, make_response
from fastsip.transaction import (
    CancelTimer,
    Deliver,
    Send,
    ServerInviteTransaction,
    StartTimer,
    Terminated,
    Timeout,
    Timers,
    TransactionLayer,
    TransportFailure,
    response_target,
)

EPS = 0.003  # the simulated wheel ticks every millisecond


class Sim:
    """Performs actions; timers go through a TimerWheel twin on a simulated clock."""

    def __init__(
        self, wheel_cls: Any, *, reliable: bool = False, timers: Timers | None = None
    ) -> None:
        self.layer = TransactionLayer(timers=timers if timers is not None else Timers())
        self.wheel = wheel_cls(tick=0.001, now=0.0)
        self.now = 0.0
        self.reliable = reliable
        self.sent: list[tuple[float, bytes, Any]] = []
        self.delivered: list[tuple[float, Request | Response]] = []
        self.events: list[tuple[float, str, Any]] = []
        self.handles: dict[tuple[int, str], Any] = {}
        self.requests: dict[int, Request] = {}

    def run(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.sent.append((self.now, a.data, a.dest))
            elif isinstance(a, Deliver):
                self.delivered.append((self.now, a.message))
            elif isinstance(a, StartTimer):
                key = (id(a.txn), a.name)
                old = self.handles.pop(key, None)
                if old is not None:
                    self.wheel.cancel(old)
                self.handles[key] = self.wheel.schedule(self.now + a.delay, (a.txn, a.name))
            elif isinstance(a, CancelTimer):
                old = self.handles.pop((id(a.txn), a.name), None)
                if old is not None:
                    self.wheel.cancel(old)
            elif isinstance(a, Terminated):
                for key in [k for k in self.handles if k[0] == id(a.txn)]:
                    self.wheel.cancel(self.handles.pop(key))
                self.events.append((self.now, "terminated", a.txn))
            elif isinstance(a, Timeout):
                self.events.append((self.now, "timeout", a.txn))
            elif isinstance(a, TransportFailure):
                self.events.append((self.now, "transport", a.txn))
            else:  # pragma: no cover
                raise AssertionError(a)

    def advance(self, until: float) -> None:
        for _ in range(100000):
            nd = self.wheel.next_deadline()
            if nd is None or nd > until:
                break
            self.now = max(self.now, nd)
            for txn, name in self.wheel.advance(self.now):
                self.handles.pop((id(txn), name), None)
                self.run(self.layer.timer_fired(txn, name, self.now))
        self.now = max(self.now, until)
        for txn, name in self.wheel.advance(self.now):
            self.handles.pop((id(txn), name), None)
            self.run(self.layer.timer_fired(txn, name, self.now))

    # conveniences
    def send(self, req: Request, dest: Any = ("192.0.2.2", 5060)):
        txn, actions = self.layer.send_request(req, dest, reliable=self.reliable, now=self.now)
        self.run(actions)
        return txn

    def response_in(self, resp: Response):
        txn, actions = self.layer.receive_response(parse_datagram(bytes(resp)), self.now)
        self.run(actions)
        return txn

    def request_in(self, data: bytes, source: Any = ("192.0.2.1", 5060)):
        txn, actions = self.layer.receive_request(
            parse_datagram(data), source, reliable=self.reliable, now=self.now
        )
        self.run(actions)
        return txn

    def respond(self, txn: Any, status: int, **kw: Any) -> None:
        # the first response captures the request: a final response releases txn.request
        request = self.requests.setdefault(id(txn), txn.request)
        self.run(self.layer.send_response(txn, make_response(request, status, **kw), self.now))

    def send_times(self) -> list[float]:
        return [round(t, 2) for t, _, _ in self.sent]

    def event_names(self) -> list[str]:
        return [e for _, e, _ in self.events]


@pytest.fixture(params=TWINS)
def wheel(request: pytest.FixtureRequest) -> Any:
    return twin_module("timerwheel", request.param).TimerWheel


def req(
    method: str = "INVITE",
    branch: str = "z9hG4bKc1",
    *,
    via_host: str = "192.0.2.1",
    extra: str = "",
) -> bytes:
    return (
        f"{method} sip:1002@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host}:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:1001@example.com>;tag=f1\r\nTo: <sip:1002@example.com>\r\n"
        f"Call-ID: cid-1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def creq(method: str = "INVITE", branch: str = "z9hG4bKc1") -> Request:
    r = parse_datagram(req(method, branch))
    assert isinstance(r, Request)
    return r


# ------------------------------------------------------------------------------------------
# client INVITE
# ------------------------------------------------------------------------------------------
def test_client_invite_timer_a_doubles_then_b_times_out(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq())
    assert txn.state == "calling"
    sim.advance(40)
    # sent at 0, retransmitted at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (A doubles, no T2 cap)
    assert sim.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert sim.event_names() == ["timeout", "terminated"]
    assert abs(sim.events[0][0] - 32.0) < EPS
    assert txn.state == "terminated" and len(sim.layer) == 0


def test_client_invite_provisional_stops_retransmissions_and_timer_b(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq())
    txn_request = txn.request  # released by the final response
    sim.advance(0.7)  # one retransmission happened
    sim.response_in(make_response(txn_request, 100))
    assert txn.state == "proceeding"
    sim.advance(200)  # an INVITE may ring for minutes: no timeout in Proceeding
    assert sim.send_times() == [0, 0.5]
    assert sim.events == [] and txn.state == "proceeding"
    sim.response_in(make_response(txn_request, 180, to_tag="t9"))
    assert [m.status for _, m in sim.delivered] == [100, 180]


def test_client_invite_non_2xx_completed_ack_and_timer_d(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq())
    txn_request = txn.request  # released by the final response
    sim.response_in(make_response(txn_request, 180, to_tag="t9"))
    sim.response_in(make_response(txn_request, 486, to_tag="t9"))
    assert txn.state == "completed" and txn.request is None  # only the ACK bytes are kept
    ack = parse_datagram(sim.sent[-1][1])
    assert ack.method == "ACK" and ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert (
        ack.to.tag == "t9"
        and ack.via.branch == "z9hG4bKc1"
        and ack.uri_text == txn_request.uri_text
    )
    assert [m.status for _, m in sim.delivered] == [180, 486]
    # a retransmitted 486 is absorbed and the ACK is sent again
    sim.advance(1)
    sim.response_in(make_response(txn_request, 486, to_tag="t9"))
    assert [m.status for _, m in sim.delivered] == [180, 486]
    assert sim.sent[-1][1] == sim.sent[-2][1]
    sim.advance(40)
    assert sim.event_names() == ["terminated"]
    assert abs(sim.events[0][0] - 32.0) < EPS  # timer D >= 32 s on UDP
    assert sim.layer.receive_response(
        parse_datagram(bytes(make_response(txn_request, 486))), sim.now
    ) == (None, [])


def test_client_invite_2xx_accepted_state_rfc6026(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq())
    txn_request = txn.request  # released by the final response
    sim.response_in(make_response(txn_request, 200, to_tag="t9"))
    assert txn.state == "accepted"
    assert len(sim.sent) == 1  # the transaction does not ACK a 2xx
    sim.advance(2)
    sim.response_in(make_response(txn_request, 200, to_tag="t9"))  # retransmitted 2xx
    assert [m.status for _, m in sim.delivered] == [200, 200]  # both reach the TU
    sim.advance(40)
    assert sim.event_names() == ["terminated"]
    assert abs(sim.events[0][0] - 32.0) < EPS  # timer M = 64*T1
    assert sim.layer.receive_response(
        parse_datagram(bytes(make_response(txn_request, 200, to_tag="t9"))), sim.now
    ) == (None, [])


def test_client_invite_reliable(wheel: Any) -> None:
    sim = Sim(wheel, reliable=True)
    txn = sim.send(creq())
    txn_request = txn.request  # released by the final response
    sim.advance(10)
    assert sim.send_times() == [0]  # no timer A on reliable transports
    sim.response_in(make_response(txn_request, 503))
    assert sim.event_names() == ["terminated"]  # timer D = 0
    assert parse_datagram(sim.sent[-1][1]).method == "ACK"


def test_client_invite_lost_request_then_late_response(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq())
    txn_request = txn.request  # released by the final response
    sim.advance(4)  # the first three copies were "lost"
    sim.response_in(make_response(txn_request, 404, to_tag="x"))
    assert txn.state == "completed" and [m.status for _, m in sim.delivered] == [404]
    assert sim.send_times()[:4] == [0, 0.5, 1.5, 3.5]


def test_client_invite_transport_error(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq())
    sim.run(sim.layer.transport_error(txn, sim.now))
    assert sim.event_names() == ["transport", "terminated"]
    sim.advance(60)
    assert sim.send_times() == [0]


# ------------------------------------------------------------------------------------------
# client non-INVITE
# ------------------------------------------------------------------------------------------
def test_client_non_invite_timer_e_caps_at_t2_and_f_times_out(wheel: Any) -> None:
    sim = Sim(wheel)
    sim.send(creq("OPTIONS"))
    sim.advance(40)
    assert sim.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert sim.event_names() == ["timeout", "terminated"]
    assert abs(sim.events[0][0] - 32.0) < EPS


def test_client_non_invite_proceeding_uses_t2(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq("REGISTER"))
    txn_request = txn.request  # released by the final response
    sim.advance(0.2)
    sim.response_in(make_response(txn_request, 100))
    assert txn.state == "proceeding"
    sim.advance(13)
    # E keeps its pending 0.5 s, then fires every T2 = 4 s in Proceeding
    assert sim.send_times() == [0, 0.5, 4.5, 8.5, 12.5]


def test_client_non_invite_final_then_timer_k(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq("OPTIONS"))
    txn_request = txn.request  # released by the final response
    sim.response_in(make_response(txn_request, 200, to_tag="a"))
    assert txn.state == "completed"
    sim.response_in(make_response(txn_request, 200, to_tag="a"))  # absorbed
    assert len(sim.delivered) == 1
    sim.advance(10)
    assert sim.send_times() == [0]
    assert sim.event_names() == ["terminated"] and abs(sim.events[0][0] - 5.0) < EPS  # K = T4


def test_client_non_invite_reliable_terminates_at_once(wheel: Any) -> None:
    sim = Sim(wheel, reliable=True)
    txn = sim.send(creq("OPTIONS"))
    txn_request = txn.request  # released by the final response
    sim.response_in(make_response(txn_request, 200, to_tag="a"))
    assert sim.event_names() == ["terminated"]


def test_client_non_invite_transport_error(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.send(creq("OPTIONS"))
    sim.run(sim.layer.transport_error(txn, 0))
    assert sim.event_names() == ["transport", "terminated"]


def test_client_keys_separate_invite_and_cancel(wheel: Any) -> None:
    sim = Sim(wheel)
    inv = sim.send(creq())
    inv_request = inv.request  # released by the final response
    cancel = sim.send(make_cancel(inv_request))
    cancel_request = cancel.request  # released by the final response
    assert cancel.method == "CANCEL"
    sim.response_in(make_response(cancel_request, 200))
    assert cancel.state == "completed" and inv.state == "calling"
    sim.response_in(make_response(inv_request, 487, to_tag="z"))
    assert inv.state == "completed"
    with pytest.raises(ValueError):
        sim.send(creq())  # same branch while the first one lives
    with pytest.raises(ValueError):
        sim.layer.send_request(creq("ACK"), None, reliable=False, now=0)


# ------------------------------------------------------------------------------------------
# server INVITE
# ------------------------------------------------------------------------------------------
def test_server_invite_trying_and_retransmissions(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req())
    assert isinstance(txn, ServerInviteTransaction) and txn.state == "proceeding"
    assert parse_datagram(sim.sent[0][1]).status == 100
    assert len(sim.delivered) == 1
    assert sim.request_in(req()) is txn  # retransmission: absorbed, 100 resent
    assert len(sim.delivered) == 1 and len(sim.sent) == 2 and sim.sent[1][1] == sim.sent[0][1]
    sim.respond(txn, 180, to_tag="s1")
    sim.request_in(req())
    assert parse_datagram(sim.sent[-1][1]).status == 180


def test_server_invite_non_2xx_timer_g_then_h(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req())
    sim.respond(txn, 486, to_tag="s1")
    assert txn.state == "completed"
    sim.advance(40)
    finals = [round(t, 2) for t, d, _ in sim.sent if parse_datagram(d).status == 486]
    # G: 0.5, 1, 2, 4, 4... after the first send at 0
    assert finals == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert sim.event_names() == ["timeout", "terminated"]
    assert abs(sim.events[0][0] - 32.0) < EPS


def test_server_invite_ack_confirms_then_timer_i(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req())
    sim.respond(txn, 404, to_tag="s1")
    sim.advance(0.6)
    assert sim.request_in(req("ACK")) is txn
    assert txn.state == "confirmed"
    n = len(sim.sent)
    sim.request_in(req("ACK"))  # retransmitted ACK absorbed
    sim.request_in(req())  # late INVITE retransmission absorbed in Confirmed
    sim.advance(10)
    assert len(sim.sent) == n and len(sim.delivered) == 1
    assert sim.event_names() == ["terminated"] and abs(sim.events[0][0] - 5.6) < EPS  # I = T4


def test_server_invite_2xx_accepted_rfc6026(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req())
    request = txn.request
    sim.respond(txn, 200, to_tag="s1")
    assert txn.state == "accepted"
    assert txn.request is None and txn.last_response is None and txn.last_data is not None
    n = len(sim.sent)
    sim.request_in(req())  # retransmitted INVITE absorbed in Accepted
    assert len(sim.sent) == n
    sim.respond(txn, 200, to_tag="s1")  # the TU's own 2xx retransmission passes
    assert len(sim.sent) == n + 1
    assert sim.request_in(req("ACK", branch="z9hG4bKc1")) is txn
    assert [m.method for _, m in sim.delivered] == ["INVITE", "ACK"]
    sim.advance(40)
    assert sim.event_names() == ["terminated"] and abs(sim.events[0][0] - 32.0) < EPS  # L
    with pytest.raises(ValueError):
        sim.layer.send_response(txn, make_response(request, 486), sim.now)


def test_server_invite_ack_for_2xx_has_no_transaction(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req())
    sim.respond(txn, 200, to_tag="s1")
    # the ACK for a 2xx is a new transaction-less request (new branch)
    t, actions = sim.layer.receive_request(
        parse_datagram(req("ACK", branch="z9hG4bKack2")), None, reliable=False, now=0
    )
    assert (t, actions) == (None, [])


def test_server_invite_reliable(wheel: Any) -> None:
    sim = Sim(wheel, reliable=True)
    txn = sim.request_in(req())
    sim.respond(txn, 480, to_tag="s1")
    sim.advance(5)
    assert [parse_datagram(d).status for _, d, _ in sim.sent] == [100, 480]  # no timer G
    sim.request_in(req("ACK"))
    assert sim.event_names() == ["terminated"]  # I = 0


def test_server_invite_transport_error(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req())
    sim.respond(txn, 486, to_tag="s1")
    sim.run(sim.layer.transport_error(txn, 0))
    assert sim.event_names() == ["transport", "terminated"]
    sim.advance(40)
    assert len(sim.sent) == 2


def test_cancel_finds_the_invite(wheel: Any) -> None:
    sim = Sim(wheel)
    inv = sim.request_in(req())
    cancel = sim.request_in(req("CANCEL"))
    assert cancel is not inv and cancel.method == "CANCEL"
    assert sim.layer.find_invite(cancel.request) is inv
    assert sim.layer.find_invite(parse_datagram(req("CANCEL", branch="z9hG4bKother"))) is None


def test_sent_by_distinguishes_transactions(wheel: Any) -> None:
    sim = Sim(wheel)
    a = sim.request_in(req(via_host="192.0.2.1"))
    b = sim.request_in(req(via_host="192.0.2.7"))
    assert a is not b and sim.layer.server_count == 2


def test_rfc2543_matching_without_magic_cookie(wheel: Any) -> None:
    sim = Sim(wheel)
    old = req(branch="1234").replace(b";branch=1234", b"")
    txn = sim.request_in(old)
    assert (
        sim.request_in(old) is txn
    )  # retransmission matched by Request-URI, tags, Call-ID, CSeq, Via
    sim.respond(txn, 486, to_tag="s9")
    ack = (
        old.replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"To: <sip:1002@example.com>", b"To: <sip:1002@example.com>;tag=s9")
    )
    assert sim.request_in(ack) is txn
    assert txn.state == "confirmed"
    assert (
        sim.layer.find_invite(
            parse_datagram(
                old.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
            )
        )
        is txn
    )


# ------------------------------------------------------------------------------------------
# server non-INVITE
# ------------------------------------------------------------------------------------------
def test_server_non_invite_full_walk(wheel: Any) -> None:
    sim = Sim(wheel)
    txn = sim.request_in(req("REGISTER"))
    request = txn.request
    assert txn.state == "trying" and len(sim.delivered) == 1
    sim.request_in(req("REGISTER"))
    assert sim.sent == []  # Trying discards retransmissions
    sim.respond(txn, 100)
    assert txn.state == "proceeding"
    sim.request_in(req("REGISTER"))
    assert [parse_datagram(d).status for _, d, _ in sim.sent] == [100, 100]
    sim.respond(txn, 200, to_tag="r1")
    assert txn.state == "completed"
    # Completed keeps only the key, the destination and the bytes that answer retransmissions
    assert txn.request is None and txn.last_response is None and txn.last_data is not None
    sim.advance(1)
    sim.request_in(req("REGISTER"))
    assert [parse_datagram(d).status for _, d, _ in sim.sent] == [100, 100, 200, 200]
    assert len(sim.delivered) == 1
    sim.advance(40)
    assert sim.event_names() == ["terminated"] and abs(sim.events[0][0] - 32.0) < EPS  # J
    again = sim.request_in(req("REGISTER"))  # after J a copy is a new request for the TU
    assert again is not txn and len(sim.delivered) == 2
    with pytest.raises(ValueError):
        sim.layer.send_response(txn, make_response(request, 200), sim.now)


def test_server_non_invite_reliable(wheel: Any) -> None:
    sim = Sim(wheel, reliable=True)
    txn = sim.request_in(req("OPTIONS"))
    sim.respond(txn, 200, to_tag="o")
    assert sim.event_names() == ["terminated"] and sim.layer.server_count == 0


def test_layer_rejects_unparseable_matching_headers(wheel: Any) -> None:
    sim = Sim(wheel)
    bad = parse_datagram(req("OPTIONS").replace(b"branch=z9hG4bKc1", b"branch=z9hG4bKc1;;"))
    with pytest.raises(ParseError):
        sim.layer.receive_request(bad, None, reliable=False, now=0)


def test_timers_config() -> None:
    t = Timers(t1=0.1, t2=1.0, t4=2.0)
    assert t.b == pytest.approx(6.4) and t.d == 32.0
    with pytest.raises(ValueError):
        Timers(t1=0)
    with pytest.raises(ValueError):
        Timers(t1=2, t2=1)


def test_custom_t1_scales_every_timer(wheel: Any) -> None:
    sim = Sim(wheel, timers=Timers(t1=0.1, t2=0.4, t4=1.0))
    sim.send(creq("OPTIONS"))
    sim.advance(10)
    assert sim.send_times()[:5] == [0, 0.1, 0.3, 0.7, 1.1]
    assert abs(sim.events[0][0] - 6.4) < EPS


def test_response_target() -> None:
    src = ("198.51.100.7", 40000)
    assert response_target("10.0.0.1", 5070, True, None, src, reliable=False) == src
    assert response_target("10.0.0.1", 5070, False, None, src, reliable=False) == (
        "198.51.100.7",
        5070,
    )
    assert response_target("10.0.0.1", None, False, None, src, reliable=False) == (
        "198.51.100.7",
        5060,
    )
    assert response_target("10.0.0.1", None, False, "239.1.1.1", src, reliable=False) == (
        "239.1.1.1",
        5060,
    )
    assert response_target("10.0.0.1", 5070, False, None, src, reliable=True) == src


# ------------------------------------------------------------------------------------------
# find_server / create_server: receive_request in two steps (a TU that answers some requests
# statelessly, RFC 3261 §8.2.7)
# ------------------------------------------------------------------------------------------
def test_find_then_create_equals_receive_request() -> None:
    two = TransactionLayer()
    one = TransactionLayer()
    r = creq("REGISTER")
    found, key = two.find_server(r)
    assert found is None
    txn, actions = two.create_server(r, ("192.0.2.1", 5060), reliable=False, now=0.0, key=key)
    ref, ref_actions = one.receive_request(r, ("192.0.2.1", 5060), reliable=False, now=0.0)
    assert ref is not None
    assert [type(a) for a in actions] == [type(a) for a in ref_actions] == [Deliver]
    assert txn.keys == ref.keys and type(txn) is type(ref)
    # a retransmission now matches, and is discarded while the TU has not answered (§17.2.2)
    again = creq("REGISTER")
    assert two.find_server(again)[0] is txn
    assert two.retransmission(txn, again, 0.1) == []
    # once answered, the retransmission gets the same bytes again
    out = two.send_response(txn, make_response(r, 200, to_tag="t"), 0.2)
    first = next(a.data for a in out if isinstance(a, Send))
    resent = two.retransmission(txn, again, 0.3)
    assert [a.data for a in resent if isinstance(a, Send)] == [first]


def test_create_server_refuses_ack_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="ACK"):
        layer.create_server(creq("ACK"), None, reliable=False, now=0.0)
    layer.create_server(creq("OPTIONS"), None, reliable=False, now=0.0)
    with pytest.raises(ValueError, match="exists"):
        layer.create_server(creq("OPTIONS"), None, reliable=False, now=0.0)
    # nothing found means nothing created: find_server alone keeps no state
    before = len(layer)
    assert layer.find_server(creq("MESSAGE", "z9hG4bKother"))[0] is None
    assert len(layer) == before
