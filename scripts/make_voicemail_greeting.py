"""Make the default voicemail greeting: src/mss/features/data/voicemail_greeting.wav.

A synthesized, deterministic greeting (8 kHz, 16-bit, mono, about 3 s): a three-note chime
(E5, G#5, B5 with a soft second harmonic and an exponential decay), twice. The server plays it,
then a 1 kHz beep of its own, then records. Run from the repository root:

    .venv/bin/python scripts/make_voicemail_greeting.py
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE = 8000
OUT = Path(__file__).resolve().parents[1] / "src/mss/features/data/voicemail_greeting.wav"


def note(freq: float, seconds: float, level: float = 0.35) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
    env = np.exp(-t * 4.0) * np.minimum(1.0, t / 0.01)  # 10 ms attack, decay
    return x * env * level / 1.3


def greeting() -> np.ndarray:
    chime = np.concatenate([note(659.25, 0.35), note(830.61, 0.35), note(987.77, 0.7)])
    gap = np.zeros(int(0.25 * RATE))
    pcm = np.concatenate([np.zeros(int(0.1 * RATE)), chime, gap, chime, gap])
    return np.clip(np.round(pcm * 32767), -32768, 32767).astype("<i2")


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(OUT), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(greeting().tobytes())
    print(f"{OUT} ({len(greeting()) / RATE:.2f} s)")


if __name__ == "__main__":
    main()
