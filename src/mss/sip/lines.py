"""Registration of the external lines to their providers: the REGISTER client (RFC 3261 §10.2).

Theory of operation
-------------------
:class:`LineRegistrations` keeps one :class:`_Session` per enabled line whose ``register`` is
on. A session is a small state machine driven by the responses of its REGISTER client
transactions (:meth:`SipCore.send_request`) and by one timer on the server clock:

1. **Attempt.** A REGISTER goes to the line's target (:func:`~mss.features.lines.line_target`:
   the outbound proxy / "Via" address when configured, else the domain; a name is resolved to
   an address first). The Request-URI is ``sip:<domain>`` and To/From are
   ``sip:<account>@<domain>`` whatever the target (IMS: the domain may be unreachable), the
   Contact is ``sip:<contact user>@<our address>`` on the listener of the line's transport.
2. **Challenge.** 401/407 are answered once per nonce with ``Authorization`` /
   ``Proxy-Authorization`` (:func:`fastsip.digest.pick_challenge` chooses among MD5, SHA-256,
   SHA-512-256; the user name is :func:`~mss.features.lines.auth_username`). A second challenge
   after our credentials fails the attempt ("credentials rejected") unless it says
   ``stale=true`` (RFC 7616 §3.3: retry with the new nonce).
3. **Call-ID policy.** ``same`` (RFC 3261 §10.2.4): one Call-ID per session, CSeq + 1 for each
   REGISTER, the answer to a challenge included. ``new``: every REGISTER, the answer to a
   challenge included, gets a new Call-ID and From tag (providers that reject a reused Call-ID
   with ``400 Invalid CSeq number``).
4. **423** (RFC 3261 §10.3 step 7): the attempt is repeated with the ``Min-Expires`` asked for
   (at most three times), and the larger expiry is kept for the session's later REGISTERs.
5. **2xx.** The granted expiry is our Contact's ``expires`` parameter, else the Expires header,
   else what we asked. The line is ``registered`` and a refresh is scheduled at
   :func:`~mss.features.lines.refresh_delay` (85 % of the expiry by default).
6. **Failure** (any other final status, a local 408 timeout or 503 transport failure, an
   unresolvable name, a challenge we cannot answer): the line is ``failed`` with the status and
   reason (``P-Registrar-Error`` / ``Warning`` text included) and a retry is scheduled with
   exponential backoff (:func:`~mss.features.lines.retry_delay`, Retry-After honoured).
   A session is therefore always either waiting for a response, waiting for its refresh, or
   waiting for its retry: it never stops silently.

Each attempt has a generation number; responses to an older generation (a line edited or
"register now" while a REGISTER was in flight) are ignored. A line whose account, domain,
proxy, transport or Contact user changed is first unregistered (``Expires: 0``) with its old
settings; other edits (password, expiry...) just re-register. Deleting or disabling a line,
turning ``register`` off and stopping the server unregister it (bounded wait).

Not done here: RFC 3263 SRV/NAPTR lookups (names are resolved to A/AAAA only), RFC 5626
outbound flows, learning our public address from ``received``/``rport`` behind NAT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any

from fastsip import ParseError
from fastsip.digest import client_authorization, pick_challenge
from fastsip.message import Request, Response

from ..features.lines import (
    LineService,
    LineState,
    aor_domain,
    auth_username,
    line_target,
    refresh_delay,
    request_uri,
    retry_delay,
)
from ..storage.base import LineRecord
from .addressing import Target
from .core import SipCore

__all__ = ("LineRegistrations", "line_authorization")

log = logging.getLogger("mss.lines")

LocalAddress = Callable[[str, str], tuple[str, int]]
Resolver = Callable[[str, int, str], Any]  # async (host, port, transport) -> ip

#: fields whose change makes a new registration identity (unregister the old one first)
_IDENTITY = ("account", "domain", "proxy", "transport", "contact_user")
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, NOTIFY"
_MAX_AUTH_ROUNDS = 3
_MAX_423 = 3


def _token(n: int = 8) -> str:
    return secrets.token_hex(n)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_local(resp: Response) -> bool:
    """True for the 408/503 the core generates itself (never parsed from the network)."""
    return resp.modified and resp.status in (408, 503) and resp.get("Server") is None


def _reason_of(resp: Response, target: str) -> str:
    if _is_local(resp):
        if resp.status == 408:
            return f"no response from {target} (timeout)"
        return f"cannot send to {target} (transport failure)"
    text = f"{resp.status} {resp.reason}".strip()
    extra = [v for v in (resp.get("P-Registrar-Error"), resp.get("Warning")) if v]
    if extra:
        text += " (" + "; ".join(extra) + ")"
    return text


def _int_header(resp: Response, name: str) -> int | None:
    value = resp.get(name)
    if value is None:
        return None
    value = value.split(";", 1)[0].split("(", 1)[0].strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


def line_authorization(
    line: LineRecord, request: Request, response: Response
) -> tuple[str, str, bool] | None:
    """The credentials answering a 401/407 to ``request`` sent on behalf of ``line``.

    Used for the line's REGISTERs and, by the B2BUA, for its calls through the line (RFC 3261
    §22.2; the challenge is chosen by :func:`fastsip.digest.pick_challenge`; the user name is
    :func:`~mss.features.lines.auth_username`; qop ``auth`` preferred).

    Returns:
        ``(header name, value, stale)``: ``Authorization`` for a 401, ``Proxy-Authorization`` for
        a 407; ``value`` is ``""`` when the challenge cannot be answered (a malformed parameter);
        ``stale`` is the challenge's ``stale=true``. None when no usable Digest challenge.

    Raises:
        ParseError: a malformed challenge header.
    """
    www = response.status == 401
    values = response.www_authenticate if www else response.proxy_authenticate
    chosen = pick_challenge([v.params for v in values if v.scheme.lower() == "digest"])
    if chosen is None:
        return None
    stale = str(chosen.get("stale", "")).lower() == "true"
    qop_offer = chosen.get("qop")
    qop: str | None = None
    if qop_offer is not None:
        offered = [q.strip().lower() for q in qop_offer.split(",")]
        qop = "auth" if "auth" in offered else "auth-int"
    header = "Authorization" if www else "Proxy-Authorization"
    try:
        value = client_authorization(
            username=auth_username(line),
            realm=chosen["realm"],
            password=line.password,
            method=request.method,
            uri=request.uri_text,
            nonce=chosen["nonce"],
            algorithm=chosen.get("algorithm") or "MD5",
            qop=qop,
            opaque=chosen.get("opaque"),
            body=request.body,
        )
    except ValueError:
        return header, "", stale
    return header, value, stale


class _Attempt:
    """One registration attempt: the REGISTERs sent until a final outcome."""

    __slots__ = ("auth", "done", "expires", "gen", "n423", "rounds", "unregister")

    def __init__(self, gen: int, expires: int, *, unregister: bool = False) -> None:
        self.gen = gen
        self.expires = expires
        self.unregister = unregister
        self.rounds = 0  # credentials sent in this attempt
        self.n423 = 0
        self.auth: tuple[str, str] | None = None  # (header name, value) to send
        self.done: asyncio.Future[bool] | None = None


class _Session:
    """The registration of one line."""

    def __init__(self, owner: LineRegistrations, line: LineRecord) -> None:
        self.owner = owner
        self.line = line
        self.gen = 0
        self.attempt: _Attempt | None = None
        self.timer: Any = None
        self.call_id = self._new_call_id()
        self.tag = _token(4)
        self.cseq = 0
        self.min_expires = 0
        self.registered = False  # the provider holds a binding of ours (we got a 2xx)
        self.contact = ""
        self.target: Target | None = None
        self.target_text = ""
        self.closed = False
        self.task: asyncio.Future[Any] | None = None

    @property
    def service(self) -> LineService:
        return self.owner.service

    def _new_call_id(self) -> str:
        return f"{_token(10)}@mss"

    # -- timers -------------------------------------------------------------------------------
    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.owner.clock.cancel(self.timer)
            self.timer = None

    def _schedule(self, delay: float, why: str) -> None:
        self._cancel_timer()
        self.timer = self.owner.clock.call_later(delay, self._fire, why)

    def _fire(self, why: str) -> None:
        self.timer = None
        if not self.closed:
            self.start(why)

    # -- attempts -----------------------------------------------------------------------------
    def start(self, why: str) -> None:
        """Begin a new attempt (first registration, retry, refresh, register-now)."""
        if self.closed:
            return
        self._cancel_timer()
        self.gen += 1
        refresh = why == "refresh"
        if not refresh:
            self.service.set_state(self.line.id, LineState.REGISTERING, reason=why)
        attempt = _Attempt(self.gen, max(self.line.expires, self.min_expires))
        self.attempt = attempt
        self._spawn(self._send_first(attempt, resolve=True))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.task = task
        task.add_done_callback(self._task_done)

    @staticmethod
    def _task_done(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("line registration task failed", exc_info=task.exception())

    async def _send_first(self, attempt: _Attempt, *, resolve: bool) -> None:
        if resolve or self.target is None:
            try:
                await self._resolve()
            except OSError as exc:
                if attempt is self.attempt and not attempt.unregister:
                    host = line_target(self.line)[1]
                    self._fail(None, f"cannot resolve {host}: {exc.strerror or exc}")
                elif attempt.done is not None and not attempt.done.done():
                    attempt.done.set_result(False)
                return
        if attempt is not self.attempt:
            return
        self._send(attempt)

    async def _resolve(self) -> None:
        transport, host, port = line_target(self.line)
        self.target_text = f"{transport}:{host}:{port}"
        if _is_ip(host):
            ip = host
        else:
            ip = await self.owner.resolve(host, port, transport)
        self.target = Target(transport, ip, port)

    def _send(self, attempt: _Attempt) -> None:
        target = self.target
        assert target is not None
        line = self.line
        owner = self.owner
        if owner.service.new_call_id(line):
            self.call_id = self._new_call_id()
            self.tag = _token(4)
        self.cseq += 1
        lhost, lport = owner.local_address(target.transport, target.host)
        hp = f"[{lhost}]" if ":" in lhost else lhost
        user = line.contact_user or line.account
        tparam = "" if target.transport == "udp" else f";transport={target.transport}"
        self.contact = f"<sip:{user}@{hp}:{lport}{tparam}>"
        aor = f"sip:{line.account}@{aor_domain(line)}"
        ruri = request_uri(line)
        headers = [
            (
                "Via",
                f"SIP/2.0/{target.transport.upper()} {hp}:{lport};branch=z9hG4bK{_token()};rport",
            ),
            ("Max-Forwards", str(owner.max_forwards)),
            ("From", f"<{aor}>;tag={self.tag}"),
            ("To", f"<{aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", self.contact),
            ("Expires", str(attempt.expires)),
            ("Allow", _ALLOW),
            ("User-Agent", owner.server_name),
        ]
        if attempt.auth is not None:
            headers.append(attempt.auth)
        headers.append(("Content-Length", "0"))
        request = Request("REGISTER", ruri, headers)
        status = self.service.status(line.id)
        if status is not None:
            status.call_id = self.call_id
        log.debug(
            "line %s: REGISTER cseq %d expires %d to %s",
            line.id,
            self.cseq,
            attempt.expires,
            target,
        )

        def on_response(resp: Response, txn: Any) -> None:
            self._on_response(attempt, request, resp)

        owner.core.send_request(request, target, on_response)

    # -- responses ----------------------------------------------------------------------------
    def _on_response(self, attempt: _Attempt, request: Request, resp: Response) -> None:
        if attempt is not self.attempt or resp.status < 200:
            return
        try:
            self._handle(attempt, request, resp)
        except ParseError as exc:
            self._finish_failure(attempt, resp.status, f"malformed {resp.status} response: {exc}")

    def _handle(self, attempt: _Attempt, request: Request, resp: Response) -> None:
        status = resp.status
        if 200 <= status < 300:
            self._success(attempt, request, resp)
            return
        if status in (401, 407) and not _is_local(resp):
            self._challenge(attempt, request, resp)
            return
        if status == 423 and not attempt.unregister:
            wanted = _int_header(resp, "Min-Expires")
            if wanted is not None and wanted > attempt.expires and attempt.n423 < _MAX_423:
                attempt.n423 += 1
                log.info(
                    "line %s: 423, registering again with Min-Expires %d", self.line.id, wanted
                )
                self.min_expires = wanted
                attempt.expires = wanted
                attempt.auth = None
                attempt.rounds = 0
                self._send(attempt)
                return
            self._finish_failure(
                attempt, status, _reason_of(resp, self.target_text) + " (Min-Expires not usable)"
            )
            return
        retry_after = _int_header(resp, "Retry-After") if not _is_local(resp) else None
        self._finish_failure(attempt, status, _reason_of(resp, self.target_text), retry_after)

    def _challenge(self, attempt: _Attempt, request: Request, resp: Response) -> None:
        reason = _reason_of(resp, self.target_text)
        answer = line_authorization(self.line, request, resp)
        if answer is None:
            self._finish_failure(attempt, resp.status, reason + " (no usable digest challenge)")
            return
        header, value, stale = answer
        if attempt.rounds >= 1 and not stale:
            self._finish_failure(attempt, resp.status, reason + " (credentials rejected)")
            return
        if attempt.rounds >= _MAX_AUTH_ROUNDS:
            self._finish_failure(attempt, resp.status, reason + " (too many challenges)")
            return
        if not value:
            self._finish_failure(attempt, resp.status, reason + " (cannot answer the challenge)")
            return
        attempt.rounds += 1
        attempt.auth = (header, value)
        self._send(attempt)

    def _success(self, attempt: _Attempt, request: Request, resp: Response) -> None:
        if attempt.unregister:
            self.registered = False
            self._finish(attempt, True)
            return
        granted = self._granted(request, resp, attempt.expires)
        if granted <= 0:
            self._finish_failure(
                attempt, resp.status, f"{resp.status} {resp.reason} but no expiry granted"
            )
            return
        self.registered = True
        wall = self.service.wall()
        self.service.set_state(
            self.line.id,
            LineState.REGISTERED,
            status=resp.status,
            reason=f"{resp.status} {resp.reason}, expires {granted} s",
            registered_until=wall + granted,
            expires=granted,
            call_id=self.call_id,
        )
        delay = refresh_delay(granted, self.owner.service.config.refresh_ratio)
        self.attempt = None
        self._schedule(delay, "refresh")
        self._finish(attempt, True)

    def _granted(self, request: Request, resp: Response, asked: int) -> int:
        mine = request.contact
        header = resp.expires
        if mine is not None:
            for contact in resp.contacts:
                u, m = contact.uri, mine.uri
                if (
                    (u.host or "").lower() == (m.host or "").lower()
                    and u.port == m.port
                    and u.user == m.user
                ):
                    value = contact.params.get("expires")
                    if value is not None and value.strip().isdigit():
                        return int(value)
                    break
        return header if header is not None else asked

    def _finish_failure(
        self, attempt: _Attempt, status: int | None, reason: str, retry_after: int | None = None
    ) -> None:
        if attempt.unregister:
            log.info("line %s: unregistration failed: %s", self.line.id, reason)
            self._finish(attempt, False)
            return
        self._fail(status, reason, retry_after)
        self._finish(attempt, False)

    def _fail(self, status: int | None, reason: str, retry_after: int | None = None) -> None:
        self.attempt = None
        st = self.service.status(self.line.id)
        failures = (st.failures if st is not None else 0) + 1
        cfg = self.service.config
        delay = retry_delay(failures, cfg.retry_min, cfg.retry_max, retry_after)
        self.service.set_state(
            self.line.id,
            LineState.FAILED,
            status=status,
            reason=reason,
            next_retry=self.service.wall() + delay,
            call_id=self.call_id,
        )
        self._schedule(delay, "retry")

    @staticmethod
    def _finish(attempt: _Attempt, ok: bool) -> None:
        if attempt.done is not None and not attempt.done.done():
            attempt.done.set_result(ok)

    # -- unregistration -----------------------------------------------------------------------
    async def close(self, *, unregister: bool, reason: str, timeout: float) -> None:
        """Stop the session; remove our binding first when asked and we hold one."""
        self._cancel_timer()
        self.gen += 1
        self.attempt = None
        if unregister and self.registered and self.target is not None:
            attempt = _Attempt(self.gen, 0, unregister=True)
            attempt.done = asyncio.get_running_loop().create_future()
            self.attempt = attempt
            self._send(attempt)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(attempt.done), timeout)
        self.closed = True
        self.attempt = None
        self._cancel_timer()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.service.set_state(self.line.id, LineState.UNREGISTERED, reason=reason)


class LineRegistrations:
    """Registers every enabled external line and keeps it registered.

    Args:
        core: the SIP core (client transactions).
        clock: the server clock (``call_later`` / ``cancel``).
        service: the line policy and state (:class:`~mss.features.lines.LineService`).
        local_address: ``(transport, remote host) -> (our host, our port)`` for Via/Contact.
        server_name: the User-Agent.
        max_forwards: Max-Forwards of our REGISTERs.
        resolve: ``async (host, port, transport) -> ip``; default: the loop's getaddrinfo.
    """

    def __init__(
        self,
        *,
        core: SipCore,
        clock: Any,
        service: LineService,
        local_address: LocalAddress,
        server_name: str = "mss",
        max_forwards: int = 70,
        resolve: Resolver | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        self.service = service
        self.local_address = local_address
        self.server_name = server_name
        self.max_forwards = max_forwards
        self._resolve = resolve
        self.sessions: dict[str, _Session] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._chains: dict[str, asyncio.Future[Any]] = {}
        self.stopped = False

    async def resolve(self, host: str, port: int, transport: str) -> str:
        if self._resolve is not None:
            return str(await self._resolve(host, port, transport))
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        infos = await loop.getaddrinfo(host, port, type=kind)
        if not infos:
            raise OSError(f"no address for {host}")
        infos.sort(key=lambda i: i[0] != socket.AF_INET)  # prefer IPv4, like the listeners
        return str(infos[0][4][0])

    @staticmethod
    def wanted(line: LineRecord | None) -> bool:
        return line is not None and line.enabled and line.register

    @staticmethod
    def _why_not(line: LineRecord | None) -> str:
        if line is None:
            return "deleted"
        if not line.enabled:
            return "line disabled"
        return "registration off"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the registration of every line that wants one."""
        for line in self.service.lines():
            if self.wanted(line):
                self._open(line, "server start")
            else:
                self.service.set_state(line.id, LineState.UNREGISTERED, reason=self._why_not(line))

    def _open(self, line: LineRecord, why: str) -> None:
        session = _Session(self, line)
        self.sessions[line.id] = session
        session.start(why)

    def apply(self, changes: Iterable[tuple[LineRecord | None, LineRecord | None]]) -> None:
        """Follow edits of lines (from :meth:`LineService.reload`)."""
        for old, new in changes:
            line_id = (new or old).id  # type: ignore[union-attr]
            self._chain(line_id, self._change(line_id, old, new))

    def _chain(self, line_id: str, coro: Any) -> None:
        """Run the changes of one line one after the other."""
        previous = self._chains.get(line_id)

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await previous
            await coro

        task = asyncio.ensure_future(run())
        self._chains[line_id] = task
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _change(self, line_id: str, old: LineRecord | None, new: LineRecord | None) -> None:
        if self.stopped:
            return
        session = self.sessions.get(line_id)
        if not self.wanted(new):
            if session is not None:
                del self.sessions[line_id]
                await session.close(unregister=True, reason=self._why_not(new), timeout=2.0)
            else:
                self.service.set_state(line_id, LineState.UNREGISTERED, reason=self._why_not(new))
            if new is None:
                self.service.forget(line_id)
            return
        assert new is not None
        if (
            session is not None
            and old is not None
            and any(getattr(old, f) != getattr(new, f) for f in _IDENTITY)
        ):
            del self.sessions[line_id]
            await session.close(unregister=True, reason="settings changed", timeout=2.0)
            session = None
        if session is None or session.closed:
            self._open(new, "settings changed" if old is not None else "line added")
            return
        session.line = new
        session.start("settings changed")

    # -- hooks for the B2BUA (calls through lines) -----------------------------------------
    def registered_contact(self, line_id: str) -> str | None:
        """The Contact the line is registered with at its provider (None: not registered)."""
        session = self.sessions.get(line_id)
        return session.contact if session is not None and session.registered else None

    def line_for_incoming(self, user: str | None, host: str, port: int) -> LineRecord | None:
        """The line a request from outside belongs to, or None.

        A candidate comes from the host the line registers to (its proxy or registrar, as
        resolved). Among candidates, the one whose Contact user or account is the Request-URI
        user wins (the same port preferred); otherwise the single candidate whose port is the
        source port. A request from the provider's host with neither the line's user nor its
        port is not the line's (on a shared host, e.g. a NAT or loopback, local phones are
        not taken for the provider).
        """
        matches = [
            s for s in self.sessions.values() if s.target is not None and s.target.host == host
        ]
        if not matches:
            return None
        if user:
            named = [
                s
                for s in matches
                if user in (s.line.contact_user or s.line.account, s.line.account)
            ]
            if named:
                named.sort(key=lambda s: s.target is None or s.target.port != port)
                return named[0].line
        same_port = [s for s in matches if s.target is not None and s.target.port == port]
        return same_port[0].line if len(same_port) == 1 else None

    def call_target(self, line: LineRecord) -> tuple[str, str, int] | None:
        """Where calls through ``line`` go: ``(transport, ip, port)`` of its registration's
        resolved target (proxy or domain); an IP target without a session; else None."""
        session = self.sessions.get(line.id)
        if session is not None and session.target is not None:
            t = session.target
            return t.transport, t.host, t.port
        transport, host, port = line_target(line)
        return (transport, host, port) if _is_ip(host) else None

    def authorize(
        self, credentials: str, request: Request, response: Response
    ) -> tuple[str, str, bool] | None:
        """:func:`line_authorization` for the B2BUA's legs marked ``"line:<id>"``."""
        kind, _, line_id = credentials.partition(":")
        line = self.service.get(line_id) if kind == "line" else None
        if line is None:
            return None
        try:
            return line_authorization(line, request, response)
        except ParseError:
            return None

    def register_now(self, line_id: str) -> bool:
        """Start a new attempt at once (``mss line register-now``). False: no such session."""
        session = self.sessions.get(line_id)
        if session is None:
            return False
        session.start("register-now")
        return True

    async def stop(self, *, unregister: bool = True, timeout: float = 2.0) -> None:
        """Stop every session; send ``Expires: 0`` for the registered ones (bounded wait)."""
        self.stopped = True
        for task in list(self._pending):
            task.cancel()
        sessions = list(self.sessions.values())
        self.sessions.clear()
        if sessions:
            await asyncio.gather(
                *(
                    s.close(unregister=unregister, reason="server stopping", timeout=timeout)
                    for s in sessions
                ),
                return_exceptions=True,
            )
