"""External lines: the policy and state of our registrations to providers (MSS "external lines").

Theory of operation
-------------------
An external line is an account at a VoIP provider or an IMS network (a :class:`LineRecord` in
storage). The SIP mechanics of registering it live in :mod:`mss.sip.lines`; this module owns
what does not need SIP:

* **Configuration semantics.** :func:`auth_username` (the account, an explicit name, or
  ``account@domain`` when "the authorization ID includes address information" is set, as China
  Telecom's IMS requires), :func:`line_target` (the "Via" address: packets go to the outbound
  proxy when one is set, while the Request-URI, To and From keep the possibly unreachable
  domain), :func:`uses_new_call_id` (the REGISTER Call-ID policy: the line's own setting, else
  the global default read from miniSIPServer's ``mss_var_param.ini``, else RFC 3261 §10.2.4's
  one Call-ID with CSeq + 1).
* **Timing.** :func:`refresh_delay` (refresh before expiry: at ``refresh_ratio`` of the granted
  time, and at least a few seconds early) and :func:`retry_delay` (exponential backoff,
  ``retry_min`` doubling up to ``retry_max``; a Retry-After from the provider is honoured).
* **State.** :class:`LineService` keeps, per line, a :class:`LineStatus` (``unregistered`` /
  ``registering`` / ``registered`` / ``failed``, last status and reason, next retry, registered
  until) and a bounded history of :class:`LineEvent`. Every state change is logged (logger
  ``mss.lines``, the fields as JSON-log extras) and published to the storage key-value store as
  ``line.status.<id>`` so that ``mss line list`` in another process shows it.

Invariants
----------
* A line is never silently idle: an enabled line with ``register`` on is ``registering``,
  ``registered``, or ``failed`` with a ``next_retry`` time; otherwise it is ``unregistered``
  with the reason (disabled, register off, deleted, server stopping).
* Refreshes of a registered line do not add history entries (the state does not change); a
  failed refresh does (``registered`` → ``failed``).
* The history of a line holds at most ``history`` entries, oldest dropped first.

This module does no I/O besides storage: no sockets, no SIP.
"""

from __future__ import annotations

import configparser
import enum
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LinesConfig
from ..storage.base import LineRecord, Storage
from ._status import StatusPublisher, read_statuses

__all__ = (
    "MSS_VAR_PARAM_FILE",
    "LineEvent",
    "LineService",
    "LineState",
    "LineStatus",
    "aor_domain",
    "auth_username",
    "line_numbers",
    "line_target",
    "parse_hostport",
    "read_reg_same_dialog",
    "refresh_delay",
    "retry_delay",
    "uses_new_call_id",
)

log = logging.getLogger("mss.lines")

#: miniSIPServer's parameter file, read from the data dir when present.
MSS_VAR_PARAM_FILE = "mss_var_param.ini"
#: kv key prefixes: the published state of a line, and "register now" requests from the CLI.
STATUS_KEY = "line.status."
REGISTER_NOW_KEY = "line.register_now."

_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


class LineState(str, enum.Enum):
    """Where a line's registration stands."""

    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LineEvent:
    """One state change of a line (wall-clock times)."""

    at: float
    state: LineState
    status: int | None = None
    reason: str = ""
    next_retry: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "state": self.state.value,
            "status": self.status,
            "reason": self.reason,
            "next_retry": self.next_retry,
        }


@dataclass(slots=True)
class LineStatus:
    """The current registration state of one line.

    Attributes:
        line: the line id.
        state: see :class:`LineState`.
        since: when the state was entered (wall clock).
        status: the last final status received (or generated locally: 408 timeout, 503
            transport failure); None before any.
        reason: why the line is in this state (the status line and any ``P-Registrar-Error``
            / ``Warning`` text, "disabled", "cannot resolve ..."...).
        next_retry: wall-clock time of the next attempt after a failure.
        registered_until: wall-clock expiry of the registration the provider granted.
        expires: the expiry the provider granted, seconds.
        failures: failed attempts in a row.
        last_success: wall-clock time of the last 2xx.
        call_id: the Call-ID of the last REGISTER.
    """

    line: str
    state: LineState = LineState.UNREGISTERED
    since: float = 0.0
    status: int | None = None
    reason: str = ""
    next_retry: float | None = None
    registered_until: float | None = None
    expires: int | None = None
    failures: int = 0
    last_success: float | None = None
    call_id: str = ""
    history: deque[LineEvent] = field(default_factory=deque)

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "state": self.state.value,
            "since": self.since,
            "status": self.status,
            "reason": self.reason,
            "next_retry": self.next_retry,
            "registered_until": self.registered_until,
            "expires": self.expires,
            "failures": self.failures,
            "last_success": self.last_success,
            "call_id": self.call_id,
        }


