"""Voicemail answering end to end: a real server on loopback, a SIP phone and an RTP peer.

The caller (tests/mss/phones.py) places the call with digest; its media is a real UDP socket
(tests/mss/rtppeer.py) that receives the greeting and sends paced G.711 audio and RFC 4733
events. Most tests put a small in-test mailbox (FakeBox, a VoicemailBox) in front of the
answering machine to see exactly what it deposits; one test goes through the real mailbox
(VoicemailService: WAV file + row).
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from netutil import LOOP_IDS, run_on
from phones import Phone
from rtppeer import RtpPeer, sdp_offer, ulaw, ulaw_to_pcm
from serverutil import running

from fastsip.message import Request, Response
from mss.features.voicemail import VoicemailDeposit, VoicemailSettings
from mss.media.audio import DEFAULT_GREETING, prompt_pcm, read_wav


class FakeBox:
    """A VoicemailBox that keeps the deposits in memory."""

    def __init__(
        self, settings: dict[str, VoicemailSettings], greeting: Path | None = None
    ) -> None:
        self.settings = settings
        self.greeting = greeting
        self.deposits: list[VoicemailDeposit] = []
        self.event = asyncio.Event()

    def settings_for(self, number: str) -> VoicemailSettings | None:
        s = self.settings.get(number)
        return s if s is not None and s.enabled else None

    def greeting_path(self, number: str) -> Path:
        return self.greeting or DEFAULT_GREETING

    async def deposit(self, deposit: VoicemailDeposit) -> str:
        self.deposits.append(deposit)
        self.event.set()
        return f"m{len(self.deposits)}"

    async def wait(self, timeout: float = 10.0) -> VoicemailDeposit:
        await asyncio.wait_for(self.event.wait(), timeout)
        return self.deposits[-1]


def short_greeting(tmp_path: Path) -> Path:
    """A 0.1 s greeting (keeps tests short: greeting + beep = 0.7 s)."""
    path = tmp_path / "short.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, "<i2").tobytes())
    return path


@asynccontextmanager
async def pbx(
    tmp_path: Path,
    *,
    register: tuple[str, ...] = ("1001",),
    settings: VoicemailSettings | None = None,
    greeting: Path | None = None,
    user_fields: dict[str, dict[str, Any]] | None = None,
    real_box: bool = False,
    **overrides: Any,
) -> AsyncIterator[tuple[Any, dict[str, Phone], FakeBox]]:
    """A server with users 1001 (caller) and 1002 (voicemail on); phones for both."""
    overrides.setdefault("storage.backend", "memory")
    overrides.setdefault("stun.enabled", False)
    async with running(tmp_path / "data", **overrides) as srv:
        phones: dict[str, Phone] = {}
        for n in ("1001", "1002"):
            await srv.users.add(n, f"pw-{n}", **(user_fields or {}).get(n, {}))
            phones[n] = await Phone.open(srv.port("udp"), n, f"pw-{n}")
        for n in register:
            await phones[n].register()
        box = FakeBox({"1002": settings or VoicemailSettings(enabled=True)}, greeting)
        if not real_box:
            srv.b2bua.voicemail.box = box
        try:
            yield srv, phones, box
        finally:
            for p in phones.values():
                p.close()


def answer_of(body: bytes) -> tuple[int, list[int]]:
    """(port, formats) of the audio m= line of an SDP answer."""
    for line in body.decode().splitlines():
        if line.startswith("m=audio"):
            parts = line.split()
            return int(parts[1]), [int(f) for f in parts[3:]]
    raise AssertionError(f"no audio stream in {body!r}")


async def answered(
    a: Phone, peer: RtpPeer, callee: str = "1002", **kw: Any
) -> tuple[Any, tuple[str, int], list[int]]:
    """Call, take the 200, ACK; returns the dialog, the server's RTP address, the formats."""
    kw.setdefault("body", sdp_offer(peer.port))
    d = await a.call(callee, **kw)
    ok = await a.response(200, timeout=8)
    assert ok.content_type == "application/sdp"
    port, formats = answer_of(ok.body)
    d.confirmed(ok)
    a.send(d.ack())
    return d, ("127.0.0.1", port), formats


