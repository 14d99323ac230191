"""The ``mss`` command line (``python -m mss`` too).

Every command takes ``--data-dir DIR`` (default ``./mss-data``, created on first use) and
``--config FILE``, before or after the command name. Management commands work whether or not a
server is running: they write to the same storage, and a running server applies the change
within a second (it follows the storage change feed).

Errors are one line naming the field, on stderr, with exit status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .errors import ConfigError, MssError

__all__ = ("build_parser", "main")

T = TypeVar("T")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="where the database and files live (default ./mss-data; env MSS_DATA_DIR)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML configuration file (env MSS_CONFIG)",
    )


def _load(args: argparse.Namespace, **overrides: object) -> Any:
    from .config import load_config

    ov: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        ov["data_dir"] = args.data_dir
    return load_config(getattr(args, "config", None), overrides=ov)


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


async def _open(cfg: Any) -> Any:
    from .app import open_configured_storage

    return await open_configured_storage(cfg)


# -- serve ----------------------------------------------------------------------------------
def _cmd_serve(args: argparse.Namespace) -> int:
    from .app import run
    from .logs import setup_logging

    cfg = _load(
        args,
        **{
            "transport.listen": ",".join(args.listen) if args.listen else None,
            "sip.domain": args.domain,
            "log.format": args.log_format,
            "log.level": args.log_level,
        },
    )
    setup_logging(cfg.log.format, cfg.log.level)
    return run(cfg)


# -- users ----------------------------------------------------------------------------------
def _user_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if getattr(args, "name", None) is not None:
        fields["name"] = args.name
    if getattr(args, "multi_device", None) is not None:
        fields["multi_device"] = args.multi_device
    if getattr(args, "max_devices", None) is not None:
        fields["max_devices"] = args.max_devices
    if getattr(args, "allow_ip", None):
        fields["allow_ips"] = list(args.allow_ip)
    elif getattr(args, "clear_allow_ip", False):
        fields["allow_ips"] = []
    for key in ("max_calls", "max_outgoing"):
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = None if value < 0 else value
    if getattr(args, "no_answer_timeout", None) is not None:
        fields["no_answer_timeout"] = max(0, args.no_answer_timeout)
    return fields


async def _directory(cfg: Any) -> Any:
    from .app import resolve_realm
    from .features.users import UserDirectory

    storage = await _open(cfg)
    return storage, UserDirectory(storage, realm=await resolve_realm(cfg, storage))


def _cmd_user_add(args: argparse.Namespace) -> int:
    from .cli_voicemail import apply_user_options, check_user_options

    cfg = _load(args)
    voicemail = check_user_options(args)

    async def go() -> None:
        storage, users = await _directory(cfg)
        try:
            await users.add(args.number, args.password, **_user_fields(args))
            await apply_user_options(voicemail, users, cfg.data_dir, args.number)
        finally:
            await storage.close()

    _run(go)
    print(f"user {args.number} added")
    return 0


def _cmd_user_set(args: argparse.Namespace) -> int:
    from .cli_voicemail import apply_user_options, check_user_options, has_user_options

    cfg = _load(args)
    fields = _user_fields(args)
    if not fields and args.password is None and not has_user_options(args):
        raise MssError("nothing to change: give at least one option")
    voicemail = check_user_options(args)

    async def go() -> None:
        storage, users = await _directory(cfg)
        try:
            if fields or args.password is not None:
                await users.update(args.number, password=args.password, **fields)
            elif await storage.users.get(args.number) is None:
                raise MssError(f"number: no user {args.number}")
            await apply_user_options(voicemail, users, cfg.data_dir, args.number)
        finally:
            await storage.close()

    _run(go)
    print(f"user {args.number} updated")
    return 0


def _cmd_user_del(args: argparse.Namespace) -> int:
    cfg = _load(args)

    async def go() -> bool:
        storage, users = await _directory(cfg)
        try:
            return bool(await users.delete(args.number))
        finally:
            await storage.close()

    if not _run(go):
        raise MssError(f"number: no user {args.number}")
    print(f"user {args.number} deleted")
    return 0


def _fmt_left(expires_at: float, now: float) -> str:
    return f"{max(0, int(expires_at - now))}s"


def _voicemail_json(user: Any) -> dict[str, Any]:
    """A user's voicemail settings for ``mss user list --json`` (the PIN itself not shown)."""
    from .features.voicemail import parse_settings, settings_to_json

    data = settings_to_json(parse_settings(user.extra))
    data["pin"] = bool(data["pin"])
    return data


