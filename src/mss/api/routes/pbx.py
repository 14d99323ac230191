"""``/lines``, ``/trunks``, ``/routes``: external lines, SIP trunks and the dial plan (issue 7).

The same records and checks as ``mss line|trunk|route`` (:mod:`mss.cli_pbx`): the API validates
with the feature's ``check_line`` / ``check_trunk`` / ``check_route`` and the storage's own checks,
writes to storage, and the running server applies the change from the change feed within half a
second (exactly as for a CLI change: re-registering a line, re-pinging a trunk, rebuilding the
dial plan are SIP-side work the API does not do itself). ``POST /lines/{id}/register-now`` asks
the server to register a line at once, through the same feed. Passwords are write-only.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, Strict

from ...features.dialplan import check_route
from ...features.lines import REGISTER_NOW_KEY, check_line
from ...features.trunks import check_trunk
from ...storage.base import LineRecord, RouteRecord, TrunkRecord
from ...storage.errors import AlreadyExists, NotFound
from ..auth import ReadToken, WriteToken
from ..problems import ApiProblem, problem_responses
from ..services import ApiServices
from ..types import JSON_INT, PORT_RE
from .common import NUMBER_PATTERN, services, strict_query

__all__ = ("router",)

router = APIRouter(dependencies=[Depends(strict_query)])
Services = Annotated[ApiServices, Depends(services)]

ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
Id = Annotated[str, Path(pattern=ID_PATTERN, description="the record's id")]
_HOST = r"[A-Za-z0-9_.\-]{1,253}"
HOSTPORT_PATTERN = rf"^({_HOST}|\[[0-9A-Fa-f:.]{{2,45}}\])(:{PORT_RE})?$"
USER_PATTERN = r"^[A-Za-z0-9_.+\-]{1,128}$"
DIGITS_PATTERN = r"^[0-9A-Za-z*#+]{0,32}$"
TARGET_PATTERN = (
    r"^(user(:[0-9A-Za-z_.+\-]{1,64})?|line(:[A-Za-z0-9_.\-]{1,64})?|trunk:[A-Za-z0-9_.\-]{1,64})$"
)
_PARAM = r"[A-Za-z0-9_.\-]+(=[A-Za-z0-9_.\-]*)?"
URI_PARAMS_PATTERN = rf"^({_PARAM}(;{_PARAM})*)?$"
Transport = Literal["udp", "tcp", "tls"]
_HOST_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "string", "pattern": rf"^{_HOST}$"},
    ]
}
Limit = Annotated[int, Strict(), Field(ge=0, le=10000), JSON_INT]
_strict_in = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
_patch = ConfigDict(
    extra="forbid", strict=True, populate_by_name=True, json_schema_extra={"minProperties": 1}
)
#: ``register`` is an attribute of pydantic models (abc): the field is ``register_`` in Python
#: and ``register`` in JSON.
REGISTER = "register"


def _or_empty(pattern: str) -> str:
    """``pattern`` (anchored ``^...$``) or the empty string."""
    return f"^({pattern[1:-1]})?$"


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _opt(*, extra: dict[str, Any] | None = None, **kw: Any) -> Any:
    """A PATCH field: absent = unchanged (no default shown, null not allowed unless typed so)."""

    def schema(s: dict[str, Any]) -> None:
        s.pop("default", None)
        s.update(extra or {})

    return Field(default=None, json_schema_extra=schema, **kw)


# -- models ----------------------------------------------------------------------------------


class LineIn(BaseModel):
    """An external line (a registration to a provider)."""

    model_config = _strict_in

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    account: Annotated[str, Field(pattern=USER_PATTERN, description="the account at the provider")]
    domain: Annotated[str, Field(pattern=HOSTPORT_PATTERN, description="registrar host[:port]")]
    password: Annotated[str, Field(max_length=256, description="write-only")] = ""
    auth_user: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+@\-]{0,256}$")] = ""
    auth_with_domain: bool = Field(default=False, description="authorization ID account@domain")
    proxy: Annotated[
        str,
        Field(
            pattern=_or_empty(HOSTPORT_PATTERN),
            description='outbound proxy ("Via" address) host[:port]',
        ),
    ] = ""
    transport: Transport = "udp"
    register_: bool = Field(default=True, alias="register", description="register to the provider")
    expires: Annotated[int, Strict(), Field(ge=1, le=604800), JSON_INT] = 3600
    new_call_id: bool | None = Field(default=None, description="null = the global default")
    owner: Annotated[
        str,
        Field(pattern=_or_empty(NUMBER_PATTERN), description="local user receiving incoming calls"),
    ] = ""
    max_calls: Limit | None = None
    no_answer_timeout: Annotated[int, Strict(), Field(ge=0, le=3600), JSON_INT] = 0
    enabled: bool = True
    contact_user: Annotated[str, Field(pattern=_or_empty(USER_PATTERN))] = ""


class LinePatch(BaseModel):
    """Changes to a line (at least one field)."""

    model_config = _patch

    account: str = _opt(pattern=USER_PATTERN)
    domain: str = _opt(pattern=HOSTPORT_PATTERN)
    password: str = _opt(max_length=256)
    auth_user: str = _opt(pattern=r"^[A-Za-z0-9_.+@\-]{0,256}$")
    auth_with_domain: bool = _opt()
    proxy: str = _opt(pattern=_or_empty(HOSTPORT_PATTERN))
    transport: Transport = _opt()
    register_: bool = _opt(alias=REGISTER)
    expires: Annotated[int, Strict(), Field(ge=1, le=604800), JSON_INT] = _opt()
    new_call_id: bool | None = _opt()
    owner: str = _opt(pattern=_or_empty(NUMBER_PATTERN))
    max_calls: Limit | None = _opt()
    no_answer_timeout: Annotated[int, Strict(), Field(ge=0, le=3600), JSON_INT] = _opt()
    enabled: bool = _opt()
    contact_user: str = _opt(pattern=_or_empty(USER_PATTERN))


class LineOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    account: str
    domain: str
    has_password: bool
    auth_user: str
    auth_with_domain: bool
    proxy: str
    transport: str
    register_: bool = Field(alias="register")
    expires: int
    new_call_id: bool | None
    owner: str
    max_calls: int | None
    no_answer_timeout: int
    enabled: bool
    contact_user: str
    created_at: float
    updated_at: float
    status: dict[str, Any] | None = Field(
        description="registration state in this server (state, since, status, reason, "
        "next_retry, registered_until, failures...)"
    )


class TrunkIn(BaseModel):
    """A SIP trunk: a peer trusted by address."""

    model_config = _strict_in

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    host: Annotated[
        str,
        Field(
            max_length=253,
            json_schema_extra=_HOST_SCHEMA,
            description="the peer's IP address or host name",
        ),
    ]
    port: Annotated[int, Strict(), Field(ge=1, le=65535), JSON_INT] = 5060
    transport: Transport = "udp"
    name: Annotated[str, Field(max_length=128, pattern=r"^[^\r\n]*$")] = ""
    max_incoming: Limit | None = Field(default=None, description="null = unlimited, 0 = refused")
    max_outgoing: Limit | None = Field(default=None, description="null = unlimited, 0 = refused")
    enabled: bool = True
    caller_number: Annotated[
        str, Field(pattern=_or_empty(NUMBER_PATTERN), description="unified caller number")
    ] = ""
    uri_params: Annotated[str, Field(pattern=URI_PARAMS_PATTERN, max_length=256)] = ""
    ping: bool = Field(default=True, description="OPTIONS pings give an up/down state")


class TrunkPatch(BaseModel):
    model_config = _patch

    host: str = _opt(max_length=253, extra=_HOST_SCHEMA)
    port: Annotated[int, Strict(), Field(ge=1, le=65535), JSON_INT] = _opt()
    transport: Transport = _opt()
    name: str = _opt(max_length=128, pattern=r"^[^\r\n]*$")
    max_incoming: Limit | None = _opt()
    max_outgoing: Limit | None = _opt()
    enabled: bool = _opt()
    caller_number: str = _opt(pattern=_or_empty(NUMBER_PATTERN))
    uri_params: str = _opt(pattern=URI_PARAMS_PATTERN, max_length=256)
    ping: bool = _opt()


class TrunkOut(BaseModel):
    id: str
    host: str
    port: int
    transport: str
    name: str
    max_incoming: int | None
    max_outgoing: int | None
    enabled: bool
    caller_number: str
    uri_params: str
    ping: bool
    created_at: float
    updated_at: float
    active_calls: dict[str, int] = Field(description="calls now, by direction (in, out)")
    status: dict[str, Any] | None = Field(description="up/down state from OPTIONS pings")


class RouteIn(BaseModel):
    """A dial-plan rule: numbers starting with ``prefix`` go to ``target``."""

    model_config = _strict_in

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    prefix: Annotated[str, Field(pattern=DIGITS_PATTERN, description="longest match wins")]
    target: Annotated[
        str, Field(pattern=TARGET_PATTERN, description="user[:NUMBER], line[:ID] or trunk:ID")
    ]
    priority: Annotated[int, Strict(), Field(ge=-1000000, le=1000000), JSON_INT] = 0
    strip: Annotated[int, Strict(), Field(ge=0, le=32), JSON_INT] = 0
    prepend: Annotated[str, Field(pattern=DIGITS_PATTERN)] = ""
    enabled: bool = True
    fallback: Annotated[
        str, Field(pattern=_or_empty(ID_PATTERN), description="route tried when this one fails")
    ] = ""


class RoutePatch(BaseModel):
    model_config = _patch

    prefix: str = _opt(pattern=DIGITS_PATTERN)
    target: str = _opt(pattern=TARGET_PATTERN)
    priority: Annotated[int, Strict(), Field(ge=-1000000, le=1000000), JSON_INT] = _opt()
    strip: Annotated[int, Strict(), Field(ge=0, le=32), JSON_INT] = _opt()
    prepend: str = _opt(pattern=DIGITS_PATTERN)
    enabled: bool = _opt()
    fallback: str = _opt(pattern=_or_empty(ID_PATTERN))


class RouteOut(BaseModel):
    id: str
    prefix: str
    target: str
    priority: int
    strip: int
    prepend: str
    enabled: bool
    fallback: str
    created_at: float
    updated_at: float


# -- helpers ---------------------------------------------------------------------------------

_FIELD_RE = re.compile(r"^([a-z_]+)(?::| must| is)")


def _problem(exc: ValueError) -> ApiProblem:
    text = str(exc)
    m = _FIELD_RE.match(text)
    field = m.group(1) if m else "body"
    detail = text if text.startswith(f"{field}:") else f"{field}: {text}"
    return ApiProblem(422, detail, field=field)


async def _write(
    repo: Any, record: Any, check: Callable[[Any], None], *, adding: bool, what: str
) -> None:
    try:
        check(record)
        await (repo.add(record) if adding else repo.update(record))
    except AlreadyExists:
        raise ApiProblem(409, f"{what} {record.id} exists already", field="id") from None
    except NotFound:
        raise ApiProblem(404, f"no {what} {record.id}", field="id") from None
    except ValueError as exc:
        raise _problem(exc) from None


def _changes(body: BaseModel) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True, by_alias=True)
    if not given:
        raise ApiProblem(422, "body: nothing to change: give at least one field", field="body")
    return given


async def _get(repo: Any, record_id: str, what: str) -> Any:
    record = await repo.get(record_id)
    if record is None:
        raise ApiProblem(404, f"no {what} {record_id}", field="id")
    return record


def _line_out(svc: ApiServices, r: LineRecord) -> LineOut:
    st = svc.lines.status(r.id) if svc.lines is not None else None
    fields = {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}
    fields.pop("password")
    fields.pop("extra")
    fields["register_"] = fields.pop("register")
    return LineOut(
        **fields, has_password=bool(r.password), status=None if st is None else st.as_dict()
    )


def _trunk_out(svc: ApiServices, r: TrunkRecord) -> TrunkOut:
    t = svc.trunks
    st = t.status(r.id) if t is not None else None
    fields = {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}
    fields.pop("extra")
    active = {d: (t.active(r.id, d) if t is not None else 0) for d in ("in", "out")}  # type: ignore[arg-type]
    return TrunkOut(**fields, active_calls=active, status=None if st is None else st.as_dict())


def _route_out(r: RouteRecord) -> RouteOut:
    return RouteOut(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})


# -- lines -----------------------------------------------------------------------------------


@router.get(
    "/lines", response_model=list[LineOut], tags=["lines"], responses=problem_responses(401, 422)
)
async def list_lines(svc: Services, _: ReadToken) -> list[LineOut]:
    """External lines with their registration state."""
    return [_line_out(svc, r) for r in await svc.storage.lines.list()]


@router.post(
    "/lines",
    response_model=LineOut,
    status_code=201,
    tags=["lines"],
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def add_line(body: LineIn, svc: Services, _: WriteToken) -> LineOut:
    """Add a line (as ``mss line add``); the server registers it within a second."""
    now = time.time()
    record = LineRecord(**body.model_dump(by_alias=True), created_at=now, updated_at=now)
    await _write(svc.storage.lines, record, check_line, adding=True, what="line")
    return _line_out(svc, await _get(svc.storage.lines, record.id, "line"))


@router.get(
    "/lines/{id}",
    response_model=LineOut,
    tags=["lines"],
    responses=problem_responses(401, 404, 422),
)
async def get_line(id: Id, svc: Services, _: ReadToken) -> LineOut:
    return _line_out(svc, await _get(svc.storage.lines, id, "line"))


@router.patch(
    "/lines/{id}",
    response_model=LineOut,
    tags=["lines"],
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def update_line(id: Id, body: LinePatch, svc: Services, _: WriteToken) -> LineOut:
    old = await _get(svc.storage.lines, id, "line")
    record = dataclasses.replace(old, **_changes(body))
    await _write(svc.storage.lines, record, check_line, adding=False, what="line")
    return _line_out(svc, await _get(svc.storage.lines, id, "line"))


@router.delete(
    "/lines/{id}", status_code=204, tags=["lines"], responses=problem_responses(401, 403, 404, 422)
)
async def delete_line(id: Id, svc: Services, _: WriteToken) -> Response:
    if not await svc.storage.lines.delete(id):
        raise ApiProblem(404, f"no line {id}", field="id")
    return Response(status_code=204)


@router.get(
    "/lines/{id}/history",
    response_model=list[dict[str, Any]],
    tags=["lines"],
    responses=problem_responses(401, 404, 422),
)
async def line_history(id: Id, svc: Services, _: ReadToken) -> list[dict[str, Any]]:
    """The line's registration state changes in this server, oldest first."""
    await _get(svc.storage.lines, id, "line")
    return svc.lines.history(id) if svc.lines is not None else []


