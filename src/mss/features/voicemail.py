"""Voicemail: per-user settings, the mailbox, e-mail delivery and MWI (issue 10).

This module is the contract between the media side (``mss.sip.voicemail`` answers the call,
plays the greeting, records RTP) and the mailbox side (storage of messages, the durable SMTP
outbox, MWI NOTIFYs, management). The names below are fixed; the mailbox implementation fills in
:class:`VoicemailService`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = (
    "DIVERT_CONDITIONS",
    "VoicemailBox",
    "VoicemailDeposit",
    "VoicemailSettings",
)

#: When a call to the user goes to voicemail.
DIVERT_CONDITIONS = ("no-answer", "busy", "offline", "always")


@dataclass(frozen=True, slots=True)
class VoicemailSettings:
    """A user's voicemail settings (kept in ``UserRecord.extra["voicemail"]``).

    Attributes:
        enabled: voicemail on (default off).
        email: where each message is e-mailed ("" = no e-mail).
        divert: the conditions (:data:`DIVERT_CONDITIONS`) that send a call to voicemail.
        greeting: path of a custom greeting WAV; "" = the greeting shipped with the package.
        max_seconds: longest recording.
        pin: PIN for later retrieval ("" = none).
    """

    enabled: bool = False
    email: str = ""
    divert: frozenset[str] = field(default_factory=lambda: frozenset({"no-answer", "busy", "offline"}))
    greeting: str = ""
    max_seconds: int = 120
    pin: str = ""

    def diverts(self, condition: str) -> bool:
        """True when a call ending in ``condition`` ("no-answer", "busy", "offline") or any call
        (``condition == "always"``) goes to voicemail."""
        return self.enabled and (condition in self.divert or "always" in self.divert)


@dataclass(frozen=True, slots=True)
class VoicemailDeposit:
    """One recorded message, handed from the media side to the mailbox.

    Attributes:
        user: the mailbox (callee number).
        caller: the caller's number; caller_display its display name ("" if none).
        call_id: Call-ID of the caller's leg (links the CDR).
        started_at: wall-clock time (epoch seconds) the recording started.
        duration: seconds of audio in ``pcm``.
        pcm: signed 16-bit little-endian mono samples at 8 kHz.
        ended_by: "bye", "dtmf", "max-length", "silence" or "shutdown".
    """

    user: str
    caller: str
    caller_display: str
    call_id: str
    started_at: float
    duration: float
    pcm: bytes
    ended_by: str


class VoicemailBox(Protocol):
    """What the media side needs from the mailbox."""

    def settings_for(self, number: str) -> VoicemailSettings | None:
        """The user's settings from memory (no I/O); None = unknown user or voicemail off."""
        ...

    def greeting_path(self, number: str) -> Path:
        """The WAV to play for ``number`` (custom greeting, else the packaged default)."""
        ...

    async def deposit(self, deposit: VoicemailDeposit) -> str:
        """Store the message (WAV under the data dir + a row), queue its e-mail, update MWI.
        Returns the message id."""
        ...
