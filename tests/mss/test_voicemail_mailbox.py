"""Voicemail, the mailbox side (issue 10): settings, deposits, the durable SMTP outbox, MWI,
management (CLI and REST API).

Real peers on loopback: aiosmtpd is the SMTP server (in the test's loop; plain, STARTTLS and
implicit TLS with a trustme CA), a UDP SIP UAC and sipp subscribe to ``message-summary`` on a
real mss Server and answer its NOTIFYs, the CLI runs as ``python -m mss`` in another process
(its changes reach the server through the change feed), and the API is called over HTTP. Every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import math
import struct
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SmtpProtocol
from serverutil import Uac, mss_cli, running
from sipp import free_tcp_port

from fastsip.message import Request, Response, make_response
from fastsip.parser import parse_datagram
from mss import cli
from mss.config import SmtpConfig
from mss.features.users import UserDirectory
from mss.features.voicemail import (
    VoicemailDeposit,
    VoicemailError,
    VoicemailService,
    check_changes,
    default_greeting,
    load_greeting,
    parse_settings,
    update_settings,
)
from mss.storage import MemoryStorage, SqliteStorage, Storage

T0 = 1_700_000_000.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def tone(
    seconds: float, freq: float = 440.0, rate: int = 8000, channels: int = 1, width: int = 2
) -> bytes:
    """A WAV file holding a sine tone."""
    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        v = int(12000 * math.sin(2 * math.pi * freq * i / rate))
        if width == 1:
            sample = struct.pack("<B", (v >> 8) + 128)
        else:
            sample = struct.pack("<h", v)
        frames += sample * channels
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def pcm(seconds: float) -> bytes:
    with wave.open(io.BytesIO(tone(seconds)), "rb") as w:
        return w.readframes(w.getnframes())


def deposit_for(user: str, seconds: float = 0.5, caller: str = "1002") -> VoicemailDeposit:
    return VoicemailDeposit(
        user=user,
        caller=caller,
        caller_display="Bob Caller",
        call_id="cid@x",
        started_at=time.time(),
        duration=seconds,
        pcm=pcm(seconds),
        ended_by="bye",
    )


class SmtpHandler:
    """aiosmtpd handler: records each accepted message; RCPT answered ``rcpt_reply`` if set."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


async def smtp_server(handler: SmtpHandler, port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SmtpProtocol(handler, hostname="smtp.test"), "127.0.0.1", port
    )


async def until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def parse_mail(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=email.policy.default)


async def with_directory(
    body: Callable[[Storage, UserDirectory], Awaitable[None]], storage: Storage | None = None
) -> None:
    storage = storage or MemoryStorage()
    async with storage:
        users = UserDirectory(storage, realm="mss")
        await users.load()
        await body(storage, users)


# --------------------------------------------------------------------------------------------
# settings and greetings
# --------------------------------------------------------------------------------------------


def test_settings_validation_names_the_field() -> None:
    cases = [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a b@example.test"}, "email"),
        ({"divert": "busy,sometimes"}, "vm_divert"),
        ({"divert": "always,busy"}, "vm_divert"),
        ({"divert": ""}, "vm_divert"),
        ({"max_seconds": 0}, "vm_max_length"),
        ({"max_seconds": 99999}, "vm_max_length"),
        ({"pin": "12a4"}, "vm_pin"),
        ({"pin": "12"}, "vm_pin"),
        ({"greeting": b"RIFF nonsense"}, "vm_greeting"),
        ({"greeting": b""}, "vm_greeting"),
        ({"greeting": "some-file.wav"}, "vm_greeting"),
    ]
    for given, field in cases:
        with pytest.raises(VoicemailError) as info:
            check_changes(**given)
        assert info.value.field == field, given
        assert str(info.value).startswith(f"{field}: ")
    ok = check_changes(
        enabled=True, email=" a@example.test ", divert="busy, offline", max_seconds=60, pin="1234"
    )
    assert ok == {
        "enabled": True,
        "email": "a@example.test",
        "divert": frozenset({"busy", "offline"}),
        "max_seconds": 60,
        "pin": "1234",
    }


@pytest.mark.parametrize(
    ("rate", "channels", "width"), [(8000, 1, 2), (16000, 2, 2), (44100, 1, 2), (8000, 1, 1)]
)
def test_greeting_is_converted_to_8khz_16bit_mono(rate: int, channels: int, width: int) -> None:
    src = tone(1.0, rate=rate, channels=channels, width=width)
    out = load_greeting(src)
    with wave.open(io.BytesIO(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert abs(w.getnframes() - 8000) <= 2
        samples = struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes()))
    # still the 440 Hz tone: its energy is kept (not silence, not clipped noise)
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    assert 6000 < rms < 10000, rms


