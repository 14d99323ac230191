"""Request and response models of the management API (pydantic v2; the OpenAPI 3 document is
generated from them).

Input models are strict where a lax conversion would hide a mistake (``"5"`` for an integer,
``1`` for a string) and forbid unknown fields, so a typo in a field name is a 422 naming it rather
than a silently ignored setting. Bounds repeat :meth:`mss.features.users.UserDirectory.validate_fields`
so the document tells clients the limits; the directory still validates (one source of truth for
the CLI and the API).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from ..storage.base import CDR_RESULTS
from .types import IP_SCHEMA, JSON_INT, NETWORK_SCHEMA, PREFIX_PATTERN, allow_ip_schema

__all__ = (
    "BanIn",
    "BanOut",
    "BindingOut",
    "BlacklistIn",
    "BlacklistOut",
    "CallOut",
    "CdrOut",
    "CdrPage",
    "DecisionOut",
    "ExplainOut",
    "Health",
    "IpListIn",
    "IpListOut",
    "SystemOut",
    "TokenCreated",
    "TokenIn",
    "TokenOut",
    "UserIn",
    "UserOut",
    "UserPatch",
)

Number = Annotated[
    str,
    Field(
        pattern=r"^[0-9A-Za-z_.+\-]{1,64}$",
        description="the user's number: 1-64 characters of 0-9 A-Z a-z _ . + -",
        examples=["1001"],
    ),
]
Password = Annotated[
    str,
    Field(min_length=4, max_length=128, description="write-only; stored as digest HA1s"),
]
DisplayName = Annotated[
    str, Field(max_length=128, pattern=r'^[^"\r\n]*$', description="display name")
]
Limit = Annotated[int, Strict(), Field(ge=0, le=10000), JSON_INT]
Devices = Annotated[int, Strict(), Field(ge=1, le=32), JSON_INT]
Seconds = Annotated[int, Strict(), Field(ge=0, le=3600), JSON_INT]
Rate = Annotated[int, Strict(), Field(ge=0, le=100), JSON_INT]
AllowIps = Annotated[
    list[Annotated[str, Field(max_length=64, json_schema_extra=allow_ip_schema)]],
    Field(max_length=64, description="IP-authorized sources: IP, CIDR, IP:PORT, [IPv6]:PORT"),
]


def _no_default(schema: dict[str, Any]) -> None:
    """Absent means "unchanged": the document shows no default (and no null)."""
    schema.pop("default", None)


_strict_in = ConfigDict(extra="forbid", strict=True)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class BindingOut(BaseModel):
    """A live registration (binding) of a user."""

    aor: str
    contact: str
    source: str = Field(description="where the REGISTER came from: transport:host:port")
    expires_in: int
    expires_at: float
    registered_at: float
    user_agent: str
    q: float | None
    path: list[str]
    call_id: str
    cseq: int
    instance: str


class UserIn(BaseModel):
    """A new local user."""

    model_config = _strict_in

    number: Number
    password: Password
    name: DisplayName = ""
    multi_device: bool = Field(default=False, description="one number, several devices")
    max_devices: Devices = 3
    allow_ips: AllowIps = Field(default_factory=list)
    max_calls: Limit | None = Field(default=None, description="concurrent calls; null = unlimited")
    max_outgoing: Limit | None = Field(default=None, description="concurrent outgoing calls")
    no_answer_timeout: Seconds | None = Field(
        default=None, description="seconds; 0 or null = the system timer"
    )


class UserPatch(BaseModel):
    """Changes to a user (at least one field); absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    password: Password = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment,arg-type]
    name: DisplayName = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment,arg-type]
    multi_device: bool = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment,arg-type]
    max_devices: Devices = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment,arg-type]
    allow_ips: AllowIps = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment,arg-type]
    max_calls: Limit | None = Field(
        default=None, description="null = unlimited", json_schema_extra=_no_default
    )
    max_outgoing: Limit | None = Field(
        default=None, description="null = unlimited", json_schema_extra=_no_default
    )
    no_answer_timeout: Seconds | None = Field(
        default=None,
        description="seconds; 0 or null = the system timer",
        json_schema_extra=_no_default,
    )


