"""The ``refunds`` and ``refund_log`` tables: every statement that reads or writes them.

A refund's row is its order's: the order actor records it, its status and its amounts
(``order_store``); the refunder (``refund.py``) counts the attempts on it, logs what each
attempt learned, and marks one the provider failed. Both write through the statements here, so
the tables' shape is in one place. Two readers look into ``refunds`` beside other tables: the
audit's checks (``audit_checks``, ``audit_order_checks``: the invariants join every ledger),
and a start's count of the payments that still need their provider
(``order_store.still_owed_elsewhere``, a question about payments).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from shopkeep.actors.order_messages import RefundView
from shopkeep.store.reader import Reader, Row

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
PROVIDER_FAILED_SQL = "UPDATE refunds SET provider_failed = ? WHERE id = ?"
"""The provider failed the refund (its reason): it stays refunding, for the staff to settle."""
TRIED_AGAIN: Final = "gateway_failed"
"""The ``refund_log`` event of a try that failed and is tried again after a back-off (an
outage, or a refusal: ``refund_rules.failed``)."""
_LAST_WORD = "FROM refund_log WHERE refund_id = refunds.id ORDER BY id DESC LIMIT 1"
_IN_FLIGHT = (
    "SELECT id, order_id, kind, wallet_amount, gateway_amount, status, created_at, "
    f"provider_failed, (SELECT coalesce(nullif(detail, ''), event) {_LAST_WORD}), "
    f"(SELECT at {_LAST_WORD}), coalesce((SELECT event = '{TRIED_AGAIN}' {_LAST_WORD}), 0) "
    "FROM refunds WHERE status = 'refunding'"
)
REFUNDS_IN_FLIGHT_SQL = f"{_IN_FLIGHT} ORDER BY id LIMIT ?"
ORDER_REFUNDS_IN_FLIGHT_SQL = f"{_IN_FLIGHT} AND order_id = ? ORDER BY id"


class RefundInFlight(RefundView, frozen=True, gc=False):
    """A refund not yet paid back, as the back office lists it: SPEC 7's fields, why the
    provider failed it when it did (then it waits for the staff, not for the provider), and
    the last word of its log and when it was said (the provider processing it, a try that
    failed and when it is sent again), and whether it is being sent again (a refusal, or an
    outage: not a refund the provider failed, which waits for the staff alone)."""

    provider_failed: str | None = None
    last_word: str | None = None
    last_word_at: float | None = None
    sent_again: bool = False


async def refunds_in_flight(
    reader: Reader, count: int, *, order_id: int | None = None
) -> list[RefundInFlight]:
    """Up to ``count`` refunds still ``refunding``, oldest first; given ``order_id``, every
    one of that order's."""
    if order_id is None:
        rows = await reader.fetchall(REFUNDS_IN_FLIGHT_SQL, (count,))
    else:
        rows = await reader.fetchall(ORDER_REFUNDS_IN_FLIGHT_SQL, (order_id,))
    return [  # the last column an int of SQLite's: a bool here
        msgspec.structs.replace(RefundInFlight(*row[:-1]), sent_again=bool(row[-1]))
        for row in rows
    ]


SETTLEABLE_SQL = "SELECT order_id, status, provider_failed FROM refunds WHERE id = ?"


class RefundStanding(msgspec.Struct, frozen=True, gc=False):
    """Where a refund stands, as settling it by hand needs to know."""

    order_id: int
    status: str
    provider_failed: str | None


Fetch = Callable[[str, tuple[Any, ...]], Awaitable[list[Row]]]
"""A read of rows: a reader's ``fetchall``, or an actor's ``Context.query`` (which reads once
the actor's own writes are committed)."""


async def refund_standing(fetchall: Fetch, refund_id: int) -> RefundStanding | None:
    """The refund's order, status and the provider's failure, if any (None: no such refund),
    read by ``fetchall``."""
    rows = await fetchall(SETTLEABLE_SQL, (refund_id,))
    return RefundStanding(*rows[0]) if rows else None


REFUNDS_IN_FLIGHT_COUNT_SQL = "SELECT COUNT(*) FROM refunds WHERE status = 'refunding'"


async def refunds_in_flight_count(reader: Reader) -> int:
    """How many refunds are still ``refunding``."""
    [(count,)] = await reader.fetchall(REFUNDS_IN_FLIGHT_COUNT_SQL)
    return int(count)
