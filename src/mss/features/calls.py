"""Call policy: admission limits, the dial plan, the no-answer timer and the Python policy hook.

Theory of operation
-------------------
The B2BUA (:mod:`mss.sip.b2bua`) owns the SIP mechanics of a call; this module decides what a
call may do and where it goes, without seeing SIP messages or sockets. For each new call the
B2BUA asks, in this order:

1. :meth:`CallService.admit` — the caller's own limits (``max_outgoing``, ``max_calls``). The
   call's holds are taken here, atomically with the check, so two INVITEs arriving together can
   never both pass a limit of 1. Over a limit → 403 with a reason phrase naming which.
2. :meth:`CallService.decide` — the policy hooks registered from Python (``server.on_call``),
   async functions that see a :class:`CallInfo` and return a :class:`Decision`: continue,
   reject (status, reason) or route to another number or URI. Skipped (no task, no await) when
   no hook is registered, so plain calls stay on the synchronous fast path.
3. :meth:`CallService.route` — the dial plan: an ordered list of steps, each a function
   ``(RouteRequest) -> Routing | None``; the first step that returns a :class:`Routing` decides.
   The last step is local users (:meth:`CallService.local_user_step`); external lines and
   trunks (:mod:`mss.features.external`, wired as :attr:`CallService.external`) insert the
   dial-plan step before it, and also identify callers from trunks and line providers
   (:meth:`CallService.external_caller`) and count their calls. No step matched → 404.

Outcomes (docs/pbx-behaviour): unknown number → 404; user known but no binding and no
IP-authorized address → 480; callee over its ``max_calls`` → 486; caller over its limits → 403.

Exact call counting: :class:`CallCounter` keeps, per key (``"user:1001"``, later
``"trunk:carrier"``) and direction (``"in"`` / ``"out"``), the *set* of active call ids. A
call's holds are released together by :meth:`CallCounter.release` (idempotent), which the B2BUA
calls on every way a call ends (final non-2xx, CANCEL, no answer, BYE, 2xx never ACKed,
shutdown). Counts are set sizes: never negative, never leaked by a double release.

No-answer timer: a per-route value (issue 7: per line, 0 = use the next), else the callee's
``extra["no_answer_timeout"]`` (``mss user set N --no-answer-timeout S``), else
``[calls] no_answer_timeout`` (60 s). See :func:`effective_no_answer_timeout`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..storage.base import BindingRecord, UserRecord
from .location import LocationService
from .users import UserDirectory

__all__ = (
    "ADMIN_RELEASE",
    "CONTINUE",
    "CallControl",
    "CallCounter",
    "CallHook",
    "CallInfo",
    "CallService",
    "Continue",
    "Decision",
    "Destination",
    "DialStep",
    "ExternalCalls",
    "Reject",
    "RouteRequest",
    "RouteTo",
    "Routing",
    "effective_no_answer_timeout",
    "parse_source",
    "reject",
    "route",
)

log = logging.getLogger("mss.calls")


# --------------------------------------------------------------------------------------------
# exact call counting
# --------------------------------------------------------------------------------------------
class CallCounter:
    """Active calls per key and direction, as sets of call ids (exact under races).

    ``acquire`` checks and takes a hold in one step; ``release(call_id)`` frees every hold of a
    call and is idempotent. Keys are free text (``"user:1001"``, ``"trunk:carrier"``);
    directions are ``"in"`` and ``"out"``.
    """

    __slots__ = ("_active", "_holds")

    def __init__(self) -> None:
        self._active: dict[tuple[str, str], set[str]] = {}
        self._holds: dict[str, list[tuple[str, str]]] = {}

    def count(self, key: str, direction: str | None = None) -> int:
        """Active calls of ``key`` in one direction, or in both when ``direction`` is None."""
        if direction is not None:
            return len(self._active.get((key, direction), ()))
        return len(self._active.get((key, "in"), ())) + len(self._active.get((key, "out"), ()))

    def acquire(
        self,
        key: str,
        direction: str,
        call_id: str,
        *,
        limit: int | None = None,
        total: int | None = None,
    ) -> str | None:
        """Take a hold for ``call_id`` unless a limit is reached.

        Args:
            key: what is counted (``"user:1001"``).
            direction: ``"in"`` or ``"out"``.
            call_id: the call's id; a second acquire of the same key/direction is a no-op.
            limit: maximum calls in this direction (None = unlimited, 0 = none allowed).
            total: maximum calls in both directions together (None = unlimited).

        Returns:
            None when the hold was taken, else ``"direction"`` or ``"total"``: the limit hit.
        """
        slot = (key, direction)
        calls = self._active.get(slot)
        if calls is not None and call_id in calls:
            return None
        n = len(calls) if calls is not None else 0
        if limit is not None and n >= limit:
            return "direction"
        if total is not None and self.count(key) >= total:
            return "total"
        if calls is None:
            calls = self._active[slot] = set()
        calls.add(call_id)
        self._holds.setdefault(call_id, []).append(slot)
        return None

    def release(self, call_id: str) -> int:
        """Free every hold of ``call_id``; returns how many were freed (0 the second time)."""
        slots = self._holds.pop(call_id, None)
        if not slots:
            return 0
        for slot in slots:
            calls = self._active.get(slot)
            if calls is not None:
                calls.discard(call_id)
                if not calls:
                    del self._active[slot]
        return len(slots)

    def holds(self, call_id: str) -> list[tuple[str, str]]:
        """The ``(key, direction)`` holds of a call."""
        return list(self._holds.get(call_id, ()))

    def __len__(self) -> int:
        """Calls holding at least one slot."""
        return len(self._holds)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{key: {"in": n, "out": m}}`` for every key with active calls."""
        out: dict[str, dict[str, int]] = {}
        for (key, direction), calls in self._active.items():
            out.setdefault(key, {"in": 0, "out": 0})[direction] = len(calls)
        return out


