"""The event hub behind the ``/events`` WebSocket (issue 8), and the publishers the server wires.

Theory of operation
-------------------
:class:`EventHub` fans JSON-ready dicts out to subscribers. ``publish(event)`` runs on the event
loop thread, never blocks and never awaits: it stamps ``at`` (epoch seconds) when missing and
appends the event to each interested subscriber's bounded queue. A subscriber whose queue is full
is a slow consumer: it is closed (reason ``"slow consumer"``) and removed, so one stuck WebSocket
client never holds memory or slows the SIP side. Subscribers read with ``await sub.get()``, which
returns ``None`` once the subscription is closed.

Event types and their JSON shapes are documented in ``docs/api.md``:

* ``userStatus`` — :class:`UserStatusTracker` publishes ``online`` / ``offline`` with the address
  when the registrar commits a changed binding set (``Registrar.on_change``), when the location
  sweep drops expired bindings, and when the API removes registrations or a user;
* ``securityEvent`` — :class:`SecurityLogBridge` turns the security feature's structured log
  records (logger ``mss.security``, records carrying ``event``: ``ban``, ``unban``,
  ``drop_summary``, ``call_blocked``) into events and into :class:`~.decisions.DecisionLog`
  entries, until the security feature publishes itself;
* ``callStatus`` — the B2BUA publishes ``setup`` (INVITE accepted for routing), ``alerting``
  (first 180/183), ``answered`` (first 2xx) and ``released`` (every way a call ends, with the
  final status, cause, reason, who hung up and the CDR result), built by
  :func:`call_status_event` from the call's record;
* ``lineStatus``, ``trunkWarning`` — the line and trunk features publish them with
  ``hub.publish({"type": "lineStatus", ...})`` (the server hands them the hub).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..storage.base import BindingRecord
from .cdr import CallLog
from .decisions import DecisionSink, normalise_ip

__all__ = (
    "CALL_STATES",
    "EVENT_TYPES",
    "EventHub",
    "EventPublisher",
    "SecurityLogBridge",
    "Subscription",
    "UserStatusTracker",
    "call_status_event",
)

log = logging.getLogger("mss.events")

#: The event types of the ``/events`` channel.
EVENT_TYPES = ("userStatus", "callStatus", "lineStatus", "trunkWarning", "securityEvent")


class EventPublisher(Protocol):
    """What features publish to (an :class:`EventHub`)."""

    def publish(self, event: dict[str, Any]) -> int: ...

    def publish_built(self, kind: str, build: Callable[..., dict[str, Any]], *args: Any) -> int: ...


class Subscription:
    """One subscriber's bounded queue of events."""

    __slots__ = ("_hub", "_queue", "_ready", "closed", "maxsize", "reason", "types")

    def __init__(self, hub: EventHub, maxsize: int, types: frozenset[str] | None) -> None:
        self._hub = hub
        self._queue: deque[dict[str, Any]] = deque()
        self._ready: asyncio.Event | None = None
        self.maxsize = maxsize
        self.types = types
        self.closed = False
        self.reason = ""

    def __len__(self) -> int:
        return len(self._queue)

    def _offer(self, event: dict[str, Any]) -> bool:
        if len(self._queue) >= self.maxsize:
            return False
        self._queue.append(event)
        if self._ready is not None:
            self._ready.set()
        return True

    async def get(self) -> dict[str, Any] | None:
        """The next event; ``None`` once closed (queued events are delivered first)."""
        while True:
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                return None
            if self._ready is None:
                self._ready = asyncio.Event()
            self._ready.clear()
            await self._ready.wait()

    def close(self, reason: str = "closed") -> None:
        """Stop receiving; a waiting :meth:`get` returns ``None`` after the queued events."""
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._hub._remove(self)
        if self._ready is not None:
            self._ready.set()