def _cmd_user_list(args: argparse.Namespace) -> int:
    cfg = _load(args)

    async def go() -> tuple[list[Any], list[Any]]:
        storage = await _open(cfg)
        try:
            return await storage.users.list(), await storage.bindings.all()
        finally:
            await storage.close()

    users, bindings = _run(go)
    now = time.time()
    live: dict[str, list[Any]] = {}
    for b in bindings:
        if b.expires_at > now:
            live.setdefault(b.aor, []).append(b)
    rows = []
    for u in users:
        bs = live.get(u.number, [])
        ips = [a for a in u.allow_ips]
        online = bool(bs) or bool(ips)
        rows.append(
            {
                "number": u.number,
                "name": u.name,
                "online": online,
                "multi_device": u.multi_device,
                "max_devices": u.max_devices,
                "allow_ips": ips,
                "max_calls": u.max_calls,
                "max_outgoing": u.max_outgoing,
                "no_answer_timeout": (u.extra or {}).get("no_answer_timeout"),
                "voicemail": _voicemail_json(u),
                "bindings": [
                    {
                        "contact": b.contact,
                        "source": b.source,
                        "expires_in": int(b.expires_at - now),
                        "user_agent": b.user_agent,
                    }
                    for b in bs
                ],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no users")
        return 0
    print(f"{'NUMBER':<12} {'NAME':<20} {'ONLINE':<7} {'DEVICES':<8} BINDINGS")
    for r in rows:
        devices = f"{r['max_devices']}" if r["multi_device"] else "1"
        where = ", ".join(f"{b['contact']} ({b['expires_in']}s)" for b in r["bindings"])
        if r["allow_ips"]:
            where = ", ".join(filter(None, [where, "ip-auth " + " ".join(r["allow_ips"])]))
        print(
            f"{r['number']:<12} {r['name'][:20]:<20} {'yes' if r['online'] else 'no':<7} {devices:<8} {where}"
        )
    return 0


def _cmd_reg_list(args: argparse.Namespace) -> int:
    cfg = _load(args)

    async def go() -> list[Any]:
        storage = await _open(cfg)
        try:
            return list(await storage.bindings.all())
        finally:
            await storage.close()

    now = time.time()
    bindings = [b for b in _run(go) if b.expires_at > now]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "aor": b.aor,
                        "contact": b.contact,
                        "expires_in": int(b.expires_at - now),
                        "source": b.source,
                        "call_id": b.call_id,
                        "cseq": b.cseq,
                        "user_agent": b.user_agent,
                        "q": b.q,
                        "path": list(b.path),
                    }
                    for b in bindings
                ],
                indent=2,
            )
        )
        return 0
    if not bindings:
        print("no registrations")
        return 0
    print(f"{'AOR':<12} {'EXPIRES':<8} {'SOURCE':<24} CONTACT")
    for b in sorted(bindings, key=lambda b: (b.aor, b.contact)):
        print(f"{b.aor:<12} {_fmt_left(b.expires_at, now):<8} {b.source:<24} {b.contact}")
    return 0


