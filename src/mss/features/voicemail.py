"""Voicemail: per-user settings, the mailbox, e-mail delivery and MWI (issue 10).

This module is the contract between the media side (``mss.sip.voicemail`` answers the call,
plays the greeting, records RTP) and the mailbox side (storage of messages, the durable SMTP
outbox, MWI NOTIFYs, management). The names below are fixed; the mailbox implementation fills in
:class:`VoicemailService`.

Theory of operation (mailbox side)
----------------------------------
*Settings* live in ``UserRecord.extra["voicemail"]`` (a JSON object, see :func:`parse_settings`).
The :class:`~mss.features.users.UserDirectory` keeps every user in memory and is refreshed from
the storage change feed, so :meth:`VoicemailService.settings_for` answers without I/O and sees a
``mss user set`` made by another process within a second. A custom greeting is validated and
converted to 8 kHz 16-bit mono PCM (:func:`load_greeting`) and installed as
``<data_dir>/voicemail/<user>/greeting.wav``; otherwise the packaged default plays.

*Deposit.* :meth:`VoicemailService.deposit` writes the WAV (stdlib :mod:`wave`, written to a
temporary name and renamed, in a worker thread), then stores the message row and, when the user
has an e-mail address, its outbox row in one transaction. Only then is the SMTP worker woken and
the message-waiting state recomputed.

*E-mail* is durable: the outbox row is written before any attempt. One background task
(:meth:`VoicemailService.start`) sends due rows with :mod:`aiosmtplib`; a connection failure, a
timeout or a 4xx reply reschedules the row with exponential backoff (``[smtp] retry_min`` doubling
up to ``retry_max``); a 5xx reply about the message (RFC 5321 §4.2.1: permanent) marks it
``failed`` with the reply, visible in ``mss voicemail list`` and the API. Failures that are the
server's own configuration (authentication, TLS) are retried, since fixing the configuration
must not lose messages. A row still queued after ``give_up_after`` seconds is marked failed.
Rows survive restarts in storage; a restarted server resumes them.

*MWI.* The service keeps ``{user: (new, old)}`` in memory (RFC 3842 counts: unread = new) and
calls its listeners (the SIP ``message-summary`` notifier) whenever a user's counts change: after
a deposit, a mark-read or a delete here, or after changes another process made
(:meth:`VoicemailService.apply_changes`, fed from the change feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import secrets
import time
import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from ..config import SmtpConfig
from ..errors import MssError
from ..storage.base import Storage, UserRecord, VoicemailMailRecord, VoicemailRecord
from ..storage.errors import NotFound

__all__ = (
    "DIVERT_CONDITIONS",
    "SAMPLE_RATE",
    "VoicemailBox",
    "VoicemailDeposit",
    "VoicemailError",
    "VoicemailService",
    "VoicemailSettings",
    "build_email",
    "check_changes",
    "default_greeting",
    "load_greeting",
    "parse_settings",
    "settings_to_json",
    "update_settings",
    "wav_bytes",
)

log = logging.getLogger("mss.voicemail")

#: Audio format of every stored message and greeting: 8 kHz, 16-bit, mono.
SAMPLE_RATE = 8000

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
    divert: frozenset[str] = field(
        default_factory=lambda: frozenset({"no-answer", "busy", "offline"})
    )
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


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

#: Longest recording a user may configure (seconds).
MAX_RECORDING = 3600
#: Longest custom greeting (seconds) and largest greeting file accepted (bytes).
MAX_GREETING_SECONDS = 120
MAX_GREETING_BYTES = 64 * 1024 * 1024


class VoicemailError(MssError):
    """Bad voicemail input or an unknown message; ``field`` names the offending field.

    Attributes:
        field: the field (``email``, ``vm_greeting``, ``id``...).
        reason: what is wrong, one line.
        http_status: what the management API answers (400, or 404 for an unknown message).
    """

    def __init__(self, field: str, reason: str, *, http_status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.http_status = http_status


def parse_settings(extra: Mapping[str, object] | None) -> VoicemailSettings:
    """The settings stored in a user's ``extra`` (defaults for missing or malformed values:
    a hand-edited database never breaks call handling)."""
    raw = (extra or {}).get("voicemail")
    if not isinstance(raw, Mapping):
        return VoicemailSettings()
    default = VoicemailSettings()
    divert = raw.get("divert")
    if isinstance(divert, (list, tuple)) and divert and all(d in DIVERT_CONDITIONS for d in divert):
        divert_set = frozenset(str(d) for d in divert)
    else:
        divert_set = default.divert
    max_seconds = raw.get("max_seconds")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int)
        or not 1 <= max_seconds <= MAX_RECORDING
    ):
        max_seconds = default.max_seconds
    return VoicemailSettings(
        enabled=raw.get("enabled") is True,
        email=str(raw.get("email") or ""),
        divert=divert_set,
        greeting=str(raw.get("greeting") or ""),
        max_seconds=max_seconds,
        pin=str(raw.get("pin") or ""),
    )


def settings_to_json(settings: VoicemailSettings) -> dict[str, Any]:
    """The JSON object stored in ``extra["voicemail"]`` (and shown by the CLI and API)."""
    return {
        "enabled": settings.enabled,
        "email": settings.email,
        "divert": [d for d in DIVERT_CONDITIONS if d in settings.divert],
        "greeting": settings.greeting,
        "max_seconds": settings.max_seconds,
        "pin": settings.pin,
    }


def _check_email(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or "." not in domain.strip(".")
        or any(c.isspace() or c in '<>,;"()[]' for c in value)
        or len(value) > 254
    ):
        raise VoicemailError(
            "email", f"not an e-mail address: {value!r} (expected user@domain.tld)"
        )
    return value


def _check_divert(value: str | Iterable[str]) -> frozenset[str]:
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise VoicemailError("vm_divert", f"give one or more of {', '.join(DIVERT_CONDITIONS)}")
    bad = [v for v in items if v not in DIVERT_CONDITIONS]
    if bad:
        raise VoicemailError(
            "vm_divert", f"unknown condition {bad[0]!r}; expected {', '.join(DIVERT_CONDITIONS)}"
        )
    if "always" in items and len(items) > 1:
        raise VoicemailError("vm_divert", "'always' cannot be combined with other conditions")
    return frozenset(items)


def _check_max(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RECORDING:
        raise VoicemailError(
            "vm_max_length", f"must be 1 to {MAX_RECORDING} seconds, got {value!r}"
        )
    return value


def _check_pin(value: str) -> str:
    if value and (not value.isdigit() or not value.isascii() or not 4 <= len(value) <= 16):
        raise VoicemailError("vm_pin", "must be 4 to 16 digits (or empty for none)")
    return value


# --------------------------------------------------------------------------------------------
# Audio files
# --------------------------------------------------------------------------------------------


def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """A WAV file (16-bit mono) holding ``pcm`` (signed 16-bit little-endian samples)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm[: len(pcm) // 2 * 2])
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_greeting(data: bytes, *, field: str = "vm_greeting") -> bytes:
    """Validate a greeting WAV and return it as an 8 kHz, 16-bit, mono WAV.

    PCM WAVs of 8/16/24/32-bit samples, any channel count and any rate from 8 kHz to 192 kHz are
    converted: channels are averaged, samples scaled to 16 bits, and the rate is lowered by a
    box low-pass filter (width = the rate ratio) then linear interpolation. Anything else is
    refused with a :class:`VoicemailError` naming ``field``.

    Raises:
        VoicemailError: not a PCM WAV, empty, too long or too large.
    """
    if len(data) > MAX_GREETING_BYTES:
        raise VoicemailError(
            field, f"file too large ({len(data)} bytes; at most {MAX_GREETING_BYTES})"
        )
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate, frames = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise VoicemailError(
            field,
            f"not a PCM WAV file ({exc}); convert it to 8 kHz 16-bit mono, e.g. "
            "`sox in.wav -r 8000 -b 16 -c 1 out.wav`",
        ) from None
    if width not in (1, 2, 3, 4) or not 1 <= channels <= 8 or not 8000 <= rate <= 192000:
        raise VoicemailError(
            field,
            f"unsupported WAV format: {channels} channels, {8 * width}-bit, {rate} Hz "
            "(need PCM, 8 to 192 kHz); convert it to 8 kHz 16-bit mono",
        )
    frames = len(raw) // (width * channels)
    if frames == 0:
        raise VoicemailError(field, "the WAV file holds no audio")
    if frames / rate > MAX_GREETING_SECONDS:
        raise VoicemailError(
            field, f"greeting too long ({frames / rate:.1f} s; at most {MAX_GREETING_SECONDS} s)"
        )
    if channels == 1 and width == 2 and rate == SAMPLE_RATE:
        return wav_bytes(raw[: frames * 2])
    import numpy as np  # only needed to convert

    raw = raw[: frames * width * channels]
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - 0x1000000, v)
        samples = v.astype(np.float64) / 256.0
    else:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    samples = samples.reshape(frames, channels).mean(axis=1)
    if rate != SAMPLE_RATE:
        ratio = rate / SAMPLE_RATE
        width_taps = max(1, round(ratio))
        if width_taps > 1:
            samples = np.convolve(samples, np.ones(width_taps) / width_taps, mode="same")
        out_len = max(1, int(frames / ratio))
        samples = np.interp(np.arange(out_len) * ratio, np.arange(frames), samples)
    pcm = np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
    return wav_bytes(pcm)


