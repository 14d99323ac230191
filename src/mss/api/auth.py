"""Bearer-token authentication of API requests.

:class:`TokenGate` (ASGI middleware) checks the token of every HTTP request before routing, body
parsing or validation, so a request without a valid token learns nothing (not even whether the
route exists): a missing, malformed, unknown, revoked or expired token gets 401 with
``WWW-Authenticate: Bearer`` (RFC 6750 §3). Public: ``GET /health``, the OpenAPI document and the
docs page. The ``/events`` WebSocket and the miniSIPServer-compatible ``/openapi/...`` routes
check their own token (``?token=`` / ``syskey``). The route dependencies :func:`require_read` /
:func:`require_admin` then take the verified token (a ``read`` token on a write gets 403) and
declare the bearer scheme in the OpenAPI document.

Tokens are looked up on every request (one indexed read), so a token revoked by the CLI in
another process stops working at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from ..features.tokens import TokenService
from ..storage.base import TokenRecord
from .problems import ApiProblem, problem_response

__all__ = (
    "PUBLIC_PATHS",
    "ReadToken",
    "TokenGate",
    "WriteToken",
    "bearer",
    "check_token",
    "require_admin",
    "require_read",
)

bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`mss token create`; the first server start prints an admin token).",
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mss"'}


def unauthorized(detail: str = "a valid API token is required") -> ApiProblem:
    return ApiProblem(401, detail, headers=dict(_CHALLENGE))


async def check_token(tokens: TokenService, token: str | None, *, admin: bool) -> TokenRecord:
    """Verify a token's text; raises the 401/403 :class:`ApiProblem`."""
    if not token:
        raise unauthorized()
    record = await tokens.verify(token)
    if record is None:
        raise unauthorized("the API token is unknown, revoked or expired")
    if admin and "admin" not in record.scopes:
        raise ApiProblem(403, "this token may only read (scope 'read')")
    return record


#: paths served without a token (documentation and liveness)
PUBLIC_PATHS = frozenset(("/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"))
#: prefixes whose routes check their own credentials (``syskey``)
SELF_AUTH_PREFIXES = ("/openapi/",)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                return rest.strip()
            return None
    return None


class TokenGate:
    """Answers 401 to every HTTP request without a valid token, before anything else runs.

    The verified :class:`TokenRecord` goes to ``scope["state"]["token"]``.
    """

    def __init__(self, app: ASGIApp, tokens: TokenService) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path not in PUBLIC_PATHS and not path.startswith(SELF_AUTH_PREFIXES):
                try:
                    record = await check_token(
                        self.tokens, bearer_token(scope.get("headers", [])), admin=False
                    )
                except ApiProblem as e:
                    response = problem_response(e.status, e.detail, headers=e.headers)
                    await response(scope, receive, send)
                    return
                scope.setdefault("state", {})["token"] = record
        await self.app(scope, receive, send)


async def _verified(
    request: Request, credentials: HTTPAuthorizationCredentials | None, *, admin: bool
) -> TokenRecord:
    record = request.scope.get("state", {}).get("token")
    if record is None:  # the app runs without its gate (embedding): verify here
        tokens: TokenService = request.app.state.services.tokens
        token = credentials.credentials if credentials is not None else None
        return await check_token(tokens, token, admin=admin)
    if admin and "admin" not in record.scopes:
        raise ApiProblem(403, "this token may only read (scope 'read')")
    assert isinstance(record, TokenRecord)
    return record


async def require_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TokenRecord:
    """Any valid token."""
    return await _verified(request, credentials, admin=False)


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TokenRecord:
    """A valid token with the ``admin`` scope."""
    return await _verified(request, credentials, admin=True)


ReadToken = Annotated[TokenRecord, Depends(require_read)]
WriteToken = Annotated[TokenRecord, Depends(require_admin)]