class UserOut(BaseModel):
    """A local user (the password is never returned)."""

    number: str
    name: str
    multi_device: bool
    max_devices: int
    allow_ips: list[str]
    max_calls: int | None
    max_outgoing: int | None
    no_answer_timeout: int | None
    password_valid: bool = Field(
        description="false when the stored HA1s are for another realm (set the password again)"
    )
    online: bool
    bindings: list[BindingOut]
    created_at: float
    updated_at: float


class BanIn(BaseModel):
    """An operator's ban."""

    model_config = _strict_in

    ip: Annotated[
        str, Field(max_length=64, description="IPv4 or IPv6 address", json_schema_extra=IP_SCHEMA)
    ]
    duration: Annotated[float, Field(strict=False, gt=0, le=10 * 365 * 86400)] | None = Field(
        default=None, description="seconds; null = until lifted"
    )
    reason: Annotated[str, Field(max_length=256)] = ""


class BanOut(BaseModel):
    ip: str
    active: bool
    until: float | None
    remaining: int | None = Field(description="seconds left; null = until lifted")
    reason: str
    count: int
    first_at: float
    last_at: float
    users: list[str]


class IpListIn(BaseModel):
    model_config = _strict_in

    list: Literal["black", "white"]
    network: Annotated[
        str,
        Field(max_length=64, description="IP or CIDR, v4 or v6", json_schema_extra=NETWORK_SCHEMA),
    ]
    note: Annotated[str, Field(max_length=256)] = ""


class IpListOut(BaseModel):
    list: str
    network: str
    note: str
    created_at: float


class BlacklistIn(BaseModel):
    """A system blacklist record (created or replaced by its two prefixes)."""

    model_config = _strict_in

    caller: Annotated[str, Field(pattern=PREFIX_PATTERN)] = Field(
        description="caller prefix; * = any; anonymous = withheld callers"
    )
    called: Annotated[str, Field(pattern=PREFIX_PATTERN)] = Field(
        description="called prefix; * = any"
    )
    rate: Rate = Field(default=100, description="percentage of matching calls blocked")
    description: Annotated[str, Field(max_length=256)] = ""


class BlacklistOut(BaseModel):
    caller: str
    called: str
    rate: int
    description: str
    created_at: float


class CdrOut(BaseModel):
    """A call detail record."""

    id: str
    caller: str
    dialed: str
    callee: str
    setup_at: float
    ring_at: float | None
    answer_at: float | None
    end_at: float | None
    duration: float
    status: int | None
    cause: int | None
    reason: str
    hangup: str
    result: str = Field(description=" / ".join(CDR_RESULTS))
    direction: str
    route: str
    call_id: str
    caller_addr: str
    callee_addr: str
    extra: dict[str, Any]


class CdrPage(BaseModel):
    items: list[CdrOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last page")


class CallOut(BaseModel):
    """A call in progress."""

    id: str
    caller: str
    callee: str
    state: str
    setup_at: float | None
    answer_at: float | None
    call_id: str
    caller_addr: str


class DecisionOut(BaseModel):
    kind: str = Field(description="auth_failure, ban, black_list, blacklist or limit")
    ip: str
    user: str
    rule: str = Field(description="the rule that fired")
    detail: str
    at: float


class ExplainOut(BaseModel):
    ip: str | None
    user: str | None
    decisions: list[DecisionOut]
    kept: int = Field(description="decisions in the ring buffer now")
    capacity: int = Field(description="size of the ring buffer")


class SystemOut(BaseModel):
    version: str
    uptime: float
    started_at: float | None
    listeners: list[str]
    using_extensions: bool = Field(description="fastsip's Cython extensions are in use")
    event_loop: str
    users: int
    registrations: int
    api: str
    event_subscribers: int


Scope = Literal["admin", "read"]


def _admin_scope() -> list[Scope]:
    return ["admin"]


class TokenIn(BaseModel):
    model_config = _strict_in

    name: Annotated[str, Field(max_length=128, pattern=r"^[^\r\n]*$")] = ""
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=2)] = Field(
        default_factory=_admin_scope
    )
    expires_in: Annotated[float, Field(strict=False, gt=0, le=10 * 365 * 86400)] | None = Field(
        default=None, description="seconds; null = never"
    )


class TokenOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: float
    expires_at: float | None
    last_used_at: float


class TokenCreated(TokenOut):
    token: str = Field(description="the token; shown only now, only its hash is stored")
