"""Errors raised by mss. Each carries what its edge needs to answer (house style 7).

The tree stays shallow: :class:`MssError` at the root, one class per kind of failure below it.

* :class:`ConfigError` names the offending setting by its dotted path (``transport.idle_timeout``,
  ``transport.listen[2]``) so that an operator can find it in the TOML file or in the ``MSS_*``
  environment variables; the CLI prints ``str(e)`` and exits.
* :class:`PolicyRejection` is raised by feature services (blacklist, limits, trunks...) when a
  request is refused; the SIP edge answers with ``sip_status`` and the API edge with
  ``http_status``. Only the edges translate errors into responses.

This module imports nothing from mss, so every layer may import it.
"""

from __future__ import annotations

__all__ = ("ConfigError", "MssError", "PolicyRejection")


def _one_line(text: str) -> str:
    """Collapse line breaks so that an error always prints as one line."""
    return " ".join(text.splitlines())


class MssError(Exception):
    """Base class of every mss error."""


class ConfigError(MssError):
    """A configuration value is unknown, of the wrong type, out of range or inconsistent.

    ``str(e)`` is ``f"{e.field}: {e.reason}"`` on one line, e.g.
    ``registrar.min_expires: must be >= 1``.

    Attributes:
        field: dotted path of the setting (``sip.domain``, ``transport.listen[1]``, ``data_dir``),
            or the configuration file's path for errors about the file as a whole.
        reason: what is wrong with it, one line.
    """

    __slots__ = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        field = _one_line(field)
        reason = _one_line(reason)
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"

    def __repr__(self) -> str:
        return f"ConfigError({self.field!r}, {self.reason!r})"


class PolicyRejection(MssError):
    """A feature's policy refuses a request (blacklist, call limits, untrusted trunk...).

    Attributes:
        sip_status: the SIP status the SIP edge answers with (403, 486, 503...).
        reason: the reason phrase; it says which policy refused, never whether a user exists.
        http_status: the HTTP status the management API answers with.
    """

    __slots__ = ("http_status", "reason", "sip_status")

    def __init__(self, sip_status: int, reason: str, http_status: int = 403) -> None:
        reason = _one_line(reason)
        super().__init__(sip_status, reason, http_status)
        self.sip_status = sip_status
        self.reason = reason
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.sip_status} {self.reason}"

    def __repr__(self) -> str:
        return (
            f"PolicyRejection({self.sip_status!r}, {self.reason!r}, "
            f"http_status={self.http_status!r})"
        )
