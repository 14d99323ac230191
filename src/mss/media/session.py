"""RTP streams of the calls the server answers: ports, paced sending, one session per call.

Theory of operation
-------------------
*Ports.* :class:`RtpPortAllocator` hands out even UDP ports (RTP; the odd one above is left for
RTCP, RFC 3550 §11) from ``[media] rtp_port_min..rtp_port_max``, starting at a random place
and skipping ports that are taken (by us or by another program: the bind fails and the next one
is tried). The socket is bound synchronously, so the SDP answer carries a port that is ours.

*Pacing.* One :class:`FramePacer` per event loop runs a single ``loop.call_at`` timer on a 20 ms
grid, ``t0 + k*20 ms``, for every stream at once: a tick never re-arms relative to "now", so
lateness does not accumulate (no drift), and 200 streams cost one timer, not 200. A session
that starts playing takes the next grid point as its own ``t0``; its packet *n* is due at
``t0 + n*20 ms``. Each tick sends every packet whose slot has come (after a stall, the missed
ones go at once, in order) and counts a packet *late* when it leaves more than 20 ms after its
slot, *dropped* when ``sendto`` fails.

*Sessions.* :class:`MediaSession` reads its socket with ``loop.add_reader`` (no transport
objects, no per-packet futures) and goes ``playing`` (greeting + beep, RFC 3550 header with a
random SSRC, sequence and timestamp, marker on the first packet) → ``recording`` → ``done``.
While recording, audio packets go to a :class:`~mss.media.rtp.RecordingBuffer`; RFC 4733 ``#``
ends the recording (``#`` during the greeting skips to the beep); so do the maximum length and
``silence_timeout`` seconds without voice (no packets at all counts as silence). The answering
side can end it too (:meth:`MediaSession.stop`: BYE, shutdown). On the first valid packet from
the caller the session sends to that address (symmetric RTP: a phone behind NAT receives where
it sends from). Malformed datagrams are counted and dropped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import FRAME_SAMPLES, RATE, VOICE_LEVEL, SilenceDetector
from .rtp import DtmfDetector, RecordingBuffer, RtpError, parse_rtp
from .sdp import Negotiated

__all__ = (
    "FRAME_INTERVAL",
    "FramePacer",
    "MediaSession",
    "Recording",
    "RtpPortAllocator",
    "RtpPortError",
)

log = logging.getLogger("mss.media")

FRAME_INTERVAL = 0.02
_HEADER = struct.Struct("!BBHII")


class RtpPortError(OSError):
    """No free port in the configured RTP range."""


class RtpPortAllocator:
    """Even UDP ports from ``[low, high]`` (see the module docstring).

    Args:
        low / high: the range (``[media] rtp_port_min`` / ``rtp_port_max``).
    """

    def __init__(self, low: int = 10000, high: int = 20000, *, seed: int | None = None) -> None:
        first = low + (low & 1)
        self.ports = range(first, high, 2)  # p and p + 1 both within [low, high]
        if not self.ports:
            raise ValueError(f"rtp_port_max: no even port p with p+1 <= {high} from {low}")
        self._used: set[int] = set()
        self._cursor = random.Random(seed).randrange(len(self.ports))

    @property
    def in_use(self) -> int:
        return len(self._used)

    def open(self, host: str) -> socket.socket:
        """A non-blocking UDP socket bound to ``host`` and a free even port of the range.

        Raises:
            RtpPortError: every port of the range is taken.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        n = len(self.ports)
        for i in range(n):
            index = (self._cursor + i) % n
            port = self.ports[index]
            if port in self._used:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError as e:
                sock.close()
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            sock.setblocking(False)
            self._used.add(port)
            self._cursor = index + 1
            return sock
        raise RtpPortError(
            errno.EADDRINUSE,
            f"no free RTP port in {self.ports.start}-{self.ports.stop} ({n} even ports)",
        )

    def release(self, port: int) -> None:
        self._used.discard(port)


