"""The reads an order's load makes find their rows by index: none scans a table that grows with
every order (the soak found the payment log scanned on every load, slower as it grew)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shopkeep.actors import order_store
from shopkeep.store.migrations import MIGRATIONS, apply_migrations

ORDER_LOAD_QUERIES = {
    name: getattr(order_store, name)
    for name in dir(order_store)
    if name.startswith("SELECT_") and name.endswith("_SQL")
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    conn = sqlite3.connect(Path(tmp_path_factory.mktemp("plans")) / "plans.db")
    apply_migrations(conn, MIGRATIONS)
    return conn


def test_the_order_load_queries_are_all_covered() -> None:
    assert {"SELECT_ORDER_SQL", "SELECT_ITEMS_SQL", "SELECT_COUNTED_SQL"} <= set(ORDER_LOAD_QUERIES)


@pytest.mark.parametrize("name", sorted(ORDER_LOAD_QUERIES))
def test_an_order_load_query_searches_an_index(schema: sqlite3.Connection, name: str) -> None:
    sql = ORDER_LOAD_QUERIES[name]
    plan = schema.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?")).fetchall()
    details = [row[-1] for row in plan]
    assert not [d for d in details if d.startswith("SCAN")], (name, details)


@pytest.mark.parametrize("table", sorted(order_store.PAGE_ROWS_SQL))
def test_a_page_of_orders_finds_each_tables_rows_by_index(
    schema: sqlite3.Connection, table: str
) -> None:
    sql = order_store.PAGE_ROWS_SQL[table].format(ids="?, ?, ?")
    plan = schema.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?")).fetchall()
    details = [row[-1] for row in plan]
    assert not [d for d in details if d.startswith("SCAN")], (table, details)
