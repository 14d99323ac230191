"""Configuration of the mss server: frozen dataclasses loaded from TOML, ``MSS_*`` and overrides.

Theory of operation
-------------------
The whole configuration is one immutable :class:`Config` value made of one frozen, slotted
dataclass per section (``[sip]``, ``[transport]``...). ``app.py`` builds it once with
:func:`load_config` and injects each section into the service that needs it; nothing in mss
reads configuration from a global (house style 9).

:func:`load_config` merges three layers, each one overriding the one before, key by key:

1. the TOML file: top-level keys (``data_dir``) and one table per section;
2. environment variables ``MSS_<SECTION>_<KEY>`` (``MSS_SIP_DOMAIN``,
   ``MSS_TRANSPORT_IDLE_TIMEOUT``) and ``MSS_<KEY>`` for top-level keys (``MSS_DATA_DIR``).
   Section names are single words, so the first ``_`` after ``MSS_`` splits section from key;
3. ``overrides``: dotted keys (``"sip.domain"``) from the command line.

Invariants
----------
* Every key is optional: ``Config()`` is a complete, valid configuration (:data:`DEFAULT_CONFIG`).
* Everything is generic over the dataclass fields: the type hints (resolved with
  :func:`typing.get_type_hints`) say how a value is converted and checked, and each field's
  ``metadata`` holds its documentation and its bounds. A later feature adds a setting by adding a
  field; the loader, the environment variable, ``config_to_dict`` and the reference table in
  ``docs/configuration.md`` follow.
* A value is checked whenever a dataclass is built, whether by the loader or by code, so an
  invalid ``Config`` cannot exist. Each dataclass's ``_check`` holds its cross-field rules.
* Every failure is a :class:`~mss.errors.ConfigError` naming the dotted field. The loader adds
  the section prefix and, for values from the environment, the variable's name.
* Types are strict: a TOML ``true`` is not a port and a TOML ``5060`` is not a string. Values
  from the environment (and string overrides) are text and are converted to the field's type.

This module imports nothing from mss but :mod:`mss.errors`.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import socket
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mss.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project depends on tomli for Python 3.10
    import tomli as tomllib

__all__ = (
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "ApiConfig",
    "AuthConfig",
    "BindingPersistence",
    "CallsConfig",
    "Config",
    "LimitsConfig",
    "LinesConfig",
    "Listen",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "MediaConfig",
    "RegistrarConfig",
    "SecurityConfig",
    "SipConfig",
    "SmtpConfig",
    "StorageBackend",
    "StorageConfig",
    "StunConfig",
    "TimersConfig",
    "TlsConfig",
    "Transport",
    "TransportConfig",
    "TrunksConfig",
    "VoicemailConfig",
    "config_reference_markdown",
    "config_to_dict",
    "env_var_name",
    "load_config",
)

ENV_PREFIX = "MSS_"
#: ``MSS_*`` variables that are not settings: ``MSS_CONFIG`` names the TOML file.
_ENV_NOT_SETTINGS = frozenset({"MSS_CONFIG"})

Transport = Literal["udp", "tcp", "tls"]
LogFormat = Literal["auto", "text", "json"]
DigestAlgorithm = Literal["SHA-256", "MD5", "SHA-512-256"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
StorageBackend = Literal["sqlite", "memory"]
BindingPersistence = Literal["write-through", "write-back"]


# --------------------------------------------------------------------------------------------
# Field declaration and value checks
# --------------------------------------------------------------------------------------------


def _meta(
    doc: str,
    *,
    ge: int | None = None,
    gt: int | None = None,
    le: int | None = None,
    check: Callable[[Any], Any] | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    """The ``metadata`` of a setting's dataclass field: its documentation and its bounds.

    Args:
        doc: one sentence for ``docs/configuration.md``.
        ge / gt / le: numeric bounds (``>=``, ``>``, ``<=``), skipped for ``None``.
        check: called with the converted value; returns the (possibly normalised) value or raises
            ``ValueError`` whose message becomes the ``ConfigError`` reason.
        secret: ``config_to_dict(..., redact_secrets=True)`` hides the value.
    """
    return {"doc": doc, "ge": ge, "gt": gt, "le": le, "check": check, "secret": secret}


def _show(value: object, limit: int = 60) -> str:
    """A short, one-line ``repr`` of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table"}
    if isinstance(value, (list, tuple)):
        return "list"
    return names.get(type(value), type(value).__name__)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _check_host(value: str) -> str:
    """An IP literal (IPv6 with or without brackets) or a host name; returns the canonical form.

    IP literals are compressed (``::1``, brackets removed); host names are lower-cased.
    """
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if text is not value and address.version != 6:
            raise ValueError(f"only IPv6 addresses go in brackets: {_show(value)}")
        return address.compressed
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if (
        text is value
        and 0 < len(name) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return text.lower()
    raise ValueError(f"not an IP address or host name: {_show(value)}")


def _check_domain(value: str) -> str:
    return value if value == "" else _check_host(value)


def _check_header_text(value: str) -> str:
    """Text that goes into a SIP header: printable, no line breaks (no header injection)."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 256:
        raise ValueError("must be at most 256 characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"must not contain control characters: {_show(value)}")
    return value


def _check_realm(value: str) -> str:
    """A digest realm goes inside a quoted string (RFC 3261 §25.1 quoted-string)."""
    if value and ('"' in value or "\\" in value):
        raise ValueError(f"must not contain '\"' or '\\': {_show(value)}")
    return value if value == "" else _check_header_text(value)


def _check_gc_interval(value: float) -> float:
    if value != 0 and not 0.05 <= value <= 86400:
        raise ValueError("must be 0 (off) or between 0.05 and 86400 seconds")
    return value


def _check_write_back_interval(value: float) -> float:
    if not 0.01 <= value <= 60:
        raise ValueError("must be between 0.01 and 60 seconds")
    return value


def _check_ratio(value: float) -> float:
    if not 0 < value < 1:
        raise ValueError(f"must be between 0 and 1 (exclusive), got {_show(value)}")
    return value


def _check_path(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    return value


def _check_data_dir(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return _check_path(value)


def _check_optional_path(value: str) -> str:
    if not value:
        raise ValueError("must not be empty; leave the key out to unset it")
    return _check_path(value)


def _split_host_port(text: str) -> tuple[str, str]:
    """Split ``HOST:PORT`` or ``[IPV6]:PORT``; raises ``ValueError``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError("expected [IPV6]:PORT")
        return text[: end + 1], text[end + 2 :]
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("expected HOST:PORT")
    if ":" in host:
        raise ValueError("an IPv6 address must be in brackets, as in [::1]:5060")
    return host, port


def _parse_port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
        raise ValueError(f"port must be a number 0..65535, got {_show(text)}")
    return int(text)


def _host_for_uri(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_api_listen(value: str) -> str:
    host, port = _split_host_port(value)
    return f"{_host_for_uri(_check_host(host))}:{_parse_port(port)}"


_WILDCARDS = frozenset({"0.0.0.0", "::"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# Generic conversion and validation
# --------------------------------------------------------------------------------------------

_BOOL_WORDS = {
    "1": True, "true": True, "yes": True, "on": True,
    "0": False, "false": False, "no": False, "off": False,
}  # fmt: skip
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,64}")
_NONE_WORDS = frozenset({"", "none", "off"})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a config dataclass (its annotations are strings)."""
    return typing.get_type_hints(cls)


def _join(prefix: str, field_name: str) -> str:
    if not prefix:
        return field_name
    if not field_name:
        return prefix
    return prefix + field_name if field_name.startswith("[") else f"{prefix}.{field_name}"


def _prefixed(error: ConfigError, prefix: str) -> ConfigError:
    return ConfigError(_join(prefix, error.field), error.reason)


def _coerce(value: object, tp: Any, path: str, *, textual: bool) -> Any:
    """Convert ``value`` to the type ``tp`` or raise ``ConfigError(path, ...)``.

    Args:
        value: a TOML value, a value given by code, or (``textual``) a string from the environment.
        tp: a resolved type hint: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``,
            ``X | None``, ``tuple[X, ...]`` or a config dataclass.
        path: the field's dotted path, for errors.
        textual: the value is text to be parsed (environment, string overrides); otherwise types
            must match exactly (``int`` is accepted for ``float``; ``bool`` never for numbers).

    Returns:
        The converted value.

    Raises:
        ConfigError: the value cannot be converted.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        inner = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(inner) != 1:  # pragma: no cover - a programming error in a dataclass
            raise TypeError(f"unsupported config type {tp!r}")
        if value is None:
            return None
        if textual and isinstance(value, str):
            # Text cannot be null: "" (and "none"/"off" but for strings) unsets an optional value.
            if value == "" or (
                inner[0] not in (str, bool) and value.strip().lower() in _NONE_WORDS
            ):
                return None
        return _coerce(value, inner[0], path, textual=textual)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if isinstance(value, str) and (isinstance(choice, str) or textual):
                if value.strip().lower() == str(choice).lower():
                    return choice
            elif type(value) is type(choice) and value == choice:
                return choice
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ConfigError(path, f"must be one of {allowed}, got {_show(value)}")
    if origin is tuple:
        item_tp, _ellipsis = typing.get_args(tp)
        if isinstance(value, str):
            items: list[object] = [part.strip() for part in value.split(",")] if value else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(path, f"expected a list, got {_kind(value)}")
        return tuple(
            _coerce(item, item_tp, f"{path}[{index}]", textual=textual)
            for index, item in enumerate(items)
        )
    if tp is bool:
        if type(value) is bool:
            return value
        if textual and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise ConfigError(path, f"expected a boolean, got {_show(value)}")
    if tp is int:
        if type(value) is int:
            return value
        if textual and isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
            return int(value.strip())
        raise ConfigError(path, f"expected an integer, got {_show(value)}")
    if tp is float:
        number: float | None = None
        if type(value) in (int, float):
            try:
                number = float(typing.cast(float, value))
            except OverflowError:
                raise ConfigError(path, "out of range") from None
        elif textual and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None:
            raise ConfigError(path, f"expected a number, got {_show(value)}")
        if not math.isfinite(number):
            raise ConfigError(path, f"must be a finite number, got {_show(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {_kind(value)} {_show(value)}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            names = {f.name for f in dataclasses.fields(tp)}
            for key in value:
                if not isinstance(key, str) or key not in names:
                    raise ConfigError(_join(path, str(key)), "unknown key")
            try:
                return tp(**value)
            except ConfigError as error:
                raise _prefixed(error, path) from None
        parse = getattr(tp, "parse", None)
        if isinstance(value, str) and parse is not None:
            try:
                return parse(value)
            except ConfigError as error:
                raise ConfigError(path, error.reason) from None
        raise ConfigError(path, f"expected a table, got {_kind(value)}")
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover - programming error


def _check_bounds(value: Any, meta: Mapping[str, Any], path: str) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.get("ge") is not None and value < meta["ge"]:
            raise ConfigError(path, f"must be >= {meta['ge']}")
        if meta.get("gt") is not None and value <= meta["gt"]:
            raise ConfigError(path, f"must be > {meta['gt']}")
        if meta.get("le") is not None and value > meta["le"]:
            raise ConfigError(path, f"must be <= {meta['le']}")
    check = meta.get("check")
    if check is not None and value is not None:
        try:
            value = check(value)
        except ValueError as error:
            raise ConfigError(path, str(error)) from None
    return value


class _Checked:
    """Base of the config dataclasses: converts and checks every field when one is built."""

    __slots__ = ()

    def __post_init__(self) -> None:
        this: Any = self
        hints = _hints(typing.cast(type, type(this)))
        for f in dataclasses.fields(this):
            value = getattr(self, f.name)
            new = _coerce(value, hints[f.name], f.name, textual=False)
            new = _check_bounds(new, f.metadata, f.name)
            if new is not value:
                object.__setattr__(self, f.name, new)
        self._check()

    def _check(self) -> None:
        """Cross-field rules; raise ``ConfigError`` naming a field relative to this dataclass."""


# --------------------------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listen(_Checked):
    """One SIP listener: a transport and the address it binds."""

    transport: Transport = field(default="udp", metadata=_meta("transport: udp, tcp or tls"))
    host: str = field(
        default="0.0.0.0",
        metadata=_meta("address to bind: an IP literal or a host name", check=_check_host),
    )
    port: int = field(
        default=5060, metadata=_meta("port to bind; 0 = an ephemeral port (tests)", ge=0, le=65535)
    )

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse ``TRANSPORT:HOST:PORT``: ``udp:0.0.0.0:5060``, ``tcp:[::1]:5060``, ``tls:h:5061``.

        Args:
            text: the listener; IPv6 addresses go in brackets.

        Returns:
            The listener, host in canonical form.

        Raises:
            ConfigError: with field ``listen`` and reason ``bad listener '...': why``.
        """

        def bad(why: str) -> ConfigError:
            return ConfigError("listen", f"bad listener {_show(text)}: {why}")

        if not isinstance(text, str):
            raise bad("expected a string")
        transport, sep, rest = text.strip().partition(":")
        if not sep:
            raise bad("expected TRANSPORT:HOST:PORT")
        if transport.lower() not in typing.get_args(Transport):
            raise bad("transport must be udp, tcp or tls")
        try:
            host, port_text = _split_host_port(rest)
            port = _parse_port(port_text)
        except ValueError as error:
            raise bad(str(error)) from None
        try:
            return cls(transport=typing.cast(Transport, transport.lower()), host=host, port=port)
        except ConfigError as error:
            raise bad(error.reason) from None

    def __str__(self) -> str:
        return f"{self.transport}:{_host_for_uri(self.host)}:{self.port}"


_DEFAULT_LISTEN = (Listen("udp", "0.0.0.0", 5060), Listen("tcp", "0.0.0.0", 5060))


@dataclass(frozen=True, slots=True)
class SipConfig(_Checked):
    """``[sip]``: who the server is."""

    domain: str = field(
        default="",
        metadata=_meta(
            "SIP domain of local users; empty = the first listener's host, or the machine's name "
            "when that is a wildcard address",
            check=_check_domain,
        ),
    )
    server_name: str = field(
        default="mss",
        metadata=_meta("sent as the Server and User-Agent header", check=_check_header_text),
    )
    realm: str = field(
        default="",
        metadata=_meta("digest authentication realm; empty = the domain", check=_check_realm),
    )


@dataclass(frozen=True, slots=True)
class TransportConfig(_Checked):
    """``[transport]``: sockets."""

    listen: tuple[Listen, ...] = field(
        default=_DEFAULT_LISTEN,
        metadata=_meta(
            "SIP listeners, each TRANSPORT:HOST:PORT (IPv6 in brackets); in the environment, "
            "comma-separated"
        ),
    )
    idle_timeout: float = field(
        default=120.0,
        metadata=_meta("seconds after which an idle TCP/TLS connection is closed", gt=0),
    )
    max_connections_per_source: int = field(
        default=32, metadata=_meta("TCP/TLS connections accepted from one IP address", ge=1)
    )
    max_connections: int = field(
        default=10000, metadata=_meta("TCP/TLS connections in total", ge=1)
    )
    use_uvloop: bool = field(default=True, metadata=_meta("run on uvloop when it is installed"))
    gc_threshold: int = field(
        default=50000,
        metadata=_meta(
            "generation-0 threshold of Python's garbage collector in `mss serve`; the objects "
            "alive after start-up are frozen (gc.freeze). 0 keeps Python's defaults",
            ge=0,
        ),
    )
    gc_freeze_interval: float = field(
        default=1.0,
        metadata=_meta(
            "seconds between two gc.freeze() in `mss serve`: what survived an interval leaves the "
            "collector's generations, so no collection walks the transactions kept for Timer J "
            "(pauses stay under a millisecond); 0 turns it off",
            check=_check_gc_interval,
        ),
    )
    gc_full_interval: float = field(
        default=600.0,
        metadata=_meta(
            "seconds between two full collections (unfreeze, collect, freeze) that find reference "
            "cycles among frozen objects; 0 never (with gc_freeze_interval > 0)",
            check=_check_gc_interval,
        ),
    )
    recv_buffer: int = field(
        default=4 * 1024 * 1024,
        metadata=_meta("socket receive buffer (SO_RCVBUF) in bytes", ge=1024, le=1 << 30),
    )

    def _check(self) -> None:
        if not self.listen:
            raise ConfigError("listen", "needs at least one listener")
        seen: dict[Listen, int] = {}
        for index, listen in enumerate(self.listen):
            if listen.port != 0 and listen in seen:
                raise ConfigError(
                    f"listen[{index}]", f"duplicate of listen[{seen[listen]}] ('{listen}')"
                )
            seen.setdefault(listen, index)
        if self.max_connections_per_source > self.max_connections:
            raise ConfigError(
                "max_connections_per_source",
                f"must be <= max_connections ({self.max_connections})",
            )


@dataclass(frozen=True, slots=True)
class TlsConfig(_Checked):
    """``[tls]``: certificates for ``tls`` listeners."""

    cert_file: str | None = field(
        default=None,
        metadata=_meta(
            "PEM certificate chain; required by a tls listener", check=_check_optional_path
        ),
    )
    key_file: str | None = field(
        default=None,
        metadata=_meta("PEM private key; required by a tls listener", check=_check_optional_path),
    )
    ca_file: str | None = field(
        default=None,
        metadata=_meta(
            "PEM CA bundle to verify peers; unset = the system's", check=_check_optional_path
        ),
    )

    def _check(self) -> None:
        if self.cert_file is not None and self.key_file is None:
            raise ConfigError("key_file", "required when cert_file is set")
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError("cert_file", "required when key_file is set")


@dataclass(frozen=True, slots=True)
class StunConfig(_Checked):
    """``[stun]``: STUN (RFC 5389) binding answers; every SIP UDP port answers STUN too."""

    enabled: bool = field(default=True, metadata=_meta("answer STUN binding requests"))
    port: int | None = field(
        default=3478,
        metadata=_meta(
            "dedicated STUN UDP port besides the SIP ports; 0 or unset = none", ge=0, le=65535
        ),
    )
    host: str = field(
        default="0.0.0.0",
        metadata=_meta("address the dedicated STUN port binds", check=_check_host),
    )

    @property
    def dedicated_port(self) -> int | None:
        """The dedicated port to bind, or ``None`` when there is none (or STUN is off)."""
        return self.port if self.enabled and self.port else None


@dataclass(frozen=True, slots=True)
class TimersConfig(_Checked):
    """``[timers]``: SIP transaction timers (RFC 3261 §17.1.1.1), seconds."""

    t1: float = field(default=0.5, metadata=_meta("T1, the round-trip time estimate", gt=0, le=60))
    t2: float = field(
        default=4.0,
        metadata=_meta("T2, the maximum retransmit interval of non-INVITE requests", gt=0, le=600),
    )
    t4: float = field(
        default=5.0, metadata=_meta("T4, the time a message may stay in the network", gt=0, le=600)
    )

    def _check(self) -> None:
        if self.t1 > self.t2:
            raise ConfigError("t1", f"must be <= t2 ({self.t2})")


@dataclass(frozen=True, slots=True)
class LimitsConfig(_Checked):
    """``[limits]``: what the SIP parser accepts (fastsip ``Limits``)."""

    max_message_size: int = field(
        default=65536, metadata=_meta("bytes in one SIP message", ge=1, le=1 << 30)
    )
    max_headers: int = field(default=128, metadata=_meta("header fields in one message", ge=1))
    max_header_length: int = field(default=8192, metadata=_meta("bytes in one header field", ge=1))
    max_via: int = field(default=70, metadata=_meta("Via values in one message", ge=1))


@dataclass(frozen=True, slots=True)
class RegistrarConfig(_Checked):
    """``[registrar]``: registration expiry, seconds (423 below the minimum)."""

    default_expires: int = field(
        default=3600, metadata=_meta("expiry when a REGISTER asks for none", ge=1)
    )
    min_expires: int = field(
        default=60, metadata=_meta("shortest expiry accepted; shorter gets 423", ge=1)
    )
    max_expires: int = field(
        default=7200,
        metadata=_meta("longest expiry granted; longer is shortened", ge=1, le=2**32 - 1),
    )
    persist: BindingPersistence = field(
        default="write-through",
        metadata=_meta(
            "when bindings reach storage: write-through commits each change before its 200 OK "
            "(a kill -9 loses nothing acknowledged); write-back answers at once and commits the "
            "changes of each write_back_interval in one transaction (Kamailio's usrloc db_mode "
            "2; a crash loses at most that interval's changes, a clean stop none)"
        ),
    )
    write_back_interval: float = field(
        default=1.0,
        metadata=_meta(
            "seconds between write-back commits (persist = write-back)",
            check=_check_write_back_interval,
        ),
    )

    def _check(self) -> None:
        if self.min_expires > self.max_expires:
            raise ConfigError("max_expires", f"must be >= min_expires ({self.min_expires})")
        if self.default_expires < self.min_expires:
            raise ConfigError("default_expires", f"must be >= min_expires ({self.min_expires})")
        if self.default_expires > self.max_expires:
            raise ConfigError("default_expires", f"must be <= max_expires ({self.max_expires})")


@dataclass(frozen=True, slots=True)
class AuthConfig(_Checked):
    """``[auth]``: digest authentication (RFC 3261 §22)."""

    nonce_lifetime: int = field(default=300, metadata=_meta("seconds a nonce stays valid", ge=1))
    secret: str = field(
        default="",
        metadata=_meta(
            "key that signs nonces; empty = generated and kept in the data dir", secret=True
        ),
    )
    failed_response: Literal[401, 403] = field(
        default=401,
        metadata=_meta(
            "answer to a request whose credentials are wrong: 401 (challenge again) or 403"
        ),
    )
    algorithms: tuple[DigestAlgorithm, ...] = field(
        default=("SHA-256", "MD5"),
        metadata=_meta(
            "digest algorithms offered, one challenge each, in this order (RFC 8760: a client "
            "uses the first it supports); clients that only read the first challenge (e.g. "
            "sipp 3.6) need MD5 first or alone"
        ),
    )

    def _check(self) -> None:
        if not self.algorithms:
            raise ConfigError("algorithms", "offer at least one algorithm")
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ConfigError("algorithms", "each algorithm at most once")


@dataclass(frozen=True, slots=True)
class CallsConfig(_Checked):
    """``[calls]``: call routing."""

    no_answer_timeout: int = field(
        default=60,
        metadata=_meta("seconds a call may ring before the callee legs are cancelled (480)", ge=1),
    )
    max_forwards: int = field(
        default=70, metadata=_meta("Max-Forwards of requests the server originates", ge=1, le=255)
    )


@dataclass(frozen=True, slots=True)
class SecurityConfig(_Checked):
    """``[security]``: fail-to-ban of sources that keep failing authentication; call filtering."""

    f2b_enabled: bool = field(
        default=True, metadata=_meta("ban sources that fail authentication repeatedly")
    )
    f2b_max_failures: int = field(
        default=5, metadata=_meta("failed credential checks that trigger a ban", ge=1)
    )
    f2b_window: int = field(
        default=60, metadata=_meta("seconds over which failures are counted", ge=1)
    )
    f2b_ban_time: int = field(
        default=10800, metadata=_meta("seconds of the first ban; banned sources get no reply", ge=1)
    )
    f2b_max_ban_time: int = field(
        default=86400, metadata=_meta("longest ban, seconds, as repeated bans grow", ge=1)
    )
    f2b_known_good_factor: int = field(
        default=4,
        metadata=_meta("a source that authenticated recently may fail this many times more", ge=1),
    )
    f2b_known_good_window: int = field(
        default=86400,
        metadata=_meta("seconds a successful authentication keeps a source known-good", ge=1),
    )
    ban_table_size: int = field(
        default=100000, metadata=_meta("sources tracked at most (oldest evicted)", ge=1)
    )
    drop_log_interval: float = field(
        default=10.0,
        metadata=_meta(
            "seconds between two 'dropped N packets' security events for one banned source",
            gt=0,
        ),
    )
    blacklist_status: int = field(
        default=403,
        metadata=_meta("SIP status answered to a call the system blacklist blocks", ge=400, le=699),
    )

    def _check(self) -> None:
        if self.f2b_ban_time > self.f2b_max_ban_time:
            raise ConfigError("f2b_max_ban_time", f"must be >= f2b_ban_time ({self.f2b_ban_time})")


@dataclass(frozen=True, slots=True)
class LinesConfig(_Checked):
    """``[lines]``: registration of the external lines to their providers."""

    retry_min: float = field(
        default=30.0,
        metadata=_meta("seconds before retrying a failed registration; doubles per failure", gt=0),
    )
    retry_max: float = field(
        default=600.0, metadata=_meta("longest wait between two registration retries", gt=0)
    )
    refresh_ratio: float = field(
        default=0.85,
        metadata=_meta(
            "a registration is refreshed after this fraction of the granted expiry",
            check=_check_ratio,
        ),
    )
    history: int = field(
        default=100, metadata=_meta("state changes remembered per line", ge=1, le=100000)
    )
    unregister_on_stop: bool = field(
        default=True, metadata=_meta("remove the registrations (Expires: 0) when the server stops")
    )

    def _check(self) -> None:
        if self.retry_min > self.retry_max:
            raise ConfigError("retry_max", f"must be >= retry_min ({self.retry_min})")


@dataclass(frozen=True, slots=True)
class TrunksConfig(_Checked):
    """``[trunks]``: OPTIONS pings that give each SIP trunk an up/down state."""

    ping_interval: float = field(
        default=30.0, metadata=_meta("seconds between two OPTIONS pings to a trunk", gt=0)
    )
    ping_timeout: float = field(
        default=5.0,
        metadata=_meta("seconds without any answer before a ping counts as failed", gt=0),
    )
    ping_failures: int = field(
        default=1, metadata=_meta("failed pings in a row that mark a trunk down", ge=1)
    )


@dataclass(frozen=True, slots=True)
class StorageConfig(_Checked):
    """``[storage]``: where users, trunks and records are kept."""

    backend: StorageBackend = field(
        default="sqlite", metadata=_meta("sqlite or memory (tests; nothing survives a restart)")
    )
    path: str = field(
        default="",
        metadata=_meta("SQLite database file; empty = <data_dir>/mss.sqlite3", check=_check_path),
    )


@dataclass(frozen=True, slots=True)
class LogConfig(_Checked):
    """``[log]``: logging."""

    format: LogFormat = field(
        default="auto", metadata=_meta("text, json (one object a line) or auto (text on a TTY)")
    )
    level: LogLevel = field(
        default="info", metadata=_meta("debug, info, warning, error or critical")
    )


@dataclass(frozen=True, slots=True)
class ApiConfig(_Checked):
    """``[api]``: the management HTTP API."""

    listen: str = field(
        default="127.0.0.1:8080",
        metadata=_meta("HOST:PORT of the HTTP API ([IPV6]:PORT)", check=_check_api_listen),
    )
    enabled: bool = field(default=True, metadata=_meta("serve the management API"))
    allow_insecure_remote: bool = field(
        default=False,
        metadata=_meta("allow binding the API without TLS to a non-loopback address"),
    )
    tls_cert_file: str | None = field(
        default=None,
        metadata=_meta(
            "PEM certificate chain: serve the API over HTTPS (with tls_key_file)",
            check=_check_optional_path,
        ),
    )
    tls_key_file: str | None = field(
        default=None,
        metadata=_meta("PEM private key of tls_cert_file", check=_check_optional_path),
    )

    @property
    def host(self) -> str:
        """The host of ``listen``, without brackets."""
        return _check_host(_split_host_port(self.listen)[0])

    @property
    def port(self) -> int:
        """The port of ``listen``."""
        return _parse_port(_split_host_port(self.listen)[1])

    @property
    def tls(self) -> bool:
        """Whether the API is served over HTTPS."""
        return self.tls_cert_file is not None

    def _check(self) -> None:
        if self.tls_cert_file is not None and self.tls_key_file is None:
            raise ConfigError("tls_key_file", "required when tls_cert_file is set")
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ConfigError("tls_cert_file", "required when tls_key_file is set")
        if (
            self.enabled
            and not self.tls
            and not self.allow_insecure_remote
            and not _is_loopback(self.host)
        ):
            raise ConfigError(
                "listen",
                f"{self.host} is not a loopback address; set allow_insecure_remote = true "
                "to expose the API without TLS, or serve it over TLS (tls_cert_file, "
                "tls_key_file)",
            )


def _check_rtp_host(value: str) -> str:
    if not value:
        return value
    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise ValueError(f"not an IP address: {_show(value)}") from None


@dataclass(frozen=True, slots=True)
class MediaConfig(_Checked):
    """``[media]``: RTP for the calls the server answers itself (voicemail, issue 10)."""

    rtp_port_min: int = field(
        default=10000, metadata=_meta("lowest UDP port of an RTP stream", ge=1024, le=65534)
    )
    rtp_port_max: int = field(
        default=20000, metadata=_meta("highest UDP port of an RTP stream", ge=1025, le=65535)
    )
    rtp_host: str = field(
        default="",
        metadata=_meta(
            "IP address RTP binds to and SDP announces; empty = the server's address facing "
            "the caller",
            check=_check_rtp_host,
        ),
    )

    def _check(self) -> None:
        if self.rtp_port_max - self.rtp_port_min < 1:
            raise ConfigError(
                "rtp_port_max", f"must be > rtp_port_min ({self.rtp_port_min}): one RTP/RTCP pair"
            )


@dataclass(frozen=True, slots=True)
class VoicemailConfig(_Checked):
    """``[voicemail]``: recording of voicemail messages (issue 10)."""

    silence_timeout: float = field(
        default=10.0,
        metadata=_meta("seconds of silence (or no RTP) that end a recording", gt=0),
    )


SmtpSecurity = Literal["none", "starttls", "tls"]


@dataclass(frozen=True, slots=True)
class SmtpConfig(_Checked):
    """``[smtp]``: the system SMTP server every voicemail e-mail goes through (issue 10)."""

    host: str = field(
        default="", metadata=_meta("SMTP server host name or address; empty = no voicemail e-mail")
    )
    port: int = field(
        default=0,
        metadata=_meta("SMTP port; 0 = 25 (none), 587 (starttls) or 465 (tls)", ge=0, le=65535),
    )
    security: SmtpSecurity = field(
        default="starttls",
        metadata=_meta("none, starttls (RFC 3207, required when offered) or tls (implicit TLS)"),
    )
    user: str = field(default="", metadata=_meta("SMTP AUTH user name; empty = no AUTH"))
    password: str = field(default="", metadata=_meta("SMTP AUTH password", secret=True))
    from_address: str = field(
        default="", metadata=_meta("From address of voicemail e-mails; empty = mss@<sip.domain>")
    )
    ca_file: str | None = field(
        default=None,
        metadata=_meta(
            "PEM CA bundle that verifies the SMTP server's certificate; unset = the system's",
            check=_check_optional_path,
        ),
    )
    timeout: float = field(
        default=30.0, metadata=_meta("seconds for connecting and for each SMTP reply", gt=0)
    )
    retry_min: float = field(
        default=30.0,
        metadata=_meta(
            "seconds before the first retry of a temporary failure; doubles per failure", gt=0
        ),
    )
    retry_max: float = field(
        default=3600.0, metadata=_meta("longest wait between two delivery attempts", gt=0)
    )
    give_up_after: float = field(
        default=432000.0,
        metadata=_meta(
            "seconds after which a message still undelivered is marked failed; 0 = never", ge=0
        ),
    )

    @property
    def effective_port(self) -> int:
        """``port``, else the standard port of ``security``."""
        return self.port or {"none": 25, "starttls": 587, "tls": 465}[self.security]

    def _check(self) -> None:
        if self.retry_min > self.retry_max:
            raise ConfigError("retry_max", f"must be >= retry_min ({self.retry_min})")
        if self.password and not self.user:
            raise ConfigError("user", "required when password is set")


@dataclass(frozen=True, slots=True)
class Config(_Checked):
    """The whole configuration: ``data_dir`` and one dataclass per TOML section."""

    data_dir: str = field(
        default="./mss-data",
        metadata=_meta("directory for the database and state", check=_check_data_dir),
    )
    sip: SipConfig = field(default_factory=SipConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    stun: StunConfig = field(default_factory=StunConfig)
    timers: TimersConfig = field(default_factory=TimersConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    lines: LinesConfig = field(default_factory=LinesConfig)
    trunks: TrunksConfig = field(default_factory=TrunksConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    log: LogConfig = field(default_factory=LogConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    voicemail: VoicemailConfig = field(default_factory=VoicemailConfig)

    def _check(self) -> None:
        for index, listen in enumerate(self.transport.listen):
            if listen.transport == "tls":
                for name in ("cert_file", "key_file"):
                    if getattr(self.tls, name) is None:
                        raise ConfigError(
                            f"tls.{name}",
                            f"required by the tls listener transport.listen[{index}] ('{listen}')",
                        )
        port = self.stun.dedicated_port
        for index, listen in enumerate(self.transport.listen):
            if listen.transport == "udp" and listen.port == port:
                hosts = {listen.host, self.stun.host}
                if len(hosts) == 1 or hosts & _WILDCARDS:
                    raise ConfigError(
                        "stun.port",
                        f"{port} is the SIP UDP port of transport.listen[{index}], which answers "
                        "STUN already; choose another port or 0",
                    )

    def effective_domain(self, hostname: str | None = None) -> str:
        """``sip.domain``, else the first listener's host, else (wildcard) the machine's name.

        Args:
            hostname: the machine's name; ``None`` = ``socket.gethostname()``.
        """
        if self.sip.domain:
            return self.sip.domain
        first = self.transport.listen[0].host
        if first not in _WILDCARDS:
            return first
        return hostname if hostname is not None else socket.gethostname()

    def effective_realm(self, hostname: str | None = None) -> str:
        """``sip.realm``, else the effective domain."""
        return self.sip.realm or self.effective_domain(hostname)

    def storage_path(self) -> str:
        """``storage.path``, else ``<data_dir>/mss.sqlite3``."""
        return self.storage.path or str(Path(self.data_dir) / "mss.sqlite3")


#: The configuration when nothing is set: every default, documented in docs/configuration.md.
DEFAULT_CONFIG = Config()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _sections() -> dict[str, type]:
    hints = _hints(Config)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(hints[f.name])
    }


def env_var_name(key: str) -> str:
    """The environment variable of a dotted key: ``sip.domain`` → ``MSS_SIP_DOMAIN``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _env_key(name: str, sections: Mapping[str, type]) -> tuple[str, str]:
    """The (section, key) of an ``MSS_*`` variable: ``MSS_SIP_DOMAIN`` → ``("sip", "domain")``.

    Top-level keys have section ``""``: ``MSS_DATA_DIR`` → ``("", "data_dir")``.
    """
    rest = name[len(ENV_PREFIX) :].lower()
    head, sep, tail = rest.partition("_")
    return (head, tail) if sep and head in sections else ("", rest)


class _Entry(typing.NamedTuple):
    value: object
    textual: bool  # text to parse (environment, string overrides) rather than a typed value
    origin: str  # the environment variable's name, or "" (file, overrides)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        raise ConfigError(str(path), f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), f"invalid TOML: not UTF-8 ({error.reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), f"invalid TOML: {error}") from None


def _with_origin(reason: str, origin: str) -> str:
    return f"{reason} (from environment variable {origin})" if origin else reason


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the configuration from a TOML file, ``MSS_*`` variables and overrides, in that order.

    Args:
        path: the TOML file; ``None`` = the file named by ``MSS_CONFIG`` if set, else none.
        env: the environment; ``None`` = ``os.environ``. Every ``MSS_*`` variable but
            ``MSS_CONFIG`` must name a setting: ``MSS_<SECTION>_<KEY>`` or ``MSS_<KEY>``.
        overrides: dotted keys (``"sip.domain"``, ``"transport.listen"``, ``"data_dir"``) to
            values, from the command line. A string is parsed like an environment value;
            ``None`` means "not given" and is skipped.

    Returns:
        The checked, frozen configuration.

    Raises:
        ConfigError: naming the dotted field (or the file) at fault.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    sections = _sections()
    # section ("" = top level) -> key -> entry; later layers replace earlier ones key by key.
    layers: dict[str, dict[str, _Entry]] = {"": {}, **{name: {} for name in sections}}

    if path is None and environ.get("MSS_CONFIG"):
        path = environ["MSS_CONFIG"]
    if path is not None:
        for key, value in _read_toml(Path(path)).items():
            if key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(key, f"expected a table [{key}], got {_kind(value)}")
                for sub, sub_value in value.items():
                    layers[key][sub] = _Entry(sub_value, False, "")
            elif isinstance(value, dict) and key not in _hints(Config):
                raise ConfigError(key, "unknown section")
            else:
                layers[""][key] = _Entry(value, False, "")
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in _ENV_NOT_SETTINGS:
            section, key = _env_key(name, sections)
            layers[section][key] = _Entry(environ[name], True, name)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        head, sep, tail = str(dotted).partition(".")
        if sep and head in sections:
            layers[head][tail] = _Entry(value, isinstance(value, str), "")
        else:
            layers[""][str(dotted)] = _Entry(value, isinstance(value, str), "")

    origins = {
        _join(section, key): entry.origin
        for section, entries in layers.items()
        for key, entry in entries.items()
        if entry.origin
    }
    built = {name: _build(cls, layers[name], name, origins) for name, cls in sections.items()}
    return typing.cast(Config, _build(Config, layers[""], "", origins, given=built))


_SETTING = re.compile(r"[^.\[]+(?:\.[^.\[]+)?")


def _build(
    cls: type,
    entries: Mapping[str, _Entry],
    prefix: str,
    origins: Mapping[str, str],
    *,
    given: Mapping[str, object] | None = None,
) -> object:
    """Build one dataclass from its entries, naming fields ``prefix.key`` in errors."""
    hints = _hints(cls)
    kwargs: dict[str, object] = dict(given or {})
    for key, entry in entries.items():
        if key not in hints or key in kwargs:
            reason = "is a section, not a key" if key in kwargs else "unknown key"
            raise ConfigError(
                f"{prefix}.{key}" if prefix else key, _with_origin(reason, entry.origin)
            )
        value = entry.value
        if entry.textual:
            try:
                value = _coerce(value, hints[key], key, textual=True)
            except ConfigError as error:
                raise ConfigError(
                    _join(prefix, error.field), _with_origin(error.reason, entry.origin)
                ) from None
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as error:
        full = _join(prefix, error.field)
        setting = _SETTING.match(full)
        origin = origins.get(setting.group(), "") if setting is not None else ""
        raise ConfigError(full, _with_origin(error.reason, origin)) from None


# --------------------------------------------------------------------------------------------
# Showing and documenting
# --------------------------------------------------------------------------------------------


def _plain(value: object, redact: bool) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(type(value), "parse"):
            return str(value)
        return {
            f.name: (
                "********"
                if redact and f.metadata.get("secret") and getattr(value, f.name)
                else _plain(getattr(value, f.name), redact)
            )
            for f in dataclasses.fields(value)
        }
    if isinstance(value, tuple):
        return [_plain(item, redact) for item in value]
    return value


def config_to_dict(cfg: Config, *, redact_secrets: bool = False) -> dict[str, Any]:
    """The configuration as plain data, in the shape of the TOML file.

    Sections become dicts, listeners their ``TRANSPORT:HOST:PORT`` text and tuples lists; an unset
    optional value is ``None`` (TOML has no null: leave such keys out when writing TOML).
    ``load_config(overrides=...)`` of the flattened result gives back an equal ``Config``.

    Args:
        cfg: the configuration.
        redact_secrets: replace non-empty secrets (``auth.secret``) with ``"********"``.
    """
    result = _plain(cfg, redact_secrets)
    assert isinstance(result, dict)
    return result


def _type_text(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        inner = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return f"{_type_text(inner[0])} or unset"
    if origin is Literal:
        return " / ".join(f"`{_toml_text(choice)}`" for choice in typing.get_args(tp))
    if origin is tuple:
        return "list of listeners" if typing.get_args(tp)[0] is Listen else "list"
    names = {bool: "boolean", int: "integer", float: "float", str: "string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _markdown_cell(text: str) -> str:
    """RST literals to Markdown ones; escape what Markdown tables and HTML would eat."""
    text = text.replace("``", "`").replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _toml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_text(item) for item in value) + "]"
    return str(value)


def _range_text(meta: Mapping[str, Any]) -> str:
    parts = []
    if meta.get("ge") is not None:
        parts.append(f"≥ {meta['ge']}")
    if meta.get("gt") is not None:
        parts.append(f"> {meta['gt']}")
    if meta.get("le") is not None:
        parts.append(f"≤ {meta['le']}")
    return ", ".join(parts)


def config_reference_markdown() -> str:
    """The key reference of ``docs/configuration.md``, generated from the dataclasses.

    One table per section with each key's type, default, bounds, environment variable and
    meaning. A test checks that the document holds exactly this text.
    """
    defaults = config_to_dict(DEFAULT_CONFIG)
    out: list[str] = []
    groups: list[tuple[str, type, Mapping[str, Any]]] = [("", Config, defaults)]
    groups += [(name, cls, defaults[name]) for name, cls in _sections().items()]
    for name, cls, section_defaults in groups:
        hints = _hints(cls)
        # top level: every field but the section tables (a key may share a section's name)
        rows = [
            f
            for f in dataclasses.fields(typing.cast(Any, cls))
            if name or f.name not in _sections()
        ]
        if name:
            title = f"### `[{name}]`"
            summary = (cls.__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1]
        else:
            title, summary = "### Top level", "keys outside any table."
        summary = summary[0].upper() + summary[1:]
        out += [title, "", _markdown_cell(summary), ""]
        out += [
            "| key | type | default | bounds | environment variable | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for f in rows:
            dotted = _join(name, f.name)
            default = section_defaults[f.name]
            cells = [
                f"`{f.name}`",
                _type_text(hints[f.name]),
                "unset" if default is None else f"`{_toml_text(default)}`",
                _range_text(f.metadata),
                f"`{env_var_name(dotted)}`",
                str(f.metadata.get("doc", "")),
            ]
            out.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
        out.append("")
    return "\n".join(out)
