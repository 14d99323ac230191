"""Unit tests of mss.media: G.711, RTP and RFC 4733, the recording buffer, SDP, ports, pacing."""

from __future__ import annotations

import hashlib
import socket
import struct
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mss.media import g711
from mss.media.audio import (
    DEFAULT_GREETING,
    AudioError,
    PromptCache,
    SilenceDetector,
    beep_pcm,
    frames,
    prompt_pcm,
    read_wav,
    tone,
)
from mss.media.rtp import (
    DtmfDetector,
    RecordingBuffer,
    RtpError,
    RtpPacket,
    build_rtp,
    parse_rtp,
    parse_telephone_event,
)
from mss.media.sdp import SdpError, answer_sdp, negotiate, offer_sdp, parse_sdp
from mss.media.session import FramePacer, MediaSession, Recording, RtpPortAllocator, RtpPortError

# ============================================================================================
# G.711
# ============================================================================================
ALL16 = np.arange(-32768, 32768, dtype=np.int16)


def test_g711_tables_match_the_reference_vectors() -> None:
    # SHA-256 of the full tables as produced by CPython's audioop (Sun g711.c) in 3.11
    assert hashlib.sha256(g711.ulaw_encode(ALL16)).hexdigest() == (
        "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
    )
    assert hashlib.sha256(g711.alaw_encode(ALL16)).hexdigest() == (
        "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b"
    )
    every = bytes(range(256))
    assert hashlib.sha256(g711.ulaw_decode(every).astype("<i2").tobytes()).hexdigest() == (
        "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
    )
    assert hashlib.sha256(g711.alaw_decode(every).astype("<i2").tobytes()).hexdigest() == (
        "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174"
    )


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_g711_known_values(sample: int, ulaw: int, alaw: int) -> None:
    assert g711.ulaw_encode(np.array([sample], np.int16)) == bytes([ulaw])
    assert g711.alaw_encode(np.array([sample], np.int16)) == bytes([alaw])


def test_g711_decode_known_values() -> None:
    assert g711.ulaw_decode(bytes([0x00, 0x7F, 0x80, 0xFF])).tolist() == [-32124, 0, 32124, 0]
    assert g711.alaw_decode(bytes([0x55, 0xD5, 0x2A, 0xAA])).tolist() == [-8, 8, -32256, 32256]


@pytest.mark.parametrize("pt", [0, 8])
def test_g711_round_trip(pt: int) -> None:
    every = bytes(range(256))
    levels = g711.decode(pt, every)
    again = g711.encode(pt, levels)
    if pt == 0:  # µ-law has two zeros: 0x7F (negative zero) comes back as 0xFF
        assert again == every.replace(b"\x7f", b"\xff")
    else:
        assert again == every
    # a ramp through every value: the decoded sample is near the input (companding error)
    dec = g711.decode(pt, g711.encode(pt, ALL16)).astype(np.int32)
    err = np.abs(dec - ALL16.astype(np.int32))
    assert np.all(
        err
        <= np.maximum(np.abs(ALL16.astype(np.int32)) // 16 + 16, 0) + 1100 * (np.abs(ALL16) > 32000)
    )


def test_g711_bytes_input_and_bad_payload_type() -> None:
    pcm = np.array([0, 1000, -1000], np.int16)
    assert g711.encode(0, pcm.astype("<i2").tobytes()) == g711.ulaw_encode(pcm)
    with pytest.raises(ValueError, match="payload_type"):
        g711.encode(18, pcm)
    with pytest.raises(ValueError, match="payload_type"):
        g711.decode(3, b"\x00")


# ============================================================================================
# RTP, RFC 4733
# ============================================================================================
def test_rtp_build_parse_round_trip() -> None:
    data = build_rtp(8, 70000, 2**32 + 5, 0xDEADBEEF, b"\x01\x02", marker=True)
    p = parse_rtp(data)
    assert p == RtpPacket(8, 70000 & 0xFFFF, 5, 0xDEADBEEF, b"\x01\x02", True, ())


def test_rtp_csrc_extension_padding() -> None:
    hdr = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 1, 2, 3)
    csrc = struct.pack("!II", 10, 11)
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    data = hdr + csrc + ext + b"abc" + b"\x00\x00\x03"
    p = parse_rtp(data)
    assert p.csrc == (10, 11) and p.payload == b"abc"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x80\x00", "length"),
        (struct.pack("!BBHII", 0x40, 0, 1, 2, 3), "version"),
        (struct.pack("!BBHII", 0x80, 200, 1, 2, 3), "payload_type"),  # RTCP SR (200 & 0x7f = 72)
        (struct.pack("!BBHII", 0x83, 0, 1, 2, 3) + b"\x00" * 4, "csrc"),
        (struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + b"\x00\x00", "extension"),
        (struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + b"\x00\x00\x00\x09", "extension"),
        (struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"ab\x09", "padding"),
        (struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"ab\x00", "padding"),
    ],
)
def test_rtp_bad_packets_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(RtpError) as e:
        parse_rtp(data)
    assert e.value.field == field


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_rtp_garbage_only_raises_rtp_error(data: bytes) -> None:
    try:
        p = parse_rtp(data)
    except RtpError:
        return
    assert p.payload_type < 128


