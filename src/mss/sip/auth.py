"""Digest authentication of requests from users (RFC 3261 §22, RFC 7616 / RFC 8760).

Challenges offer SHA-256 first and MD5 second (one ``WWW-Authenticate`` / ``Proxy-Authenticate``
header each, ``qop="auth"``). Nonces are self-validating (HMAC over a timestamp with the server
secret, :class:`fastsip.digest.NonceFactory`), so no per-nonce state is kept except the highest
nonce count accepted (replays are rejected).

No enumeration: the response to a request depends only on whether its credentials verify. An
unknown user is verified against a dummy HA1 (same work, same timing) and fails exactly like a
wrong password: the same status, headers and reason phrase, only the nonce differs. A failed
credential gets ``auth.failed_response`` (401 with a fresh challenge by default, or 403).

Outcome of :meth:`Authenticator.authenticate`: the authenticated :class:`UserRecord`, or None
after the authenticator has answered the request itself (challenge or failure). Failures and
successes are reported to the security policy (fail-to-ban).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from fastsip.digest import (
    ALGORITHMS,
    NonceCounter,
    NonceFactory,
    NonceStatus,
    challenge_values,
    dummy_ha1,
    parse_nc,
    verify_response,
)

from ..features.decisions import DecisionSink
from ..features.users import UserDirectory
from ..storage.base import UserRecord
from .core import RequestContext

__all__ = ("AuthEvents", "Authenticator")

_KNOWN_ALGORITHMS = (
    "MD5",
    "SHA-256",
    "SHA-512-256",
    "MD5-sess",
    "SHA-256-sess",
    "SHA-512-256-sess",
)


class AuthEvents(Protocol):
    """Where authentication results go (the fail-to-ban policy)."""

    def auth_failed(self, host: str, username: str, now: float) -> None: ...

    def auth_succeeded(self, host: str, now: float) -> None: ...


class _NoEvents:
    def auth_failed(self, host: str, username: str, now: float) -> None:
        return None

    def auth_succeeded(self, host: str, now: float) -> None:
        return None


class Authenticator:
    """Challenges and verifies digest credentials against the user directory."""

    def __init__(
        self,
        users: UserDirectory,
        *,
        realm: str,
        secret: bytes,
        nonce_lifetime: float = 300.0,
        failed_response: int = 401,
        algorithms: Sequence[str] = ALGORITHMS,
        events: AuthEvents | None = None,
        wall: Callable[[], float] = time.time,
        decisions: DecisionSink | None = None,
    ) -> None:
        self.users = users
        self.realm = realm
        self.nonces = NonceFactory(secret=secret, lifetime=nonce_lifetime)
        self.counter = NonceCounter()
        self.failed_response = failed_response
        self.algorithms = tuple(algorithms)
        self.events: AuthEvents = events if events is not None else _NoEvents()
        self._wall = wall
        #: where failed credentials are recorded for ``GET /explain`` (optional)
        self.decisions = decisions
        self.stats = {"challenges": 0, "failures": 0, "successes": 0, "stale": 0}
        #: challenge values with an empty nonce, per ``stale``: only the nonce changes per
        #: challenge, so it is put into the template instead of formatting every value again
        self._templates: dict[bool, list[tuple[str, str]]] = {}

    def _challenge_values(self, nonce: str, stale: bool) -> list[str]:
        parts = self._templates.get(stale)
        if parts is None:
            values = challenge_values(self.realm, "", stale=stale, algorithms=self.algorithms)
            marker = 'nonce=""'
            if "nonce" in self.realm or not all(v.count(marker) == 1 for v in values):
                return challenge_values(self.realm, nonce, stale=stale, algorithms=self.algorithms)
            parts = self._templates[stale] = [
                (v[: v.index(marker) + 7], v[v.index(marker) + 7 :]) for v in values
            ]
        if '"' in nonce or "\\" in nonce or not nonce.isprintable():  # never from our factory
            return challenge_values(self.realm, nonce, stale=stale, algorithms=self.algorithms)
        return [head + nonce + tail for head, tail in parts]

    def challenge(self, ctx: RequestContext, *, proxy: bool, stale: bool = False) -> None:
        """Answer 401 (or 407 for proxy-style requests) with a fresh SHA-256 + MD5 challenge.

        Statelessly where the request has no transaction yet (REGISTER and other non-INVITE
        requests, RFC 3261 §8.2.7): a flood of unauthenticated requests leaves no state, and a
        retransmitted request gets a new challenge. INVITEs are challenged through their
        transaction (it retransmits the 407 until the ACK).
        """
        nonce = self.nonces.make(self._wall())
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        values = self._challenge_values(nonce, stale)
        ctx.respond_stateless(407 if proxy else 401, headers=[(name, v) for v in values])

    def _fail(
        self,
        ctx: RequestContext,
        username: str,
        *,
        proxy: bool,
        why: str = "credentials do not verify",
    ) -> None:
        self.stats["failures"] += 1
        self.events.auth_failed(ctx.source.host, username, ctx.core.clock.now())
        if self.decisions is not None:
            status = 403 if self.failed_response == 403 else (407 if proxy else 401)
            self.decisions.record(
                "auth_failure",
                ctx.source.host,
                username,
                f"digest authentication: {why}",
                f"{ctx.request.method} answered {status}",
                self._wall(),
            )
        if self.failed_response == 403:
            ctx.respond(403)
        else:
            self.challenge(ctx, proxy=proxy)

    def authenticate(self, ctx: RequestContext, *, proxy: bool = False) -> UserRecord | None:
        """Verify the request's credentials for our realm.

        Returns:
            The user, or None when the request was answered (challenge, stale challenge or
            failure response).
        """
        request = ctx.request
        creds = request.proxy_authorization if proxy else request.authorization
        params = None
        for c in creds:
            if c.scheme.lower() == "digest" and c.params.get("realm") == self.realm:
                params = c.params
                break
        if params is None:
            # No credentials for us: a challenge, not a failure (fail2ban rule).
            self.stats["challenges"] += 1
            self.challenge(ctx, proxy=proxy)
            return None
        username = params.get("username", "")
        nonce = params.get("nonce", "")
        algorithm = params.get("algorithm", "MD5")
        if algorithm not in _KNOWN_ALGORITHMS:
            algorithm_known = False
            alg_key = "MD5"
        else:
            algorithm_known = True
            alg_key = algorithm.removesuffix("-sess")
        user = self.users.get(username)
        ha1 = None
        if user is not None and user.realm == self.realm:
            ha1 = user.ha1.get(alg_key)
        known = ha1 is not None
        if ha1 is None:
            ha1 = dummy_ha1(alg_key)  # same work for unknown users (no timing oracle)
        ok = verify_response(params, method=request.method, ha1_hex=ha1, body=request.body)
        ok = ok and known and algorithm_known
        why = "wrong password"
        if ok and params.get("uri") != request.uri_text:
            ok = False  # credentials computed for another Request-URI (RFC 3261 §22.4)
            why = "credentials for another Request-URI"
        if not ok:
            if not known:
                why = "unknown user"  # for the operator's /explain only; the reply is the same
            elif not algorithm_known:
                why = f"unsupported algorithm {algorithm}"
            self._fail(ctx, username, proxy=proxy, why=why)
            return None
        status = self.nonces.check(nonce, self._wall())
        if status is NonceStatus.INVALID:
            # a nonce we did not issue (or another secret): challenge again, not a failure
            self.stats["challenges"] += 1
            self.challenge(ctx, proxy=proxy)
            return None
        if status is NonceStatus.STALE:
            self.stats["stale"] += 1
            self.challenge(ctx, proxy=proxy, stale=True)
            return None
        if "qop" in params:
            nc = parse_nc(params.get("nc", ""))
            if nc is None or nc < 1 or not self.counter.accept(nonce, nc):
                self._fail(ctx, username, proxy=proxy, why="replayed nonce count")
                return None
        self.stats["successes"] += 1
        self.events.auth_succeeded(ctx.source.host, ctx.core.clock.now())
        assert user is not None
        return user
