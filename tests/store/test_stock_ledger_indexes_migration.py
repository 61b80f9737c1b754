"""Migration 7: the stock ledger's rows are kept, a take or release is still recorded at most
once per order, goods and reason, and a goods' ledger is paged newest first without a sort."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.actors.goods import HELD_SQL, STOCK_LEDGER_SQL
from shopkeep.store.migrations import (
    MIGRATIONS,
    STOCK_LEDGER_BY_GOODS_IN_TIME_ORDER,
    apply_migrations,
)

INSERT_ROW = (
    "INSERT INTO stock_ledger (goods_id, order_id, reason, quantity, at) VALUES (?, ?, ?, ?, ?)"
)


def plan_of(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> str:
    """SQLite's plan for ``sql``, its steps joined."""
    return " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_ledger_rows_from_before_are_kept_and_paged_by_goods(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[: STOCK_LEDGER_BY_GOODS_IN_TIME_ORDER.version - 1])
        conn.execute(INSERT_ROW, (7, 100, "take", -2, 1.0))
        conn.execute(INSERT_ROW, (8, 100, "take", -1, 1.0))
        conn.execute(INSERT_ROW, (7, 101, "take", -1, 2.0))
        conn.execute(INSERT_ROW, (7, 100, "release", 2, 3.0))
        assert apply_migrations(conn, MIGRATIONS) == len(MIGRATIONS)
        page = conn.execute(STOCK_LEDGER_SQL, (7, 2**62, 10)).fetchall()
        held = conn.execute(HELD_SQL, (7, 100)).fetchall()
    assert [(order, reason, quantity) for _, order, reason, quantity, _ in page] == [
        (100, "release", 2), (101, "take", -1), (100, "take", -2),
    ]  # newest first
    assert sorted(held) == [("release", 2), ("take", -2)]


def test_a_goods_ledger_page_reads_an_index_in_its_order() -> None:
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS)
        page = plan_of(conn, STOCK_LEDGER_SQL, (7, 2**62, 50))
        held = plan_of(conn, HELD_SQL, (7, 100))
    assert "stock_ledger_by_goods" in page and "TEMP B-TREE" not in page
    assert "stock_ledger_once" in held


def test_an_order_moves_a_goods_stock_once_per_reason() -> None:
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS)
        conn.execute(INSERT_ROW, (7, 100, "take", -1, 1.0))
        conn.execute(INSERT_ROW, (7, 100, "release", 1, 2.0))
        conn.execute(INSERT_ROW, (8, 100, "take", -1, 1.0))  # another goods of the same order
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(INSERT_ROW, (7, 100, "take", -1, 3.0))