# -- security: bans, IP lists, the system blacklist ------------------------------------------
def _storage_call(cfg: Any, fn: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        storage = await _open(cfg)
        try:
            return await fn(storage)
        finally:
            await storage.close()

    return _run(go)


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _cmd_ban_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    bans = _storage_call(cfg, lambda st: st.bans.list())
    now = time.time()
    if not args.all:
        bans = [b for b in bans if b.until is None or b.until > now]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "ip": b.ip,
                        "until": b.until,
                        "active": b.until is None or b.until > now,
                        "remaining": None if b.until is None else max(0, int(b.until - now)),
                        "reason": b.reason,
                        "count": b.count,
                        "first_at": b.first_at,
                        "last_at": b.last_at,
                        "users": list(b.users),
                    }
                    for b in bans
                ],
                indent=2,
            )
        )
        return 0
    if not bans:
        print("no bans")
        return 0
    print(f"{'IP':<40} {'LEFT':<10} {'COUNT':<6} {'SINCE':<20} REASON")
    for b in bans:
        left = "forever" if b.until is None else _fmt_left(b.until, now)
        print(f"{b.ip:<40} {left:<10} {b.count:<6} {_fmt_time(b.last_at):<20} {b.reason}")
    return 0


def _cmd_ban_add(args: argparse.Namespace) -> int:
    from .features.security import operator_ban, parse_duration, parse_ip

    cfg = _load(args)
    text, _ = parse_ip(args.ip)
    duration = None if args.duration is None else parse_duration(args.duration)

    async def go(storage: Any) -> Any:
        record = operator_ban(
            text, duration=duration, reason=args.reason or "", previous=await storage.bans.get(text)
        )
        await storage.bans.put(record)
        return record

    record = _storage_call(cfg, go)
    how = "until lifted" if record.until is None else f"for {int(record.until - record.last_at)} s"
    print(f"banned {record.ip} {how}")
    return 0


def _cmd_ban_del(args: argparse.Namespace) -> int:
    from .features.security import parse_ip

    cfg = _load(args)
    text, _ = parse_ip(args.ip)
    if not _storage_call(cfg, lambda st: st.bans.delete(text)):
        raise MssError(f"ip: no ban of {text}")
    print(f"unbanned {text}")
    return 0


def _list_name(args: argparse.Namespace, *, required: bool) -> str | None:
    if args.black:
        return "black"
    if args.white:
        return "white"
    if required:
        raise MssError("list: give --black or --white")
    return None


def _cmd_iplist_add(args: argparse.Namespace) -> int:
    from .features.security import parse_network
    from .storage import AlreadyExists, IpListRecord

    cfg = _load(args)
    name = _list_name(args, required=True)
    assert name is not None
    net = parse_network(args.network)

    async def go(storage: Any) -> None:
        try:
            await storage.iplists.add(IpListRecord(name, net.text, args.note or ""))
        except AlreadyExists:
            raise MssError(f"network: {net.text} is already on the {name} list") from None

    _storage_call(cfg, go)
    print(f"{net.text} added to the {name} list")
    return 0


def _cmd_iplist_del(args: argparse.Namespace) -> int:
    from .features.security import parse_network

    cfg = _load(args)
    name = _list_name(args, required=True)
    assert name is not None
    net = parse_network(args.network)
    if not _storage_call(cfg, lambda st: st.iplists.delete(name, net.text)):
        raise MssError(f"network: {net.text} is not on the {name} list")
    print(f"{net.text} removed from the {name} list")
    return 0


def _cmd_iplist_list(args: argparse.Namespace) -> int:
    from .features.security import LISTS

    cfg = _load(args)
    name = _list_name(args, required=False)
    entries = _storage_call(cfg, lambda st: st.iplists.list(name))
    entries = [e for e in entries if e.list_name in LISTS]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "list": e.list_name,
                        "network": e.network,
                        "note": e.note,
                        "created_at": e.created_at,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return 0
    if not entries:
        print("no entries")
        return 0
    print(f"{'LIST':<6} {'NETWORK':<44} NOTE")
    for e in entries:
        print(f"{e.list_name:<6} {e.network:<44} {e.note}")
    return 0


def _blacklist_prefixes(args: argparse.Namespace) -> tuple[str, str]:
    from .features.blacklist import normalise_prefix

    return (
        normalise_prefix(args.caller, "caller", caller=True),
        normalise_prefix(args.called, "called", caller=False),
    )


