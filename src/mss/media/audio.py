"""Audio for the answering machine: greeting files, the beep, 20 ms frames, silence detection.

Theory of operation
-------------------
A greeting is a WAV file (:func:`read_wav`: PCM 8/16/24/32-bit, any rate, mono or stereo,
converted to 8 kHz 16-bit mono; the packaged default is already in that format). What the caller
hears is the greeting, 200 ms of silence and a 1 kHz beep of 400 ms (:func:`prompt_pcm`), cut
into 20 ms frames (160 samples) and encoded once per codec; :class:`PromptCache` keeps the
encoded frames by (file, modification time, size, payload type), so every stream playing the
same greeting shares one list of frames.

Silence detection (:class:`SilenceDetector`) works on the encoded bytes: a 256-entry table marks
the G.711 codes whose level is above :data:`VOICE_LEVEL` (about -38 dBFS), ``bytes.translate`` +
``bytes.count`` count them in C, and a frame with at least :data:`VOICE_SAMPLES` such samples
(2 ms) is voice. Line noise and comfort noise stay under the level; speech and tones do not.
"""

from __future__ import annotations

import logging
import os
import wave
from collections import OrderedDict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from . import g711

__all__ = (
    "DEFAULT_GREETING",
    "FRAME_SAMPLES",
    "RATE",
    "VOICE_LEVEL",
    "VOICE_SAMPLES",
    "AudioError",
    "PromptCache",
    "SilenceDetector",
    "beep_pcm",
    "frames",
    "prompt_pcm",
    "read_wav",
    "tone",
)

log = logging.getLogger("mss.media")

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
#: |sample| above which a sample counts as sound (~ -38 dBFS)
VOICE_LEVEL = 400
#: samples above VOICE_LEVEL that make a 20 ms frame voice (2 ms)
VOICE_SAMPLES = 16
#: the greeting shipped with the package (``scripts/make_voicemail_greeting.py`` makes it)
DEFAULT_GREETING = (
    Path(__file__).resolve().parent.parent / "features" / "data" / "voicemail_greeting.wav"
)


class AudioError(ValueError):
    """A WAV file that cannot be played (names the file and what is wrong)."""


def read_wav(path: str | os.PathLike[str]) -> npt.NDArray[np.int16]:
    """A WAV file as 8 kHz mono int16 samples (resampled and mixed down when needed).

    Raises:
        AudioError: unreadable, not PCM, or empty.
    """
    try:
        with wave.open(os.fspath(path), "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            raw = w.readframes(min(w.getnframes(), rate * 600))  # 10 minutes at most
    except (OSError, EOFError, wave.Error) as e:
        raise AudioError(f"{path}: not a readable PCM WAV file ({e})") from None
    if not raw or rate <= 0 or channels <= 0:
        raise AudioError(f"{path}: no audio")
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8)
        b = b[: len(b) - len(b) % 3].reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16
    elif width == 4:
        data = np.frombuffer(raw, "<i4") >> 16
    else:
        raise AudioError(f"{path}: {width * 8}-bit samples are not supported")
    data = data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        n = int(len(data) * RATE / rate)
        data = np.interp(np.arange(n) * (rate / RATE), np.arange(len(data)), data)
    out: npt.NDArray[np.int16] = np.clip(np.round(data), -32768, 32767).astype(np.int16)
    return out


def tone(
    freq: float, seconds: float, level: float = 0.3, rate: int = RATE
) -> npt.NDArray[np.int16]:
    """A sine tone with 5 ms ramps (no clicks)."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = np.sin(2 * np.pi * freq * t) * level * 32767
    ramp = min(n // 2, int(0.005 * rate))
    if ramp:
        env = np.ones(n)
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        x *= env
    return x.astype(np.int16)


def beep_pcm() -> npt.NDArray[np.int16]:
    """200 ms of silence then a 1 kHz beep of 400 ms."""
    return np.concatenate([np.zeros(RATE // 5, np.int16), tone(1000.0, 0.4)])


def prompt_pcm(greeting: npt.NDArray[np.int16] | None) -> npt.NDArray[np.int16]:
    """The greeting (may be None: beep only) followed by the beep."""
    parts = [beep_pcm()] if greeting is None else [greeting, beep_pcm()]
    return np.concatenate(parts).astype(np.int16, copy=False)


def frames(pcm: npt.NDArray[np.int16], payload_type: int) -> list[bytes]:
    """Encode into 20 ms payloads (the last one padded with silence)."""
    pad = (-len(pcm)) % FRAME_SAMPLES
    if pad:
        pcm = np.concatenate([pcm, np.zeros(pad, np.int16)])
    data = g711.encode(payload_type, pcm)
    return [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]


class PromptCache:
    """Encoded greeting + beep frames, by file identity and codec (LRU)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, int, int], list[bytes]] = OrderedDict()

    def frames(self, path: Path | None, payload_type: int) -> list[bytes]:
        """The frames for ``path`` (falls back to the default greeting, then to the beep)."""
        for candidate in (path, DEFAULT_GREETING):
            if candidate is None:
                continue
            try:
                st = os.stat(candidate)
            except OSError:
                log.warning("voicemail greeting %s is missing", candidate)
                continue
            key = (os.fspath(candidate), st.st_mtime_ns, st.st_size, payload_type)
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
            try:
                pcm = read_wav(candidate)
            except AudioError as e:
                log.warning("voicemail greeting: %s", e)
                continue
            out = frames(prompt_pcm(pcm), payload_type)
            self._items[key] = out
            if len(self._items) > self.size:
                self._items.popitem(last=False)
            return out
        return frames(prompt_pcm(None), payload_type)


def _loud_table(payload_type: int) -> bytes:
    levels = g711.decode(payload_type, bytes(range(256))).astype(np.int32)
    return bytes(1 if abs(int(v)) > VOICE_LEVEL else 0 for v in levels)


_LOUD = {0: _loud_table(0), 8: _loud_table(8)}


class SilenceDetector:
    """Is a G.711 frame voice? (see the module docstring)"""

    __slots__ = ("_table",)

    def __init__(self, payload_type: int) -> None:
        self._table = _LOUD.get(payload_type, _LOUD[0])

    def voice(self, payload: bytes, payload_type: int | None = None) -> bool:
        table = self._table if payload_type is None else _LOUD.get(payload_type, self._table)
        return payload.translate(table).count(1) >= VOICE_SAMPLES
