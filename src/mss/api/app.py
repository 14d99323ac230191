"""The management API application: ``create_api(services) -> FastAPI``.

Routes (see ``docs/api.md``): ``/health`` (no token), ``/system``, ``/users``,
``/registrations``, ``/bans``, ``/iplists``, ``/blacklist``, ``/cdr``, ``/cdr/{date}.csv``,
``/calls`` (when the server has a call layer), ``/lines``, ``/trunks`` and ``/routes`` (when it
has external lines and trunks), ``/explain``, ``/tokens``, ``/metrics``, the
``/events`` WebSocket, and the miniSIPServer-compatible ``/openapi/...`` routes. The OpenAPI 3
document is ``/openapi.json`` and the interactive page ``/docs``; both are public (they describe
the API and hold no data). :class:`~.auth.TokenGate` answers 401 to any other request without a
valid token before routing or parsing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import TokenGate
from .problems import ApiProblem, install_problem_handlers, problem_response
from .routes import cdr, events, metrics, mss_compat, pbx, security, system, users, voicemail
from .services import ApiServices

__all__ = ("MAX_BODY", "create_api")

#: largest request body accepted (bytes); more gets 413
MAX_BODY = 1 << 20

DESCRIPTION = """\
Management API of **mss**, the SIP server / PBX built on fastsip.

Every route except `GET /health` needs an API token: `Authorization: Bearer <token>`
(`?token=` on the `/events` WebSocket; `syskey` on the miniSIPServer-compatible `/openapi/...`
routes). The first server start prints an admin token once; `mss token create` makes more.
Errors are `application/problem+json` documents naming the field at fault. Changes apply to the
running server at once.
"""


class _BodyLimit:
    """Refuses request bodies larger than ``max_bytes`` with 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    status = 413 if declared > self.max_bytes else 400
                    response = problem_response(
                        status,
                        f"body: at most {self.max_bytes} bytes"
                        if status == 413
                        else "bad Content-Length",
                        field="body",
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ApiProblem(413, f"body: at most {self.max_bytes} bytes", field="body")
            return message

        await self.app(scope, counted, send)


def create_api(services: ApiServices, *, max_body: int = MAX_BODY, **fastapi_kw: Any) -> FastAPI:
    """Build the API application around ``services`` (nothing global; one app per server).

    Args:
        services: the feature services and live views (:class:`ApiServices`).
        max_body: largest request body in bytes.
        fastapi_kw: passed to :class:`fastapi.FastAPI` (``title``, ``version``...).
    """
    version = ""
    if services.system is not None:
        version = str(dict(services.system.system_info()).get("version", ""))
    app = FastAPI(
        title=fastapi_kw.pop("title", "mss management API"),
        version=fastapi_kw.pop("version", version or "0"),
        description=DESCRIPTION,
        **fastapi_kw,
    )
    app.state.services = services
    app.state.metrics_registry = metrics.metrics_registry(services)
    install_problem_handlers(app)
    app.include_router(system.router)
    app.include_router(users.router)
    app.include_router(security.router)
    app.include_router(cdr.router)
    if services.calls is not None:
        app.include_router(system.calls_router)
    if services.lines is not None and services.trunks is not None:
        app.include_router(pbx.router)
    if services.voicemail is not None:
        app.include_router(voicemail.router)
    app.include_router(metrics.router)
    app.include_router(events.router)
    app.include_router(mss_compat.router)
    app.add_middleware(_BodyLimit, max_bytes=max_body)
    app.add_middleware(TokenGate, tokens=services.tokens)  # outermost: before anything else
    return app