class FramePacer:
    """One 20 ms grid timer driving every session of a loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = FRAME_INTERVAL) -> None:
        self.loop = loop
        self.interval = interval
        self._sessions: dict[MediaSession, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._k = 0
        #: ticks run, ticks that ran more than one interval after their grid time (a stalled
        #: loop: every stream's packets of that slot are late), the worst lateness seen
        #: max_work_us: the longest tick in wall-clock time (preemption included);
        #: max_cpu_us: its CPU time (``time.thread_time``), the pacer's own cost
        self.stats = {
            "ticks": 0,
            "late_ticks": 0,
            "max_late_us": 0,
            "max_work_us": 0,
            "max_cpu_us": 0,
        }

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: MediaSession) -> None:
        self._sessions[session] = None
        if self._handle is None:
            self._t0 = self.loop.time()
            self._k = 0
            self._handle = self.loop.call_at(self._t0, self._tick)

    def remove(self, session: MediaSession) -> None:
        self._sessions.pop(session, None)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._sessions.clear()

    def _tick(self) -> None:
        loop = self.loop
        grid = self._t0 + self._k * self.interval
        now = loop.time()
        stats = self.stats
        stats["ticks"] += 1
        late = now - grid
        if late > self.interval:
            stats["late_ticks"] += 1
        if late * 1e6 > stats["max_late_us"]:
            stats["max_late_us"] = int(late * 1e6)
        cpu0 = time.thread_time()
        for s in list(self._sessions):
            try:
                s.on_tick(now, grid)
            except Exception:
                log.exception("media session tick failed; stopping it")
                self._sessions.pop(s, None)
                try:
                    s.stop("error")
                except Exception:
                    log.exception("stopping a failed media session")
        work = int((loop.time() - now) * 1e6)  # this tick's cost (every stream's packets)
        if work > stats["max_work_us"]:
            stats["max_work_us"] = work
        cpu = int((time.thread_time() - cpu0) * 1e6)
        if cpu > stats["max_cpu_us"]:
            stats["max_cpu_us"] = cpu
        if not self._sessions:
            self._handle = None
            return
        # the next grid point after now: late ticks catch up, they never shift the grid
        k = int((loop.time() - self._t0) / self.interval) + 1
        self._k = max(k, self._k + 1)
        self._handle = loop.call_at(self._t0 + self._k * self.interval, self._tick)


@dataclass(slots=True)
class Recording:
    """What a session recorded (handed to ``on_done``).

    Attributes:
        pcm: signed 16-bit little-endian mono samples at 8 kHz.
        duration: seconds of audio in ``pcm``.
        ended_by: ``"bye"``, ``"dtmf"``, ``"max-length"``, ``"silence"``, ``"shutdown"``...
        started_at: wall-clock time the recording started (0 if it never did).
        stats: packet counters (sent, late, dropped, received, bad, duplicates...).
    """

    pcm: bytes
    duration: float
    ended_by: str
    started_at: float
    stats: dict[str, int] = field(default_factory=dict)


def _trim_silence(pcm: np.ndarray[Any, Any], keep: int = RATE // 5) -> np.ndarray[Any, Any]:
    """Cut what follows the last voiced 20 ms frame (+ ``keep`` samples)."""
    n = len(pcm) - len(pcm) % FRAME_SAMPLES
    if n == 0:
        return pcm[:0]
    loud = (np.abs(pcm[:n].astype(np.int32)) > VOICE_LEVEL).reshape(-1, FRAME_SAMPLES).sum(axis=1)
    voiced = np.nonzero(loud >= 16)[0]
    if len(voiced) == 0:
        return pcm[:0]
    return pcm[: min(len(pcm), (int(voiced[-1]) + 1) * FRAME_SAMPLES + keep)]


class MediaSession:
    """The RTP side of one answered call (see the module docstring).

    Args:
        loop: the event loop.
        pacer: the loop's :class:`FramePacer`.
        sock: the bound, non-blocking UDP socket (from :class:`RtpPortAllocator`).
        prompt: the encoded 20 ms payloads to play (greeting + beep) for the negotiated codec;
            given to :meth:`start` for a late offer instead.
        max_seconds: longest recording.
        silence_timeout: seconds without voice that end the recording.
        on_done: called once with the :class:`Recording` when the session ends.
        on_close: called once with the port when the socket is closed.
        beep_frames: how many of the last prompt frames are the beep (``#`` skips to it).
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        pacer: FramePacer,
        sock: socket.socket,
        max_seconds: float,
        silence_timeout: float,
        on_done: Callable[[Recording], None],
        on_close: Callable[[int], None] = lambda port: None,
        beep_frames: int = 30,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.loop = loop
        self.pacer = pacer
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.max_seconds = max_seconds
        self.silence_timeout = silence_timeout
        self.on_done = on_done
        self.on_close = on_close
        self.beep_frames = beep_frames
        self.wall = wall
        self.state = "idle"  # idle (no SDP yet), playing, recording, done
        self.neg: Negotiated | None = None
        self.remote: tuple[str, int] | None = None
        self.latched = False
        self.prompt: list[bytes] = []
        self.t0: float | None = None
        #: packets sent so far (slot and sequence number); pos: the next prompt frame
        self.n = 0
        self.pos = 0
        rnd = random.Random()
        self.ssrc = rnd.getrandbits(32)
        self.seq0 = rnd.getrandbits(16)
        self.ts0 = rnd.getrandbits(32)
        self.buffer: RecordingBuffer | None = None
        self.dtmf = DtmfDetector()
        self.silence: SilenceDetector | None = None
        self.rec_start = 0.0
        self.rec_wall = 0.0
        self.last_voice = 0.0
        self.digits: list[str] = []
        self.stats = {
            "sent": 0,
            "late": 0,
            "dropped": 0,
            "received": 0,
            "bad": 0,
            "ignored": 0,
            "max_late_us": 0,
        }

    def __repr__(self) -> str:
        return f"<MediaSession :{self.port} {self.state}>"

    # -- life cycle --------------------------------------------------------------------------
    def start(self, neg: Negotiated, prompt: list[bytes]) -> None:
        """Start playing ``prompt`` to the peer of ``neg`` (then record)."""
        if self.state != "idle":
            return
        self.neg = neg
        self.prompt = prompt if neg.sends else []
        host, port = neg.remote_host, neg.remote_port
        unspecified = host in ("0.0.0.0", "::") or port == 0
        self.remote = None if unspecified else (host, port)
        self.buffer = RecordingBuffer((neg.static_type, 0, 8), max_seconds=self.max_seconds)
        self.silence = SilenceDetector(neg.static_type)
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.state = "playing"
        self.pacer.add(self)

    def stop(self, reason: str) -> None:
        """End the session now (BYE from the caller, shutdown...); idempotent."""
        if self.state != "done":
            self._finish(reason)

    def _close_socket(self) -> None:
        try:
            self.loop.remove_reader(self.sock.fileno())
        except Exception:  # the loop may be closing
            pass
        self.sock.close()
        self.on_close(self.port)

    def _finish(self, reason: str) -> None:
        recorded = self.state == "recording"
        self.state = "done"
        self.pacer.remove(self)
        if self.sock.fileno() >= 0:
            self._close_socket()
        else:
            self.on_close(self.port)
        pcm = np.zeros(0, np.int16)
        if recorded and self.buffer is not None:
            pcm = self.buffer.render()
            if reason == "silence":
                pcm = _trim_silence(pcm)
        stats = dict(self.stats)
        if self.buffer is not None:
            stats.update({f"rec_{k}": v for k, v in self.buffer.stats.items()})
        rec = Recording(
            pcm=pcm.astype("<i2", copy=False).tobytes(),
            duration=round(len(pcm) / RATE, 3),
            ended_by=reason,
            started_at=self.rec_wall if recorded else 0.0,
            stats=stats,
        )
        self.on_done(rec)

    # -- sending -----------------------------------------------------------------------------
    def on_tick(self, now: float, grid: float) -> None:
        """The pacer's tick: send the packets due by ``now``; check the recording's limits."""
        state = self.state
        if state == "playing":
            if self.t0 is None:
                self.t0 = grid
            self._play(now)
            if self.pos >= len(self.prompt):
                self._start_recording(now)
        elif state == "recording":
            if now - self.rec_start >= self.max_seconds:
                self._finish("max-length")
            elif now - self.last_voice >= self.silence_timeout:
                self._finish("silence")

    def _play(self, now: float) -> None:
        t0 = self.t0
        assert t0 is not None and self.neg is not None
        prompt = self.prompt
        count = len(prompt)
        pt = self.neg.payload_type
        sock = self.sock
        remote = self.remote
        stats = self.stats
        while self.pos < count:
            n = self.n
            slot = t0 + n * FRAME_INTERVAL
            if slot > now + 0.001:  # asyncio may run a timer up to its resolution early
                break
            payload = prompt[self.pos]
            self.n = n + 1
            self.pos += 1
            late = now - slot
            if late > FRAME_INTERVAL:
                stats["late"] += 1
            us = int(late * 1e6)
            if us > stats["max_late_us"]:
                stats["max_late_us"] = us
            if remote is None:
                continue  # no address yet (0.0.0.0 in the SDP): wait for the caller's RTP
            packet = (
                _HEADER.pack(
                    0x80,
                    (0x80 | pt) if n == 0 else pt,
                    (self.seq0 + n) & 0xFFFF,
                    (self.ts0 + n * FRAME_SAMPLES) & 0xFFFFFFFF,
                    self.ssrc,
                )
                + payload
            )
            try:
                sock.sendto(packet, remote)
                stats["sent"] += 1
            except OSError:
                stats["dropped"] += 1

    def _start_recording(self, now: float) -> None:
        self.state = "recording"
        self.rec_start = now
        self.rec_wall = self.wall()
        self.last_voice = now

    # -- receiving ---------------------------------------------------------------------------
    def _on_readable(self) -> None:
        # one datagram per callback: the readiness is level-triggered, so a burst calls back
        # again, and the common case (one packet) pays no BlockingIOError
        try:
            data, addr = self.sock.recvfrom(2048)
        except OSError:  # nothing to read after all, or an ICMP error reported on the socket
            return
        if self.state != "done":
            self._on_datagram(data, addr)

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        stats["received"] += 1
        neg = self.neg
        assert neg is not None
        if self.state == "playing" and self.latched and len(data) >= 12:
            pt = data[1] & 0x7F
            if pt != neg.te_payload_type and data[0] >> 6 == 2:
                return  # talking over the greeting: not recorded, not even parsed
        try:
            pkt = parse_rtp(data)
        except RtpError:
            stats["bad"] += 1
            return
        pt = pkt.payload_type
        if pt == neg.te_payload_type and neg.te_payload_type is not None:
            self._latch(addr)
            try:
                digit = self.dtmf.feed(pkt)
            except RtpError:
                stats["bad"] += 1
                return
            if digit is not None:
                self.on_digit(digit)
            return
        if pt == neg.payload_type:
            codec = neg.static_type
        elif pt in (0, 8):
            codec = pt
        else:
            stats["ignored"] += 1  # comfort noise, other codecs
            return
        self._latch(addr)
        if self.state != "recording":
            return  # talking over the greeting is not recorded
        now = self.loop.time()
        buffer = self.buffer
        assert buffer is not None and self.silence is not None
        if buffer.add(pkt, now, codec) and self.silence.voice(pkt.payload, codec):
            self.last_voice = now

    def _latch(self, addr: Any) -> None:
        if not self.latched:
            self.latched = True
            self.remote = (addr[0], addr[1])

    def on_digit(self, digit: str) -> None:
        """A DTMF key (RFC 4733): ``#`` skips the greeting, or ends the recording."""
        self.digits.append(digit)
        if digit != "#":
            return
        if self.state == "recording":
            self._finish("dtmf")
        elif self.state == "playing":
            skip_to = max(0, len(self.prompt) - self.beep_frames)
            if self.pos < skip_to:
                self.pos = skip_to  # the next slot plays the beep (sequence numbers go on)
