"""``mss voicemail`` and the voicemail options of ``mss user add|set`` (issue 10).

Part of the ``mss`` command line (:mod:`mss.cli` adds these parsers and options). Like every
management command they write to storage; a running server applies the change within a second
(it follows the change feed: a message marked read or deleted here updates the phones' MWI).

Errors are one line naming the field, exit status 2 (:class:`~mss.errors.MssError`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import MssError

__all__ = ("add_parsers", "add_user_options", "apply_user_options", "has_user_options")

T = TypeVar("T")


def _on_off(text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


# -- mss user add|set --voicemail ... ------------------------------------------------------------
def add_user_options(q: argparse.ArgumentParser) -> None:
    """The voicemail options of ``mss user add`` / ``mss user set``."""
    g = q.add_argument_group("voicemail")
    g.add_argument(
        "--voicemail", type=_on_off, metavar="on|off", help="voicemail for this user (default off)"
    )
    g.add_argument(
        "--email",
        metavar="ADDR",
        help="e-mail each voicemail message (WAV attached) to this address ('' = none)",
    )
    g.add_argument(
        "--vm-divert",
        metavar="WHEN",
        help="when calls go to voicemail: no-answer,busy,offline (default) or always",
    )
    g.add_argument(
        "--vm-greeting",
        metavar="FILE.wav",
        help="custom greeting, a PCM WAV (converted to 8 kHz 16-bit mono and installed "
        "in the data dir); 'default' = the packaged greeting",
    )
    g.add_argument(
        "--vm-max-length", type=_int, metavar="S", help="longest message, seconds (default 120)"
    )
    g.add_argument(
        "--vm-pin", metavar="DIGITS", help="PIN for later retrieval, 4-16 digits ('' = none)"
    )


_OPTIONS = ("voicemail", "email", "vm_divert", "vm_greeting", "vm_max_length", "vm_pin")


def has_user_options(args: argparse.Namespace) -> bool:
    """Whether any voicemail option was given."""
    return any(getattr(args, name, None) is not None for name in _OPTIONS)


def _greeting_arg(value: str | None) -> bytes | str | None:
    if value is None or value.strip() in ("", "default"):
        return value
    path = Path(value)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MssError(f"vm_greeting: cannot read {value}: {exc.strerror or exc}") from None


def check_user_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options as :func:`~mss.features.voicemail.update_settings` keywords (files read),
    validated before anything is written.

    Raises:
        VoicemailError: a bad value, naming the option.
    """
    from .features.voicemail import check_changes

    options: dict[str, Any] = {
        "enabled": getattr(args, "voicemail", None),
        "email": getattr(args, "email", None),
        "divert": getattr(args, "vm_divert", None),
        "greeting": _greeting_arg(getattr(args, "vm_greeting", None)),
        "max_seconds": getattr(args, "vm_max_length", None),
        "pin": getattr(args, "vm_pin", None),
    }
    check_changes(**options)
    return options


async def apply_user_options(
    options: dict[str, Any], users: Any, data_dir: str, number: str
) -> None:
    """Store the voicemail options of ``mss user add|set`` (after the user exists)."""
    from .features.voicemail import update_settings

    if any(v is not None for v in options.values()):
        await update_settings(users, number, data_dir=data_dir, **options)