def default_greeting() -> Path:
    """The greeting shipped with the package (``mss/features/data/voicemail_greeting.wav``)."""
    ref = resources.files("mss.features").joinpath("data").joinpath("voicemail_greeting.wav")
    return Path(str(ref))


class _Users(Protocol):
    """What the service needs from the user directory."""

    def get(self, number: str) -> UserRecord | None: ...


def check_changes(
    *,
    enabled: bool | None = None,
    email: str | None = None,
    divert: str | Iterable[str] | None = None,
    greeting: bytes | str | None = None,
    max_seconds: int | None = None,
    pin: str | None = None,
) -> dict[str, Any]:
    """Validate settings changes before anything is written (``None`` = unchanged).

    Returns:
        The normalised changes: :class:`VoicemailSettings` field names, plus ``greeting_wav``
        (the converted greeting) when a WAV was given; ``greeting: ""`` resets to the default.

    Raises:
        VoicemailError: a bad value, naming its field (``email``, ``vm_divert``,
            ``vm_greeting``, ``vm_max_length``, ``vm_pin``).
    """
    changes: dict[str, Any] = {}
    if enabled is not None:
        changes["enabled"] = bool(enabled)
    if email is not None:
        changes["email"] = _check_email(email)
    if divert is not None:
        changes["divert"] = _check_divert(divert)
    if max_seconds is not None:
        changes["max_seconds"] = _check_max(max_seconds)
    if pin is not None:
        changes["pin"] = _check_pin(pin.strip())
    if isinstance(greeting, str):
        if greeting.strip() not in ("", "default"):
            raise VoicemailError(
                "vm_greeting", "give a WAV file, or 'default' for the packaged greeting"
            )
        changes["greeting"] = ""
    elif greeting is not None:
        changes["greeting_wav"] = load_greeting(greeting)
    return changes