# -- configuration semantics ----------------------------------------------------------------


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.

    Args:
        text: the address as the operator wrote it.
        default_port: the port when none is written.

    Returns:
        ``(host, port)``; the host without brackets, lower case.

    Raises:
        ValueError: empty host, bad port, or an IPv6 address without brackets.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"junk after ']' in {text!r}")
        port_text = rest[1:] if rest else ""
        ipaddress.IPv6Address(host)
    else:
        if text.count(":") > 1:
            raise ValueError(f"an IPv6 address must be in brackets, as in [::1]:5060: {text!r}")
        host, _, port_text = text.partition(":")
        if not host:
            raise ValueError(f"empty host in {text!r}")
        if any(c.isspace() or c in "@;<>/?" for c in host):
            raise ValueError(f"not a host name: {host!r}")
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"bad port {port_text!r}")
        return host.lower(), int(port_text)
    return host.lower(), default_port


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def aor_domain(line: LineRecord) -> str:
    """The domain as written in the line's AOR (To/From), without a port."""
    host, _ = parse_hostport(line.domain)
    return _uri_host(host)


def request_uri(line: LineRecord) -> str:
    """The REGISTER Request-URI: ``sip:`` + the domain as configured (port included)."""
    host, port = parse_hostport(line.domain)
    scheme = "sips" if line.transport == "tls" else "sip"
    return f"{scheme}:{_uri_host(host)}" + (f":{port}" if port is not None else "")


def auth_username(line: LineRecord) -> str:
    """The authorization user name (RFC 3261 §22.4 ``username``) the line answers with.

    ``auth_user`` when set, else the account; with ``auth_with_domain`` and no ``@`` in it yet,
    ``name@domain`` (the IMS form, "the authorization ID should include address information").
    """
    name = line.auth_user or line.account
    if line.auth_with_domain and "@" not in name:
        name = f"{name}@{aor_domain(line)}"
    return name


def line_target(line: LineRecord) -> tuple[str, str, int]:
    """Where the line's requests go: ``(transport, host, port)``.

    The outbound proxy ("Via" address) when set, else the domain; the port defaults to 5060
    (5061 for TLS). RFC 3263 DNS SRV/NAPTR lookups are not done: a name is resolved to an
    address (A/AAAA) by the SIP side.
    """
    default = _DEFAULT_PORTS.get(line.transport, 5060)
    host, port = parse_hostport(line.proxy or line.domain, default)
    assert port is not None
    return line.transport, host, port


def read_reg_same_dialog(data_dir: str | Path) -> bool | None:
    """miniSIPServer's global REGISTER Call-ID switch from ``<data_dir>/mss_var_param.ini``.

    ``[sip] gVarSipRegSameDialog=1`` keeps one Call-ID (CSeq + 1) for every REGISTER of a line,
    ``0`` sends a new Call-ID each time. Section and key names are matched case-insensitively.

    Returns:
        True / False as the file says; None when the file, the section or the key is missing
        or the value is not 0/1 (a warning is logged for a bad value).
    """
    path = Path(data_dir) / MSS_VAR_PARAM_FILE
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(text.lstrip("\ufeff"), source=str(path))
    except configparser.Error as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    section = next((s for s in parser.sections() if s.lower() == "sip"), None)
    if section is None:
        return None
    value = parser[section].get("gvarsipregsamedialog")  # keys are lower-cased
    if value is None:
        return None
    value = value.strip().split(";", 1)[0].strip()
    if value in ("0", "1"):
        return value == "1"
    log.warning("%s: [sip] gVarSipRegSameDialog must be 0 or 1, got %r; ignored", path, value)
    return None


def uses_new_call_id(line: LineRecord, default_new: bool) -> bool:
    """Whether each REGISTER of ``line`` gets a new Call-ID (the line's setting, else the default)."""
    return default_new if line.new_call_id is None else bool(line.new_call_id)


def refresh_delay(granted: int, ratio: float) -> float:
    """Seconds after a 2xx at which to refresh a registration granted for ``granted`` seconds.

    ``granted * ratio``, but at least 5 s before expiry when the expiry allows it, and at least
    1 s after the 2xx.
    """
    return max(1.0, min(granted * ratio, granted - 5.0))


