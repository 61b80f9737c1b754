"""The floor under the shop benchmark: what SQLite alone commits, with no event loop and no actor.

A plain one-item placement must write at least its order row, its item, the goods' new stock
and the stock ledger's row. This baseline commits exactly those rows, with the shop's own SQL
and schema, on a bare ``sqlite3`` connection at ``synchronous=FULL`` in WAL mode (as the
writer opens it), in batches of :data:`BATCH` placements (one per customer of the shop
benchmark), each table's rows in one ``executemany``: as fast as those rows can reach the disk
from Python on this machine, in this run. The shop's own rate is judged as a fraction of it.
"""

from __future__ import annotations

import os
import time

from shopkeep.actors.goods import INSERT_SQL as INSERT_GOODS_SQL
from shopkeep.actors.goods import LEDGER_SQL
from shopkeep.actors.goods import UPDATE_SQL as UPDATE_GOODS_SQL
from shopkeep.actors.order_state import ROW_FIELDS, OrderState
from shopkeep.actors.order_store import INSERT_ITEM_SQL, INSERT_ORDER_SQL, order_row
from shopkeep.store.database import connect
from shopkeep.store.migrations import MIGRATIONS, apply_migrations

BATCH = 64
"""Placements per commit: one per customer of the shop benchmark."""
USER_AT = ROW_FIELDS.index("user_id")


def sqlite_floor_orders_per_s(folder: str, seconds: float, goods: int, price: int) -> float:
    """Plain placements' minimal rows committed per second for ``seconds``, in batches."""
    path = os.path.join(folder, "floor.db")
    conn = connect(path, "FULL")
    try:
        apply_migrations(conn, MIGRATIONS)
        stock = 10**9
        conn.execute("BEGIN")
        conn.executemany(
            INSERT_GOODS_SQL, [(g, f"goods {g}", price, stock, stock, 0, 0.0) for g in range(goods)]
        )
        conn.execute("COMMIT")
        stocks = [stock] * goods
        order_id = 1 << 40
        placed = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            orders, items, updates, ledger = [], [], [], []
            now = time.time()
            row = list(order_row(OrderState(
                id=0, user_id=0, status="awaiting_payment", lines=(), coupon_id=None,
                use_balance=0, goods_amount=price, order_amount=price, pay_amount=price,
                created_at=now, confirmed_at=now, expires_at=now + 1800,
            )))
            for n in range(BATCH):
                order_id += 1
                goods_id = (order_id * 7919 + n) % goods
                stocks[goods_id] -= 1
                row[USER_AT] = n
                orders.append((order_id, *row))
                items.append((order_id, goods_id, 1, price, 0))
                updates.append((price, stocks[goods_id], 0, goods_id))
                ledger.append((goods_id, order_id, "take", -1, now))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_ORDER_SQL, orders)
            conn.executemany(INSERT_ITEM_SQL, items)
            conn.executemany(UPDATE_GOODS_SQL, updates)
            conn.executemany(LEDGER_SQL, ledger)
            conn.execute("COMMIT")
            placed += BATCH
        return placed / (time.perf_counter() - started)
    finally:
        conn.close()