async def update_settings(
    users: Any,
    number: str,
    *,
    data_dir: str | os.PathLike[str],
    **given: Any,
) -> VoicemailSettings:
    """Change a user's voicemail settings (CLI ``mss user set``, API).

    Args:
        users: the :class:`~mss.features.users.UserDirectory`.
        number: the user.
        data_dir: where custom greetings are installed.
        given: the keywords of :func:`check_changes`; ``greeting`` is WAV bytes to install, or
            ``""`` / ``"default"`` for the packaged greeting.

    Raises:
        VoicemailError: a bad value (named; nothing written), or no such user (``number``).
    """
    changes = check_changes(**given)
    user = await users.storage.users.get(number)
    if user is None:
        raise VoicemailError("number", f"no user {number}", http_status=404)
    current = parse_settings(user.extra)
    old: Path | None = None
    wav = changes.pop("greeting_wav", None)
    if wav is not None:
        rel = (Path("voicemail") / number / "greeting.wav").as_posix()
        await asyncio.to_thread(_write_atomic, Path(data_dir) / rel, wav)
        changes["greeting"] = rel
    elif changes.get("greeting") == "" and current.greeting:
        old = Path(data_dir) / current.greeting
    new = replace(current, **changes)
    extra = dict(user.extra or {})
    extra["voicemail"] = settings_to_json(new)
    await users.update(number, extra=extra)
    if old is not None:
        with contextlib.suppress(OSError):
            old.unlink()
    return new


