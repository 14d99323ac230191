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
    p.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="where the database and files live (default ./mss-data; env MSS_DATA_DIR)")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="TOML configuration file (env MSS_CONFIG)")


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
    return fields


async def _directory(cfg: Any) -> Any:
    from .app import resolve_realm
    from .features.users import UserDirectory

    storage = await _open(cfg)
    return storage, UserDirectory(storage, realm=await resolve_realm(cfg, storage))


def _cmd_user_add(args: argparse.Namespace) -> int:
    cfg = _load(args)

    async def go() -> None:
        storage, users = await _directory(cfg)
        try:
            await users.add(args.number, args.password, **_user_fields(args))
        finally:
            await storage.close()

    _run(go)
    print(f"user {args.number} added")
    return 0


def _cmd_user_set(args: argparse.Namespace) -> int:
    cfg = _load(args)
    fields = _user_fields(args)
    if not fields and args.password is None:
        raise MssError("nothing to change: give at least one option")

    async def go() -> None:
        storage, users = await _directory(cfg)
        try:
            await users.update(args.number, password=args.password, **fields)
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
        rows.append({
            "number": u.number,
            "name": u.name,
            "online": online,
            "multi_device": u.multi_device,
            "max_devices": u.max_devices,
            "allow_ips": ips,
            "max_calls": u.max_calls,
            "max_outgoing": u.max_outgoing,
            "bindings": [{"contact": b.contact, "source": b.source, "expires_in": int(b.expires_at - now), "user_agent": b.user_agent} for b in bs],
        })
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
        print(f"{r['number']:<12} {r['name'][:20]:<20} {'yes' if r['online'] else 'no':<7} {devices:<8} {where}")
    return 0


def _cmd_reg_list(args: argparse.Namespace) -> int:
    cfg = _load(args)

    async def go() -> list[Any]:
        storage = await _open(cfg)
        try:
            return await storage.bindings.all()
        finally:
            await storage.close()

    now = time.time()
    bindings = [b for b in _run(go) if b.expires_at > now]
    if args.json:
        print(json.dumps([{"aor": b.aor, "contact": b.contact, "expires_in": int(b.expires_at - now), "source": b.source, "call_id": b.call_id, "cseq": b.cseq, "user_agent": b.user_agent, "q": b.q, "path": list(b.path)} for b in bindings], indent=2))
        return 0
    if not bindings:
        print("no registrations")
        return 0
    print(f"{'AOR':<12} {'EXPIRES':<8} {'SOURCE':<24} CONTACT")
    for b in sorted(bindings, key=lambda b: (b.aor, b.contact)):
        print(f"{b.aor:<12} {_fmt_left(b.expires_at, now):<8} {b.source:<24} {b.contact}")
    return 0


# -- misc -----------------------------------------------------------------------------------
def _cmd_version(args: argparse.Namespace) -> int:
    import fastsip

    print(f"mss (fastsip {fastsip.__version__}); Cython extensions in use: {fastsip.USING_EXTENSIONS}")
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mss",
        description="mss: a SIP server and PBX on the fastsip core.",
        epilog="Every command takes --data-dir DIR and --config FILE. See docs/configuration.md.",
    )
    _common(ap)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the server (embedded defaults: SQLite in the data dir, UDP+TCP 5060, STUN)")
    _common(p)
    p.add_argument("--listen", action="append", metavar="TRANSPORT:HOST:PORT",
                   help="listener, repeatable: udp:0.0.0.0:5060, tcp:[::]:5060, tls:0.0.0.0:5061")
    p.add_argument("--domain", metavar="NAME", help="the SIP domain users register in")
    p.add_argument("--log-format", choices=("auto", "text", "json"), help="log format (auto: text on a TTY, JSON lines otherwise)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")
    p.set_defaults(func=_cmd_serve)

    user = sub.add_parser("user", help="local users: add, set, del, list")
    _common(user)
    usub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    def user_options(q: argparse.ArgumentParser, *, adding: bool) -> None:
        _common(q)
        q.add_argument("number", help="the user's number (also the SIP user name)")
        q.add_argument("--password", required=adding, help="the SIP password (only its digest HA1s are stored)")
        q.add_argument("--name", help="display name")
        md = q.add_mutually_exclusive_group()
        md.add_argument("--multi-device", dest="multi_device", action="store_true", default=None,
                        help="one number, multi-devices: ring every registered device")
        md.add_argument("--single-device", dest="multi_device", action="store_false",
                        help="one device: a new registration replaces the old one (default)")
        q.add_argument("--max-devices", type=_nonneg, help="devices allowed with --multi-device (default 3)")
        q.add_argument("--allow-ip", action="append", metavar="IP[/LEN][:PORT]",
                       help="IP address authorization: requests from here need no password (repeatable)")
        if not adding:
            q.add_argument("--clear-allow-ip", action="store_true", help="remove every IP authorization")
        q.add_argument("--max-calls", type=_nonneg, help="max concurrent calls (-1 = unlimited)")
        q.add_argument("--max-outgoing", type=_nonneg, help="max concurrent outgoing calls (-1 = unlimited)")

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

    conf = sub.add_parser("config", help="configuration")
    _common(conf)
    csub = conf.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    q = csub.add_parser("show", help="print the effective configuration (secrets redacted)")
    _common(q)
    q.set_defaults(func=_cmd_config_show)

    p = sub.add_parser("version", help="print the version and whether the Cython extensions are used")
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
