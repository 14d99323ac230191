"""Assembles the server from its configuration and runs it (house style 9: injected, no globals).

``Server(config)`` builds the clock, the transports, the SIP core and the features; ``await
server.start()`` binds the listeners, ``await server.stop()`` releases them. ``run(config)`` does
both around the asyncio loop (uvloop when installed and enabled) and stops cleanly on SIGINT and
SIGTERM. Embedding programs use ``Server`` inside their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import fastsip
from fastsip.limits import Limits
from fastsip.transaction import Timers

from .config import Config
from .features.blacklist import SystemBlacklist
from .features.calls import CallHook, CallService
from .features.cdr import CdrService
from .features.decisions import DecisionLog
from .features.dialplan import DialPlanService, ensure_default_routes
from .features.events import EventHub, SecurityLogBridge, UserStatusTracker
from .features.external import ExternalCalls
from .features.lines import REGISTER_NOW_KEY, LineService
from .features.location import LocationService
from .features.security import SecurityPolicy
from .features.tokens import TokenService
from .features.trunks import TrunkService
from .features.users import UserDirectory
from .features.voicemail import VoicemailService
from .sip.auth import Authenticator
from .sip.b2bua import B2bua
from .sip.core import SipCore
from .sip.lines import LineRegistrations
from .sip.mwi import MwiNotifier
from .sip.registrar import Registrar
from .sip.router import MethodRouter
from .sip.trunks import TrunkPinger
from .sip.voicemail import VoicemailMedia
from .storage import open_storage
from .storage.base import Storage
from .transport.clock import Clock
from .transport.layer import ListenerInfo, TransportLayer

__all__ = ("Server", "open_configured_storage", "resolve_realm", "run")

DEFAULT_REALM = "mss"


async def resolve_realm(config: Config, storage: Storage) -> str:
    """The digest realm, stable for the life of a data dir.

    ``sip.realm`` when configured; otherwise the realm recorded in storage on first use, which is
    ``sip.domain`` (or "mss" when no domain is set) at that time. It is not derived from the
    listeners or the host name, and a later ``--domain`` does not change it: the users' HA1s
    are computed for this realm by ``mss user add`` (often run before the first ``mss serve``),
    and a different realm would make every password fail. Changing ``sip.realm`` requires
    setting the passwords again.
    """
    if config.sip.realm:
        return config.sip.realm
    return await storage.kv.setdefault("sip.realm", config.sip.domain or DEFAULT_REALM)


async def open_configured_storage(config: Config) -> Storage:
    """Open (creating the data dir and schema on first use) the configured storage."""
    if config.storage.backend == "sqlite":
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    storage = open_storage(config.storage.backend, path=config.storage_path())
    await storage.open()
    return storage


async def server_secret(config: Config, storage: Storage) -> bytes:
    """The nonce HMAC secret: configured, else generated once and kept in storage."""
    if config.auth.secret:
        return config.auth.secret.encode()
    # setdefault is atomic across processes: two first starts agree on one secret
    secret = await storage.kv.setdefault("auth.secret", os.urandom(32).hex())
    return bytes.fromhex(secret)


log = logging.getLogger("mss")


class Server:
    """One mss server instance."""

    def __init__(self, config: Config, *, storage: Storage | None = None) -> None:
        self.config = config
        self.router = MethodRouter()
        self.clock: Clock | None = None
        self.transport: TransportLayer | None = None
        self.core: SipCore | None = None
        self.storage: Storage | None = storage
        self._own_storage = storage is None
        self.users: UserDirectory | None = None
        self.location: LocationService | None = None
        self.auth: Authenticator | None = None
        self.registrar: Registrar | None = None
        self.security: SecurityPolicy | None = None
        self.blacklist: SystemBlacklist | None = None
        self.calls: CallService | None = None
        self.cdr: CdrService | None = None
        self.b2bua: B2bua | None = None
        #: external lines, SIP trunks and the dial plan (issue 7)
        self.lines: LineService | None = None
        self.trunks: TrunkService | None = None
        self.dialplan: DialPlanService | None = None
        self.line_registrations: LineRegistrations | None = None
        self.trunk_pinger: TrunkPinger | None = None
        #: calls from and to lines and trunks (issue 7), plugged into the CallService
        self.external: ExternalCalls | None = None
        #: voicemail mailbox (issue 10): settings, messages, SMTP outbox; MWI subscriptions
        self.voicemail: VoicemailService | None = None
        self.mwi: MwiNotifier | None = None
        #: Python call-policy hooks (``on_call``); shared with the CallService once started
        self.call_hooks: list[CallHook] = []
        self._route_sources: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._change_seq = 0
        self._domains: list[str] | None = None
        self.started_at: float | None = None
        self._stop_event: asyncio.Event | None = None
        #: the periodic gc.freeze() of ``mss serve`` (None when embedded or turned off)
        self.gc_keeper: GcKeeper | None = None
        #: management API (issue 8): the event channel, /explain's ring buffer, the API server
        self.hub = EventHub()
        self.decisions = DecisionLog()
        self.user_status = UserStatusTracker(self.hub)
        self.tokens: TokenService | None = None
        self.api: Any = None  # mss.api.ApiServer once started
        self._security_bridge: SecurityLogBridge | None = None

    @property
    def listeners(self) -> list[ListenerInfo]:
        return list(self.transport.listeners) if self.transport is not None else []

    def port(self, transport: str = "udp") -> int:
        """The bound port of the first listener of ``transport`` (useful with port 0)."""
        for info in self.listeners:
            if info.transport == transport:
                return info.port
        raise LookupError(f"no {transport} listener")

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.clock = Clock(loop)
        limits = Limits(
            max_message_size=cfg.limits.max_message_size,
            max_headers=cfg.limits.max_headers,
            max_header_length=cfg.limits.max_header_length,
            max_via=cfg.limits.max_via,
        )
        stun_listen = None
        if cfg.stun.enabled and cfg.stun.port:
            stun_listen = (cfg.stun.host, cfg.stun.port)
        self.transport = TransportLayer(
            listen=[(lst.transport, lst.host, lst.port) for lst in cfg.transport.listen],
            clock=self.clock,
            limits=limits,
            tls_cert=cfg.tls.cert_file,
            tls_key=cfg.tls.key_file,
            tls_ca=cfg.tls.ca_file,
            idle_timeout=cfg.transport.idle_timeout,
            max_connections_per_source=cfg.transport.max_connections_per_source,
            max_connections=cfg.transport.max_connections,
            stun_listen=stun_listen,
            server_name=cfg.sip.server_name,
            recv_buffer=cfg.transport.recv_buffer,
        )
        self.core = SipCore(
            sender=self.transport,
            clock=self.clock,
            handler=self.router,
            timers=Timers(t1=cfg.timers.t1, t2=cfg.timers.t2, t4=cfg.timers.t4),
            server_name=cfg.sip.server_name,
        )
        self.transport.sink = self.core
        await self._start_features()
        await self.transport.start()
        self._start_outbound()
        self._tasks.append(asyncio.ensure_future(self._follow_changes()))
        self._tasks.append(asyncio.ensure_future(self._sweep_bindings()))
        self.started_at = loop.time()
        self._started_wall = time.time()
        await self._start_api()
        log.info(
            "mss started: fastsip %s, Cython extensions in use: %s, event loop: %s",
            fastsip.__version__,
            fastsip.USING_EXTENSIONS,
            type(loop).__module__,
        )

    async def _start_features(self) -> None:
        cfg = self.config
        if self.storage is None:
            self.storage = await open_configured_storage(cfg)
        storage = self.storage
        self._change_seq = await storage.changes.latest()
        realm = await resolve_realm(cfg, storage)
        self.users = UserDirectory(storage, realm=realm)
        await self.users.load()
        stale = [u.number for u in self.users.all() if u.realm != realm]
        if stale:
            log.warning(
                "users %s have passwords for another realm than %r: set their passwords again",
                ", ".join(stale[:20]),
                realm,
            )
        self.location = LocationService(
            storage,
            write_back=(
                cfg.registrar.write_back_interval if cfg.registrar.persist == "write-back" else None
            ),
        )
        await self.location.load()
        self.user_status.seed(self.location.all())
        self.location.on_expired = self.user_status.expired
        # Anti-scanning (issue 6): the gate in front of every datagram / connection, fail-to-ban
        # fed by the authenticator, and the system blacklist the call layer screens INVITEs with.
        assert self.clock is not None
        self.security = SecurityPolicy(
            cfg.security,
            storage=storage,
            clock=self.clock.now,
            summary_interval=cfg.security.drop_log_interval,
        )
        await self.security.start()
        if self.transport is not None:
            self.transport.gate = self.security
        self.blacklist = SystemBlacklist(status=cfg.security.blacklist_status)
        await self.blacklist.load(storage)
        self.auth = Authenticator(
            self.users,
            realm=realm,
            secret=await server_secret(cfg, storage),
            nonce_lifetime=cfg.auth.nonce_lifetime,
            failed_response=cfg.auth.failed_response,
            algorithms=cfg.auth.algorithms,
            events=self.security,
            decisions=self.decisions,
        )
        self.registrar = Registrar(
            users=self.users,
            location=self.location,
            auth=self.auth,
            domains=self.domains,
            default_expires=cfg.registrar.default_expires,
            min_expires=cfg.registrar.min_expires,
            max_expires=cfg.registrar.max_expires,
            on_change=self.user_status.bindings_changed,
            decisions=self.decisions,
        )
        self.router.route("REGISTER", self.registrar.on_register)
        await self._start_pbx()
        await self._start_voicemail()
        await self._start_calls()
        log.info("%d users, %d live bindings", len(self.users), self.location.count())

    # -- external lines, SIP trunks, dial plan (issue 7) -----------------------------------
    async def _start_pbx(self) -> None:
        """Load lines, trunks and the dial plan (first-run defaults included)."""
        cfg = self.config
        storage = self.storage
        assert storage is not None and self.users is not None
        self.lines = LineService(storage, config=cfg.lines, data_dir=cfg.data_dir)
        await self.lines.load()
        self.trunks = TrunkService(storage, config=cfg.trunks)
        await self.trunks.load()
        await ensure_default_routes(storage)
        lines, trunks, users = self.lines, self.trunks, self.users
        self.dialplan = DialPlanService(
            storage,
            lines=lambda: [line.id for line in lines.lines() if line.enabled],
            trunks=trunks.enabled_ids,
            is_user=lambda number: users.get(number) is not None,
        )
        await self.dialplan.load()
        log.info(
            "%d external lines, %d SIP trunks, %d dial-plan routes",
            len(lines.lines()),
            len(trunks.trunks()),
            len(self.dialplan.plan),
        )

    def _start_outbound(self) -> None:
        """Once the listeners are bound: register the lines, ping the trunks."""
        cfg = self.config
        assert self.core is not None and self.clock is not None
        if self.lines is not None:
            self.line_registrations = LineRegistrations(
                core=self.core,
                clock=self.clock,
                service=self.lines,
                local_address=self.local_address,
                server_name=cfg.sip.server_name,
                max_forwards=cfg.calls.max_forwards,
            )
            self.line_registrations.start()
        if self.trunks is not None:
            self.trunk_pinger = TrunkPinger(
                core=self.core,
                clock=self.clock,
                service=self.trunks,
                local_address=self.local_address,
                server_name=cfg.sip.server_name,
                interval=cfg.trunks.ping_interval,
                timeout=cfg.trunks.ping_timeout,
            )
            self.trunk_pinger.start()

    async def _apply_pbx_changes(self, changes: list[Any] | None) -> None:
        """Lines, trunks, routes and "register now" requests from the CLI (None: reload all)."""
        if self.lines is None or self.trunks is None or self.dialplan is None:
            return
        entities = None if changes is None else {c.entity for c in changes}
        rebuild = False
        if entities is None or "line" in entities:
            if changes is None:
                line_changes = await self.lines.reload_all()
            else:
                line_changes = await self.lines.reload(c.key for c in changes if c.entity == "line")
            if line_changes:
                rebuild = True
                names = sorted(r.id for o, n in line_changes if (r := n or o) is not None)
                log.info("reloaded lines %s", ", ".join(names))
                if self.line_registrations is not None:
                    self.line_registrations.apply(line_changes)
        if entities is None or "trunk" in entities:
            if changes is None:
                trunk_changes = await self.trunks.reload_all()
            else:
                trunk_changes = await self.trunks.reload(
                    c.key for c in changes if c.entity == "trunk"
                )
            if trunk_changes:
                rebuild = True
                names = sorted(t.id for o, n in trunk_changes if (t := n or o) is not None)
                log.info("reloaded trunks %s", ", ".join(names))
                if self.trunk_pinger is not None:
                    self.trunk_pinger.apply(trunk_changes)
        if entities is None or "route" in entities:
            await self.dialplan.load()
            log.info("reloaded the dial plan: %d routes", len(self.dialplan.plan))
        elif rebuild:
            self.dialplan.rebuild()
        if changes is not None and self.line_registrations is not None:
            for c in changes:
                if c.entity == "kv" and c.op == "put" and c.key.startswith(REGISTER_NOW_KEY):
                    line_id = c.key[len(REGISTER_NOW_KEY) :]
                    if self.line_registrations.register_now(line_id):
                        log.info("line %s: register-now requested", line_id)

    async def _stop_pbx(self) -> None:
        if self.line_registrations is not None:
            await self.line_registrations.stop(unregister=self.config.lines.unregister_on_stop)
        if self.trunk_pinger is not None:
            await self.trunk_pinger.stop()
        if self.lines is not None:
            await self.lines.stop()
        if self.trunks is not None:
            await self.trunks.stop()

    # -- voicemail mailbox and MWI (issue 10) ---------------------------------------------
    async def _start_voicemail(self) -> None:
        """The mailbox (messages, SMTP outbox worker) and the message-summary notifier."""
        cfg = self.config
        assert self.storage is not None and self.users is not None
        assert self.auth is not None and self.core is not None
        self.voicemail = VoicemailService(
            self.storage,
            self.users,
            data_dir=cfg.data_dir,
            smtp=cfg.smtp,
            domain=cfg.sip.domain or "",
        )
        await self.voicemail.load()
        self.mwi = MwiNotifier(
            core=self.core,
            users=self.users,
            auth=self.auth,
            counts=self.voicemail.counts,
            local_address=self.local_address,
            domain=lambda: cfg.sip.domain or None,
            server_name=cfg.sip.server_name,
        )
        self.voicemail.listeners.append(self.mwi.counts_changed)
        self.router.route("SUBSCRIBE", self.mwi.on_subscribe)
        self.voicemail.start()

    # -- calls (issue 5) ------------------------------------------------------------------
    def on_call(self, hook: CallHook) -> CallHook:
        """Register an async call-policy function (usable as a decorator).

        ``hook(call: mss.CallInfo)`` runs for every new call before routing and returns
        ``mss.CONTINUE`` (or None), ``mss.reject(status, reason)`` or ``mss.route(number)`` /
        ``mss.route(uri="sip:...")``. Hooks run in registration order; the first decision other
        than continue wins. May be called before or after :meth:`start`.
        """
        self.call_hooks.append(hook)
        return hook

    async def _start_calls(self) -> None:
        cfg = self.config
        storage = self.storage
        assert storage is not None and self.users is not None and self.location is not None
        assert self.auth is not None and self.core is not None
        self.calls = CallService(
            self.users, self.location, no_answer_timeout=cfg.calls.no_answer_timeout
        )
        self.calls.hooks = self.call_hooks  # the same list: hooks added later apply too
        self.cdr = CdrService(storage.cdrs, storage.kv)
        await self.cdr.start()
        self.b2bua = B2bua(
            core=self.core,
            users=self.users,
            auth=self.auth,
            calls=self.calls,
            cdr=self.cdr,
            blacklist=self.blacklist,
            local_address=self.local_address,
            domain=lambda: cfg.sip.domain or None,
            is_self=self.is_self,
            max_forwards=cfg.calls.max_forwards,
            # issue 10: the answering machine (media side) over the mailbox
            voicemail=self.voicemail,
            voicemail_media=VoicemailMedia(
                rtp_port_min=cfg.media.rtp_port_min,
                rtp_port_max=cfg.media.rtp_port_max,
                rtp_host=cfg.media.rtp_host,
                silence_timeout=cfg.voicemail.silence_timeout,
            ),
        )
        b = self.b2bua
        self._start_external_calls()
        b.events = self.hub  # callStatus on the /events channel
        self.router.route("INVITE", b.on_invite)
        self.router.route("MESSAGE", b.on_message)
        for method in ("BYE", "INFO", "UPDATE", "PRACK", "NOTIFY"):
            self.router.route(method, b.on_in_dialog)
        self.router.options_handler = self._on_options
        self.router.on_cancel_call(b.on_cancel)
        self.router.on_ack_call(b.on_ack)
        self.router.on_stray_call(b.on_stray_response)

    def _start_external_calls(self) -> None:
        """Calls through external lines and SIP trunks: callers, dial-plan step, digest."""
        if self.calls is None or self.b2bua is None or self.dialplan is None:
            return
        if self.lines is None or self.trunks is None:
            return

        def line_address(line: Any) -> tuple[str, str, int] | None:
            regs = self.line_registrations
            return regs.call_target(line) if regs is not None else None

        def line_for_incoming(user: str | None, host: str, port: int) -> Any:
            regs = self.line_registrations
            return regs.line_for_incoming(user, host, port) if regs is not None else None

        def authorize(credentials: str, request: Any, response: Any) -> Any:
            regs = self.line_registrations
            return regs.authorize(credentials, request, response) if regs is not None else None

        self.external = ExternalCalls(
            calls=self.calls,
            dialplan=self.dialplan,
            lines=self.lines,
            trunks=self.trunks,
            line_address=line_address,
            line_for_incoming=line_for_incoming,
            events=self.hub,
        )
        self.external.install()
        self.b2bua.authorize = authorize

    def _on_options(self, ctx: Any) -> None:
        """OPTIONS inside a call is relayed to the other party; otherwise the server answers."""
        to = ctx.request.to
        if to is not None and to.tag is not None and self.b2bua is not None:
            self.b2bua.on_in_dialog(ctx)
        else:
            self.router.answer_options(ctx)

    def _route_source(self, host: str, family: int) -> str:
        """Our address on the route to ``host`` (for Via/Contact when bound to a wildcard)."""
        found = self._route_sources.get(host)
        if found is None:
            found = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.connect((host, 9))  # no packet is sent: this only asks the routing table
                    found = str(s.getsockname()[0])
            except OSError:
                pass
            if len(self._route_sources) > 4096:
                self._route_sources.clear()
            self._route_sources[host] = found
        return found

    def local_address(self, transport: str, host: str) -> tuple[str, int]:
        """The address and port to put in Via and Contact for messages sent to ``host``."""
        t = self.transport
        info = None
        if t is not None:
            info = t.listener_for(transport, host) or t.listener_for("udp", host)
        if info is None:
            return ("127.0.0.1", 5060)
        if info.host in ("0.0.0.0", "::", ""):
            return self._route_source(host, info.family), info.port
        return info.host, info.port

    def is_self(self, transport: str, host: str, port: int) -> bool:
        """True when ``transport:host:port`` is one of our own listeners (a routing loop)."""
        for info in self.listeners:
            if info.port != port or info.transport != transport:
                continue
            if info.host == host:
                return True
            if info.host in ("0.0.0.0", "::") and self._route_source(host, info.family) == host:
                return True
        return False

    def domains(self) -> list[str]:
        """The domains the registrar serves: the configured one, our addresses, localhost.

        With no ``sip.domain`` configured every domain is accepted ("*").
        """
        if self._domains is None:
            if not self.config.sip.domain:
                self._domains = ["*"]
            else:
                names = [self.config.sip.domain, "localhost", "127.0.0.1", "::1"]
                names += [
                    info.host for info in self.listeners if info.host not in ("0.0.0.0", "::")
                ]
                self._domains = names
        return self._domains

    async def _follow_changes(self) -> None:
        """Apply changes made by other processes (the CLI) within a second."""
        assert self.storage is not None and self.users is not None
        while True:
            await asyncio.sleep(0.5)
            try:
                latest = await self.storage.changes.latest()
                if latest == self._change_seq:
                    continue
                if self._change_seq < await self.storage.changes.horizon():
                    # changes we never saw were pruned: reload everything we follow
                    self._change_seq = latest
                    await self.users.load()
                    if self.security is not None:
                        await self.security.load_lists()
                        await self.security.reload_bans()
                    if self.blacklist is not None:
                        await self.blacklist.load(self.storage)
                    await self._apply_pbx_changes(None)
                    if self.voicemail is not None:
                        await self.voicemail.apply_changes(None)
                    continue
                changes = await self.storage.changes.since(self._change_seq)
                self._change_seq = latest
                await self._apply_security_changes(changes)
                await self._apply_pbx_changes(changes)
                if self.voicemail is not None:
                    await self.voicemail.apply_changes(changes)
                users = [c.key for c in changes if c.entity == "user"]
                if users:
                    await self.users.reload(users)
                    for c in changes:
                        if c.entity == "user" and c.op == "delete" and self.location is not None:
                            self.location.drop(c.key)
                            self.user_status.bindings_changed(c.key, [], reason="user deleted")
                    log.info("reloaded users %s", ", ".join(sorted(set(users))))
            except Exception:
                log.exception("following storage changes failed")

    async def _apply_security_changes(self, changes: list[Any]) -> None:
        """Bans, IP lists and blacklist records changed by the CLI (or another node)."""
        if self.security is not None and any(c.entity in ("ban", "iplist") for c in changes):
            await self.security.apply_changes(changes)
        if (
            self.blacklist is not None
            and self.storage is not None
            and any(c.entity == "blacklist" for c in changes)
        ):
            await self.blacklist.load(self.storage)
            log.info("reloaded the system blacklist: %d records", len(self.blacklist))

    async def _sweep_bindings(self) -> None:
        """Every minute: drop expired bindings; keep the change feed short."""
        while True:
            await asyncio.sleep(60)
            try:
                if self.location is not None:
                    await self.location.sweep()
                if self.storage is not None:
                    await self.storage.changes.prune(10000)
            except Exception:
                log.exception("periodic storage maintenance failed")

    # -- management API (issue 8) -----------------------------------------------------------
    async def _start_api(self) -> None:
        """The security-event bridge, the first admin token, and the API server if enabled."""
        cfg = self.config
        assert self.storage is not None
        self._security_bridge = SecurityLogBridge(self.hub, self.decisions)
        logging.getLogger("mss.security").addHandler(self._security_bridge)
        self.tokens = TokenService(self.storage.tokens, self.storage.kv)
        if self.lines is not None:
            self.lines.on_state(self._line_state_changed)
        if not cfg.api.enabled:
            return
        first = await self.tokens.bootstrap()
        if first is not None:
            # shown once: only its SHA-256 is stored
            log.warning(
                "first start: created the admin API token %s (shown only now; "
                "`mss token create` makes more)",
                first,
                extra={"event": "api_token"},
            )
        from .api import ApiServer, ApiServices, create_api

        services = ApiServices(
            storage=self.storage,
            users=self.users,  # type: ignore[arg-type]
            location=self.location,  # type: ignore[arg-type]
            tokens=self.tokens,
            hub=self.hub,
            decisions=self.decisions,
            status=self.user_status,
            system=self,
            security=self.security,
            blacklist=self.blacklist,
            calls=self if self.b2bua is not None else None,
            lines=self.lines,
            trunks=self.trunks,
            core=self.core,
            transport=self.transport.stats if self.transport is not None else None,
            counters={
                name: obj
                for name, obj in (
                    ("registrar", self.registrar),
                    ("auth", self.auth),
                    ("b2bua", self.b2bua),
                    ("cdr", self.cdr),
                    ("call_admission", self.calls),
                    ("voicemail", self.voicemail),
                    ("mwi", self.mwi),
                )
                if obj is not None
            },
            api_listen=cfg.api.listen,
            voicemail=self.voicemail,
        )
        self.api = ApiServer(
            create_api(services),
            host=cfg.api.host,
            port=cfg.api.port,
            ssl_certfile=cfg.api.tls_cert_file,
            ssl_keyfile=cfg.api.tls_key_file,
        )
        await self.api.start()
        services.api_listen = self.api.url

    def _line_state_changed(self, line_id: str, status: Any, event: Any) -> None:
        """``lineStatus`` on the event channel for every registration state change of a line."""
        self.hub.publish({"type": "lineStatus", **status.as_dict(), "event": event.as_dict()})

    async def _stop_api(self) -> None:
        self.hub.close()
        if self.api is not None:
            await self.api.stop()
            self.api = None
        if self._security_bridge is not None:
            logging.getLogger("mss.security").removeHandler(self._security_bridge)
            self._security_bridge = None

    def system_info(self) -> dict[str, Any]:
        """What ``GET /system`` and the metrics show about the running server."""
        loop_time = self.clock.now() if self.clock is not None else None
        uptime = 0.0
        if self.started_at is not None and loop_time is not None:
            uptime = max(0.0, loop_time - self.started_at)
        loop_name = ""
        with contextlib.suppress(RuntimeError):
            loop_name = type(asyncio.get_running_loop()).__module__
        return {
            "version": fastsip.__version__,
            "uptime": round(uptime, 3),
            "started_at": getattr(self, "_started_wall", None),
            "listeners": [repr(info) for info in self.listeners],
            "using_extensions": fastsip.USING_EXTENSIONS,
            "event_loop": loop_name,
        }

    def active_calls(self) -> list[dict[str, Any]]:
        """The calls in progress, as ``GET /calls`` shows them."""
        if self.b2bua is None:
            return []
        out = []
        for call in self.b2bua.calls_active():
            record = call.log
            out.append(
                {
                    "id": call.id,
                    "caller": record.caller,
                    "callee": record.callee or record.dialed,
                    "state": call.state,
                    "setup_at": record.setup_at,
                    "answer_at": record.answer_at,
                    "call_id": record.call_id,
                    "caller_addr": record.caller_addr,
                }
            )
        return out

    def hangup_call(self, id: str, reason: str) -> bool:
        """Release an active call (``DELETE /calls/{id}``); False when there is no such call."""
        if self.calls is None:
            return False
        return self.calls.hangup(id, reason=reason)

    async def stop(self) -> None:
        await self._stop_api()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self._stop_pbx()
        if self.b2bua is not None:
            await self.b2bua.close()  # before the mailbox: recordings cut by the stop are stored
        if self.voicemail is not None:
            await self.voicemail.stop()
        if self.mwi is not None:
            self.mwi.close()
        if self.cdr is not None:
            await self.cdr.stop()
        if self.security is not None:
            await self.security.stop()
        if self.transport is not None:
            await self.transport.stop()
        if self.location is not None:
            await self.location.close()  # write-back: what is staged reaches storage
        if self.clock is not None:
            self.clock.close()
        if self.storage is not None and self._own_storage:
            await self.storage.close()
        log.info("mss stopped")

    async def serve_forever(self) -> None:
        """Start, wait for SIGINT/SIGTERM (or :meth:`request_stop`), stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        self._stop_event = stop
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                pass
        try:
            await self.start()
            tcfg = self.config.transport
            tune_gc(tcfg.gc_threshold)
            if tcfg.gc_freeze_interval > 0:
                self.gc_keeper = GcKeeper(
                    freeze_interval=tcfg.gc_freeze_interval, full_interval=tcfg.gc_full_interval
                )
                self._tasks.append(asyncio.ensure_future(self.gc_keeper.run()))
            await stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()


