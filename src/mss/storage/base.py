"""Records and repository protocols of the storage layer.

Theory of operation
-------------------
Feature services (users, registrar, trunks, security, CDR...) talk to storage only through the
``typing.Protocol`` classes of this module; a backend (:mod:`.memory`, :mod:`.sqlite`; later
Redis/PostgreSQL) implements them. Every repository method is a coroutine so that a networked
backend can await its I/O. The SQLite backend runs its statements synchronously inside the
coroutines (an indexed statement costs tens of microseconds, less than a thread hop), except the
bulk reads marked *bulk* below (``users.list``, ``bindings.all``, ``bans.list``, ``cdrs.query``),
which may return thousands of rows and run on a reader connection in a worker thread.

Records are frozen, slotted dataclasses holding plain values. Mapping fields (``ha1``,
``extra``) are plain dicts: treat them as read-only (backends store and return copies).
Sequence fields are normalised to tuples. Times are wall-clock epoch seconds (``time.time()``),
never the loop's monotonic clock, because they outlive the process.

Invariants every backend keeps
------------------------------
1. **Atomic writes.** Each repository call is one transaction: it is written completely or not
   at all. :meth:`BindingRepo.apply` writes many AORs in one transaction (one commit, one fsync
   when durable): the registrar batches the REGISTERs that arrive together, commits once, then
   sends the 200s (RFC 3261 §10.3 step 8: the binding is stored before the answer).
2. **Change feed.** Every write appends :class:`Change` rows in the same transaction, with a
   sequence number that grows by one per row and is never reused. When a reader sees ``seq = N``
   committed, every change ``<= N`` is committed too (SQLite serialises writers), so a server that
   polls :meth:`ChangeFeed.latest` and reads :meth:`ChangeFeed.since` its last cursor misses
   nothing that another process (the CLI) wrote. ``Change.key == "*"`` means "any number of keys
   of this entity changed" (bulk purges); reload that entity. :meth:`ChangeFeed.prune` is the only
   write that appends no change; a consumer whose cursor is below :meth:`ChangeFeed.horizon`
   missed pruned changes and must reload everything.
3. **Bindings belong to users.** ``users.delete(number)`` deletes the user's bindings in the same
   transaction, and ``users.add`` drops stale bindings left under that number (a REGISTER batch
   that committed after a concurrent delete), so a re-created user starts unregistered. Bindings
   are stored in the order given and read back in that order.
4. **No SIP here.** Storage never imports SIP code: contacts, paths and sources are opaque text.

Entities named in the change feed: ``user``, ``binding`` (key = AOR), ``kv``, ``ban`` (key =
IP), ``cdr`` (key = record id), ``iplist`` (key = ``"<list> <network>"``), ``blacklist`` (key =
``"<caller_prefix> <called_prefix>"``), ``line``, ``trunk``, ``route`` (key = id), ``token``, ``voicemail`` (key =
``"<user> <id>"``), ``voicemail_mail`` (key = message id).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

__all__ = (
    "CDR_RESULTS",
    "MAIL_STATES",
    "BanRecord",
    "BanRepo",
    "BindingRecord",
    "BindingRepo",
    "BlacklistRecord",
    "BlacklistRepo",
    "CdrRecord",
    "CdrRepo",
    "Change",
    "ChangeFeed",
    "IpListRecord",
    "IpListRepo",
    "KeyValue",
    "KeyedRepo",
    "LineRecord",
    "LineRepo",
    "RouteRecord",
    "RouteRepo",
    "Storage",
    "TokenRecord",
    "TokenRepo",
    "TrunkRecord",
    "TrunkRepo",
    "UserRecord",
    "UserRepo",
    "VoicemailMailRecord",
    "VoicemailRecord",
    "VoicemailRepo",
)

#: Values of :attr:`CdrRecord.result`. ``interrupted``: the server stopped during the call (the
#: record written at answer time never got its end).
CDR_RESULTS = ("answered", "busy", "no_answer", "cancelled", "rejected", "failed", "interrupted")


def _tuple_field(record: object, name: str) -> None:
    """Normalise a sequence field to a tuple (lists read from JSON, callers passing lists)."""
    value = getattr(record, name)
    if type(value) is not tuple:
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be a sequence of strings, not {type(value).__name__}")
        object.__setattr__(record, name, tuple(value))


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A local user (an extension).

    Attributes:
        number: the user's number, also its AOR user part and its digest user name. The key.
        name: display name.
        ha1: digest HA1 per algorithm (``"MD5"``, ``"SHA-256"`` → lowercase hex of
            ``H(number:realm:password)``, RFC 7616 §3.4.2). The password itself is never stored.
        realm: the realm the HA1s were computed for; when it differs from the server's realm the
            user must set the password again.
        multi_device: one number, several devices (MSS "one number multi-devices").
        max_devices: bindings allowed when ``multi_device`` (MSS: 3).
        allow_ips: IP-authorised sources: ``"IP"``, ``"CIDR"``, ``"IP:PORT"`` or ``"[v6]:PORT"``.
        max_calls: concurrent calls (both directions) allowed; ``None`` = unlimited.
        max_outgoing: concurrent outgoing calls allowed; ``None`` = unlimited.
        created_at: when the user was added; ``add`` stamps it when 0.
        updated_at: when it last changed; ``add`` stamps it when 0, ``update`` always.
        extra: JSON object for later per-user settings (voicemail, forwarding...).
    """

    number: str
    name: str = ""
    ha1: Mapping[str, str] = field(default_factory=dict, hash=False)
    realm: str = ""
    multi_device: bool = False
    max_devices: int = 3
    allow_ips: tuple[str, ...] = ()
    max_calls: int | None = None
    max_outgoing: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _tuple_field(self, "allow_ips")


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """One registered contact of an AOR (RFC 3261 §10.3; RFC 5626 for ``instance``/``reg_id``).

    Attributes:
        aor: the user number the contact is bound to.
        contact: the Contact URI text as registered (``sip:1001@192.0.2.7:5060;ob``).
        expires_at: wall-clock epoch seconds when the binding lapses; expired when
            ``expires_at <= now``.
        call_id: Call-ID of the REGISTER that set it (RFC 3261 §10.3 step 7 ordering).
        cseq: CSeq number of that REGISTER.
        q: the contact's ``q`` parameter, ``None`` when absent.
        path: Path header values, top first (RFC 3327).
        source: where the REGISTER came from, ``"udp:127.0.0.1:5060"``; the flow to send to.
        user_agent: the User-Agent header.
        instance: the ``+sip.instance`` value (RFC 5626), ``""`` when absent.
        reg_id: the ``reg-id`` value (RFC 5626), ``None`` when absent.
        registered_at: when this contact was first registered.
    """

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    q: float | None = None
    path: tuple[str, ...] = ()
    source: str = ""
    user_agent: str = ""
    instance: str = ""
    reg_id: int | None = None
    registered_at: float = 0.0

    def __post_init__(self) -> None:
        _tuple_field(self, "path")


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change, as read from the change feed.

    Attributes:
        seq: position in the feed; grows by one per change, never reused.
        entity: ``"user"``, ``"binding"``, ``"kv"``, ``"ban"``, ``"cdr"``, later ``"line"``...
        key: the record's key (user number, AOR, IP...), or ``"*"`` for a bulk change.
        op: ``"put"`` (added or updated; for bindings: the AOR still has bindings) or
            ``"delete"``.
        at: wall-clock time of the write.
    """

    seq: int
    entity: str
    key: str
    op: str
    at: float


@dataclass(frozen=True, slots=True)
class BanRecord:
    """A banned source address (fail-to-ban or an operator's ban).

    Attributes:
        ip: the address as text (``"192.0.2.7"``, ``"2001:db8::1"``). The key.
        until: wall-clock end of the ban; ``None`` = until an operator lifts it.
        reason: why (``"5 failed authentications in 60 s"``).
        count: how many times this source was banned (ban time grows with it).
        first_at: when the source was first banned.
        last_at: when the current ban started.
        users: user names the source tried, most recent last (bounded by the caller).
    """

    ip: str
    until: float | None
    reason: str = ""
    count: int = 1
    first_at: float = 0.0
    last_at: float = 0.0
    users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _tuple_field(self, "users")


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """A call detail record (MSS: caller, dialled number, setup/alerting/answer/release times).

    The CDR feature writes a record with ``result="interrupted"`` when a call is answered and
    rewrites it (same ``id``) when the call ends, so a call cut by a crash stays visible.

    Attributes:
        id: unique id of the call (e.g. a UUID). The key.
        caller: calling number (From user; ``"anonymous"`` when withheld).
        dialed: the number as dialled (before the out-group prefix is stripped).
        callee: who answered or was tried last (user number, or the number sent out).
        setup_at: when the INVITE arrived.
        call_id: Call-ID of the caller's leg.
        caller_addr: the caller's source (``"udp:192.0.2.7:5060"``).
        callee_addr: where the answering leg went.
        direction: ``"internal"``, ``"inbound"`` or ``"outbound"``.
        route: the line or trunk used (``"line:1"``, ``"trunk:carrier"``), ``""`` if internal.
        ring_at: first 180/183; ``None`` if none.
        answer_at: 200 OK; ``None`` if not answered.
        end_at: release; ``None`` while the call runs (or when interrupted).
        duration: seconds from answer to release, 0 if not answered.
        status: final SIP status sent to the caller (200, 486, 480...), ``None`` if none.
        cause: release cause (``cause`` of a received Reason header, RFC 3326), ``None`` if none.
        reason: its text, or a short description.
        hangup: who released: ``"caller"``, ``"callee"``, ``"system"`` or ``""``.
        result: one of :data:`CDR_RESULTS`.
        extra: JSON object for later fields.
    """

    id: str
    caller: str
    dialed: str
    setup_at: float
    callee: str = ""
    call_id: str = ""
    caller_addr: str = ""
    callee_addr: str = ""
    direction: str = "internal"
    route: str = ""
    ring_at: float | None = None
    answer_at: float | None = None
    end_at: float | None = None
    duration: float = 0.0
    status: int | None = None
    cause: int | None = None
    reason: str = ""
    hangup: str = ""
    result: str = "failed"
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)


# Records of later features: the protocols below are implemented by the issue named on each.


@dataclass(frozen=True, slots=True)
class LineRecord:
    """An external line: a registration to a provider (MSS "external line").

    Stored by every backend (table ``lines``); ``mss.features.lines`` gives it its meaning.

    Attributes:
        id: operator-chosen id. The key.
        account: the account (user part) at the provider.
        domain: the provider's domain (used in URIs even when unreachable).
        password: the provider password, needed in the clear to answer challenges.
        auth_user: authorization user name; ``""`` = ``account``, or ``account@domain`` when
            ``auth_with_domain`` (IMS).
        auth_with_domain: "the authorization ID includes address information".
        proxy: the "Via" (outbound proxy / SBC) ``host[:port]`` packets go to; ``""`` = domain.
        transport: ``"udp"``, ``"tcp"`` or ``"tls"`` (towards the proxy, else the domain).
        register: whether to register at all.
        expires: requested registration expiry, seconds.
        new_call_id: ``True``: a new Call-ID with every REGISTER (some providers need it);
            ``False``: one Call-ID, CSeq + 1 (RFC 3261 §10.2.4); ``None``: the global default
            (``[sip] gVarSipRegSameDialog`` of ``mss_var_param.ini``, else one Call-ID).
        owner: local user receiving incoming calls on the line (``""`` = the attendant).
        max_calls: concurrent calls on the line; ``None`` = unlimited.
        no_answer_timeout: seconds; 0 = the system timer.
        enabled: the line is in use.
        contact_user: user part of the Contact we register; ``""`` = ``account``.
    """

    id: str
    account: str
    domain: str
    password: str = ""
    auth_user: str = ""
    auth_with_domain: bool = False
    proxy: str = ""
    transport: str = "udp"
    register: bool = True
    expires: int = 3600
    new_call_id: bool | None = None
    owner: str = ""
    max_calls: int | None = None
    no_answer_timeout: int = 0
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)
    contact_user: str = ""


@dataclass(frozen=True, slots=True)
class TrunkRecord:
    """A SIP trunk: a peer trusted by address and port (MSS "SIP trunk").

    Stored by every backend (table ``trunks``); ``mss.features.trunks`` gives it its meaning.

    Attributes:
        id: operator-chosen id (the trunk's name in the CLI). The key.
        host: the peer's IP address or name.
        port: its port.
        transport: ``"udp"``, ``"tcp"`` or ``"tls"``.
        name: the operator's description.
        max_incoming: concurrent incoming calls; ``None`` = unlimited, 0 = refused.
        max_outgoing: concurrent outgoing calls; ``None`` = unlimited, 0 = refused.
        caller_number: "unified caller number": replaces the caller number of outgoing calls
            (``""`` = keep the caller's).
        uri_params: extra Request-URI parameters of outgoing calls (``"user=phone;x=y"``).
        ping: send OPTIONS pings to learn the trunk's up/down state.
    """

    id: str
    host: str
    port: int = 5060
    transport: str = "udp"
    name: str = ""
    max_incoming: int | None = None
    max_outgoing: int | None = None
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)
    caller_number: str = ""
    uri_params: str = ""
    ping: bool = True


@dataclass(frozen=True, slots=True)
class RouteRecord:
    """A dial-plan route: numbers starting with ``prefix`` go to a local user, a line or a trunk.

    Stored by every backend (table ``routes``); ``mss.features.dialplan`` gives it its meaning.

    Attributes:
        id: operator-chosen id. The key.
        prefix: dialled-number prefix (the out-group ``9`` included); ``""`` matches everything.
        target: ``"user"`` (the transformed number is a local user), ``"user:<number>"``,
            ``"line:<id>"``, ``"line:"`` (the first enabled line) or ``"trunk:<id>"``.
        priority: lower first among equally long prefixes.
        strip: leading digits removed before sending.
        prepend: digits added after stripping.
        fallback: id of the route tried next when this one answers 5xx or is over its limit
            (``""`` = none).
    """

    id: str
    prefix: str
    target: str
    priority: int = 0
    strip: int = 0
    prepend: str = ""
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0
    fallback: str = ""


@dataclass(frozen=True, slots=True)
class IpListRecord:
    """One entry of a named IP list (``"black"``, ``"white"``; later ``"api"``...).

    The key is ``(list_name, network)``. ``mss.features.security`` gives ``"black"`` (dropped
    before parse) and ``"white"`` (never banned by fail-to-ban) their meaning.

    Attributes:
        list_name: the list's name.
        network: ``"IP"`` or ``"CIDR"``, canonical text (the feature normalises it).
        note: operator's note.
        created_at: when it was added; ``add`` stamps it when 0.
    """

    list_name: str
    network: str
    note: str = ""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class BlacklistRecord:
    """A system blacklist record (MSS): block ``rate`` % of matching calls.

    The key is ``(caller_prefix, called_prefix)``; the longest called-prefix match wins, then
    the longest caller-prefix match (``mss.features.blacklist``).

    Attributes:
        caller_prefix: caller number prefix; ``"*"`` = any, ``"anonymous"`` = withheld callers.
        called_prefix: called number prefix; ``"*"`` = any.
        rate: 0-100, percentage of matching calls blocked (backends reject other values).
        note: the operator's description.
        created_at: when it was first stored; ``put`` stamps it when 0.
    """

    caller_prefix: str
    called_prefix: str
    rate: int = 100
    note: str = ""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A management API token. Only a hash of the secret is stored.

    Attributes:
        id: public id of the token. The key.
        name: what it is for.
        secret_hash: SHA-256 hex of the secret part.
        scopes: granted scopes (``"read"``, ``"users:write"``...).
        expires_at: wall-clock expiry; ``None`` = never.
        last_used_at: 0 when never used.
    """

    id: str
    name: str
    secret_hash: str
    scopes: tuple[str, ...] = ()
    created_at: float = 0.0
    expires_at: float | None = None
    last_used_at: float = 0.0

    def __post_init__(self) -> None:
        _tuple_field(self, "scopes")


@dataclass(frozen=True, slots=True)
class VoicemailRecord:
    """A voicemail message (issue 10). The audio is a WAV file under the data dir.

    Attributes:
        id: unique id. The key.
        user: the mailbox (the called user's number).
        caller: the caller's number; caller_display its display name ("" if none).
        call_id: Call-ID of the caller's leg (links the CDR).
        started_at: wall-clock time the recording started.
        duration: seconds of audio.
        path: the WAV file, relative to the data dir (``voicemail/<user>/<id>.wav``).
        read: heard or marked read (MWI counts unread messages as new, RFC 3842).
        created_at: when the row was stored; ``add`` stamps it when 0.
    """

    id: str
    user: str
    caller: str
    started_at: float
    caller_display: str = ""
    call_id: str = ""
    duration: float = 0.0
    path: str = ""
    read: bool = False
    created_at: float = 0.0


#: Values of :attr:`VoicemailMailRecord.state`.
MAIL_STATES = ("queued", "sent", "failed")


@dataclass(frozen=True, slots=True)
class VoicemailMailRecord:
    """The e-mail of one voicemail message in the durable outbox.

    Attributes:
        message_id: the :class:`VoicemailRecord` id. The key (one e-mail per message).
        to: recipient address.
        attempts: delivery attempts made so far.
        next_try: wall-clock time of the next attempt (while ``queued``).
        state: one of :data:`MAIL_STATES`.
        last_error: the last SMTP error or reply ("" if none).
        updated_at: when the row last changed; ``add``/``update_mail`` stamp it.
    """

    message_id: str
    to: str
    attempts: int = 0
    next_try: float = 0.0
    state: str = "queued"
    last_error: str = ""
    updated_at: float = 0.0


# --------------------------------------------------------------------------------------------
# Repositories
# --------------------------------------------------------------------------------------------

R = TypeVar("R")


class UserRepo(Protocol):
    """Local users, keyed by number. Writes append ``user`` changes."""

    async def get(self, number: str) -> UserRecord | None:
        """The user, or ``None``."""
        ...

    async def list(self) -> builtins.list[UserRecord]:
        """Every user, sorted by number (code point order). *Bulk.*"""
        ...

    async def add(self, user: UserRecord) -> None:
        """Add a user; stamps ``created_at``/``updated_at`` when 0; drops stale bindings.

        Raises:
            AlreadyExists: a user with that number exists.
            ValueError: ``extra`` is not JSON-serialisable.
        """
        ...

    async def update(self, user: UserRecord) -> None:
        """Replace a user; keeps the stored ``created_at`` and stamps ``updated_at``.

        Raises:
            NotFound: no user with that number.
            ValueError: ``extra`` is not JSON-serialisable.
        """
        ...

    async def delete(self, number: str) -> bool:
        """Delete a user and its bindings; ``False`` if there was no such user."""
        ...


class BindingRepo(Protocol):
    """Registrar bindings (location service), keyed by AOR. Writes append ``binding`` changes.

    The registrar computes the complete new binding set of an AOR (RFC 3261 §10.3 steps 6-7)
    and stores it with :meth:`replace` or, batched, :meth:`apply`.
    """

    async def for_aor(self, aor: str) -> builtins.list[BindingRecord]:
        """The AOR's bindings in the order stored, expired ones included."""
        ...

    async def all(self) -> builtins.list[BindingRecord]:
        """Every binding, by AOR then stored order. *Bulk.*"""
        ...

    async def replace(self, aor: str, bindings: Sequence[BindingRecord]) -> None:
        """Atomically make ``bindings`` the complete binding set of ``aor`` (empty = none).

        Raises:
            ValueError: a binding's ``aor`` is not ``aor``.
            AlreadyExists: two bindings have the same contact.
        """
        ...

    async def apply(self, changes: Sequence[tuple[str, Sequence[BindingRecord]]]) -> None:
        """:meth:`replace` for several AORs in one transaction (one commit): all or nothing.

        When an AOR appears more than once, the last set wins (as if applied in order).

        Raises:
            ValueError: a binding's ``aor`` differs from its entry's AOR (nothing written).
            AlreadyExists: a set names one contact twice (nothing written).
        """
        ...

    async def purge_expired(self, now: float) -> int:
        """Delete bindings with ``expires_at <= now``; returns how many."""
        ...


class ChangeFeed(Protocol):
    """The log of committed changes, for caches in this and other processes."""

    async def latest(self) -> int:
        """The sequence number of the last committed change; 0 before any."""
        ...

    async def since(self, seq: int, *, limit: int | None = None) -> builtins.list[Change]:
        """Changes with ``seq`` greater than ``seq``, oldest first, at most ``limit``."""
        ...

    async def horizon(self) -> int:
        """Changes up to this sequence number were pruned (0 = none).

        A consumer whose cursor is below it missed changes and must reload everything.
        """
        ...

    async def prune(self, keep_last: int) -> int:
        """Forget all but the last ``keep_last`` changes; returns how many were removed."""
        ...


class KeyValue(Protocol):
    """Small settings and secrets (the nonce secret...). Writes append ``kv`` changes."""

    async def get(self, key: str) -> str | None:
        """The value, or ``None``."""
        ...

    async def set(self, key: str, value: str) -> None:
        """Set (create or replace) a value."""
        ...

    async def setdefault(self, key: str, value: str) -> str:
        """Set ``value`` unless the key exists; returns the stored value.

        Atomic across processes: two servers generating a secret at once end up with one.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Delete a value; ``False`` if it did not exist."""
        ...


class BanRepo(Protocol):
    """Banned sources, keyed by IP text, so bans survive restarts. Writes append ``ban``."""

    async def get(self, ip: str) -> BanRecord | None:
        """The ban, or ``None`` (expired bans stay until purged)."""
        ...

    async def list(self) -> builtins.list[BanRecord]:
        """Every ban, sorted by IP text. *Bulk.*"""
        ...

    async def put(self, ban: BanRecord) -> None:
        """Create or replace the ban of ``ban.ip``."""
        ...

    async def delete(self, ip: str) -> bool:
        """Lift a ban; ``False`` if there was none."""
        ...

    async def purge_expired(self, now: float) -> int:
        """Delete bans with ``until <= now`` (never the ``until=None`` ones); returns how many.

        Appends one ``("ban", "*", "delete")`` change when something was deleted.
        """
        ...


class CdrRepo(Protocol):
    """Call detail records, keyed by id. Writes append ``cdr`` changes."""

    async def put(self, cdr: CdrRecord) -> None:
        """Create or replace the record ``cdr.id``.

        Raises:
            ValueError: ``extra`` is not JSON-serialisable.
        """
        ...

    async def put_many(self, cdrs: Sequence[CdrRecord]) -> None:
        """Create or replace several records in one write (SQLite: one transaction).

        All or nothing: when one record cannot be stored none is (a later record of the same id
        replaces an earlier one). Appends one ``cdr`` change per record.

        Raises:
            ValueError: an ``extra`` is not JSON-serialisable.
        """
        ...

    async def get(self, id: str) -> CdrRecord | None:
        """The record, or ``None``."""
        ...

    async def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        number: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> builtins.list[CdrRecord]:
        """Records with ``since <= setup_at < until`` by ``(setup_at, id)``. *Bulk.*

        Args:
            since: earliest ``setup_at``, inclusive; ``None`` = no bound.
            until: latest ``setup_at``, exclusive; ``None`` = no bound.
            number: only records whose caller, dialled number or callee equals it.
            limit: at most this many records.
            offset: skip this many first (paging).
        """
        ...

    async def purge_before(self, t: float) -> int:
        """Delete records with ``setup_at < t`` (retention); returns how many.

        Appends a ``("cdr", "*", "delete")`` change when something was deleted (SQLite deletes
        in transactions of 1000 rows, yielding to the loop between them: one change each).
        """
        ...


class KeyedRepo(Protocol[R]):
    """CRUD over records keyed by a string ``id`` (lines, trunks, routes, tokens...)."""

    async def get(self, id: str) -> R | None:
        """The record, or ``None``."""
        ...

    async def list(self) -> builtins.list[R]:
        """Every record, sorted by id."""
        ...

    async def add(self, record: R) -> None:
        """Raises: AlreadyExists."""
        ...

    async def update(self, record: R) -> None:
        """Raises: NotFound."""
        ...

    async def delete(self, id: str) -> bool:
        """``False`` if there was no such record."""
        ...


class LineRepo(KeyedRepo[LineRecord], Protocol):
    """External lines (entity ``line``, key = id)."""


class TrunkRepo(KeyedRepo[TrunkRecord], Protocol):
    """SIP trunks (entity ``trunk``, key = id)."""

    async def by_address(self, host: str, port: int) -> TrunkRecord | None:
        """The enabled trunk trusted at ``host:port``, or ``None``."""
        ...


class RouteRepo(KeyedRepo[RouteRecord], Protocol):
    """Dial-plan routes (entity ``route``, key = id)."""


class IpListRepo(Protocol):
    """Named IP lists (entity ``iplist``, key ``"<list> <network>"``)."""

    async def list(self, name: str | None = None) -> builtins.list[IpListRecord]:
        """Entries of list ``name`` (every list when ``None``), sorted by list then network."""
        ...

    async def add(self, record: IpListRecord) -> None:
        """Raises: AlreadyExists."""
        ...

    async def delete(self, name: str, network: str) -> bool:
        """``False`` if there was no such entry."""
        ...


class BlacklistRepo(Protocol):
    """The system blacklist (entity ``blacklist``, key ``"<caller_prefix> <called_prefix>"``)."""

    async def list(self) -> builtins.list[BlacklistRecord]:
        """Every record, sorted by (called_prefix, caller_prefix)."""
        ...

    async def put(self, record: BlacklistRecord) -> None:
        """Create or replace the record with the same two prefixes (keeps ``created_at``).

        Raises:
            ValueError: ``rate`` is not an int in 0..100, or a prefix is empty.
        """
        ...

    async def delete(self, caller_prefix: str, called_prefix: str) -> bool:
        """``False`` if there was no such record."""
        ...


class TokenRepo(KeyedRepo[TokenRecord], Protocol):
    """Management API tokens (entity ``token``, key = id; ``add`` stamps ``created_at`` when 0).

    Revoking a token deletes it: a deleted id no longer authenticates."""

    async def touch(self, id: str, at: float) -> None:
        """Record a use (``last_used_at``); appends no change (it is not configuration)."""
        ...


class VoicemailRepo(Protocol):
    """Voicemail messages and their e-mail outbox (issue 10).

    Message writes append ``voicemail`` changes with key ``"<user> <id>"`` (so a follower knows
    whose message-waiting state to refresh); outbox writes append ``voicemail_mail`` changes
    (key = message id). Deleting a message deletes its outbox row in the same transaction.
    """

    async def get(self, id: str) -> VoicemailRecord | None:
        """The message, or ``None``."""
        ...

    async def for_user(self, user: str) -> builtins.list[VoicemailRecord]:
        """The mailbox's messages, oldest first (``started_at``, then id)."""
        ...

    async def summary(self) -> dict[str, tuple[int, int]]:
        """``{user: (unread, read)}`` for every user with messages."""
        ...

    async def add(self, record: VoicemailRecord, mail: VoicemailMailRecord | None = None) -> None:
        """Store a message and, in the same transaction, its queued e-mail.

        Stamps ``created_at`` (and the mail's ``updated_at``) when 0.

        Raises:
            AlreadyExists: a message with that id exists.
            ValueError: a field the table would refuse (empty id or user, mail for another id,
                unknown mail state).
        """
        ...

    async def mark_read(self, id: str, read: bool = True) -> bool:
        """Set the read flag; ``False`` if there was no such message."""
        ...

    async def delete(self, id: str) -> bool:
        """Delete the message and its outbox row; ``False`` if there was no such message."""
        ...

    async def mail(self, message_id: str) -> VoicemailMailRecord | None:
        """The outbox row of a message, or ``None``."""
        ...

    async def mails(self, state: str | None = None) -> builtins.list[VoicemailMailRecord]:
        """Outbox rows (of one state when given), by ``next_try`` then message id."""
        ...

    async def due_mails(self, now: float, limit: int = 100) -> builtins.list[VoicemailMailRecord]:
        """``queued`` rows with ``next_try <= now``, earliest first, at most ``limit``."""
        ...

    async def update_mail(self, mail: VoicemailMailRecord) -> bool:
        """Replace an outbox row (stamps ``updated_at``); ``False`` if there is none (the
        message was deleted meanwhile).

        Raises:
            ValueError: unknown state.
        """
        ...


class Storage(Protocol):
    """A storage backend: the repositories plus the lifecycle.

    Construct it (no I/O), then ``await storage.open()`` (creates or migrates the database) and
    ``await storage.close()``; or ``async with storage:``. One instance serves one event loop.
    ``voicemail`` holds the voicemail messages and their e-mail outbox (issue 10).
    """

    @property
    def users(self) -> UserRepo: ...

    @property
    def bindings(self) -> BindingRepo: ...

    @property
    def changes(self) -> ChangeFeed: ...

    @property
    def kv(self) -> KeyValue: ...

    @property
    def bans(self) -> BanRepo: ...

    @property
    def cdrs(self) -> CdrRepo: ...

    @property
    def iplists(self) -> IpListRepo: ...

    @property
    def blacklist(self) -> BlacklistRepo: ...

    @property
    def tokens(self) -> TokenRepo: ...

    @property
    def lines(self) -> LineRepo: ...

    @property
    def trunks(self) -> TrunkRepo: ...

    @property
    def routes(self) -> RouteRepo: ...

    @property
    def voicemail(self) -> VoicemailRepo: ...

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (0 before :meth:`open`)."""
        ...

    async def open(self) -> None:
        """Open (create, migrate) the store. Idempotent.

        Raises:
            SchemaError: the database is newer than this code or not an mss database.
            StorageError: it cannot be opened.
        """
        ...

    async def close(self) -> None:
        """Release the store. Idempotent."""
        ...

    async def __aenter__(self) -> Storage: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
