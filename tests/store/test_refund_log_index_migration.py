"""Migration 11: a refund's log is indexed by refund, so that the back office's list of the
refunds in flight reads each one's last word from the index, not the whole log."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from shopkeep.actors.refund_store import REFUNDS_IN_FLIGHT_SQL
from shopkeep.store.migrations import MIGRATIONS, REFUND_LOG_BY_REFUND, apply_migrations


def test_the_refunds_in_flight_read_their_last_word_by_the_index(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "old.db", isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[: REFUND_LOG_BY_REFUND.version - 1])
        conn.execute(
            "INSERT INTO refunds (id, order_id, payment_id, kind, wallet_amount, "
            "gateway_amount, status, created_at) VALUES (1, 100, 5, 'cancel', 0, 1200, "
            "'refunding', 1.0)"
        )
        for at, detail in ((2.0, "try 1: down; again in 5 s"), (3.0, "")):
            conn.execute(
                "INSERT INTO refund_log (refund_id, event, detail, at) "
                "VALUES (1, 'provider_processing', ?, ?)", (detail, at),
            )  # fmt: skip
        assert apply_migrations(conn, MIGRATIONS) == len(MIGRATIONS)
        plan = " ".join(row[-1] for row in conn.execute(
            f"EXPLAIN QUERY PLAN {REFUNDS_IN_FLIGHT_SQL}", (50,)
        ))  # fmt: skip
        [row] = conn.execute(REFUNDS_IN_FLIGHT_SQL, (50,)).fetchall()

    assert "refund_log_by_refund" in plan and "SCAN refund_log" not in plan
    # the last, its event when it said nothing; and not a try to be sent again
    assert row[-3:] == ("provider_processing", 3.0, 0)