def _cmd_blacklist_add(args: argparse.Namespace) -> int:
    from .storage import BlacklistRecord

    cfg = _load(args)
    caller, called = _blacklist_prefixes(args)
    try:
        rate = int(args.rate)
    except ValueError:
        raise MssError(f"rate: not an integer: {args.rate!r}") from None
    if not 0 <= rate <= 100:
        raise MssError(f"rate: must be 0..100 (percentage of matching calls blocked), got {rate}")
    record = BlacklistRecord(caller, called, rate, args.description or "")
    _storage_call(cfg, lambda st: st.blacklist.put(record))
    print(f"blacklist record caller {caller} called {called} rate {rate} stored")
    return 0


def _cmd_blacklist_del(args: argparse.Namespace) -> int:
    cfg = _load(args)
    caller, called = _blacklist_prefixes(args)
    if not _storage_call(cfg, lambda st: st.blacklist.delete(caller, called)):
        raise MssError(f"caller: no blacklist record with caller {caller} and called {called}")
    print(f"blacklist record caller {caller} called {called} deleted")
    return 0


def _cmd_blacklist_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    records = _storage_call(cfg, lambda st: st.blacklist.list())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "caller": r.caller_prefix,
                        "called": r.called_prefix,
                        "rate": r.rate,
                        "description": r.note,
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return 0
    if not records:
        print("no blacklist records")
        return 0
    print(f"{'CALLER':<16} {'CALLED':<16} {'RATE':<5} DESCRIPTION")
    for r in records:
        print(f"{r.caller_prefix:<16} {r.called_prefix:<16} {r.rate:<5} {r.note}")
    return 0


# -- call records ---------------------------------------------------------------------------
def _cdr_query(cfg: Any, *, date: str | None, user: str | None, limit: int | None) -> list[Any]:
    from .features.cdr import day_bounds

    since = until = None
    if date is not None:
        try:
            since, until = day_bounds(date)
        except ValueError:
            raise MssError(f"date: not a YYYY-MM-DD date: {date!r}") from None

    async def go(storage: Any) -> list[Any]:
        out: list[Any] = []
        page = 1000
        while limit is None or len(out) < limit:
            want = page if limit is None else min(page, limit - len(out))
            rows = await storage.cdrs.query(
                since=since, until=until, number=user, limit=want, offset=len(out)
            )
            out += rows
            if len(rows) < want:
                break
        return out

    return _storage_call(cfg, go)


def _cmd_cdr_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    rows = _cdr_query(cfg, date=args.date, user=args.user, limit=args.limit)
    if args.json:
        keys = (
            "id",
            "caller",
            "dialed",
            "callee",
            "setup_at",
            "ring_at",
            "answer_at",
            "end_at",
            "duration",
            "status",
            "cause",
            "reason",
            "hangup",
            "result",
            "caller_addr",
            "callee_addr",
            "direction",
            "route",
            "call_id",
        )
        print(json.dumps([{k: getattr(r, k) for k in keys} for r in rows], indent=2))
        return 0
    if not rows:
        print("no call records")
        return 0
    print(
        f"{'SETUP':<20} {'CALLER':<12} {'DIALED':<14} {'CALLEE':<12} {'RESULT':<12} {'STATUS':<6} {'DURATION':>9}  HANGUP  REASON"
    )
    for r in rows:
        status = "" if r.status is None else str(r.status)
        print(
            f"{_fmt_time(r.setup_at):<20} {r.caller:<12} {r.dialed:<14} {r.callee:<12} {r.result:<12} "
            f"{status:<6} {r.duration:>8.1f}s  {r.hangup or '-':<7} {r.reason}"
        )
    return 0


def _cmd_cdr_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .features.cdr import write_csv

    cfg = _load(args)
    rows = _cdr_query(cfg, date=args.date, user=None, limit=None)
    if args.out == "-":
        write_csv(rows, sys.stdout)
        return 0
    out = Path(args.out) if args.out else Path(cfg.data_dir) / "cdr" / f"{args.date}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as f:
        n = write_csv(rows, f)
    print(f"{n} call records written to {out}")
    return 0


# -- misc -----------------------------------------------------------------------------------
def _cmd_version(args: argparse.Namespace) -> int:
    import fastsip

    print(
        f"mss (fastsip {fastsip.__version__}); Cython extensions in use: {fastsip.USING_EXTENSIONS}"
    )
    return 0