def te(event: int, end: bool, duration: int, ts: int, seq: int, ssrc: int = 1) -> RtpPacket:
    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    return RtpPacket(101, seq, ts, ssrc, payload)


def test_telephone_event_parse() -> None:
    ev = parse_telephone_event(struct.pack("!BBH", 11, 0x80 | 7, 800))
    assert (ev.event, ev.end, ev.volume, ev.duration, ev.digit) == (11, True, 7, 800, "#")
    assert parse_telephone_event(struct.pack("!BBH", 16, 0, 0)).digit is None  # flash
    with pytest.raises(RtpError) as e:
        parse_telephone_event(b"\x0b\x80")
    assert e.value.field == "telephone_event"


def test_dtmf_once_per_event_despite_end_retransmissions() -> None:
    det = DtmfDetector()
    out = []
    seq = 100
    for ts, event in ((1000, 11), (5000, 11), (9000, 1)):
        for k, end in ((1, False), (2, False), (3, True), (3, True), (3, True)):
            out.append(det.feed(te(event, end, 160 * k, ts, seq)))
            seq += 1
    assert [d for d in out if d] == ["#", "#", "1"]
    # an event whose start packets were lost is reported on its first end packet
    assert det.feed(te(5, True, 480, 20000, 500)) == "5"
    assert det.feed(te(5, True, 480, 20000, 501)) is None


