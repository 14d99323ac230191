"""Field types shared by the schemas and the routes, precise enough that the OpenAPI document
tells what the server accepts (schemathesis checks that schema-valid input is accepted).
"""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator

__all__ = (
    "DATE_PATTERN",
    "DATE_SCHEMA",
    "IPV4_RE",
    "IP_SCHEMA",
    "JSON_INT",
    "NETWORK_SCHEMA",
    "PORT_RE",
    "PREFIX_PATTERN",
    "allow_ip_schema",
)

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_RE = rf"{_OCTET}(\.{_OCTET}){{3}}"
_IPV4 = IPV4_RE
PORT_RE = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PORT = PORT_RE
_PREFIX4 = r"(3[0-2]|[12]?[0-9])"

#: an IPv4 or IPv6 address
IP_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]
}
#: an address or an IPv4 CIDR (IPv6 CIDRs are accepted too; the document does not spell them)
NETWORK_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "string", "pattern": rf"^{_IPV4}/{_PREFIX4}$"},
    ]
}
#: a day, ``YYYY-MM-DD``
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DATE_SCHEMA: dict[str, Any] = {"format": "date"}
#: a dial prefix as the system blacklist takes it: no spaces or control characters
PREFIX_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]{1,64}$"


def allow_ip_schema(schema: dict[str, Any]) -> None:
    """An IP-authorization entry: IP, IPv4 CIDR or IPv4:PORT (also [IPv6]:PORT, IPv6 CIDR)."""
    schema["anyOf"] = [
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "string", "pattern": rf"^{_IPV4}/{_PREFIX4}$"},
        {"type": "string", "pattern": rf"^{_IPV4}:{_PORT}$"},
    ]


def _json_int(value: Any) -> Any:
    """JSON integers (``3``, and ``3.0``, which JSON Schema counts as an integer); not ``"3"``,
    not ``true``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: put last in ``Annotated[int, Strict(), Field(ge=..., le=...), JSON_INT]``: an integer as JSON
#: Schema means it (3 and 3.0, never "3" or true); the bounds stay before it so that the
#: document shows ``minimum`` / ``maximum``.
JSON_INT = BeforeValidator(_json_int)
