"""The order actor's persistence: load its state, and write a decision's rows.

Loading reads the order's rows (order, items, payments, refunds, returns, and the payment log's
counted callbacks). Writing turns the state and each effect that is a row into SQL in the
message's unit of work; the timers and durable messages the effects ask for join the same unit
(``order_effects.carry_out``), so a state change and everything it causes commit together.
"""

from __future__ import annotations

import sqlite3
from operator import attrgetter
from typing import Any, Final

import msgspec

from shopkeep.actors.order_effects import DEADLINE
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCELED,
    DELIVERED,
    PAID,
    PENDING,
    REFUNDING,
    ROW_FIELDS,
    SHIPPED,
    Effect,
    History,
    Line,
    LogPayment,
    OrderState,
    Payment,
    Refund,
    ReturnRequest,
    SaveLines,
    SavePayment,
    SaveRefund,
    SaveReturn,
)
from shopkeep.actors.payment_rules import CallbackAction
from shopkeep.actors.refund_store import (
    PAGE_REFUNDS_SQL,
    REFUND_LOG_SQL,
    SELECT_REFUNDS_SQL,
    UPSERT_REFUND_SQL,
)
from shopkeep.paging import Page, page_after, paged
from shopkeep.payments.names import SANDBOX, SUCCEEDED
from shopkeep.runtime import Context
from shopkeep.runtime.timers import armed_later
from shopkeep.store.reader import Reader, Row