def speech_like(seconds: float, seed: int = 7) -> np.ndarray:
    """A deterministic, speech-like test signal: a chirp with syllable-rate AM and some noise."""
    t = np.arange(int(seconds * 8000)) / 8000
    f = 300 + 900 * (1 + np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f) / 8000
    am = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(seed).normal(0, 0.03, len(t))
    return ((np.sin(phase) * am + noise) * 9000).astype(np.int16)


def ncc(recorded: np.ndarray, sent: np.ndarray, max_lag: int = 4000) -> float:
    """Peak normalized cross-correlation of two signals over lags ±max_lag (after alignment)."""
    x = recorded.astype(np.float64)
    y = sent.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    c = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(y, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([c[: max_lag + 1], c[-max_lag:]])
    k = int(np.argmax(vals))
    lag = int(lags[k])
    # energy of the overlapping parts at that lag
    if lag >= 0:
        xs, ys = x[lag:], y[: len(x) - lag]
    else:
        xs, ys = x[: len(x) + lag], y[-lag:]
    m = min(len(xs), len(ys))
    return float(np.dot(xs[:m], ys[:m]) / np.sqrt(np.dot(xs[:m], xs[:m]) * np.dot(ys[:m], ys[:m])))


@pytest.fixture(params=LOOP_IDS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def cdrs(srv: Any) -> list[Any]:
    await srv.cdr.flush()
    return await srv.storage.cdrs.query()


# --------------------------------------------------------------------------------------------
def test_offline_user_greeting_then_5s_recording(loop_name: str, tmp_path: Path) -> None:
    """The acceptance case: an offline user with voicemail on; default greeting; 5 s of audio."""

    async def main() -> None:
        async with pbx(tmp_path) as (srv, ph, box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d, dest, formats = await answered(a, peer)
                assert formats == [0, 101]  # PCMU (first offered) + telephone-event
                expected = prompt_pcm(read_wav(DEFAULT_GREETING))
                await peer.wait_quiet(count=-(-len(expected) // 160))
                # the greeting: every packet, in order, paced 20 ms, PCMU, one SSRC, marker first
                hs = peer.headers()
                assert len(hs) == -(-len(expected) // 160)
                assert all(h[0] == 0x80 and h[1] & 0x7F == 0 for h in hs)
                assert hs[0][1] & 0x80 and not any(h[1] & 0x80 for h in hs[1:])
                assert {h[4] for h in hs} == {hs[0][4]}
                assert [(h[2] - hs[0][2]) & 0xFFFF for h in hs] == list(range(len(hs)))
                assert [(h[3] - hs[0][3]) & 0xFFFFFFFF for h in hs] == [
                    160 * i for i in range(len(hs))
                ]
                got = peer.audio()[: len(expected)]
                assert ncc(got, expected, max_lag=10) > 0.99
                # 5 s of speech-like audio, with reordering and duplicates on the way
                sample = speech_like(5.0)
                encoded = ulaw(sample)
                await peer.send_audio(encoded, dest, swap_every=9, duplicate_every=13)
                await asyncio.sleep(0.1)
                a.send(d.in_dialog("BYE"))
                assert (await a.response()).status == 200
                dep = await box.wait()
            finally:
                peer.close()
            assert dep.user == "1002" and dep.caller == "1001" and dep.ended_by == "bye"
            assert dep.call_id == d.call_id
            assert abs(dep.duration - 5.0) <= 0.2
            pcm = np.frombuffer(dep.pcm, "<i2")
            assert len(pcm) == round(dep.duration * 8000)
            assert ncc(pcm, ulaw_to_pcm(encoded)) > 0.9
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.route == "voicemail" and rec.result == "answered" and rec.status == 200
            assert rec.callee == "1002" and rec.hangup == "caller"
            vm = rec.extra["voicemail"]
            assert vm["condition"] == "offline" and vm["ended_by"] == "bye" and vm["deposited"]
            assert srv.b2bua.active_calls == 0 and srv.b2bua.voicemail.ports.in_use == 0

    run_on(loop_name, main, 60)


def test_hash_ends_the_recording_and_the_server_hangs_up(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, greeting=short_greeting(tmp_path)) as (srv, ph, box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d, dest, _ = await answered(a, peer)
                await peer.wait_quiet()
                tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
                await peer.send_audio(ulaw(tone), dest)
                await peer.send_event(11, dest)  # '#'
                bye = await a.request_in("BYE", timeout=3)
                a.reply(bye, 200)
                dep = await box.wait()
                # the end packets' retransmissions and a second press change nothing
                assert await a.nothing("BYE", 0.3)
            finally:
                peer.close()
            assert dep.ended_by == "dtmf"
            assert abs(dep.duration - 1.0) <= 0.2
            assert isinstance(bye, Request) and "voicemail dtmf" in (bye.get("Reason") or "")
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.hangup == "system" and rec.result == "answered"
            assert rec.extra["voicemail"]["ended_by"] == "dtmf"

    run_on("asyncio", main, 30)


def test_max_length_cuts_the_recording(tmp_path: Path) -> None:
    async def main() -> None:
        settings = VoicemailSettings(enabled=True, max_seconds=1)
        async with pbx(tmp_path, settings=settings, greeting=short_greeting(tmp_path)) as (
            _srv,
            ph,
            box,
        ):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                _d, dest, _ = await answered(a, peer)
                # talk from the start: over the greeting (not recorded), then past the limit
                sender = asyncio.ensure_future(peer.send_audio(ulaw(speech_like(3.0)), dest))
                bye = await a.request_in("BYE", timeout=4)
                a.reply(bye, 200)
                dep = await box.wait()
                sender.cancel()
            finally:
                peer.close()
            assert dep.ended_by == "max-length"
            assert 0.5 <= dep.duration <= 1.0

    run_on("asyncio", main, 30)


def test_silence_timeout_ends_the_recording(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(
            tmp_path, greeting=short_greeting(tmp_path), **{"voicemail.silence_timeout": 1.0}
        ) as (_srv, ph, box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                _d, dest, _ = await answered(a, peer)
                await peer.wait_quiet()
                audio = np.concatenate([speech_like(1.0), np.zeros(16000, np.int16)])
                sender = asyncio.ensure_future(peer.send_audio(ulaw(audio), dest))
                bye = await a.request_in("BYE", timeout=5)
                a.reply(bye, 200)
                dep = await box.wait()
                sender.cancel()
            finally:
                peer.close()
            assert dep.ended_by == "silence"
            # the silent tail is trimmed (200 ms kept after the last voice)
            assert 0.9 <= dep.duration <= 1.4

    run_on("asyncio", main, 30)


def test_in_dialog_requests_and_info_dtmf(tmp_path: Path) -> None:
    """re-INVITE keeping the codec → 200 with our SDP; a codec change → 488; OPTIONS → 200;
    INFO application/dtmf-relay Signal=# ends the recording like RFC 4733."""

    async def main() -> None:
        async with pbx(tmp_path, greeting=short_greeting(tmp_path)) as (_, ph, box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d, dest, _ = await answered(a, peer)
                a.send(d.in_dialog("INVITE", body=sdp_offer(peer.port)))
                ok = await a.response(200)
                assert answer_of(ok.body) == (dest[1], [0, 101])
                a.send(d.in_dialog("ACK", cseq=d.cseq))
                a.send(d.in_dialog("INVITE", body=sdp_offer(peer.port, formats="8")))
                r = await a.response()
                assert r.status == 488 and "codec" in (r.get("Warning") or "")
                a.send(d.in_dialog("OPTIONS"))
                assert (await a.response()).status == 200
                await peer.wait_quiet()
                await peer.send_audio(ulaw(speech_like(0.5)), dest)
                a.send(
                    d.in_dialog(
                        "INFO",
                        body=b"Signal=#\r\nDuration=160\r\n",
                        content_type="application/dtmf-relay",
                    )
                )
                assert (await a.response(200)).status == 200
                bye = await a.request_in("BYE", timeout=3)
                a.reply(bye, 200)
                dep = await box.wait()
            finally:
                peer.close()
            assert dep.ended_by == "dtmf" and 0.3 <= dep.duration <= 0.7

    run_on("asyncio", main, 30)


def test_lost_packets_become_silence_and_keep_the_timing(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, greeting=short_greeting(tmp_path)) as (_srv, ph, box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d, dest, _ = await answered(a, peer)
                await peer.wait_quiet()
                sample = speech_like(2.0)
                await peer.send_audio(ulaw(sample), dest, drop=frozenset({10, 11, 50}))
                await asyncio.sleep(0.1)
                a.send(d.in_dialog("BYE"))
                await a.response(200)
                dep = await box.wait()
            finally:
                peer.close()
            pcm = np.frombuffer(dep.pcm, "<i2")
            assert len(pcm) == 16000  # 100 packets, 3 lost: still 2.0 s
            assert not pcm[1600:1920].any() and not pcm[8000:8160].any()
            assert pcm[1920:2080].any()
            ref = ulaw_to_pcm(ulaw(sample)).copy()
            ref[1600:1920] = 0
            ref[8000:8160] = 0
            assert np.array_equal(pcm, ref)

    run_on("asyncio", main, 30)


def test_busy_callee_goes_to_voicemail(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, register=("1001", "1002"), greeting=short_greeting(tmp_path)) as (
            srv,
            ph,
            box,
        ):
            a, b = ph["1001"], ph["1002"]
            peer = await RtpPeer.open()
            try:
                d = await a.call("1002", body=sdp_offer(peer.port))
                inv = await b.request_in("INVITE")
                b.reply(inv, 486, tag="b")
                ok = await a.response(200, timeout=5)
                d.confirmed(ok)
                a.send(d.ack())
                await peer.wait_quiet()
                a.send(d.in_dialog("BYE"))
                await a.response(200)
            finally:
                peer.close()
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.extra["voicemail"] == {
                "condition": "busy",
                "ended_by": "bye",
                "seconds": 0.0,
                "deposited": False,
            }
            assert box.deposits == []  # nothing said: nothing stored

    run_on("asyncio", main, 30)


def test_no_answer_timer_goes_to_voicemail(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(
            tmp_path,
            register=("1001", "1002"),
            greeting=short_greeting(tmp_path),
            user_fields={"1002": {"no_answer_timeout": 1}},
        ) as (srv, ph, box):
            a, b = ph["1001"], ph["1002"]
            peer = await RtpPeer.open()
            try:
                d = await a.call("1002", body=sdp_offer(peer.port))
                inv = await b.request_in("INVITE")
                b.reply(inv, 180, tag="b")
                ok = await a.response(200, timeout=5)
                cancel = await b.request_in("CANCEL")
                assert "cause=480" in (cancel.get("Reason") or "")
                b.reply(cancel, 200)
                b.reply(inv, 487, tag="b")
                d.confirmed(ok)
                a.send(d.ack())
                await peer.wait_quiet()
                await peer.send_audio(ulaw(speech_like(0.6)), ("127.0.0.1", answer_of(ok.body)[0]))
                await asyncio.sleep(0.1)
                a.send(d.in_dialog("BYE"))
                await a.response(200)
                dep = await box.wait()
            finally:
                peer.close()
            assert dep.ended_by == "bye" and 0.4 <= dep.duration <= 0.8
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.extra["voicemail"]["condition"] == "no-answer"

    run_on("asyncio", main, 30)


def test_divert_conditions_are_honoured(tmp_path: Path) -> None:
    """Voicemail on for busy only: an offline callee gets the usual 480."""

    async def main() -> None:
        settings = VoicemailSettings(enabled=True, divert=frozenset({"busy"}))
        async with pbx(tmp_path, settings=settings) as (srv, ph, _box):
            await ph["1001"].call("1002", body=sdp_offer(40000))
            assert (await ph["1001"].response()).status == 480
            assert srv.b2bua.voicemail.stats["answered"] == 0

    run_on("asyncio", main, 30)


def test_always_answers_before_any_device_rings(tmp_path: Path) -> None:
    async def main() -> None:
        settings = VoicemailSettings(enabled=True, divert=frozenset({"always"}))
        async with pbx(
            tmp_path,
            register=("1001", "1002"),
            settings=settings,
            greeting=short_greeting(tmp_path),
        ) as (srv, ph, _):
            a, b = ph["1001"], ph["1002"]
            peer = await RtpPeer.open()
            try:
                d, _, _ = await answered(a, peer)
                assert await b.nothing("INVITE", 0.3)  # the registered phone never rang
                a.send(d.in_dialog("BYE"))
                await a.response(200)
            finally:
                peer.close()
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.extra["voicemail"]["condition"] == "always"

    run_on("asyncio", main, 30)


def test_200_retransmitted_until_ack_then_released(tmp_path: Path) -> None:
    """No ACK: the 200 is retransmitted (T1 doubling), then after 64*T1 the call is released."""

    async def main() -> None:
        async with pbx(
            tmp_path, greeting=short_greeting(tmp_path), **{"timers.t1": 0.05, "timers.t2": 0.4}
        ) as (srv, ph, _):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d = await a.call("1002", body=sdp_offer(peer.port))
                ok = await a.response(200)
                d.confirmed(ok)
                bye = await a.request_in("BYE", timeout=6)  # 64*T1 = 3.2 s
                a.reply(bye, 200)
            finally:
                peer.close()
            oks = [
                m
                for m in a.seen
                if isinstance(m, Response) and m.status == 200 and m.call_id == d.call_id
            ]
            assert len(oks) >= 4  # the first 200 and its retransmissions
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.hangup == "system" and rec.extra["voicemail"]["ended_by"] == "no-ack"
            assert srv.b2bua.voicemail.ports.in_use == 0

    run_on("asyncio", main, 30)


def test_no_common_codec_is_488(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path) as (srv, ph, _box):
            a = ph["1001"]
            offer = sdp_offer(40000, formats="18", extra="a=rtpmap:18 G729/8000")
            d = await a.call("1002", body=offer)
            r = await a.response()
            assert r.status == 488
            assert "no common codec" in (r.get("Warning") or "")
            (rec,) = [x for x in await cdrs(srv) if x.call_id == d.call_id]
            assert rec.status == 488 and rec.result == "rejected"

    run_on("asyncio", main, 30)


def test_late_offer_answer_in_ack(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, greeting=short_greeting(tmp_path)) as (_srv, ph, _box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d = await a.call("1002", body=b"")
                ok = await a.response(200, timeout=5)
                _port, formats = answer_of(ok.body)
                assert formats == [0, 8, 101]  # our offer
                d.confirmed(ok)
                answer = sdp_offer(peer.port, formats="8 101")
                a.send(d.ack(body=answer))
                await peer.wait_quiet()
                assert {h[1] & 0x7F for h in peer.headers()} == {8}  # PCMA, as answered
                assert len(peer.packets) == 35  # 0.1 s greeting + 0.6 s beep
                a.send(d.in_dialog("BYE"))
                await a.response(200)
            finally:
                peer.close()

    run_on("asyncio", main, 30)


def test_real_mailbox_stores_the_message(tmp_path: Path) -> None:
    """End to end with the real VoicemailService: the WAV file and the message row."""

    async def main() -> None:
        fields = {"1002": {"extra": {"voicemail": {"enabled": True}}}}
        async with pbx(tmp_path, user_fields=fields, real_box=True) as (srv, ph, _):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d, dest, _ = await answered(a, peer)
                await peer.wait_quiet()
                sample = speech_like(1.0)
                await peer.send_audio(ulaw(sample), dest)
                await asyncio.sleep(0.1)
                a.send(d.in_dialog("BYE"))
                await a.response(200)
                for _ in range(100):
                    msgs = await srv.storage.voicemail.for_user("1002")
                    if msgs:
                        break
                    await asyncio.sleep(0.05)
            finally:
                peer.close()
            (msg,) = msgs
            assert msg.caller == "1001" and msg.call_id == d.call_id
            assert abs(msg.duration - 1.0) <= 0.2
            path = tmp_path / "data" / msg.path
            with wave.open(str(path), "rb") as w:
                assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            assert ncc(pcm, ulaw_to_pcm(ulaw(sample))) > 0.9

    run_on("asyncio", main, 30)


def test_server_stop_deposits_the_recording(tmp_path: Path) -> None:
    async def main() -> None:
        async with pbx(tmp_path, greeting=short_greeting(tmp_path)) as (srv, ph, box):
            a = ph["1001"]
            peer = await RtpPeer.open()
            try:
                d, dest, _ = await answered(a, peer)
                await peer.wait_quiet()
                await peer.send_audio(ulaw(speech_like(0.6)), dest)
                await asyncio.sleep(0.1)
                # what Server.stop() does first for calls: the B2BUA releases them
                await srv.b2bua.close()
                bye = await a.request_in("BYE", timeout=3)
            finally:
                peer.close()
            assert bye.call_id == d.call_id
            (dep,) = box.deposits  # close() waited for the deposit
            assert dep.ended_by == "shutdown" and 0.4 <= dep.duration <= 0.8
            (rec,) = [r for r in await cdrs(srv) if r.call_id == d.call_id]
            assert rec.result == "interrupted" and rec.hangup == "system"

    run_on("asyncio", main, 30)


def test_sipp_caller_streams_audio_into_the_mailbox(tmp_path: Path) -> None:
    """A real peer: sipp places the call and streams a generated audio file as RTP."""
    from sipp import SCENARIOS_DIR, arun_sipp, free_udp_port

    async def main() -> None:
        sample = speech_like(2.0)
        audio = tmp_path / "sample.ulaw"
        audio.write_bytes(ulaw(sample))
        scenario = tmp_path / "voicemail_uac.xml"
        template = (SCENARIOS_DIR / "voicemail_uac_rtp_stream.xml").read_text()
        scenario.write_text(template.replace("@AUDIO@", str(audio)))
        async with pbx(tmp_path, register=(), greeting=short_greeting(tmp_path)) as (srv, _, box):
            pa = free_udp_port()
            await srv.users.update("1001", allow_ips=[f"127.0.0.1:{pa}"])
            r = await arun_sipp(
                f"127.0.0.1:{srv.port('udp')}",
                scenario=scenario,
                calls=1,
                service="1002",
                local_port=pa,
                timeout=20,
                workdir=tmp_path,
                extra=["-key", "caller", "1001"],
            )
            assert r.ok and r.successful == 1, r.describe()
            dep = await box.wait(5)
        assert dep.ended_by == "bye" and dep.caller == "1001"
        assert abs(dep.duration - 2.0) <= 0.2
        assert ncc(np.frombuffer(dep.pcm, "<i2"), ulaw_to_pcm(ulaw(sample))) > 0.9

    run_on("asyncio", main, 40)
