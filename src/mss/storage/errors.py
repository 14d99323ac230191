"""Errors raised by the storage layer.

The storage layer is self-contained (it imports nothing from mss outside ``mss.storage``), so its
errors have their own small root, :class:`StorageError`. Each class carries the HTTP status the
management API answers with (house style 7); only the edges translate errors into responses.

* :class:`NotFound`: ``update``/``get``-style operations on a key that does not exist (404).
* :class:`AlreadyExists`: ``add`` of a key that exists, or a binding set naming one contact twice
  (409).
* :class:`SchemaError`: the database was written by a newer mss, or is not an mss database at all.
  The backend refuses it without writing anything.
* :class:`StorageError` itself: anything else the backend reports (I/O error, the database stayed
  locked longer than the busy timeout...). The backend's own exception is chained as
  ``__cause__``.
"""

from __future__ import annotations

__all__ = ("AlreadyExists", "NotFound", "SchemaError", "StorageError")


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


class StorageError(Exception):
    """Base class of every storage error; also raised for backend failures.

    Attributes:
        http_status: the HTTP status the management API answers with.
    """

    http_status: int = 500


class _RecordError(StorageError):
    """An error about one record, named by its entity and key."""

    __slots__ = ("entity", "key")
    _what = ""

    def __init__(self, entity: str, key: str) -> None:
        super().__init__(entity, key)
        self.entity = entity
        self.key = key

    def __str__(self) -> str:
        return _one_line(f"{self.entity} {self.key!r} {self._what}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.entity!r}, {self.key!r})"


class NotFound(_RecordError):
    """The record does not exist.

    Attributes:
        entity: what kind of record (``"user"``, ``"line"``...), as in :class:`~.base.Change`.
        key: its key (a user's number...).
    """

    http_status = 404
    _what = "not found"


class AlreadyExists(_RecordError):
    """A record with that key exists already (or a binding set names one contact twice).

    Attributes:
        entity: what kind of record (``"user"``, ``"binding"``...).
        key: its key; for bindings ``"<aor> <contact>"``.
    """

    http_status = 409
    _what = "already exists"


class SchemaError(StorageError):
    """The database's schema is newer than this code, or the file is not an mss database."""

    http_status = 500
