"""Voicemail answering: the B2BUA becomes the UAS of the caller's dialog and records a message.

Theory of operation
-------------------
The B2BUA asks :meth:`VoicemailAnswerer.divert` at the three places where a call to a user
fails, with the condition of :data:`~mss.features.voicemail.DIVERT_CONDITIONS`:

* ``offline``: the dial plan found the user but no device (480), or every device failed to
  answer at all (408, 480, 503);
* ``busy``: every device answered 486 / 600 / 603, or the user is at its call limit (486);
* ``no-answer``: the no-answer timer fired (the ringing legs are already being cancelled);
* ``always``: checked before any device is rung.

When the user's :class:`~mss.features.voicemail.VoicemailSettings` divert that condition, the
call is taken over here and ``divert`` returns True; otherwise the B2BUA goes on as before.

Answering (RFC 3261 §13.3, RFC 3264): the caller's SDP offer is negotiated
(:func:`mss.media.sdp.negotiate`: PCMU or PCMA, telephone-event kept; 488 with a ``Warning``
when nothing fits), an RTP port is bound (503 when the range is exhausted), and the caller gets
a 200 with our answer. An INVITE without SDP gets our offer in the 200 and its answer is read
from the ACK. The 200 is retransmitted (T1 doubling up to T2) until the ACK; with no ACK after
64*T1 the call is released with BYE. The media session
(:class:`~mss.media.session.MediaSession`) plays the greeting
(:meth:`~mss.features.voicemail.VoicemailBox.greeting_path`) and the beep, then records.

In the dialog: BYE ends the recording (``ended_by="bye"``); a re-INVITE or UPDATE that keeps a
G.711 codec is answered 200 with our SDP, otherwise 488; INFO with ``application/dtmf-relay``
(``Signal=#``) works like RFC 4733 ``#``; OPTIONS gets 200; other methods 405.

The end: the recording is handed over as a :class:`~mss.features.voicemail.VoicemailDeposit`
(``await box.deposit(...)`` in a task; nothing is deposited when no voice was recorded), a BYE
goes to the caller when the server ended the call (``#``, maximum length, silence), and the
call record says route ``voicemail``, result ``answered`` and
``extra["voicemail"] = {condition, ended_by, seconds, deposited}``. A clean server stop ends
every recording (``shutdown``), deposits what was recorded and waits for the deposits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastsip.message import Request

from ..features.voicemail import VoicemailBox, VoicemailDeposit, VoicemailSettings
from ..media.audio import PromptCache
from ..media.sdp import (
    Negotiated,
    SdpError,
    SessionDescription,
    answer_sdp,
    negotiate,
    offer_sdp,
    parse_sdp,
)
from ..media.session import FramePacer, MediaSession, Recording, RtpPortAllocator
from .addressing import Target
from .b2bua import Leg, _token, _with_tag, parse_reason
from .core import RequestContext

if TYPE_CHECKING:
    from .b2bua import B2bua, Call

__all__ = ("VoicemailAnswerer", "VoicemailCall", "VoicemailMedia")

log = logging.getLogger("mss.voicemail")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
#: final statuses of every device that mean "could not reach the user" / "the user is busy"
OFFLINE_STATUSES = frozenset((408, 480, 503))
BUSY_STATUSES = frozenset((486, 600, 603))
#: longest wait for the mailbox to store one message
DEPOSIT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class VoicemailMedia:
    """Media options of the answering machine (from ``[media]`` and ``[voicemail]``)."""

    rtp_port_min: int = 10000
    rtp_port_max: int = 20000
    rtp_host: str = ""
    silence_timeout: float = 10.0


class VoicemailCall:
    """One call answered by the voicemail: the caller's leg, the media session, the 2xx."""

    __slots__ = (
        "call",
        "condition",
        "host",
        "leg",
        "number",
        "offer",
        "retransmits",
        "sdp",
        "session",
        "session_id",
        "settings",
    )

    def __init__(
        self,
        call: Call,
        leg: Leg,
        number: str,
        settings: VoicemailSettings,
        condition: str,
        session: MediaSession,
        host: str,
    ) -> None:
        self.call = call
        self.leg = leg
        self.number = number
        self.settings = settings
        self.condition = condition
        self.session = session
        self.host = host
        self.offer: SessionDescription | None = None
        self.sdp = b""
        self.session_id = random.getrandbits(31)
        #: 2xx responses to INVITEs waiting for their ACK, by CSeq: [ctx, response, handle,
        #: interval, deadline]
        self.retransmits: dict[int, list[Any]] = {}

    def __repr__(self) -> str:
        return f"<VoicemailCall {self.call.id} {self.number} {self.session.state}>"