def test_settings_stored_in_user_extra_and_read_from_memory(tmp_path: Path) -> None:
    async def body(storage: Storage, users: UserDirectory) -> None:
        await users.add("1001", "secret1")
        service = VoicemailService(storage, users, data_dir=tmp_path)
        assert service.settings_for("1001") is None  # voicemail off by default
        assert service.settings_for("nobody") is None
        assert service.greeting_path("1001") == default_greeting()
        assert default_greeting().name == "voicemail_greeting.wav"
        new = await update_settings(
            users,
            "1001",
            data_dir=tmp_path,
            enabled=True,
            email="a@example.test",
            divert="no-answer,busy",
            greeting=tone(0.5, rate=16000),
            max_seconds=30,
            pin="4321",
        )
        stored = (await storage.users.get("1001")).extra["voicemail"]  # type: ignore[union-attr]
        assert stored == {
            "enabled": True,
            "email": "a@example.test",
            "divert": ["no-answer", "busy"],
            "greeting": "voicemail/1001/greeting.wav",
            "max_seconds": 30,
            "pin": "4321",
        }
        assert parse_settings({"voicemail": stored}) == new
        got = service.settings_for("1001")
        assert got is not None and got.diverts("busy") and not got.diverts("offline")
        assert got.max_seconds == 30 and got.email == "a@example.test"
        greeting = service.greeting_path("1001")
        assert greeting == tmp_path / "voicemail" / "1001" / "greeting.wav"
        with wave.open(str(greeting), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        # a bad value writes nothing
        with pytest.raises(VoicemailError, match="email"):
            await update_settings(users, "1001", data_dir=tmp_path, email="nope", max_seconds=50)
        assert service.settings_for("1001").max_seconds == 30  # type: ignore[union-attr]
        # back to the packaged greeting: the custom file is removed
        await update_settings(users, "1001", data_dir=tmp_path, greeting="default", divert="always")
        assert service.greeting_path("1001") == default_greeting()
        assert not greeting.exists()
        assert service.settings_for("1001").diverts("offline")  # type: ignore[union-attr]
        with pytest.raises(VoicemailError, match="number"):
            await update_settings(users, "9999", data_dir=tmp_path, enabled=True)

    asyncio.run(with_directory(body))


def test_cli_user_set_voicemail_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert cli.main(["user", "add", "1001", "--password", "secret1", *data]) == 0
    greeting = tmp_path / "hello.wav"
    greeting.write_bytes(tone(0.5, rate=22050, channels=2))
    assert (
        cli.main(
            [
                "user",
                "set",
                "1001",
                "--voicemail",
                "on",
                "--email",
                "bob@example.test",
                "--vm-divert",
                "busy,offline",
                "--vm-greeting",
                str(greeting),
                "--vm-max-length",
                "90",
                "--vm-pin",
                "2468",
                *data,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli.main(["voicemail", "list", "1001", "--json", *data]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "settings": {
            "enabled": True,
            "email": "bob@example.test",
            "divert": ["busy", "offline"],
            "greeting": "voicemail/1001/greeting.wav",
            "max_seconds": 90,
            "pin": "2468",
        },
        "messages": [],
    }
    assert cli.main(["user", "list", "--json", *data]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["voicemail"] == {**out["settings"], "pin": True}  # the PIN itself is not shown
    for args, field in [
        (["--email", "bob"], "email"),
        (["--vm-divert", "weekends"], "vm_divert"),
        (["--vm-max-length", "0"], "vm_max_length"),
        (["--vm-pin", "abcd"], "vm_pin"),
        (["--vm-greeting", str(tmp_path / "missing.wav")], "vm_greeting"),
        (["--vm-greeting", str(tmp_path / "mss.sqlite3")], "vm_greeting"),
    ]:
        assert cli.main(["user", "set", "1001", *args, *data]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"mss: error: {field}: "), err
    # user add with a bad voicemail option adds nothing
    assert cli.main(["user", "add", "1003", "--password", "secret3", "--email", "x", *data]) == 2
    assert "email: " in capsys.readouterr().err
    assert cli.main(["user", "set", "1003", "--voicemail", "on", *data]) == 2
    assert "number: no user 1003" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# deposits and e-mail
# --------------------------------------------------------------------------------------------


def test_deposit_stores_wav_and_emails_it(tmp_path: Path) -> None:
    async def body(storage: Storage, users: UserDirectory) -> None:
        handler = SmtpHandler()
        server = await smtp_server(handler)
        port = server.sockets[0].getsockname()[1]
        await users.add("1001", "secret1")
        await update_settings(
            users, "1001", data_dir=tmp_path, enabled=True, email="alice@example.test"
        )
        smtp = SmtpConfig(
            host="127.0.0.1", port=port, security="none", from_address="pbx@example.test", timeout=5
        )
        service = VoicemailService(storage, users, data_dir=tmp_path, smtp=smtp)
        seen: list[tuple[str, int, int]] = []
        service.listeners.append(lambda user, new, old: seen.append((user, new, old)))
        await service.load()
        service.start()
        try:
            dep = deposit_for("1001", 0.5)
            msg_id = await service.deposit(dep)
            assert seen == [("1001", 1, 0)]
            record = await storage.voicemail.get(msg_id)
            assert record is not None and record.caller == "1002" and record.duration == 0.5
            assert record.path == f"voicemail/1001/{msg_id}.wav"
            wav_path = tmp_path / record.path
            with wave.open(str(wav_path), "rb") as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
                assert w.readframes(w.getnframes()) == dep.pcm
            await until(lambda: len(handler.messages) == 1)
            mail = parse_mail(handler.messages[0])
            assert mail["To"] == "alice@example.test" and mail["From"] == "pbx@example.test"
            assert "Bob Caller" in mail["Subject"] and "1002" in mail["Subject"]
            text = mail.get_body(("plain",)).get_content()
            assert (
                "Caller:   Bob Caller <1002>" in text
                and "Duration: 0.5 s" in text
                and "Time:" in text
            )
            attachment = next(mail.iter_attachments())
            assert attachment.get_content_type() == "audio/wav"
            assert attachment.get_content() == wav_path.read_bytes()

            async def sent() -> bool:
                m = await storage.voicemail.mail(msg_id)
                return m is not None and m.state == "sent"

            await until(sent)
            assert service.stats["mailed"] == 1
        finally:
            await service.stop()
            server.close()
            await server.wait_closed()

    asyncio.run(with_directory(body))


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_starttls_and_implicit_tls(tmp_path: Path, security: str) -> None:
    """aiosmtpd with a certificate from a throw-away CA (trustme): STARTTLS (required by the
    server) or implicit TLS; the client verifies the certificate against ``[smtp] ca_file``
    and refuses (temporary failure, message kept) without it."""
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def body(storage: Storage, users: UserDirectory) -> None:
        handler = SmtpHandler()
        loop = asyncio.get_running_loop()
        if security == "starttls":
            server = await loop.create_server(
                lambda: SmtpProtocol(
                    handler, hostname="smtp.test", tls_context=server_ctx, require_starttls=True
                ),
                "127.0.0.1",
                0,
            )
        else:
            server = await loop.create_server(
                lambda: SmtpProtocol(handler, hostname="smtp.test"), "127.0.0.1", 0, ssl=server_ctx
            )
        port = server.sockets[0].getsockname()[1]
        await users.add("1001", "secret1")
        await update_settings(
            users, "1001", data_dir=tmp_path, enabled=True, email="a@example.test"
        )
        untrusted = VoicemailService(
            storage,
            users,
            data_dir=tmp_path,
            smtp=SmtpConfig(host="127.0.0.1", port=port, security=security, timeout=5),
        )  # type: ignore[arg-type]
        try:
            msg_id = await untrusted.deposit(deposit_for("1001"))
            assert await untrusted.send_due() == 0
            mail = await storage.voicemail.mail(msg_id)
            assert (
                mail is not None
                and mail.state == "queued"
                and "CERTIFICATE_VERIFY_FAILED" in mail.last_error
            )
            assert handler.messages == []
            trusted = VoicemailService(
                storage,
                users,
                data_dir=tmp_path,
                smtp=SmtpConfig(
                    host="127.0.0.1",
                    port=port,
                    security=security,
                    timeout=5,  # type: ignore[arg-type]
                    ca_file=str(ca_file),
                ),
            )
            await storage.voicemail.update_mail(replace(mail, next_try=0.0))
            assert await trusted.send_due() == 1
            assert len(handler.messages) == 1
            attachment = next(parse_mail(handler.messages[0]).iter_attachments())
            assert (
                attachment.get_content()
                == (tmp_path / "voicemail" / "1001" / f"{msg_id}.wav").read_bytes()
            )
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(with_directory(body))


def test_permanent_smtp_failure_is_recorded_and_visible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def body(storage: Storage, users: UserDirectory) -> str:
        handler = SmtpHandler()
        handler.rcpt_reply = "550 5.1.1 No such user here"
        server = await smtp_server(handler)
        port = server.sockets[0].getsockname()[1]
        await users.add("1001", "secret1")
        await update_settings(
            users, "1001", data_dir=tmp_path, enabled=True, email="gone@example.test"
        )
        service = VoicemailService(
            storage,
            users,
            data_dir=tmp_path,
            smtp=SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=5),
        )
        service.start()
        try:
            msg_id = await service.deposit(deposit_for("1001"))

            async def failed() -> bool:
                m = await storage.voicemail.mail(msg_id)
                return m is not None and m.state == "failed"

            await until(failed)
            mail = await storage.voicemail.mail(msg_id)
            assert mail is not None and mail.attempts == 1 and mail.last_error.startswith("550")
            assert handler.messages == []
            # not retried: still one attempt a moment later
            await asyncio.sleep(0.3)
            assert (await storage.voicemail.mail(msg_id)).attempts == 1  # type: ignore[union-attr]
            # retry-mail after the mailbox is fixed: delivered
            handler.rcpt_reply = None
            await service.retry_mail("1001", msg_id)
            await until(lambda: len(handler.messages) == 1)
            return msg_id
        finally:
            await service.stop()
            server.close()
            await server.wait_closed()

    holder: list[str] = []

    async def first(storage: Storage, users: UserDirectory) -> None:
        holder.append(await body(storage, users))

    asyncio.run(with_directory(first, SqliteStorage(tmp_path / "mss.sqlite3")))
    msg_id = holder[0]
    # the failure was visible in `mss voicemail list` before the retry; after it: sent
    assert cli.main(["voicemail", "list", "1001", "--json", "--data-dir", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)["messages"]
    assert [r["id"] for r in rows] == [msg_id] and rows[0]["email"]["state"] == "sent"


def test_failure_visible_in_cli_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def body(storage: Storage, users: UserDirectory) -> None:
        handler = SmtpHandler()
        handler.rcpt_reply = "550 5.1.1 No such user here"
        server = await smtp_server(handler)
        port = server.sockets[0].getsockname()[1]
        await users.add("1001", "secret1")
        await update_settings(
            users, "1001", data_dir=tmp_path, enabled=True, email="gone@example.test"
        )
        service = VoicemailService(
            storage,
            users,
            data_dir=tmp_path,
            smtp=SmtpConfig(host="127.0.0.1", port=port, security="none", timeout=5),
        )
        try:
            msg_id = await service.deposit(deposit_for("1001"))
            assert await service.send_due() == 0
            assert (await storage.voicemail.mail(msg_id)).state == "failed"  # type: ignore[union-attr]
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(with_directory(body, SqliteStorage(tmp_path / "mss.sqlite3")))
    assert cli.main(["voicemail", "list", "1001", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "failed to gone@example.test (1 attempts: 550 5.1.1 No such user here)" in out


def test_unreachable_smtp_pauses_the_queue_instead_of_trying_every_message(tmp_path: Path) -> None:
    async def body(storage: Storage, users: UserDirectory) -> None:
        port = free_tcp_port()  # nothing listens there yet
        await users.add("1001", "secret1")
        await update_settings(
            users, "1001", data_dir=tmp_path, enabled=True, email="a@example.test"
        )
        service = VoicemailService(
            storage,
            users,
            data_dir=tmp_path,
            smtp=SmtpConfig(
                host="127.0.0.1", port=port, security="none", timeout=3, retry_min=30, retry_max=60
            ),
        )
        first = await service.deposit(deposit_for("1001"))
        second = await service.deposit(deposit_for("1001"))
        assert await service.send_due() == 0
        m1, m2 = await storage.voicemail.mail(first), await storage.voicemail.mail(second)
        assert m1 is not None and m2 is not None
        assert (m1.state, m1.attempts, m2.state, m2.attempts) == ("queued", 1, "queued", 0)
        assert m1.next_try >= time.time() + 25
        assert m1.last_error.startswith("SMTPConnectError: ") and str(port) in m1.last_error
        assert service.paused_until >= time.time() + 25
        assert await service.send_due() == 0  # paused: nothing tried
        assert (await storage.voicemail.mail(second)).attempts == 0  # type: ignore[union-attr]
        # the SMTP server comes up; once the pause is over the waiting message goes out
        handler = SmtpHandler()
        smtp = await smtp_server(handler, port)
        try:
            service.paused_until = 0.0
            assert await service.send_due() == 1
            assert len(handler.messages) == 1
            assert (await storage.voicemail.mail(second)).state == "sent"  # type: ignore[union-attr]
            assert (await storage.voicemail.mail(first)).state == "queued"  # type: ignore[union-attr]
        finally:
            smtp.close()
            await smtp.wait_closed()

    asyncio.run(with_directory(body))


def test_smtp_outage_and_server_restart_lose_nothing(tmp_path: Path) -> None:
    """SMTP down: the message waits (retried with backoff); mss restarts; SMTP comes up: the
    e-mail arrives with the same WAV."""
    port = free_tcp_port()
    overrides = {
        "smtp.host": "127.0.0.1",
        "smtp.port": port,
        "smtp.security": "none",
        "smtp.retry_min": 0.2,
        "smtp.retry_max": 0.4,
        "smtp.timeout": 3,
    }

    async def main() -> None:
        async with running(tmp_path, **overrides) as server:
            assert server.users is not None and server.voicemail is not None
            await server.users.add("1001", "secret1")
            await update_settings(
                server.users, "1001", data_dir=tmp_path, enabled=True, email="a@example.test"
            )
            msg_id = await server.voicemail.deposit(deposit_for("1001", 1.0))

            async def retried() -> bool:
                m = await server.storage.voicemail.mail(msg_id)  # type: ignore[union-attr]
                return m is not None and m.attempts >= 2

            await until(retried)
            mail = await server.storage.voicemail.mail(msg_id)  # type: ignore[union-attr]
            assert mail is not None and mail.state == "queued" and mail.last_error
        # server stopped; the SMTP server comes up; a new server process picks the row up
        handler = SmtpHandler()
        smtp = await smtp_server(handler, port)
        try:
            async with running(tmp_path, **overrides) as server:
                await until(lambda: len(handler.messages) == 1)
                attachment = next(parse_mail(handler.messages[0]).iter_attachments())
                assert (
                    attachment.get_content()
                    == (tmp_path / "voicemail" / "1001" / f"{msg_id}.wav").read_bytes()
                )

                async def sent() -> bool:
                    m = await server.storage.voicemail.mail(msg_id)  # type: ignore[union-attr]
                    return m is not None and m.state == "sent"

                await until(sent)
            assert len(handler.messages) == 1
        finally:
            smtp.close()
            await smtp.wait_closed()

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# MWI (RFC 3842) against a real server
# --------------------------------------------------------------------------------------------


class MwiPhone:
    """A UAC that subscribes to message-summary and answers NOTIFYs with 200."""

    def __init__(self, uac: Uac, user: str, password: str) -> None:
        self.uac = uac
        self.user = user
        self.password = password
        self.ruri = f"sip:{user}@example.test"
        host, port = uac.client.addr
        self.contact = f"<sip:{user}@{host}:{port}>"
        self.to_tag = ""

    def _headers(self, event: str, expires: int) -> list[tuple[str, str]]:
        return [
            ("Event", event),
            ("Expires", str(expires)),
            ("Accept", "application/simple-message-summary"),
        ]

    async def subscribe(
        self, expires: int = 600, event: str = "message-summary", account: str | None = None
    ) -> Response:
        ruri = f"sip:{account}@example.test" if account else self.ruri
        first = await self.uac.send(
            self.uac.request(
                "SUBSCRIBE",
                account or self.user,
                uri=ruri,
                contact=self.contact,
                headers=self._headers(event, expires),
                from_user=self.user,
            )
        )
        if first.status != 401:
            return first
        resp = await self.uac.answer(
            first,
            "SUBSCRIBE",
            account or self.user,
            self.password,
            uri=ruri,
            contact=self.contact,
            headers=self._headers(event, expires),
            from_user=self.user,
            username=self.user,
        )
        if resp.status == 200:
            assert resp.to is not None and resp.to.tag
            self.to_tag = resp.to.tag
        return resp

    async def unsubscribe(self) -> Response:
        data = self.uac.request(
            "SUBSCRIBE",
            self.user,
            uri=self.ruri,
            contact=self.contact,
            headers=self._headers("message-summary", 0),
        )
        data = data.replace(
            f"To: <{self.ruri}>".encode(), f"To: <{self.ruri}>;tag={self.to_tag}".encode()
        )
        return await self.uac.send(data)

    async def notify(self, timeout: float = 5.0) -> tuple[Request, dict[str, str]]:
        """The next NOTIFY (answered 200) and its body's fields."""
        while True:
            msg = parse_datagram(await self.uac.client.recv(timeout))
            if isinstance(msg, Request) and msg.method == "NOTIFY":
                self.uac.client.send(bytes(make_response(msg, 200)), self.uac.server)
                fields = {}
                for line in msg.body.decode().splitlines():
                    name, _, value = line.partition(":")
                    fields[name.strip()] = value.strip()
                return msg, fields


def test_mwi_subscribe_notify_on_deposit_read_delete_and_unsubscribe(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as server:
            assert (
                server.users is not None and server.voicemail is not None and server.mwi is not None
            )
            await server.users.add("1001", "secret1")
            await server.users.add("1002", "secret2")
            await update_settings(server.users, "1001", data_dir=tmp_path, enabled=True)
            phone = MwiPhone(await Uac.open(server.port("udp")), "1001", "secret1")
            try:
                bad = await phone.subscribe(event="presence")
                assert bad.status == 489 and bad.get("Allow-Events") == "message-summary"
                # another user's mailbox, or one that does not exist: 403 alike
                assert (await phone.subscribe(account="1002")).status == 403
                assert (await phone.subscribe(account="4444")).status == 403
                ok = await phone.subscribe(expires=600)
                assert ok.status == 200 and ok.get("Expires") == "600"
                notify, body = await phone.notify()
                assert notify.get("Event") == "message-summary"
                assert notify.get("Content-Type") == "application/simple-message-summary"
                state = notify.get("Subscription-State") or ""
                assert (
                    state.startswith("active;expires=") and 590 <= int(state.split("=")[1]) <= 600
                )
                assert body == {
                    "Messages-Waiting": "no",
                    "Message-Account": "sip:1001@example.test",
                    "Voice-Message": "0/0 (0/0)",
                }
                assert notify.call_id == phone.uac.call_id and notify.from_ is not None
                assert notify.from_.tag == phone.to_tag

                msg_id = await server.voicemail.deposit(deposit_for("1001"))
                _, body = await phone.notify()
                assert body["Messages-Waiting"] == "yes" and body["Voice-Message"] == "1/0 (0/0)"

                # marked read by the CLI in another process: through the change feed
                out = await asyncio.to_thread(
                    mss_cli, "voicemail", "mark-read", "1001", msg_id, data_dir=tmp_path
                )
                assert "marked read" in out.stdout
                _, body = await phone.notify()
                assert body["Messages-Waiting"] == "no" and body["Voice-Message"] == "0/1 (0/0)"

                await server.voicemail.delete("1001", msg_id)
                _, body = await phone.notify()
                assert body["Messages-Waiting"] == "no" and body["Voice-Message"] == "0/0 (0/0)"
                assert not (tmp_path / "voicemail" / "1001" / f"{msg_id}.wav").exists()

                bye = await phone.unsubscribe()
                assert bye.status == 200 and bye.get("Expires") == "0"
                last, _ = await phone.notify()
                assert (last.get("Subscription-State") or "").startswith("terminated")
                assert server.mwi.subscriptions("1001") == []
                assert await phone.uac.client.nothing(0.3)
            finally:
                phone.uac.close()

    asyncio.run(main())


def test_call_into_voicemail_is_emailed_and_lights_the_lamp(tmp_path: Path) -> None:
    """The whole story: 1002 is offline with voicemail and e-mail on, its phone subscribed to
    MWI; 1001 calls and speaks; the e-mail with the recorded WAV reaches the SMTP server and
    the phone gets Messages-Waiting: yes. (The call side uses the helpers of
    test_voicemail_calls.py.)"""
    from rtppeer import RtpPeer, ulaw
    from test_voicemail_calls import answered, pbx, speech_like

    async def main() -> None:
        handler = SmtpHandler()
        smtp = await smtp_server(handler)
        port = smtp.sockets[0].getsockname()[1]
        fields = {"1002": {"extra": {"voicemail": {"enabled": True, "email": "bob@example.test"}}}}
        overrides = {"smtp.host": "127.0.0.1", "smtp.port": port, "smtp.security": "none"}
        try:
            async with pbx(tmp_path, user_fields=fields, real_box=True, **overrides) as (
                srv,
                phones,
                _,
            ):
                lamp = MwiPhone(await Uac.open(srv.port("udp")), "1002", "pw-1002")
                peer = await RtpPeer.open()
                try:
                    assert (await lamp.subscribe()).status == 200
                    _, body = await lamp.notify()
                    assert body["Messages-Waiting"] == "no"
                    caller = phones["1001"]
                    dialog, dest, _ = await answered(caller, peer)
                    await peer.wait_quiet()
                    await peer.send_audio(ulaw(speech_like(1.0)), dest)
                    await asyncio.sleep(0.1)
                    caller.send(dialog.in_dialog("BYE"))
                    await caller.response(200)
                    _, body = await lamp.notify(timeout=10)
                    assert (
                        body["Messages-Waiting"] == "yes" and body["Voice-Message"] == "1/0 (0/0)"
                    )
                    await until(lambda: len(handler.messages) == 1)
                finally:
                    peer.close()
                    lamp.uac.close()
                (msg,) = await srv.storage.voicemail.for_user("1002")
                mail = parse_mail(handler.messages[0])
                assert mail["To"] == "bob@example.test" and "1001" in mail["Subject"]
                attachment = next(mail.iter_attachments())
                assert attachment.get_content() == (tmp_path / "data" / msg.path).read_bytes()
        finally:
            smtp.close()
            await smtp.wait_closed()

    asyncio.run(main())


def test_mwi_with_sipp_as_the_subscriber(tmp_path: Path) -> None:
    """sipp subscribes (digest), gets NOTIFY no, then yes after a deposit, unsubscribes."""
    from sipp import run_sipp, write_inf_file

    inf = write_inf_file(tmp_path / "mwi.csv", [("1001", "secret1", "example.test")])

    async def main() -> None:
        # sipp 3.6 answers only the first challenge and only with MD5
        async with running(tmp_path, **{"auth.algorithms": "MD5"}) as server:
            assert (
                server.users is not None and server.voicemail is not None and server.mwi is not None
            )
            await server.users.add("1001", "secret1")
            port = server.port("udp")
            sipp = asyncio.ensure_future(
                asyncio.to_thread(
                    run_sipp,
                    f"127.0.0.1:{port}",
                    scenario="mwi_uac_subscribe.xml",
                    calls=1,
                    inf_file=inf,
                    timeout=20,
                    workdir=tmp_path,
                    trace_msg=True,
                )
            )
            mwi = server.mwi
            await until(lambda: bool(mwi.subscriptions("1001")) or sipp.done(), timeout=15)
            assert not sipp.done(), (await sipp).describe()
            await server.voicemail.deposit(deposit_for("1001"))
            result = await asyncio.wait_for(sipp, 30)
            assert result.ok and result.successful == 1, result.describe()
            assert server.mwi.subscriptions() == []

    asyncio.run(main())


def test_mwi_subscription_expires_with_a_terminated_notify(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as server:
            assert server.users is not None and server.mwi is not None
            await server.users.add("1001", "secret1")
            phone = MwiPhone(await Uac.open(server.port("udp")), "1001", "secret1")
            try:
                too_short = await phone.subscribe(expires=5)
                assert too_short.status == 423 and too_short.get("Min-Expires") == "60"
                server.mwi.min_expires = 1
                assert (await phone.subscribe(expires=1)).status == 200
                first, _ = await phone.notify()
                assert (first.get("Subscription-State") or "").startswith("active")
                last, body = await phone.notify(timeout=5)
                assert last.get("Subscription-State") == "terminated;reason=timeout"
                assert body["Messages-Waiting"] == "no"
                assert server.mwi.subscriptions() == []
            finally:
                phone.uac.close()

    asyncio.run(main())


def test_voicemail_cli_management(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def body(storage: Storage, users: UserDirectory) -> list[str]:
        await users.add("1001", "secret1")
        service = VoicemailService(storage, users, data_dir=tmp_path)
        return [
            await service.deposit(deposit_for("1001", 0.25, caller=c)) for c in ("1002", "1003")
        ]

    holder: list[str] = []

    async def run_body(storage: Storage, users: UserDirectory) -> None:
        holder.extend(await body(storage, users))

    asyncio.run(with_directory(run_body, SqliteStorage(tmp_path / "mss.sqlite3")))
    ids = holder
    data = ["--data-dir", str(tmp_path)]
    assert cli.main(["voicemail", "list", "1001", *data]) == 0
    out = capsys.readouterr().out
    assert "voicemail off" in out and ids[0] in out and ids[1] in out
    assert cli.main(["voicemail", "play-path", "1001", ids[0], *data]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == (tmp_path / "voicemail" / "1001" / f"{ids[0]}.wav").resolve() and path.is_file()
    assert cli.main(["voicemail", "mark-read", "1001", ids[0], *data]) == 0
    assert cli.main(["voicemail", "delete", "1001", ids[1], *data]) == 0
    capsys.readouterr()
    assert cli.main(["voicemail", "list", "1001", "--json", *data]) == 0
    rows = json.loads(capsys.readouterr().out)["messages"]
    assert [(r["id"], r["read"]) for r in rows] == [(ids[0], True)]
    assert not (tmp_path / "voicemail" / "1001" / f"{ids[1]}.wav").exists()
    for args, expected in [
        (
            ["voicemail", "delete", "1001", ids[1]],
            f"id: no voicemail message {ids[1]} for user 1001",
        ),
        (["voicemail", "mark-read", "1002", ids[0]], "user: no user 1002"),
        (["voicemail", "play-path", "1001", "nope"], "id: no voicemail message nope"),
    ]:
        assert cli.main([*args, *data]) == 2
        assert expected in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# REST API
# --------------------------------------------------------------------------------------------


def test_voicemail_api(tmp_path: Path) -> None:
    import requests
    from apiutil import api_server

    with api_server(tmp_path) as srv:
        server = srv.server
        srv.call(server.users.add("1001", "secret1"))
        msg_id = srv.call(server.voicemail.deposit(deposit_for("1001", 0.5)))
        _, read_token = srv.call(server.tokens.create("ro", scopes=("read",)))

        r = srv.get("/voicemail/1001")
        assert r.status_code == 200
        [row] = r.json()
        assert row["id"] == msg_id and row["caller"] == "1002" and row["read"] is False
        assert row["duration"] == 0.5 and row["email"] is None
        audio = srv.get(f"/voicemail/1001/{msg_id}/audio", token=read_token)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert audio.content == (tmp_path / "voicemail" / "1001" / f"{msg_id}.wav").read_bytes()

        assert (
            srv.patch(f"/voicemail/1001/{msg_id}", {"read": True}, token=read_token).status_code
            == 403
        )
        r = srv.patch(f"/voicemail/1001/{msg_id}", {"read": True})
        assert r.status_code == 200 and r.json()["read"] is True
        assert server.voicemail.counts("1001") == (0, 1)

        missing = srv.get("/voicemail/1001/abcdef")
        assert (
            missing.status_code == 404
            and missing.headers["content-type"] == "application/problem+json"
        )
        assert missing.json()["field"] == "id"
        nobody = srv.get("/voicemail/4444")
        assert nobody.status_code == 404 and nobody.json()["field"] == "number"

        bad = srv.patch("/voicemail/1001/settings", {"email": "not-an-address"})
        assert bad.status_code == 422 and bad.json()["field"] == "email"
        bad = srv.patch("/voicemail/1001/settings", {"divert": ["sometimes"]})
        assert bad.status_code == 422 and bad.json()["field"] == "vm_divert"
        ok = srv.patch(
            "/voicemail/1001/settings",
            {"enabled": True, "email": "a@example.test", "divert": ["busy"], "pin": "1234"},
        )
        assert ok.status_code == 200
        assert ok.json() == {
            "enabled": True,
            "email": "a@example.test",
            "divert": ["busy"],
            "custom_greeting": False,
            "max_seconds": 120,
            "pin_set": True,
        }
        assert server.voicemail.settings_for("1001").diverts("busy")

        url = srv.base + "/voicemail/1001/greeting"
        headers = {**srv.headers(), "Content-Type": "audio/wav"}
        bad = requests.put(url, data=b"not a wav file", headers=headers, timeout=10)
        assert bad.status_code == 422 and bad.json()["field"] == "vm_greeting"
        ok = requests.put(url, data=tone(0.5, rate=16000), headers=headers, timeout=10)
        assert ok.status_code == 200 and ok.json()["custom_greeting"] is True
        assert (
            server.voicemail.greeting_path("1001")
            == tmp_path / "voicemail" / "1001" / "greeting.wav"
        )

        metrics = srv.get("/metrics").text
        assert 'mss_voicemail_events_total{event="deposited"} 1.0' in metrics
        assert 'mss_mwi_events_total{event="subscribed"} 0.0' in metrics
        assert srv.delete(f"/voicemail/1001/{msg_id}").status_code == 204
        assert srv.get(f"/voicemail/1001/{msg_id}").status_code == 404
        assert srv.get("/voicemail/1001").json() == []
        assert server.voicemail.counts("1001") == (0, 0)
