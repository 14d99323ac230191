"""``mss line``, ``mss trunk`` and ``mss route``: external lines, SIP trunks and the dial plan.

Part of the ``mss`` command line (:mod:`mss.cli` adds these parsers). Like every management
command they write to storage and a running server applies the change within a second (it
follows the change feed); ``mss line register-now`` asks the running server, through the same
feed, to register a line at once. ``list`` shows the state a running server published
(registration state, trunk up/down); passwords are never printed.

Errors are one line naming the field, exit status 2 (:class:`~mss.errors.MssError`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .errors import MssError

__all__ = ("add_parsers",)

T = TypeVar("T")


def _storage_call(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    import asyncio

    from .app import open_configured_storage
    from .cli import _load

    cfg = _load(args)

    async def go() -> T:
        storage = await open_configured_storage(cfg)
        try:
            return await fn(storage)
        finally:
            await storage.close()

    return asyncio.run(go())


def _limit(value: int | None) -> int | None:
    """CLI limit: -1 (any negative) = unlimited (None)."""
    return None if value is None or value < 0 else value


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    left = t - time.time()
    return f"in {int(left)}s" if left >= 0 else time.strftime("%H:%M:%S", time.localtime(t))


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _flag_pair(
    p: argparse.ArgumentParser, name: str, dest: str, on_help: str, off_help: str
) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=on_help)
    g.add_argument(f"--no-{name}", dest=dest, action="store_false", help=off_help)


def _enable_pair(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--enable",
        dest="enabled",
        action="store_true",
        default=None,
        help=f"use the {what} (default)",
    )
    g.add_argument(
        "--disable", dest="enabled", action="store_false", help=f"keep the {what} but do not use it"
    )


def _store(
    args: argparse.Namespace,
    what: str,
    record_id: str,
    build: Callable[[Any], Any],
    check: Callable[[Any], None],
    repo: str,
    *,
    adding: bool,
) -> None:
    """Add (``adding``) or update a keyed record through ``build(old_or_None) -> record``."""
    from .storage import AlreadyExists, NotFound

    async def go(storage: Any) -> None:
        r = getattr(storage, repo)
        old = await r.get(record_id)
        if adding and old is not None:
            raise MssError(f"{what}: {record_id} exists already (use `mss {what} set`)")
        if not adding and old is None:
            raise MssError(f"{what}: no {what} {record_id}")
        record = build(old)
        try:
            check(record)
        except ValueError as exc:
            raise MssError(str(exc)) from None
        try:
            if adding:
                await r.add(record)
            else:
                await r.update(record)
        except (AlreadyExists, NotFound) as exc:
            raise MssError(f"{what}: {exc}") from None
        except ValueError as exc:
            raise MssError(str(exc)) from None

    _storage_call(args, go)


# -- lines ------------------------------------------------------------------------------------
_LINE_FIELDS = {
    "account": "account",
    "domain": "domain",
    "password": "password",
    "auth_user": "auth_user",
    "auth_with_domain": "auth_with_domain",
    "proxy": "proxy",
    "transport": "transport",
    "register": "register",
    "expires": "expires",
    "contact_user": "contact_user",
    "owner": "owner",
    "no_answer_timeout": "no_answer_timeout",
    "enabled": "enabled",
}


def _line_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for arg, name in _LINE_FIELDS.items():
        value = getattr(args, arg, None)
        if value is not None:
            fields[name] = value
    if getattr(args, "call_id", None) is not None:
        fields["new_call_id"] = {"same": False, "new": True, "default": None}[args.call_id]
    if getattr(args, "max_calls", None) is not None:
        fields["max_calls"] = _limit(args.max_calls)
    if fields.get("expires") is not None and fields["expires"] < 0:
        raise MssError("expires: must be >= 0")
    if fields.get("no_answer_timeout") is not None and fields["no_answer_timeout"] < 0:
        raise MssError("no_answer_timeout: must be >= 0 (0 = the system timer)")
    return fields


def _line_numbers(args: argparse.Namespace, old: Any) -> dict[str, Any]:
    """``--number NUMBER=USER`` (``NUMBER=`` removes it) merged into the line's ``extra``."""
    from .features.lines import line_numbers

    extra = dict(old.extra) if old is not None else {}
    given = getattr(args, "number", None)
    if not given:
        return extra
    numbers = line_numbers(old) if old is not None else {}
    for item in given:
        number, sep, user = item.partition("=")
        number, user = number.strip(), user.strip()
        if not sep or not number:
            raise MssError(f"number: expected NUMBER=USER, got {item!r}")
        if user:
            numbers[number] = user
        else:
            numbers.pop(number, None)
    extra["numbers"] = numbers
    return extra


