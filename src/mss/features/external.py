"""Calls through external lines and SIP trunks: who calls from outside, where the dial plan sends a
call out, and the concurrent-call counts of lines and trunks (issue 7).

Theory of operation
-------------------
:class:`ExternalCalls` plugs into :class:`~mss.features.calls.CallService` (``calls.external``
and the first dial-plan step); the B2BUA (:mod:`mss.sip.b2bua`) sees only callers, routings and
destinations, never lines or trunks.

**Callers from outside** (:meth:`ExternalCalls.caller`, asked before any user identification):

* a request from an enabled SIP trunk's address (``TrunkService.trunk_for_source``: host and
  port over UDP) is trusted without digest; the caller is the From user, and the dialled number
  goes through the dial plan (local users by default);
* a request from a line's provider — the address the line registers to (its proxy or
  registrar) *and* either the Request-URI user is the Contact user we registered or the source
  port is the provider's — is trusted too, and goes to the local user its called number maps
  to (``extra["numbers"]``, ``mss line set --number DID=USER``: the Request-URI user, else the
  To user), else to the line's ``owner``;
* every other source is not external: the B2BUA challenges it like any user, whatever its From
  user (nothing reveals which users exist).

The caller is a :class:`~mss.storage.base.UserRecord` made for the call with
``extra["external"] = "trunk:<id>"`` / ``"line:<id>"``; :meth:`admit` then counts the call on
the trunk's incoming set (over ``max_incoming`` → 503, a ``trunkWarning`` event) or on the
line (``max_calls``, both directions together → 503).

**Calls out** (:meth:`step`, the first dial-plan step): :meth:`DialPlanService.resolve` gives the
primary route and its fallbacks. A ``user`` step is the local-user step with the transformed
number; a ``line`` step sends the call to the line's target (its proxy / "Via" address when set,
else its domain, as resolved for its registration) with Request-URI ``sip:<number>@<domain>``,
From ``sip:<account>@<domain>``, To ``sip:<number>@<domain>``, the line's credentials for a
401/407 and its no-answer timer (0 = the system's); a ``trunk`` step sends it to the trunk's
address with the "unified caller number" as From user when set and the trunk's extra
Request-URI parameters. A route over its limit (trunk ``max_outgoing``, line ``max_calls``) is
skipped for the next one at once; when the B2BUA sees every leg of a route answer 5xx it calls
the routing's ``fallback``, which frees the route's count and routes to the next step.

**Counting** is exact: per trunk and direction the *set* of call ids (``TrunkService.admit`` /
``release``), per line a set of call ids; :meth:`release` (every way a call ends, through
``CallService.release``) frees whatever the call holds and is idempotent. Nothing survives a
restart: the sets live in memory and the B2BUA ends its calls when the server stops.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from ..storage.base import LineRecord, TrunkRecord, UserRecord
from .calls import CallService, Destination, Reject, RouteRequest, Routing
from .dialplan import DialPlanService, RouteStep
from .events import EventPublisher
from .lines import LineService, aor_domain, line_numbers, line_target
from .trunks import TrunkService, TrunkState, TrunkStatus

__all__ = ("ExternalCalls",)

log = logging.getLogger("mss.calls")

LineAddress = Callable[[LineRecord], "tuple[str, str, int] | None"]
LineForIncoming = Callable[[str | None, str, int], "LineRecord | None"]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _uri_user(value: str) -> str:
    """The user part of the SIP URI in a name-addr header value (``""`` when none)."""
    start = value.find("sip:")
    if start < 0:
        start = value.find("sips:")
        if start < 0:
            return ""
        start += 1
    rest = value[start + 4 :]
    at = rest.find("@")
    if at < 0 or any(c in rest[:at] for c in ">;"):
        return ""
    return rest[:at]


def _hp(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class ExternalCalls:
    """Lines and trunks for the call service (see the module docstring).

    Args:
        calls: the call service to plug into (:meth:`install`).
        dialplan: the live dial plan.
        lines: the external lines.
        trunks: the SIP trunks.
        line_address: ``(line) -> (transport, ip, port)`` where the line's requests go (its
            registration's resolved target), or None when unknown.
        line_for_incoming: ``(Request-URI user, source host, source port) -> line`` for a
            request from a line's provider, or None.
        events: where ``trunkWarning`` events go (the API's event hub).
    """

    def __init__(
        self,
        *,
        calls: CallService,
        dialplan: DialPlanService,
        lines: LineService,
        trunks: TrunkService,
        line_address: LineAddress | None = None,
        line_for_incoming: LineForIncoming | None = None,
        events: EventPublisher | None = None,
    ) -> None:
        self.calls = calls
        self.dialplan = dialplan
        self.lines = lines
        self.trunks = trunks
        self.line_address = line_address or self._static_line_address
        self.line_for_incoming = line_for_incoming
        self.events = events
        #: call id -> ("trunk"|"line", id) for calls from outside
        self._origin: dict[str, tuple[str, str]] = {}
        #: call id -> the holds it has: ("trunk", id, direction) / ("line", id, direction)
        self._holds: dict[str, list[tuple[str, str, str]]] = {}
        #: line id -> active call ids (both directions: ``max_calls`` counts them together)
        self._line_calls: dict[str, set[str]] = {}
        self.stats = {"in": 0, "out": 0, "limit": 0, "fallback": 0}

    def install(self) -> None:
        """Become ``calls.external`` and the first dial-plan step."""
        self.calls.external = self
        if self.step not in self.calls.steps:
            self.calls.steps.insert(0, self.step)
        if self._trunk_state not in self.trunks.listeners:
            self.trunks.listeners.append(self._trunk_state)

    def _trunk_state(self, status: TrunkStatus, previous: TrunkState) -> None:
        """A trunk went down (OPTIONS pings unanswered): a ``trunkWarning`` event."""
        if status.state == TrunkState.DOWN and self.events is not None:
            self.events.publish(
                {
                    "type": "trunkWarning",
                    "trunk": status.trunk,
                    "warning": "down",
                    "direction": "out",
                    "detail": status.reason,
                }
            )

    # -- callers from outside -----------------------------------------------------------------
    def caller(
        self, transport: str, host: str, port: int, ruri_user: str | None, from_user: str | None
    ) -> UserRecord | None:
        """The caller of a request from a trunk or a line's provider, else None."""
        trunk = self.trunks.trunk_for_source(host, port, transport)
        if trunk is not None:
            return self._outsider(from_user, f"trunk:{trunk.id}")
        if self.line_for_incoming is not None:
            line = self.line_for_incoming(ruri_user, host, port)
            if line is not None and line.enabled:
                return self._outsider(from_user, f"line:{line.id}")
        return None

    @staticmethod
    def _outsider(from_user: str | None, origin: str) -> UserRecord:
        return UserRecord(number=from_user or "anonymous", extra={"external": origin})

    def admit(self, caller: UserRecord, call_id: str) -> Reject | None:
        """Count an incoming call on its trunk or line; 503 over the limit."""
        origin = str(caller.extra.get("external", ""))
        kind, _, ident = origin.partition(":")
        if kind == "trunk":
            verdict = self.trunks.admit(ident, "in", call_id)
            if verdict is not None:
                self._limit_warning(ident, "in", verdict.reason)
                return Reject(verdict.sip_status, verdict.reason)
        elif kind == "line":
            line = self.lines.get(ident)
            if line is None:
                return Reject(503, f"Service Unavailable (line {ident} removed)")
            rejected = self._take_line(line, call_id, "in")
            if rejected is not None:
                return Reject(503, rejected)
        else:
            return Reject(500, "Server Internal Error (unknown external caller)")
        self._origin[call_id] = (kind, ident)
        self.stats["in"] += 1
        return None

    # -- counting -----------------------------------------------------------------------------
    def _take_line(self, line: LineRecord, call_id: str, direction: str) -> str | None:
        calls = self._line_calls.setdefault(line.id, set())
        if call_id in calls:
            return None
        if line.max_calls is not None and len(calls) >= line.max_calls:
            self.stats["limit"] += 1
            return f"Service Unavailable (line {line.id} call limit {line.max_calls} reached)"
        calls.add(call_id)
        self._holds.setdefault(call_id, []).append(("line", line.id, direction))
        return None

    def _take_trunk(self, trunk: TrunkRecord, call_id: str) -> str | None:
        verdict = self.trunks.admit(trunk.id, "out", call_id)
        if verdict is not None:
            self._limit_warning(trunk.id, "out", verdict.reason)
            return verdict.reason
        self._holds.setdefault(call_id, []).append(("trunk", trunk.id, "out"))
        return None

    def _free(self, call_id: str, hold: tuple[str, str, str]) -> None:
        kind, ident, direction = hold
        if kind == "trunk":
            self.trunks.release(ident, direction, call_id)  # type: ignore[arg-type]
        else:
            calls = self._line_calls.get(ident)
            if calls is not None:
                calls.discard(call_id)
                if not calls:
                    del self._line_calls[ident]

    def release(self, call_id: str) -> None:
        """Free everything a call holds on lines and trunks (idempotent)."""
        origin = self._origin.pop(call_id, None)
        if origin is not None and origin[0] == "trunk":
            self.trunks.release(origin[1], "in", call_id)
        for hold in self._holds.pop(call_id, ()):
            self._free(call_id, hold)

    def line_calls(self, line_id: str) -> int:
        """Active calls on a line (both directions)."""
        return len(self._line_calls.get(line_id, ()))

    def active(self) -> int:
        """Calls holding anything here (0 when every call has been released)."""
        return len(set(self._origin) | set(self._holds))

    def _limit_warning(self, trunk_id: str, direction: str, detail: str) -> None:
        self.stats["limit"] += 1
        log.warning(
            "trunk %s: %s",
            trunk_id,
            detail,
            extra={"trunk": trunk_id, "direction": direction, "warning": "limit"},
        )
        if self.events is not None:
            self.events.publish(
                {
                    "type": "trunkWarning",
                    "trunk": trunk_id,
                    "warning": "limit",
                    "direction": direction,
                    "detail": detail,
                }
            )

    # -- the dial-plan step -------------------------------------------------------------------
    def step(self, request: RouteRequest) -> Routing | None:
        """Dial-plan step: calls from a line go to its owner; others follow the dial plan."""
        if not request.hold:
            return None  # a pager-mode MESSAGE: local users only
        origin = self._origin.get(request.info.id)
        if origin is not None and origin[0] == "line":
            return self._to_owner(request, origin[1])
        steps = self.dialplan.resolve(request.number)
        source = f"{origin[0]}:{origin[1]}" if origin is not None else None
        return self._try(request, steps, 0, source, None)

    def _to_owner(self, request: RouteRequest, line_id: str) -> Routing:
        line = self.lines.get(line_id)
        owner = line.owner if line is not None else ""
        label = f"line:{line_id}"
        if line is not None:
            numbers = line_numbers(line)
            called = (request.number, _uri_user(request.info.header("To") or ""))
            owner = next((numbers[n] for n in called if n and n in numbers), owner)
        if not owner:
            return Routing(
                status=480,
                reason="Temporarily Unavailable (line has no owner)",
                callee=request.number,
                route=label,
                direction="inbound",
            )
        routed = self.calls.local_user_step(replace(request, number=owner))
        if routed is None:
            routed = Routing(
                status=404, reason="Not Found (the line's owner does not exist)", callee=owner
            )
        return replace(routed, route=label, direction="inbound")

    def _try(
        self,
        request: RouteRequest,
        steps: list[RouteStep],
        start: int,
        source: str | None,
        failed: Routing | None,
    ) -> Routing | None:
        """The first usable step from ``start``: its routing, with the rest as its fallback.

        ``source`` is the trunk a call came in from (``"trunk:carrier"``), None for a local
        caller: a call from a trunk to a local user is recorded as ``inbound`` on that trunk.
        """
        for i in range(start, len(steps)):
            step = steps[i]
            routed: Routing | None
            if step.kind == "user":
                # (the copies are made only when a field changes: the usual internal call,
                # a user dialled by number, routes the request and the routing as they are)
                ask = request if request.number == step.user else replace(request, number=step.user)
                routed = self.calls.local_user_step(ask)
                if routed is None:
                    if source is None and step.route is None and len(steps) == 1:
                        return None  # the implicit default: the local-user step answers 404
                    routed = Routing(status=404, reason="Not Found", callee=step.user)
                route = source or ""
                direction = "inbound" if source else "internal"
                if routed.route != route or routed.direction != direction:
                    routed = replace(routed, route=route, direction=direction)
            elif step.kind == "line":
                routed = self._line_routing(request, step)
            else:
                routed = self._trunk_routing(request, step)
            if routed.rejected and routed.status == 503 and i + 1 < len(steps):
                failed = routed  # over its limit (or unreachable): the fallback at once
                self.stats["fallback"] += 1
                continue
            if not routed.rejected and i + 1 < len(steps):
                routed = replace(
                    routed, fallback=partial(self._fallback, request, steps, i + 1, source)
                )
            return routed
        return failed

    def _fallback(
        self, request: RouteRequest, steps: list[RouteStep], start: int, source: str | None
    ) -> Routing | None:
        """The B2BUA gives up a route (every leg answered 5xx): free its holds, route onwards."""
        call_id = request.info.id
        keep = []
        for hold in self._holds.pop(call_id, ()):
            if hold[2] == "out":
                self._free(call_id, hold)
            else:
                keep.append(hold)
        if keep:
            self._holds[call_id] = keep
        self.stats["fallback"] += 1
        return self._try(request, steps, start, source, None)

    def _line_routing(self, request: RouteRequest, step: RouteStep) -> Routing:
        label = f"line:{step.target}"
        line = self.lines.get(step.target)
        if line is None or not line.enabled:
            return Routing(
                status=503,
                reason=f"Service Unavailable (line {step.target} not usable)",
                callee=step.number,
                route=label,
                direction="outbound",
            )
        address = self.line_address(line)
        if address is None:
            return Routing(
                status=503,
                reason=f"Service Unavailable (line {line.id} address not resolved)",
                callee=step.number,
                route=label,
                direction="outbound",
            )
        rejected = self._take_line(line, request.info.id, "out")
        if rejected is not None:
            return Routing(
                status=503, reason=rejected, callee=step.number, route=label, direction="outbound"
            )
        transport, host, port = address
        tparam = "" if transport == "udp" else f";transport={transport}"
        dest = Destination(
            uri=f"sip:{step.number}@{line.domain}{tparam}",
            transport=transport,
            host=host,
            port=port,
            label=f"{transport}:{_hp(host)}:{port}",
            credentials=label,
        )
        timeout = (
            line.no_answer_timeout if line.no_answer_timeout > 0 else self.calls.no_answer_timeout
        )
        self.stats["out"] += 1
        return Routing(
            callee=step.number,
            destinations=(dest,),
            no_answer_timeout=float(timeout),
            route=label,
            direction="outbound",
            from_user=line.account,
            domain=aor_domain(line),
        )

    def _trunk_routing(self, request: RouteRequest, step: RouteStep) -> Routing:
        label = f"trunk:{step.target}"
        trunk = self.trunks.get(step.target)
        if trunk is None or not trunk.enabled:
            return Routing(
                status=503,
                reason=f"Service Unavailable (trunk {step.target} not usable)",
                callee=step.number,
                route=label,
                direction="outbound",
            )
        host = self.trunk_address(trunk)
        if host is None:
            return Routing(
                status=503,
                reason=f"Service Unavailable (trunk {trunk.id} address not resolved)",
                callee=step.number,
                route=label,
                direction="outbound",
            )
        rejected = self._take_trunk(trunk, request.info.id)
        if rejected is not None:
            return Routing(
                status=503, reason=rejected, callee=step.number, route=label, direction="outbound"
            )
        transport = trunk.transport
        params = "" if transport == "udp" else f";transport={transport}"
        extra = trunk.uri_params.strip().strip(";")
        if extra:
            params += ";" + extra
        dest = Destination(
            uri=f"sip:{step.number}@{_hp(trunk.host)}:{trunk.port}{params}",
            transport=transport,
            host=host,
            port=trunk.port,
            label=f"{transport}:{_hp(host)}:{trunk.port}",
        )
        self.stats["out"] += 1
        return Routing(
            callee=step.number,
            destinations=(dest,),
            no_answer_timeout=float(self.calls.no_answer_timeout),
            route=label,
            direction="outbound",
            from_user=trunk.caller_number or None,
            domain=trunk.host,
        )

    # -- addresses ----------------------------------------------------------------------------
    @staticmethod
    def _static_line_address(line: LineRecord) -> tuple[str, str, int] | None:
        transport, host, port = line_target(line)
        return (transport, host, port) if _is_ip(host) else None

    def trunk_address(self, trunk: TrunkRecord) -> str | None:
        """The IP to send a trunk's calls to: its host, or what its name resolved to."""
        host = trunk.host.strip("[]")
        if _is_ip(host):
            return host
        found = self.trunks.addresses(trunk.id)
        return found[0] if found else None

    def snapshot(self) -> dict[str, Any]:
        """Active counts (API, tests)."""
        return {
            "lines": {k: len(v) for k, v in self._line_calls.items()},
            "external_calls": len(self._origin),
        }
