"""Versioned schema migrations shipped as package data (``mss/storage/migrations/NNNN_*.sql``).

Migration ``N`` brings a database from schema version ``N - 1`` to ``N``. The files are read with
:mod:`importlib.resources`, so they work from a wheel, a zip or a source tree; the wheel must
ship them (``[tool.setuptools.package-data] mss = ["storage/migrations/*.sql"]``).

Invariants checked by :func:`load_migrations`: file names are ``NNNN_name.sql``, numbered
1, 2, 3... without gaps or duplicates. A migration never changes once released; a schema change
is a new file. Statements are split with :func:`sqlite3.complete_statement`, so triggers and
string literals containing ``;`` are kept whole; transaction control is the runner's job and
must not appear in the files.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

__all__ = ("Migration", "latest_version", "load_migrations", "split_statements")

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FORBIDDEN = re.compile(r"^\s*(BEGIN|COMMIT|END|ROLLBACK)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema migration.

    Attributes:
        version: the schema version it produces.
        name: its file name.
        statements: its SQL statements, in order.
    """

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (comments stay with the next statement).

    Empty statements (a lone ``;``, comments only) are dropped.

    Raises:
        ValueError: text after the last ``;`` is not just whitespace and comments.
    """
    statements: list[str] = []
    buffer = ""
    *pieces, rest = script.split(";")
    for piece in pieces:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer).strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    rest = buffer + rest
    if _strip_comments(rest).strip():
        raise ValueError(f"unterminated SQL statement: {rest.strip()[:60]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", sql)


def load_migrations() -> tuple[Migration, ...]:
    """The shipped migrations, sorted by version.

    Raises:
        RuntimeError: a file is misnamed or the numbering has a gap or a duplicate (a packaging
            bug, not an operator error).
    """
    folder = resources.files("mss.storage").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations for schema version {version}")
        statements = tuple(split_statements(entry.read_text(encoding="utf-8")))
        for statement in statements:
            if _FORBIDDEN.match(_strip_comments(statement)):
                raise RuntimeError(f"{entry.name}: transaction control belongs to the runner")
        found[version] = Migration(version, entry.name, statements)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must be 1..N without gaps, got {versions}")
    return tuple(found[v] for v in versions)


def latest_version() -> int:
    """The schema version this code writes: the highest migration number."""
    return len(load_migrations())