def _check_line(record: Any) -> None:
    from .features.lines import check_line

    check_line(record)


def _cmd_line_add(args: argparse.Namespace) -> int:
    from .storage import LineRecord

    fields = _line_fields(args)
    fields.pop("account", None)
    fields.pop("domain", None)

    extra = _line_numbers(args, None)

    def build(old: Any) -> Any:
        return LineRecord(args.id, args.account, args.domain, extra=extra, **fields)

    _store(args, "line", args.id, build, _check_line, "lines", adding=True)
    print(f"line {args.id} added")
    return 0


def _cmd_line_set(args: argparse.Namespace) -> int:
    fields = _line_fields(args)
    if not fields and not getattr(args, "number", None):
        raise MssError("nothing to change: give at least one option")
    _line_numbers(args, None)  # errors before opening the storage
    _store(
        args,
        "line",
        args.id,
        lambda old: dataclasses.replace(old, extra=_line_numbers(args, old), **fields),
        _check_line,
        "lines",
        adding=False,
    )
    print(f"line {args.id} updated")
    return 0


def _cmd_line_del(args: argparse.Namespace) -> int:
    if not _storage_call(args, lambda st: st.lines.delete(args.id)):
        raise MssError(f"line: no line {args.id}")
    print(f"line {args.id} deleted")
    return 0


def _cmd_line_register_now(args: argparse.Namespace) -> int:
    from .features.lines import REGISTER_NOW_KEY

    async def go(storage: Any) -> bool:
        line = await storage.lines.get(args.id)
        if line is None:
            return False
        await storage.kv.set(REGISTER_NOW_KEY + args.id, repr(time.time()))
        return True

    if not _storage_call(args, go):
        raise MssError(f"line: no line {args.id}")
    print(f"line {args.id}: registration requested (a running server sends it within a second)")
    return 0


