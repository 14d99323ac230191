"""miniSIPServer-compatible ``/openapi/...`` routes, so scripts written for MSS keep working.

MSS's "openAPI" is GET-only with the parameters as one JSON object in the query string and the
administrator password as ``syskey``::

    GET /openapi/version?{"syskey":"1234"}
    GET /openapi/localuser/set?{"syskey":"1234","usrname":"1001","usrpwd":"secret"}

Here ``syskey`` is an API token (``read`` suffices for ``version`` and queries; ``set`` and
``delete`` need ``admin``). The JSON may also come URL-encoded as ``?data=<json>``, or as plain
``?syskey=...&usrname=...`` parameters. Parameter names are MSS's (``usrname``, ``usrpwd``,
``dispname``, ``description``); ``number``, ``password`` and ``name`` are accepted as aliases.

* ``/openapi/version`` → ``{"verInfo": "..."}``
* ``/openapi/localuser`` (= ``/query``; also ``/list``) → a JSON array of
  ``{"usrname", "dispname", "description", "addr", "state"}`` (``state`` ``"1"`` online,
  ``"0"`` offline; ``addr`` the registered ``host:port``), or only the user named by ``usrname``.
* ``/openapi/localuser/set`` creates the user, or changes it when it exists (same validation as
  ``mss user add``); → ``{"result": "success", "usrname": ...}``.
* ``/openapi/localuser/delete`` → ``{"result": "success", "usrname": ...}``.

Errors are problem documents (``application/problem+json``) with a 4xx status naming the field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request

from ...features.users import UserError
from ..auth import check_token
from ..problems import ApiProblem, problem_responses
from ..services import ApiServices

__all__ = ("router",)

router = APIRouter(prefix="/openapi", tags=["miniSIPServer compatible"])

_ALIASES = {"number": "usrname", "password": "usrpwd", "name": "dispname"}
_KNOWN = {"syskey", "usrname", "usrpwd", "dispname", "description"}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {}}}, "description": "MSS-style JSON"},
    **problem_responses(400, 401, 403, 404, 409, 422),
}
DataParam = Annotated[
    str | None,
    Query(
        max_length=4096,
        description='the JSON object, e.g. {"syskey":"<token>","usrname":"1001"}; the raw form '
        '?{"syskey":...} (as miniSIPServer) works as well',
    ),
]


def _params(request: Request) -> dict[str, str]:
    raw = unquote(request.url.query or "")
    text: str | None = None
    if raw.lstrip().startswith("{"):
        text = raw
    elif "data" in request.query_params:
        text = request.query_params["data"]
    if text is None:
        found: dict[str, Any] = dict(request.query_params)
    else:
        if len(text) > 4096:
            raise ApiProblem(400, "data: longer than 4096 characters", field="data")
        try:
            found = json.loads(text)
        except ValueError as e:
            raise ApiProblem(400, f"data: not JSON: {e}", field="data") from None
        if not isinstance(found, dict):
            raise ApiProblem(400, "data: expected a JSON object", field="data")
    out: dict[str, str] = {}
    for key, value in found.items():
        name = _ALIASES.get(str(key), str(key))
        if name not in _KNOWN:
            continue  # MSS ignores what it does not know
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ApiProblem(422, f"{name}: expected a string", field=name)
        out[name] = str(value)
    return out


async def _auth(request: Request, params: dict[str, str], *, admin: bool) -> ApiServices:
    svc: ApiServices = request.app.state.services
    try:
        await check_token(svc.tokens, params.get("syskey"), admin=admin)
    except ApiProblem as e:
        if e.status == 401:
            raise ApiProblem(401, f"syskey: {e.detail}", field="syskey") from None
        raise
    return svc


def _user_json(svc: ApiServices, number: str) -> dict[str, str]:
    u = svc.users.get(number)
    assert u is not None
    live = svc.location.lookup(number)
    addr = ""
    if live:
        source = live[0].source
        addr = source.split(":", 1)[1] if source.count(":") >= 2 else source
    description = u.extra.get("description", "") if u.extra else ""
    return {
        "usrname": u.number,
        "dispname": u.name,
        "description": str(description),
        "addr": addr,
        "state": "1" if live or u.allow_ips else "0",
    }


@router.get("/version", responses=_RESPONSES)
async def version(request: Request, data: DataParam = None) -> dict[str, Any]:
    """The server version (MSS: ``verInfo``)."""
    svc = await _auth(request, _params(request), admin=False)
    info = dict(svc.system.system_info()) if svc.system is not None else {}
    return {"verInfo": f"mss {info.get('version', '')}"}


async def _query(request: Request) -> Any:
    params = _params(request)
    svc = await _auth(request, params, admin=False)
    number = params.get("usrname")
    if number:
        if svc.users.get(number) is None:
            raise ApiProblem(404, f"usrname: no user {number}", field="usrname")
        return _user_json(svc, number)
    return [_user_json(svc, u.number) for u in svc.users.all()]


@router.get("/localuser", responses=_RESPONSES)
async def localuser(request: Request, data: DataParam = None) -> Any:
    """List the local users (or one, with ``usrname``)."""
    return await _query(request)


@router.get("/localuser/query", responses=_RESPONSES)
async def localuser_query(request: Request, data: DataParam = None) -> Any:
    """Same as ``/openapi/localuser``."""
    return await _query(request)


@router.get("/localuser/list", responses=_RESPONSES)
async def localuser_list(request: Request, data: DataParam = None) -> Any:
    """Same as ``/openapi/localuser`` (the name some MSS scripts use)."""
    return await _query(request)


@router.get("/localuser/set", responses=_RESPONSES)
async def localuser_set(request: Request, data: DataParam = None) -> dict[str, Any]:
    """Add a local user, or change it when it exists."""
    params = _params(request)
    svc = await _auth(request, params, admin=True)
    number = params.get("usrname")
    if not number:
        raise ApiProblem(422, "usrname: required", field="usrname")
    password = params.get("usrpwd")
    fields: dict[str, Any] = {}
    if "dispname" in params:
        fields["name"] = params["dispname"]
    existing = svc.users.get(number)
    if "description" in params:
        extra = dict(existing.extra) if existing is not None and existing.extra else {}
        extra["description"] = params["description"][:256]
        fields["extra"] = extra
    try:
        if existing is None:
            if not password:
                raise ApiProblem(422, "usrpwd: required for a new user", field="usrpwd")
            await svc.users.add(number, password, **fields)
        else:
            if not fields and password is None:
                raise ApiProblem(422, "usrpwd: nothing to change", field="usrpwd")
            await svc.users.update(number, password=password, **fields)
    except UserError as e:
        field = {"number": "usrname", "password": "usrpwd", "name": "dispname"}.get(
            e.field, e.field
        )
        status = 409 if "already exists" in e.reason else 422
        raise ApiProblem(status, f"{field}: {e.reason}", field=field) from None
    return {"result": "success", "usrname": number}


@router.get("/localuser/delete", responses=_RESPONSES)
async def localuser_delete(request: Request, data: DataParam = None) -> dict[str, Any]:
    """Delete a local user."""
    params = _params(request)
    svc = await _auth(request, params, admin=True)
    number = params.get("usrname")
    if not number:
        raise ApiProblem(422, "usrname: required", field="usrname")
    live = svc.location.lookup(number)
    if not await svc.users.delete(number):
        raise ApiProblem(404, f"usrname: no user {number}", field="usrname")
    svc.location.drop(number)
    if svc.status is not None and live:
        svc.status.bindings_changed(number, [], reason="user deleted")
    return {"result": "success", "usrname": number}