class EventHub:
    """Publish/subscribe with bounded per-subscriber queues (slow consumers are dropped).

    Args:
        queue_size: events a subscriber may have waiting before it is dropped.
        max_subscribers: subscriptions allowed at once (more raise ``OverflowError``).
        wall: wall-clock time for ``at``.
    """

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        max_subscribers: int = 100,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self._wall = wall
        self._subs: list[Subscription] = []
        self.stats = {"published": 0, "delivered": 0, "slow_consumers": 0}

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(
        self, types: Iterable[str] | None = None, *, queue_size: int | None = None
    ) -> Subscription:
        """A new subscription to every event, or only to ``types``.

        Raises:
            OverflowError: ``max_subscribers`` subscriptions exist already.
        """
        if len(self._subs) >= self.max_subscribers:
            raise OverflowError(f"at most {self.max_subscribers} event subscribers")
        sub = Subscription(
            self, queue_size or self.queue_size, None if types is None else frozenset(types)
        )
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    def publish(self, event: dict[str, Any]) -> int:
        """Deliver ``event`` (a dict with ``type``) to the subscribers; returns how many got it.

        Never blocks. ``at`` is added when missing. A subscriber with a full queue is closed.
        """
        if "at" not in event:
            event["at"] = round(self._wall(), 3)
        self.stats["published"] += 1
        if not self._subs:
            return 0
        kind = event.get("type")
        n = 0
        for sub in list(self._subs):
            if sub.types is not None and kind not in sub.types:
                continue
            if sub._offer(event):
                n += 1
            else:
                self.stats["slow_consumers"] += 1
                log.warning("event subscriber dropped: %d events waiting", len(sub))
                sub.close("slow consumer")
        self.stats["delivered"] += n
        return n

    def publish_built(self, kind: str, build: Callable[..., dict[str, Any]], *args: Any) -> int:
        """:meth:`publish` ``build(*args)``, an event of type ``kind``, if anyone would get it.

        For events published on every call: when no subscriber takes ``kind`` (the usual
        case, nobody on ``/events``) the event is not built, only counted as published, which
        is all :meth:`publish` would have done with it.
        """
        for sub in self._subs:
            if sub.types is None or kind in sub.types:
                return self.publish(build(*args))
        self.stats["published"] += 1
        return 0

    def close(self) -> None:
        """Close every subscription (server stop)."""
        for sub in list(self._subs):
            sub.close("server stopping")


# --------------------------------------------------------------------------------------------
# userStatus
# --------------------------------------------------------------------------------------------


def _split_source(source: str) -> tuple[str, str]:
    """``"udp:1.2.3.4:5060"`` → ``("udp", "1.2.3.4:5060")``."""
    transport, sep, rest = source.partition(":")
    return (transport, rest) if sep else ("", source)


class UserStatusTracker:
    """Publishes ``userStatus`` when a user's set of live contacts changes.

    Registration refreshes that change nothing publish nothing. Offline is published when the last
    binding goes (unregister, expiry found by the sweep, forced removal).

    Args:
        hub: where to publish.
        wall: wall-clock time (binding expiries are wall-clock).
    """

    def __init__(self, hub: EventPublisher, *, wall: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.wall = wall
        self._last: dict[str, tuple[tuple[str, str], ...]] = {}

    @staticmethod
    def _key(bindings: Sequence[BindingRecord]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((b.contact, b.source) for b in bindings))

    def seed(self, live: Mapping[str, Sequence[BindingRecord]]) -> None:
        """Start from the bindings loaded at start-up (no events for them)."""
        self._last = {aor: self._key(bs) for aor, bs in live.items() if bs}

    def bindings_changed(
        self, number: str, bindings: Sequence[BindingRecord], *, reason: str = "register"
    ) -> None:
        """The live binding set of ``number`` is now ``bindings`` (registrar commit, API...)."""
        now = self.wall()
        live = [b for b in bindings if b.expires_at > now]
        key = self._key(live)
        old = self._last.get(number)
        if old == key or (old is None and not key):
            return
        if key:
            self._last[number] = key
        else:
            self._last.pop(number, None)
            if reason == "register":
                reason = "unregister"
        self.hub.publish(self.event(number, live, now, reason=reason))

    def expired(self, number: str, live: Sequence[BindingRecord]) -> None:
        """The location sweep dropped expired bindings of ``number``; ``live`` are left."""
        self.bindings_changed(number, live, reason="expired")

    def event(
        self, number: str, live: Sequence[BindingRecord], now: float, *, reason: str
    ) -> dict[str, Any]:
        best = max(live, key=lambda b: b.registered_at) if live else None
        transport, address = _split_source(best.source) if best is not None else ("", "")
        return {
            "type": "userStatus",
            "number": number,
            "status": "online" if live else "offline",
            "reason": reason,
            "address": address,
            "transport": transport,
            "contacts": [
                {
                    "contact": b.contact,
                    "source": b.source,
                    "expires_in": max(0, int(b.expires_at - now)),
                    "user_agent": b.user_agent,
                }
                for b in live
            ],
            "at": round(now, 3),
        }


# --------------------------------------------------------------------------------------------
# callStatus
# --------------------------------------------------------------------------------------------

#: the states of a ``callStatus`` event, in the order a call goes through them
CALL_STATES = ("setup", "alerting", "answered", "released")


def call_status_event(state: str, call: CallLog) -> dict[str, Any]:
    """The ``callStatus`` event of a call entering ``state`` (one of :data:`CALL_STATES`).

    Times are epoch seconds (None until reached); ``status`` is the final SIP status sent to the
    caller (200 once answered), ``cause`` / ``reason`` the release cause (a received ``Reason``
    header, else ours), ``hangup`` who ended it and ``result`` the CDR result — the last ones are
    set in ``released`` only.
    """
    released = state == "released"
    return {
        "type": "callStatus",
        "state": state,
        "id": call.id,
        "call_id": call.call_id,
        "caller": call.caller,
        "dialed": call.dialed,
        "callee": call.callee or call.dialed,
        "caller_addr": call.caller_addr,
        "callee_addr": call.callee_addr,
        "direction": call.direction,
        "route": call.route,
        "setup_at": call.setup_at,
        "ring_at": call.ring_at,
        "answer_at": call.answer_at,
        "end_at": call.end_at if released else None,
        "duration": call.duration if released else 0.0,
        "status": call.status,
        "cause": call.cause,
        "reason": call.reason,
        "hangup": call.hangup if released else "",
        "result": call.result if released else None,
    }


# --------------------------------------------------------------------------------------------
# securityEvent (bridge from the security feature's structured log records)
# --------------------------------------------------------------------------------------------

#: LogRecord attributes that are not event fields.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "event", "color_message", "taskName"}
)