def _cmd_line_list(args: argparse.Namespace) -> int:
    from .features.lines import auth_username, line_numbers, published_statuses

    async def go(storage: Any) -> tuple[list[Any], dict[str, Any]]:
        lines = await storage.lines.list()
        return lines, await published_statuses(storage, [line.id for line in lines])

    lines, states = _storage_call(args, go)
    rows = []
    for line in lines:
        st = states.get(line.id, {})
        policy = "default" if line.new_call_id is None else ("new" if line.new_call_id else "same")
        rows.append(
            {
                "id": line.id,
                "account": line.account,
                "domain": line.domain,
                "password_set": bool(line.password),
                "auth_user": auth_username(line),
                "auth_with_domain": line.auth_with_domain,
                "proxy": line.proxy,
                "transport": line.transport,
                "register": line.register,
                "expires": line.expires,
                "call_id": policy,
                "contact_user": line.contact_user or line.account,
                "owner": line.owner,
                "numbers": line_numbers(line),
                "max_calls": line.max_calls,
                "no_answer_timeout": line.no_answer_timeout,
                "enabled": line.enabled,
                "state": st.get("state", "unknown"),
                "status": st.get("status"),
                "reason": st.get("reason", ""),
                "next_retry": st.get("next_retry"),
                "registered_until": st.get("registered_until"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no external lines")
        return 0
    print(f"{'ID':<12} {'ACCOUNT':<16} {'DOMAIN':<24} {'VIA':<22} {'STATE':<13} {'NEXT':<9} REASON")
    for r in rows:
        state = r["state"] if r["enabled"] else "disabled"
        via = f"{r['transport']}:{r['proxy']}" if r["proxy"] else r["transport"]
        print(
            f"{r['id']:<12} {r['account'][:16]:<16} {r['domain'][:24]:<24} {via[:22]:<22} "
            f"{state:<13} {_when(r['next_retry']):<9} {r['reason']}"
        )
    return 0


def _line_options(q: argparse.ArgumentParser, *, adding: bool) -> None:
    q.add_argument("id", help="the line's name")
    q.add_argument("--account", required=adding, help="the account (user name) at the provider")
    q.add_argument(
        "--domain",
        required=adding,
        metavar="HOST[:PORT]",
        help="the provider's domain / registrar (kept in the Request-URI, To and From)",
    )
    q.add_argument("--password", help="the provider password (stored: needed to answer challenges)")
    q.add_argument(
        "--auth-user", metavar="NAME", help="authorization user name (default: the account)"
    )
    _flag_pair(
        q,
        "auth-with-domain",
        "auth_with_domain",
        "authorization ID includes the domain: account@domain (IMS)",
        "authorization ID without the domain (default)",
    )
    q.add_argument(
        "--proxy",
        metavar="HOST[:PORT]",
        help="outbound proxy / SBC ('Via' address) the packets go to; '' = the domain",
    )
    q.add_argument(
        "--transport",
        choices=("udp", "tcp", "tls"),
        help="towards the proxy or domain (default udp)",
    )
    _flag_pair(q, "register", "register", "register to the provider (default)", "do not register")
    q.add_argument(
        "--expires", type=_int, metavar="S", help="registration expiry asked for (default 3600)"
    )
    q.add_argument(
        "--contact-user",
        metavar="USER",
        help="user part of the registered Contact (default: the account)",
    )
    q.add_argument(
        "--call-id",
        choices=("same", "new", "default"),
        help="REGISTER Call-ID: same (RFC 3261, CSeq+1), new (a new Call-ID each time), "
        "default (mss_var_param.ini gVarSipRegSameDialog, else same)",
    )
    q.add_argument(
        "--owner", metavar="NUMBER", help="local user receiving the line's incoming calls"
    )
    q.add_argument(
        "--number",
        action="append",
        metavar="NUMBER=USER",
        help="an incoming call to this called number (DID) rings USER instead of the "
        "owner; repeatable; NUMBER= removes it",
    )
    q.add_argument("--max-calls", type=_int, help="concurrent calls on the line (-1 = unlimited)")
    q.add_argument(
        "--no-answer-timeout",
        type=_int,
        metavar="S",
        help="seconds an outgoing call may ring (0 = the system timer)",
    )
    _enable_pair(q, "line")


# -- trunks -----------------------------------------------------------------------------------
def _trunk_fields(args: argparse.Namespace) -> dict[str, Any]:
    from .features.lines import parse_hostport

    fields: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        try:
            host, port = parse_hostport(args.host)
        except ValueError as exc:
            raise MssError(f"host: {exc}") from None
        fields["host"] = host
        if port is not None:
            fields["port"] = port
    if getattr(args, "port", None) is not None:
        if not 1 <= args.port <= 65535:
            raise MssError("port: must be 1..65535")
        fields["port"] = args.port
    for name in ("transport", "caller_number", "uri_params", "ping", "enabled"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if getattr(args, "description", None) is not None:
        fields["name"] = args.description
    for arg, name in (("max_in", "max_incoming"), ("max_out", "max_outgoing")):
        value = getattr(args, arg, None)
        if value is not None:
            fields[name] = _limit(value)
    if "uri_params" in fields:
        fields["uri_params"] = fields["uri_params"].lstrip(";")
    return fields


def _check_trunk(record: Any) -> None:
    from .features.trunks import check_trunk

    check_trunk(record)


def _cmd_trunk_add(args: argparse.Namespace) -> int:
    from .storage import TrunkRecord

    fields = _trunk_fields(args)
    host = fields.pop("host")

    _store(
        args,
        "trunk",
        args.id,
        lambda old: TrunkRecord(args.id, host, **fields),
        _check_trunk,
        "trunks",
        adding=True,
    )
    print(f"trunk {args.id} added")
    return 0


def _cmd_trunk_set(args: argparse.Namespace) -> int:
    fields = _trunk_fields(args)
    if not fields:
        raise MssError("nothing to change: give at least one option")
    _store(
        args,
        "trunk",
        args.id,
        lambda old: dataclasses.replace(old, **fields),
        _check_trunk,
        "trunks",
        adding=False,
    )
    print(f"trunk {args.id} updated")
    return 0


def _cmd_trunk_del(args: argparse.Namespace) -> int:
    if not _storage_call(args, lambda st: st.trunks.delete(args.id)):
        raise MssError(f"trunk: no trunk {args.id}")
    print(f"trunk {args.id} deleted")
    return 0


def _fmt_limit(value: int | None) -> str:
    return "-" if value is None else ("off" if value == 0 else str(value))


def _cmd_trunk_list(args: argparse.Namespace) -> int:
    from .features.trunks import published_statuses

    async def go(storage: Any) -> tuple[list[Any], dict[str, Any]]:
        trunks = await storage.trunks.list()
        return trunks, await published_statuses(storage, [t.id for t in trunks])

    trunks, states = _storage_call(args, go)
    rows = []
    for t in trunks:
        st = states.get(t.id, {})
        rows.append(
            {
                "id": t.id,
                "host": t.host,
                "port": t.port,
                "transport": t.transport,
                "description": t.name,
                "max_incoming": t.max_incoming,
                "max_outgoing": t.max_outgoing,
                "caller_number": t.caller_number,
                "uri_params": t.uri_params,
                "ping": t.ping,
                "enabled": t.enabled,
                "state": st.get("state", "unknown"),
                "status": st.get("status"),
                "reason": st.get("reason", ""),
                "rtt": st.get("rtt"),
                "last_ping": st.get("last_ping"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no SIP trunks")
        return 0
    print(f"{'ID':<12} {'PEER':<28} {'IN':<5} {'OUT':<5} {'CALLER':<12} {'STATE':<9} REASON")
    for r in rows:
        host = f"[{r['host']}]" if ":" in r["host"] else r["host"]
        peer = f"{r['transport']}:{host}:{r['port']}"
        state = r["state"] if r["enabled"] else "disabled"
        print(
            f"{r['id']:<12} {peer[:28]:<28} {_fmt_limit(r['max_incoming']):<5} "
            f"{_fmt_limit(r['max_outgoing']):<5} {r['caller_number'] or '-':<12} {state:<9} {r['reason']}"
        )
    return 0


def _trunk_options(q: argparse.ArgumentParser, *, adding: bool) -> None:
    q.add_argument("id", help="the trunk's name")
    q.add_argument(
        "--host",
        required=adding,
        metavar="HOST[:PORT]",
        help="the peer's address (trusted without digest)",
    )
    q.add_argument("--port", type=_int, help="the peer's port (default 5060)")
    q.add_argument("--transport", choices=("udp", "tcp", "tls"), help="default udp")
    q.add_argument(
        "--max-in",
        type=_int,
        metavar="N",
        help="concurrent incoming calls: -1 = unlimited (default), 0 = incoming disabled",
    )
    q.add_argument(
        "--max-out",
        type=_int,
        metavar="N",
        help="concurrent outgoing calls: -1 = unlimited (default), 0 = outgoing disabled",
    )
    q.add_argument(
        "--caller-number",
        metavar="NUMBER",
        help="unified caller number: replaces the caller number of outgoing calls ('' = keep)",
    )
    q.add_argument(
        "--uri-params", metavar="PARAMS", help="extra Request-URI parameters, e.g. 'user=phone'"
    )
    _flag_pair(q, "ping", "ping", "send OPTIONS pings for an up/down state (default)", "no pings")
    q.add_argument("--description", metavar="TEXT", help="what the trunk is")
    _enable_pair(q, "trunk")


# -- routes -----------------------------------------------------------------------------------
def _route_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for arg, name in (
        ("prefix", "prefix"),
        ("to", "target"),
        ("strip", "strip"),
        ("prepend", "prepend"),
        ("fallback", "fallback"),
        ("priority", "priority"),
        ("enabled", "enabled"),
    ):
        value = getattr(args, arg, None)
        if value is not None:
            fields[name] = value
    if "target" in fields:
        from .features.dialplan import parse_target

        try:
            kind, name = parse_target(fields["target"])
        except ValueError as exc:
            raise MssError(f"to: {exc}") from None
        fields["target"] = f"{kind}:{name}" if name or kind == "line" else kind
    if fields.get("strip") is not None and fields["strip"] < 0:
        raise MssError("strip: must be >= 0")
    return fields


def _check_route(record: Any) -> None:
    from .features.dialplan import check_route

    check_route(record)


def _cmd_route_add(args: argparse.Namespace) -> int:
    from .storage import RouteRecord

    fields = _route_fields(args)
    prefix = fields.pop("prefix")
    target = fields.pop("target")
    _store(
        args,
        "route",
        args.id,
        lambda old: RouteRecord(args.id, prefix, target, **fields),
        _check_route,
        "routes",
        adding=True,
    )
    print(f"route {args.id} added")
    return 0


def _cmd_route_set(args: argparse.Namespace) -> int:
    fields = _route_fields(args)
    if not fields:
        raise MssError("nothing to change: give at least one option")
    _store(
        args,
        "route",
        args.id,
        lambda old: dataclasses.replace(old, **fields),
        _check_route,
        "routes",
        adding=False,
    )
    print(f"route {args.id} updated")
    return 0


def _cmd_route_del(args: argparse.Namespace) -> int:
    if not _storage_call(args, lambda st: st.routes.delete(args.id)):
        raise MssError(f"route: no route {args.id}")
    print(f"route {args.id} deleted")
    return 0


def _cmd_route_list(args: argparse.Namespace) -> int:
    from .features.dialplan import DialPlan

    routes = _storage_call(args, lambda st: st.routes.list())
    ordered = DialPlan(routes).routes
    rows = [
        {
            "id": r.id,
            "prefix": r.prefix,
            "to": r.target,
            "strip": r.strip,
            "prepend": r.prepend,
            "fallback": r.fallback,
            "priority": r.priority,
            "enabled": r.enabled,
        }
        for r in ordered
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no routes: every number is a local user")
        return 0
    print(f"{'ID':<12} {'PREFIX':<10} {'TO':<20} {'STRIP':<6} {'PREPEND':<8} {'FALLBACK':<10} PRIO")
    for r in rows:
        prefix = r["prefix"] or "(any)"
        to = r["to"] if r["to"] != "line:" else "line: (first)"
        flag = "" if r["enabled"] else "  (disabled)"
        print(
            f"{r['id']:<12} {prefix:<10} {to:<20} {r['strip']:<6} {r['prepend'] or '-':<8} "
            f"{r['fallback'] or '-':<10} {r['priority']}{flag}"
        )
    return 0


def _cmd_route_resolve(args: argparse.Namespace) -> int:
    from .features.dialplan import DialPlan

    async def go(storage: Any) -> list[Any]:
        routes = await storage.routes.list()
        lines = [line.id for line in await storage.lines.list() if line.enabled]
        trunks = [t.id for t in await storage.trunks.list() if t.enabled]
        plan = DialPlan(routes, lines=lines, trunks=trunks, first_line=lines[0] if lines else None)
        is_user = await storage.users.get(args.number) is not None
        return plan.resolve(args.number, is_user=lambda n: is_user)

    steps = _storage_call(args, go)
    if args.json:
        print(
            json.dumps(
                [
                    {"kind": s.kind, "target": s.target, "number": s.number, "route": s.route}
                    for s in steps
                ],
                indent=2,
            )
        )
        return 0
    for i, s in enumerate(steps):
        where = f"user {s.user}" if s.kind == "user" else f"{s.kind} {s.target}"
        via = f" (route {s.route})" if s.route else " (local user: no route)"
        print(f"{'then ' if i else ''}{where}: {s.number}{via}")
    return 0


def _route_options(q: argparse.ArgumentParser, *, adding: bool) -> None:
    q.add_argument("id", help="the route's name")
    q.add_argument(
        "--prefix",
        required=adding,
        help="dialled-number prefix; the longest match wins ('' = any number)",
    )
    q.add_argument(
        "--to",
        required=adding,
        metavar="TARGET",
        help="user (the number is a local user), user:NUMBER, line:ID, line: (the first line) or trunk:ID",
    )
    q.add_argument("--strip", type=_int, metavar="N", help="leading digits removed (default 0)")
    q.add_argument("--prepend", metavar="DIGITS", help="digits added after stripping")
    q.add_argument(
        "--fallback",
        metavar="ROUTE",
        help="route tried next when this one answers 5xx or is over its limit",
    )
    q.add_argument(
        "--priority", type=_int, help="order among equal prefixes, lower first (default 0)"
    )
    _enable_pair(q, "route")


# -- parsers ----------------------------------------------------------------------------------
def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``line``, ``trunk`` and ``route`` to the ``mss`` sub-commands."""
    line = sub.add_parser(
        "line",
        help="external lines (provider / IMS registrations): add, set, del, list, register-now",
    )
    common(line)
    lsub = line.add_subparsers(dest="line_command", required=True, metavar="ACTION")
    q = lsub.add_parser("add", help="add an external line")
    common(q)
    _line_options(q, adding=True)
    q.set_defaults(func=_cmd_line_add)
    q = lsub.add_parser("set", help="change an external line")
    common(q)
    _line_options(q, adding=False)
    q.set_defaults(func=_cmd_line_set)
    q = lsub.add_parser("del", help="delete an external line (a running server unregisters it)")
    common(q)
    q.add_argument("id")
    q.set_defaults(func=_cmd_line_del)
    q = lsub.add_parser("list", help="list the lines with their registration state")
    common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_line_list)
    q = lsub.add_parser("register-now", help="ask the running server to register a line at once")
    common(q)
    q.add_argument("id")
    q.set_defaults(func=_cmd_line_register_now)

    trunk = sub.add_parser(
        "trunk", help="SIP trunks (peers trusted by address): add, set, del, list"
    )
    common(trunk)
    tsub = trunk.add_subparsers(dest="trunk_command", required=True, metavar="ACTION")
    q = tsub.add_parser("add", help="add a SIP trunk")
    common(q)
    _trunk_options(q, adding=True)
    q.set_defaults(func=_cmd_trunk_add)
    q = tsub.add_parser("set", help="change a SIP trunk")
    common(q)
    _trunk_options(q, adding=False)
    q.set_defaults(func=_cmd_trunk_set)
    q = tsub.add_parser("del", help="delete a SIP trunk")
    common(q)
    q.add_argument("id")
    q.set_defaults(func=_cmd_trunk_del)
    q = tsub.add_parser("list", help="list the trunks with their up/down state")
    common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_trunk_list)

    route = sub.add_parser("route", help="the dial plan: add, set, del, list, resolve")
    common(route)
    rsub = route.add_subparsers(dest="route_command", required=True, metavar="ACTION")
    q = rsub.add_parser("add", help="add a dial-plan route")
    common(q)
    _route_options(q, adding=True)
    q.set_defaults(func=_cmd_route_add)
    q = rsub.add_parser("set", help="change a dial-plan route")
    common(q)
    _route_options(q, adding=False)
    q.set_defaults(func=_cmd_route_set)
    q = rsub.add_parser("del", help="delete a dial-plan route")
    common(q)
    q.add_argument("id")
    q.set_defaults(func=_cmd_route_del)
    q = rsub.add_parser("list", help="list the routes in the order they are tried")
    common(q)
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_route_list)
    q = rsub.add_parser("resolve", help="show where a dialled number would go")
    common(q)
    q.add_argument("number")
    q.add_argument("--json", action="store_true", help="JSON output")
    q.set_defaults(func=_cmd_route_resolve)