def _cmd_parse(args: argparse.Namespace) -> int:
    from fastsip.__main__ import main as parse_main

    return parse_main(list(args.files))


def _cmd_config_show(args: argparse.Namespace) -> int:
    from .config import config_to_dict

    print(json.dumps(config_to_dict(_load(args), redact_secrets=True), indent=2))
    return 0


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


# -- management API tokens ------------------------------------------------------------------
def _cmd_token_create(args: argparse.Namespace) -> int:
    from .features.security import parse_duration
    from .features.tokens import TokenService

    cfg = _load(args)
    expires = None if args.expires is None else parse_duration(args.expires, "expires")
    scopes = ("read",) if args.read_only else ("admin",)
    record, token = _storage_call(
        cfg,
        lambda st: TokenService(st.tokens, st.kv).create(
            args.name or "", scopes=scopes, expires_in=expires
        ),
    )
    print(token)
    print(
        f"token {record.id} created ({', '.join(record.scopes)}); it is shown only now",
        file=sys.stderr,
    )
    return 0


def _cmd_token_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    tokens = _storage_call(cfg, lambda st: st.tokens.list())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": t.id,
                        "name": t.name,
                        "scopes": list(t.scopes),
                        "created_at": t.created_at,
                        "expires_at": t.expires_at,
                        "last_used_at": t.last_used_at or None,
                    }
                    for t in tokens
                ],
                indent=2,
            )
        )
        return 0
    if not tokens:
        print("no tokens")
        return 0
    print(f"{'ID':<12} {'SCOPES':<8} {'CREATED':<20} {'LAST USED':<20} {'EXPIRES':<20} NAME")
    for t in tokens:
        print(
            f"{t.id:<12} {','.join(t.scopes):<8} {_fmt_time(t.created_at):<20} "
            f"{_fmt_time(t.last_used_at or None):<20} {_fmt_time(t.expires_at):<20} {t.name}"
        )
    return 0


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if not _storage_call(cfg, lambda st: st.tokens.delete(args.id)):
        raise MssError(f"id: no token {args.id}")
    print(f"token {args.id} revoked")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mss",
        description="mss: a SIP server and PBX on the fastsip core.",
        epilog="Every command takes --data-dir DIR and --config FILE. See docs/configuration.md.",
    )
    _common(ap)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="run the server (embedded defaults: SQLite in the data dir, UDP+TCP 5060, STUN)",
    )
    _common(p)
    p.add_argument(
        "--listen",
        action="append",
        metavar="TRANSPORT:HOST:PORT",
        help="listener, repeatable: udp:0.0.0.0:5060, tcp:[::]:5060, tls:0.0.0.0:5061",
    )
    p.add_argument("--domain", metavar="NAME", help="the SIP domain users register in")
    p.add_argument(
        "--log-format",
        choices=("auto", "text", "json"),
        help="log format (auto: text on a TTY, JSON lines otherwise)",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")
    p.set_defaults(func=_cmd_serve)

    user = sub.add_parser("user", help="local users: add, set, del, list")
    _common(user)
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    from .cli_voicemail import add_user_options as add_voicemail_options

    def user_options(q: argparse.ArgumentParser, *, adding: bool) -> None:
        _common(q)
        q.add_argument("number", help="the user's number (also the SIP user name)")
        q.add_argument(
            "--password", required=adding, help="the SIP password (only its digest HA1s are stored)"
        )
        q.add_argument("--name", help="display name")
        md = q.add_mutually_exclusive_group()
        md.add_argument(
            "--multi-device",
            dest="multi_device",
            action="store_true",
            default=None,
            help="one number, multi-devices: ring every registered device",
        )
        md.add_argument(
            "--single-device",
            dest="multi_device",
            action="store_false",
            help="one device: a new registration replaces the old one (default)",
        )
        q.add_argument(
            "--max-devices", type=_nonneg, help="devices allowed with --multi-device (default 3)"
        )
        q.add_argument(
            "--allow-ip",
            action="append",
            metavar="IP[/LEN][:PORT]",
            help="IP address authorization: requests from here need no password (repeatable)",
        )
        if not adding:
            q.add_argument(
                "--clear-allow-ip", action="store_true", help="remove every IP authorization"
            )
        q.add_argument("--max-calls", type=_nonneg, help="max concurrent calls (-1 = unlimited)")
        q.add_argument(
            "--max-outgoing", type=_nonneg, help="max concurrent outgoing calls (-1 = unlimited)"
        )
        q.add_argument(
            "--no-answer-timeout",
            type=_nonneg,
            metavar="S",
            help="seconds a call to this user rings before it is released (0 = the system value)",
        )
        add_voicemail_options(q)

    q = usub.add_parser("add", help="add a user")
    user_options(q, adding=True)
    q.set_defaults(func=_cmd_user_add)
    q = usub.add_parser("set", help="change a user")
    user_options(q, adding=False)
    q.set_defaults(func=_cmd_user_set)
    q = usub.add_parser("del", help="delete a user and its registrations")
    _common(q)
    q.add_argument("number")
    q.set_defaults(func=_cmd_user_del)
    q = usub.add_parser("list", help="list users with online state and bindings")
    _common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_user_list)

    reg = sub.add_parser("reg", help="registrations")
    _common(reg)
    rsub = reg.add_subparsers(dest="reg_command", required=True, metavar="ACTION")
    q = rsub.add_parser("list", help="list current registrations (bindings)")
    _common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_reg_list)

    ban = sub.add_parser(
        "ban", help="banned source addresses (fail-to-ban, operator bans): list, add, del"
    )
    _common(ban)
    bsub = ban.add_subparsers(dest="ban_command", required=True, metavar="ACTION")
    q = bsub.add_parser("list", help="list active bans (with --all, remembered expired ones too)")
    _common(q)
    q.add_argument("--all", action="store_true", help="include bans that have ended")
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_ban_list)
    q = bsub.add_parser("add", help="ban an address: its packets are dropped without any reply")
    _common(q)
    q.add_argument("ip", help="IPv4 or IPv6 address")
    q.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="how long: 3600, 90m, 3h, 1d (default: until `mss ban del`)",
    )
    q.add_argument("--reason", metavar="TEXT", help="why (shown by `mss ban list`)")
    q.set_defaults(func=_cmd_ban_add)
    q = bsub.add_parser("del", help="lift a ban")
    _common(q)
    q.add_argument("ip", help="IPv4 or IPv6 address")
    q.set_defaults(func=_cmd_ban_del)

    ipl = sub.add_parser(
        "iplist", help="IP black list (dropped before parse) and white list (never banned)"
    )
    _common(ipl)
    isub = ipl.add_subparsers(dest="iplist_command", required=True, metavar="ACTION")

    def which(q: argparse.ArgumentParser) -> None:
        g = q.add_mutually_exclusive_group()
        g.add_argument(
            "--black", action="store_true", help="the black list: packets dropped before parse"
        )
        g.add_argument(
            "--white", action="store_true", help="the white list: never banned by fail-to-ban"
        )

    q = isub.add_parser("add", help="add an address or CIDR to a list")
    _common(q)
    which(q)
    q.add_argument("network", metavar="IP_OR_CIDR", help="192.0.2.7, 192.0.2.0/24, 2001:db8::/32")
    q.add_argument("--note", metavar="TEXT", help="operator's note")
    q.set_defaults(func=_cmd_iplist_add)
    q = isub.add_parser("del", help="remove an address or CIDR from a list")
    _common(q)
    which(q)
    q.add_argument("network", metavar="IP_OR_CIDR")
    q.set_defaults(func=_cmd_iplist_del)
    q = isub.add_parser("list", help="list the entries (of both lists unless one is named)")
    _common(q)
    which(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_iplist_list)

    bl = sub.add_parser(
        "blacklist",
        help="system blacklist (call filtering by caller/called prefix): add, del, list",
    )
    _common(bl)
    blsub = bl.add_subparsers(dest="blacklist_command", required=True, metavar="ACTION")
    q = blsub.add_parser("add", help="add or replace a record")
    _common(q)
    q.add_argument(
        "--caller",
        required=True,
        metavar="PREFIX",
        help="caller number prefix, * = any, anonymous = withheld callers",
    )
    q.add_argument(
        "--called", required=True, metavar="PREFIX", help="called number prefix, * = any"
    )
    q.add_argument(
        "--rate",
        required=True,
        metavar="N",
        help="percentage of matching calls blocked: 100 always, 0 never (an explicit allow)",
    )
    q.add_argument("--description", metavar="TEXT", help="what the record is for")
    q.set_defaults(func=_cmd_blacklist_add)
    q = blsub.add_parser("del", help="delete a record")
    _common(q)
    q.add_argument("--caller", required=True, metavar="PREFIX")
    q.add_argument("--called", required=True, metavar="PREFIX")
    q.set_defaults(func=_cmd_blacklist_del)
    q = blsub.add_parser("list", help="list the records")
    _common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_blacklist_list)

    cdr = sub.add_parser("cdr", help="call detail records: list, export (CSV per day)")
    _common(cdr)
    csub = cdr.add_subparsers(dest="cdr_command", required=True, metavar="ACTION")
    q = csub.add_parser("list", help="list call records, oldest first")
    _common(q)
    q.add_argument("--date", metavar="YYYY-MM-DD", help="only calls set up on this (local) day")
    q.add_argument(
        "--user", metavar="NUMBER", help="only calls where this number is caller, dialled or callee"
    )
    q.add_argument(
        "--limit", type=_nonneg, default=1000, help="at most this many records (default 1000)"
    )
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_cdr_list)
    q = csub.add_parser(
        "export", help="write the CSV file of one day (like miniSIPServer's daily CDR files)"
    )
    _common(q)
    q.add_argument("--date", metavar="YYYY-MM-DD", required=True, help="the (local) day")
    q.add_argument(
        "--out",
        metavar="FILE",
        help="output file ('-' = stdout; default DATA_DIR/cdr/YYYY-MM-DD.csv)",
    )
    q.set_defaults(func=_cmd_cdr_export)

    tok = sub.add_parser("token", help="management API tokens: create, list, revoke")
    _common(tok)
    tsub = tok.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    q = tsub.add_parser("create", help="make a token and print it (only its hash is stored)")
    _common(q)
    q.add_argument("--name", metavar="N", help="what the token is for")
    q.add_argument("--read-only", action="store_true", help="scope 'read': may not change anything")
    q.add_argument(
        "--expires", metavar="DURATION", help="lifetime (3600, 90m, 12h, 30d); default never"
    )
    q.set_defaults(func=_cmd_token_create)
    q = tsub.add_parser("list", help="list the tokens (never their secrets)")
    _common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_token_list)
    q = tsub.add_parser("revoke", help="revoke a token: it stops working at once")
    _common(q)
    q.add_argument("id", help="the token's id (mss token list)")
    q.set_defaults(func=_cmd_token_revoke)

    from .cli_pbx import add_parsers as add_pbx_parsers

    add_pbx_parsers(sub, _common)  # line, trunk, route (issue 7)

    from .cli_voicemail import add_parsers as add_voicemail_parsers

    add_voicemail_parsers(sub, _common)  # voicemail messages (issue 10)

    conf = sub.add_parser("config", help="configuration")
    _common(conf)
    csub = conf.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    q = csub.add_parser("show", help="print the effective configuration (secrets redacted)")
    _common(q)
    q.set_defaults(func=_cmd_config_show)

    p = sub.add_parser(
        "version", help="print the version and whether the Cython extensions are used"
    )
    _common(p)
    p.set_defaults(func=_cmd_version)
    p = sub.add_parser("parse", help="parse SIP message files and print what the parser saw")
    _common(p)
    p.add_argument("files", nargs="+", help="files holding one SIP message each ('-' = stdin)")
    p.set_defaults(func=_cmd_parse)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, MssError) as e:
        print(f"mss: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