def _host_of(source: str) -> str:
    """The host of ``"udp:1.2.3.4:5060"``, ``"1.2.3.4:5060"``, ``"[::1]:5060"`` or an IP."""
    text = source
    if text.count(":") >= 2 and text.split(":", 1)[0] in ("udp", "tcp", "tls", "ws", "wss"):
        text = text.split(":", 1)[1]
    if text.startswith("["):
        return normalise_ip(text[1 : text.find("]")])
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return normalise_ip(text)


class SecurityLogBridge(logging.Handler):
    """Turns ``mss.security`` records that carry ``event`` into events and decisions.

    The security feature documents its events as structured log records (``ban``, ``unban``,
    ``drop_summary``, ``call_blocked``); this handler, attached to logger ``mss.security`` by the
    server, republishes them as ``securityEvent`` on the hub and records the rejecting ones in the
    decision log. Records below the logger's level never reach it (``drop_summary`` and ``unban``
    are INFO).

    Args:
        hub: where ``securityEvent`` goes.
        decisions: where ban / black-list / blacklist decisions go (optional).
    """

    def __init__(self, hub: EventPublisher, decisions: DecisionSink | None = None) -> None:
        super().__init__(logging.NOTSET)
        self.hub = hub
        self.decisions = decisions

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "event", None)
        if not isinstance(kind, str):
            return
        try:
            fields = {
                k: v
                for k, v in record.__dict__.items()
                if k not in _RECORD_ATTRS and not k.startswith("_")
            }
            event: dict[str, Any] = {"type": "securityEvent", "event": kind, **fields}
            event["message"] = record.getMessage()
            event["at"] = round(record.created, 3)
            self.hub.publish(event)
            if self.decisions is not None:
                self._decide(kind, fields, record)
        except Exception:  # a broken event must never break the security feature
            log.exception("security event bridge failed")

    def _decide(self, kind: str, f: dict[str, Any], record: logging.LogRecord) -> None:
        at = record.created
        rec = self.decisions
        assert rec is not None
        if kind == "ban":
            ip = normalise_ip(str(f.get("ip", "")))
            rule = str(f.get("reason") or "operator ban")
            until = f.get("until")
            detail = f"banned ({f.get('origin', '')})" + (
                f" until {until}" if until else " until lifted"
            )
            users = [str(u) for u in f.get("users") or []] or [""]
            for user in dict.fromkeys(users):
                rec.record("ban", ip, user, rule, detail, at)
        elif kind == "drop_summary" and f.get("ip"):
            why = str(f.get("why", "banned"))
            dropped = f.get("dropped", 0)
            period = f.get("period", 0)
            if why == "black list":
                rec.record(
                    "black_list",
                    normalise_ip(str(f["ip"])),
                    "",
                    "IP black list",
                    f"dropped {dropped} packets in {period} s",
                    at,
                )
            else:
                rec.record(
                    "ban",
                    normalise_ip(str(f["ip"])),
                    "",
                    "active ban",
                    f"dropped {dropped} packets in {period} s",
                    at,
                )
        elif kind == "call_blocked":
            matched: dict[str, Any] = f.get("rule") or {}
            text = (
                f"system blacklist caller {matched.get('caller', '?')} "
                f"called {matched.get('called', '?')} rate {matched.get('rate', '?')}"
            )
            if matched.get("description"):
                text += f" ({matched['description']})"
            detail = f"call to {f.get('called', '')} blocked with {f.get('status', 403)}"
            rec.record(
                "blacklist",
                _host_of(str(f.get("source", ""))),
                str(f.get("caller", "")),
                text,
                detail,
                at,
            )
