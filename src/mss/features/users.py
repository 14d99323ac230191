"""Local users: the directory the registrar, authentication and calls read on every request.

Users live in storage (``UserRepo``); the directory keeps all of them in memory (a PBX has
thousands, not millions) so the hot path never waits for the database, and reloads the ones the
change feed reports — which is how a ``mss user add`` in another process takes effect in the
running server within a second.

Passwords are never stored: on add/set the directory computes the digest HA1 for every
supported algorithm (RFC 3261 §22.4, RFC 7616) for the configured realm. Changing the realm
therefore requires setting the passwords again (the old HA1s no longer verify).

IP address authorization (miniSIPServer): a user may list addresses (``IP``, ``CIDR``,
``IP:PORT``, ``[IPv6]:PORT``; the port defaults to 5060 for calls sent to the user). Requests
from a listed address whose From user is that user are accepted without a challenge, and the
user counts as online there.

Per-user call settings kept in ``UserRecord.extra``: ``no_answer_timeout`` (seconds a call to
the user rings before it is released with 480; absent = the system value), set with the
``no_answer_timeout=`` field of :meth:`UserDirectory.add` / :meth:`UserDirectory.update`.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from fastsip.digest import ALGORITHMS, ha1

from ..errors import MssError
from ..storage.base import Storage, UserRecord

__all__ = ("IpGrant", "UserDirectory", "UserError", "parse_allow_ip")

NUMBER_RE = re.compile(r"^[0-9A-Za-z_.+\-]{1,64}$")


class UserError(MssError):
    """A user operation with bad input; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IpGrant:
    """One IP-authorization entry of a user."""

    __slots__ = ("exact", "network", "number", "port", "text")

    def __init__(
        self,
        network: ipaddress.IPv4Network | ipaddress.IPv6Network,
        port: int | None,
        number: str,
        text: str,
    ) -> None:
        self.network = network
        self.port = port
        self.number = number
        self.text = text
        #: the canonical text of a single-address grant (a fast path before parsing the source)
        self.exact = str(network.network_address) if network.num_addresses == 1 else None

    @property
    def host(self) -> str | None:
        """The single address of a /32 or /128 grant (where calls to the user are sent)."""
        return self.exact  # the same text, formatted once (asked on every call to the user)


def parse_allow_ip(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """Parse ``IP``, ``CIDR``, ``IP:PORT`` or ``[IPv6]:PORT``.

    Raises:
        ValueError: not one of those forms.
    """
    t = text.strip()
    port: int | None = None
    if t.startswith("["):
        close = t.find("]")
        if close < 0:
            raise ValueError(f"bad address {text!r}")
        rest = t[close + 1 :]
        t = t[1:close]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"bad port in {text!r}")
            port = int(rest[1:])
    elif t.count(":") == 1:
        t, _, p = t.partition(":")
        if not p.isdigit():
            raise ValueError(f"bad port in {text!r}")
        port = int(p)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"bad port in {text!r}")
    try:
        net = ipaddress.ip_network(t, strict=False)
    except ValueError as e:
        raise ValueError(f"bad address {text!r}: {e}") from None
    return net, port


