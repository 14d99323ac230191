"""``/cdr``: call detail records, paged by date range, user and result; a CSV file per day."""

from __future__ import annotations

import datetime
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from ...features.cdr import day_bounds, write_csv
from ...storage.base import CdrRecord
from ..auth import ReadToken
from ..problems import ApiProblem, problem_responses
from ..schemas import CdrOut, CdrPage
from ..services import ApiServices
from ..types import DATE_PATTERN, DATE_SCHEMA
from .common import services, strict_query

__all__ = ("router",)

router = APIRouter(dependencies=[Depends(strict_query)])
Services = Annotated[ApiServices, Depends(services)]
Result = Literal["answered", "busy", "no_answer", "cancelled", "rejected", "failed", "interrupted"]
#: rows read from storage per round when a result filter is applied
_SCAN_PAGE = 1000
#: rows scanned at most for one filtered page (bounded work per request)
_SCAN_LIMIT = 200_000


def cdr_out(r: CdrRecord) -> CdrOut:
    return CdrOut(
        id=r.id,
        caller=r.caller,
        dialed=r.dialed,
        callee=r.callee,
        setup_at=r.setup_at,
        ring_at=r.ring_at,
        answer_at=r.answer_at,
        end_at=r.end_at,
        duration=r.duration,
        status=r.status,
        cause=r.cause,
        reason=r.reason,
        hangup=r.hangup,
        result=r.result,
        direction=r.direction,
        route=r.route,
        call_id=r.call_id,
        caller_addr=r.caller_addr,
        callee_addr=r.callee_addr,
        extra=dict(r.extra),
    )


def _day(date: str, field: str = "date") -> tuple[float, float]:
    try:
        return day_bounds(datetime.date.fromisoformat(date).isoformat())
    except (ValueError, OverflowError, OSError):
        raise ApiProblem(
            422, f"{field}: not a valid YYYY-MM-DD date: {date!r}", field=field
        ) from None


@router.get("/cdr", response_model=CdrPage, tags=["cdr"], responses=problem_responses(401, 422))
async def query_cdr(
    svc: Services,
    _: ReadToken,
    date: Annotated[
        str | None,
        Query(
            pattern=DATE_PATTERN,
            json_schema_extra=DATE_SCHEMA,
            description="one local day, YYYY-MM-DD",
        ),
    ] = None,
    since: Annotated[
        float | None, Query(ge=0, le=1e11, description="setup at or after (epoch seconds)")
    ] = None,
    until: Annotated[
        float | None, Query(ge=0, le=1e11, description="setup before (epoch seconds)")
    ] = None,
    user: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="caller, dialled number or callee"),
    ] = None,
    result: Annotated[Result | None, Query(description="only records with this result")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CdrPage:
    """Call records by setup time (oldest first), ``limit`` per page from ``offset``."""
    if date is not None:
        lo, hi = _day(date)
        since = lo if since is None else max(since, lo)
        until = hi if until is None else min(until, hi)
    repo = svc.storage.cdrs
    if since is not None and until is not None and until <= since:
        return CdrPage(items=[], limit=limit, offset=offset, next_offset=None)
    if result is None:
        rows = await repo.query(
            since=since, until=until, number=user, limit=limit + 1, offset=offset
        )
        more = len(rows) > limit
        rows = rows[:limit]
    else:
        rows, skip, pos, more = [], offset, 0, False
        while pos < _SCAN_LIMIT:
            page = await repo.query(
                since=since, until=until, number=user, limit=_SCAN_PAGE, offset=pos
            )
            pos += len(page)
            for r in page:
                if r.result != result:
                    continue
                if skip:
                    skip -= 1
                elif len(rows) < limit:
                    rows.append(r)
                else:
                    more = True
                    break
            if more or len(page) < _SCAN_PAGE:
                break
    return CdrPage(
        items=[cdr_out(r) for r in rows],
        limit=limit,
        offset=offset,
        next_offset=offset + len(rows) if more else None,
    )


@router.get(
    "/cdr/{date}.csv",
    tags=["cdr"],
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "one line per call, with a header line",
        },
        **problem_responses(401, 422),
    },
)
async def cdr_csv(
    date: Annotated[
        str, Path(pattern=DATE_PATTERN, json_schema_extra=DATE_SCHEMA, description="YYYY-MM-DD")
    ],
    svc: Services,
    _: ReadToken,
) -> Response:
    """The records of one local day as CSV (miniSIPServer writes one such file per day)."""
    lo, hi = _day(date)
    out: list[CdrRecord] = []
    while True:
        page = await svc.storage.cdrs.query(since=lo, until=hi, limit=1000, offset=len(out))
        out += page
        if len(page) < 1000:
            break
    buf = io.StringIO()
    write_csv(out, buf)
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="cdr-{date}.csv"'},
    )
