"""The dial plan: where a dialled number goes (a local user, an external line or a SIP trunk).

Theory of operation
-------------------
The dial plan is an ordered table of rules (:class:`~mss.storage.base.RouteRecord`, managed with
``mss route add|del|list``). :meth:`DialPlan.resolve` answers, for a dialled number, the list of
:class:`RouteStep` to try in order: the primary route, then its fallbacks. The call layer
(:mod:`mss.features.external`, for the B2BUA) calls it for every new call and tries the next
step when a step is over its concurrent-call limit, or when every leg of it answered 5xx.

Rules, in the order they are applied:

1. **Local users first.** When the caller passes ``is_user`` and the dialled number is exactly a
   local user's number, the call goes to that user: a catch-all route cannot hide an extension.
2. **Longest prefix wins.** Among the *usable* rules whose ``prefix`` starts the number (``""``
   matches everything), the longest prefix wins; equal prefixes are ordered by ``priority``
   (lower first), then by id. A rule is usable when it is enabled, its target exists (an enabled
   line or trunk; ``user`` always) and the transformed number is not empty. An unusable rule is
   skipped as if absent, so the next-longest rule applies.
3. **Transformation.** ``strip`` leading characters are removed, then ``prepend`` is added:
   prefix ``9``, strip 1 turns ``90123456`` into ``0123456``.
4. **Fallbacks.** A rule's ``fallback`` names another rule (by id) tried next; its own strip and
   prepend apply to the number *as dialled*, its own fallback is followed in turn. Unusable
   fallbacks are skipped, cycles are cut, at most :data:`MAX_STEPS` steps are returned.
5. **No rule:** the number is a local user's (``[RouteStep("user", "", number)]``), as in
   miniSIPServer; the B2BUA answers 404 when there is no such user.

Targets: ``user`` (the transformed number is a local user), ``user:<number>`` (always that
user, e.g. an operator), ``line:<id>``, ``line:`` (the first enabled line by id, whatever lines
exist when the call is made) and ``trunk:<id>``.

First-run defaults (:func:`ensure_default_routes`): the documented out-group prefix ``9`` is a
rule ``out``: prefix ``9``, strip 1, target ``line:`` (the first external line). While no
enabled line exists, that rule is unusable and skipped: ``9`` + number is then looked up like
any number (a local user, or the next matching rule), which normally ends in 404 Not Found.
The defaults are created once per database (a kv marker), so deleting the rule is permanent.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..storage.base import RouteRecord, Storage

__all__ = (
    "DEFAULT_OUT_ROUTE",
    "MAX_STEPS",
    "DialPlan",
    "DialPlanService",
    "RouteStep",
    "ensure_default_routes",
    "parse_target",
    "transform",
)

log = logging.getLogger("mss.dialplan")

RouteKind = Literal["user", "line", "trunk"]
KINDS: tuple[str, ...] = ("user", "line", "trunk")

#: at most this many steps (primary + fallbacks) per resolution
MAX_STEPS = 8
#: the first-run out-group rule
DEFAULT_OUT_ROUTE = RouteRecord("out", "9", "line:", strip=1)
_DEFAULTS_KEY = "dialplan.defaults"


@dataclass(frozen=True, slots=True)
class RouteStep:
    """One place to try a call.

    Attributes:
        kind: ``"user"``, ``"line"`` or ``"trunk"``.
        target: the line id or trunk id; for ``user``: the user's number, or ``""`` = the
            transformed :attr:`number` itself.
        number: the number to call there (after strip / prepend).
        route: the id of the rule that produced the step; None for the implicit local-user
            default and for an exact local-user match.
        dialed: the number as dialled.
    """

    kind: RouteKind
    target: str
    number: str
    route: str | None = None
    dialed: str = ""

    @property
    def user(self) -> str:
        """For a ``user`` step: the local user to call."""
        return self.target or self.number


def parse_target(text: str) -> tuple[RouteKind, str]:
    """Split a route target: ``"trunk:t1"`` -> ``("trunk", "t1")``, ``"user"`` -> ``("user", "")``.

    Raises:
        ValueError: an unknown kind, or ``trunk`` without a name.
    """
    kind, _, name = text.partition(":")
    kind = kind.strip().lower()
    name = name.strip()
    if kind not in KINDS:
        raise ValueError(f"route target must be user[:NUMBER], line[:ID] or trunk:ID, got {text!r}")
    if kind == "trunk" and not name:
        raise ValueError("a trunk route needs the trunk's name: trunk:ID")
    return kind, name  # type: ignore[return-value]


def transform(number: str, strip: int, prepend: str) -> str:
    """``prepend`` + ``number`` without its first ``strip`` characters."""
    return prepend + number[strip:]


def check_route(route: RouteRecord) -> None:
    """Validate a rule before it is stored.

    Raises:
        ValueError: naming the field.
    """
    try:
        parse_target(route.target)
    except ValueError as exc:
        raise ValueError(f"target: {exc}") from None
    for name in ("prefix", "prepend"):
        value = getattr(route, name)
        if any(c.isspace() or c in "@:;<>" for c in value):
            raise ValueError(f"{name}: not digits or a number: {value!r}")
    if route.strip < 0:
        raise ValueError("strip: must be >= 0")
    if route.fallback == route.id:
        raise ValueError("fallback: a route cannot be its own fallback")


class DialPlan:
    """An immutable routing table built from the rules and the existing lines and trunks.

    Args:
        routes: the rules.
        lines: ids of the enabled lines; None = do not check that line targets exist.
        trunks: ids of the enabled trunks; None = do not check that trunk targets exist.
        first_line: the id the ``line:`` target means (the first enabled line), or None.
    """

    def __init__(
        self,
        routes: Iterable[RouteRecord] = (),
        *,
        lines: Iterable[str] | None = None,
        trunks: Iterable[str] | None = None,
        first_line: str | None = None,
    ) -> None:
        self._by_id: dict[str, RouteRecord] = {}
        self._targets: dict[str, tuple[RouteKind, str]] = {}
        for route in routes:
            try:
                target = parse_target(route.target)
            except ValueError:
                log.warning("route %s: bad target %r; ignored", route.id, route.target)
                continue
            self._by_id[route.id] = route
            self._targets[route.id] = target
        self._lines = None if lines is None else frozenset(lines)
        self._trunks = None if trunks is None else frozenset(trunks)
        self._first_line = first_line
        if first_line is None and self._lines:
            self._first_line = min(self._lines)
        # longest prefix first, then priority, then id
        self._ordered = sorted(
            (r for r in self._by_id.values() if r.enabled),
            key=lambda r: (-len(r.prefix), r.priority, r.id),
        )

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def routes(self) -> list[RouteRecord]:
        """The rules, in the order they are tried (disabled ones last, by id)."""
        disabled = sorted((r for r in self._by_id.values() if not r.enabled), key=lambda r: r.id)
        return [*self._ordered, *disabled]

    def _step(self, route: RouteRecord, dialed: str) -> RouteStep | None:
        """The step of ``route`` for ``dialed``, or None when the rule is unusable."""
        if not route.enabled:
            return None
        kind, name = self._targets[route.id]
        if kind == "line":
            if not name:
                name = self._first_line or ""
                if not name:
                    return None
            elif self._lines is not None and name not in self._lines:
                return None
        elif kind == "trunk" and self._trunks is not None and name not in self._trunks:
            return None
        number = transform(dialed, route.strip, route.prepend)
        if not number:
            return None
        return RouteStep(kind, name, number, route.id, dialed)

    def match(self, number: str) -> RouteStep | None:
        """The primary step of the longest usable matching rule, or None."""
        for route in self._ordered:
            if number.startswith(route.prefix):
                step = self._step(route, number)
                if step is not None:
                    return step
        return None

    def resolve(
        self, number: str, *, is_user: Callable[[str], bool] | None = None
    ) -> list[RouteStep]:
        """Where to try a call to ``number``: the primary step, then the fallbacks.

        Args:
            number: the dialled number (the Request-URI user).
            is_user: tells whether a number is a local user's; when it is, that user wins
                over every rule.

        Returns:
            at least one step; with no usable rule, the local user ``number``.
        """
        if is_user is not None and is_user(number):
            return [RouteStep("user", "", number, None, number)]
        primary = self.match(number)
        if primary is None:
            return [RouteStep("user", "", number, None, number)]
        steps = [primary]
        seen = {primary.route}
        route = self._by_id[primary.route]  # type: ignore[index]
        while route.fallback and len(steps) < MAX_STEPS:
            nxt = self._by_id.get(route.fallback)
            if nxt is None or nxt.id in seen:
                break
            seen.add(nxt.id)
            step = self._step(nxt, number)
            if step is not None:
                steps.append(step)
            route = nxt
        return steps


class DialPlanService:
    """The live dial plan: rules from storage, line and trunk existence from their services.

    Args:
        storage: where the rules are kept.
        lines: ``() -> ids of the enabled lines, in order`` (the first is ``line:``).
        trunks: ``() -> ids of the enabled trunks``.
        is_user: ``(number) -> bool``: local users win over rules.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        lines: Callable[[], list[str]] | None = None,
        trunks: Callable[[], list[str]] | None = None,
        is_user: Callable[[str], bool] | None = None,
    ) -> None:
        self.storage = storage
        self._lines = lines
        self._trunks = trunks
        self.is_user = is_user
        self._routes: list[RouteRecord] = []
        self.plan = DialPlan()

    async def load(self) -> None:
        """Read the rules and rebuild the plan."""
        self._routes = await self.storage.routes.list()
        self.rebuild()

    def rebuild(self) -> None:
        """Rebuild the plan (after lines or trunks changed)."""
        lines = self._lines() if self._lines is not None else None
        trunks = self._trunks() if self._trunks is not None else None
        self.plan = DialPlan(
            self._routes,
            lines=lines,
            trunks=trunks,
            first_line=lines[0] if lines else None,
        )

    def resolve(self, number: str) -> list[RouteStep]:
        """:meth:`DialPlan.resolve` with the local-user check."""
        return self.plan.resolve(number, is_user=self.is_user)

    def describe(self, number: str) -> list[dict[str, Any]]:
        """The steps for ``number`` as plain values (API, ``mss route resolve``)."""
        return [
            {"kind": s.kind, "target": s.target, "number": s.number, "route": s.route}
            for s in self.resolve(number)
        ]


async def ensure_default_routes(storage: Storage) -> bool:
    """Create the first-run dial-plan defaults once per database (the out-group rule ``9``).

    Returns:
        True when this call created them.
    """
    token = secrets.token_hex(8)
    if await storage.kv.setdefault(_DEFAULTS_KEY, token) != token:
        return False  # created (or deliberately removed) before
    routes = await storage.routes.list()
    if any(r.prefix == DEFAULT_OUT_ROUTE.prefix or r.id == DEFAULT_OUT_ROUTE.id for r in routes):
        return False
    await storage.routes.add(DEFAULT_OUT_ROUTE)
    log.info(
        "dial plan: created the default out-group route: 9 + number -> the first external line"
    )
    return True
