"""RFC 3261 §17 transactions as sans-IO state machines (with the RFC 6026 corrections).

Theory of operation
-------------------
A :class:`TransactionLayer` owns every transaction and the tables that match messages to them.
The driver (``mss.sip.core``) feeds it events — a request or response received, a timer fired, a
transport error, the TU sending a request or a response — each with ``now``, and performs the
actions it returns, in order:

* :class:`Send` — put ``data`` on the wire to ``dest`` (an opaque object the driver gave us);
* :class:`Deliver` — hand ``message`` to the transaction user (TU);
* :class:`StartTimer` / :class:`CancelTimer` — (re)arm or disarm timer ``name`` of ``txn``
  (starting a timer that is already armed replaces it);
* :class:`Timeout` — timer B/F/H fired: the TU must act as if it got 408 (client) or must know
  the ACK never came (server);
* :class:`TransportFailure` — the driver reported a transport error (§17.1.4, §17.2.4);
* :class:`Terminated` — the transaction is gone; the layer has already forgotten it, the driver
  drops its timers.

No clock, no sockets: ``now`` is only recorded for the TU's benefit (``created``); all timing is
expressed as timer actions, so every transition can be tested deterministically.

State machines (figure numbers of RFC 3261 §17):

* :class:`ClientInviteTransaction` (fig. 5 + RFC 6026 §8.4): Calling → Proceeding →
  Completed (300-699: ACK sent by the transaction, timer D) or Accepted (2xx: passed to the TU,
  which ACKs; later 2xx retransmissions also go to the TU; timer M) → Terminated. Timer A
  retransmits over unreliable transports (doubling, no cap), timer B times out.
* :class:`ClientNonInviteTransaction` (fig. 6): Trying → Proceeding → Completed (timer K) →
  Terminated; timer E retransmits (doubling up to T2; T2 in Proceeding), timer F times out.
* :class:`ServerInviteTransaction` (fig. 7 + RFC 6026 §8.7): Proceeding → Completed (300-699,
  timers G/H) → Confirmed (ACK, timer I) → Terminated; or Proceeding → Accepted (2xx, timer L)
  → Terminated. Retransmitted INVITEs get the last response again; in Accepted they are absorbed
  and ACKs go to the TU. 2xx retransmission is the TU's job (§13.3.1.4).
* :class:`ServerNonInviteTransaction` (fig. 8): Trying → Proceeding → Completed (timer J) →
  Terminated; retransmitted requests get the last response again (nothing in Trying).

Memory: a transaction that has sent or received its final response keeps only what it still
needs — its matching keys, the destination and the bytes it may have to send again (the last
response of a server transaction, the ACK of a client INVITE transaction). ``request`` and
``last_response`` are set to None then (a transaction that ends without a final response, by
timeout or transport error, keeps them: the driver builds the local 408/503 from the request).
A busy server holds every completed transaction for Timer J/L/D (32 s on UDP); keeping the
parsed messages made them most of the heap the garbage collector walks.

Matching (§17.1.3, §17.2.3): responses match client transactions by top-Via branch and CSeq
method. Requests with an RFC 3261 branch (``z9hG4bK``) match server transactions by branch,
top-Via sent-by and method (ACK matches INVITE). Requests without the magic cookie use the
RFC 2543 rule: Request-URI, To tag, From tag, Call-ID, CSeq number and top Via; an ACK matches
with the To tag of the final response the transaction sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ParseError
from .message import Request, Response, make_ack, make_response

__all__ = (
    "DEFAULT_TIMERS",
    "Action",
    "CancelTimer",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "Deliver",
    "Send",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "StartTimer",
    "Terminated",
    "Timeout",
    "Timers",
    "TransactionLayer",
    "TransportFailure",
    "response_target",
)

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Timers:
    """T1, T2, T4 (RFC 3261 §17.1.1.1, table 4); every other timer derives from them."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Timers.{name} must be a positive number of seconds")
        if self.t2 < self.t1:
            raise ValueError("Timers.t2 must be >= t1")

    @property
    def b(self) -> float:
        """Timers B, F, H, J, L, M: 64*T1."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """Timer D for unreliable transports: at least 32 s (§17.1.1.2)."""
        return max(32.0, 64 * self.t1)


DEFAULT_TIMERS = Timers()


# --------------------------------------------------------------------------------------------
# actions
# --------------------------------------------------------------------------------------------
class Action:
    """Base class of what the layer asks the driver to do."""

    __slots__ = ("txn",)

    txn: Transaction

    def __repr__(self) -> str:
        fields = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)  # type: ignore[attr-defined]
        return f"{type(self).__name__}({fields})"


class Send(Action):
    __slots__ = ("data", "dest")

    def __init__(self, txn: Transaction, data: bytes, dest: Any) -> None:
        self.txn = txn
        self.data = data
        self.dest = dest


class Deliver(Action):
    __slots__ = ("message",)

    def __init__(self, txn: Transaction, message: Request | Response) -> None:
        self.txn = txn
        self.message = message


class StartTimer(Action):
    __slots__ = ("delay", "name")

    def __init__(self, txn: Transaction, name: str, delay: float) -> None:
        self.txn = txn
        self.name = name
        self.delay = delay


class CancelTimer(Action):
    __slots__ = ("name",)

    def __init__(self, txn: Transaction, name: str) -> None:
        self.txn = txn
        self.name = name


class Timeout(Action):
    __slots__ = ()

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn


class TransportFailure(Action):
    __slots__ = ()

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn


class Terminated(Action):
    __slots__ = ()

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn


# --------------------------------------------------------------------------------------------
# transactions
# --------------------------------------------------------------------------------------------
class Transaction:
    """State shared by the four machines. ``state`` is a lower-case RFC state name."""

    __slots__ = (
        "created",
        "dest",
        "driver_data",
        "keys",
        "method",
        "reliable",
        "request",
        "state",
        "timers",
    )

    state: str
    #: the request; None once the transaction no longer needs it (see "Memory" above)
    request: Request | None
    dest: Any
    reliable: bool
    timers: Timers
    method: str
    created: float
    keys: list[Any]
    #: free for the driver (e.g. its timer handles); the layer never touches it.
    driver_data: Any

    def __init__(
        self, request: Request, dest: Any, reliable: bool, timers: Timers, now: float
    ) -> None:
        self.request = request
        self.dest = dest
        self.reliable = reliable
        self.timers = timers
        self.method = request.method
        self.created = now
        self.keys = []
        self.driver_data = None
        self.state = "init"

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def _terminate(self, out: list[Action]) -> list[Action]:
        self.state = "terminated"
        out.append(Terminated(self))
        return out

    def _release(self) -> None:
        """Drop the parsed messages: only keys, destination and bytes are needed from here on."""
        self.request = None

    def on_timer(self, name: str, now: float) -> list[Action]:
        raise NotImplementedError

    def on_transport_error(self, now: float) -> list[Action]:
        if self.state == "terminated":
            return []
        return self._terminate([TransportFailure(self)])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.state}>"


class ClientTransaction(Transaction):
    __slots__ = ("branch", "data", "interval", "last_response")

    branch: str
    data: bytes
    interval: float
    last_response: Response | None

    def __init__(
        self, request: Request, dest: Any, reliable: bool, timers: Timers, now: float
    ) -> None:
        super().__init__(request, dest, reliable, timers, now)
        via = request.via
        if via is None or not via.branch:
            raise ValueError("a client transaction needs a request with a top Via branch")
        self.branch = via.branch
        self.data = bytes(request)
        self.interval = timers.t1
        self.last_response = None

    def _release(self) -> None:
        self.request = None
        self.last_response = None

    def start(self, now: float) -> list[Action]:
        raise NotImplementedError

    def on_response(self, response: Response, now: float) -> list[Action]:
        raise NotImplementedError


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026 §8.4 (Accepted state, timer M)."""

    __slots__ = ()

    def start(self, now: float) -> list[Action]:
        self.state = "calling"
        out: list[Action] = [Send(self, self.data, self.dest)]
        if not self.reliable:
            out.append(StartTimer(self, "A", self.interval))
        out.append(StartTimer(self, "B", self.timers.b))
        return out

    def on_timer(self, name: str, now: float) -> list[Action]:
        state = self.state
        if name == "A" and state == "calling":
            self.interval *= 2  # §17.1.1.2: doubles each time, no T2 cap for INVITE
            return [Send(self, self.data, self.dest), StartTimer(self, "A", self.interval)]
        if name == "B" and state == "calling":
            return self._terminate([CancelTimer(self, "A"), Timeout(self)])
        if name == "D" and state == "completed":
            return self._terminate([])
        if name == "M" and state == "accepted":
            return self._terminate([])
        return []

    def on_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        status = response.status
        out: list[Action] = []
        if state in ("calling", "proceeding"):
            if state == "calling":
                out += [CancelTimer(self, "A"), CancelTimer(self, "B")]
            self.last_response = response
            if status < 200:
                self.state = "proceeding"
                out.append(Deliver(self, response))
                return out
            if status < 300:
                # RFC 6026 §8.4: Accepted; the TU sends the ACK for 2xx.
                self.state = "accepted"
                self._release()
                out += [Deliver(self, response), StartTimer(self, "M", self.timers.b)]
                return out
            self.state = "completed"
            assert self.request is not None
            ack = bytes(make_ack(self.request, response))
            self.data = ack  # what we resend for retransmitted final responses
            self._release()
            out += [Send(self, ack, self.dest), Deliver(self, response)]
            if self.reliable:
                return self._terminate(out)  # timer D = 0
            out.append(StartTimer(self, "D", self.timers.d))
            return out
        if state == "completed" and status >= 300:
            return [Send(self, self.data, self.dest)]  # §17.1.1.2: retransmit the ACK
        if state == "accepted" and 200 <= status < 300:
            return [Deliver(self, response)]  # RFC 6026: 2xx retransmissions go to the TU
        return []

    def on_transport_error(self, now: float) -> list[Action]:
        if self.state == "terminated":
            return []
        return self._terminate(
            [CancelTimer(self, "A"), CancelTimer(self, "B"), TransportFailure(self)]
        )


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.2."""

    __slots__ = ()

    def start(self, now: float) -> list[Action]:
        self.state = "trying"
        out: list[Action] = [Send(self, self.data, self.dest)]
        if not self.reliable:
            out.append(StartTimer(self, "E", self.interval))
        out.append(StartTimer(self, "F", self.timers.b))
        return out

    def on_timer(self, name: str, now: float) -> list[Action]:
        state = self.state
        if name == "E" and state in ("trying", "proceeding"):
            if state == "trying":
                self.interval = min(2 * self.interval, self.timers.t2)
            else:
                self.interval = self.timers.t2
            return [Send(self, self.data, self.dest), StartTimer(self, "E", self.interval)]
        if name == "F" and state in ("trying", "proceeding"):
            return self._terminate([CancelTimer(self, "E"), Timeout(self)])
        if name == "K" and state == "completed":
            return self._terminate([])
        return []

    def on_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        if state not in ("trying", "proceeding"):
            return []  # Completed absorbs retransmitted responses
        self.last_response = response
        if response.status < 200:
            self.state = "proceeding"
            return [Deliver(self, response)]
        self.state = "completed"
        self._release()
        self.data = b""  # Completed absorbs retransmissions and sends nothing (§17.1.2.2)
        out: list[Action] = [
            CancelTimer(self, "E"),
            CancelTimer(self, "F"),
            Deliver(self, response),
        ]
        if self.reliable:
            return self._terminate(out)  # timer K = 0
        out.append(StartTimer(self, "K", self.timers.t4))
        return out

    def on_transport_error(self, now: float) -> list[Action]:
        if self.state == "terminated":
            return []
        return self._terminate(
            [CancelTimer(self, "E"), CancelTimer(self, "F"), TransportFailure(self)]
        )


class ServerTransaction(Transaction):
    __slots__ = ("last_data", "last_response", "to_tag")

    last_response: Response | None
    last_data: bytes | None
    #: the To tag of the final response of an INVITE transaction (RFC 2543 ACK matching)
    to_tag: str | None

    def __init__(
        self, request: Request, dest: Any, reliable: bool, timers: Timers, now: float
    ) -> None:
        super().__init__(request, dest, reliable, timers, now)
        self.last_response = None
        self.last_data = None
        self.to_tag = None

    def _release(self) -> None:
        self.request = None
        self.last_response = None

    def start(self, now: float, *, auto_trying: bool) -> list[Action]:
        raise NotImplementedError

    def on_request(self, request: Request, now: float) -> list[Action]:
        """A retransmission (or an ACK) matched this transaction."""
        raise NotImplementedError

    def send_response(self, response: Response, now: float) -> list[Action]:
        raise NotImplementedError

    def _store(self, response: Response) -> bytes:
        data = bytes(response)
        self.last_data = data
        if response.status < 200:
            self.last_response = response
        else:
            # final: the bytes answer retransmissions; the parsed messages can go
            self._release()
        return data


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026 §8.7 (Accepted state, timer L)."""

    __slots__ = ("interval",)

    interval: float

    def start(self, now: float, *, auto_trying: bool) -> list[Action]:
        self.state = "proceeding"
        self.interval = self.timers.t1
        out: list[Action] = []
        request = self.request
        assert request is not None
        if auto_trying:
            # §17.2.1: a 100 unless the TU answers within 200 ms; we always send it at once.
            data = self._store(make_response(request, 100))
            out.append(Send(self, data, self.dest))
        out.append(Deliver(self, request))
        return out

    def on_request(self, request: Request, now: float) -> list[Action]:
        state = self.state
        if request.method == "ACK":
            if state == "completed":
                self.state = "confirmed"
                out: list[Action] = [CancelTimer(self, "G"), CancelTimer(self, "H")]
                if self.reliable:
                    return self._terminate(out)  # timer I = 0
                out.append(StartTimer(self, "I", self.timers.t4))
                return out
            if state == "accepted":
                return [Deliver(self, request)]  # RFC 6026 §8.7: ACK for 2xx to the TU
            return []  # Confirmed absorbs ACK retransmissions
        # a retransmitted INVITE
        if state in ("proceeding", "completed") and self.last_data is not None:
            return [Send(self, self.last_data, self.dest)]
        return []  # Accepted absorbs them (RFC 6026 §8.7); Confirmed too

    def send_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        status = response.status
        if state == "proceeding":
            if status >= 200:
                self.to_tag = _to_tag(response)
            data = self._store(response)
            out: list[Action] = [Send(self, data, self.dest)]
            if status < 200:
                return out
            if status < 300:
                self.state = "accepted"
                out.append(StartTimer(self, "L", self.timers.b))
                return out
            self.state = "completed"
            if not self.reliable:
                out.append(StartTimer(self, "G", self.interval))
            out.append(StartTimer(self, "H", self.timers.b))
            return out
        if state == "accepted" and 200 <= status < 300:
            # The TU's 2xx retransmissions (§13.3.1.4) pass through the transaction.
            return [Send(self, self._store(response), self.dest)]
        raise ValueError(f"cannot send {status} in state {state}")

    def on_timer(self, name: str, now: float) -> list[Action]:
        state = self.state
        if name == "G" and state == "completed" and self.last_data is not None:
            self.interval = min(2 * self.interval, self.timers.t2)
            return [Send(self, self.last_data, self.dest), StartTimer(self, "G", self.interval)]
        if name == "H" and state == "completed":
            return self._terminate([CancelTimer(self, "G"), Timeout(self)])
        if name == "I" and state == "confirmed":
            return self._terminate([])
        if name == "L" and state == "accepted":
            return self._terminate([])
        return []

    def on_transport_error(self, now: float) -> list[Action]:
        if self.state == "terminated":
            return []
        return self._terminate(
            [CancelTimer(self, "G"), CancelTimer(self, "H"), TransportFailure(self)]
        )


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.2."""

    __slots__ = ()

    def start(self, now: float, *, auto_trying: bool) -> list[Action]:
        self.state = "trying"
        assert self.request is not None
        return [Deliver(self, self.request)]

    def on_request(self, request: Request, now: float) -> list[Action]:
        if self.state in ("proceeding", "completed") and self.last_data is not None:
            return [Send(self, self.last_data, self.dest)]
        return []  # Trying: discard (§17.2.2)

    def send_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        if state not in ("trying", "proceeding"):
            raise ValueError(f"cannot send {response.status} in state {state}")
        data = self._store(response)  # (no to_tag: only INVITE transactions match ACKs)
        out: list[Action] = [Send(self, data, self.dest)]
        if response.status < 200:
            self.state = "proceeding"
            return out
        self.state = "completed"
        if self.reliable:
            return self._terminate(out)  # timer J = 0
        out.append(StartTimer(self, "J", self.timers.b))
        return out

    def on_timer(self, name: str, now: float) -> list[Action]:
        if name == "J" and self.state == "completed":
            return self._terminate([])
        return []


def _to_tag(response: Response) -> str | None:
    try:
        to = response.to
    except ParseError:
        return None
    return to.tag if to is not None else None


# --------------------------------------------------------------------------------------------
# matching and the layer
# --------------------------------------------------------------------------------------------
def _sent_by(request: Request) -> str:
    via = request.via
    if via is None:
        return ""
    return f"{via.host.lower()}:{via.port if via.port is not None else ''}"


def server_key(
    request: Request, *, method: str | None = None, to_tag: str | None = None
) -> tuple[Any, ...]:
    """The matching key of a request for server transactions (§17.2.3).

    Args:
        request: the request.
        method: the method to match (defaults to the request's; ACK and CANCEL lookups of the
            INVITE pass ``"INVITE"``).
        to_tag: for RFC 2543 ACK matching, the To tag to use instead of the request's.

    Raises:
        ParseError: a header needed for matching is malformed.
    """
    m = request.method if method is None else method
    if m == "ACK":
        m = "INVITE"
    via = request.via
    branch = via.branch if via is not None else None
    if branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return ("3261", branch, _sent_by(request), m)
    # RFC 2543 fallback (§17.2.3)
    to = request.to
    frm = request.from_
    cseq = request.cseq
    tag = to_tag if to_tag is not None else (to.tag if to is not None else None)
    return (
        "2543",
        request.uri_text,
        tag,
        frm.tag if frm is not None else None,
        request.call_id,
        cseq.seq if cseq is not None else None,
        str(via) if via is not None else None,
        m,
    )


def client_key(message: Request | Response) -> tuple[str | None, str | None]:
    """The matching key for client transactions (§17.1.3): top-Via branch and CSeq method."""
    via = message.via
    cseq = message.cseq
    return (via.branch if via is not None else None, cseq.method if cseq is not None else None)


def response_target(
    via_host: str,
    via_port: int | None,
    has_rport: bool,
    maddr: str | None,
    source: tuple[str, int],
    *,
    reliable: bool,
    default_port: int = 5060,
) -> tuple[str, int]:
    """Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4).

    Reliable transports answer on the connection the request came on (the caller uses the
    connection; the address returned is the source). Unreliable: ``maddr`` when present, else
    the source address (``received``) with the source port when ``rport`` was asked for, else
    the Via port (default 5060).
    """
    if reliable:
        return source
    if maddr:
        return (maddr, via_port or default_port)
    if has_rport:
        return source
    return (source[0], via_port or default_port)


class TransactionLayer:
    """All transactions of one SIP element, and the tables that match messages to them."""

    __slots__ = ("_client", "_server", "auto_trying", "timers")

    def __init__(self, *, timers: Timers = DEFAULT_TIMERS, auto_trying: bool = True) -> None:
        self.timers = timers
        self.auto_trying = auto_trying
        self._server: dict[tuple[Any, ...], ServerTransaction] = {}
        self._client: dict[tuple[str | None, str | None], ClientTransaction] = {}

    def __len__(self) -> int:
        return len(self._server) + len(self._client)

    @property
    def server_count(self) -> int:
        return len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    def _forget(self, actions: list[Action]) -> list[Action]:
        for a in actions:
            if type(a) is Terminated:
                txn = a.txn
                table: dict[Any, Any] = (
                    self._client if isinstance(txn, ClientTransaction) else self._server
                )
                for key in txn.keys:
                    if table.get(key) is txn:
                        del table[key]
        return actions

    # -- requests in ------------------------------------------------------------------------
    def receive_request(
        self, request: Request, reply_to: Any, *, reliable: bool, now: float
    ) -> tuple[ServerTransaction | None, list[Action]]:
        """Match a received request to a server transaction or create one.

        Returns:
            ``(txn, actions)``. A retransmission returns the matched transaction and the
            actions to resend its last response. A request that starts a transaction returns
            the new one with a :class:`Deliver` for the TU (and a 100 Trying for INVITE when
            ``auto_trying``). An ACK that matches nothing (the ACK for a 2xx) returns
            ``(None, [])``: the TU handles it without a transaction.

        Raises:
            ParseError: the headers needed for matching are malformed.
        """
        txn, key = self.find_server(request)
        if txn is not None:
            if request.method == "ACK" and not isinstance(txn, ServerInviteTransaction):
                return None, []
            return txn, self._forget(txn.on_request(request, now))
        if request.method == "ACK":
            return None, []
        return self.create_server(request, reply_to, reliable=reliable, now=now, key=key)

    def find_server(self, request: Request) -> tuple[ServerTransaction | None, tuple[Any, ...]]:
        """The server transaction ``request`` matches (§17.2.3), if any, and its matching key.

        The first half of :meth:`receive_request`, for a TU that decides later whether a
        request gets a transaction at all (a stateless UAS answering challenges, §8.2.7):
        pass the key to :meth:`create_server`, and a match to :meth:`receive_request`'s
        retransmission handling by calling :meth:`retransmission`.

        Raises:
            ParseError: the headers needed for matching are malformed.
        """
        key = server_key(request)
        txn = self._server.get(key)
        if txn is None and request.method == "ACK" and key[0] == "2543":
            txn = self._server.get(
                server_key(request, to_tag=request.to.tag if request.to else None)
            )
        return txn, key

    def retransmission(self, txn: ServerTransaction, request: Request, now: float) -> list[Action]:
        """The actions for a request that :meth:`find_server` matched to ``txn``."""
        return self._forget(txn.on_request(request, now))

    def create_server(
        self,
        request: Request,
        reply_to: Any,
        *,
        reliable: bool,
        now: float,
        key: tuple[Any, ...] | None = None,
    ) -> tuple[ServerTransaction, list[Action]]:
        """Create the server transaction of a request that matched none.

        Args:
            key: its matching key from :meth:`find_server` (computed when omitted).

        Returns:
            ``(txn, actions)``: a :class:`Deliver` for the TU (and a 100 Trying for INVITE when
            ``auto_trying``).

        Raises:
            ValueError: an ACK (never a transaction of its own), or a transaction with this key
                exists.
            ParseError: the headers needed for matching are malformed.
        """
        if request.method == "ACK":
            raise ValueError("an ACK does not start a server transaction")
        if key is None:
            key = server_key(request)
        if key in self._server:
            raise ValueError("a server transaction for this request exists")
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        txn = cls(request, reply_to, reliable, self.timers, now)
        txn.keys.append(key)
        self._server[key] = txn
        return txn, txn.start(now, auto_trying=self.auto_trying)

    def find_invite(self, cancel: Request) -> ServerInviteTransaction | None:
        """The INVITE server transaction a CANCEL refers to (§9.2), or None."""
        try:
            txn = self._server.get(server_key(cancel, method="INVITE"))
        except ParseError:
            return None
        return txn if isinstance(txn, ServerInviteTransaction) else None

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> list[Action]:
        """The TU answers through a server transaction."""
        request = txn.request  # released by a final response
        actions = txn.send_response(response, now)
        if (
            isinstance(txn, ServerInviteTransaction)
            and response.status >= 200
            and request is not None
            and txn.keys
            and txn.keys[0][0] == "2543"
            and txn.to_tag is not None
        ):
            # RFC 2543 ACKs carry the To tag of our final response.
            ack_key = server_key(request, method="INVITE", to_tag=txn.to_tag)
            if ack_key not in self._server:
                txn.keys.append(ack_key)
                self._server[ack_key] = txn
        return self._forget(actions)

    # -- requests out, responses in ---------------------------------------------------------
    def send_request(
        self, request: Request, dest: Any, *, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a client transaction for ``request`` (not ACK: the TU sends ACKs for 2xx)."""
        if request.method == "ACK":
            raise ValueError("ACK is not sent through a client transaction")
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        txn = cls(request, dest, reliable, self.timers, now)
        key = (txn.branch, request.method)
        if key in self._client:
            raise ValueError(f"a client transaction with branch {txn.branch} already exists")
        txn.keys.append(key)
        self._client[key] = txn
        return txn, self._forget(txn.start(now))

    def receive_response(
        self, response: Response, now: float
    ) -> tuple[ClientTransaction | None, list[Action]]:
        """Match a response to a client transaction (§17.1.3).

        Returns:
            ``(txn, actions)``, or ``(None, [])`` when nothing matches: the core then handles it
            (a 2xx retransmission after the transaction ended needs a new ACK, §13.2.2.4).

        Raises:
            ParseError: the Via or CSeq is malformed.
        """
        txn = self._client.get(client_key(response))
        if txn is None:
            return None, []
        return txn, self._forget(txn.on_response(response, now))

    # -- timers and errors ------------------------------------------------------------------
    def timer_fired(self, txn: Transaction, name: str, now: float) -> list[Action]:
        if txn.state == "terminated":
            return []
        return self._forget(txn.on_timer(name, now))

    def transport_error(self, txn: Transaction, now: float) -> list[Action]:
        return self._forget(txn.on_transport_error(now))


def trying(request: Request) -> Response:
    """A 100 Trying for ``request`` (convenience for TUs that answer statelessly)."""
    return make_response(request, 100)
