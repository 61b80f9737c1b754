"""Migration 6: idempotency keys written before it are carried over whole, in the order they
were bound, and a key is still bound at most once per principal."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.store.migrations import KEYS_APPENDED_IN_TIME_ORDER, MIGRATIONS, apply_migrations

INSERT_KEY = (
    "INSERT INTO idempotency_keys (principal, key, request_hash, order_id, answer, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def test_keys_from_before_are_kept_in_the_order_they_were_bound(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[: KEYS_APPENDED_IN_TIME_ORDER.version - 1])
        conn.execute(INSERT_KEY, (9, "later", "h2", 71, b"answer", 20.0))
        conn.execute(INSERT_KEY, (1, "earlier", "h1", None, None, 10.0))
        assert apply_migrations(conn, MIGRATIONS) == len(MIGRATIONS)
        rows = conn.execute(
            "SELECT principal, key, request_hash, order_id, answer, created_at "
            "FROM idempotency_keys ORDER BY rowid"
        ).fetchall()
    assert rows == [(1, "earlier", "h1", None, None, 10.0), (9, "later", "h2", 71, b"answer", 20.0)]


def test_a_key_is_bound_at_most_once_per_principal(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "new.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS)
        conn.execute(INSERT_KEY, (1, "k", "h", 5, None, 1.0))
        conn.execute(INSERT_KEY, (2, "k", "h", 6, None, 1.0))  # another principal's own key
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(INSERT_KEY, (1, "k", "h", 7, None, 2.0))