ORDER_COLUMNS = ", ".join(ROW_FIELDS)
INSERT_ORDER_SQL = (
    f"INSERT INTO orders (id, {ORDER_COLUMNS}) VALUES (?, {', '.join('?' * len(ROW_FIELDS))})"
)
UPDATE_ORDER_SQL = f"UPDATE orders SET {', '.join(f'{c} = ?' for c in ROW_FIELDS)} WHERE id = ?"
SELECT_ORDER_SQL = f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?"
INSERT_ITEM_SQL = (
    "INSERT INTO order_items (order_id, goods_id, quantity, unit_price, line) "
    "VALUES (?, ?, ?, ?, ?)"
)
PRICE_ITEM_SQL = "UPDATE order_items SET unit_price = ? WHERE order_id = ? AND goods_id = ?"
SELECT_ITEMS_SQL = (
    "SELECT goods_id, quantity, unit_price FROM order_items WHERE order_id = ? "
    "ORDER BY line, goods_id"
)
"""An order's lines in the order the customer gave them (``line``; lines written before it
was kept have none, and come in goods id order)."""
HISTORY_SQL = (
    "INSERT INTO order_history (order_id, from_status, to_status, operation, remark, at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
PAYMENT_COLUMNS = (
    "id, amount, status, gateway_txn_id, created_at, gateway, currency, checkout, provider_ref"
)
"""The payments columns :class:`Payment` is made of, in its fields' order."""
UPSERT_PAYMENT_SQL = (
    "INSERT INTO payments (id, order_id, amount, status, gateway_txn_id, created_at, "
    "updated_at, gateway, currency, checkout, provider_ref) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "status = excluded.status, gateway_txn_id = excluded.gateway_txn_id, "
    "updated_at = excluded.updated_at, checkout = excluded.checkout, "
    "provider_ref = excluded.provider_ref"
)
SELECT_PAYMENTS_SQL = f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ? ORDER BY id"
PAYMENT_LOG_SQL = (
    "INSERT INTO payment_log (payment_id, order_id, verified, duplicate, action, body, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
COUNTED_ACTIONS = (
    CallbackAction.APPLIED.value,
    CallbackAction.LATE_PAYMENT_REFUND.value,
    CallbackAction.DUPLICATE_PAYMENT_REFUND.value,
)
SELECT_COUNTED_SQL = (
    "SELECT payment_id, action, body FROM payment_log WHERE order_id = ? AND verified = 1 "
    f"AND action IN ({', '.join('?' * len(COUNTED_ACTIONS))}) ORDER BY id"
)
UPSERT_RETURN_SQL = (
    "INSERT INTO returns (id, order_id, reason, status, created_at, approved_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
    "approved_at = excluded.approved_at"
)
SELECT_RETURNS_SQL = (
    "SELECT id, reason, status, created_at, approved_at FROM returns "
    "WHERE order_id = ? ORDER BY id"
)


class LoggedCallback(msgspec.Struct, frozen=True, gc=False):
    """A callback as the payment log keeps it: SPEC 7's body (ids as strings)."""

    payment_id: str
    order_id: str
    amount: int
    status: str
    gateway_txn_id: str | None


_decode_logged = msgspec.json.Decoder(LoggedCallback).decode


def callback_body(order_id: int, log: LogPayment) -> bytes:
    """The canonical JSON of a callback, as the payment log keeps it."""
    body = LoggedCallback(str(log.payment_id), str(order_id), log.amount, log.status, log.txn_id)
    return msgspec.json.encode(body)


# -- loading ----------------------------------------------------------------------------------


async def load_order(reader: Reader, order_id: int) -> OrderState | None:
    """The order's state from the store, or None when there is no such order."""
    row = await reader.fetchone(SELECT_ORDER_SQL, (order_id,))
    if row is None:
        return None
    return _state(
        order_id,
        row,
        await reader.fetchall(SELECT_ITEMS_SQL, (order_id,)),
        await reader.fetchall(SELECT_PAYMENTS_SQL, (order_id,)),
        await reader.fetchall(SELECT_REFUNDS_SQL, (order_id,)),
        await reader.fetchall(SELECT_RETURNS_SQL, (order_id,)),
        await reader.fetchall(SELECT_COUNTED_SQL, (order_id, *COUNTED_ACTIONS)),
    )


def _state(
    order_id: int,
    row: Row,
    items: list[Row],
    payments: list[Row],
    refunds: list[Row],
    returns: list[Row],
    counted: list[Row],
) -> OrderState:
    """An order's state from its rows (each table's, without their ``order_id``)."""
    collected: set[tuple[int, str | None]] = set()
    paid_payment_id: int | None = None
    for payment_id, action, body in counted:
        logged = _decode_logged(bytes(body))
        collected.add((int(payment_id), logged.gateway_txn_id))
        if action == CallbackAction.APPLIED.value:
            paid_payment_id = int(payment_id)
    return OrderState(
        id=order_id,
        **dict(zip(ROW_FIELDS, row, strict=True)),
        lines=tuple(Line(g, q, p) for g, q, p in items),
        payments=tuple(Payment(*p) for p in payments),
        refunds=tuple(Refund(*r) for r in refunds),
        returns=tuple(ReturnRequest(*r) for r in returns),
        collected=frozenset(collected),
        paid_payment_id=paid_payment_id,
    )


PAGE_SQL = (
    f"SELECT id, {ORDER_COLUMNS} FROM orders WHERE id < ?{{filters}} ORDER BY id DESC LIMIT ?"
)
"""A page of orders, newest first (``filters``: ``AND user_id = ?``, ``AND status = ?``)."""
PAGE_ROWS_SQL = {
    "items": "SELECT order_id, goods_id, quantity, unit_price FROM order_items "
    "WHERE order_id IN ({ids}) ORDER BY order_id, line, goods_id",
    "payments": f"SELECT order_id, {PAYMENT_COLUMNS} FROM payments "
    "WHERE order_id IN ({ids}) ORDER BY id",
    "refunds": PAGE_REFUNDS_SQL,
    "returns": "SELECT order_id, id, reason, status, created_at, approved_at FROM returns "
    "WHERE order_id IN ({ids}) ORDER BY id",
    "counted": "SELECT order_id, payment_id, action, body FROM payment_log "
    "WHERE order_id IN ({ids}) AND verified = 1 "
    f"AND action IN ({', '.join('?' * len(COUNTED_ACTIONS))}) ORDER BY id",
}
"""The rows of a page's orders, table by table, each with its ``order_id`` first: the same
columns and order as :func:`load_order`'s queries, for many orders in one query each."""


def page_sql(*, of_user: bool, of_status: bool) -> str:
    """:data:`PAGE_SQL` with the filters a page asks for (its parameters: the id below, the
    user, the status, the count)."""
    filters = " AND user_id = ?" if of_user else ""
    if of_status:
        # a user's orders of one status are read through orders_by_user, a few hundred at
        # most; by the status's index SQLite would walk every order of that status in the shop
        # to find them (the unary + keeps the term from choosing an index)
        filters += " AND +status = ?" if of_user else " AND status = ?"
    return PAGE_SQL.format(filters=filters)


async def load_page(
    reader: Reader, below: int, count: int, *, user_id: int | None, status: str | None
) -> list[OrderState]:
    """Up to ``count`` orders with an id below ``below`` (a user's, or all; of one status, or
    any), newest first, in six queries however many they are: a list of 200 orders loaded
    one by one cost six queries each on the one read connection."""
    params: list[object] = [below]
    if user_id is not None:
        params.append(user_id)
    if status is not None:
        params.append(status)
    sql = page_sql(of_user=user_id is not None, of_status=status is not None)
    rows = await reader.fetchall(sql, (*params, count))
    return await _states_of(reader, rows)


DUE_SOONEST_SQL = (
    f"SELECT id, {ORDER_COLUMNS} FROM orders WHERE status = 'awaiting_payment' "
    "ORDER BY expires_at, id LIMIT ?"
)


async def due_soonest(reader: Reader, count: int) -> list[OrderState]:
    """Up to ``count`` orders awaiting payment, the nearest deadline first."""
    return await _states_of(reader, await reader.fetchall(DUE_SOONEST_SQL, (count,)))


async def _states_of(reader: Reader, rows: list[Row]) -> list[OrderState]:
    """The orders of ``rows`` (id and ORDER_COLUMNS), in their order, in six queries however
    many they are."""
    if not rows:
        return []
    ids = [int(row[0]) for row in rows]
    marks = ", ".join("?" * len(ids))
    owned: dict[str, dict[int, list[Row]]] = {}
    for table, sql in PAGE_ROWS_SQL.items():
        extra = COUNTED_ACTIONS if table == "counted" else ()
        by_order: dict[int, list[Row]] = {}
        for found in await reader.fetchall(sql.format(ids=marks), (*ids, *extra)):
            by_order.setdefault(int(found[0]), []).append(found[1:])
        owned[table] = by_order
    return [
        _state(order_id, row[1:], *(owned[table].get(order_id, []) for table in PAGE_ROWS_SQL))
        for order_id, row in zip(ids, rows, strict=True)
    ]


UNPAID_SQL = (
    f"SELECT id FROM orders WHERE user_id = ? AND status IN ('{PENDING}', '{AWAITING_PAYMENT}')"
)


async def unpaid_orders(reader: Reader, user_id: int) -> list[int]:
    """The ids of the user's orders not yet paid nor canceled (what the unpaid cap counts)."""
    return [int(order_id) for (order_id,) in await reader.fetchall(UNPAID_SQL, (user_id,))]


# -- writing ----------------------------------------------------------------------------------


order_row = attrgetter(*ROW_FIELDS)
"""An order's ``orders`` row (without its id), from its state."""


STAMPED_AT: Final = {
    PENDING: attrgetter("created_at"), AWAITING_PAYMENT: attrgetter("confirmed_at"),
    PAID: attrgetter("paid_at"), CANCELED: attrgetter("canceled_at"),
}
"""The order's own time of a move into each status it keeps a time of."""


def _stamp(entry: History, after: OrderState) -> float | None:
    """The order's own time of the move ``entry`` says, if it keeps one (None otherwise)."""
    stamped = STAMPED_AT.get(entry.to_status)
    if stamped is None or entry.from_status == entry.to_status:
        return None
    at: float | None = stamped(after)
    return at


def _history_rows(
    order_id: int, after: OrderState, effects: list[Effect], now: float
) -> list[tuple[Any, ...]]:
    """A decision's history rows, each at its time: a move into a status the order keeps the
    time of at that time (so the history and the order agree to the microsecond), any other
    row at the decision's (the latest such time, else ``now``): a deadline's answers written
    above its cancel are not later than it."""
    stamped = [(e, _stamp(e, after)) for e in effects if isinstance(e, History)]
    decided = now
    if any(at is None for _, at in stamped):
        decided = max((at for _, at in stamped if at is not None), default=now)
    return [
        (order_id, e.from_status, e.to_status, e.operation, e.remark,
         decided if at is None else at)
        for e, at in stamped
    ]


def write(
    ctx: Context, before: OrderState | None, after: OrderState, effects: list[Effect]
) -> None:
    """Write ``after`` (if its row changed) and the rows of ``effects`` (its history, lines,
    payments, payment log, refunds, returns) into the message's unit; what they ask of others
    is :func:`shopkeep.actors.order_effects.carry_out`'s."""
    now = ctx.now()
    order_id = after.id
    columns = order_row(after)
    if before is None:
        ctx.execute(INSERT_ORDER_SQL, (order_id, *columns))
        ctx.executemany(
            INSERT_ITEM_SQL,
            [
                (order_id, line.goods_id, line.quantity, line.unit_price, number)
                for number, line in enumerate(after.lines)
            ],
        )
    elif columns != order_row(before):
        ctx.execute(UPDATE_ORDER_SQL, (*columns, order_id))
    # a decision's history rows in one statement (a placement has two: placed, confirmed)
    history = _history_rows(order_id, after, effects, now)
    if history:
        ctx.executemany(HISTORY_SQL, history)
    for effect in effects:
        match effect:
            case SaveLines() if before is not None:  # a new order's rows have their prices
                ctx.executemany(
                    PRICE_ITEM_SQL,
                    [(line.unit_price, order_id, line.goods_id) for line in after.lines],
                )
            case SavePayment(p):
                ctx.execute(
                    UPSERT_PAYMENT_SQL,
                    (p.id, order_id, p.amount, p.status, p.txn_id, p.created_at, now,
                     p.gateway, p.currency, p.checkout, p.provider_ref),
                )
            case LogPayment():
                body = callback_body(order_id, effect)
                ctx.execute(
                    PAYMENT_LOG_SQL,
                    (effect.payment_id, order_id, 1, int(effect.duplicate), effect.action, body,
                     now),
                )
            case SaveRefund(r, event, detail):
                ctx.execute(
                    UPSERT_REFUND_SQL,
                    (r.id, order_id, r.payment_id, r.kind, r.wallet_amount, r.gateway_amount,
                     r.status, r.created_at, r.refunded_at),
                )
                ctx.execute(REFUND_LOG_SQL, (r.id, event, detail, now))
            case SaveReturn(request):
                ctx.execute(
                    UPSERT_RETURN_SQL,
                    (request.id, order_id, request.reason, request.status, request.created_at,
                     request.approved_at),
                )


def log_rejected_callback(
    ctx: Context, order_id: int, payment_id: int, body: bytes, reason: str
) -> None:
    """A callback that named a payment this order does not have, or the wrong amount."""
    ctx.execute(PAYMENT_LOG_SQL, (payment_id, order_id, 0, 0, f"rejected_{reason}", body,
                                  ctx.now()))


# -- reads for the embedded API and recovery --------------------------------------------------


class HistoryEntry(msgspec.Struct, frozen=True):
    """One status change of an order."""

    from_status: str | None
    to_status: str
    operation: str
    remark: str
    at: float


def latest_currency(conn: sqlite3.Connection) -> str | None:
    """The currency of the latest order, if there is one: what a database from before the
    shop's currency was kept with it holds its amounts in."""
    row = conn.execute("SELECT currency FROM orders ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


_STILL_OWED_SQL: Final = (
    "SELECT p.gateway, count(*) FROM payments p JOIN orders o ON o.id = p.order_id "
    "WHERE p.gateway <> ? AND ("
    # a real provider's, whatever it became: open or failed, it may still be paid (and a
    # payment closed at the provider is not written back); paid, its notifications come again
    # (Alipay's TRADE_FINISHED months later) and its refunds go there
    f"p.gateway <> '{SANDBOX}' "
    # the sandbox's open ones died with the process that kept its books: only its payments
    # of orders that may still be canceled or returned, or being refunded, need it
    f"OR (p.status = '{SUCCEEDED}' AND o.status IN ('{PAID}', '{SHIPPED}', '{DELIVERED}')) "
    f"OR EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id "
    f"AND r.status = '{REFUNDING}')) "
    "GROUP BY p.gateway"
)


def still_owed_elsewhere(conn: sqlite3.Connection, gateway: str) -> dict[str, int]:
    """By provider other than ``gateway``: its payments that may still need it: every payment
    of a real provider, and the sandbox's that may still be refunded (a refund under way, or
    an order paid through it that may yet be canceled or returned). A scan of the payments,
    once a start: an index would cost every payment's commit a page."""
    rows = conn.execute(_STILL_OWED_SQL, (gateway,))
    return {str(name): int(count) for name, count in rows}


async def return_order(reader: Reader, return_id: int) -> int | None:
    """The order a return was asked for, or None when there is no such return."""
    row = await reader.fetchone("SELECT order_id FROM returns WHERE id = ?", (return_id,))
    return int(row[0]) if row else None


class Owned(msgspec.Struct, frozen=True):
    """A payment's or a return's row, with the user whose order it is."""

    id: int
    order_id: int
    status: str
    user_id: int
    amount: int = 0


async def payment(reader: Reader, payment_id: int) -> Owned | None:
    """A payment as committed, with its order's user; None when there is no such payment."""
    row = await reader.fetchone(
        "SELECT p.id, p.order_id, p.status, o.user_id, p.amount FROM payments AS p "
        "JOIN orders AS o ON o.id = p.order_id WHERE p.id = ?",
        (payment_id,),
    )
    return None if row is None else Owned(*row)


async def return_request(reader: Reader, return_id: int) -> Owned | None:
    """A return as committed, with its order's user; None when there is no such return."""
    row = await reader.fetchone(
        "SELECT r.id, r.order_id, r.status, o.user_id FROM returns AS r "
        "JOIN orders AS o ON o.id = r.order_id WHERE r.id = ?",
        (return_id,),
    )
    return None if row is None else Owned(*row)


async def order_history(
    reader: Reader, order_id: int, limit: int | None, cursor: str | None
) -> Page[HistoryEntry]:
    """An order's status changes, oldest first, a page at a time. The cursor counts the
    order's own entries given so far: the table's row ids count every order's, and would tell
    any customer how busy the whole shop was between two looks."""
    size, given = page_after(limit, cursor)
    rows = await reader.fetchall(
        "SELECT from_status, to_status, operation, remark, at FROM order_history "
        "WHERE order_id = ? ORDER BY id LIMIT ? OFFSET ?",
        (order_id, size + 1, given),
    )
    counts = range(given + 1, given + len(rows) + 1)
    return paged([HistoryEntry(*row) for row in rows], list(counts), size)


PENDING_SQL = f"SELECT id FROM orders WHERE status = '{PENDING}' AND created_at <= ? LIMIT ?"
OVERDUE_SQL = (
    f"SELECT id FROM orders WHERE status = '{AWAITING_PAYMENT}' AND expires_at <= ? "
    f"AND NOT {armed_later('order', 'orders.id', DEADLINE)} ORDER BY expires_at LIMIT ?"
)
"""The orders past their deadline whose deadline timer is not armed for later: an order whose
deadline is waiting for the provider's answers (armed again at the end of the wait) is its
timer's to time out, not the sweep's to ask about again."""


async def pending_orders(reader: Reader, created_by: float, limit: int) -> list[int]:
    """Up to ``limit`` orders still ``pending`` that were created by ``created_by``."""
    return [int(row[0]) for row in await reader.fetchall(PENDING_SQL, (created_by, limit))]


async def overdue_orders(reader: Reader, now: float, limit: int) -> list[int]:
    """Up to ``limit`` orders awaiting payment past their deadline at ``now`` (but those whose
    deadline waits for the provider's answers: :data:`OVERDUE_SQL`), oldest first."""
    return [int(row[0]) for row in await reader.fetchall(OVERDUE_SQL, (now, now, limit))]


# -- reading for the back office (the admin console) ------------------------------------------

# ``id >= ?`` bounds each scan to the recent orders through the primary key (ids are
# time-ordered): no index on the times, and a dashboard polling every few seconds
MINUTES_SQL = (
    "SELECT CAST((created_at - ?) / 60 AS INTEGER), count(*) FROM orders "
    "WHERE id >= ? AND created_at >= ? GROUP BY 1"
)
PAID_MINUTES_SQL = (
    "SELECT CAST((paid_at - ?) / 60 AS INTEGER), sum(wallet_amount + pay_amount) FROM orders "
    "WHERE id >= ? AND paid_at >= ? GROUP BY 1"
)
RETURNS_SQL = (
    "SELECT id, order_id, reason, status, created_at, approved_at FROM returns "
    "WHERE {where} ORDER BY id LIMIT ?"
)


class MinuteFigures(msgspec.Struct, frozen=True, gc=False):
    """Orders placed and money paid (wallet and gateway) in each minute since ``since``:
    ``orders[i]`` and ``paid[i]`` are minute ``i`` (from ``since + 60 i``)."""

    since: float
    orders: list[int]
    paid: list[int]


class ReturnRow(msgspec.Struct, frozen=True, gc=False):
    """A return request as the back office shows it (status ``requested`` or ``approved``)."""

    id: int
    order_id: int
    reason: str
    status: str
    created_at: float
    approved_at: float | None


async def minute_figures(
    reader: Reader, since: float, minutes: int, *, placed_from: int, paid_from: int
) -> MinuteFigures:
    """Orders placed (by ``created_at``) and amounts paid (by ``paid_at``) per minute for the
    ``minutes`` minutes from ``since``: of the orders whose id is at least ``placed_from``
    (every order made since then), and ``paid_from`` (every order that can have been paid
    since then)."""
    orders, paid = [0] * minutes, [0] * minutes
    for sql, first, into in ((MINUTES_SQL, placed_from, orders),
                             (PAID_MINUTES_SQL, paid_from, paid)):  # fmt: skip
        for minute, value in await reader.fetchall(sql, (since, first, since)):
            if 0 <= minute < minutes:
                into[int(minute)] = int(value or 0)
    return MinuteFigures(since, orders, paid)


async def returns_waiting(reader: Reader, count: int) -> list[ReturnRow]:
    """Up to ``count`` return requests not yet approved, oldest first."""
    rows = await reader.fetchall(RETURNS_SQL.format(where="status = 'requested'"), (count,))
    return [ReturnRow(*row) for row in rows]


RETURNS_WAITING_COUNT_SQL = "SELECT COUNT(*) FROM returns WHERE status = 'requested'"


async def returns_waiting_count(reader: Reader) -> int:
    """How many return requests are not yet approved."""
    [(count,)] = await reader.fetchall(RETURNS_WAITING_COUNT_SQL)
    return int(count)


async def returns_of(reader: Reader, order_id: int) -> list[ReturnRow]:
    """The order's return requests, oldest first."""
    rows = await reader.fetchall(RETURNS_SQL.format(where="order_id = ?"), (order_id, 100))
    return [ReturnRow(*row) for row in rows]
