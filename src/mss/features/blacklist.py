"""The system blacklist (miniSIPServer "system black list"): call filtering by number prefixes.

Theory of operation
-------------------
A record is ``(caller_prefix, called_prefix, rate, description)``. ``*`` matches any number
(a prefix of length 0); ``anonymous`` as caller prefix matches anonymous calls (see
:func:`is_anonymous`). For a call, the *matching record* is, among the records whose two
prefixes both match, the one with the longest called-prefix match, then the longest
caller-prefix match. ``rate`` is the percentage of matching calls that are blocked: 100
always, 0 never -- a rate-0 record is an explicit *allow* that overrides shorter rules.

The specification is miniSIPServer's own worked example, with the records
1 = (101, *, 100), 2 = (*, 9, 100), 3 = (100, 9, 0), 4 = (1, 913, 0):

=========  =============  ============  ==========
caller     called         record used   outcome
=========  =============  ============  ==========
101        913800         4             allowed
1011       913800         4             allowed
100        974413800      3             allowed
102        974413800      2             blocked
101        100            1             blocked
200        913800         2             blocked
=========  =============  ============  ==========

(200 -> 913800: record 4's caller prefix ``1`` does not match 200, so the longest called
prefix whose record also matches the caller is ``9``, record 2.)

Anonymous callers. A call is anonymous when its From user is ``anonymous`` (any case), its From
host is ``anonymous.invalid`` (RFC 3323 §4.1.1.3) or it carries ``Privacy: id`` (RFC 3325 §9.3).
For such a call a record with caller prefix ``anonymous`` matches, and on the caller axis it
ranks above every numeric prefix (it names the caller's identity class exactly); numeric prefixes
are still compared with the From user as given (``anonymous`` itself starts with no digit).

Cost: records are indexed by called prefix; a check probes the index for each prefix of the
called number (longest first) and scans that prefix's few caller records, so it costs
``O(len(called) + records sharing a called prefix)``, with no I/O. The rate draw is injectable
(``random.Random``-like object with ``.random()``, or a callable returning a float in [0, 1))
so tests are deterministic.

Use from the call layer (the B2BUA) for every INVITE that starts a call, whatever its origin
(local users, later trunks and external lines)::

    decision = server.blacklist.screen(ctx.request, called=dialled, source=ctx.source.host)
    if decision.blocked:
        ctx.respond(decision.status, decision.reason_phrase)   # 403 Forbidden by default
        # write the CDR with result="rejected", status=decision.status, reason=decision.reason

:meth:`SystemBlacklist.screen` logs the JSON security event ``call_blocked`` itself.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import MssError
from ..storage.base import BlacklistRecord

if TYPE_CHECKING:
    from fastsip.message import Request

    from ..storage.base import Storage

__all__ = (
    "ANONYMOUS",
    "ANY",
    "BlacklistDecision",
    "BlacklistError",
    "SystemBlacklist",
    "called_of",
    "caller_of",
    "is_anonymous",
    "normalise_prefix",
)

#: The caller prefix of anonymous callers.
ANONYMOUS = "anonymous"
#: The prefix that matches any number.
ANY = "*"
#: Rank of an ``anonymous`` caller record on the caller axis: above any numeric prefix.
_ANONYMOUS_RANK = 1 << 16

security_log = logging.getLogger("mss.security")


class BlacklistError(MssError):
    """A bad blacklist record from an operator; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _Draw(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BlacklistDecision:
    """The outcome of a check.

    Attributes:
        blocked: the call must be rejected.
        record: the matching record (``None`` when no record matches: allowed).
        status: the SIP status to answer a blocked call with (403 by default).
    """

    blocked: bool
    record: BlacklistRecord | None
    status: int = 403

    @property
    def reason(self) -> str:
        """A one-line reason for the CDR and logs (``""`` when no record matched)."""
        r = self.record
        if r is None:
            return ""
        what = "blocked" if self.blocked else "allowed"
        text = f"system blacklist {what}: caller {r.caller_prefix}, called {r.called_prefix}, rate {r.rate}"
        return f"{text} ({r.note})" if r.note else text

    @property
    def reason_phrase(self) -> str:
        """The reason phrase of the rejection (RFC 3261 §21.4.4 "Forbidden" for 403)."""
        return "Forbidden" if self.status == 403 else "Call Blocked"


def normalise_prefix(text: str, field: str, *, caller: bool) -> str:
    """Check and normalise one prefix of a record as an operator typed it.

    Args:
        text: ``*``, ``anonymous`` (caller only, any case) or a prefix of a number (digits and
            ``+ # *`` letters, as dialled; no spaces).
        field: the field name for errors (``"caller"``, ``"called"``).
        caller: whether ``anonymous`` is allowed.

    Raises:
        BlacklistError: empty, too long, or with a space or control character.
    """
    text = text.strip()
    if not text:
        raise BlacklistError(field, "empty prefix (use * for any number)")
    if caller and text.lower() == ANONYMOUS:
        return ANONYMOUS
    if len(text) > 64:
        raise BlacklistError(field, "longer than 64 characters")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise BlacklistError(field, f"no spaces or control characters allowed: {text!r}")
    return text


def is_anonymous(request: Request) -> bool:
    """Whether a request's caller withheld its identity.

    True when the From user is ``anonymous`` (any case), the From host is ``anonymous.invalid``
    (RFC 3323 §4.1.1.3), or a ``Privacy`` header holds the ``id`` value (RFC 3325 §9.3; values
    are separated by ``;``, RFC 3323 §4.2).
    """
    frm = request.from_
    if frm is not None:
        uri = frm.uri
        user = getattr(uri, "user", None) or ""
        host = getattr(uri, "host", None) or ""
        if user.lower() == ANONYMOUS or host.lower() == "anonymous.invalid":
            return True
    for value in request.get_all("Privacy"):
        for token in value.replace(",", ";").split(";"):
            if token.strip().lower() == "id":
                return True
    return False


def caller_of(request: Request) -> str:
    """The caller number the blacklist compares: the From URI's user part (``""`` if none)."""
    frm = request.from_
    if frm is None:
        return ""
    return getattr(frm.uri, "user", None) or ""


def called_of(request: Request) -> str:
    """The called number: the Request-URI's user part (``tel:`` URIs: the number)."""
    uri = request.uri
    user = getattr(uri, "user", None)
    if user:
        return str(user)
    if getattr(uri, "scheme", "") == "tel":
        return str(getattr(uri, "host", "") or "")
    return ""


def _caller_rank(prefix: str) -> int:
    if prefix == ANY:
        return 0
    if prefix == ANONYMOUS:
        return _ANONYMOUS_RANK
    return len(prefix)


class SystemBlacklist:
    """The system blacklist engine: records in memory, checks without I/O.

    Args:
        records: the initial records.
        draw: the rate draw: an object with ``random()`` (``random.Random(seed)``) or a callable
            returning a float in [0, 1); default a private ``random.Random()``.
        status: the SIP status of a blocked call (``security.blacklist_status``, 403).
    """

    def __init__(
        self,
        records: Iterable[BlacklistRecord] = (),
        *,
        draw: _Draw | Callable[[], float] | None = None,
        status: int = 403,
    ) -> None:
        if draw is None:
            draw = random.Random()
        self._draw: Callable[[], float] = draw.random if hasattr(draw, "random") else draw  # type: ignore[assignment,union-attr]
        self.status = status
        self._by_called: dict[str, list[tuple[int, BlacklistRecord]]] = {}
        self._longest = 0
        self._count = 0
        self.stats = {"checked": 0, "blocked": 0}
        self.set_records(records)

    # -- records ---------------------------------------------------------------------------

    def set_records(self, records: Iterable[BlacklistRecord]) -> None:
        """Replace every record (what a reload from storage does)."""
        index: dict[str, list[tuple[int, BlacklistRecord]]] = {}
        count = 0
        for r in records:
            called = "" if r.called_prefix == ANY else r.called_prefix
            caller = ANONYMOUS if r.caller_prefix.lower() == ANONYMOUS else r.caller_prefix
            if caller != r.caller_prefix:
                r = BlacklistRecord(caller, r.called_prefix, r.rate, r.note, r.created_at)
            index.setdefault(called, []).append((_caller_rank(caller), r))
            count += 1
        for entries in index.values():
            entries.sort(key=lambda e: -e[0])
        self._by_called = index
        self._longest = max((len(k) for k in index), default=0)
        self._count = count

    def records(self) -> list[BlacklistRecord]:
        """Every record, by (called prefix, caller prefix)."""
        out = [r for entries in self._by_called.values() for _, r in entries]
        out.sort(key=lambda r: (r.called_prefix, r.caller_prefix))
        return out

    def __len__(self) -> int:
        return self._count

    async def load(self, storage: Storage) -> None:
        """(Re)load every record from storage."""
        self.set_records(await storage.blacklist.list())

    # -- checks ----------------------------------------------------------------------------

    def match(self, caller: str, called: str, *, anonymous: bool = False) -> BlacklistRecord | None:
        """The matching record (longest called-prefix match, then longest caller-prefix match).

        Args:
            caller: the caller number (From user).
            called: the called number (dialled).
            anonymous: the caller withheld its identity (:func:`is_anonymous`).

        Returns:
            The record, or ``None`` when none matches.
        """
        index = self._by_called
        if not index:
            return None
        for n in range(min(len(called), self._longest), -1, -1):
            entries = index.get(called[:n])
            if entries is None:
                continue
            for _, r in entries:
                p = r.caller_prefix
                if p == ANY or (anonymous if p == ANONYMOUS else caller.startswith(p)):
                    return r
        return None

    def check(self, caller: str, called: str, *, anonymous: bool) -> BlacklistDecision:
        """Decide whether a call is blocked.

        Args:
            caller: the caller number (From user).
            called: the called number (dialled).
            anonymous: the caller withheld its identity (:func:`is_anonymous`).

        Returns:
            ``blocked`` when a record matches and the draw falls under its rate (always at rate
            100, never at rate 0), with the matching record.
        """
        self.stats["checked"] += 1
        r = self.match(caller, called, anonymous=anonymous)
        if r is None or r.rate <= 0:
            return BlacklistDecision(False, r, self.status)
        blocked = r.rate >= 100 or self._draw() * 100.0 < r.rate
        if blocked:
            self.stats["blocked"] += 1
        return BlacklistDecision(blocked, r, self.status)

    def check_request(self, request: Request, *, called: str | None = None) -> BlacklistDecision:
        """:meth:`check` for an INVITE: caller = From user, anonymity from the request.

        Args:
            request: the INVITE.
            called: the dialled number; default the Request-URI user.
        """
        return self.check(
            caller_of(request),
            called_of(request) if called is None else called,
            anonymous=is_anonymous(request),
        )

    def screen(
        self, request: Request, *, called: str | None = None, source: str = "", call_id: Any = None
    ) -> BlacklistDecision:
        """:meth:`check_request`, logging the security event ``call_blocked`` when blocked.

        This is the call layer's entry point: every INVITE that starts a call goes through it.

        Args:
            request: the INVITE.
            called: the dialled number; default the Request-URI user.
            source: the source address, for the event.
            call_id: the Call-ID for the event; default the request's.
        """
        decision = self.check_request(request, called=called)
        if decision.blocked:
            r = decision.record
            assert r is not None
            security_log.warning(
                "call blocked by the system blacklist",
                extra={
                    "event": "call_blocked",
                    "caller": caller_of(request),
                    "called": called_of(request) if called is None else called,
                    "anonymous": is_anonymous(request),
                    "source": source,
                    "call_id": request.call_id if call_id is None else call_id,
                    "rule": {
                        "caller": r.caller_prefix,
                        "called": r.called_prefix,
                        "rate": r.rate,
                        "description": r.note,
                    },
                    "status": decision.status,
                },
            )
        return decision