@router.post(
    "/lines/{id}/register-now",
    status_code=202,
    tags=["lines"],
    responses=problem_responses(401, 403, 404, 422),
)
async def register_now(id: Id, svc: Services, _: WriteToken) -> Response:
    """Register the line now (the server picks the request up within a second)."""
    await _get(svc.storage.lines, id, "line")
    await svc.storage.kv.set(REGISTER_NOW_KEY + id, repr(time.time()))
    return Response(status_code=202)


# -- trunks ----------------------------------------------------------------------------------


@router.get(
    "/trunks", response_model=list[TrunkOut], tags=["trunks"], responses=problem_responses(401, 422)
)
async def list_trunks(svc: Services, _: ReadToken) -> list[TrunkOut]:
    """SIP trunks with their up/down state and live call counts."""
    return [_trunk_out(svc, r) for r in await svc.storage.trunks.list()]


@router.post(
    "/trunks",
    response_model=TrunkOut,
    status_code=201,
    tags=["trunks"],
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def add_trunk(body: TrunkIn, svc: Services, _: WriteToken) -> TrunkOut:
    now = time.time()
    record = TrunkRecord(**body.model_dump(), created_at=now, updated_at=now)
    await _write(svc.storage.trunks, record, check_trunk, adding=True, what="trunk")
    return _trunk_out(svc, await _get(svc.storage.trunks, record.id, "trunk"))


@router.get(
    "/trunks/{id}",
    response_model=TrunkOut,
    tags=["trunks"],
    responses=problem_responses(401, 404, 422),
)
async def get_trunk(id: Id, svc: Services, _: ReadToken) -> TrunkOut:
    return _trunk_out(svc, await _get(svc.storage.trunks, id, "trunk"))


@router.patch(
    "/trunks/{id}",
    response_model=TrunkOut,
    tags=["trunks"],
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def update_trunk(id: Id, body: TrunkPatch, svc: Services, _: WriteToken) -> TrunkOut:
    old = await _get(svc.storage.trunks, id, "trunk")
    record = dataclasses.replace(old, **_changes(body))
    await _write(svc.storage.trunks, record, check_trunk, adding=False, what="trunk")
    return _trunk_out(svc, await _get(svc.storage.trunks, id, "trunk"))


@router.delete(
    "/trunks/{id}",
    status_code=204,
    tags=["trunks"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_trunk(id: Id, svc: Services, _: WriteToken) -> Response:
    if not await svc.storage.trunks.delete(id):
        raise ApiProblem(404, f"no trunk {id}", field="id")
    return Response(status_code=204)


# -- dial plan -------------------------------------------------------------------------------


@router.get(
    "/routes",
    response_model=list[RouteOut],
    tags=["dial plan"],
    responses=problem_responses(401, 422),
)
async def list_routes(svc: Services, _: ReadToken) -> list[RouteOut]:
    """The dial-plan rules."""
    return [_route_out(r) for r in await svc.storage.routes.list()]


@router.post(
    "/routes",
    response_model=RouteOut,
    status_code=201,
    tags=["dial plan"],
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def add_route(body: RouteIn, svc: Services, _: WriteToken) -> RouteOut:
    now = time.time()
    record = RouteRecord(**body.model_dump(), created_at=now, updated_at=now)
    await _write(svc.storage.routes, record, check_route, adding=True, what="route")
    return _route_out(await _get(svc.storage.routes, record.id, "route"))


@router.get(
    "/routes/{id}",
    response_model=RouteOut,
    tags=["dial plan"],
    responses=problem_responses(401, 404, 422),
)
async def get_route(id: Id, svc: Services, _: ReadToken) -> RouteOut:
    return _route_out(await _get(svc.storage.routes, id, "route"))


@router.patch(
    "/routes/{id}",
    response_model=RouteOut,
    tags=["dial plan"],
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def update_route(id: Id, body: RoutePatch, svc: Services, _: WriteToken) -> RouteOut:
    old = await _get(svc.storage.routes, id, "route")
    record = dataclasses.replace(old, **_changes(body))
    await _write(svc.storage.routes, record, check_route, adding=False, what="route")
    return _route_out(await _get(svc.storage.routes, id, "route"))


@router.delete(
    "/routes/{id}",
    status_code=204,
    tags=["dial plan"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_route(id: Id, svc: Services, _: WriteToken) -> Response:
    if not await svc.storage.routes.delete(id):
        raise ApiProblem(404, f"no route {id}", field="id")
    return Response(status_code=204)
