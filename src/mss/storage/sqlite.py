"""SQLite backend (stdlib :mod:`sqlite3`): one database file in the data dir.

Theory of operation
-------------------
*Connections.* One writer/reader connection per :class:`SqliteStorage`, used from the event loop
thread: statements run synchronously inside the coroutines, because an indexed statement or a
commit without fsync costs tens of microseconds, less than a hop to a thread. The bulk reads
(``users.list``, ``bindings.all``, ``bans.list``, ``cdrs.query``) and WAL checkpoints run on a
second connection in a worker thread (``asyncio.to_thread``), so they never stall the loop.

*Transactions.* The connection is in autocommit mode (``isolation_level=None``); every write is
``BEGIN IMMEDIATE`` ... ``COMMIT`` around the statements of one repository call, rolled back on
any exception. ``IMMEDIATE`` takes the write lock up front, so a writer waits for another
process's writer (up to ``busy_timeout``) instead of failing with SQLITE_BUSY when it upgrades a
read lock. Writers of all processes are serialised by SQLite, so change-feed sequence numbers are
committed in order.

*Concurrency between processes.* ``PRAGMA journal_mode=WAL``: readers never block writers and
writers never block readers, so the CLI (``asyncio.run`` in its own process) can read and write
while the server runs. Two writers wait for each other up to ``busy_timeout`` (5 s by default);
after that the call raises :class:`~.errors.StorageError`. A waiting server blocks its loop for
that time, so CLI transactions must stay short (they are: one repository call each).

*Durability.* ``synchronous=NORMAL`` (default): a commit is written to the WAL file with
``write()`` but not fsynced, so it survives a crash or ``kill -9`` of the process (the OS has the
data) but the last transactions may be lost on power loss or an OS crash (the database stays
consistent). ``durable=True`` selects ``synchronous=FULL``: every commit fsyncs the WAL, so it
also survives power loss, at the cost of one fsync per commit (which is why the registrar batches
REGISTERs into one :meth:`~.base.BindingRepo.apply`).

*Checkpoints.* SQLite's automatic WAL checkpoints would run inside a commit on the loop thread
and copy up to 1000 pages with two fsyncs. They are disabled on the loop's connection; instead,
after about ``checkpoint_rows`` written rows, a passive checkpoint runs in a worker thread. With
``synchronous=NORMAL`` the loop still pays one fsync of the WAL header per checkpoint cycle, when
the next commit restarts the WAL. Other processes (the CLI) keep SQLite's automatic checkpoints.

*Schema.* ``PRAGMA application_id`` marks the file as an mss database and ``PRAGMA
user_version`` holds the schema version. :meth:`SqliteStorage.open` applies the missing
migrations of :mod:`.schema` in one transaction (with foreign keys off during it, then
``foreign_key_check``, as SQLite's ALTER TABLE procedure requires). A database with a newer
version, or a file that is not an mss database, raises :class:`~.errors.SchemaError` before
anything is written.

Foreign keys are enforced (``PRAGMA foreign_keys=ON``) for the tables of later migrations.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import _codec, _keyed, _voicemail
from ._codec import BAN_COLUMNS, BINDING_COLUMNS, CDR_COLUMNS, TOKEN_COLUMNS, USER_COLUMNS
from .base import (
    BanRecord,
    BindingRecord,
    BlacklistRecord,
    CdrRecord,
    Change,
    IpListRecord,
    LineRecord,
    RouteRecord,
    TokenRecord,
    TrunkRecord,
    UserRecord,
    VoicemailMailRecord,
    VoicemailRecord,
)
from .errors import AlreadyExists, NotFound, SchemaError, StorageError
from .schema import Migration, load_migrations

__all__ = (
    "APPLICATION_ID",
    "SqliteBans",
    "SqliteBindings",
    "SqliteBlacklist",
    "SqliteCdrs",
    "SqliteChangeFeed",
    "SqliteIpLists",
    "SqliteKeyValue",
    "SqliteKeyed",
    "SqliteStorage",
    "SqliteTokens",
    "SqliteTrunks",
    "SqliteUsers",
    "SqliteVoicemail",
)

_R = TypeVar("_R")

#: ``PRAGMA application_id`` of an mss database: "mss1".
APPLICATION_ID = 0x6D737331


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


_USER_SELECT = f"SELECT {', '.join(USER_COLUMNS)} FROM users"
_USER_INSERT = f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES ({_placeholders(12)})"
# Every column but the key and created_at, then the key.
_USER_UPDATE = (
    "UPDATE users SET "
    + ", ".join(f"{c} = ?" for c in USER_COLUMNS if c not in ("number", "created_at"))
    + " WHERE number = ?"
)
_BINDING_SELECT = f"SELECT {', '.join(BINDING_COLUMNS)} FROM bindings"
_BINDING_INSERT = (
    f"INSERT INTO bindings ({', '.join(BINDING_COLUMNS)}, pos) "
    f"VALUES ({_placeholders(len(BINDING_COLUMNS) + 1)})"
)
_BAN_SELECT = f"SELECT {', '.join(BAN_COLUMNS)} FROM bans"
_BAN_UPSERT = (
    f"INSERT OR REPLACE INTO bans ({', '.join(BAN_COLUMNS)}) "
    f"VALUES ({_placeholders(len(BAN_COLUMNS))})"
)
_CDR_SELECT = f"SELECT {', '.join(CDR_COLUMNS)} FROM cdrs"
_CDR_UPSERT = (
    f"INSERT OR REPLACE INTO cdrs ({', '.join(CDR_COLUMNS)}) "
    f"VALUES ({_placeholders(len(CDR_COLUMNS))})"
)
_TOKEN_SELECT = f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens"
_CHANGE_INSERT = "INSERT INTO changes (entity, key, op, at) VALUES (?, ?, ?, ?)"
_LATEST = "SELECT seq FROM sqlite_sequence WHERE name = 'changes'"

#: Rows deleted per transaction by bulk purges, which yield to the loop between chunks.
_PURGE_CHUNK = 1000


def _is_unique_violation(exc: sqlite3.IntegrityError) -> bool:
    return "UNIQUE constraint failed" in str(exc)


class _Db:
    """The connections, transactions and checkpoints of one database file."""

    def __init__(
        self,
        path: str,
        *,
        durable: bool,
        busy_timeout: float,
        checkpoint_rows: int,
        clock: Callable[[], float],
    ) -> None:
        self.path = path
        self.durable = durable
        self.busy_timeout = busy_timeout
        self.checkpoint_rows = checkpoint_rows
        self.clock = clock
        self.version = 0
        self._conn: sqlite3.Connection | None = None
        # The worker-thread connection, created on first use; guarded by _reader_lock.
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._written = 0
        self._checkpoint: asyncio.Future[None] | None = None

    # Connections ------------------------------------------------------------------------------

    def _connect(self, *, check_same_thread: bool) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=check_same_thread,
        )

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")

    def conn(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StorageError("the storage is not open")
        return conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> None:
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # Owner-only: the file holds HA1s and secrets. SQLite gives the -wal and -shm
                # files the database file's permissions.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = self._connect(check_same_thread=True)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        try:
            self.version = self._prepare(conn, load_migrations())
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _prepare(self, conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
        latest = len(migrations)
        try:
            version = self._check_identity(conn, latest)
            self._configure(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.path}: cannot use the WAL journal (got {mode!r})")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run in a thread
            if version < latest:
                self._migrate(conn, migrations)
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        return latest

    def _check_identity(self, conn: sqlite3.Connection, latest: int) -> int:
        """The schema version of an mss database this code can use; reads only.

        Raises:
            SchemaError: newer schema, or not an mss database.
        """
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise SchemaError(f"{self.path} is not an SQLite database: {exc}") from exc
        if app_id == APPLICATION_ID:
            if version > latest:
                raise SchemaError(
                    f"{self.path} has schema version {version}, newer than this mss knows "
                    f"({latest}); upgrade mss or use another database file"
                )
            return int(version)
        if app_id == 0 and version == 0 and objects == 0:
            return 0  # a new, empty file
        raise SchemaError(
            f"{self.path} is not an mss database (application_id {app_id:#x}, "
            f"user_version {version}, {objects} schema objects)"
        )

    def _migrate(self, conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
        """Apply the missing migrations in one transaction (another process may race us)."""
        conn.execute("PRAGMA foreign_keys = OFF")  # no-op inside a transaction, so set it now
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_identity(conn, len(migrations))  # re-read under the lock
            for migration in migrations[version:]:
                for statement in migration.statements:
                    try:
                        conn.execute(statement)
                    except sqlite3.Error as exc:
                        raise SchemaError(f"migration {migration.name} failed: {exc}") from exc
                conn.execute(f"PRAGMA user_version = {migration.version:d}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise SchemaError(f"migration left broken foreign keys: {broken[:5]}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    async def close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is not None:
            with contextlib.suppress(Exception):
                await checkpoint
        # Under the reader lock, in a thread: waits for a bulk read or checkpoint in flight.
        await asyncio.to_thread(self._close_reader)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA optimize")
        conn.close()

    def _close_reader(self) -> None:
        with self._reader_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()

    # Statements -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, rows: int = 1) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE``, the body, ``COMMIT``; rollback on error.

        Args:
            rows: about how many rows the body writes, to schedule checkpoints.

        Raises:
            StorageError: SQLite failed (locked longer than ``busy_timeout``, I/O error...);
                other exceptions of the body propagate unchanged, after the rollback.
        """
        conn = self.conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a write transaction: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"{type(exc).__name__}: {exc}") from exc
            raise
        self._written += rows
        if self._written >= self.checkpoint_rows:
            self._start_checkpoint()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    async def bulk(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """``rows`` on the worker-thread connection, for reads that may return many rows."""
        self.conn()
        return await asyncio.to_thread(self._bulk, sql, params)

    def _bulk(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._reader_lock:
            try:
                return self._reader_conn().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def _reader_conn(self) -> sqlite3.Connection:
        """The worker-thread connection; call with ``_reader_lock`` held."""
        if self._conn is None:
            raise StorageError("the storage is not open")
        if self._reader is None:
            reader = self._connect(check_same_thread=False)
            try:
                self._configure(reader)
            except BaseException:
                reader.close()
                raise
            self._reader = reader
        return self._reader

    # Checkpoints ------------------------------------------------------------------------------

    def _start_checkpoint(self) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            return  # one at a time; the next commit tries again
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._written = 0
        self._checkpoint = loop.run_in_executor(None, self._run_checkpoint)

    def _run_checkpoint(self) -> None:
        with self._reader_lock, contextlib.suppress(sqlite3.Error, StorageError):
            self._reader_conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class SqliteUsers:
    """:class:`~.base.UserRepo` on SQLite (table ``users``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def get(self, number: str) -> UserRecord | None:
        row = self._db.one(_USER_SELECT + " WHERE number = ?", (number,))
        return None if row is None else _codec.user_from_row(row)

    async def list(self) -> builtins.list[UserRecord]:
        rows = await self._db.bulk(_USER_SELECT + " ORDER BY number")
        return [_codec.user_from_row(row) for row in rows]

    async def add(self, user: UserRecord) -> None:
        _codec.check_user(user)
        now = self._db.clock()
        created = user.created_at or now
        row = _codec.user_row(user)
        row = (*row[:9], created, user.updated_at or created, row[11])
        with self._db.write() as conn:
            try:
                conn.execute(_USER_INSERT, row)
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise AlreadyExists("user", user.number) from exc
                raise
            conn.execute(_CHANGE_INSERT, ("user", user.number, "put", now))
            stale = conn.execute("DELETE FROM bindings WHERE aor = ?", (user.number,))
            if stale.rowcount:
                conn.execute(_CHANGE_INSERT, ("binding", user.number, "delete", now))

    async def update(self, user: UserRecord) -> None:
        _codec.check_user(user)
        now = self._db.clock()
        row = _codec.user_row(user)
        with self._db.write() as conn:
            cur = conn.execute(_USER_UPDATE, (*row[1:9], now, row[11], user.number))
            if cur.rowcount == 0:
                raise NotFound("user", user.number)
            conn.execute(_CHANGE_INSERT, ("user", user.number, "put", now))

    async def delete(self, number: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            existed = conn.execute("DELETE FROM users WHERE number = ?", (number,)).rowcount > 0
            if existed:
                conn.execute(_CHANGE_INSERT, ("user", number, "delete", now))
            if conn.execute("DELETE FROM bindings WHERE aor = ?", (number,)).rowcount:
                conn.execute(_CHANGE_INSERT, ("binding", number, "delete", now))
        return existed


class SqliteBindings:
    """:class:`~.base.BindingRepo` on SQLite (table ``bindings``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def for_aor(self, aor: str) -> builtins.list[BindingRecord]:
        rows = self._db.rows(_BINDING_SELECT + " WHERE aor = ? ORDER BY pos", (aor,))
        return [_codec.binding_from_row(row) for row in rows]

    async def all(self) -> builtins.list[BindingRecord]:
        rows = await self._db.bulk(_BINDING_SELECT + " ORDER BY aor, pos")
        return [_codec.binding_from_row(row) for row in rows]

    async def replace(self, aor: str, bindings: Sequence[BindingRecord]) -> None:
        await self.apply(((aor, bindings),))

    async def apply(self, changes: Sequence[tuple[str, Sequence[BindingRecord]]]) -> None:
        sets = _codec.last_sets(changes)
        if not sets:
            return
        now = self._db.clock()
        rows = 2 * len(sets) + sum(len(b) for b in sets.values())
        with self._db.write(rows) as conn:
            # Hot path: three executemany, one commit. Rows are encoded lazily, so a record
            # that cannot be stored fails mid-transaction and the rollback undoes the batch.
            conn.executemany("DELETE FROM bindings WHERE aor = ?", [(aor,) for aor in sets])
            try:
                conn.executemany(_BINDING_INSERT, _codec.binding_rows(sets))
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    duplicate = _codec.duplicate_contact(sets)
                    raise duplicate or AlreadyExists("binding", "?") from exc
                raise
            conn.executemany(
                _CHANGE_INSERT,
                [("binding", aor, "put" if b else "delete", now) for aor, b in sets.items()],
            )

    async def purge_expired(self, now: float) -> int:
        at = self._db.clock()
        with self._db.write() as conn:
            aors = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT aor FROM bindings WHERE expires_at <= ? ORDER BY aor", (now,)
                )
            ]
            if not aors:
                return 0
            removed: int = conn.execute(
                "DELETE FROM bindings WHERE expires_at <= ?", (now,)
            ).rowcount
            log = []
            for aor in aors:
                left = conn.execute("SELECT 1 FROM bindings WHERE aor = ? LIMIT 1", (aor,))
                log.append(("binding", aor, "put" if left.fetchone() else "delete", at))
            conn.executemany(_CHANGE_INSERT, log)
        return removed


class SqliteChangeFeed:
    """:class:`~.base.ChangeFeed` on SQLite (table ``changes``, AUTOINCREMENT)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def latest(self) -> int:
        row = self._db.one(_LATEST)
        return 0 if row is None else int(row[0])

    async def since(self, seq: int, *, limit: int | None = None) -> builtins.list[Change]:
        rows = self._db.rows(
            "SELECT seq, entity, key, op, at FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, -1 if limit is None else max(0, limit)),
        )
        return [Change(*row) for row in rows]

    async def horizon(self) -> int:
        # One statement, one snapshot: another process may append between two statements.
        first, latest = self._db.one(f"SELECT (SELECT min(seq) FROM changes), ({_LATEST})")
        if first is not None:
            return int(first) - 1
        return 0 if latest is None else int(latest)

    async def prune(self, keep_last: int) -> int:
        if keep_last < 0:
            raise ValueError("keep_last must be >= 0")
        with self._db.write() as conn:
            row = conn.execute(_LATEST).fetchone()
            if row is None:
                return 0
            cur = conn.execute("DELETE FROM changes WHERE seq <= ?", (row[0] - keep_last,))
            removed: int = cur.rowcount
        return removed


class SqliteKeyValue:
    """:class:`~.base.KeyValue` on SQLite (table ``kv``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = self._db.one("SELECT value FROM kv WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set(self, key: str, value: str) -> None:
        now = self._db.clock()
        with self._db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
            conn.execute(_CHANGE_INSERT, ("kv", key, "put", now))

    async def setdefault(self, key: str, value: str) -> str:
        now = self._db.clock()
        with self._db.write() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)", (key, value))
            if cur.rowcount:
                conn.execute(_CHANGE_INSERT, ("kv", key, "put", now))
            stored: str = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()[0]
        return stored

    async def delete(self, key: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            if not conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount:
                return False
            conn.execute(_CHANGE_INSERT, ("kv", key, "delete", now))
        return True


class SqliteBans:
    """:class:`~.base.BanRepo` on SQLite (table ``bans``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def get(self, ip: str) -> BanRecord | None:
        row = self._db.one(_BAN_SELECT + " WHERE ip = ?", (ip,))
        return None if row is None else _codec.ban_from_row(row)

    async def list(self) -> builtins.list[BanRecord]:
        rows = await self._db.bulk(_BAN_SELECT + " ORDER BY ip")
        return [_codec.ban_from_row(row) for row in rows]

    async def put(self, ban: BanRecord) -> None:
        row = _codec.ban_row(ban)
        now = self._db.clock()
        with self._db.write() as conn:
            conn.execute(_BAN_UPSERT, row)
            conn.execute(_CHANGE_INSERT, ("ban", ban.ip, "put", now))

    async def delete(self, ip: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            if not conn.execute("DELETE FROM bans WHERE ip = ?", (ip,)).rowcount:
                return False
            conn.execute(_CHANGE_INSERT, ("ban", ip, "delete", now))
        return True

    async def purge_expired(self, now: float) -> int:
        at = self._db.clock()
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM bans WHERE until IS NOT NULL AND until <= ?", (now,))
            removed: int = cur.rowcount
            if removed:
                conn.execute(_CHANGE_INSERT, ("ban", "*", "delete", at))
        return removed


class SqliteCdrs:
    """:class:`~.base.CdrRepo` on SQLite (table ``cdrs``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def put(self, cdr: CdrRecord) -> None:
        row = _codec.cdr_row(cdr)
        now = self._db.clock()
        with self._db.write() as conn:
            conn.execute(_CDR_UPSERT, row)
            conn.execute(_CHANGE_INSERT, ("cdr", cdr.id, "put", now))

    async def put_many(self, cdrs: Sequence[CdrRecord]) -> None:
        if not cdrs:
            return
        rows = [_codec.cdr_row(cdr) for cdr in cdrs]
        now = self._db.clock()
        with self._db.write(len(rows)) as conn:
            conn.executemany(_CDR_UPSERT, rows)
            conn.executemany(_CHANGE_INSERT, [("cdr", cdr.id, "put", now) for cdr in cdrs])

    async def get(self, id: str) -> CdrRecord | None:
        row = self._db.one(_CDR_SELECT + " WHERE id = ?", (id,))
        return None if row is None else _codec.cdr_from_row(row)

    async def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        number: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> builtins.list[CdrRecord]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("setup_at >= ?")
            params.append(since)
        if until is not None:
            where.append("setup_at < ?")
            params.append(until)
        if number is not None:
            where.append("(caller = ? OR dialed = ? OR callee = ?)")
            params += (number, number, number)
        sql = _CDR_SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY setup_at, id LIMIT ? OFFSET ?"
        rows = await self._db.bulk(sql, (*params, limit, offset))
        return [_codec.cdr_from_row(row) for row in rows]

    async def purge_before(self, t: float) -> int:
        """Deletes in transactions of 1000 rows, yielding to the loop between them."""
        total = 0
        while True:
            at = self._db.clock()
            with self._db.write() as conn:
                cur = conn.execute(
                    "DELETE FROM cdrs WHERE rowid IN "
                    "(SELECT rowid FROM cdrs WHERE setup_at < ? LIMIT ?)",
                    (t, _PURGE_CHUNK),
                )
                removed: int = cur.rowcount
                if removed:
                    conn.execute(_CHANGE_INSERT, ("cdr", "*", "delete", at))
            total += removed
            if removed < _PURGE_CHUNK:
                return total
            await asyncio.sleep(0)


class SqliteIpLists:
    """:class:`~.base.IpListRepo` on SQLite (table ``iplists``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def list(self, name: str | None = None) -> builtins.list[IpListRecord]:
        sql = "SELECT list_name, network, note, created_at FROM iplists"
        if name is None:
            rows = self._db.rows(sql + " ORDER BY list_name, network")
        else:
            rows = self._db.rows(sql + " WHERE list_name = ? ORDER BY network", (name,))
        return [IpListRecord(*row) for row in rows]

    async def add(self, record: IpListRecord) -> None:
        _codec.check_iplist(record)
        now = self._db.clock()
        row = (record.list_name, record.network, record.note, record.created_at or now)
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO iplists (list_name, network, note, created_at) VALUES (?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise AlreadyExists("iplist", _codec.iplist_key(record)) from exc
                raise
            conn.execute(_CHANGE_INSERT, ("iplist", _codec.iplist_key(record), "put", now))

    async def delete(self, name: str, network: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            cur = conn.execute(
                "DELETE FROM iplists WHERE list_name = ? AND network = ?", (name, network)
            )
            if not cur.rowcount:
                return False
            conn.execute(_CHANGE_INSERT, ("iplist", f"{name} {network}", "delete", now))
        return True


class SqliteBlacklist:
    """:class:`~.base.BlacklistRepo` on SQLite (table ``blacklist``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def list(self) -> builtins.list[BlacklistRecord]:
        rows = self._db.rows(
            "SELECT caller_prefix, called_prefix, rate, note, created_at FROM blacklist "
            "ORDER BY called_prefix, caller_prefix"
        )
        return [BlacklistRecord(*row) for row in rows]

    async def put(self, record: BlacklistRecord) -> None:
        _codec.check_blacklist(record)
        now = self._db.clock()
        key = _codec.blacklist_key(record)
        with self._db.write() as conn:
            old = conn.execute(
                "SELECT created_at FROM blacklist WHERE caller_prefix = ? AND called_prefix = ?",
                (record.caller_prefix, record.called_prefix),
            ).fetchone()
            created = old[0] if old is not None else (record.created_at or now)
            conn.execute(
                "INSERT OR REPLACE INTO blacklist "
                "(caller_prefix, called_prefix, rate, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (record.caller_prefix, record.called_prefix, record.rate, record.note, created),
            )
            conn.execute(_CHANGE_INSERT, ("blacklist", key, "put", now))

    async def delete(self, caller_prefix: str, called_prefix: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            cur = conn.execute(
                "DELETE FROM blacklist WHERE caller_prefix = ? AND called_prefix = ?",
                (caller_prefix, called_prefix),
            )
            if not cur.rowcount:
                return False
            conn.execute(
                _CHANGE_INSERT, ("blacklist", f"{caller_prefix} {called_prefix}", "delete", now)
            )
        return True


class SqliteTokens:
    """:class:`~.base.TokenRepo` on SQLite (table ``tokens``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def get(self, id: str) -> TokenRecord | None:
        row = self._db.one(_TOKEN_SELECT + " WHERE id = ?", (id,))
        return None if row is None else _codec.token_from_row(row)

    async def list(self) -> builtins.list[TokenRecord]:
        rows = self._db.rows(_TOKEN_SELECT + " ORDER BY id")
        return [_codec.token_from_row(row) for row in rows]

    async def add(self, record: TokenRecord) -> None:
        row = _codec.token_row(record)
        now = self._db.clock()
        row = (*row[:4], row[4] or now, *row[5:])
        with self._db.write() as conn:
            try:
                conn.execute(
                    f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS)}) "
                    f"VALUES ({_placeholders(len(TOKEN_COLUMNS))})",
                    row,
                )
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise AlreadyExists("token", record.id) from exc
                raise
            conn.execute(_CHANGE_INSERT, ("token", record.id, "put", now))

    async def update(self, record: TokenRecord) -> None:
        row = _codec.token_row(record)
        now = self._db.clock()
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE tokens SET "
                + ", ".join(f"{c} = ?" for c in TOKEN_COLUMNS[1:])
                + " WHERE id = ?",
                (*row[1:], record.id),
            )
            if cur.rowcount == 0:
                raise NotFound("token", record.id)
            conn.execute(_CHANGE_INSERT, ("token", record.id, "put", now))

    async def delete(self, id: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            if not conn.execute("DELETE FROM tokens WHERE id = ?", (id,)).rowcount:
                return False
            conn.execute(_CHANGE_INSERT, ("token", id, "delete", now))
        return True

    async def touch(self, id: str, at: float) -> None:
        with self._db.write() as conn:
            conn.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (at, id))


class SqliteKeyed(Generic[_R]):
    """:class:`~.base.KeyedRepo` on SQLite for the records of :mod:`._keyed` (tables ``lines``,
    ``trunks``, ``routes``)."""

    __slots__ = ("_db", "_spec")

    def __init__(self, db: _Db, spec: _keyed.KeyedSpec[_R]) -> None:
        self._db = db
        self._spec = spec

    async def get(self, id: str) -> _R | None:
        row = self._db.one(self._spec.select + " WHERE id = ?", (id,))
        return None if row is None else self._spec.from_row(row)

    async def list(self) -> builtins.list[_R]:
        rows = self._db.rows(self._spec.select + " ORDER BY id")
        return [self._spec.from_row(row) for row in rows]

    async def add(self, record: _R) -> None:
        spec = self._spec
        row = spec.to_row(record)
        now = self._db.clock()
        created = row[spec.created_index] or now
        row = spec.stamped(row, created=created, updated=row[spec.updated_index] or created)
        with self._db.write() as conn:
            try:
                conn.execute(spec.insert, row)
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise AlreadyExists(spec.entity, row[0]) from exc
                raise
            conn.execute(_CHANGE_INSERT, (spec.entity, row[0], "put", now))

    async def update(self, record: _R) -> None:
        spec = self._spec
        row = spec.to_row(record)
        now = self._db.clock()
        row = spec.stamped(row, created=0.0, updated=now)
        with self._db.write() as conn:
            if conn.execute(spec.update_sql, spec.update_params(row)).rowcount == 0:
                raise NotFound(spec.entity, row[0])
            conn.execute(_CHANGE_INSERT, (spec.entity, row[0], "put", now))

    async def delete(self, id: str) -> bool:
        spec = self._spec
        now = self._db.clock()
        with self._db.write() as conn:
            if not conn.execute(f"DELETE FROM {spec.table} WHERE id = ?", (id,)).rowcount:
                return False
            conn.execute(_CHANGE_INSERT, (spec.entity, id, "delete", now))
        return True


class SqliteTrunks(SqliteKeyed[TrunkRecord]):
    """:class:`~.base.TrunkRepo` on SQLite (table ``trunks``)."""

    __slots__ = ()

    def __init__(self, db: _Db) -> None:
        super().__init__(db, _keyed.TRUNKS)

    async def by_address(self, host: str, port: int) -> TrunkRecord | None:
        row = self._db.one(
            _keyed.TRUNKS.select
            + " WHERE host = ? AND port = ? AND enabled = 1 ORDER BY id LIMIT 1",
            (host, port),
        )
        return None if row is None else _keyed.TRUNKS.from_row(row)


_VM_SELECT = f"SELECT {', '.join(_voicemail.MESSAGE_COLUMNS)} FROM voicemail"
_VM_INSERT = (
    f"INSERT INTO voicemail ({', '.join(_voicemail.MESSAGE_COLUMNS)}) "
    f"VALUES ({_placeholders(len(_voicemail.MESSAGE_COLUMNS))})"
)
_MAIL_SELECT = f"SELECT {', '.join(_voicemail.MAIL_COLUMNS)} FROM voicemail_outbox"
_MAIL_INSERT = (
    f"INSERT INTO voicemail_outbox ({', '.join(_voicemail.MAIL_COLUMNS)}) "
    f"VALUES ({_placeholders(len(_voicemail.MAIL_COLUMNS))})"
)
_MAIL_UPDATE = (
    "UPDATE voicemail_outbox SET "
    + ", ".join(f"{c} = ?" for c in _voicemail.MAIL_COLUMNS[1:])
    + " WHERE message_id = ?"
)


class SqliteVoicemail:
    """:class:`~.base.VoicemailRepo` on SQLite (tables ``voicemail``, ``voicemail_outbox``)."""

    __slots__ = ("_db",)

    def __init__(self, db: _Db) -> None:
        self._db = db

    async def get(self, id: str) -> VoicemailRecord | None:
        row = self._db.one(_VM_SELECT + " WHERE id = ?", (id,))
        return None if row is None else _voicemail.message_from_row(row)

    async def for_user(self, user: str) -> builtins.list[VoicemailRecord]:
        rows = self._db.rows(_VM_SELECT + " WHERE user = ? ORDER BY started_at, id", (user,))
        return [_voicemail.message_from_row(row) for row in rows]

    async def summary(self) -> dict[str, tuple[int, int]]:
        rows = self._db.rows(
            "SELECT user, sum(read = 0), sum(read = 1) FROM voicemail GROUP BY user ORDER BY user"
        )
        return {row[0]: (int(row[1]), int(row[2])) for row in rows}

    async def add(self, record: VoicemailRecord, mail: VoicemailMailRecord | None = None) -> None:
        now = self._db.clock()
        row = _voicemail.message_row(record, created=record.created_at or now)
        mail_row = None
        if mail is not None:
            if mail.message_id != record.id:
                raise ValueError(
                    f"message_id {mail.message_id!r} is not the message's id {record.id!r}"
                )
            mail_row = _voicemail.mail_row(mail, updated=mail.updated_at or now)
        with self._db.write(2) as conn:
            try:
                conn.execute(_VM_INSERT, row)
            except sqlite3.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise AlreadyExists("voicemail", record.id) from exc
                raise
            conn.execute(_CHANGE_INSERT, ("voicemail", _voicemail.message_key(record), "put", now))
            if mail_row is not None:
                conn.execute(_MAIL_INSERT, mail_row)
                conn.execute(_CHANGE_INSERT, ("voicemail_mail", record.id, "put", now))

    async def mark_read(self, id: str, read: bool = True) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            found = conn.execute("SELECT user FROM voicemail WHERE id = ?", (id,)).fetchone()
            if found is None:
                return False
            conn.execute("UPDATE voicemail SET read = ? WHERE id = ?", (1 if read else 0, id))
            conn.execute(_CHANGE_INSERT, ("voicemail", f"{found[0]} {id}", "put", now))
        return True

    async def delete(self, id: str) -> bool:
        now = self._db.clock()
        with self._db.write() as conn:
            found = conn.execute("SELECT user FROM voicemail WHERE id = ?", (id,)).fetchone()
            if found is None:
                return False
            if conn.execute("DELETE FROM voicemail_outbox WHERE message_id = ?", (id,)).rowcount:
                conn.execute(_CHANGE_INSERT, ("voicemail_mail", id, "delete", now))
            conn.execute("DELETE FROM voicemail WHERE id = ?", (id,))
            conn.execute(_CHANGE_INSERT, ("voicemail", f"{found[0]} {id}", "delete", now))
        return True

    async def mail(self, message_id: str) -> VoicemailMailRecord | None:
        row = self._db.one(_MAIL_SELECT + " WHERE message_id = ?", (message_id,))
        return None if row is None else _voicemail.mail_from_row(row)

    async def mails(self, state: str | None = None) -> builtins.list[VoicemailMailRecord]:
        if state is None:
            rows = self._db.rows(_MAIL_SELECT + " ORDER BY next_try, message_id")
        else:
            rows = self._db.rows(
                _MAIL_SELECT + " WHERE state = ? ORDER BY next_try, message_id", (state,)
            )
        return [_voicemail.mail_from_row(row) for row in rows]

    async def due_mails(self, now: float, limit: int = 100) -> builtins.list[VoicemailMailRecord]:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        rows = self._db.rows(
            _MAIL_SELECT
            + " WHERE state = 'queued' AND next_try <= ? ORDER BY next_try, message_id LIMIT ?",
            (now, limit),
        )
        return [_voicemail.mail_from_row(row) for row in rows]

    async def update_mail(self, mail: VoicemailMailRecord) -> bool:
        now = self._db.clock()
        row = _voicemail.mail_row(mail, updated=now)
        with self._db.write() as conn:
            if conn.execute(_MAIL_UPDATE, (*row[1:], row[0])).rowcount == 0:
                return False
            conn.execute(_CHANGE_INSERT, ("voicemail_mail", mail.message_id, "put", now))
        return True


class SqliteStorage:
    """:class:`~.base.Storage` on one SQLite file.

    Args:
        path: the database file (created with mode 0600, parent directories included).
        durable: ``synchronous=FULL``: commits also survive power loss (one fsync each).
        busy_timeout: seconds a writer waits for another process's write transaction.
        checkpoint_rows: rows written between two WAL checkpoints (run in a worker thread).
        clock: wall-clock time for stamps and change times (``time.time``).

    Raises:
        ValueError: ``path`` is empty or an in-memory database (use the memory backend).
    """

    __slots__ = (
        "_db",
        "bans",
        "bindings",
        "blacklist",
        "cdrs",
        "changes",
        "iplists",
        "kv",
        "lines",
        "routes",
        "tokens",
        "trunks",
        "users",
        "voicemail",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = False,
        busy_timeout: float = 5.0,
        checkpoint_rows: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            raise ValueError(f"SQLite storage needs a file path, got {text!r}")
        if busy_timeout < 0 or checkpoint_rows < 1:
            raise ValueError("busy_timeout must be >= 0 and checkpoint_rows >= 1")
        self._db = _Db(
            text,
            durable=durable,
            busy_timeout=busy_timeout,
            checkpoint_rows=checkpoint_rows,
            clock=clock,
        )
        self.users = SqliteUsers(self._db)
        self.bindings = SqliteBindings(self._db)
        self.changes = SqliteChangeFeed(self._db)
        self.kv = SqliteKeyValue(self._db)
        self.bans = SqliteBans(self._db)
        self.cdrs = SqliteCdrs(self._db)
        self.iplists = SqliteIpLists(self._db)
        self.blacklist = SqliteBlacklist(self._db)
        self.tokens = SqliteTokens(self._db)
        self.lines: SqliteKeyed[LineRecord] = SqliteKeyed(self._db, _keyed.LINES)
        self.trunks = SqliteTrunks(self._db)
        self.routes: SqliteKeyed[RouteRecord] = SqliteKeyed(self._db, _keyed.ROUTES)
        self.voicemail = SqliteVoicemail(self._db)

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.path

    @property
    def durable(self) -> bool:
        """Whether commits are fsynced (``synchronous=FULL``)."""
        return self._db.durable

    @property
    def schema_version(self) -> int:
        return self._db.version if self._db.is_open else 0

    async def open(self) -> None:
        if not self._db.is_open:
            self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> SqliteStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"SqliteStorage({self._db.path!r}, durable={self._db.durable})"
