"""Management API tokens: creation, verification, revocation (issue 8).

Theory of operation
-------------------
A token is ``mss_<id>_<secret>``: ``id`` (10 hex digits) is public and names the token in
``mss token list`` and the logs; ``secret`` (32 random bytes, URL-safe base64) is shown once, when
the token is created, and only its SHA-256 is stored (:class:`~mss.storage.base.TokenRecord`).
Verification looks the id up (one indexed read, so a token revoked by the CLI in another process
stops working at once, without the change feed) and compares the hash in constant time.

Scopes: ``admin`` may do everything; ``read`` may only read (the API answers 403 to its writes).

The first server start creates an ``admin`` token (:meth:`TokenService.bootstrap`) and returns it
so the server prints it once; a key in the key-value store (``api.bootstrap``), set atomically,
makes sure only one start ever does, even when two processes start together. Revoking every token
does not bring a new one at the next start: ``mss token create`` makes more.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable

from ..errors import MssError
from ..storage.base import KeyValue, TokenRecord, TokenRepo

__all__ = ("SCOPES", "TOKEN_PREFIX", "TokenError", "TokenService", "hash_secret", "split_token")

#: What a token may do: ``admin`` everything, ``read`` only reads.
SCOPES = ("admin", "read")
TOKEN_PREFIX = "mss"
BOOTSTRAP_KEY = "api.bootstrap"
_ID_RE = re.compile(r"^[0-9a-f]{10}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_\-]{20,128}$")


class TokenError(MssError):
    """Bad token input (a name, a scope); ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def hash_secret(secret: str) -> str:
    """The stored form of a token's secret part: lowercase hex SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else ``None``."""
    prefix, sep, rest = token.partition("_")
    if prefix != TOKEN_PREFIX or not sep:
        return None
    token_id, sep, secret = rest.partition("_")
    if not sep or not _ID_RE.match(token_id) or not _SECRET_RE.match(secret):
        return None
    return token_id, secret


class TokenService:
    """Creates, verifies and revokes API tokens kept in a :class:`TokenRepo`.

    Args:
        repo: the token repository (``storage.tokens``).
        kv: the key-value store (for the one-time bootstrap marker).
        wall: wall-clock time.
        touch_interval: seconds between two ``last_used_at`` writes of one token.
    """

    def __init__(
        self,
        repo: TokenRepo,
        kv: KeyValue | None = None,
        *,
        wall: Callable[[], float] = time.time,
        touch_interval: float = 60.0,
    ) -> None:
        self.repo = repo
        self.kv = kv
        self.wall = wall
        self.touch_interval = touch_interval

    @staticmethod
    def check(name: str, scopes: Iterable[str]) -> tuple[str, tuple[str, ...]]:
        """Validate a name and scopes; raises TokenError naming the field."""
        if not isinstance(name, str) or len(name) > 128 or any(c in name for c in "\r\n"):
            raise TokenError("name", "at most 128 characters, no line breaks")
        out = tuple(dict.fromkeys(scopes))
        if not out:
            raise TokenError("scopes", f"give at least one of {', '.join(SCOPES)}")
        for scope in out:
            if scope not in SCOPES:
                raise TokenError("scopes", f"unknown scope {scope!r}; expected {', '.join(SCOPES)}")
        return name, out

    async def create(
        self, name: str = "", *, scopes: Iterable[str] = ("admin",), expires_in: float | None = None
    ) -> tuple[TokenRecord, str]:
        """Make and store a token.

        Returns:
            The stored record and the full token text (shown once; only its hash is kept).

        Raises:
            TokenError: bad name, scope or lifetime.
        """
        name, scope_tuple = self.check(name, scopes)
        if expires_in is not None and not 0 < expires_in <= 10 * 365 * 86400:
            raise TokenError("expires_in", "must be more than 0 and at most ten years (seconds)")
        record, token = self._make(name, scope_tuple, expires_in)
        await self.repo.add(record)
        return record, token

    def _make(
        self, name: str, scopes: tuple[str, ...], expires_in: float | None
    ) -> tuple[TokenRecord, str]:
        token_id = secrets.token_hex(5)
        secret = secrets.token_urlsafe(32)
        now = self.wall()
        record = TokenRecord(
            id=token_id,
            name=name,
            secret_hash=hash_secret(secret),
            scopes=scopes,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        return record, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    async def list(self) -> list[TokenRecord]:
        return await self.repo.list()

    async def get(self, token_id: str) -> TokenRecord | None:
        return await self.repo.get(token_id)

    async def revoke(self, token_id: str) -> bool:
        """Delete a token; False when there is no such token."""
        return await self.repo.delete(token_id)

    async def verify(self, token: str) -> TokenRecord | None:
        """The token's record when ``token`` is valid now (known, not expired), else ``None``."""
        parts = split_token(token.strip())
        if parts is None:
            return None
        token_id, secret = parts
        record = await self.repo.get(token_id)
        if record is None:
            hmac.compare_digest(hash_secret(secret), "0" * 64)  # same work as a known id
            return None
        if not hmac.compare_digest(hash_secret(secret), record.secret_hash):
            return None
        now = self.wall()
        if record.expires_at is not None and record.expires_at <= now:
            return None
        if now - record.last_used_at >= self.touch_interval:
            await self.repo.touch(record.id, now)
        return record

    async def bootstrap(self, name: str = "admin (first start)") -> str | None:
        """Create the first admin token once per data dir.

        Returns:
            The token text when this call created it (print it once), else ``None``.
        """
        record, token = self._make(name, ("admin",), None)
        if self.kv is not None:
            stored = await self.kv.setdefault(BOOTSTRAP_KEY, record.id)
            if stored != record.id:
                return None  # an earlier start (or a concurrent one) did it
        if await self.repo.list():
            return None  # tokens were made with ``mss token create`` before the first start
        await self.repo.add(record)
        return token
