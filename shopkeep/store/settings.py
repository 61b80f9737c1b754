"""The ``settings`` table: what a database keeps about itself from one start to the next, by
key (the generated admin token's hash, the shop's currency). The one module that reads and
writes it; each caller names its own keys. The connection comes last, as
``GroupCommitWriter.call`` gives it to a partial of these.

A value is written once: the first start that stores a key decides it, and later starts read
it back (``INSERT OR IGNORE``, then a read, in one transaction), so two starts racing each
other agree on whichever won.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Final

FILE_ID: Final = "file_id"
"""A random id the database file is given at its first start: a ``-wal`` beside it that was
written for another file says another one (:func:`file_id`)."""


def keep(
    first: Mapping[str, str],
    conn: sqlite3.Connection,
    *,
    read: Iterable[str] = (),
    forget: Iterable[str] = (),
) -> dict[str, str]:
    """In one transaction on the writer's ``conn``: store each value of ``first`` whose key has
    none yet, delete the keys ``forget`` (their bytes overwritten in the file, not left in a
    free page), and answer what is stored now under the keys of ``first`` and ``read``."""
    wanted = [*first, *read]
    (secure,) = conn.execute("PRAGMA secure_delete").fetchone()
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", first.items()
        )
        conn.executemany("DELETE FROM settings WHERE key = ?", [(key,) for key in forget])
        found = conn.execute(
            f"SELECT key, value FROM settings WHERE key IN ({', '.join('?' * len(wanted))})",
            wanted,
        ).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself after some errors (a full disk):
            conn.execute("ROLLBACK")  # a ROLLBACK then would raise in place of the error
        raise
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(secure)}")
    return {str(key): str(value) for key, value in found}


def put(key: str, value: str, conn: sqlite3.Connection) -> str | None:
    """Store ``value`` under ``key`` whatever it held, and answer what it held (None: nothing),
    in one transaction: for a value decided by this start that must win over another's."""
    with conn:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
    return None if row is None else str(row[0])


def forget(key: str, value: str, conn: sqlite3.Connection) -> None:
    """Delete ``key`` if it still holds ``value`` (what this start stored, not another's)."""
    with conn:
        conn.execute("DELETE FROM settings WHERE key = ? AND value = ?", (key, value))


def give_file_id(conn: sqlite3.Connection) -> str:
    """The database's :data:`FILE_ID`, made at its first start (on the writer's ``conn``)."""
    return keep({FILE_ID: secrets.token_hex(16)}, conn)[FILE_ID]


def stored(key: str, conn: sqlite3.Connection) -> str | None:
    """What ``key`` holds in the database ``conn`` reads, in the transaction it may be in; None
    when nothing (or with no settings table yet)."""
    try:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # a new file: no table yet
        return None
    return None if row is None else str(row[0])


def file_id(conn: sqlite3.Connection) -> str | None:
    """The :data:`FILE_ID` the database ``conn`` reads holds; None before its first start
    gave it one (or with no settings table yet)."""
    return stored(FILE_ID, conn)