class VoicemailAnswerer:
    """The answering machine of the B2BUA (see the module docstring)."""

    def __init__(self, b2bua: B2bua, box: VoicemailBox, options: VoicemailMedia) -> None:
        self.b2bua = b2bua
        self.box = box
        self.options = options
        self.ports = RtpPortAllocator(options.rtp_port_min, options.rtp_port_max)
        self.prompts = PromptCache()
        self._pacer: FramePacer | None = None
        self._calls: dict[str, VoicemailCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = {
            "answered": 0,
            "refused": 0,
            "deposited": 0,
            "deposit_errors": 0,
            "empty": 0,
            "sent": 0,
            "late": 0,
            "dropped": 0,
        }

    @property
    def active(self) -> int:
        return len(self._calls)

    def media_stats(self) -> dict[str, int]:
        """Greeting packets sent / late / dropped so far, the calls in progress included."""
        out = {key: self.stats[key] for key in ("sent", "late", "dropped")}
        for vc in self._calls.values():
            for key in out:
                out[key] += vc.session.stats[key]
        out["active"] = len(self._calls)
        if self._pacer is not None:
            out.update({f"pacer_{k}": v for k, v in self._pacer.stats.items()})
        return out

    def pacer(self) -> FramePacer:
        if self._pacer is None:
            self._pacer = FramePacer(asyncio.get_running_loop())
        return self._pacer

    # ========================================================================================
    # taking a call over
    # ========================================================================================
    def divert(self, call: Call, condition: str | int) -> bool:
        """Answer ``call`` when its callee's voicemail diverts ``condition``.

        Args:
            call: a call not answered yet.
            condition: ``"no-answer"``, ``"always"``..., or the final status the call failed
                with (:data:`BUSY_STATUSES` → busy, :data:`OFFLINE_STATUSES` → offline).

        Returns:
            True when the call was taken over (answered, or refused with 488/503 here).
        """
        if isinstance(condition, int):
            if condition in BUSY_STATUSES:
                condition = "busy"
            elif condition in OFFLINE_STATUSES:
                condition = "offline"
            else:
                return False
        if call.state not in ("routing", "ringing"):
            return False
        routing = call.routing
        number = routing.callee if routing is not None and routing.callee else call.info.callee
        try:
            settings = self.box.settings_for(number)
        except Exception:
            log.exception("voicemail settings of %s", number)
            return False
        if settings is None or not settings.diverts(condition):
            return False
        try:
            self._answer(call, number, settings, condition)
        except Exception:
            log.exception("voicemail: answering call %s failed", call.id)
            if call.state != "ended":
                caller = call.caller
                call.ctx.respond(500, to_tag=caller.local_tag if caller is not None else None)
                self.b2bua._end(call, status=500, hangup="system", reason="voicemail failed")
        return True

    def _caller_leg(self, call: Call, number: str) -> Leg:
        """The caller's dialog, for a call refused before any device was rung."""
        b = self.b2bua
        ctx = call.ctx
        req = ctx.request
        src = ctx.source
        tag = _token()
        lhost, lport = b.local_address(src.transport, src.host)
        contact = req.contact
        leg = Leg(
            call,
            "caller",
            call_id=req.call_id or "",
            local_tag=tag,
            local=_with_tag(req.get("To") or "", tag),
            remote=req.get("From") or "",
            remote_target=str(contact.uri) if contact is not None else req.uri_text,
            dest=Target(src.transport, src.host, src.port, conn=src.conn, listener=src.listener),
            contact=b._contact(number, src.transport, lhost, lport),
            route_set=[str(r) for r in req.record_routes],
        )
        frm = req.from_
        leg.remote_tag = frm.tag if frm is not None else None
        call.caller = leg
        b._dialogs[(leg.call_id, tag)] = leg
        return leg

    def _answer(self, call: Call, number: str, settings: VoicemailSettings, condition: str) -> None:
        b = self.b2bua
        ctx = call.ctx
        req = ctx.request
        if call.no_answer is not None:
            b.core.clock.cancel(call.no_answer)
            call.no_answer = None
        leg = call.caller or self._caller_leg(call, number)
        clog = call.log
        clog.callee = number
        clog.route = "voicemail"
        clog.extra["voicemail"] = {"condition": condition}
        offer: SessionDescription | None = None
        neg: Negotiated | None = None
        if req.body:
            try:
                offer = parse_sdp(req.body)
                neg = negotiate(offer)
            except SdpError as e:
                self.stats["refused"] += 1
                text = str(e).replace('"', "'")
                ctx.respond(
                    488, headers=[("Warning", f'{e.warning} mss "{text}"')], to_tag=leg.local_tag
                )
                b._end(call, status=488, reason=f"voicemail: {text}")
                return
        src = ctx.source
        host = self.options.rtp_host or b.local_address(src.transport, src.host)[0]
        try:
            sock = self.ports.open(host)
        except OSError as e:
            self.stats["refused"] += 1
            log.warning("voicemail for %s: %s", number, e)
            ctx.respond(503, "Service Unavailable (no RTP port)", to_tag=leg.local_tag)
            b._end(call, status=503, hangup="system", reason="voicemail: no RTP port")
            return
        session = MediaSession(
            loop=asyncio.get_running_loop(),
            pacer=self.pacer(),
            sock=sock,
            max_seconds=float(settings.max_seconds),
            silence_timeout=self.options.silence_timeout,
            on_done=lambda rec: None,
            on_close=self.ports.release,
            wall=b.wall,
        )
        vc = VoicemailCall(call, leg, number, settings, condition, session, host)
        session.on_done = partial(self._recorded, vc)
        vc.offer = offer
        if offer is not None and neg is not None:
            vc.sdp = answer_sdp(offer, neg, host=host, port=session.port, session_id=vc.session_id)
        else:
            vc.sdp = offer_sdp(host=host, port=session.port, session_id=vc.session_id)
        call.voicemail = vc
        call.state = "answered"
        leg.state = "answered"
        self._calls[call.id] = vc
        self.stats["answered"] += 1
        clog.answer_at = b.wall()
        clog.status = 200
        clog.callee_addr = "voicemail"
        if b.cdr is not None:
            b.cdr.opened(clog)
        status = getattr(b, "_status", None)
        if status is not None:
            status(call, "answered")
        log.info("call %s to %s: voicemail answers (%s)", call.id, number, condition)
        self._send_2xx(vc, ctx)
        if neg is not None:
            session.start(neg, self._prompt(number, neg))

    def _prompt(self, number: str, neg: Negotiated) -> list[bytes]:
        path: Path | None
        try:
            path = self.box.greeting_path(number)
        except Exception:
            log.exception("voicemail greeting of %s", number)
            path = None
        return self.prompts.frames(path, neg.static_type)

    # ========================================================================================
    # 2xx until ACK (RFC 3261 §13.3.1.4)
    # ========================================================================================
    def _send_2xx(self, vc: VoicemailCall, ctx: RequestContext) -> None:
        resp = ctx.respond(
            200,
            headers=[("Contact", vc.leg.contact), ("Allow", ALLOW)],
            body=vc.sdp,
            content_type="application/sdp",
            to_tag=vc.leg.local_tag,
        )
        cseq = ctx.request.cseq
        n = cseq.seq if cseq is not None else 0
        clock = self.b2bua.core.clock
        timers = self.b2bua._timers()
        entry: list[Any] = [ctx, resp, None, timers.t1, clock.now() + timers.b]
        vc.retransmits[n] = entry
        delay = timers.b if ctx.source.reliable else timers.t1
        entry[2] = clock.call_later(delay, self._retransmit, vc, n)

    def _retransmit(self, vc: VoicemailCall, n: int) -> None:
        entry = vc.retransmits.get(n)
        if entry is None:
            return
        ctx, resp, _, interval, deadline = entry
        clock = self.b2bua.core.clock
        if clock.now() >= deadline - 1e-3:
            del vc.retransmits[n]
            log.info("voicemail call %s: no ACK for the 2xx", vc.call.id)
            self._hang_up(vc, "no-ack")
            return
        ctx.send(resp)
        interval = min(interval * 2, self.b2bua._timers().t2)
        entry[3] = interval
        entry[2] = clock.call_later(
            min(interval, max(0.0, deadline - clock.now())), self._retransmit, vc, n
        )

    def _stop_retransmits(self, vc: VoicemailCall) -> None:
        clock = self.b2bua.core.clock
        for entry in vc.retransmits.values():
            if entry[2] is not None:
                clock.cancel(entry[2])
        vc.retransmits.clear()

    def on_ack(self, leg: Leg, request: Request) -> None:
        """The ACK of one of our 2xx (B2bua.on_ack found the leg of a voicemail call)."""
        vc = leg.call.voicemail
        if vc is None:
            return
        cseq = request.cseq
        entry = vc.retransmits.pop(cseq.seq if cseq is not None else -1, None)
        if entry is None:
            return  # a retransmitted ACK
        if entry[2] is not None:
            self.b2bua.core.clock.cancel(entry[2])
        session = vc.session
        if session.state != "idle" or leg.call.state == "ended":
            return
        # late offer: the answer to our offer is in the ACK (RFC 3264 §4, RFC 3261 §13.2.1)
        try:
            neg = negotiate(parse_sdp(request.body)) if request.body else None
        except SdpError as e:
            log.info("voicemail call %s: unusable SDP answer in the ACK (%s)", leg.call.id, e)
            neg = None
        if neg is None:
            self._hang_up(vc, "no-sdp")
            return
        session.start(neg, self._prompt(vc.number, neg))

    # ========================================================================================
    # requests inside the dialog
    # ========================================================================================
    def on_request(self, ctx: RequestContext, leg: Leg) -> None:
        """A request on the caller's dialog of a voicemail call."""
        vc = leg.call.voicemail
        req = ctx.request
        method = req.method
        if vc is None:
            ctx.respond(481)
            return
        if method == "BYE":
            ctx.respond(200)
            leg.state = "ended"
            cause, text = parse_reason(req.get("Reason"))
            clog = leg.call.log
            if cause is not None:
                clog.cause = cause
                clog.reason = text
            vc.session.stop("bye")
            return
        if method in ("INVITE", "UPDATE"):
            c = req.contact
            if c is not None:
                leg.remote_target = str(c.uri)  # target refresh (§12.2.2)
            if req.body:
                try:
                    neg = negotiate(parse_sdp(req.body))
                except SdpError as e:
                    text = str(e).replace('"', "'")
                    ctx.respond(488, headers=[("Warning", f'{e.warning} mss "{text}"')])
                    return
                current = vc.session.neg
                if current is not None and neg.static_type != current.static_type:
                    ctx.respond(488, headers=[("Warning", '305 mss "the codec cannot change"')])
                    return
            if method == "INVITE":
                self._send_2xx(vc, ctx)
            else:
                ctx.respond(
                    200,
                    headers=[("Contact", leg.contact)],
                    body=vc.sdp if req.body else b"",
                    content_type="application/sdp" if req.body else None,
                )
            return
        if method == "INFO":
            ctype = (req.content_type or "").lower()
            if ctype in ("application/dtmf-relay", "application/dtmf"):
                digit = _info_digit(req.body, ctype)
                if digit:
                    vc.session.on_digit(digit)
            ctx.respond(200)
            return
        if method == "OPTIONS":
            ctx.respond(200, headers=[("Allow", ALLOW), ("Accept", "application/sdp")])
            return
        if method == "PRACK":
            ctx.respond(481)  # we send no reliable provisional responses
            return
        ctx.respond(405, headers=[("Allow", ALLOW)])

    # ========================================================================================
    # the end
    # ========================================================================================
    def _hang_up(self, vc: VoicemailCall, reason: str) -> None:
        """The server ends the call (no ACK, unusable SDP): stops the session with ``reason``."""
        vc.session.stop(reason)
        if vc.call.state != "ended":  # the session never started: nothing ended the call
            self._release(vc, reason)

    def _send_bye(self, vc: VoicemailCall, reason: str) -> None:
        leg = vc.leg
        if leg.byed or leg.state == "ended":
            return
        leg.byed = True
        leg.state = "ended"
        b = self.b2bua
        text = f"voicemail {reason}".replace('"', "")
        bye = b._request(leg, "BYE", headers=[("Reason", f'Q.850;cause=16;text="{text}"')])
        b.core.send_request(bye, leg.dest)

    def _release(self, vc: VoicemailCall, ended_by: str) -> None:
        call = vc.call
        self._calls.pop(call.id, None)
        self._stop_retransmits(vc)
        if call.state == "ended":
            return
        if ended_by == "bye":
            reason = call.log.reason or "normal clearing"
            self.b2bua._end(call, hangup="caller", reason=reason)
            return
        self._send_bye(vc, ended_by)
        self.b2bua._end(
            call,
            hangup="system",
            reason=f"voicemail: {ended_by}",
            result="interrupted" if ended_by == "shutdown" else None,
        )

    def _recorded(self, vc: VoicemailCall, rec: Recording) -> None:
        """The media session ended (its ``on_done``): CDR, BYE, deposit."""
        try:
            stats = self.stats
            for key in ("sent", "late", "dropped"):
                stats[key] += rec.stats.get(key, 0)
            call = vc.call
            info = call.log.extra.get("voicemail")
            if not isinstance(info, dict):
                info = call.log.extra["voicemail"] = {}
            info.update(
                condition=vc.condition,
                ended_by=rec.ended_by,
                seconds=rec.duration,
                deposited=rec.duration > 0,
            )
            self._release(vc, rec.ended_by)
            if rec.duration <= 0:
                stats["empty"] += 1
                return
            frm = call.ctx.request.from_
            display = (frm.display or "").strip('"') if frm is not None else ""
            deposit = VoicemailDeposit(
                user=vc.number,
                caller=call.info.caller,
                caller_display=display,
                call_id=call.info.call_id,
                started_at=rec.started_at,
                duration=rec.duration,
                pcm=rec.pcm,
                ended_by=rec.ended_by,
            )
            task = asyncio.get_running_loop().create_task(self._deposit(deposit))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("voicemail call %s: ending failed", vc.call.id)

    async def _deposit(self, deposit: VoicemailDeposit) -> None:
        try:
            msg_id = await asyncio.wait_for(self.box.deposit(deposit), DEPOSIT_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats["deposit_errors"] += 1
            log.exception(
                "voicemail: storing the message of %s for %s failed", deposit.caller, deposit.user
            )
            return
        self.stats["deposited"] += 1
        log.info(
            "voicemail: message %s for %s from %s (%.1f s, %s)",
            msg_id,
            deposit.user,
            deposit.caller,
            deposit.duration,
            deposit.ended_by,
        )

    def on_end(self, call: Call) -> None:
        """``B2bua._end`` of a voicemail call (whatever ended it): stop its media."""
        vc = call.voicemail
        if vc is not None and vc.session.state != "done":
            vc.session.stop("shutdown")

    async def close(self, timeout: float = 10.0) -> None:
        """Server stopping: end every recording (``shutdown``) and wait for the deposits."""
        for vc in list(self._calls.values()):
            try:
                vc.session.stop("shutdown")
                if vc.call.state != "ended":
                    self._release(vc, "shutdown")
            except Exception:
                log.exception("voicemail: stopping call %s", vc.call.id)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if self._pacer is not None:
            self._pacer.close()


def _info_digit(body: bytes, ctype: str) -> str | None:
    """The key of an INFO DTMF body (``Signal=#`` for dtmf-relay, the bare key otherwise)."""
    try:
        text = body.decode("ascii", "replace")
    except Exception:
        return None
    if ctype == "application/dtmf":
        key = text.strip()[:1]
        return key or None
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip().lower() == "signal":
            key = value.strip()[:1]
            return key or None
    return None
