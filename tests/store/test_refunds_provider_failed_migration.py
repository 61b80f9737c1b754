"""Migration 8: a refund the provider failed before the column existed is found by its refund
log, and only while it is still refunding."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from shopkeep.store.migrations import MIGRATIONS, REFUNDS_THE_PROVIDER_FAILED, apply_migrations

INSERT_REFUND = (
    "INSERT INTO refunds (id, order_id, payment_id, kind, wallet_amount, gateway_amount, status, "
    "created_at) VALUES (?, 100, 5, 'cancel', 0, 1200, ?, 1.0)"
)
INSERT_LOG = "INSERT INTO refund_log (refund_id, event, detail, at) VALUES (?, ?, ?, 2.0)"


def test_refunds_the_provider_failed_before_are_marked_from_their_log(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[: REFUNDS_THE_PROVIDER_FAILED.version - 1])
        conn.execute(INSERT_REFUND, (1, "refunding"))  # failed, still waiting for the staff
        conn.execute(INSERT_LOG, (1, "gateway_failed", "try 1: down"))
        conn.execute(INSERT_LOG, (1, "provider_failed", "the provider failed it (ABNORMAL)"))
        conn.execute(INSERT_REFUND, (2, "refunding"))  # still with the provider
        conn.execute(INSERT_LOG, (2, "provider_processing", "asked again in 60 s"))
        conn.execute(INSERT_REFUND, (3, "refunded"))  # failed once, settled since
        conn.execute(INSERT_LOG, (3, "provider_failed", "the provider failed it (ABNORMAL)"))
        assert apply_migrations(conn, MIGRATIONS) == len(MIGRATIONS)
        marked = conn.execute("SELECT id, provider_failed FROM refunds ORDER BY id").fetchall()
    assert marked == [(1, "the provider failed it (ABNORMAL)"), (2, None), (3, None)]
