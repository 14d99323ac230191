"""RTP packets (RFC 3550), RFC 4733 telephone-events, and the buffer a recording is made from.

Theory of operation
-------------------
:func:`parse_rtp` checks a datagram against RFC 3550 §5.1 (version 2, CSRC list, header
extension, padding) and returns an :class:`RtpPacket`; anything malformed raises
:class:`RtpError` naming the field, which the receiver counts and drops (a bad packet never ends a
session). :func:`build_rtp` is the inverse for the greeting we send.

:class:`DtmfDetector` turns RFC 4733 §2.3 telephone-event payloads into digits. One key press is
one *event*: every packet of it carries the same RTP timestamp (§2.5.1.2), and its end packet is
sent three times (§2.5.1.4). The detector reports a digit once, on the first packet of an event
it has not seen, keyed by (SSRC, timestamp, event code).

:class:`RecordingBuffer` keeps what the caller says. Packets are stored by *extended* sequence
number (RFC 3550 Appendix A.1: 16-bit sequence numbers wrap, the count of wraps extends them),
so late and reordered packets land in their place and duplicates are dropped. A new SSRC (the
phone restarted its stream, or a transfer changed the source) starts a new *segment*. Rendering
walks each segment in sequence order: the gap between two packets comes from their RTP
timestamps (lost packets and silence suppression become zeros), falling back to the sequence
gap times the frame size when the timestamps are not believable. Segments follow each other
with the silence their arrival times show. The buffer is bounded in packets and bytes.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from . import g711

__all__ = (
    "DTMF_EVENTS",
    "DtmfDetector",
    "RecordingBuffer",
    "RtpError",
    "RtpPacket",
    "TelephoneEvent",
    "build_rtp",
    "parse_rtp",
    "parse_telephone_event",
)

_HEADER = struct.Struct("!BBHII")
#: RFC 4733 §3.2: event codes 0-15 are the DTMF keys, 16 is flash
DTMF_EVENTS = "0123456789*#ABCD"
_RATE = 8000


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet.

    Attributes:
        field: the header field (or ``"length"``) that is wrong.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class RtpPacket(NamedTuple):
    """One RTP packet (RFC 3550 §5.1). A named tuple: built once per datagram, it must be cheap
    (a frozen dataclass costs several times more to create)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram.

    Raises:
        RtpError: not RTP version 2, truncated, bad padding, or an RTCP packet (payload types
            72-76 are RTCP's on a multiplexed port, RFC 5761 §4).
    """
    n = len(data)
    if n < 12:
        raise RtpError("length", f"{n} bytes, an RTP header has 12")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError("version", f"{b0 >> 6}, expected 2")
    pt = b1 & 0x7F
    if 72 <= pt <= 76:
        raise RtpError("payload_type", f"{pt} is RTCP (RFC 5761)")
    if b0 == 0x80:  # the common case: no padding, extension or CSRC
        return RtpPacket(pt, seq, ts, ssrc, data[12:], b1 > 0x7F)
    offset = 12
    cc = b0 & 0x0F
    csrc: tuple[int, ...] = ()
    if cc:
        end = offset + 4 * cc
        if end > n:
            raise RtpError("csrc", f"{cc} CSRCs do not fit in {n} bytes")
        csrc = struct.unpack_from(f"!{cc}I", data, offset)
        offset = end
    if b0 & 0x10:
        if offset + 4 > n:
            raise RtpError("extension", "header extension truncated")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
        if offset > n:
            raise RtpError("extension", f"{words} words do not fit in {n} bytes")
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or offset + pad > n:
            raise RtpError("padding", f"{pad} bytes of padding in a {n}-byte packet")
        end = n - pad
    return RtpPacket(pt, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80), csrc)


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
) -> bytes:
    """An RTP packet without CSRCs, extension or padding."""
    return (
        _HEADER.pack(
            0x80,
            (0x80 if marker else 0) | (payload_type & 0x7F),
            sequence & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc & 0xFFFFFFFF,
        )
        + payload
    )


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 event block."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``; None for other events."""
        return DTMF_EVENTS[self.event] if self.event < 16 else None


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """The first event block of a telephone-event payload (RFC 4733 §2.3).

    Raises:
        RtpError: fewer than 4 bytes.
    """
    if len(payload) < 4:
        raise RtpError("telephone_event", f"{len(payload)} bytes, an event block has 4")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


class DtmfDetector:
    """Digits from telephone-event packets, each key press reported once (see module doc)."""

    __slots__ = ("_order", "_seen")

    def __init__(self, memory: int = 64) -> None:
        self._seen: set[tuple[int, int, int]] = set()
        self._order: deque[tuple[int, int, int]] = deque(maxlen=memory)

    def feed(self, packet: RtpPacket) -> str | None:
        """The digit of a new event in ``packet`` (a telephone-event payload), else None.

        Raises:
            RtpError: the payload is not an event block.
        """
        ev = parse_telephone_event(packet.payload)
        key = (packet.ssrc, packet.timestamp, ev.event)
        if key in self._seen:
            return None  # the same key press: updates and the retransmitted end packets
        if len(self._order) == self._order.maxlen:
            self._seen.discard(self._order[0])
        self._order.append(key)
        self._seen.add(key)
        return ev.digit


class _Segment:
    """The packets of one SSRC run, by extended sequence number."""

    __slots__ = ("cycles", "first_arrival", "last_arrival", "max_seq", "packets", "ssrc")

    def __init__(self, ssrc: int, seq: int, arrival: float) -> None:
        self.ssrc = ssrc
        self.max_seq = seq
        self.cycles = 0
        self.first_arrival = arrival
        self.last_arrival = arrival
        #: extended sequence number -> (payload type, timestamp, payload)
        self.packets: dict[int, tuple[int, int, bytes]] = {}

    def extend(self, seq: int) -> int:
        """RFC 3550 A.1: the extended sequence number of ``seq`` (wraps counted)."""
        delta = (seq - self.max_seq) & 0xFFFF
        if delta < 0x8000:  # in order, or a forward jump
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
            return self.cycles + seq
        # a late (reordered) packet: it may belong to the previous cycle
        ext = self.cycles + seq
        if seq > self.max_seq:
            ext -= 0x10000
        return ext


class RecordingBuffer:
    """The caller's audio, ordered by RTP sequence number (see the module docstring).

    Args:
        payload_types: the audio payload types accepted (0 PCMU, 8 PCMA).
        max_seconds: audio kept at most; the rendered PCM is cut there too.
    """

    def __init__(
        self, payload_types: tuple[int, ...] = (0, 8), *, max_seconds: float = 120.0
    ) -> None:
        self.payload_types = frozenset(pt for pt in payload_types if pt in (0, 8))
        self.max_samples = int(max_seconds * _RATE)
        # a bound on what a sender can make us keep: twice the packets of 20 ms frames, and
        # the bytes of the longest message plus slack
        self.max_packets = int(max_seconds * 100) + 100
        self.max_bytes = self.max_samples + 16000
        self.segments: list[_Segment] = []
        self._bytes = 0
        self._count = 0
        self.stats = {"packets": 0, "duplicates": 0, "dropped": 0, "ssrc_changes": 0}

    def add(self, packet: RtpPacket, arrival: float, codec: int | None = None) -> bool:
        """Keep one audio packet. False when dropped (other payload type, duplicate, over
        the bounds).

        Args:
            packet: the packet.
            arrival: when it arrived (seconds, monotonic).
            codec: its G.711 static type (0, 8) when the payload type is a dynamic number
                mapped to PCMU/PCMA; None = the packet's payload type.
        """
        if codec is None:
            codec = packet.payload_type
        if codec not in self.payload_types or not packet.payload:
            self.stats["dropped"] += 1
            return False
        segs = self.segments
        seg = segs[-1] if segs else None
        if seg is None or seg.ssrc != packet.ssrc:
            if seg is not None:
                self.stats["ssrc_changes"] += 1
            seg = _Segment(packet.ssrc, packet.sequence, arrival)
            segs.append(seg)
        ext = seg.extend(packet.sequence)
        if ext in seg.packets:
            self.stats["duplicates"] += 1
            return False
        size = len(packet.payload)
        if self._count >= self.max_packets or self._bytes + size > self.max_bytes:
            self.stats["dropped"] += 1
            return False
        seg.packets[ext] = (codec, packet.timestamp, packet.payload)
        seg.last_arrival = arrival
        self._count += 1
        self._bytes += size
        self.stats["packets"] += 1
        return True

    def __len__(self) -> int:
        return self._count

    def render(self) -> npt.NDArray[np.int16]:
        """The recording as 8 kHz int16 samples (lost packets and gaps as zeros)."""
        pieces: list[npt.NDArray[np.int16]] = []
        total = 0
        limit = self.max_samples
        prev_seg: _Segment | None = None
        prev_frame = 160
        for seg in self.segments:
            if not seg.packets:
                continue
            if prev_seg is not None:
                gap = round((seg.first_arrival - prev_seg.last_arrival) * _RATE) - prev_frame
                if gap > 0:
                    gap = min(gap, limit - total)
                    pieces.append(np.zeros(max(gap, 0), np.int16))
                    total += max(gap, 0)
            prev: tuple[int, int, int] | None = None  # (ext, timestamp, frame size)
            for ext in sorted(seg.packets):
                if total >= limit:
                    break
                pt, ts, payload = seg.packets[ext]
                if prev is not None:
                    pext, pts, pframe = prev
                    ts_gap = (ts - pts) & 0xFFFFFFFF
                    seq_gap = ext - pext
                    if pframe < ts_gap <= pframe * seq_gap + 10 * _RATE:
                        missing = ts_gap - pframe  # lost packets, or silence suppressed
                    elif ts_gap == pframe:
                        missing = 0
                    else:  # timestamps not believable: trust the sequence numbers
                        missing = (seq_gap - 1) * pframe
                    if missing > 0:
                        missing = min(missing, limit - total)
                        pieces.append(np.zeros(missing, np.int16))
                        total += missing
                        if total >= limit:
                            break
                pcm = g711.decode(pt, payload)
                if total + len(pcm) > limit:
                    pcm = pcm[: limit - total]
                pieces.append(pcm)
                total += len(pcm)
                prev = (ext, ts, len(payload))
            if prev is not None:
                prev_frame = prev[2]
            prev_seg = seg
        if not pieces:
            return np.zeros(0, np.int16)
        return np.concatenate(pieces).astype(np.int16, copy=False)
