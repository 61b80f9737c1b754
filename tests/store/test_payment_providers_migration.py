"""Migration 5 (payment providers): payments and orders written before it read as the
sandbox's, in CNY, with no checkout kept."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from shopkeep.store.migrations import MIGRATIONS, PAYMENT_PROVIDERS, apply_migrations


def test_payments_from_before_providers_read_as_the_sandboxs_in_cny(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[: PAYMENT_PROVIDERS.version - 1])
        conn.execute(
            "INSERT INTO orders (id, user_id, status, created_at) VALUES (7, 1, 'paid', 0)"
        )
        conn.execute(
            "INSERT INTO payments (id, order_id, amount, status, gateway_txn_id, created_at, "
            "updated_at) VALUES (8, 7, 100, 'succeeded', 'txn', 0, 0)"
        )
        assert apply_migrations(conn, MIGRATIONS) == len(MIGRATIONS)
        payment = conn.execute(
            "SELECT gateway, currency, checkout, provider_ref FROM payments WHERE id = 8"
        ).fetchone()
        order = conn.execute("SELECT currency FROM orders WHERE id = 7").fetchone()
    assert payment == ("sandbox", "CNY", None, None)
    assert order == ("CNY",)
