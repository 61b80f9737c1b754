"""Migration 9: a page of the orders of one status is read from an index in its order, not
sorted; a user's page of one status still goes through the user's orders; the deadlines'
sweep reads only the index."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from shopkeep.actors.order_store import OVERDUE_SQL, page_sql
from shopkeep.store.migrations import MIGRATIONS, ORDERS_BY_STATUS_IN_ID_ORDER, apply_migrations

ORDER_ROW = (
    "INSERT INTO orders (id, user_id, status, created_at, expires_at) VALUES (?, ?, ?, 0, ?)"
)


def plan_of(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> str:
    """SQLite's plan for ``sql``, its steps joined."""
    return " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_a_page_of_one_status_is_read_in_id_order_and_a_users_through_their_orders() -> None:
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS)
        all_of_a_status = plan_of(
            conn, page_sql(of_user=False, of_status=True), (2**62, "delivered", 50)
        )
        a_users = plan_of(
            conn, page_sql(of_user=True, of_status=True), (2**62, 7, "delivered", 50)
        )
        overdue = plan_of(conn, OVERDUE_SQL, (1e9, 1e9, 100))
    assert "orders_by_status (status=? AND id<?)" in all_of_a_status
    assert "TEMP B-TREE" not in all_of_a_status
    assert "orders_by_user" in a_users
    assert "COVERING INDEX orders_by_status" in overdue
    assert "SEARCH timers USING PRIMARY KEY" in overdue  # an order's own deadline, no scan


def test_orders_from_before_are_found_by_status_newest_first(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[: ORDERS_BY_STATUS_IN_ID_ORDER.version - 1])
        conn.execute(ORDER_ROW, (1, 7, "delivered", None))
        conn.execute(ORDER_ROW, (2, 7, "awaiting_payment", 50.0))
        conn.execute(ORDER_ROW, (3, 8, "delivered", None))
        conn.execute(ORDER_ROW, (4, 8, "awaiting_payment", 40.0))
        assert apply_migrations(conn, MIGRATIONS) == len(MIGRATIONS)
        page = conn.execute(page_sql(of_user=False, of_status=True), (2**62, "delivered", 10))
        delivered = [row[0] for row in page]
        overdue = conn.execute(OVERDUE_SQL, (45.0, 45.0, 10)).fetchall()
    assert delivered == [3, 1]
    assert overdue == [(4,)]