def audio_packets(
    n: int, *, seq0: int = 0, ts0: int = 0, ssrc: int = 7, pt: int = 0
) -> list[RtpPacket]:
    """n packets whose payload byte k*... encodes their index (distinct decoded levels)."""
    out = []
    for i in range(n):
        payload = bytes([(i * 7 + 1) % 256 or 1]) * 160
        out.append(RtpPacket(pt, (seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, ssrc, payload))
    return out


def expected(pkts: list[RtpPacket], pt: int = 0) -> np.ndarray:
    return np.concatenate([g711.decode(pt, p.payload) for p in pkts])


def test_buffer_orders_by_sequence_and_drops_duplicates() -> None:
    pkts = audio_packets(10)
    buf = RecordingBuffer()
    order = [0, 2, 1, 3, 5, 4, 4, 6, 9, 7, 8, 2]
    for k, i in enumerate(order):
        buf.add(pkts[i], 0.02 * k)
    assert buf.stats["duplicates"] == 2
    assert np.array_equal(buf.render(), expected(pkts))


def test_buffer_sequence_wrap_and_late_packet_across_the_wrap() -> None:
    pkts = audio_packets(12, seq0=65530, ts0=2**32 - 800)
    buf = RecordingBuffer()
    order = [
        0,
        1,
        2,
        3,
        4,
        6,
        7,
        5,
        8,
        9,
        11,
        10,
    ]  # 5 (seq 65535) arrives after 0 and 1 of the new cycle
    for k, i in enumerate(order):
        buf.add(pkts[i], 0.02 * k)
    assert np.array_equal(buf.render(), expected(pkts))


def test_buffer_lost_packets_become_silence() -> None:
    pkts = audio_packets(10)
    buf = RecordingBuffer()
    for i in (0, 1, 2, 5, 6, 9):
        buf.add(pkts[i], 0.02 * i)
    out = buf.render()
    assert len(out) == 1600
    for i in range(10):
        frame = out[160 * i : 160 * (i + 1)]
        if i in (3, 4, 7, 8):
            assert not frame.any()
        else:
            assert np.array_equal(frame, g711.decode(0, pkts[i].payload))


def test_buffer_silence_suppression_gap_from_timestamps() -> None:
    # a talkspurt restarts 1 s later (timestamp jump, next sequence number, marker)
    a = audio_packets(3)
    b = [
        RtpPacket(0, 3 + i, 480 + 8000 + 160 * i, 7, p.payload, i == 0)
        for i, p in enumerate(audio_packets(2))
    ]
    buf = RecordingBuffer()
    for k, p in enumerate(a + b):
        buf.add(p, 0.02 * k)
    out = buf.render()
    assert len(out) == 480 + 8000 + 320
    assert not out[480 : 480 + 8000].any()


def test_buffer_unbelievable_timestamps_fall_back_to_sequence_numbers() -> None:
    pkts = [RtpPacket(0, i, 12345, 7, p.payload) for i, p in enumerate(audio_packets(5))]
    buf = RecordingBuffer()
    for i in (0, 1, 3, 4):  # one lost, constant timestamps
        buf.add(pkts[i], 0.0)
    out = buf.render()
    assert len(out) == 800 and not out[320:480].any()


def test_buffer_ssrc_change_starts_a_new_segment() -> None:
    first = audio_packets(5, seq0=100, ts0=1000, ssrc=1)
    second = audio_packets(5, seq0=40000, ts0=999999, ssrc=2)
    buf = RecordingBuffer()
    for i, p in enumerate(first):
        buf.add(p, 0.02 * i)
    # the new source starts 0.5 s after the last packet of the first one
    for i, p in enumerate(second):
        buf.add(p, 0.08 + 0.5 + 0.02 * i)
    assert buf.stats["ssrc_changes"] == 1
    out = buf.render()
    gap = int(0.5 * 8000) - 160
    assert len(out) == 800 + gap + 800
    assert np.array_equal(out[:800], expected(first))
    assert not out[800 : 800 + gap].any()
    assert np.array_equal(out[800 + gap :], expected(second))


def test_buffer_bounds_and_other_payload_types() -> None:
    buf = RecordingBuffer(max_seconds=1.0)
    assert not buf.add(RtpPacket(18, 1, 1, 1, b"\x00" * 20), 0.0)  # G.729: not ours
    assert not buf.add(RtpPacket(0, 1, 1, 1, b""), 0.0)
    for i, p in enumerate(audio_packets(300)):
        buf.add(p, 0.02 * i)
    assert len(buf) <= buf.max_packets
    assert len(buf.render()) == 8000  # cut at max_seconds
    # a dynamic payload type mapped to PCMA decodes with the A-law table
    buf2 = RecordingBuffer()
    buf2.add(RtpPacket(96, 1, 0, 1, b"\xd5" * 160), 0.0, codec=8)
    assert buf2.render().tolist() == [8] * 160


# ============================================================================================
# SDP
# ============================================================================================
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


def test_sdp_negotiation_keeps_the_offerers_preference_and_telephone_event() -> None:
    neg = negotiate(parse_sdp(OFFER.encode()))
    assert (neg.codec, neg.payload_type, neg.te_payload_type, neg.te_fmtp) == (
        "PCMA",
        8,
        101,
        "0-15",
    )
    assert (neg.remote_host, neg.remote_port, neg.index) == ("192.0.2.1", 4000, 0)
    sd = parse_sdp(OFFER.encode())
    ans = answer_sdp(sd, neg, host="198.51.100.5", port=10002, session_id=42).decode()
    lines = ans.split("\r\n")
    assert "m=audio 10002 RTP/AVP 8 101" in lines
    assert "a=rtpmap:101 telephone-event/8000" in lines and "a=fmtp:101 0-15" in lines
    assert "m=video 0 RTP/AVP 96" in lines  # the same number of m= lines, the video rejected
    assert "c=IN IP4 198.51.100.5" in lines and "a=ptime:20" in lines
    # our answer parses and negotiates to the same codec
    back = negotiate(parse_sdp(ans.encode()))
    assert (back.codec, back.remote_port, back.te_payload_type) == ("PCMA", 10002, 101)


def test_sdp_dynamic_payload_type_ipv6_and_direction() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 97\r\nc=IN IP6 ::1\r\na=rtpmap:97 pcmu/8000\r\na=sendonly\r\n"
    )
    neg = negotiate(parse_sdp(body))
    assert (neg.codec, neg.payload_type, neg.static_type, neg.te_payload_type) == (
        "PCMU",
        97,
        0,
        None,
    )
    assert neg.remote_host == "::1" and neg.direction == "recvonly" and not neg.sends
    ans = answer_sdp(parse_sdp(body), neg, host="::1", port=10000, session_id=1).decode()
    assert "c=IN IP6 ::1" in ans and "a=recvonly" in ans and "telephone-event" not in ans


