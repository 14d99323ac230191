"""SIP trunks: peers trusted by address, their up/down state and their concurrent-call counts.

Theory of operation
-------------------
A SIP trunk (:class:`~mss.storage.base.TrunkRecord`, ``mss trunk add|set|del|list``) is a peer
(a provider's SBC, another PBX) that is trusted by its address instead of digest credentials
(miniSIPServer "SIP trunk"). :class:`TrunkService` keeps the trunks in memory and answers:

* :meth:`TrunkService.trunk_for_source` — is this request from a trunk? Over UDP the source
  must be the trunk's host *and* port; over TCP/TLS the source port of a connection is
  ephemeral, so the host alone identifies a trunk whose transport is ``tcp``/``tls``. A trunk
  configured by name matches the addresses the SIP side resolved for it
  (:meth:`TrunkService.set_addresses`). Only enabled trunks match. Every other source is a
  user and is challenged as one (the B2BUA's job): nothing here reveals whether users exist.
* the up/down state from OPTIONS pings (the SIP side, :mod:`mss.sip.trunks`, sends them and
  reports :meth:`TrunkService.ping_result`): ``unknown`` until the first answer, ``up`` when
  the peer answers anything (any final status: it is alive), ``down`` after
  ``[trunks] ping_failures`` pings in a row got no answer (timeout or transport failure),
  ``disabled`` for a disabled trunk or one with pings off. Every change is logged (logger
  ``mss.trunks``) and published as ``trunk.status.<id>`` in the kv store for ``mss trunk list``.
* the concurrent-call limits (used by :mod:`mss.features.external`): :meth:`TrunkService.admit` /
  :meth:`TrunkService.release` keep the *set* of active call ids per trunk and direction, so a
  count can never go negative or leak through a double release: a call id is counted once,
  released once, and :meth:`TrunkService.clear_calls` empties everything (restart).
  ``max_incoming`` / ``max_outgoing``: None = unlimited, 0 = that direction disabled, N = cap;
  over the cap :meth:`admit` returns a :class:`~mss.errors.PolicyRejection` with 503.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..config import TrunksConfig
from ..errors import PolicyRejection
from ..storage.base import Storage, TrunkRecord
from ._status import StatusPublisher, read_statuses
from .lines import parse_hostport

__all__ = (
    "STATUS_KEY",
    "Direction",
    "TrunkService",
    "TrunkState",
    "TrunkStatus",
    "check_trunk",
    "published_statuses",
)

log = logging.getLogger("mss.trunks")

STATUS_KEY = "trunk.status."
Direction = Literal["in", "out"]
_STREAMS = ("tcp", "tls")


class TrunkState(str, enum.Enum):
    """A trunk's reachability, from OPTIONS pings."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"
    DISABLED = "disabled"


@dataclass(slots=True)
class TrunkStatus:
    """The reachability of one trunk.

    Attributes:
        trunk: the trunk id.
        state: see :class:`TrunkState`.
        since: when the state was entered (wall clock).
        last_ping: when the last ping ended (wall clock).
        status: the last status received (None: no answer).
        reason: the last outcome, as text.
        rtt: seconds between the last OPTIONS and its answer.
        failures: failed pings in a row.
    """

    trunk: str
    state: TrunkState = TrunkState.UNKNOWN
    since: float = 0.0
    last_ping: float | None = None
    status: int | None = None
    reason: str = ""
    rtt: float | None = None
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "trunk": self.trunk,
            "state": self.state.value,
            "since": self.since,
            "last_ping": self.last_ping,
            "status": self.status,
            "reason": self.reason,
            "rtt": self.rtt,
            "failures": self.failures,
        }


def check_trunk(trunk: TrunkRecord) -> None:
    """Validate what the storage does not.

    Raises:
        ValueError: naming the field.
    """
    host = trunk.host
    try:
        if ":" in host:  # an IPv6 literal, stored without brackets
            ipaddress.IPv6Address(host)
        else:
            parse_hostport(host)
    except ValueError as exc:
        raise ValueError(f"host: {exc}") from None
    if trunk.caller_number and any(c.isspace() or c in "@:;<>" for c in trunk.caller_number):
        raise ValueError(f"caller_number: not a number: {trunk.caller_number!r}")
    if trunk.uri_params:
        for part in trunk.uri_params.split(";"):
            name = part.partition("=")[0]
            if not name or any(c.isspace() or c in '<>?@:"' for c in part):
                raise ValueError(f"uri_params: not 'name[=value];...': {trunk.uri_params!r}")