# --------------------------------------------------------------------------------------------
# E-mail
# --------------------------------------------------------------------------------------------


def _header_text(text: str) -> str:
    """``text`` safe for a header: control characters dropped, whitespace runs collapsed."""
    return " ".join("".join(c for c in text if c.isprintable() or c == " ").split())[:200]


def _fmt_duration(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 60}:{total % 60:02d}"


def build_email(record: VoicemailRecord, wav: bytes, *, to: str, from_address: str) -> EmailMessage:
    """One e-mail for one message: subject naming the caller, caller/time/duration in the body,
    the WAV attached (``audio/wav``)."""
    display, caller = _header_text(record.caller_display), _header_text(record.caller)
    who = f"{display} <{caller}>" if display else caller
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(record.started_at))
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to
    msg["Subject"] = f"Voicemail from {who or 'unknown caller'} ({_fmt_duration(record.duration)})"
    msg["Date"] = formatdate(record.started_at, localtime=True)
    msg["Message-ID"] = make_msgid("voicemail")
    msg["X-Mss-Voicemail-Id"] = record.id
    msg.set_content(
        f"You have a new voicemail message for {record.user}.\n\n"
        f"Caller:   {who or 'unknown'}\n"
        f"Time:     {when}\n"
        f"Duration: {record.duration:.1f} s\n\n"
        "The recording is attached (WAV, 8 kHz, 16-bit, mono).\n"
    )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(record.started_at))
    safe_caller = "".join(c for c in record.caller if c.isalnum() or c in "+-_") or "unknown"
    msg.add_attachment(
        wav, maintype="audio", subtype="wav", filename=f"voicemail-{stamp}-{safe_caller}.wav"
    )
    return msg


class _Temporary(Exception):
    """A delivery attempt failed in a way worth retrying; ``replied``: the SMTP server answered
    (4xx...), as opposed to being unreachable (refused, timeout, no TLS)."""

    def __init__(self, text: str, *, replied: bool = False) -> None:
        super().__init__(text)
        self.replied = replied


class _Permanent(Exception):
    """The SMTP server refused the message for good (5xx)."""


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------

MwiListener = Callable[[str, int, int], None]