def retry_delay(
    failures: int, retry_min: float, retry_max: float, retry_after: int | None = None
) -> float:
    """Seconds before the next attempt after ``failures`` failed attempts in a row (>= 1).

    ``retry_min * 2 ** (failures - 1)`` capped at ``retry_max``; a provider's Retry-After is
    honoured when longer (still capped at ``retry_max``).
    """
    delay = float(min(retry_max, retry_min * (2 ** max(0, min(failures - 1, 30)))))
    if retry_after is not None and retry_after > delay:
        delay = min(float(retry_after), retry_max)
    return delay


def check_line(line: LineRecord) -> None:
    """Validate what the storage does not: addresses and names.

    Raises:
        ValueError: naming the field.
    """
    if any(c.isspace() or c in "@:;<>" for c in line.account):
        raise ValueError(f"account: not a SIP user name: {line.account!r}")
    try:
        parse_hostport(line.domain)
    except ValueError as exc:
        raise ValueError(f"domain: {exc}") from None
    if line.proxy:
        try:
            parse_hostport(line.proxy)
        except ValueError as exc:
            raise ValueError(f"proxy: {exc}") from None
    if line.contact_user and any(c.isspace() or c in "@:;<>" for c in line.contact_user):
        raise ValueError(f"contact_user: not a SIP user name: {line.contact_user!r}")
    if line.auth_user and any(c.isspace() or c in '"\\' for c in line.auth_user):
        raise ValueError(f"auth_user: not a user name: {line.auth_user!r}")
    if line.register and line.expires < 1:
        raise ValueError("expires: must be >= 1 for a line that registers")
    numbers = line.extra.get("numbers") if line.extra else None
    if numbers is not None:
        if not isinstance(numbers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in numbers.items()
        ):
            raise ValueError("numbers: a map of called number -> local user")
        for k, v in numbers.items():
            if any(c.isspace() or c in "@:;<>=" for c in k + v):
                raise ValueError(f"numbers: not a number: {k!r} -> {v!r}")


def line_numbers(line: LineRecord) -> dict[str, str]:
    """The line's map of called numbers (DIDs) to local users (``extra["numbers"]``)."""
    numbers = line.extra.get("numbers") if line.extra else None
    return dict(numbers) if isinstance(numbers, dict) else {}


# -- the service ------------------------------------------------------------------------------


StateListener = Callable[[str, LineStatus, LineEvent], None]


