"""What the API is built from: the feature services and the live views the server injects.

The API is a thin translation from HTTP to feature services (house style): the same
:class:`~mss.features.users.UserDirectory`, :class:`~mss.features.location.LocationService`,
:class:`~mss.features.security.SecurityPolicy` and :class:`~mss.features.blacklist.SystemBlacklist`
the SIP side uses, so an API write applies to the running server at once. Live data from the SIP
side (counters, listeners, active calls) reaches the API only through the Protocols below, which
``mss.app`` satisfies with its own objects; ``mss.api`` never imports ``mss.sip`` or
``mss.transport``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..features.decisions import DecisionLog
from ..features.events import EventHub, UserStatusTracker
from ..features.location import LocationService
from ..features.tokens import TokenService
from ..features.users import UserDirectory
from ..storage.base import Storage

if TYPE_CHECKING:
    from ..features.blacklist import SystemBlacklist
    from ..features.lines import LineService
    from ..features.security import SecurityPolicy
    from ..features.trunks import TrunkService
    from ..features.voicemail import VoicemailService

__all__ = (
    "ActiveCallsView",
    "ApiServices",
    "CoreCounters",
    "HandlerTimingsView",
    "SystemInfoSource",
    "TransactionCounts",
    "TransportCounters",
)


class SystemInfoSource(Protocol):
    """The running server, as ``GET /system`` sees it (``mss.app.Server``)."""

    def system_info(self) -> Mapping[str, Any]:
        """``version``, ``uptime``, ``started_at``, ``listeners``, ``using_extensions``,
        ``event_loop`` (see :class:`~mss.api.schemas.SystemOut`)."""
        ...


class ActiveCallsView(Protocol):
    """The calls in progress (``mss.app`` adapts the B2BUA)."""

    def active_calls(self) -> Sequence[Mapping[str, Any]]:
        """One mapping per call: ``id``, ``caller``, ``callee``, ``state``, ``setup_at``,
        ``answer_at``, ``call_id``, ``caller_addr``."""
        ...

    def hangup_call(self, id: str, reason: str) -> bool:
        """Release call ``id`` from the server side (BYE both sides, or CANCEL + 480 with a
        Reason header); False when no such call is in progress."""
        ...


class HandlerTimingsView(Protocol):
    """Sampled handler durations (``mss.sip.core.HandlerTimings``)."""

    @property
    def BUCKETS(self) -> tuple[float, ...]: ...

    @property
    def counts(self) -> Mapping[str, Sequence[int]]: ...

    @property
    def sums(self) -> Mapping[str, float]: ...


class TransactionCounts(Protocol):
    """Open transactions (``fastsip.transaction.TransactionLayer``)."""

    @property
    def server_count(self) -> int: ...

    @property
    def client_count(self) -> int: ...


class CoreCounters(Protocol):
    """The SIP core's counters (``mss.sip.core.SipCore``); read by the metrics collector."""

    @property
    def stats(self) -> Mapping[str, int]: ...

    @property
    def requests_in(self) -> Mapping[str, int]: ...

    @property
    def requests_out(self) -> Mapping[str, int]: ...

    @property
    def responses_in(self) -> Mapping[int, int]: ...

    @property
    def responses_out(self) -> Mapping[int, int]: ...

    @property
    def timings(self) -> HandlerTimingsView: ...

    @property
    def layer(self) -> TransactionCounts: ...


class TransportCounters(Protocol):
    """The transports' counters (``mss.transport.base.TransportStats``)."""

    def as_dict(self) -> dict[str, int]: ...


class StatsSource(Protocol):
    """Anything with a ``stats`` dict of counters (registrar, authenticator, B2BUA...)."""

    @property
    def stats(self) -> Mapping[str, int]: ...


@dataclass
class ApiServices:
    """Everything the API routes use. ``None`` leaves the matching routes or metrics out.

    Attributes:
        storage: the storage (CDR queries, IP lists, blacklist records).
        users: the user directory (same validation as the CLI).
        location: the location service (registrations, forced unregistration).
        tokens: the API token service.
        hub: the event hub behind ``/events``.
        decisions: the decision ring buffer behind ``/explain``.
        status: publishes ``userStatus`` for API-made changes.
        system: ``GET /system``.
        security: bans and IP lists (the running security policy).
        blacklist: the running system blacklist (reloaded after API writes).
        calls: active calls (``GET /calls``, ``DELETE /calls/{id}``).
        lines, trunks: the external-line and trunk services (``/lines``, ``/trunks``,
            ``/routes``; states and call counts in ``/metrics``).
        core, transport: SIP counters for ``/metrics``.
        counters: named ``stats`` dicts for ``/metrics`` (``registrar``, ``auth``, ``calls``...).
        api_listen: the API's own ``host:port`` (shown by ``/system``).
        voicemail: the voicemail mailbox (``/voicemail``).
    """

    storage: Storage
    users: UserDirectory
    location: LocationService
    tokens: TokenService
    hub: EventHub
    decisions: DecisionLog
    status: UserStatusTracker | None = None
    system: SystemInfoSource | None = None
    security: SecurityPolicy | None = None
    blacklist: SystemBlacklist | None = None
    calls: ActiveCallsView | None = None
    lines: LineService | None = None
    trunks: TrunkService | None = None
    core: CoreCounters | None = None
    transport: TransportCounters | None = None
    counters: Mapping[str, StatsSource] | None = None
    api_listen: str = ""
    voicemail: VoicemailService | None = None