@pytest.mark.parametrize(
    ("body", "field", "warning"),
    [
        (
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
            "codec",
            305,
        ),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0\r\n", "codec", 305),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n", "m", 304),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n", "m", 304),
        ("v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "c", 399),
        ("v=0\r\ns=-\r\n", "m", 304),
        ("hello", "line", 399),
        ("v=1\r\n", "v", 399),
        ("s=-\r\nm=audio 1 RTP/AVP 0\r\n", "v", 399),
        ("v=0\r\nc=IN IP4 not-an-ip\r\n", "c", 399),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n", "m", 399),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio\r\n", "m", 399),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:x PCMU\r\n", "rtpmap", 399),
    ],
)
def test_sdp_unusable_offers_name_the_field(body: str, field: str, warning: int) -> None:
    with pytest.raises(SdpError) as e:
        negotiate(parse_sdp(body.encode()))
    assert e.value.field == field and e.value.status == 488 and e.value.warning == warning


def test_sdp_not_text() -> None:
    with pytest.raises(SdpError) as e:
        parse_sdp(b"v=0\r\n\xff\xfe")
    assert e.value.field == "body"


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.text(alphabet="vcmoast=0123456789 ./:\r\nINPAVUDT", max_size=200).map(str.encode)
)
def test_sdp_garbage_only_raises_sdp_error(body: bytes) -> None:
    try:
        negotiate(parse_sdp(body))
    except SdpError:
        pass


def test_sdp_our_offer_for_a_late_offer() -> None:
    body = offer_sdp(host="127.0.0.1", port=10000, session_id=5)
    neg = negotiate(parse_sdp(body))
    assert (neg.codec, neg.te_payload_type, neg.remote_port) == ("PCMU", 101, 10000)


# ============================================================================================
# ports, audio
# ============================================================================================
def test_port_allocator_range_exhaustion_and_busy_ports() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1] & ~1
    ports = RtpPortAllocator(base, base + 5, seed=1)  # even ports base, base+2, base+4
    assert list(ports.ports) == [base, base + 2, base + 4]
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            taken.bind(("127.0.0.1", base + 2))  # someone else holds one of them
        except OSError:
            pass
        socks = []
        with pytest.raises(RtpPortError, match="no free RTP port"):
            for _ in range(4):
                socks.append(ports.open("127.0.0.1"))
        assert all(s.getsockname()[1] % 2 == 0 for s in socks)
        assert len({s.getsockname()[1] for s in socks}) == len(socks) <= 3
        assert ports.in_use == len(socks)
        freed = socks[0].getsockname()[1]
        socks[0].close()
        ports.release(freed)
        again = ports.open("127.0.0.1")
        assert again.getsockname()[1] == freed
        for s in [again, *socks[1:]]:
            s.close()
    finally:
        taken.close()
    with pytest.raises(ValueError, match="rtp_port_max"):
        RtpPortAllocator(10001, 10001)


