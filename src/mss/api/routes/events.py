"""``/events``: the WebSocket event channel (``userStatus``, ``callStatus``, ``lineStatus``,
``trunkWarning``, ``securityEvent``; shapes in ``docs/api.md``).

The token comes as ``?token=`` (browsers cannot set headers on a WebSocket) or an
``Authorization: Bearer`` header. Without a valid one the handshake is refused with an HTTP 401
problem (or closed with 1008 where the server cannot send a denial response). ``?types=a,b``
subscribes to some event types only. Each event is one JSON text message. A client that does not
keep up (its queue of waiting events fills) is disconnected with close code 1013 ("try again
later"); a server stop closes with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ...features.events import EVENT_TYPES
from ..auth import check_token
from ..problems import ApiProblem, problem_response
from ..services import ApiServices

__all__ = ("router",)

log = logging.getLogger("mss.api")
router = APIRouter()


async def _deny(websocket: WebSocket, status: int, detail: str) -> None:
    headers = {"WWW-Authenticate": 'Bearer realm="mss"'} if status == 401 else None
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(problem_response(status, detail, headers=headers))
    else:
        await websocket.close(code=1008, reason=detail[:100])


@router.websocket("/events")
async def events(websocket: WebSocket) -> None:
    svc: ApiServices = websocket.app.state.services
    token = websocket.query_params.get("token")
    if not token:
        auth = websocket.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    try:
        await check_token(svc.tokens, token, admin=False)
    except ApiProblem as e:
        await _deny(websocket, e.status, e.detail)
        return
    types = None
    raw = websocket.query_params.get("types")
    if raw:
        types = [t.strip() for t in raw.split(",") if t.strip()]
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            await _deny(
                websocket,
                422,
                f"types: unknown event type {unknown[0]!r}; expected {', '.join(EVENT_TYPES)}",
            )
            return
    try:
        sub = svc.hub.subscribe(types)
    except OverflowError as e:
        await _deny(websocket, 503, str(e))
        return
    await websocket.accept()

    async def pump() -> None:
        while True:
            event = await sub.get()
            if event is None:
                return
            await websocket.send_text(json.dumps(event, separators=(",", ":"), default=str))

    async def drain() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    sender = asyncio.ensure_future(pump())
    reader = asyncio.ensure_future(drain())
    try:
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sub.close()
        for task in (sender, reader):
            task.cancel()
        for task in (sender, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if reader not in done:  # we end it: slow consumer or server stopping
        code = 1013 if sub.reason == "slow consumer" else 1001
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=sub.reason)
