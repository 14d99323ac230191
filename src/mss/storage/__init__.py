"""Storage layer of mss: repository protocols (:mod:`.base`) and backends.

* :mod:`.memory`: dicts, for tests and embedding; nothing survives the process.
* :mod:`.sqlite`: one SQLite file (WAL), shared safely by the server and CLI processes.
* later: Redis, PostgreSQL.

This package never imports SIP code (fastsip, ``mss.sip``, ``mss.transport``, ``mss.features``)
nor anything else from mss: features depend on it, never the reverse. Usage::

    storage = open_storage(config.storage.backend, path=config.storage_path())
    async with storage:
        user = await storage.users.get("1001")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .base import (
    CDR_RESULTS,
    MAIL_STATES,
    BanRecord,
    BanRepo,
    BindingRecord,
    BindingRepo,
    BlacklistRecord,
    BlacklistRepo,
    CdrRecord,
    CdrRepo,
    Change,
    ChangeFeed,
    IpListRecord,
    IpListRepo,
    KeyedRepo,
    KeyValue,
    LineRecord,
    LineRepo,
    RouteRecord,
    RouteRepo,
    Storage,
    TokenRecord,
    TokenRepo,
    TrunkRecord,
    TrunkRepo,
    UserRecord,
    UserRepo,
    VoicemailMailRecord,
    VoicemailRecord,
    VoicemailRepo,
)
from .errors import AlreadyExists, NotFound, SchemaError, StorageError
from .memory import MemoryStorage
from .sqlite import SqliteStorage

__all__ = (
    "BACKENDS",
    "CDR_RESULTS",
    "MAIL_STATES",
    "AlreadyExists",
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
    "MemoryStorage",
    "NotFound",
    "RouteRecord",
    "RouteRepo",
    "SchemaError",
    "SqliteStorage",
    "Storage",
    "StorageError",
    "TokenRecord",
    "TokenRepo",
    "TrunkRecord",
    "TrunkRepo",
    "UserRecord",
    "UserRepo",
    "VoicemailMailRecord",
    "VoicemailRecord",
    "VoicemailRepo",
    "open_storage",
)

#: Backend names accepted by :func:`open_storage` (``[storage] backend``).
BACKENDS = ("memory", "sqlite")


def open_storage(
    backend: str,
    *,
    path: str | os.PathLike[str] | None = None,
    durable: bool = False,
    busy_timeout: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> Storage:
    """Build a storage backend (no I/O yet): ``await storage.open()`` or ``async with``.

    Args:
        backend: ``"sqlite"`` or ``"memory"``.
        path: the SQLite database file (``Config.storage_path()``); ignored by ``memory``.
        durable: SQLite ``synchronous=FULL``: commits also survive power loss, not only a
            crash of the process.
        busy_timeout: seconds an SQLite writer waits for another process's transaction.
        clock: wall-clock time for stamps and change times.

    Raises:
        ValueError: unknown backend, or ``sqlite`` without a path.
    """
    if backend == "memory":
        return MemoryStorage(clock=clock)
    if backend == "sqlite":
        if path is None:
            raise ValueError("the sqlite storage backend needs a path")
        return SqliteStorage(path, durable=durable, busy_timeout=busy_timeout, clock=clock)
    raise ValueError(f"unknown storage backend {backend!r}; expected one of {BACKENDS}")
