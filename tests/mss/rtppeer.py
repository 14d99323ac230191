"""A loopback RTP endpoint for voicemail tests: receives the greeting, sends audio and DTMF.

It is a real UDP socket on 127.0.0.1 that speaks RTP as a phone does (RFC 3550 headers built by
hand here, not with mss.media, so the server's parser is tested against an independent writer).
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

import numpy as np

HEADER = struct.Struct("!BBHII")


def sdp_offer(port: int, formats: str = "0 8 101", extra: str = "") -> bytes:
    lines = [
        "v=0",
        "o=- 7 7 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n").encode()


def ulaw(pcm: np.ndarray) -> bytes:
    """Reference µ-law encoder (ITU-T G.711 / Sun g711.c), independent of mss.media."""
    out = bytearray()
    seg_end = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
    for v in pcm.astype(int):
        v >>= 2
        mask = 0xFF
        if v < 0:
            v = -v
            mask = 0x7F
        v = min(v, 8159) + 0x21
        seg = next((i for i, e in enumerate(seg_end) if v <= e), 8)
        out.append(0x7F ^ mask if seg >= 8 else ((seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask)
    return bytes(out)


def ulaw_to_pcm(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


class RtpPeer(asyncio.DatagramProtocol):
    """The caller's media: collects what arrives, sends paced audio and RFC 4733 events."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.packets: list[tuple[float, bytes]] = []
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)

    @classmethod
    async def open(cls) -> RtpPeer:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return proto

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.packets.append((asyncio.get_running_loop().time(), data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- receiving -----------------------------------------------------------------------------
    def headers(self) -> list[tuple[int, int, int, int, int]]:
        """(b0, b1, seq, ts, ssrc) of every packet received."""
        return [HEADER.unpack_from(d) for _, d in self.packets]

    def audio(self) -> np.ndarray:
        return ulaw_to_pcm(b"".join(d[12:] for _, d in self.packets))

    async def wait_quiet(
        self, first: float = 5.0, quiet: float = 0.3, limit: float = 15.0, count: int = 0
    ) -> None:
        """Wait until packets arrived and then stopped for ``quiet`` s (the greeting is over).

        ``count``: the number of packets the greeting has, when the test knows it: a pause of
        the server under load (a busy CI machine) is then not taken for the greeting's end.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not self.packets:
            if loop.time() - start > first:
                raise AssertionError("no RTP from the server")
            await asyncio.sleep(0.02)
        while loop.time() - start < limit:
            if len(self.packets) >= count and loop.time() - self.packets[-1][0] >= quiet:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the server kept sending RTP")

    # -- sending -------------------------------------------------------------------------------
    def packet(
        self, payload: bytes, *, pt: int = 0, marker: bool = False, advance: int = 160
    ) -> bytes:
        data = (
            HEADER.pack(
                0x80,
                (0x80 if marker else 0) | pt,
                self.seq & 0xFFFF,
                self.ts & 0xFFFFFFFF,
                self.ssrc,
            )
            + payload
        )
        self.seq += 1
        self.ts += advance
        return data

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, dest)

    async def send_audio(
        self,
        payload: bytes,
        dest: tuple[str, int],
        *,
        pt: int = 0,
        swap_every: int = 0,
        duplicate_every: int = 0,
        drop: frozenset[int] = frozenset(),
    ) -> int:
        """Send ``payload`` (encoded) as 20 ms packets paced on the loop clock (no drift).

        ``swap_every``: every n-th pair of packets goes out in reverse order (reordering);
        ``duplicate_every``: every n-th packet is sent twice; ``drop``: indexes never sent.
        Returns the number of packets.
        """
        loop = asyncio.get_running_loop()
        frames = [payload[i : i + 160] for i in range(0, len(payload), 160)]
        pkts = [self.packet(f, pt=pt, marker=i == 0) for i, f in enumerate(frames)]
        t0 = loop.time()
        i = 0
        while i < len(pkts):
            delay = t0 + i * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if swap_every and i % swap_every == swap_every - 1 and i + 1 < len(pkts):
                for j in (i + 1, i):
                    if j not in drop:
                        self.send(pkts[j], dest)
                i += 2
                continue
            if i not in drop:
                self.send(pkts[i], dest)
                if duplicate_every and i % duplicate_every == 0:
                    self.send(pkts[i], dest)
            i += 1
        return len(pkts)

    async def send_event(self, event: int, dest: tuple[str, int], *, pt: int = 101) -> None:
        """One key press (RFC 4733): 3 updates then the end packet three times, same timestamp."""
        ts = self.ts
        for k, end in ((1, False), (2, False), (3, False), (4, True), (4, True), (4, True)):
            flags = (0x80 if end else 0) | 10
            payload = struct.pack("!BBH", event, flags, 160 * k)
            data = (
                HEADER.pack(
                    0x80,
                    (0x80 if k == 1 and not end else 0) | pt,
                    self.seq & 0xFFFF,
                    ts & 0xFFFFFFFF,
                    self.ssrc,
                )
                + payload
            )
            self.seq += 1
            self.send(data, dest)
            await asyncio.sleep(0.02)
        self.ts += 160 * 4
