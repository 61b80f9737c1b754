"""A placement cut by a crash after its Idempotency-Key was kept and before its order was.

The user actor commits the key (with the order id it will use) in its own unit of work, before
the order actor records the order: a SIGKILL between the two commits leaves a key that names an
order nothing else knows. Found by the kill -9 proof (``python -m shopkeep.proof kill9``): the
client's retry with the same key and body answered 404 not_found, for ever.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.idempotency import IdempotencyKey
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import SECRET, assert_audit_ok, settle


def forget_the_order(db: Path, order_id: int) -> None:
    """Leave the file as a kill between the two commits does: the key kept (without the
    answer, which the order's unit records), no order."""
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE idempotency_keys SET answer = NULL WHERE order_id = ?", (order_id,))
        for table in ("order_items", "order_history", "timers"):
            column = "actor_id" if table == "timers" else "order_id"
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (order_id,))
        conn.execute("DELETE FROM orders WHERE id = ?", (order_id,))


@pytest.mark.parametrize("wait", [True, False])
async def test_a_retry_with_the_key_of_an_order_a_crash_never_recorded_places_it(
    tmp_path: Path, clock: VirtualClock, wait: bool
) -> None:
    db = tmp_path / "shop.db"
    async with Shop.open(str(db), gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        tea = await shop.create_goods("tea", price=1_000, stock=5)
        user = (await shop.create_user("ann")).user.id
        first = await shop.place_order(user, [(tea.id, 1)], idempotency_key="k", wait=wait)
        await settle(shop)
    # what a kill right after the key's commit leaves: a key naming no order, no stock taken
    forget_the_order(db, first.id)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM stock_ledger WHERE order_id = ?", (first.id,))
        conn.execute("UPDATE goods SET stock = 5 WHERE id = ?", (tea.id,))

    # a restart some time later: the retry's placement draws another order id than the key's
    restarted = VirtualClock(start=clock.now() + 60)
    async with Shop.open(
        str(db), gateway="sandbox", clock=restarted, gateway_secret=SECRET
    ) as shop:
        retried = IdempotencyKey("k")
        again = await shop.place_order(user, [(tea.id, 1)], idempotency_key=retried, wait=wait)
        await settle(shop)
        placed = await shop.get_order(again.id)
        assert again.id == first.id
        # nothing was answered before (the client got no answer, or a 503): the first answer,
        # not the first one given again (it said Idempotent-Replayed: true)
        assert not retried.replayed
        assert placed.status == "awaiting_payment"
        assert (await shop.get_goods(tea.id)).stock == 4
        await assert_audit_ok(shop)
