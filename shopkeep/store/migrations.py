"""Numbered schema migrations, applied in order at start; ``PRAGMA user_version`` is the version.

A migration is never edited once released: a change to the schema is a new migration. A database
whose version is higher than the last migration known here was written by a newer shopkeep and is
refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from shopkeep.store.errors import SchemaMismatch


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``sql`` is run in one transaction, then the version is set."""

    version: int
    name: str
    sql: str


RUNTIME_TABLES = Migration(
    1,
    "runtime: durable timers, outbox, dead letters, settings",
    """
    -- A durable timer (reminder). One per (actor, name): arming again replaces it. ``seq`` is
    -- unique and time-ordered, so (due_at, seq) pages through timers without ties.
    CREATE TABLE timers (
        kind     TEXT    NOT NULL,
        actor_id INTEGER NOT NULL,
        name     TEXT    NOT NULL,
        due_at   REAL    NOT NULL,
        seq      INTEGER NOT NULL,
        payload  BLOB    NOT NULL,
        PRIMARY KEY (kind, actor_id, name)
    ) WITHOUT ROWID;
    CREATE INDEX timers_by_due ON timers (due_at, seq);

    -- A message that must not be lost, written in the sender's transaction, deleted in the
    -- receiver's: its absence is the receiver's record that it was applied.
    CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY,
        kind       TEXT    NOT NULL,
        actor_id   INTEGER NOT NULL,
        payload    BLOB    NOT NULL,
        created_at REAL    NOT NULL
    );

    -- A message that failed every retry, parked with its traceback for a person to look at.
    CREATE TABLE dead_letters (
        id        INTEGER PRIMARY KEY,
        kind      TEXT    NOT NULL,
        actor_id  INTEGER NOT NULL,
        message   TEXT    NOT NULL,
        payload   BLOB,
        error     TEXT    NOT NULL,
        traceback TEXT    NOT NULL,
        attempts  INTEGER NOT NULL,
        at        REAL    NOT NULL
    );

    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)

MIGRATIONS: tuple[Migration, ...] = (RUNTIME_TABLES,)
"""Every migration of the product schema, oldest first."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the database file (0 for a new file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema up to the last of ``migrations``; return the version reached.

    Raises :class:`SchemaMismatch` when the file is newer than the migrations known here.
    """
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(f"migrations must be numbered 1, 2, ...: {migration.version} found")
    latest = len(migrations)
    current = schema_version(conn)
    if current > latest:
        raise SchemaMismatch(
            f"database schema version {current} is newer than this shopkeep knows ({latest}); "
            "use the shopkeep that wrote it"
        )
    for migration in migrations[current:]:
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{migration.sql};\nPRAGMA user_version = {migration.version};\n"
                "COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return latest
