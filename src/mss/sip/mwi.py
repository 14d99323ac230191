"""Message-waiting indication: the ``message-summary`` event package (RFC 3842 on RFC 6665).

Theory of operation
-------------------
A phone SUBSCRIBEs to ``Event: message-summary`` for its own account (Request-URI
``sip:<user>@<domain>``, RFC 3842 §3.2). :class:`MwiNotifier`:

1. answers ``489 Bad Event`` with ``Allow-Events: message-summary`` for any other package
   (RFC 6665 §4.2.1.1);
2. authenticates the subscriber like every request from users (IP authorization, else digest
   via :class:`~mss.sip.auth.Authenticator`) and requires it to be the account's user, the
   Request-URI's user part, else the To user (else 403: whether another account exists is
   never revealed);
3. takes ``Expires`` (default 3600 s): 1..``min_expires``-1 → 423 with ``Min-Expires``; above
   ``max_expires`` it is lowered (RFC 6665 §4.2.1.1); answers ``200 OK`` with the granted
   ``Expires`` and a To tag, which creates the dialog;
4. sends a NOTIFY at once (RFC 6665 §4.2.1.2) with ``Subscription-State: active;expires=N`` and
   the RFC 3842 §5 body (``Messages-Waiting``, ``Message-Account``, ``Voice-Message: new/old
   (0/0)``), and one more NOTIFY whenever the user's counts change (the voicemail service calls
   :meth:`MwiNotifier.counts_changed`);
5. a refresh (SUBSCRIBE inside the dialog: Call-ID, our tag and the subscriber's tag match, else
   481; not challenged again) restarts the expiry; ``Expires: 0`` unsubscribes:
   200 OK, then a last NOTIFY with ``Subscription-State: terminated;reason=timeout``; so does
   the expiry of an unrefreshed subscription (RFC 6665 §4.2.2). A NOTIFY answered 481 (or not
   at all: local 408/503) ends the subscription silently (RFC 6665 §4.2.2).

NOTIFYs go to the flow the SUBSCRIBE came from (its source transport, address and port, and its
connection for TCP/TLS), as the registrar's bindings do, so they cross the subscriber's NAT; the
Request-URI is the subscriber's Contact (RFC 6665 §4.4.1: the remote target). Subscriptions are
kept in memory only: after a restart phones re-subscribe when their subscription expires.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from fastsip import ParseError
from fastsip.message import Request, Response

from ..features.users import UserDirectory
from ..storage.base import UserRecord
from .addressing import Target
from .auth import Authenticator
from .core import RequestContext, SipCore

__all__ = ("EVENT", "MwiNotifier", "Subscription", "summary_body")

log = logging.getLogger("mss.mwi")

#: The event package served (RFC 3842).
EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"

LocalAddress = Callable[[str, str], tuple[str, int]]
Counts = Callable[[str], tuple[int, int]]


def summary_body(account: str, new: int, old: int) -> bytes:
    """The ``application/simple-message-summary`` body (RFC 3842 §5.2)."""
    waiting = "yes" if new > 0 else "no"
    return (
        f"Messages-Waiting: {waiting}\r\n"
        f"Message-Account: {account}\r\n"
        f"Voice-Message: {new}/{old} (0/0)\r\n"
    ).encode()


def _event_package(value: str | None) -> str:
    """The package name of an Event header (``message-summary;id=1`` → ``message-summary``)."""
    return (value or "").split(";", 1)[0].strip().lower()


class Subscription:
    """One message-summary subscription (one dialog)."""

    __slots__ = (
        "account",
        "call_id",
        "cseq",
        "event",
        "expires_at",
        "local_tag",
        "local_uri",
        "remote",
        "remote_tag",
        "remote_target",
        "target",
        "timer",
        "user",
    )

    def __init__(
        self,
        *,
        user: str,
        account: str,
        call_id: str,
        local_tag: str,
        local_uri: str,
        remote: str,
        remote_tag: str,
        remote_target: str,
        target: Target,
        event: str,
    ) -> None:
        self.user = user
        self.account = account
        self.call_id = call_id
        self.local_tag = local_tag
        self.local_uri = local_uri
        #: the subscriber's From (with its tag): the To of our NOTIFYs
        self.remote = remote
        self.remote_tag = remote_tag
        self.remote_target = remote_target
        self.target = target
        #: the Event header value as subscribed (with its ``id`` parameter, RFC 6665 §8.2.1)
        self.event = event
        self.cseq = 0
        self.expires_at = 0.0
        self.timer: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.local_tag)


class MwiNotifier:
    """SUBSCRIBE handler and NOTIFY sender for ``message-summary``.

    Args:
        core: the SIP core (client transactions for the NOTIFYs).
        users: the user directory.
        auth: the digest authenticator.
        counts: ``user -> (new, old)`` (the voicemail service's, from memory).
        local_address: ``(transport, remote host) -> (our host, our port)``.
        domain: ``() -> the SIP domain or None`` (for Message-Account and our From).
        server_name: the User-Agent of our NOTIFYs.
        default_expires / min_expires / max_expires: subscription durations, seconds.
        max_subscriptions: per user; the oldest one is dropped beyond it.
    """

    def __init__(
        self,
        *,
        core: SipCore,
        users: UserDirectory,
        auth: Authenticator,
        counts: Counts,
        local_address: LocalAddress,
        domain: Callable[[], str | None] = lambda: None,
        server_name: str = "mss",
        default_expires: int = 3600,
        min_expires: int = 60,
        max_expires: int = 86400,
        max_subscriptions: int = 16,
    ) -> None:
        self.core = core
        self.users = users
        self.auth = auth
        self.counts = counts
        self.local_address = local_address
        self.domain = domain
        self.server_name = server_name
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_subscriptions = max_subscriptions
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._by_user: dict[str, list[Subscription]] = {}
        self.stats = {"subscribed": 0, "notifies": 0, "terminated": 0, "bad_event": 0}

    # -- queries ----------------------------------------------------------------------------
    def subscriptions(self, user: str | None = None) -> list[Subscription]:
        if user is not None:
            return list(self._by_user.get(user, ()))
        return list(self._subs.values())

    # -- SUBSCRIBE --------------------------------------------------------------------------
    def on_subscribe(self, ctx: RequestContext) -> None:
        req = ctx.request
        event = req.get("Event")
        if _event_package(event) != EVENT:
            self.stats["bad_event"] += 1
            ctx.respond(489, headers=[("Allow-Events", EVENT)])
            return
        assert event is not None
        to = req.to
        frm = req.from_
        if to is None or frm is None or frm.tag is None:
            ctx.respond(400, "Bad Request (From tag missing)")
            return
        try:
            expires = req.expires
        except ParseError as exc:
            ctx.respond(400, f"Bad Request ({exc.reason})")
            return
        if to.tag is not None:
            self._refresh(ctx, to.tag, expires)
            return
        uri = req.uri
        # RFC 3842 §3.2: the Request-URI names the account; a Request-URI without a user part
        # (sip:server:port, as sipp and some phones send) falls back to the To user
        number = uri.user or to.uri.user or ""
        if uri.scheme not in ("sip", "sips"):
            ctx.respond(416)
            return
        # authenticate before looking at the account: the answer never tells whether it exists
        user = self._authorize(ctx, number)
        if user is None:
            return
        if expires is None:
            expires = self.default_expires
        if 0 < expires < self.min_expires:
            ctx.respond(423, headers=[("Min-Expires", str(self.min_expires))])
            return
        expires = min(expires, self.max_expires)
        contact = req.contact
        if contact is None and expires:
            ctx.respond(400, "Bad Request (Contact missing)")
            return
        local_tag = secrets.token_hex(6)
        ours = self._our_contact(ctx)
        ctx.respond(200, headers=[("Expires", str(expires)), ("Contact", ours)], to_tag=local_tag)
        sub = Subscription(
            user=number,
            account=self._account(number, uri.host if uri.user else to.uri.host),
            call_id=req.call_id or "",
            local_tag=local_tag,
            local_uri=str(to.uri),
            remote=str(frm),
            remote_tag=frm.tag,
            remote_target=str(contact.uri) if contact is not None else str(frm.uri),
            target=self._flow(ctx),
            event=event.strip(),
        )
        if expires == 0:
            # a fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then terminated
            self._notify(sub, terminated=True)
            return
        self._add(sub, expires)
        self.stats["subscribed"] += 1
        log.info("MWI: %s subscribed from %s for %d s", number, ctx.source, expires)
        self._notify(sub)

    def _authorize(self, ctx: RequestContext, number: str) -> UserRecord | None:
        req = ctx.request
        frm = req.from_
        from_user = frm.uri.user if frm is not None else None
        ip_user = self.users.ip_user(ctx.source.host, ctx.source.port, from_user)
        if ip_user is not None and ip_user.number == number:
            return ip_user
        user = self.auth.authenticate(ctx)
        if user is None:
            return None  # challenged or failed: answered
        if user.number != number:
            ctx.respond(403, "Forbidden (only the account's own user may subscribe)")
            return None
        return user

    def _refresh(self, ctx: RequestContext, local_tag: str, expires: int | None) -> None:
        req = ctx.request
        sub = self._subs.get((req.call_id or "", local_tag))
        frm = req.from_
        if sub is None or frm is None or frm.tag != sub.remote_tag:
            ctx.respond(481)
            return
        # inside an authenticated dialog: not challenged again (as Asterisk's res_pjsip)
        if expires is None:
            expires = self.default_expires
        if 0 < expires < self.min_expires:
            ctx.respond(423, headers=[("Min-Expires", str(self.min_expires))])
            return
        expires = min(expires, self.max_expires)
        contact = req.contact
        if contact is not None:
            sub.remote_target = str(contact.uri)
        sub.target = self._flow(ctx)
        ctx.respond(
            200,
            headers=[("Expires", str(expires)), ("Contact", self._our_contact(ctx))],
            to_tag=local_tag,
        )
        if expires == 0:
            self._remove(sub)
            self.stats["terminated"] += 1
            log.info("MWI: %s unsubscribed", sub.user)
            self._notify(sub, terminated=True)
            return
        self._arm(sub, expires)
        self._notify(sub)

    # -- state ------------------------------------------------------------------------------
    def _add(self, sub: Subscription, expires: int) -> None:
        mine = self._by_user.setdefault(sub.user, [])
        while len(mine) >= self.max_subscriptions:
            self._remove(mine[0])
        mine.append(sub)
        self._subs[sub.key] = sub
        self._arm(sub, expires)

    def _arm(self, sub: Subscription, expires: int) -> None:
        clock = self.core.clock
        if sub.timer is not None:
            clock.cancel(sub.timer)
        sub.expires_at = clock.now() + expires
        sub.timer = clock.call_later(expires, self._expired, sub)

    def _remove(self, sub: Subscription) -> None:
        if self._subs.pop(sub.key, None) is None:
            return
        if sub.timer is not None:
            self.core.clock.cancel(sub.timer)
            sub.timer = None
        mine = self._by_user.get(sub.user)
        if mine is not None:
            if sub in mine:
                mine.remove(sub)
            if not mine:
                del self._by_user[sub.user]

    def _expired(self, sub: Subscription) -> None:
        sub.timer = None
        if self._subs.get(sub.key) is not sub:
            return
        self._remove(sub)
        self.stats["terminated"] += 1
        log.info("MWI: subscription of %s expired", sub.user)
        self._notify(sub, terminated=True)

    def close(self) -> None:
        """Forget every subscription (server stop); phones re-subscribe."""
        for sub in list(self._subs.values()):
            self._remove(sub)

    # -- NOTIFY -----------------------------------------------------------------------------
    def counts_changed(self, user: str, new: int, old: int) -> None:
        """The voicemail service's listener: NOTIFY every subscription of ``user``."""
        for sub in list(self._by_user.get(user, ())):
            self._notify(sub, counts=(new, old))

    def _notify(
        self, sub: Subscription, *, terminated: bool = False, counts: tuple[int, int] | None = None
    ) -> None:
        new, old = counts if counts is not None else self.counts(sub.user)
        if terminated:
            state = "terminated;reason=timeout"
        else:
            left = max(0, round(sub.expires_at - self.core.clock.now()))
            state = f"active;expires={left}"
        body = summary_body(sub.account, new, old)
        request = self._request(sub, state, body)
        self.stats["notifies"] += 1
        self.core.send_request(request, sub.target, lambda resp, txn: self._on_response(sub, resp))

    def _request(self, sub: Subscription, state: str, body: bytes) -> Request:
        target = sub.target
        lhost, lport = self.local_address(target.transport, target.host)
        lh = f"[{lhost}]" if ":" in lhost else lhost
        sub.cseq += 1
        headers: list[tuple[str, str]] = [
            (
                "Via",
                f"SIP/2.0/{target.transport.upper()} {lh}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport",
            ),
            ("Max-Forwards", "70"),
            ("From", f"<{sub.local_uri}>;tag={sub.local_tag}"),
            ("To", sub.remote),
            ("Call-ID", sub.call_id),
            ("CSeq", f"{sub.cseq} NOTIFY"),
            (
                "Contact",
                f"<sip:mss@{lh}:{lport}{'' if target.transport == 'udp' else ';transport=' + target.transport}>",
            ),
            ("Event", sub.event),
            ("Subscription-State", state),
            ("User-Agent", self.server_name),
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(len(body))),
        ]
        return Request("NOTIFY", sub.remote_target, headers, body)

    def _on_response(self, sub: Subscription, resp: Response) -> None:
        if resp.status < 400:
            return
        # RFC 6665 §4.2.2: 481, a local 408/503 or another failure: the subscriber no longer
        # has this subscription
        if self._subs.get(sub.key) is sub:
            self._remove(sub)
            self.stats["terminated"] += 1
            log.info("MWI: subscription of %s ended: NOTIFY answered %d", sub.user, resp.status)

    # -- helpers ----------------------------------------------------------------------------
    def _account(self, number: str, host: str | None) -> str:
        """The Message-Account URI: the user at the configured domain, else at the host the
        phone subscribed to."""
        domain = self.domain() or host or "localhost"
        if ":" in domain and not domain.startswith("["):
            domain = f"[{domain}]"
        return f"sip:{number}@{domain}"

    def _our_contact(self, ctx: RequestContext) -> str:
        source = ctx.source
        lhost, lport = self.local_address(source.transport, source.host)
        lh = f"[{lhost}]" if ":" in lhost else lhost
        tparam = "" if source.transport == "udp" else f";transport={source.transport}"
        return f"<sip:mss@{lh}:{lport}{tparam}>"

    @staticmethod
    def _flow(ctx: RequestContext) -> Target:
        s = ctx.source
        return Target(s.transport, s.host, s.port, conn=s.conn, listener=s.listener)