class UserDirectory:
    """All local users in memory, backed by storage, reloaded from the change feed."""

    def __init__(self, storage: Storage, *, realm: str) -> None:
        self.storage = storage
        self.realm = realm
        self._users: dict[str, UserRecord] = {}
        #: IP grants per user number, most specific first. A request is IP-authorized only as
        #: its From user, so ``ip_user`` looks at that user's grants alone (no scan of all).
        self._grants: dict[str, list[IpGrant]] = {}
        #: parsed source addresses (a few distinct hosts send most requests); bounded
        self._addresses: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}

    # -- loading ----------------------------------------------------------------------------
    async def load(self) -> None:
        users = await self.storage.users.list()
        self._users = {u.number: u for u in users}
        self._grants = {}
        for user in users:
            self._index_grants(user.number)

    async def reload(self, numbers: Iterable[str]) -> None:
        """Reload the given users from storage (after change-feed notifications)."""
        for number in set(numbers):
            user = await self.storage.users.get(number)
            if user is None:
                self._users.pop(number, None)
            else:
                self._users[number] = user
            self._index_grants(number)

    def _index_grants(self, number: str) -> None:
        """Recompute the IP grants of one user (after it was loaded, changed or removed)."""
        user = self._users.get(number)
        grants = []
        if user is not None:
            for text in user.allow_ips:
                try:
                    net, port = parse_allow_ip(text)
                except ValueError:
                    continue
                grants.append(IpGrant(net, port, number, text))
        if grants:
            grants.sort(key=lambda g: -g.network.prefixlen)  # most specific first
            self._grants[number] = grants
        else:
            self._grants.pop(number, None)

    # -- queries (hot path) -----------------------------------------------------------------
    def get(self, number: str) -> UserRecord | None:
        return self._users.get(number)

    def __len__(self) -> int:
        return len(self._users)

    def all(self) -> list[UserRecord]:
        return sorted(self._users.values(), key=lambda u: u.number)

    def ip_user(self, host: str, port: int, from_user: str | None) -> UserRecord | None:
        """The user IP-authorized for a request from ``host:port`` with this From user."""
        if from_user is None:
            return None
        grants = self._grants.get(from_user)
        if grants is None:
            return None
        for g in grants:  # the common case: a single address, as the socket spells it
            if g.exact == host and (g.port is None or g.port == port):
                return self._users.get(from_user)
        addr = self._address(host)
        if addr is None:
            return None
        for g in grants:
            if addr in g.network and (g.port is None or g.port == port):
                return self._users.get(from_user)
        return None

    def _address(self, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        cache = self._addresses
        try:
            return cache[host]
        except KeyError:
            pass
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            addr = None
        if len(cache) >= 4096:
            cache.clear()
        cache[host] = addr
        return addr

    def grants_for(self, number: str) -> list[IpGrant]:
        return list(self._grants.get(number, ()))

    # -- administration (CLI, API) ----------------------------------------------------------
    def _ha1s(self, number: str, password: str) -> dict[str, str]:
        return {alg: ha1(number, self.realm, password, alg) for alg in ALGORITHMS}

    @staticmethod
    def validate_fields(fields: dict[str, Any]) -> None:
        """Check admin-supplied fields; raises UserError naming the first bad one."""
        if "number" in fields and not NUMBER_RE.match(str(fields["number"])):
            raise UserError("number", "1-64 characters of 0-9 A-Z a-z _ . + -")
        if "password" in fields:
            pw = fields["password"]
            if not isinstance(pw, str) or not 4 <= len(pw) <= 128:
                raise UserError("password", "must be 4 to 128 characters")
        if "name" in fields and (
            not isinstance(fields["name"], str)
            or len(fields["name"]) > 128
            or any(c in fields["name"] for c in '\r\n"')
        ):
            raise UserError("name", "at most 128 characters, no quotes or line breaks")
        if "max_devices" in fields:
            v = fields["max_devices"]
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 32:
                raise UserError("max_devices", "must be 1 to 32")
        if "no_answer_timeout" in fields and fields["no_answer_timeout"] is not None:
            v = fields["no_answer_timeout"]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 3600:
                raise UserError(
                    "no_answer_timeout", "must be 0 to 3600 seconds (0 = the system timer)"
                )
        for key in ("max_calls", "max_outgoing"):
            if key in fields and fields[key] is not None:
                v = fields[key]
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10000:
                    raise UserError(key, "must be 0 to 10000 (or unset for unlimited)")
        if "allow_ips" in fields:
            for i, text in enumerate(fields["allow_ips"]):
                try:
                    parse_allow_ip(text)
                except ValueError as e:
                    raise UserError(f"allow_ip[{i}]", str(e)) from None

    async def add(self, number: str, password: str, **fields: Any) -> UserRecord:
        """Create a user. Raises UserError (bad field or already exists)."""
        self.validate_fields({"number": number, "password": password, **fields})
        now = time.time()
        allow = tuple(fields.pop("allow_ips", ()))
        if "no_answer_timeout" in fields:
            fields["extra"] = _with_no_answer(
                dict(fields.get("extra") or {}), fields.pop("no_answer_timeout")
            )
        user = UserRecord(
            number=number,
            ha1=self._ha1s(number, password),
            realm=self.realm,
            allow_ips=allow,
            created_at=now,
            updated_at=now,
            **fields,
        )
        from ..storage.errors import AlreadyExists

        try:
            await self.storage.users.add(user)
        except AlreadyExists:
            raise UserError("number", f"user {number} already exists") from None
        self._users[number] = user
        self._index_grants(number)
        return user

    async def update(
        self, number: str, *, password: str | None = None, **fields: Any
    ) -> UserRecord:
        """Change a user. Raises UserError (bad field or no such user)."""
        self.validate_fields({**fields, **({"password": password} if password is not None else {})})
        user = await self.storage.users.get(number)
        if user is None:
            raise UserError("number", f"no user {number}")
        changes: dict[str, Any] = dict(fields)
        if "no_answer_timeout" in changes:
            base = changes.get("extra", user.extra) or {}
            changes["extra"] = _with_no_answer(dict(base), changes.pop("no_answer_timeout"))
        if "allow_ips" in changes:
            changes["allow_ips"] = tuple(changes["allow_ips"])
        if password is not None:
            changes["ha1"] = self._ha1s(number, password)
            changes["realm"] = self.realm
        changes["updated_at"] = time.time()
        new = replace(user, **changes)
        await self.storage.users.update(new)
        self._users[number] = new
        self._index_grants(number)
        return new

    async def delete(self, number: str) -> bool:
        ok = await self.storage.users.delete(number)
        self._users.pop(number, None)
        self._index_grants(number)
        return bool(ok)


def _with_no_answer(extra: dict[str, Any], seconds: int | None) -> dict[str, Any]:
    """The per-user no-answer timer lives in ``extra["no_answer_timeout"]``; 0/None removes it."""
    if seconds:
        extra["no_answer_timeout"] = int(seconds)
    else:
        extra.pop("no_answer_timeout", None)
    return extra


def sorted_numbers(users: Sequence[UserRecord]) -> list[str]:
    return [u.number for u in sorted(users, key=lambda u: u.number)]
