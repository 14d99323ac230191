"""``/voicemail``: each user's voicemail settings and messages (issue 10).

A thin translation to :class:`~mss.features.voicemail.VoicemailService` and
:func:`~mss.features.voicemail.update_settings`, the same code the CLI runs: marking a message
read or deleting it updates the phones' MWI at once. Reading needs the ``read`` scope, every
change the ``admin`` scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from ...features.voicemail import (
    DIVERT_CONDITIONS,
    VoicemailError,
    VoicemailService,
    parse_settings,
    settings_to_json,
    update_settings,
)
from ...storage.base import VoicemailMailRecord, VoicemailRecord
from ..auth import ReadToken, WriteToken
from ..problems import ApiProblem, problem_responses
from ..services import ApiServices
from .common import NUMBER_PATTERN, services, strict_query

__all__ = ("router",)

router = APIRouter(dependencies=[Depends(strict_query)])
Services = Annotated[ApiServices, Depends(services)]
Number = Annotated[str, Path(pattern=NUMBER_PATTERN, description="the mailbox (user number)")]
MessageId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="the message id")]


class VoicemailMailOut(BaseModel):
    """The e-mail of a message: queued (with the next attempt), sent, or failed (why)."""

    to: str
    state: str = Field(description="queued, sent or failed")
    attempts: int
    next_try: float | None = Field(description="epoch seconds of the next attempt while queued")
    last_error: str = Field(description="the last SMTP error or reply")


class VoicemailOut(BaseModel):
    id: str
    user: str
    caller: str
    caller_display: str
    call_id: str
    started_at: float = Field(description="epoch seconds the recording started")
    duration: float = Field(description="seconds of audio")
    read: bool
    created_at: float
    email: VoicemailMailOut | None


class VoicemailPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    read: bool = Field(description="true: heard (MWI old); false: new again")


class VoicemailSettingsOut(BaseModel):
    enabled: bool
    email: str
    divert: list[str]
    custom_greeting: bool
    max_seconds: int
    pin_set: bool = Field(description="whether a PIN is set (the PIN itself is not shown)")


class VoicemailSettingsPatch(BaseModel):
    """Absent fields are kept (same validation as ``mss user set``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    email: str | None = Field(default=None, description="'' = no e-mail")
    divert: list[str] | None = Field(
        default=None, description=f"any of {', '.join(DIVERT_CONDITIONS[:3])}, or ['always']"
    )
    max_seconds: int | None = None
    pin: str | None = Field(default=None, description="4-16 digits, '' = none")
    default_greeting: bool | None = Field(
        default=None, description="true: drop the custom greeting"
    )


def _service(svc: ApiServices) -> VoicemailService:
    found = svc.voicemail
    if found is None:
        raise ApiProblem(404, "voicemail is not available on this server")
    return found  # type: ignore[no-any-return]


def _user(svc: ApiServices, number: str) -> None:
    if svc.users.get(number) is None:
        raise ApiProblem(404, f"no user {number}", field="number")


def _problem(exc: VoicemailError) -> ApiProblem:
    status = exc.http_status if exc.http_status != 400 else 422
    return ApiProblem(status, str(exc), field=exc.field)


def _out(record: VoicemailRecord, mail: VoicemailMailRecord | None) -> VoicemailOut:
    return VoicemailOut(
        id=record.id,
        user=record.user,
        caller=record.caller,
        caller_display=record.caller_display,
        call_id=record.call_id,
        started_at=record.started_at,
        duration=record.duration,
        read=record.read,
        created_at=record.created_at,
        email=None
        if mail is None
        else VoicemailMailOut(
            to=mail.to,
            state=mail.state,
            attempts=mail.attempts,
            next_try=mail.next_try if mail.state == "queued" else None,
            last_error=mail.last_error,
        ),
    )


def _settings_out(extra: Any) -> VoicemailSettingsOut:
    data = settings_to_json(parse_settings(extra))
    return VoicemailSettingsOut(
        enabled=data["enabled"],
        email=data["email"],
        divert=data["divert"],
        custom_greeting=bool(data["greeting"]),
        max_seconds=data["max_seconds"],
        pin_set=bool(data["pin"]),
    )


@router.get(
    "/voicemail/{number}",
    response_model=list[VoicemailOut],
    tags=["voicemail"],
    responses=problem_responses(401, 404, 422),
)
async def list_messages(number: Number, svc: Services, _: ReadToken) -> list[VoicemailOut]:
    """The user's messages, oldest first, each with the state of its e-mail."""
    vm = _service(svc)
    _user(svc, number)
    return [_out(m, mail) for m, mail in await vm.list(number)]


@router.get(
    "/voicemail/{number}/settings",
    response_model=VoicemailSettingsOut,
    tags=["voicemail"],
    responses=problem_responses(401, 404, 422),
)
async def get_settings(number: Number, svc: Services, _: ReadToken) -> VoicemailSettingsOut:
    _service(svc)
    user = svc.users.get(number)
    if user is None:
        raise ApiProblem(404, f"no user {number}", field="number")
    return _settings_out(user.extra)


@router.patch(
    "/voicemail/{number}/settings",
    response_model=VoicemailSettingsOut,
    tags=["voicemail"],
    responses=problem_responses(401, 403, 404, 422),
)
async def patch_settings(
    number: Number, body: VoicemailSettingsPatch, svc: Services, _: WriteToken
) -> VoicemailSettingsOut:
    """Change the user's voicemail settings (as ``mss user set --voicemail ...``)."""
    vm = _service(svc)
    _user(svc, number)
    given = body.model_dump(exclude_unset=True)
    default = given.pop("default_greeting", None)
    if not given and not default:
        raise ApiProblem(422, "body: nothing to change: give at least one field", field="body")
    try:
        await update_settings(
            svc.users,
            number,
            data_dir=str(vm.data_dir),
            greeting="default" if default else None,
            **given,
        )
    except VoicemailError as exc:
        raise _problem(exc) from None
    user = svc.users.get(number)
    return _settings_out(user.extra if user is not None else None)


@router.put(
    "/voicemail/{number}/greeting",
    response_model=VoicemailSettingsOut,
    tags=["voicemail"],
    responses=problem_responses(401, 403, 404, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def put_greeting(
    number: Number, request: Request, svc: Services, _: WriteToken
) -> VoicemailSettingsOut:
    """Install a custom greeting: the body is a PCM WAV file (``Content-Type`` ``audio/wav`` or
    ``application/octet-stream``), converted to 8 kHz 16-bit mono, or refused (422)."""
    vm = _service(svc)
    _user(svc, number)
    data = await request.body()
    try:
        await update_settings(svc.users, number, data_dir=str(vm.data_dir), greeting=data)
    except VoicemailError as exc:
        raise _problem(exc) from None
    user = svc.users.get(number)
    return _settings_out(user.extra if user is not None else None)


@router.get(
    "/voicemail/{number}/{id}",
    response_model=VoicemailOut,
    tags=["voicemail"],
    responses=problem_responses(401, 404, 422),
)
async def get_message(number: Number, id: MessageId, svc: Services, _: ReadToken) -> VoicemailOut:
    vm = _service(svc)
    try:
        record = await vm.message(number, id)
    except VoicemailError as exc:
        raise _problem(exc) from None
    return _out(record, await vm.storage.voicemail.mail(id))


@router.get(
    "/voicemail/{number}/{id}/audio",
    tags=["voicemail"],
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "the message (WAV, 8 kHz 16-bit mono)"},
        **problem_responses(401, 404, 422),
    },
)
async def get_audio(number: Number, id: MessageId, svc: Services, _: ReadToken) -> FileResponse:
    """Download the message's WAV file."""
    vm = _service(svc)
    try:
        record = await vm.message(number, id)
    except VoicemailError as exc:
        raise _problem(exc) from None
    path = vm.path_of(record)
    if not path.is_file():
        raise ApiProblem(404, f"id: the audio file of message {id} is missing", field="id")
    return FileResponse(path, media_type="audio/wav", filename=f"voicemail-{id}.wav")


@router.patch(
    "/voicemail/{number}/{id}",
    response_model=VoicemailOut,
    tags=["voicemail"],
    responses=problem_responses(401, 403, 404, 422),
)
async def patch_message(
    number: Number, id: MessageId, body: VoicemailPatch, svc: Services, _: WriteToken
) -> VoicemailOut:
    """Mark a message read (or unread): the MWI count changes at once."""
    vm = _service(svc)
    try:
        record = await vm.mark_read(number, id, body.read)
    except VoicemailError as exc:
        raise _problem(exc) from None
    return _out(record, await vm.storage.voicemail.mail(id))


@router.post(
    "/voicemail/{number}/{id}/retry-mail",
    response_model=VoicemailOut,
    tags=["voicemail"],
    responses=problem_responses(401, 403, 404, 422),
)
async def retry_mail(number: Number, id: MessageId, svc: Services, _: WriteToken) -> VoicemailOut:
    """Queue the message's e-mail again (after a permanent failure was fixed)."""
    vm = _service(svc)
    try:
        await vm.retry_mail(number, id)
        record = await vm.message(number, id)
    except VoicemailError as exc:
        raise _problem(exc) from None
    return _out(record, await vm.storage.voicemail.mail(id))


@router.delete(
    "/voicemail/{number}/{id}",
    status_code=204,
    tags=["voicemail"],
    responses=problem_responses(401, 403, 404, 422),
)
async def delete_message(number: Number, id: MessageId, svc: Services, _: WriteToken) -> Response:
    """Delete a message, its WAV file and its queued e-mail."""
    vm = _service(svc)
    try:
        await vm.delete(number, id)
    except VoicemailError as exc:
        raise _problem(exc) from None
    return Response(status_code=204)
