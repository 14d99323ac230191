"""RFC 9457 problem details: every API error is ``application/problem+json`` naming the field.

Only this module turns exceptions into HTTP responses (house style 7: "only the edges translate
errors"). Feature errors that carry a ``field`` (``UserError``, ``SecurityError``,
``BlacklistError``, ``TokenError``) become 422; storage ``AlreadyExists`` 409, ``NotFound`` 404;
pydantic's request validation 422 with one entry per bad field; unknown routes 404 and wrong
methods 405. Nothing an API client sends is meant to produce a 500; an unexpected exception is
logged and answered with a 500 problem without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import MssError
from ..storage.errors import AlreadyExists, NotFound, StorageError

__all__ = (
    "PROBLEM_MEDIA_TYPE",
    "ApiProblem",
    "FieldError",
    "Problem",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
)

log = logging.getLogger("mss.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldError(BaseModel):
    """One bad field."""

    field: str = Field(description="dotted name of the field (``allow_ips.0``, ``number``)")
    reason: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details) with the fields at fault."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    field: str | None = Field(default=None, description="the (first) field at fault")
    errors: list[FieldError] = Field(default_factory=list)


class ApiProblem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.errors = list(errors)
        if field is not None and not self.errors:
            self.errors = [FieldError(field=field, reason=detail)]
        self.headers = headers


def problem_response(
    status: int,
    detail: str = "",
    *,
    field: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        field=field,
        errors=list(errors),
    )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of the problems a route can answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "model": Problem,
            "description": _TITLES.get(status, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out


def _loc_field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(
        exc.status, exc.detail, field=exc.field, errors=exc.errors, headers=exc.headers
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        field = "body" if e.get("type") == "json_invalid" else _loc_field(e.get("loc", ()))
        errors.append(FieldError(field=field, reason=str(e.get("msg", ""))))
    first = errors[0] if errors else FieldError(field="body", reason="invalid request")
    return problem_response(422, f"{first.field}: {first.reason}", field=first.field, errors=errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
    field = "body" if exc.status_code == 400 and "body" in detail else None
    return problem_response(exc.status_code, detail, field=field, headers=headers)


async def _on_mss_error(request: Request, exc: Exception) -> JSONResponse:
    field = getattr(exc, "field", None)
    reason = getattr(exc, "reason", None) or str(exc)
    if isinstance(field, str):
        return problem_response(422, f"{field}: {reason}", field=field)
    return problem_response(422, str(exc))


async def _on_exists(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(409, str(exc))


async def _on_not_found(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(404, str(exc))


async def _on_storage(request: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(exc, "http_status", 500))
    log.error("storage failure in %s %s: %s", request.method, request.url.path, exc)
    if status >= 500:
        return problem_response(
            503, "storage unavailable; nothing was changed, try again", headers={"Retry-After": "1"}
        )
    return problem_response(status, str(exc))


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(AlreadyExists, _on_exists)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(StorageError, _on_storage)
    app.add_exception_handler(MssError, _on_mss_error)