# -- mss voicemail ... ------------------------------------------------------------------------------
def _service_call(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    import asyncio

    from .cli import _directory, _load
    from .features.voicemail import VoicemailService

    cfg = _load(args)

    async def go() -> T:
        storage, users = await _directory(cfg)
        try:
            await users.load()
            if users.get(args.user) is None:
                raise MssError(f"user: no user {args.user}")
            service = VoicemailService(
                storage, users, data_dir=cfg.data_dir, smtp=cfg.smtp, domain=cfg.sip.domain or ""
            )
            return await fn(service)
        finally:
            await storage.close()

    return asyncio.run(go())


def _fmt_time(t: float | None) -> str:
    return "-" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _row(record: Any, mail: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "user": record.user,
        "caller": record.caller,
        "caller_display": record.caller_display,
        "call_id": record.call_id,
        "started_at": record.started_at,
        "duration": record.duration,
        "read": record.read,
        "path": record.path,
        "email": None
        if mail is None
        else {
            "to": mail.to,
            "state": mail.state,
            "attempts": mail.attempts,
            "next_try": mail.next_try if mail.state == "queued" else None,
            "last_error": mail.last_error,
        },
    }


def _cmd_list(args: argparse.Namespace) -> int:
    from .features.voicemail import parse_settings, settings_to_json

    async def go(service: Any) -> tuple[Any, list[Any]]:
        user = service.users.get(args.user)
        return parse_settings(user.extra), await service.list(args.user)

    settings, messages = _service_call(args, go)
    rows = [_row(m, mail) for m, mail in messages]
    if args.json:
        print(json.dumps({"settings": settings_to_json(settings), "messages": rows}, indent=2))
        return 0
    on = "on" if settings.enabled else "off"
    print(
        f"voicemail {on}; e-mail {settings.email or '-'}; divert {','.join(sorted(settings.divert))}; "
        f"max {settings.max_seconds}s; greeting {settings.greeting or 'default'}"
    )
    if not rows:
        print("no messages")
        return 0
    print(f"{'ID':<20} {'RECEIVED':<20} {'CALLER':<24} {'LENGTH':>7}  {'READ':<5} E-MAIL")
    for r in rows:
        caller = f"{r['caller_display']} <{r['caller']}>" if r["caller_display"] else r["caller"]
        mail = r["email"]
        if mail is None:
            state = "-"
        else:
            state = f"{mail['state']} to {mail['to']}"
            if mail["state"] != "sent" and mail["last_error"]:
                state += f" ({mail['attempts']} attempts: {mail['last_error']})"
        print(
            f"{r['id']:<20} {_fmt_time(r['started_at']):<20} {caller[:24]:<24} {r['duration']:>6.1f}s  "
            f"{'yes' if r['read'] else 'no':<5} {state}"
        )
    return 0


def _cmd_play_path(args: argparse.Namespace) -> int:
    async def go(service: Any) -> Path:
        path: Path = service.path_of(await service.message(args.user, args.id))
        return path

    print(_service_call(args, go).resolve())
    return 0


def _cmd_mark_read(args: argparse.Namespace) -> int:
    read = not args.unread
    _service_call(args, lambda service: service.mark_read(args.user, args.id, read))
    print(f"message {args.id} of {args.user} marked {'read' if read else 'unread'}")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    _service_call(args, lambda service: service.delete(args.user, args.id))
    print(f"message {args.id} of {args.user} deleted")
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    mail = _service_call(args, lambda service: service.retry_mail(args.user, args.id))
    print(f"e-mail of message {args.id} queued again to {mail.to}")
    return 0


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``voicemail`` to the ``mss`` sub-commands."""
    vm = sub.add_parser(
        "voicemail", help="voicemail messages: list, play-path, mark-read, delete, retry-mail"
    )
    common(vm)
    vsub = vm.add_subparsers(dest="voicemail_command", required=True, metavar="ACTION")

    def target(q: argparse.ArgumentParser, *, with_id: bool) -> None:
        common(q)
        q.add_argument("user", help="the mailbox (user number)")
        if with_id:
            q.add_argument("id", help="the message id (mss voicemail list USER)")

    q = vsub.add_parser(
        "list", help="the user's settings and messages, oldest first, with e-mail state"
    )
    target(q, with_id=False)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_list)
    q = vsub.add_parser("play-path", help="print the path of a message's WAV file")
    target(q, with_id=True)
    q.set_defaults(func=_cmd_play_path)
    q = vsub.add_parser("mark-read", help="mark a message read (MWI: no longer new)")
    target(q, with_id=True)
    q.add_argument("--unread", action="store_true", help="mark it unread (new) again")
    q.set_defaults(func=_cmd_mark_read)
    q = vsub.add_parser("delete", help="delete a message, its WAV file and its queued e-mail")
    target(q, with_id=True)
    q.set_defaults(func=_cmd_delete)
    q = vsub.add_parser(
        "retry-mail", help="queue a message's e-mail again (after a permanent failure)"
    )
    target(q, with_id=True)
    q.set_defaults(func=_cmd_retry)