# --------------------------------------------------------------------------------------------
# the policy hook: what Python code sees and returns
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallInfo:
    """A new call, as policy hooks see it.

    Attributes:
        id: the call's id (also the CDR id).
        caller: the calling user's number.
        callee: the number dialled (Request-URI user part).
        source: where the INVITE came from, ``"udp:192.0.2.7:5060"``.
        headers: the INVITE's headers as ``(name, value)`` pairs, in order.
        call_id: Call-ID of the caller's leg.
    """

    id: str
    caller: str
    callee: str
    source: str
    headers: tuple[tuple[str, str], ...] = ()
    call_id: str = ""

    def header(self, name: str) -> str | None:
        """The first header with this name (case-insensitive, long names), or None."""
        low = name.lower()
        for n, v in self.headers:
            if n.lower() == low:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Continue:
    """Route the call normally."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call with ``status`` (400-699) and a reason phrase."""

    status: int
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 400 <= self.status <= 699:
            raise ValueError("reject status must be 400..699")
        if "\r" in self.reason or "\n" in self.reason:
            raise ValueError("reason must be one line")


@dataclass(frozen=True, slots=True)
class RouteTo:
    """Route the call to another number (through the dial plan) or straight to a SIP URI."""

    number: str | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if (self.number is None) == (self.uri is None):
            raise ValueError("route to exactly one of number= or uri=")


Decision = Continue | Reject | RouteTo
CallHook = Callable[[CallInfo], Awaitable[Decision | None]]

#: The "continue" decision (a hook may also return None).
CONTINUE = Continue()


def reject(status: int, reason: str = "") -> Reject:
    """A decision refusing the call: ``return mss.reject(403, "Barred")``."""
    return Reject(status, reason)


def route(number: str | None = None, *, uri: str | None = None) -> RouteTo:
    """A decision re-targeting the call: ``mss.route("1001")`` or ``mss.route(uri="sip:...")``."""
    return RouteTo(number, uri)