class TrunkService:
    """The trunks, their reachability and their active calls.

    Args:
        storage: where the trunks are kept.
        config: the ``[trunks]`` settings.
        wall: wall-clock time.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        config: TrunksConfig | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.config = config or TrunksConfig()
        self.wall = wall
        self._trunks: dict[str, TrunkRecord] = {}
        self._status: dict[str, TrunkStatus] = {}
        self._resolved: dict[str, tuple[str, ...]] = {}
        self._by_addr: dict[tuple[str, int], str] = {}
        self._by_host: dict[str, str] = {}
        self._calls: dict[tuple[str, str], set[str]] = {}
        self._published = StatusPublisher(storage, STATUS_KEY, "trunk", self._status.get, log)
        #: called as ``listener(status, previous_state)`` on every up/down change
        self.listeners: list[Callable[[TrunkStatus, TrunkState], None]] = []

    # -- loading ----------------------------------------------------------------------------
    async def load(self) -> None:
        self._trunks = {t.id: t for t in await self.storage.trunks.list()}
        for trunk in self._trunks.values():
            self._status.setdefault(trunk.id, self._new_status(trunk))
        self._index()

    async def reload(
        self, ids: Iterable[str]
    ) -> list[tuple[TrunkRecord | None, TrunkRecord | None]]:
        """Re-read the given trunks; returns ``(old, new)`` for each one that changed."""
        changed: list[tuple[TrunkRecord | None, TrunkRecord | None]] = []
        for trunk_id in sorted(set(ids)):
            new = await self.storage.trunks.get(trunk_id)
            old = self._trunks.get(trunk_id)
            if new is None:
                self._trunks.pop(trunk_id, None)
                self._status.pop(trunk_id, None)
                self._resolved.pop(trunk_id, None)
                self._publish(trunk_id)
            else:
                self._trunks[trunk_id] = new
                if old is None or (old.host, old.port) != (new.host, new.port):
                    self._resolved.pop(trunk_id, None)
                st = self._status.get(trunk_id)
                if (
                    st is None
                    or not self._pingable(new)
                    or (old is not None and not self._pingable(old))
                ):
                    self._status[trunk_id] = self._new_status(new)
                    self._publish(trunk_id)
            if old != new:
                changed.append((old, new))
        self._index()
        return changed

    async def reload_all(self) -> list[tuple[TrunkRecord | None, TrunkRecord | None]]:
        ids = set(self._trunks) | {t.id for t in await self.storage.trunks.list()}
        return await self.reload(ids)

    @staticmethod
    def _pingable(trunk: TrunkRecord) -> bool:
        return trunk.enabled and trunk.ping

    def _new_status(self, trunk: TrunkRecord) -> TrunkStatus:
        state = TrunkState.UNKNOWN if self._pingable(trunk) else TrunkState.DISABLED
        reason = (
            ""
            if state == TrunkState.UNKNOWN
            else ("disabled" if not trunk.enabled else "pings off")
        )
        return TrunkStatus(trunk.id, state, since=self.wall(), reason=reason)

    def _index(self) -> None:
        by_addr: dict[tuple[str, int], str] = {}
        by_host: dict[str, str] = {}
        for trunk in sorted(self._trunks.values(), key=lambda t: t.id):
            if not trunk.enabled:
                continue
            host = trunk.host.strip("[]").lower()
            for addr in (host, *self._resolved.get(trunk.id, ())):
                by_addr.setdefault((addr, trunk.port), trunk.id)
                if trunk.transport in _STREAMS:
                    by_host.setdefault(addr, trunk.id)
        self._by_addr = by_addr
        self._by_host = by_host

    def set_addresses(self, trunk_id: str, addresses: Iterable[str]) -> None:
        """The addresses the SIP side resolved a trunk's host name to."""
        found = tuple(sorted({a.lower() for a in addresses}))
        if self._resolved.get(trunk_id) != found:
            self._resolved[trunk_id] = found
            self._index()

    # -- queries ----------------------------------------------------------------------------
    def trunks(self) -> list[TrunkRecord]:
        return [self._trunks[k] for k in sorted(self._trunks)]

    def get(self, trunk_id: str) -> TrunkRecord | None:
        return self._trunks.get(trunk_id)

    def enabled_ids(self) -> list[str]:
        return [t.id for t in self.trunks() if t.enabled]

    def trunk_for_source(self, host: str, port: int, transport: str = "udp") -> TrunkRecord | None:
        """The enabled trunk a request from ``transport:host:port`` comes from, or None.

        UDP: host and port must match. TCP/TLS: the host of a trunk whose transport is tcp or
        tls is enough (connections come from ephemeral ports); host and port match as well.
        """
        host = host.lower()
        trunk_id = self._by_addr.get((host, port))
        if trunk_id is None and transport in _STREAMS:
            trunk_id = self._by_host.get(host)
        return None if trunk_id is None else self._trunks.get(trunk_id)

    def addresses(self, trunk_id: str) -> tuple[str, ...]:
        """The addresses a trunk's host name resolved to (empty for an IP or not yet resolved)."""
        return self._resolved.get(trunk_id, ())

    def status(self, trunk_id: str) -> TrunkStatus | None:
        return self._status.get(trunk_id)

    def statuses(self) -> list[dict[str, Any]]:
        return [self._status[k].as_dict() for k in sorted(self._status) if k in self._trunks]

    def is_up(self, trunk_id: str) -> bool:
        """False only for a trunk known to be down (unknown and disabled pings count as up)."""
        st = self._status.get(trunk_id)
        return st is None or st.state != TrunkState.DOWN

    # -- pings (called by the SIP side) -----------------------------------------------------
    def ping_result(
        self, trunk_id: str, *, ok: bool, status: int | None, reason: str, rtt: float | None = None
    ) -> TrunkStatus | None:
        """Record the outcome of one OPTIONS ping."""
        trunk = self._trunks.get(trunk_id)
        if trunk is None:
            return None
        st = self._status.get(trunk_id)
        if st is None:
            st = self._status[trunk_id] = self._new_status(trunk)
        now = self.wall()
        st.last_ping = now
        st.status = status
        st.reason = reason
        st.rtt = rtt if ok else None
        if ok:
            st.failures = 0
            new = TrunkState.UP
        else:
            st.failures += 1
            new = TrunkState.DOWN if st.failures >= self.config.ping_failures else st.state
        if new != st.state:
            old = st.state
            st.state = new
            st.since = now
            log.log(
                logging.WARNING if new == TrunkState.DOWN else logging.INFO,
                "trunk %s %s: %s",
                trunk_id,
                new.value,
                reason,
                extra={
                    "trunk": trunk_id,
                    "state": new.value,
                    "previous": old.value,
                    "status": status,
                    "reason": reason,
                },
            )
            for listener in list(self.listeners):
                try:
                    listener(st, old)
                except Exception:
                    log.exception("trunk state listener failed")
        self._publish(trunk_id)
        return st

    # -- call limits (for the B2BUA) --------------------------------------------------------
    @staticmethod
    def limit(trunk: TrunkRecord, direction: Direction) -> int | None:
        """The cap of ``direction``: None = unlimited, 0 = disabled."""
        return trunk.max_incoming if direction == "in" else trunk.max_outgoing

    def active(self, trunk_id: str, direction: Direction) -> int:
        """Calls counted on the trunk in ``direction``."""
        return len(self._calls.get((trunk_id, direction), ()))

    def admit(self, trunk_id: str, direction: Direction, call_id: str) -> PolicyRejection | None:
        """Count a new call on a trunk, or say why not (503, never counted).

        Idempotent: admitting a call id already counted admits it again without counting it
        twice.
        """
        trunk = self._trunks.get(trunk_id)
        if trunk is None:
            return PolicyRejection(503, "Service Unavailable (trunk removed)")
        calls = self._calls.setdefault((trunk_id, direction), set())
        if call_id in calls:
            return None
        cap = self.limit(trunk, direction)
        word = "incoming" if direction == "in" else "outgoing"
        if cap == 0:
            return PolicyRejection(
                503, f"Service Unavailable ({word} calls disabled on trunk {trunk_id})"
            )
        if cap is not None and len(calls) >= cap:
            return PolicyRejection(
                503, f"Service Unavailable (trunk {trunk_id} {word} call limit {cap} reached)"
            )
        calls.add(call_id)
        return None

    def release(self, trunk_id: str, direction: Direction, call_id: str) -> bool:
        """Forget a call (final non-2xx, CANCEL, BYE, timeout). False: it was not counted."""
        calls = self._calls.get((trunk_id, direction))
        if not calls or call_id not in calls:
            return False
        calls.discard(call_id)
        return True

    def clear_calls(self) -> None:
        """Forget every counted call (server restart)."""
        self._calls.clear()

    # -- publishing -------------------------------------------------------------------------
    def _publish(self, trunk_id: str) -> None:
        self._published.mark(trunk_id)

    async def stop(self) -> None:
        """Write the last states out."""
        await self._published.stop()


async def published_statuses(storage: Storage, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The states a running server published for these trunks (for ``mss trunk list``)."""
    return await read_statuses(storage, STATUS_KEY, ids)
