"""``/bans``, ``/iplists``, ``/blacklist``: anti-scanning and call filtering (issue 6).

Writes go through the running :class:`~mss.features.security.SecurityPolicy` (a ban installs in
the ban table at once) and storage (so bans and lists survive restarts and reach other
processes through the change feed); the policy and the system blacklist are reloaded after list
writes, so a new entry applies to the next packet or call.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from ...features.blacklist import normalise_prefix
from ...features.security import LISTS, operator_ban, parse_ip, parse_network
from ...storage.base import BanRecord, BlacklistRecord, IpListRecord
from ...storage.errors import AlreadyExists
from ..auth import ReadToken, WriteToken
from ..problems import ApiProblem, problem_responses
from ..schemas import BanIn, BanOut, BlacklistIn, BlacklistOut, IpListIn, IpListOut
from ..services import ApiServices
from ..types import IP_SCHEMA, NETWORK_SCHEMA, PREFIX_PATTERN
from .common import services, strict_query

__all__ = ("router",)

router = APIRouter(dependencies=[Depends(strict_query)])
Services = Annotated[ApiServices, Depends(services)]
Ip = Annotated[
    str, Path(max_length=64, description="IPv4 or IPv6 address", json_schema_extra=IP_SCHEMA)
]


def ban_out(b: BanRecord, now: float) -> BanOut:
    active = b.until is None or b.until > now
    return BanOut(
        ip=b.ip,
        active=active,
        until=b.until,
        remaining=None if b.until is None else max(0, int(b.until - now)),
        reason=b.reason,
        count=b.count,
        first_at=b.first_at,
        last_at=b.last_at,
        users=list(b.users),
    )


@router.get(
    "/bans", response_model=list[BanOut], tags=["security"], responses=problem_responses(401, 422)
)
async def list_bans(
    svc: Services,
    _: ReadToken,
    all: Annotated[bool, Query(description="also ended bans still remembered")] = False,
) -> list[BanOut]:
    """The active bans (fail-to-ban and operator bans)."""
    now = time.time()
    if svc.security is not None and not all:
        return [ban_out(b, now) for b in svc.security.bans()]
    bans = await svc.storage.bans.list()
    return [ban_out(b, now) for b in bans if all or b.until is None or b.until > now]


@router.get(
    "/bans/{ip}",
    response_model=BanOut,
    tags=["security"],
    responses=problem_responses(401, 404, 422),
)
async def get_ban(ip: Ip, svc: Services, _: ReadToken) -> BanOut:
    text, _packed = parse_ip(ip)
    record = await svc.storage.bans.get(text)
    if record is None:
        raise ApiProblem(404, f"no ban of {text}", field="ip")
    return ban_out(record, time.time())


@router.post(
    "/bans",
    response_model=BanOut,
    status_code=201,
    tags=["security"],
    responses=problem_responses(400, 401, 403, 422),
)
async def add_ban(body: BanIn, svc: Services, _: WriteToken) -> BanOut:
    """Ban a source now (no reply to anything it sends), for ``duration`` seconds or until
    lifted."""
    text, _packed = parse_ip(body.ip)
    if svc.security is not None:
        record = await svc.security.ban(text, duration=body.duration, reason=body.reason)
    else:
        record = operator_ban(
            text,
            duration=body.duration,
            reason=body.reason,
            previous=await svc.storage.bans.get(text),
        )
        await svc.storage.bans.put(record)
    return ban_out(record, time.time())


@router.delete(
    "/bans/{ip}",
    status_code=204,
    tags=["security"],
    responses=problem_responses(401, 403, 404, 422),
)
async def lift_ban(ip: Ip, svc: Services, _: WriteToken) -> Response:
    """Lift a ban (and forget it for repeat-offence counting)."""
    text, _packed = parse_ip(ip)
    if svc.security is not None:
        found = await svc.security.unban(text)
    else:
        found = await svc.storage.bans.delete(text)
    if not found:
        raise ApiProblem(404, f"no ban of {text}", field="ip")
    return Response(status_code=204)


# -- IP lists --------------------------------------------------------------------------------


def _iplist_out(e: IpListRecord) -> IpListOut:
    return IpListOut(list=e.list_name, network=e.network, note=e.note, created_at=e.created_at)


async def _reload_lists(svc: ApiServices) -> None:
    if svc.security is not None:
        await svc.security.load_lists()


@router.get(
    "/iplists",
    response_model=list[IpListOut],
    tags=["security"],
    responses=problem_responses(401, 422),
)
async def list_iplists(
    svc: Services,
    _: ReadToken,
    list: Annotated[Literal["black", "white"] | None, Query(description="one list")] = None,
) -> list[IpListOut]:
    """IP black list (dropped before parsing) and white list (never banned by fail-to-ban)."""
    entries = await svc.storage.iplists.list(list)
    return [_iplist_out(e) for e in entries if e.list_name in LISTS]


@router.post(
    "/iplists",
    response_model=IpListOut,
    status_code=201,
    tags=["security"],
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def add_iplist(body: IpListIn, svc: Services, _: WriteToken) -> IpListOut:
    net = parse_network(body.network)
    record = IpListRecord(body.list, net.text, body.note, time.time())
    try:
        await svc.storage.iplists.add(record)
    except AlreadyExists:
        raise ApiProblem(
            409, f"{net.text} is already on the {body.list} list", field="network"
        ) from None
    await _reload_lists(svc)
    return _iplist_out(record)


@router.delete(
    "/iplists/{list}",
    status_code=204,
    tags=["security"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_iplist(
    list: Literal["black", "white"],
    svc: Services,
    _: WriteToken,
    network: Annotated[
        str,
        Query(
            max_length=64, description="the IP or CIDR to remove", json_schema_extra=NETWORK_SCHEMA
        ),
    ],
) -> Response:
    net = parse_network(network)
    if not await svc.storage.iplists.delete(list, net.text):
        raise ApiProblem(404, f"{net.text} is not on the {list} list", field="network")
    await _reload_lists(svc)
    return Response(status_code=204)


# -- system blacklist ----------------------------------------------------------------------


def _blacklist_out(r: BlacklistRecord) -> BlacklistOut:
    return BlacklistOut(
        caller=r.caller_prefix,
        called=r.called_prefix,
        rate=r.rate,
        description=r.note,
        created_at=r.created_at,
    )


async def _reload_blacklist(svc: ApiServices) -> None:
    if svc.blacklist is not None:
        await svc.blacklist.load(svc.storage)


@router.get(
    "/blacklist",
    response_model=list[BlacklistOut],
    tags=["security"],
    responses=problem_responses(401, 422),
)
async def list_blacklist(svc: Services, _: ReadToken) -> list[BlacklistOut]:
    """The system blacklist records (longest called prefix wins, then longest caller prefix)."""
    return [_blacklist_out(r) for r in await svc.storage.blacklist.list()]


@router.put(
    "/blacklist",
    response_model=BlacklistOut,
    tags=["security"],
    responses=problem_responses(400, 401, 403, 422),
)
async def put_blacklist(body: BlacklistIn, svc: Services, _: WriteToken) -> BlacklistOut:
    """Create or replace the record with these two prefixes; applies to the next call."""
    caller = normalise_prefix(body.caller, "caller", caller=True)
    called = normalise_prefix(body.called, "called", caller=False)
    await svc.storage.blacklist.put(BlacklistRecord(caller, called, body.rate, body.description))
    await _reload_blacklist(svc)
    for r in await svc.storage.blacklist.list():
        if (r.caller_prefix, r.called_prefix) == (caller, called):
            return _blacklist_out(r)
    raise ApiProblem(409, "the record changed meanwhile; read it again")  # pragma: no cover


@router.delete(
    "/blacklist",
    status_code=204,
    tags=["security"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_blacklist(
    svc: Services,
    _: WriteToken,
    caller: Annotated[str, Query(pattern=PREFIX_PATTERN, description="the record's caller prefix")],
    called: Annotated[str, Query(pattern=PREFIX_PATTERN, description="the record's called prefix")],
) -> Response:
    c = normalise_prefix(caller, "caller", caller=True)
    d = normalise_prefix(called, "called", caller=False)
    if not await svc.storage.blacklist.delete(c, d):
        raise ApiProblem(404, f"no blacklist record with caller {c} and called {d}", field="caller")
    await _reload_blacklist(svc)
    return Response(status_code=204)
