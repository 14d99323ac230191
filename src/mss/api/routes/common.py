"""Helpers shared by the routers."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ...features.users import NUMBER_RE
from ..problems import ApiProblem
from ..services import ApiServices

__all__ = ("NUMBER_PATTERN", "services", "strict_query")

#: a user number
NUMBER_PATTERN = NUMBER_RE.pattern


def services(request: Request) -> ApiServices:
    """The :class:`ApiServices` of the app handling ``request``."""
    found: ApiServices = request.app.state.services
    return found


def _query_names(dependant: Any) -> set[str]:
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def strict_query(request: Request) -> None:
    """Reject unknown and repeated query parameters (a typo like ``?limt=`` is a 422, not a
    silently ignored filter)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    params = request.query_params
    for key in params:
        if key not in known:
            raise ApiProblem(
                422, f"{key or '(empty)'}: unknown query parameter", field=key or "query"
            )
        if len(params.getlist(key)) > 1:
            raise ApiProblem(422, f"{key}: given more than once", field=key)
