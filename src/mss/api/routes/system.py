"""``/health``, ``/system``, ``/explain``, ``/calls`` and ``/tokens``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from ...features.calls import ADMIN_RELEASE
from ...features.decisions import KINDS, normalise_ip
from ...features.security import pack_host
from ...storage.base import TokenRecord
from ..auth import ReadToken, WriteToken
from ..problems import ApiProblem, problem_responses
from ..schemas import (
    CallOut,
    DecisionOut,
    ExplainOut,
    Health,
    SystemOut,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from ..services import ApiServices
from ..types import IP_SCHEMA
from .common import services, strict_query

__all__ = ("calls_router", "router")

router = APIRouter(dependencies=[Depends(strict_query)])
calls_router = APIRouter(dependencies=[Depends(strict_query)])
Services = Annotated[ApiServices, Depends(services)]
Kind = Literal["auth_failure", "ban", "black_list", "blacklist", "limit"]
assert set(KINDS) == {"auth_failure", "ban", "black_list", "blacklist", "limit"}


@router.get("/health", response_model=Health, tags=["system"], responses=problem_responses(422))
async def health() -> Health:
    """Liveness; needs no token."""
    return Health()


@router.get(
    "/system", response_model=SystemOut, tags=["system"], responses=problem_responses(401, 422)
)
async def system(svc: Services, _: ReadToken) -> SystemOut:
    """Version, uptime, listeners, whether fastsip's Cython extensions are in use."""
    info = dict(svc.system.system_info()) if svc.system is not None else {}
    return SystemOut(
        version=str(info.get("version", "")),
        uptime=float(info.get("uptime", 0.0)),
        started_at=info.get("started_at"),
        listeners=[str(x) for x in info.get("listeners", [])],
        using_extensions=bool(info.get("using_extensions", False)),
        event_loop=str(info.get("event_loop", "")),
        users=len(svc.users),
        registrations=svc.location.count(),
        api=svc.api_listen,
        event_subscribers=len(svc.hub),
    )


@router.get(
    "/explain", response_model=ExplainOut, tags=["system"], responses=problem_responses(401, 422)
)
async def explain(
    svc: Services,
    _: ReadToken,
    ip: Annotated[
        str | None,
        Query(max_length=64, description="a source address", json_schema_extra=IP_SCHEMA),
    ] = None,
    user: Annotated[
        str | None, Query(min_length=1, max_length=64, description="a user name or number")
    ] = None,
    kind: Annotated[Kind | None, Query(description="only this kind of decision")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ExplainOut:
    """Why requests from ``ip`` or ``user`` were rejected or dropped recently: each decision
    with the rule that fired (ban, IP black list, blacklist rule, limit, authentication
    failure), newest first, from a bounded ring buffer."""
    if ip is not None:
        if pack_host(ip.strip().strip("[]")) is None:
            raise ApiProblem(422, f"ip: not an IP address: {ip!r}", field="ip")
        ip = normalise_ip(ip)
    found = svc.decisions.query(ip, user, kinds=None if kind is None else (kind,), limit=limit)
    return ExplainOut(
        ip=ip,
        user=user,
        decisions=[
            DecisionOut(kind=d.kind, ip=d.ip, user=d.user, rule=d.rule, detail=d.detail, at=d.at)
            for d in found
        ],
        kept=len(svc.decisions),
        capacity=svc.decisions.maxlen,
    )


@calls_router.get(
    "/calls", response_model=list[CallOut], tags=["calls"], responses=problem_responses(401, 422)
)
async def active_calls(svc: Services, _: ReadToken) -> list[CallOut]:
    """The calls in progress."""
    assert svc.calls is not None
    out = []
    for c in svc.calls.active_calls():
        out.append(
            CallOut(
                id=str(c.get("id", "")),
                caller=str(c.get("caller", "")),
                callee=str(c.get("callee", "")),
                state=str(c.get("state", "")),
                setup_at=c.get("setup_at"),
                answer_at=c.get("answer_at"),
                call_id=str(c.get("call_id", "")),
                caller_addr=str(c.get("caller_addr", "")),
            )
        )
    return out


@calls_router.delete(
    "/calls/{call_id}",
    status_code=204,
    tags=["calls"],
    responses=problem_responses(401, 403, 404, 422),
)
async def hangup_call(
    call_id: Annotated[
        str, Path(pattern=r"^[0-9A-Za-z._-]{1,64}$", description="the call's id (``GET /calls``)")
    ],
    svc: Services,
    _: WriteToken,
    reason: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=r'^[^"\\\x00-\x1f\x7f]+$',
            description="text of the Reason header sent to the phones and of the CDR reason "
            f"(default {ADMIN_RELEASE!r})",
        ),
    ] = None,
) -> Response:
    """Hang up a call in progress. Answered: both phones get BYE
    (``Reason: Q.850;cause=16;text="…"``). Not yet answered: the ringing phones get CANCEL and
    the caller 480, both with ``Reason: SIP;cause=480;text="…"``. The call record says hangup
    ``system`` with the reason."""
    assert svc.calls is not None
    if not svc.calls.hangup_call(call_id, reason or ADMIN_RELEASE):
        raise ApiProblem(404, f"no call {call_id} in progress", field="call_id")
    return Response(status_code=204)


# -- tokens ----------------------------------------------------------------------------------


def token_out(t: TokenRecord) -> TokenOut:
    return TokenOut(
        id=t.id,
        name=t.name,
        scopes=list(t.scopes),
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
    )


@router.get(
    "/tokens",
    response_model=list[TokenOut],
    tags=["tokens"],
    responses=problem_responses(401, 403, 422),
)
async def list_tokens(svc: Services, _: WriteToken) -> list[TokenOut]:
    """The API tokens (never their secrets)."""
    return [token_out(t) for t in await svc.tokens.list()]


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    tags=["tokens"],
    responses=problem_responses(400, 401, 403, 422),
)
async def create_token(body: TokenIn, svc: Services, _: WriteToken) -> TokenCreated:
    """Make a token; the answer is the only time its text is shown."""
    record, token = await svc.tokens.create(
        body.name, scopes=body.scopes, expires_in=body.expires_in
    )
    return TokenCreated(**token_out(record).model_dump(), token=token)


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    tags=["tokens"],
    responses=problem_responses(401, 403, 404, 422),
)
async def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{10}$", description="the token's id")],
    svc: Services,
    token: WriteToken,
) -> Response:
    """Revoke a token: it stops working at once (a token may revoke itself)."""
    if not await svc.tokens.revoke(token_id):
        raise ApiProblem(404, f"no token {token_id}", field="token_id")
    return Response(status_code=204)