# --------------------------------------------------------------------------------------------
# the dial plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Destination:
    """One device (or peer) to send a leg to.

    Attributes:
        uri: the Request-URI of the leg (the registered Contact).
        transport: ``"udp"``, ``"tcp"`` or ``"tls"``.
        host: where packets go (the address the REGISTER came from: NAT-friendly).
        port: its port.
        route: Route header values to put on the request (the binding's Path, RFC 3327).
        label: what CDRs record as the callee address (``"udp:192.0.2.7:5060"``).
        credentials: whose credentials answer a 401/407 on this leg (``"line:prov"``; ``""``
            = none: the challenge is relayed to the caller as 480).
    """

    uri: str
    transport: str
    host: str
    port: int
    route: tuple[str, ...] = ()
    label: str = ""
    credentials: str = ""


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What a dial-plan step sees.

    Attributes:
        info: the call.
        number: the number to route (the dialled one, or a hook's replacement).
        no_answer_timeout: the per-route timer the caller of :meth:`CallService.route` passed
            (0 = not set).
        hold: take the callee's call-limit hold (False for a pager-mode MESSAGE).
    """

    info: CallInfo
    number: str
    no_answer_timeout: float = 0
    hold: bool = True


@dataclass(frozen=True, slots=True)
class Routing:
    """What the dial plan decided.

    Attributes:
        status: 0 = ring ``destinations``; else the status to reject with.
        reason: the reason phrase (for a rejection).
        callee: the final callee number.
        destinations: the legs to fork to (in parallel).
        no_answer_timeout: seconds the call may ring.
        route: the CDR route label (``""`` internal; issue 7: ``"line:x"``, ``"trunk:y"``).
        direction: the CDR direction (``"internal"``, ``"outbound"``...).
        from_user: the caller number to present on the new leg (None = the caller's own).
        domain: the host part for From/To of the new leg (None = the server's domain).
        fallback: ``() -> Routing | None``: the dial plan's next route, asked for when every
            leg of this routing answered 5xx (it frees this route's holds first); None = none.
    """

    status: int = 0
    reason: str = ""
    callee: str = ""
    destinations: tuple[Destination, ...] = ()
    no_answer_timeout: float = 60.0
    route: str = ""
    direction: str = "internal"
    from_user: str | None = None
    domain: str | None = None
    fallback: Callable[[], Routing | None] | None = field(default=None, compare=False)

    @property
    def rejected(self) -> bool:
        return self.status != 0


DialStep = Callable[[RouteRequest], Routing | None]

#: the reason recorded and sent when an operator releases a call (API ``DELETE /calls/{id}``)
ADMIN_RELEASE = "Released by the administrator"


class CallControl(Protocol):
    """What the call layer (the B2BUA) registers in :attr:`CallService.control`."""

    def hangup(self, id: str, reason: str) -> bool:
        """Release call ``id`` from the server side; False when no such call is in progress."""
        ...


class ExternalCalls(Protocol):
    """What :class:`CallService` asks about calls from and to lines and trunks."""

    def caller(
        self, transport: str, host: str, port: int, ruri_user: str | None, from_user: str | None
    ) -> UserRecord | None: ...

    def admit(self, caller: UserRecord, call_id: str) -> Reject | None: ...

    def release(self, call_id: str) -> None: ...


def parse_source(text: str) -> tuple[str, str, int] | None:
    """``"udp:192.0.2.7:5060"`` / ``"tcp:[2001:db8::1]:5060"`` → ``(transport, host, port)``."""
    transport, sep, rest = text.partition(":")
    if not sep or not rest:
        return None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            return None
        host, port_text = rest[1:close], rest[close + 2 :]
    else:
        host, _, port_text = rest.rpartition(":")
    if not host or not port_text.isdigit():
        return None
    return transport.lower(), host, int(port_text)


def _uri_hostport(uri: str) -> tuple[str, str, int] | None:
    """(transport, host, port) of a ``sip:`` URI with an IP host (no DNS here)."""
    text = uri.strip()
    if text.startswith("<") and ">" in text:
        text = text[1 : text.index(">")]
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        return None
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    params = text.split(";")[1:]
    transport = "tls" if scheme.lower() == "sips" else "udp"
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() == "transport" and v:
            transport = v.strip().lower()
    hostport = rest.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.find("]")
        host = hostport[1:close]
        port_text = hostport[close + 2 :] if close + 1 < len(hostport) else ""
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, ""
    if not host:
        return None
    default = 5061 if transport == "tls" else 5060
    if port_text and not port_text.isdigit():
        return None
    return transport, host, int(port_text) if port_text else default


def effective_no_answer_timeout(
    route_value: float, user: UserRecord | None, system: float
) -> float:
    """The no-answer timer of a call: the route's value, else the callee's, else the system's.

    Args:
        route_value: per-route value (issue 7: per external line); 0 = not set.
        user: the callee (its ``extra["no_answer_timeout"]``, seconds, > 0 to apply).
        system: ``[calls] no_answer_timeout``.
    """
    if route_value and route_value > 0:
        return float(route_value)
    if user is not None:
        value = user.extra.get("no_answer_timeout") if user.extra else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return float(system)


class CallService:
    """Admission, policy hooks and the dial plan (see the module docstring)."""

    def __init__(
        self,
        users: UserDirectory,
        location: LocationService,
        *,
        no_answer_timeout: float = 60.0,
        counter: CallCounter | None = None,
        hooks: Sequence[CallHook] = (),
    ) -> None:
        self.users = users
        self.location = location
        self.no_answer_timeout = no_answer_timeout
        self.counter = counter if counter is not None else CallCounter()
        #: the policy hooks, run in order; the first decision other than continue wins.
        self.hooks: list[CallHook] = list(hooks)
        #: the dial plan; issue 7 inserts line/trunk steps before the local-user step.
        self.steps: list[DialStep] = [self.local_user_step]
        #: calls through external lines and SIP trunks (:mod:`mss.features.external`), if wired
        self.external: ExternalCalls | None = None
        #: the call layer's controls (hang up), registered by the B2BUA when it starts
        self.control: CallControl | None = None
        self.stats = {"admitted": 0, "rejected": 0, "routed": 0}

    # -- live control (issue 8: the API hangs up active calls) ------------------------------
    def hangup(self, id: str, *, reason: str = ADMIN_RELEASE) -> bool:
        """Release an active call from the server side (BYE both sides, or CANCEL + 480).

        Args:
            id: the call's id (``GET /calls``, the CDR id).
            reason: the text of the Reason header sent and of the CDR reason.

        Returns:
            False when no call layer runs or no call with this id is in progress.
        """
        if self.control is None:
            return False
        return self.control.hangup(id, reason)

    # -- 0. callers from outside (trunks, external lines) ------------------------------------
    def external_caller(
        self, transport: str, host: str, port: int, ruri_user: str | None, from_user: str | None
    ) -> UserRecord | None:
        """The caller of a request from a SIP trunk or a line's provider (trusted, no digest).

        None for every other source: it is identified as a local user (IP or digest).
        """
        if self.external is None:
            return None
        return self.external.caller(transport, host, port, ruri_user, from_user)

    # -- 1. admission -----------------------------------------------------------------------
    def admit(self, caller: UserRecord, call_id: str) -> Reject | None:
        """Check the caller's limits and take its outgoing hold (released by :meth:`release`).

        Returns:
            None when admitted, else the 403 rejection naming the limit (503 for a trunk or
            line over its incoming limit).
        """
        if self.external is not None and caller.extra and "external" in caller.extra:
            return self.external.admit(caller, call_id)
        hit = self.counter.acquire(
            f"user:{caller.number}",
            "out",
            call_id,
            limit=caller.max_outgoing,
            total=caller.max_calls,
        )
        if hit is None:
            self.stats["admitted"] += 1
            return None
        self.stats["rejected"] += 1
        if hit == "direction":
            return Reject(
                403, f"Forbidden (caller over its limit of {caller.max_outgoing} outgoing calls)"
            )
        return Reject(
            403, f"Forbidden (caller over its limit of {caller.max_calls} concurrent calls)"
        )

    def release(self, call_id: str) -> None:
        """Free every hold of a call (idempotent): call this on every way a call ends."""
        self.counter.release(call_id)
        if self.external is not None:
            self.external.release(call_id)

    # -- 2. policy hooks --------------------------------------------------------------------
    def on_call(self, hook: CallHook) -> CallHook:
        """Register a policy hook (usable as a decorator)."""
        self.hooks.append(hook)
        return hook

    async def decide(self, info: CallInfo) -> Decision:
        """Run the hooks in order; the first decision other than continue wins.

        A hook that raises or returns something else is logged and the call is refused with
        500 (a broken policy must not let calls through unchecked).
        """
        for hook in list(self.hooks):
            try:
                decision = await hook(info)
            except Exception:
                log.exception("call policy hook %r failed", hook)
                return Reject(500, "Server Internal Error (call policy failed)")
            if decision is None or isinstance(decision, Continue):
                continue
            if isinstance(decision, (Reject, RouteTo)):
                if isinstance(decision, RouteTo) and decision.uri is not None:
                    return await self._resolve(decision)
                return decision
            log.error("call policy hook %r returned %r", hook, decision)
            return Reject(500, "Server Internal Error (call policy failed)")
        return CONTINUE

    async def _resolve(self, decision: RouteTo) -> Decision:
        """Resolve a URI route's host name now (the SIP layer sends to addresses only)."""
        assert decision.uri is not None
        found = _uri_hostport(decision.uri)
        if found is None:
            return Reject(500, "Server Internal Error (policy routed to a bad URI)")
        _, host, _ = found
        try:
            ipaddress.ip_address(host)
            return decision
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return Reject(404, "Not Found (cannot resolve the routed host)")
        if not infos:
            return Reject(404, "Not Found (cannot resolve the routed host)")
        return _ResolvedRoute(uri=decision.uri, address=str(infos[0][4][0]))

    # -- 3. the dial plan -------------------------------------------------------------------
    def route(
        self,
        info: CallInfo,
        decision: Decision = CONTINUE,
        *,
        no_answer_timeout: float = 0,
        hold: bool = True,
    ) -> Routing:
        """Where the call goes.

        Args:
            info: the call.
            decision: what the policy hooks decided (continue or route-to).
            no_answer_timeout: a per-route no-answer timer (issue 7: the line's); 0 = not set.
            hold: take call-limit holds for the callee (False: a MESSAGE, not a call).

        Returns:
            The routing; ``status != 0`` means reject with that status and reason.
        """
        if isinstance(decision, Reject):
            return Routing(status=decision.status, reason=decision.reason)
        number = info.callee
        if isinstance(decision, RouteTo):
            if decision.uri is not None:
                return self._uri_routing(decision, no_answer_timeout)
            assert decision.number is not None
            number = decision.number
        request = RouteRequest(info, number, no_answer_timeout, hold)
        for step in self.steps:
            result = step(request)
            if result is not None:
                if not result.rejected:
                    self.stats["routed"] += 1
                return result
        return Routing(status=404, reason="Not Found", callee=number)

    def _uri_routing(self, decision: RouteTo, no_answer_timeout: float) -> Routing:
        assert decision.uri is not None
        found = _uri_hostport(decision.uri)
        if found is None:
            return Routing(status=500, reason="Server Internal Error (policy routed to a bad URI)")
        transport, host, port = found
        if isinstance(decision, _ResolvedRoute):
            host = decision.address
        uri = decision.uri.strip()
        if uri.startswith("<") and ">" in uri:
            uri = uri[1 : uri.index(">")]
        user = uri.partition(":")[2].rpartition("@")[0] if "@" in uri else ""
        dest = Destination(
            uri=uri, transport=transport, host=host, port=port, label=f"{transport}:{host}:{port}"
        )
        return Routing(
            callee=user or uri,
            destinations=(dest,),
            no_answer_timeout=no_answer_timeout
            if no_answer_timeout > 0
            else float(self.no_answer_timeout),
        )

    def destinations_for(self, number: str) -> list[Destination]:
        """Every place a local user can be reached: live bindings, then IP-authorized hosts."""
        out: list[Destination] = []
        seen: set[tuple[str, str, int]] = set()
        for b in self.location.lookup(number):
            dest = _binding_destination(b)
            if dest is None:
                continue
            key = (dest.transport, dest.host, dest.port)
            if key in seen:
                continue
            seen.add(key)
            out.append(dest)
        for grant in self.users.grants_for(number):
            host = grant.host
            if host is None:
                continue  # a network grant names no device to call
            port = grant.port or 5060
            key = ("udp", host, port)
            if key in seen:
                continue
            seen.add(key)
            hp = f"[{host}]" if ":" in host else host
            out.append(
                Destination(
                    uri=f"sip:{number}@{hp}:{port}",
                    transport="udp",
                    host=host,
                    port=port,
                    label=f"udp:{hp}:{port}",
                )
            )
        return out

    def local_user_step(self, request: RouteRequest) -> Routing | None:
        """Dial-plan step: the number is a local user → its devices (404/480/486 otherwise)."""
        number = request.number
        user = self.users.get(number)
        if user is None:
            return None
        dests = self.destinations_for(number)
        timeout = effective_no_answer_timeout(
            request.no_answer_timeout, user, self.no_answer_timeout
        )
        if not dests:
            return Routing(status=480, reason="Temporarily Unavailable", callee=number)
        if not request.hold:
            return Routing(callee=number, destinations=tuple(dests), no_answer_timeout=timeout)
        hit = self.counter.acquire(f"user:{number}", "in", request.info.id, total=user.max_calls)
        if hit is not None:
            return Routing(status=486, reason="Busy Here (callee at its call limit)", callee=number)
        return Routing(callee=number, destinations=tuple(dests), no_answer_timeout=timeout)


@dataclass(frozen=True, slots=True)
class _ResolvedRoute(RouteTo):
    """A URI route whose host name was resolved to ``address`` by :meth:`CallService.decide`."""

    address: str = field(default="")


def _binding_destination(b: BindingRecord) -> Destination | None:
    src = parse_source(b.source) if b.source else None
    if src is None:
        src = _uri_hostport(b.contact)
        if src is None:
            return None
    transport, host, port = src
    hp = f"[{host}]" if ":" in host else host
    return Destination(
        uri=b.contact,
        transport=transport,
        host=host,
        port=port,
        route=tuple(b.path),
        label=f"{transport}:{hp}:{port}",
    )


def headers_tuple(
    headers: Sequence[tuple[str, str]] | Mapping[str, str],
) -> tuple[tuple[str, str], ...]:
    """Normalise headers for :class:`CallInfo`."""
    if isinstance(headers, Mapping):
        return tuple((str(k), str(v)) for k, v in headers.items())
    return tuple((str(k), str(v)) for k, v in headers)