def test_read_wav_converts_to_8k_mono(tmp_path: Path) -> None:
    path = tmp_path / "g.wav"
    stereo = np.stack([tone(500, 1.0, rate=16000), tone(500, 1.0, rate=16000)], axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo.astype("<i2").tobytes())
    pcm = read_wav(path)
    assert len(pcm) == 8000
    ref = tone(500, 1.0)
    assert np.corrcoef(pcm[100:-100].astype(float), ref[100:-100].astype(float))[0, 1] > 0.99
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(AudioError, match=r"bad\.wav"):
        read_wav(bad)


def test_default_greeting_and_prompt_cache(tmp_path: Path) -> None:
    pcm = read_wav(DEFAULT_GREETING)
    assert 2.0 <= len(pcm) / 8000 <= 6.0
    cache = PromptCache()
    f = cache.frames(tmp_path / "missing.wav", 0)  # falls back to the packaged greeting
    assert f == frames(prompt_pcm(pcm), 0)
    assert cache.frames(DEFAULT_GREETING, 0) is cache.frames(DEFAULT_GREETING, 0)
    assert all(len(x) == 160 for x in f)
    assert len(frames(beep_pcm(), 8)) == 30


def test_silence_detector() -> None:
    for pt in (0, 8):
        det = SilenceDetector(pt)
        assert not det.voice(g711.encode(pt, np.zeros(160, np.int16)))
        assert not det.voice(
            g711.encode(pt, np.random.default_rng(1).normal(0, 30, 160).astype(np.int16))
        )
        assert det.voice(g711.encode(pt, tone(440, 0.02, level=0.1)))


