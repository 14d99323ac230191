"""The registrar (RFC 3261 §10.3, RFC 3327 Path, RFC 5626 instance ids) with PBX policy.

Processing of a REGISTER, in the order of §10.3:

1. The AOR (To URI) must be a sip/sips URI (else 400) in one of our domains (else 403); its user
   part is the local user number.
2. The requester is authorized: an IP-authorized device of that user needs no credentials;
   everyone else is digest-authenticated (see :mod:`mss.sip.auth`) and must authenticate as the
   AOR's user (else 403). Unknown users are challenged exactly like known ones.
3. ``Contact: *`` needs ``Expires: 0`` and no other Contact (else 400) and removes every binding.
4. Each Contact's expiry is its ``expires`` param, else the Expires header, else the default
   (3600); 1..min-1 → 423 with Min-Expires; above the maximum it is lowered to the maximum.
5. A binding seen before with the same Call-ID is only changed by a higher CSeq; otherwise the
   request fails (400, "CSeq out of order").
6. One number, multi-devices (miniSIPServer): off (default) → the new Contact replaces the
   user's binding (last registration wins, what NAT rebinding needs); on → up to
   ``max_devices`` live bindings, one more → 403 "Device limit reached".
7. The new binding set is committed to storage (group commit) and only then the 200 OK goes
   out (with ``[registrar] persist = "write-back"`` at once, the commit following within
   ``write_back_interval``), listing every current binding with its remaining expiry (and the Path when the UA
   supports it). A query (no Contact) just lists them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate

from fastsip import ParseError
from fastsip.headers import Address

from ..features.decisions import DecisionSink
from ..features.location import LocationService
from ..features.users import UserDirectory
from ..storage.base import BindingRecord, UserRecord
from .auth import Authenticator
from .core import RequestContext

__all__ = ("Registrar", "binding_key")

log = logging.getLogger("mss.registrar")


def binding_key(contact: str, instance: str = "") -> str:
    """The identity of a binding: the RFC 5626 instance id, else the normalized Contact URI."""
    if instance:
        return "instance:" + instance
    return contact


def _normalized_contact(addr: Address) -> str:
    u = addr.uri
    if u.opaque is not None:
        return str(u)
    transport = u.params.get("transport")
    text = f"{u.scheme}:{u.user + '@' if u.user is not None else ''}{(u.host or '').lower()}"
    if u.port is not None:
        text += f":{u.port}"
    if transport:
        text += f";transport={transport.lower()}"
    return text


class Registrar:
    """Handles REGISTER for the local users."""

    def __init__(
        self,
        *,
        users: UserDirectory,
        location: LocationService,
        auth: Authenticator,
        domains: Callable[[], Iterable[str]],
        default_expires: int = 3600,
        min_expires: int = 60,
        max_expires: int = 7200,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[str, list[BindingRecord]], None] | None = None,
        decisions: DecisionSink | None = None,
    ) -> None:
        self.users = users
        self.location = location
        self.auth = auth
        self.domains = domains
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.wall = wall
        self.on_change = on_change
        #: where refusals by a limit are recorded for ``GET /explain`` (optional)
        self.decisions = decisions
        self.stats = {"registered": 0, "unregistered": 0, "rejected": 0}
        # hot-path caches: the lower-cased domain set (rebuilt when ``domains()`` changes)
        # and the Date header of the current second
        self._domains_seen: tuple[str, ...] | None = None
        self._domain_set: frozenset[str] | None = None
        self._date: tuple[int, str] = (-1, "")

    def _local_domain(self, host: str | None) -> bool:
        names = tuple(self.domains())
        if names != self._domains_seen:
            self._domains_seen = names
            self._domain_set = (
                None if not names or "*" in names else frozenset(d.lower() for d in names)
            )
        domain_set = self._domain_set
        if domain_set is None:
            return True
        h = (host or "").lower()
        if h.startswith("[") and h.endswith("]"):
            h = h[1:-1]
        return h in domain_set

    def _date_header(self, now: float) -> str:
        second = int(now)
        cached = self._date
        if cached[0] != second:
            cached = self._date = (second, formatdate(second, usegmt=True))
        return cached[1]

    # -- the handler ------------------------------------------------------------------------
    def on_register(self, ctx: RequestContext) -> None:
        req = ctx.request
        to = req.to
        assert to is not None
        aor = to.uri
        if aor.scheme not in ("sip", "sips") or aor.opaque is not None:
            self.stats["rejected"] += 1
            ctx.respond(400, "Bad Request (the AOR must be a sip or sips URI)")
            return
        if not self._local_domain(aor.host):
            self.stats["rejected"] += 1
            ctx.respond(403, "Forbidden (not a domain of this registrar)")
            return
        number = aor.user or ""
        user: UserRecord | None = None
        frm = req.from_
        from_user = frm.uri.user if frm is not None else None
        ip_user = self.users.ip_user(ctx.source.host, ctx.source.port, from_user)
        if ip_user is not None and ip_user.number == number:
            user = ip_user
        else:
            user = self.auth.authenticate(ctx)
            if user is None:
                return  # challenged or failed: already answered
            if user.number != number:
                self.stats["rejected"] += 1
                ctx.respond(403, "Forbidden (credentials do not match the address of record)")
                return
        self._bind(ctx, user)

    def _bind(self, ctx: RequestContext, user: UserRecord) -> None:
        req = ctx.request
        now = self.wall()
        number = user.number
        cseq = req.cseq
        assert cseq is not None
        call_id = req.call_id or ""
        try:
            expires_hdr = req.expires
        except ParseError as e:
            ctx.respond(400, f"Bad Request ({e.reason})")
            return
        current = {binding_key(b.contact, b.instance): b for b in self.location.lookup(number, now)}
        if req.contact_star:
            if expires_hdr != 0 or len(req.get_all("Contact")) != 1:
                ctx.respond(400, "Bad Request (Contact: * needs Expires: 0 and no other Contact)")
                return
            for b in current.values():
                if b.call_id == call_id and cseq.seq <= b.cseq:
                    ctx.respond(400, "Bad Request (CSeq out of order)")
                    return
            self._commit(ctx, number, [], removed=len(current))
            return
        contacts = req.contacts
        if not contacts:
            self._reply(ctx, number, list(current.values()))  # a query
            return
        paths = tuple(str(p) for p in req.paths)
        source = f"{ctx.source.transport}:{ctx.source.host}:{ctx.source.port}"
        ua = req.user_agent or ""
        new = dict(current)
        added: list[str] = []
        removed = 0
        for c in contacts:
            exp = c.expires
            if exp is None:
                if "expires" in c.params:
                    ctx.respond(400, "Bad Request (bad Contact expires)")
                    return
                exp = expires_hdr if expires_hdr is not None else self.default_expires
            if 0 < exp < self.min_expires:
                self.stats["rejected"] += 1
                ctx.respond(423, headers=[("Min-Expires", str(self.min_expires))])
                return
            exp = min(exp, self.max_expires)
            instance = c.params.get("+sip.instance") or ""
            if instance.startswith('"') and instance.endswith('"'):
                instance = instance[1:-1]
            key = binding_key(_normalized_contact(c), instance)
            old = new.get(key)
            if old is not None and old.call_id == call_id and cseq.seq <= old.cseq:
                ctx.respond(400, "Bad Request (CSeq out of order)")
                return
            if exp == 0:
                if new.pop(key, None) is not None:
                    removed += 1
                continue
            reg_id = c.params.get("reg-id")
            new[key] = BindingRecord(
                aor=number,
                contact=str(c.uri),
                expires_at=now + exp,
                call_id=call_id,
                cseq=cseq.seq,
                q=c.q,
                path=paths,
                source=source,
                user_agent=ua,
                instance=instance,
                reg_id=int(reg_id) if reg_id and reg_id.isdigit() else None,
                registered_at=now,
            )
            if key in added:
                added.remove(key)
            added.append(key)
        if not user.multi_device:
            if added:
                # last registration wins: the newest Contact replaces every other binding
                keep = added[-1]
                removed += sum(1 for k in new if k != keep)
                new = {keep: new[keep]}
        else:
            if len(new) > user.max_devices:
                self.stats["rejected"] += 1
                if self.decisions is not None:
                    self.decisions.record(
                        "limit",
                        ctx.source.host,
                        number,
                        f"max_devices={user.max_devices}",
                        "REGISTER answered 403: device limit reached",
                        now,
                    )
                ctx.respond(403, f"Forbidden (device limit of {user.max_devices} reached)")
                return
        self._commit(ctx, number, list(new.values()), removed=removed)

    def _commit(
        self, ctx: RequestContext, number: str, bindings: list[BindingRecord], *, removed: int
    ) -> None:
        def done(error: Exception | None) -> None:
            if error is not None:
                ctx.respond(500, "Server Internal Error (storage)")
                return
            if bindings:
                self.stats["registered"] += 1
            else:
                self.stats["unregistered"] += 1
            if self.on_change is not None:
                self.on_change(number, bindings)
            self._reply(ctx, number, bindings)

        self.location.set(number, bindings, done)

    def _reply(self, ctx: RequestContext, number: str, bindings: list[BindingRecord]) -> None:
        now = self.wall()
        headers: list[tuple[str, str]] = []
        for b in sorted(bindings, key=lambda b: -b.registered_at):
            left = max(0, int(b.expires_at - now + 0.5))
            headers.append(("Contact", f"<{b.contact}>;expires={left}"))
        req = ctx.request
        if "path" in req.supported and req.paths:
            headers.extend(("Path", str(p)) for p in req.paths)
        headers.append(("Date", self._date_header(now)))
        ctx.respond(200, headers=headers)