class LineService:
    """The lines, their registration state and history (house style 9: a feature service).

    Args:
        storage: where the lines are kept.
        config: the ``[lines]`` settings.
        data_dir: where ``mss_var_param.ini`` may be.
        wall: wall-clock time.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        config: LinesConfig | None = None,
        data_dir: str | Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.config = config or LinesConfig()
        self.data_dir = data_dir
        self.wall = wall
        self._lines: dict[str, LineRecord] = {}
        self._status: dict[str, LineStatus] = {}
        self._listeners: list[StateListener] = []
        self._published = StatusPublisher(storage, STATUS_KEY, "line", self._status.get, log)
        #: the global REGISTER Call-ID default: True = a new Call-ID per REGISTER
        self.default_new_call_id = False

    # -- loading ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Read every line and the global Call-ID policy."""
        same = read_reg_same_dialog(self.data_dir) if self.data_dir is not None else None
        self.default_new_call_id = same is False
        if same is not None:
            log.info(
                "%s: gVarSipRegSameDialog=%d: %s Call-ID for every REGISTER by default",
                MSS_VAR_PARAM_FILE,
                int(same),
                "one" if same else "a new",
            )
        self._lines = {line.id: line for line in await self.storage.lines.list()}
        for line_id in self._lines:
            self._status.setdefault(line_id, self._new_status(line_id))

    async def reload(self, ids: Iterable[str]) -> list[tuple[LineRecord | None, LineRecord | None]]:
        """Re-read the given lines; returns ``(old, new)`` for each one that changed."""
        changed: list[tuple[LineRecord | None, LineRecord | None]] = []
        for line_id in sorted(set(ids)):
            new = await self.storage.lines.get(line_id)
            old = self._lines.get(line_id)
            if new is None:
                self._lines.pop(line_id, None)
            else:
                self._lines[line_id] = new
                self._status.setdefault(line_id, self._new_status(line_id))
            if old != new:
                changed.append((old, new))
        return changed

    async def reload_all(self) -> list[tuple[LineRecord | None, LineRecord | None]]:
        """Re-read every line (the change feed was pruned under us)."""
        ids = set(self._lines) | {line.id for line in await self.storage.lines.list()}
        return await self.reload(ids)

    def _new_status(self, line_id: str) -> LineStatus:
        return LineStatus(line_id, since=self.wall(), history=deque(maxlen=self.config.history))

    # -- queries ----------------------------------------------------------------------------
    def lines(self) -> list[LineRecord]:
        """Every line, by id."""
        return [self._lines[k] for k in sorted(self._lines)]

    def get(self, line_id: str) -> LineRecord | None:
        return self._lines.get(line_id)

    def first_line(self) -> LineRecord | None:
        """The first enabled line by id (the target of the default out-group route)."""
        for line in self.lines():
            if line.enabled:
                return line
        return None

    def status(self, line_id: str) -> LineStatus | None:
        return self._status.get(line_id)

    def statuses(self) -> list[dict[str, Any]]:
        """The state of every line, as plain values (for the API and the CLI)."""
        return [self._status[k].as_dict() for k in sorted(self._status) if k in self._lines]

    def history(self, line_id: str) -> list[dict[str, Any]]:
        """The line's state changes, oldest first (at most ``[lines] history`` of them)."""
        st = self._status.get(line_id)
        return [] if st is None else [e.as_dict() for e in st.history]

    def new_call_id(self, line: LineRecord) -> bool:
        """The effective REGISTER Call-ID policy of ``line``: True = a new Call-ID each time."""
        return uses_new_call_id(line, self.default_new_call_id)

    def on_state(self, listener: StateListener) -> None:
        """Call ``listener(line_id, status, event)`` after every state change."""
        self._listeners.append(listener)

    # -- state changes (called by the SIP side) ---------------------------------------------
    def set_state(
        self,
        line_id: str,
        state: LineState,
        *,
        status: int | None = None,
        reason: str = "",
        next_retry: float | None = None,
        registered_until: float | None = None,
        expires: int | None = None,
        call_id: str | None = None,
    ) -> LineStatus:
        """Record the line's state; log and keep it when it changed (or the failure did).

        A repeated ``registered`` (a refresh) only updates the times; a repeated ``failed`` is
        a new event (another failed attempt, with its own status and next retry).
        """
        now = self.wall()
        st = self._status.get(line_id)
        if st is None:
            st = self._status[line_id] = self._new_status(line_id)
        changed = (
            st.state != state
            or state in (LineState.FAILED,)
            or (state == LineState.UNREGISTERED and reason != st.reason)
        )
        if st.state != state:
            st.since = now
        st.state = state
        if status is not None:
            st.status = status
        if call_id is not None:
            st.call_id = call_id
        if state == LineState.REGISTERED:
            st.failures = 0
            st.next_retry = None
            st.last_success = now
            st.registered_until = registered_until
            st.expires = expires
            st.reason = reason or "registered"
        elif state == LineState.FAILED:
            st.failures += 1
            st.next_retry = next_retry
            st.reason = reason
        elif state == LineState.UNREGISTERED:
            st.next_retry = None
            st.registered_until = None
            st.expires = None
            st.reason = reason
            st.failures = 0
        else:  # registering
            st.next_retry = None
            st.reason = reason
        if changed:
            event = LineEvent(now, state, st.status, st.reason, st.next_retry)
            st.history.append(event)
            level = logging.WARNING if state == LineState.FAILED else logging.INFO
            log.log(
                level,
                "line %s %s: %s",
                line_id,
                state.value,
                st.reason,
                extra={
                    "line": line_id,
                    "state": state.value,
                    "status": st.status,
                    "reason": st.reason,
                    "next_retry": st.next_retry,
                    "failures": st.failures,
                },
            )
            for listener in self._listeners:
                try:
                    listener(line_id, st, event)
                except Exception:
                    log.exception("line state listener failed")
        self._publish(line_id)
        return st

    def forget(self, line_id: str) -> None:
        """Drop the state of a deleted line (after it was unregistered)."""
        self._status.pop(line_id, None)
        self._publish(line_id)

    # -- publishing to the kv store (for `mss line list` in another process) ----------------
    def _publish(self, line_id: str) -> None:
        self._published.mark(line_id)

    async def stop(self) -> None:
        """Write the last states out."""
        await self._published.stop()


async def published_statuses(storage: Storage, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The states a running server published for these lines (for ``mss line list``)."""
    return await read_statuses(storage, STATUS_KEY, ids)