# ============================================================================================
# pacing without drift (a controlled clock: no timing assertions on the real one)
# ============================================================================================
class FakeLoop:
    """time(), call_at() and add_reader() of a loop whose clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []
        self.readers: dict[int, Any] = {}

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, cb: Any, *args: Any) -> Any:
        self.timers.append((when, lambda: cb(*args)))
        return _Handle()

    def add_reader(self, fd: int, cb: Any) -> None:
        self.readers[fd] = cb

    def remove_reader(self, fd: int) -> bool:
        return self.readers.pop(fd, None) is not None

    def run_next(self, late: float = 0.0) -> float:
        self.timers.sort(key=lambda t: t[0])
        when, cb = self.timers.pop(0)
        self.now = max(self.now, when + late)
        cb()
        return when


class _Handle:
    def cancel(self) -> None:
        pass


def test_pacer_grid_does_not_drift_and_late_packets_are_counted() -> None:
    loop: Any = FakeLoop()
    pacer = FramePacer(loop)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    done: list[Recording] = []
    session = MediaSession(
        loop=loop, pacer=pacer, sock=tx, max_seconds=5, silence_timeout=1.0, on_done=done.append
    )
    from mss.media.sdp import Negotiated

    neg = Negotiated(0, "PCMU", 0, 101, "0-16", "127.0.0.1", rx.getsockname()[1], 0)
    prompt = [bytes([i]) * 160 for i in range(50)]
    session.start(neg, prompt)
    grid = []
    # every tick runs 3 ms late, one stalls 70 ms: the grid stays at t0 + k*20 ms
    for k in range(60):
        grid.append(loop.run_next(late=0.07 if k == 10 else 0.003))
        if session.state != "playing":
            break
    t0 = grid[0]
    assert all(abs(g - (t0 + round((g - t0) / 0.02) * 0.02)) < 1e-9 for g in grid)
    got = []
    while True:
        try:
            got.append(rx.recv(2048))
        except BlockingIOError:
            break
    assert [p[12] for p in got] == list(range(50))  # every frame, in order, none skipped
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(50))
    # the 70 ms stall: the tick of slot 10 runs at +70 ms and sends slots 10-13 at once;
    # slots 10, 11, 12 leave more than 20 ms after their slot (late, counted, not lost)
    assert session.stats["late"] == 3 and session.stats["sent"] == 50
    assert session.state == "recording"
    # recording: no packet at all for silence_timeout → ends with "silence", nothing recorded
    while not done:
        loop.run_next()
    assert done[0].ended_by == "silence" and done[0].duration == 0
    rx.close()


def test_bad_datagrams_are_counted_and_dropped() -> None:
    loop: Any = FakeLoop()
    pacer = FramePacer(loop)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    done: list[Recording] = []
    session = MediaSession(
        loop=loop, pacer=pacer, sock=tx, max_seconds=5, silence_timeout=1.0, on_done=done.append
    )
    from mss.media.sdp import Negotiated

    session.start(Negotiated(0, "PCMU", 0, 101, "0-16", "0.0.0.0", 0, 0), [])
    loop.run_next()
    assert session.state == "recording"
    for junk in (
        b"",
        b"\x00" * 3,
        b"\x40" * 20,
        build_rtp(101, 1, 1, 1, b"\x0b"),
        build_rtp(13, 2, 2, 1, b"\x01"),
    ):
        session._on_datagram(junk, ("127.0.0.1", 9))
    assert session.stats["bad"] == 4 and session.stats["ignored"] == 1
    assert session.state == "recording"
    # a valid '#' ends it
    session._on_datagram(
        build_rtp(101, 3, 3, 1, struct.pack("!BBH", 11, 0x80, 400)), ("127.0.0.1", 9)
    )
    assert done and done[0].ended_by == "dtmf"


def test_hash_during_the_greeting_skips_to_the_beep() -> None:
    loop: Any = FakeLoop()
    pacer = FramePacer(loop)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.setblocking(False)
    session = MediaSession(
        loop=loop,
        pacer=pacer,
        sock=tx,
        max_seconds=5,
        silence_timeout=1.0,
        on_done=lambda rec: None,
        beep_frames=30,
    )
    from mss.media.sdp import Negotiated

    session.start(
        Negotiated(0, "PCMU", 0, 101, "0-16", "127.0.0.1", rx.getsockname()[1], 0),
        [bytes([i]) * 160 for i in range(100)],
    )
    for _ in range(10):
        loop.run_next()
    session.on_digit("#")
    while session.state == "playing":
        loop.run_next()
    got = []
    while True:
        try:
            got.append(rx.recv(2048))
        except BlockingIOError:
            break
    # frames 0-9, then the beep (the last 30 frames), with sequence numbers that go on
    assert [p[12] for p in got] == list(range(10)) + list(range(70, 100))
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in got]
    assert [(x - seqs[0]) & 0xFFFF for x in seqs] == list(range(40))
    session.stop("bye")
    rx.close()


def test_media_and_voicemail_config_errors_name_the_field() -> None:
    from mss.config import load_config
    from mss.errors import ConfigError

    cfg = load_config(
        None,
        env={"MSS_MEDIA_RTP_PORT_MIN": "40000", "MSS_VOICEMAIL_SILENCE_TIMEOUT": "2.5"},
        overrides={"media.rtp_port_max": 40010, "media.rtp_host": "[::1]"},
    )
    assert (cfg.media.rtp_port_min, cfg.media.rtp_port_max, cfg.media.rtp_host) == (
        40000,
        40010,
        "::1",
    )
    assert cfg.voicemail.silence_timeout == 2.5
    for overrides, field in (
        ({"media.rtp_port_min": 20000}, "media.rtp_port_max"),
        ({"media.rtp_port_min": 80}, "media.rtp_port_min"),
        ({"media.rtp_host": "pbx.example.com"}, "media.rtp_host"),
        ({"voicemail.silence_timeout": 0}, "voicemail.silence_timeout"),
    ):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(None, env={}, overrides=overrides)
