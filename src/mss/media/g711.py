"""G.711 (ITU-T G.711) µ-law and A-law with numpy lookup tables.

Theory of operation
-------------------
Both companding laws map a 16-bit linear sample to one byte. The encoders are tables of 65,536
bytes indexed by the sample reinterpreted as unsigned 16 bits; the decoders are tables of 256
int16 values. Encoding or decoding a frame is one numpy fancy-indexing operation, with no
per-sample Python. The tables are computed once at import by the reference algorithms of the
ITU-T G.711 software (Sun Microsystems' public ``g711.c``, the one ``audioop`` used), vectorised.

Invariants: ``decode(encode(x))`` is the nearest G.711 level to ``x`` (µ-law clips at ±32635,
A-law at ±32767 before the 13-bit shift); ``encode(decode(b)) == b`` for every byte except
µ-law 0x7F (negative zero, decoded to 0 and re-encoded as 0xFF).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = (
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "PAYLOAD_TYPES",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "silence_byte",
    "ulaw_decode",
    "ulaw_encode",
)

#: static RTP payload types of G.711 (RFC 3551 §6)
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int64)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 2  # the index is the sample as uint16
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _CLIP >> 2) + (_BIAS >> 2)  # 14-bit magnitude, biased
    seg_end = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
    seg = np.full_like(mag, 8)
    for i in range(7, -1, -1):
        seg = np.where(mag <= seg_end[i], i, seg)
    uval = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F)
    uval = np.where(seg >= 8, 0x7F, uval)
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int64) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    sample = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -sample, sample).astype(np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int64)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg_end = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
    seg = np.full_like(pcm, 8)
    for i in range(7, -1, -1):
        seg = np.where(pcm <= seg_end[i], i, seg)
    shift = np.where(seg < 2, 1, seg)
    aval = (np.minimum(seg, 7) << 4) | ((pcm >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int64) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _ulaw_encode_table()
ULAW_DECODE = _ulaw_decode_table()
ALAW_ENCODE = _alaw_encode_table()
ALAW_DECODE = _alaw_decode_table()
for _t in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _t.flags.writeable = False

_ENCODE = {0: ULAW_ENCODE, 8: ALAW_ENCODE}
_DECODE = {0: ULAW_DECODE, 8: ALAW_DECODE}


def _as_uint16(pcm: npt.ArrayLike | bytes) -> npt.NDArray[np.uint16]:
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        return np.frombuffer(pcm, dtype="<i2").astype(np.uint16)
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        arr = np.clip(arr, -32768, 32767).astype(np.int16)
    return arr.view(np.uint16)


def ulaw_encode(pcm: npt.ArrayLike | bytes) -> bytes:
    """Linear samples (int16 array, or s16le bytes) → µ-law bytes."""
    return ULAW_ENCODE[_as_uint16(pcm)].tobytes()


def alaw_encode(pcm: npt.ArrayLike | bytes) -> bytes:
    """Linear samples (int16 array, or s16le bytes) → A-law bytes."""
    return ALAW_ENCODE[_as_uint16(pcm)].tobytes()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """µ-law bytes → int16 samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """A-law bytes → int16 samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def encode(payload_type: int, pcm: npt.ArrayLike | bytes) -> bytes:
    """Encode for RTP payload type 0 (PCMU) or 8 (PCMA).

    Raises:
        ValueError: another payload type.
    """
    table = _ENCODE.get(payload_type)
    if table is None:
        raise ValueError(f"payload_type: {payload_type} is not G.711 (0 or 8)")
    return table[_as_uint16(pcm)].tobytes()


def decode(payload_type: int, data: bytes) -> npt.NDArray[np.int16]:
    """Decode an RTP payload of type 0 (PCMU) or 8 (PCMA).

    Raises:
        ValueError: another payload type.
    """
    table = _DECODE.get(payload_type)
    if table is None:
        raise ValueError(f"payload_type: {payload_type} is not G.711 (0 or 8)")
    return table[np.frombuffer(data, dtype=np.uint8)]


def silence_byte(payload_type: int) -> int:
    """The code of a zero sample (0xFF in µ-law, 0xD5 in A-law)."""
    return 0xFF if payload_type == 0 else 0xD5
