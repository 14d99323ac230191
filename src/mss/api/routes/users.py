"""``/users`` and ``/registrations``: local users (through the UserDirectory, as the CLI) and
their live bindings (through the LocationService; DELETE = forced unregistration)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from ...features.location import LocationService
from ...features.users import UserDirectory, UserError
from ...storage.base import BindingRecord, UserRecord
from ..auth import ReadToken, WriteToken
from ..problems import ApiProblem, problem_responses
from ..schemas import BindingOut, UserIn, UserOut, UserPatch
from ..services import ApiServices
from .common import NUMBER_PATTERN, services, strict_query

__all__ = ("binding_out", "router", "user_out")

router = APIRouter(dependencies=[Depends(strict_query)])
Services = Annotated[ApiServices, Depends(services)]
Number = Annotated[str, Path(pattern=NUMBER_PATTERN, description="the user's number")]


def binding_out(b: BindingRecord, now: float) -> BindingOut:
    return BindingOut(
        aor=b.aor,
        contact=b.contact,
        source=b.source,
        expires_in=max(0, int(b.expires_at - now)),
        expires_at=b.expires_at,
        registered_at=b.registered_at,
        user_agent=b.user_agent,
        q=b.q,
        path=list(b.path),
        call_id=b.call_id,
        cseq=b.cseq,
        instance=b.instance,
    )


def user_out(u: UserRecord, users: UserDirectory, location: LocationService) -> UserOut:
    now = time.time()
    live = location.lookup(u.number, now)
    extra_timer = u.extra.get("no_answer_timeout") if u.extra else None
    return UserOut(
        number=u.number,
        name=u.name,
        multi_device=u.multi_device,
        max_devices=u.max_devices,
        allow_ips=list(u.allow_ips),
        max_calls=u.max_calls,
        max_outgoing=u.max_outgoing,
        no_answer_timeout=extra_timer if isinstance(extra_timer, int) else None,
        password_valid=u.realm == users.realm,
        online=bool(live) or bool(u.allow_ips),
        bindings=[binding_out(b, now) for b in live],
        created_at=u.created_at,
        updated_at=u.updated_at,
    )


@router.get(
    "/users", response_model=list[UserOut], tags=["users"], responses=problem_responses(401, 422)
)
async def list_users(svc: Services, _: ReadToken) -> list[UserOut]:
    """Every local user with online state and live bindings."""
    return [user_out(u, svc.users, svc.location) for u in svc.users.all()]


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    tags=["users"],
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def create_user(body: UserIn, svc: Services, _: WriteToken) -> UserOut:
    """Add a user (same validation as ``mss user add``); it can register at once."""
    fields: dict[str, Any] = body.model_dump(exclude={"number", "password"})
    if fields.get("no_answer_timeout") is None:
        fields.pop("no_answer_timeout", None)
    if svc.users.get(body.number) is not None:
        raise ApiProblem(409, f"user {body.number} already exists", field="number")
    try:
        user = await svc.users.add(body.number, body.password, **fields)
    except UserError as e:
        if e.field == "number" and "already exists" in e.reason:
            raise ApiProblem(409, str(e), field="number") from None
        raise
    return user_out(user, svc.users, svc.location)


@router.get(
    "/users/{number}",
    response_model=UserOut,
    tags=["users"],
    responses=problem_responses(401, 404, 422),
)
async def get_user(number: Number, svc: Services, _: ReadToken) -> UserOut:
    user = svc.users.get(number)
    if user is None:
        raise ApiProblem(404, f"no user {number}", field="number")
    return user_out(user, svc.users, svc.location)


@router.patch(
    "/users/{number}",
    response_model=UserOut,
    tags=["users"],
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def update_user(number: Number, body: UserPatch, svc: Services, _: WriteToken) -> UserOut:
    """Change a user (same validation as ``mss user set``); absent fields are kept.

    ``max_calls`` / ``max_outgoing`` set to ``null`` mean unlimited."""
    if svc.users.get(number) is None:
        raise ApiProblem(404, f"no user {number}", field="number")
    given = body.model_dump(exclude_unset=True)
    password = given.pop("password", None)
    if not given and password is None:
        raise ApiProblem(422, "body: nothing to change: give at least one field", field="body")
    user = await svc.users.update(number, password=password, **given)
    return user_out(user, svc.users, svc.location)


@router.delete(
    "/users/{number}",
    status_code=204,
    tags=["users"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_user(number: Number, svc: Services, _: WriteToken) -> Response:
    """Delete a user and its registrations."""
    live = svc.location.lookup(number)
    if not await svc.users.delete(number):
        raise ApiProblem(404, f"no user {number}", field="number")
    svc.location.drop(number)
    if svc.status is not None and live:
        svc.status.bindings_changed(number, [], reason="user deleted")
    return Response(status_code=204)


@router.get(
    "/registrations",
    response_model=list[BindingOut],
    tags=["registrations"],
    responses=problem_responses(401, 422),
)
async def list_registrations(
    svc: Services,
    _: ReadToken,
    user: Annotated[
        str | None, Query(pattern=NUMBER_PATTERN, description="only this user's")
    ] = None,
) -> list[BindingOut]:
    """Every live binding (by user, best first)."""
    now = time.time()
    if user is not None:
        return [binding_out(b, now) for b in svc.location.lookup(user, now)]
    return [binding_out(b, now) for bs in svc.location.all().values() for b in bs]


@router.get(
    "/registrations/{number}",
    response_model=list[BindingOut],
    tags=["registrations"],
    responses=problem_responses(401, 404, 422),
)
async def get_registrations(number: Number, svc: Services, _: ReadToken) -> list[BindingOut]:
    """The live bindings of one user."""
    if svc.users.get(number) is None:
        raise ApiProblem(404, f"no user {number}", field="number")
    now = time.time()
    return [binding_out(b, now) for b in svc.location.lookup(number, now)]


@router.delete(
    "/registrations/{number}",
    response_model=list[BindingOut],
    tags=["registrations"],
    responses=problem_responses(401, 403, 404, 422),
)
async def unregister(
    number: str,
    svc: Services,
    _: WriteToken,
    contact: Annotated[
        str | None, Query(min_length=1, max_length=512, description="only this Contact URI")
    ] = None,
) -> list[BindingOut]:
    """Force-unregister a user (every binding, or the one of ``contact``); returns what was
    removed. The device must register again."""
    if svc.users.get(number) is None:
        raise ApiProblem(404, f"no user {number}", field="number")
    now = time.time()
    gone = await svc.location.remove(number, contact)
    if not gone:
        raise ApiProblem(
            404,
            f"{number} has no live registration" + (f" for {contact}" if contact else ""),
            field="contact" if contact else "number",
        )
    if svc.status is not None:
        svc.status.bindings_changed(number, svc.location.lookup(number, now), reason="removed")
    return [binding_out(b, now) for b in gone]
