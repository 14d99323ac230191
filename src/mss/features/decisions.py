"""Recent rejecting decisions, for ``GET /explain`` (issue 8): why was this source or user refused?

Theory of operation
-------------------
Every feature that rejects or drops a request because of a rule records one :class:`Decision`
into the server's :class:`DecisionLog`: the kind of rule, the source IP, the user (From user,
digest user name or caller number), the rule that fired as text, a short detail, and the time.
The log is a ring buffer (``collections.deque(maxlen=...)``): recording costs one append and
memory stays bounded; the oldest decisions fall off. :meth:`DecisionLog.query` scans it newest
first (the API caps the answer).

Kinds (:data:`KINDS`): ``auth_failure`` (credentials that do not verify; from
:class:`mss.sip.auth.Authenticator`), ``ban`` (fail-to-ban or operator ban started, or packets of
a banned source dropped), ``black_list`` (packets from a black-listed IP dropped), ``blacklist``
(a call blocked by a system blacklist rule), ``limit`` (a device, call or trunk limit). Features
pass ``at`` from the wall clock (epoch seconds) or leave it to the log.

How a feature records (no import of the API needed)::

    decisions.record("limit", ip=source_host, user=number, rule="max_devices=3",
                     detail="REGISTER refused: device limit reached")
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ("KINDS", "Decision", "DecisionLog", "DecisionSink", "normalise_ip")

#: Kinds of decisions the features record.
KINDS = ("auth_failure", "ban", "black_list", "blacklist", "limit")


@dataclass(frozen=True, slots=True)
class Decision:
    """One rejecting decision.

    Attributes:
        kind: one of :data:`KINDS`.
        ip: the source address (text, canonical), ``""`` when unknown.
        user: the user concerned (From/digest user, caller number), ``""`` when none.
        rule: the rule that fired, as an operator would name it.
        detail: what happened (method, status, counts...).
        at: wall-clock epoch seconds.
    """

    kind: str
    ip: str
    user: str
    rule: str
    detail: str
    at: float


class DecisionSink(Protocol):
    """Where features record decisions (a :class:`DecisionLog`)."""

    def record(
        self,
        kind: str,
        ip: str = "",
        user: str = "",
        rule: str = "",
        detail: str = "",
        at: float | None = None,
    ) -> None: ...


def normalise_ip(text: str) -> str:
    """The canonical text of an IP address (``::ffff:1.2.3.4`` → ``1.2.3.4``), else ``text``."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    try:
        addr = ipaddress.ip_address(t)
    except ValueError:
        return t
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class DecisionLog:
    """A bounded ring buffer of :class:`Decision`.

    Args:
        maxlen: decisions kept (the oldest fall off).
        wall: wall-clock time for decisions recorded without ``at``.
    """

    def __init__(self, maxlen: int = 10000, *, wall: Callable[[], float] = time.time) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self._ring: deque[Decision] = deque(maxlen=maxlen)
        self._wall = wall
        self.recorded = 0

    @property
    def maxlen(self) -> int:
        return self._ring.maxlen or 0

    def __len__(self) -> int:
        return len(self._ring)

    def record(
        self,
        kind: str,
        ip: str = "",
        user: str = "",
        rule: str = "",
        detail: str = "",
        at: float | None = None,
    ) -> None:
        """Remember one decision (cheap: one append)."""
        self.recorded += 1
        self._ring.append(
            Decision(kind, ip, user, rule, detail, self._wall() if at is None else at)
        )

    def query(
        self,
        ip: str | None = None,
        user: str | None = None,
        *,
        kinds: tuple[str, ...] | None = None,
        limit: int = 100,
    ) -> list[Decision]:
        """Decisions about ``ip`` and/or ``user`` (both given: either matches), newest first.

        Args:
            ip: a source address (any textual form of it).
            user: a user name or number.
            kinds: only these kinds.
            limit: at most this many.
        """
        want_ip = normalise_ip(ip) if ip else None
        out: list[Decision] = []
        for d in reversed(self._ring):
            if kinds is not None and d.kind not in kinds:
                continue
            if want_ip is not None or user:
                hit = (want_ip is not None and d.ip == want_ip) or (bool(user) and d.user == user)
                if not hit:
                    continue
            out.append(d)
            if len(out) >= limit:
                break
        return out
