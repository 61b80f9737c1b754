"""The ``refunds`` and ``refund_log`` tables: every statement that reads or writes them.

A refund's row is its order's: the order actor records it, its status and its amounts
(``order_store``); the refunder (``refund.py``) counts the attempts on it and logs what each
attempt learned. Both write through the statements here, so the tables' shape is in one place.
"""

from __future__ import annotations

from shopkeep.actors.order_messages import RefundView
from shopkeep.store.reader import Reader

UPSERT_REFUND_SQL = (
    "INSERT INTO refunds (id, order_id, payment_id, kind, wallet_amount, gateway_amount, "
    "status, created_at, refunded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
    "refunded_at = excluded.refunded_at"
)
SELECT_REFUNDS_SQL = (
    "SELECT id, kind, payment_id, wallet_amount, gateway_amount, status, created_at, "
    "refunded_at FROM refunds WHERE order_id = ? ORDER BY id"
)
PAGE_REFUNDS_SQL = (
    "SELECT order_id, id, kind, payment_id, wallet_amount, gateway_amount, status, "
    "created_at, refunded_at FROM refunds WHERE order_id IN ({ids}) ORDER BY id"
)
"""The refunds of a page of orders (``order_store.load_page``)."""
REFUND_LOG_SQL = "INSERT INTO refund_log (refund_id, event, detail, at) VALUES (?, ?, ?, ?)"
ATTEMPTS_SQL = "UPDATE refunds SET attempts = ? WHERE id = ?"
REFUNDS_IN_FLIGHT_SQL = (
    "SELECT id, order_id, kind, wallet_amount, gateway_amount, status, created_at "
    "FROM refunds WHERE status = 'refunding' ORDER BY id LIMIT ?"
)


async def refunds_in_flight(reader: Reader, count: int) -> list[RefundView]:
    """Up to ``count`` refunds still ``refunding``, oldest first."""
    return [RefundView(*row) for row in await reader.fetchall(REFUNDS_IN_FLIGHT_SQL, (count,))]


REFUNDS_IN_FLIGHT_COUNT_SQL = "SELECT COUNT(*) FROM refunds WHERE status = 'refunding'"


async def refunds_in_flight_count(reader: Reader) -> int:
    """How many refunds are still ``refunding``."""
    [(count,)] = await reader.fetchall(REFUNDS_IN_FLIGHT_COUNT_SQL)
    return int(count)