def tune_gc(threshold: int) -> None:
    """Make Python's cyclic garbage collector cheap for a long-running server.

    The server's per-request objects die by reference counting (a request, its transaction
    and its response hold no cycles), but the collector still walks every tracked object:
    with the default threshold (700 allocations) it ran hundreds of times a second under
    load, and each full collection walked the whole heap (users, bindings, transactions kept
    for Timer J), up to 200 ms with the loop stopped (docs/performance.md). So: freeze what
    start-up built (it lives as long as the process) and collect the young generation every
    ``threshold`` allocations instead of 700. Cycles are still collected, just less often.
    ``threshold == 0`` leaves the collector as Python set it.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
    log.info(
        "garbage collector: threshold %d, %d start-up objects frozen",
        threshold,
        gc.get_freeze_count(),
        extra={"event": "gc_tuned"},
    )


class GcKeeper:
    """Keeps the garbage collector's pauses short in ``mss serve`` (``transport.gc_*``).

    A server under load keeps tens of thousands of objects alive for seconds (completed
    transactions wait 32 s for Timer J, RFC 3261 §17.2.2), and the cyclic collector walks every
    one of them, again and again as they age through its generations: pauses of 20-60 ms with
    the event loop stopped, which is what made mss miss the 10 ms response-time criterion long
    before it ran out of CPU (docs/performance.md). These objects die by reference counting,
    which ``gc.freeze()`` does not stop; so every ``freeze_interval`` what survived moves to the
    permanent generation and no collection walks it. Reference cycles among frozen objects are
    found every ``full_interval`` by one full collection (unfreeze, collect, freeze).
    """

    def __init__(self, *, freeze_interval: float, full_interval: float) -> None:
        if freeze_interval <= 0:
            raise ValueError("freeze_interval must be > 0")
        self.freeze_interval = freeze_interval
        self.full_interval = full_interval
        self.freezes = 0
        self.full_collections = 0
        #: objects the last full collection found unreachable, and how long it took (s)
        self.last_collected = 0
        self.last_pause = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.full_interval
        while True:
            await asyncio.sleep(self.freeze_interval)
            if self.full_interval > 0 and loop.time() >= next_full:
                next_full = loop.time() + self.full_interval
                self.full_collection()
            gc.freeze()
            self.freezes += 1

    def full_collection(self) -> int:
        """Collect everything once (frozen objects included); returns what was unreachable."""
        t0 = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.full_collections += 1
        self.last_collected = found
        self.last_pause = time.perf_counter() - t0
        log.debug(
            "full garbage collection: %d unreachable objects, %.1f ms",
            found,
            self.last_pause * 1000,
            extra={"event": "gc_full"},
        )
        return found


def _loop_factory(config: Config) -> Any:
    if config.transport.use_uvloop:
        try:
            import uvloop
        except ImportError:
            return None
        return uvloop.new_event_loop
    return None


def run(config: Config) -> int:
    """Run a server until SIGINT/SIGTERM. Returns the process exit status."""
    server = Server(config)
    factory = _loop_factory(config)
    if factory is not None and sys.version_info >= (3, 12):
        asyncio.run(server.serve_forever(), loop_factory=factory)
    elif factory is not None:
        loop = factory()
        try:
            loop.run_until_complete(server.serve_forever())
        finally:
            loop.close()
    else:
        asyncio.run(server.serve_forever())
    return 0