class VoicemailService:
    """The mailbox: :class:`VoicemailBox` for the media side, plus e-mail, MWI and management.

    Args:
        storage: the store (``storage.voicemail``).
        users: the in-memory user directory (refreshed from the change feed by the server).
        data_dir: where WAV files live (``<data_dir>/voicemail/<user>/``).
        smtp: the system SMTP settings; ``host == ""`` disables e-mail (rows still queue).
        domain: for the default From address (``mss@<domain>``).
        wall: wall-clock time.
        send: ``async (EmailMessage, SmtpConfig) -> None``; default :mod:`aiosmtplib` (tests and
            embedders may replace it).
    """

    def __init__(
        self,
        storage: Storage,
        users: _Users,
        *,
        data_dir: str | os.PathLike[str],
        smtp: SmtpConfig | None = None,
        domain: str = "",
        wall: Callable[[], float] = time.time,
        send: Callable[[EmailMessage, SmtpConfig], Any] | None = None,
    ) -> None:
        self.storage = storage
        self.users = users
        self.data_dir = Path(data_dir)
        self.smtp = smtp if smtp is not None else SmtpConfig()
        self.domain = domain or "localhost"
        self.wall = wall
        self._send = send if send is not None else _aiosmtplib_send
        self._counts: dict[str, tuple[int, int]] = {}
        self.listeners: list[MwiListener] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: while the SMTP server is unreachable: no attempt before this time (wall clock), and
        #: how many sweeps in a row found it unreachable (the pause doubles with each)
        self.paused_until = 0.0
        self._unreachable = 0
        self.stats = {"deposited": 0, "mailed": 0, "mail_retries": 0, "mail_failed": 0}

    # -- VoicemailBox -----------------------------------------------------------------------
    def settings_for(self, number: str) -> VoicemailSettings | None:
        user = self.users.get(number)
        if user is None:
            return None
        settings = parse_settings(user.extra)
        if not settings.enabled:
            return None
        if settings.greeting:
            settings = replace(settings, greeting=str(self.data_dir / settings.greeting))
        return settings

    def greeting_path(self, number: str) -> Path:
        user = self.users.get(number)
        if user is not None:
            rel = parse_settings(user.extra).greeting
            if rel:
                path = self.data_dir / rel
                if path.is_file():
                    return path
                log.warning(
                    "voicemail %s: custom greeting %s is missing; playing the default", number, path
                )
        return default_greeting()

    async def deposit(self, deposit: VoicemailDeposit) -> str:
        user = self.users.get(deposit.user)
        settings = parse_settings(user.extra if user is not None else None)
        msg_id = f"{int(deposit.started_at):x}{secrets.token_hex(5)}"
        rel = (Path("voicemail") / deposit.user / f"{msg_id}.wav").as_posix()
        await asyncio.to_thread(_write_atomic, self.data_dir / rel, wav_bytes(deposit.pcm))
        record = VoicemailRecord(
            id=msg_id,
            user=deposit.user,
            caller=deposit.caller,
            started_at=deposit.started_at,
            caller_display=deposit.caller_display,
            call_id=deposit.call_id,
            duration=max(0.0, float(deposit.duration)),
            path=rel,
        )
        mail = None
        if settings.email:
            mail = VoicemailMailRecord(msg_id, settings.email, next_try=self.wall())
            if not self.smtp.host:
                log.warning(
                    "voicemail %s: [smtp] host is not set; the e-mail to %s waits in the outbox",
                    deposit.user,
                    settings.email,
                )
        await self.storage.voicemail.add(record, mail)
        self.stats["deposited"] += 1
        log.info(
            "voicemail %s for %s from %s (%.1f s, ended by %s)",
            msg_id,
            deposit.user,
            deposit.caller,
            deposit.duration,
            deposit.ended_by,
            extra={"event": "voicemail"},
        )
        if mail is not None:
            self._wake.set()
        await self.refresh(deposit.user)
        return msg_id

    # -- MWI --------------------------------------------------------------------------------
    def counts(self, user: str) -> tuple[int, int]:
        """``(new, old)`` messages of ``user`` (from memory)."""
        return self._counts.get(user, (0, 0))

    async def load(self) -> None:
        """Read every mailbox's counts (at start, or after a change-feed gap)."""
        old = self._counts
        self._counts = dict(await self.storage.voicemail.summary())
        for user in set(old) | set(self._counts):
            if old.get(user, (0, 0)) != self._counts.get(user, (0, 0)):
                self._notify(user)

    async def refresh(self, user: str) -> None:
        """Recount ``user``'s messages; tell the listeners if the counts changed."""
        messages = await self.storage.voicemail.for_user(user)
        new = sum(1 for m in messages if not m.read)
        counts = (new, len(messages) - new)
        before = self._counts.get(user, (0, 0))
        if counts == (0, 0):
            self._counts.pop(user, None)
        else:
            self._counts[user] = counts
        if counts != before:
            self._notify(user)

    def _notify(self, user: str) -> None:
        new, old = self.counts(user)
        for fn in list(self.listeners):
            try:
                fn(user, new, old)
            except Exception:
                log.exception("MWI listener failed for %s", user)

    async def apply_changes(self, changes: Sequence[Any] | None) -> None:
        """Follow the change feed: ``voicemail`` changes refresh their users' counts,
        ``voicemail_mail`` changes wake the SMTP worker; ``None`` = reload everything."""
        if changes is None:
            await self.load()
            self._wake.set()
            return
        users = {c.key.partition(" ")[0] for c in changes if c.entity == "voicemail"}
        for user in sorted(users):
            await self.refresh(user)
        if any(c.entity == "voicemail_mail" and c.op == "put" for c in changes):
            self._wake.set()

    # -- management -------------------------------------------------------------------------
    async def list(self, user: str) -> list[tuple[VoicemailRecord, VoicemailMailRecord | None]]:
        """The user's messages, oldest first, each with its e-mail state (or None)."""
        messages = await self.storage.voicemail.for_user(user)
        return [(m, await self.storage.voicemail.mail(m.id)) for m in messages]

    async def message(self, user: str, id: str) -> VoicemailRecord:
        """The message ``id`` of ``user``.

        Raises:
            VoicemailError: no such message in that mailbox (field ``id``, HTTP 404).
        """
        record = await self.storage.voicemail.get(id)
        if record is None or record.user != user:
            raise VoicemailError(
                "id", f"no voicemail message {id} for user {user}", http_status=404
            )
        return record

    def path_of(self, record: VoicemailRecord) -> Path:
        """The WAV file of a message."""
        return self.data_dir / record.path

    async def mark_read(self, user: str, id: str, read: bool = True) -> VoicemailRecord:
        record = await self.message(user, id)
        if not await self.storage.voicemail.mark_read(id, read):
            raise VoicemailError(
                "id", f"no voicemail message {id} for user {user}", http_status=404
            )
        await self.refresh(user)
        return replace(record, read=read)

    async def delete(self, user: str, id: str) -> None:
        """Delete the message, its queued e-mail and its WAV file."""
        record = await self.message(user, id)
        if not await self.storage.voicemail.delete(id):
            raise VoicemailError(
                "id", f"no voicemail message {id} for user {user}", http_status=404
            )
        with contextlib.suppress(OSError):
            self.path_of(record).unlink()
        await self.refresh(user)

    async def retry_mail(self, user: str, id: str) -> VoicemailMailRecord:
        """Queue a failed (or sent) e-mail again, to the user's current address."""
        record = await self.message(user, id)
        mail = await self.storage.voicemail.mail(id)
        if mail is None:
            raise VoicemailError("id", f"message {id} has no e-mail to retry", http_status=404)
        to = self.settings_email(user) or mail.to
        again = replace(
            mail, to=to, state="queued", attempts=0, next_try=self.wall(), last_error=""
        )
        if not await self.storage.voicemail.update_mail(again):
            raise NotFound("voicemail", record.id)
        self.paused_until = 0.0
        self._wake.set()
        return again

    def settings_email(self, user: str) -> str:
        record = self.users.get(user)
        return parse_settings(record.extra if record else None).email

    # -- the SMTP worker --------------------------------------------------------------------
    def start(self) -> None:
        """Start the background task that sends queued e-mails (when ``[smtp] host`` is set)."""
        if self._task is None and self.smtp.host:
            self._task = asyncio.ensure_future(self._mail_loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def from_address(self) -> str:
        return self.smtp.from_address or f"mss@{self.domain}"

    async def _mail_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.send_due()
                queued = await self.storage.voicemail.mails("queued")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("voicemail e-mail delivery failed")
                queued = []
            delay = 60.0
            if queued:
                due = max(queued[0].next_try, self.paused_until)
                delay = min(delay, max(0.0, due - self.wall()))
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def send_due(self) -> int:
        """Attempt every due e-mail once; returns how many were sent.

        When the SMTP server cannot be reached at all, the sweep stops at the first such
        failure and no attempt is made before :attr:`paused_until` (``retry_min`` doubling up
        to ``retry_max`` per unreachable sweep): a queue of many messages does not wait for
        one connection timeout each, and the messages not tried keep their attempt count.
        """
        now = self.wall()
        if now < self.paused_until:
            return 0
        sent = 0
        for mail in await self.storage.voicemail.due_mails(now):
            outcome = await self._attempt(mail)
            if outcome == "sent":
                sent += 1
            if outcome == "unreachable":
                self._unreachable += 1
                pause = min(
                    self.smtp.retry_max, self.smtp.retry_min * 2 ** min(self._unreachable - 1, 30)
                )
                self.paused_until = self.wall() + pause
                break
            if outcome in ("sent", "retry"):  # the server answered
                self._unreachable = 0
                self.paused_until = 0.0
        return sent

    async def _attempt(self, mail: VoicemailMailRecord) -> str:
        """One delivery attempt: ``"sent"``, ``"failed"`` (permanent), ``"retry"`` (the server
        answered 4xx...) or ``"unreachable"``; the outbox row records it."""
        vm = self.storage.voicemail
        record = await vm.get(mail.message_id)
        if record is None:
            return "failed"
        attempts = mail.attempts + 1
        try:
            try:
                wav = await asyncio.to_thread(self.path_of(record).read_bytes)
            except OSError as exc:
                raise _Permanent(f"the audio file is missing: {exc}") from None
            try:
                msg = build_email(record, wav, to=mail.to, from_address=self.from_address())
            except (ValueError, TypeError) as exc:  # e.g. an address the e-mail package refuses
                raise _Permanent(f"cannot build the e-mail: {exc}") from None
            await self._deliver(msg)
        except _Permanent as exc:
            self.stats["mail_failed"] += 1
            log.error("voicemail %s: e-mail to %s failed for good: %s", record.id, mail.to, exc)
            await vm.update_mail(
                replace(mail, attempts=attempts, state="failed", last_error=str(exc)[:500])
            )
            return "failed"
        except _Temporary as exc:
            now = self.wall()
            give_up = self.smtp.give_up_after
            if give_up and now - record.created_at >= give_up:
                self.stats["mail_failed"] += 1
                log.error(
                    "voicemail %s: e-mail to %s undelivered after %d attempts, giving up: %s",
                    record.id,
                    mail.to,
                    attempts,
                    exc,
                )
                await vm.update_mail(
                    replace(
                        mail, attempts=attempts, state="failed", last_error=f"gave up: {exc}"[:500]
                    )
                )
                return "failed"
            delay = min(self.smtp.retry_max, self.smtp.retry_min * 2 ** min(attempts - 1, 30))
            self.stats["mail_retries"] += 1
            log.warning(
                "voicemail %s: e-mail to %s not sent (%s); retry in %.0f s",
                record.id,
                mail.to,
                exc,
                delay,
            )
            await vm.update_mail(
                replace(mail, attempts=attempts, next_try=now + delay, last_error=str(exc)[:500])
            )
            return "retry" if exc.replied else "unreachable"
        self.stats["mailed"] += 1
        log.info("voicemail %s: e-mailed to %s", record.id, mail.to)
        await vm.update_mail(replace(mail, attempts=attempts, state="sent", last_error=""))
        return "sent"

    async def _deliver(self, msg: EmailMessage) -> None:
        """Send through the configured sender, classifying its failures."""
        try:
            await self._send(msg, self.smtp)
        except (_Temporary, _Permanent):
            raise
        except Exception as exc:
            raise _classify(exc) from None


def _smtp_reply(exc: BaseException) -> tuple[int | None, str]:
    """The SMTP reply code and text of an aiosmtplib error (``None`` when there was no reply:
    connection refused, timeout...). For refused recipients, the least severe refusal."""
    recipients = [
        r
        for r in getattr(exc, "recipients", None) or ()
        if isinstance(getattr(r, "code", None), int)
    ]
    if recipients:
        worst = min(recipients, key=lambda r: r.code)
        return worst.code, str(getattr(worst, "message", "") or "")
    code = getattr(exc, "code", None)
    text = str(getattr(exc, "message", "") or exc)
    if isinstance(code, int) and code > 0:
        return code, text
    return None, text


def _classify(exc: BaseException) -> Exception:
    """A 5xx about the message → permanent; everything else (no connection, timeout, 4xx, our
    own authentication or TLS configuration) → temporary."""
    name = type(exc).__name__
    code, text = _smtp_reply(exc)
    text = " ".join(text.split())
    reply = f"{code} {text}".strip() if code else f"{name}: {text}"
    if (
        code is not None
        and 500 <= code <= 599
        and name not in ("SMTPAuthenticationError", "SMTPNotSupported")
    ):
        return _Permanent(reply)
    return _Temporary(reply, replied=code is not None)


async def _aiosmtplib_send(msg: EmailMessage, smtp: SmtpConfig) -> None:
    import aiosmtplib

    await aiosmtplib.send(
        msg,
        hostname=smtp.host,
        port=smtp.effective_port,
        username=smtp.user or None,
        password=smtp.password or None,
        use_tls=smtp.security == "tls",
        start_tls=True if smtp.security == "starttls" else False,
        timeout=smtp.timeout,
        cert_bundle=smtp.ca_file,  # None: the system trust store; certificates are verified
    )
