"""The asset invariants of SPEC section 6: stock, wallet, points, coupons.

Written as :mod:`shopkeep.actors.audit_sql` describes: per-key equations (per goods, per user)
behind fingerprint gates, per-order ones only for the orders they concern (canceled and
returned orders are looked up by status, and their ledger rows through the ledgers' indexes).
"""

from __future__ import annotations

from shopkeep.actors.audit_flight import InFlight
from shopkeep.actors.audit_sql import (
    KEPT,
    LIVE,
    RELEASED,
    Counts,
    Findings,
    P,
    Verdict,
    behind,
    fold,
    gate,
    nonzero,
    placed,
)

COUNTS_BRANCH = (
    "SELECT 'counts', (SELECT count(*) FROM goods), (SELECT count(*) FROM users), "
    "(SELECT count(*) FROM coupons), (SELECT count(*) FROM orders), "
    "(SELECT count(*) FROM refunds), NULL, NULL"
)
OUTBOX_BRANCH = "SELECT 'outbox', id, kind, actor_id, payload, NULL, NULL, NULL FROM outbox"


# -- stock ------------------------------------------------------------------------------------

# A live order holds what its items say, goods by goods: its items' quantities against the
# takes of its ledger rows, each weighted by its goods (so that two goods' quantities swapped
# do not cancel out), folded by order.
_LIVE_IDS = f"(SELECT id FROM orders WHERE status IN {LIVE})"
_WEIGHT = f"((goods_id % {P}) + 1)"
STOCK_CTES = (
    gate(
        "stock_gate",
        fold("goods", "id", "stock - initial_stock - restocked"),
        fold("stock_ledger", "goods_id", "quantity"),
    ),
    gate(
        "held_gate",
        fold(
            f"(SELECT order_id, quantity * {_WEIGHT} % {P} AS v FROM order_items "
            f"WHERE order_id IN {_LIVE_IDS})", "order_id", "v",
        ),
        fold(
            f"(SELECT order_id, -quantity * {_WEIGHT} % {P} AS v FROM stock_ledger "
            f"WHERE order_id IN {_LIVE_IDS})", "order_id", "v",
        ),
    ),
)
STOCK = (
    "SELECT 'stock.negative', id, stock, NULL, NULL, NULL, NULL, NULL FROM goods WHERE stock < 0",
    "SELECT 'stock.goods', g.id, g.stock, g.initial_stock, g.restocked, coalesce(l.net, 0), "
    f"NULL, NULL FROM {behind('stock_gate')} goods AS g LEFT JOIN "
    "(SELECT goods_id, sum(quantity) AS net FROM stock_ledger NOT INDEXED GROUP BY goods_id) "
    "AS l ON l.goods_id = g.id "
    "WHERE g.stock != g.initial_stock + g.restocked + coalesce(l.net, 0)",
    # not behind the gate: a missing goods whose rows net to zero leaves the folds agreeing
    # (one pass of the ledger's index by goods, 5 ms over 157,000 rows)
    "SELECT 'stock.orphan', goods_id, count(*), NULL, NULL, NULL, NULL, NULL FROM stock_ledger "
    "WHERE goods_id NOT IN (SELECT id FROM goods) GROUP BY goods_id",
    # every take is an order's: the saga writes its pending order before it takes anything
    "SELECT 'stock.no_order', order_id, goods_id, sum(quantity), NULL, NULL, NULL, NULL "
    "FROM stock_ledger WHERE order_id NOT IN (SELECT id FROM orders) "
    "GROUP BY order_id, goods_id",
    # a released order's rows are looked at goods by goods only when its own fingerprint
    # (of quantity by goods, over its few rows) says they do not net to zero
    "SELECT 'stock.order', o.id, l.goods_id, sum(l.quantity), o.status, NULL, NULL, NULL "
    "FROM orders AS o JOIN stock_ledger AS l ON l.order_id = o.id "
    f"WHERE o.status IN {RELEASED} AND "
    f"{nonzero('stock_ledger AS x WHERE x.order_id = o.id', 'x.goods_id', 'x.quantity')} "
    "GROUP BY o.id, l.goods_id HAVING sum(l.quantity) != 0",
    # a live order whose ledger does not hold what its items say (only when the gate is open)
    "SELECT 'stock.held', order_id, goods_id, sum(ordered), sum(taken), NULL, NULL, NULL "
    f"FROM {behind('held_gate')} (SELECT order_id, goods_id, quantity AS ordered, 0 AS taken "
    f"FROM order_items WHERE order_id IN {_LIVE_IDS} UNION ALL SELECT order_id, goods_id, 0, "
    f"-quantity FROM stock_ledger WHERE order_id IN {_LIVE_IDS}) "
    "GROUP BY order_id, goods_id HAVING sum(ordered) != sum(taken)",
)


def judge_stock(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """On hand = initial + restocked + the stock ledger, and >= 0, for every goods; a canceled
    or returned order holds nothing (unless its release is in flight)."""
    bad: list[str] = []
    moving = 0
    for goods_id, stock, *_ in found.get("stock.negative", ()):
        bad.append(f"goods {goods_id}: stock {stock} is below zero")
    for goods_id, stock, initial, restocked, net, *_ in found.get("stock.goods", ()):
        bad.append(
            f"goods {goods_id}: stock {stock}, but initial {initial} + restocked "
            f"{restocked} + ledger {net:+} = {initial + restocked + net}"
        )
    for order_id, goods_id, ordered, taken, *_ in found.get("stock.held", ()):
        bad.append(f"order {order_id} ordered {ordered} of goods {goods_id}, but holds {taken}")
    for goods_id, rows, *_ in found.get("stock.orphan", ()):
        bad.append(f"goods {goods_id} does not exist but has {rows} stock ledger rows")
    for order_id, goods_id, net, *_ in found.get("stock.no_order", ()):
        bad.append(f"order {order_id} does not exist but moved {net:+} of goods {goods_id}")
    for order_id, goods_id, net, status, *_ in found.get("stock.order", ()):
        if net > 0:
            bad.append(
                f"{status} order {order_id} got back {net} more of goods {goods_id} than it took"
            )
        elif flight.stock_moving(order_id, goods_id):
            moving += 1
        else:
            bad.append(f"{status} order {order_id} still holds {-net} of goods {goods_id}")
    return Verdict(
        bad, moving, f"{counts.goods} goods: on hand = initial + restocked - held by orders"
    )


# -- wallet -----------------------------------------------------------------------------------

WALLET_CTES = (
    gate("wallet_gate", fold("users", "id", "balance"), fold("wallet_ledger", "user_id", "amount")),
)
WALLET = (
    "SELECT 'wallet.negative', id, balance, NULL, NULL, NULL, NULL, NULL FROM users "
    "WHERE balance < 0",
    "SELECT 'wallet.user', u.id, u.balance, coalesce(l.total, 0), NULL, NULL, NULL, NULL "
    f"FROM {behind('wallet_gate')} users AS u LEFT JOIN "
    "(SELECT user_id, sum(amount) AS total FROM wallet_ledger NOT INDEXED GROUP BY user_id) "
    "AS l ON l.user_id = u.id WHERE u.balance != coalesce(l.total, 0)",
    "SELECT 'wallet.orphan', user_id, count(*), NULL, NULL, NULL, NULL, NULL "
    f"FROM {behind('wallet_gate')} wallet_ledger "
    "WHERE user_id NOT IN (SELECT id FROM users) GROUP BY user_id",
    # a released order got its wallet amount back; a refund still refunding may yet give it
    "SELECT 'wallet.order', id, user_id, status, net, "
    "EXISTS (SELECT 1 FROM refunds AS r WHERE r.order_id = id AND r.status = 'refunding'), "
    "NULL, NULL FROM (SELECT o.id, o.user_id, o.status, "
    "(SELECT coalesce(sum(l.amount), 0) FROM wallet_ledger AS l "
    "WHERE l.user_id = o.user_id AND l.order_id = o.id) AS net "
    f"FROM orders AS o WHERE o.status IN {RELEASED} AND o.wallet_amount > 0) WHERE net != 0",
)


def judge_wallet(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """Balance = the wallet ledger, and >= 0, for every user; a canceled or returned order
    gave its wallet amount back (unless that is in flight)."""
    bad: list[str] = []
    moving = 0
    for user_id, balance, *_ in found.get("wallet.negative", ()):
        bad.append(f"user {user_id}: balance {balance} is below zero")
    for user_id, balance, total, *_ in found.get("wallet.user", ()):
        bad.append(f"user {user_id}: balance {balance}, but the wallet ledger sums to {total}")
    for user_id, rows, *_ in found.get("wallet.orphan", ()):
        bad.append(f"user {user_id} does not exist but has {rows} wallet ledger rows")
    for order_id, user_id, status, net, refunding, *_ in found.get("wallet.order", ()):
        if net > 0:
            bad.append(f"{status} order {order_id} gave user {user_id} {net} more than it took")
        elif refunding or flight.wallet_moving(order_id):
            moving += 1
        else:
            bad.append(f"{status} order {order_id} still holds {-net} of user {user_id}")
    return Verdict(bad, moving, f"{counts.users} users: balance = wallet ledger >= 0")


# -- points -----------------------------------------------------------------------------------

POINTS_CTES = (
    gate("points_gate", fold("users", "id", "points"), fold("points_ledger", "user_id", "amount")),
)
POINTS = (
    "SELECT 'points.user', u.id, u.points, coalesce(l.total, 0), NULL, NULL, NULL, NULL "
    f"FROM {behind('points_gate')} users AS u LEFT JOIN "
    "(SELECT user_id, sum(amount) AS total FROM points_ledger NOT INDEXED GROUP BY user_id) "
    "AS l ON l.user_id = u.id WHERE u.points != coalesce(l.total, 0)",
    "SELECT 'points.orphan', user_id, count(*), NULL, NULL, NULL, NULL, NULL "
    f"FROM {behind('points_gate')} points_ledger "
    "WHERE user_id NOT IN (SELECT id FROM users) GROUP BY user_id",
    # a canceled or returned order gives none; one that keeps its payment, what it recorded
    "SELECT 'points.order', id, user_id, status, net, owed, NULL, NULL FROM "
    "(SELECT o.id, o.user_id, o.status, (SELECT coalesce(sum(p.amount), 0) FROM points_ledger "
    "AS p WHERE p.user_id = o.user_id AND p.order_id = o.id) AS net, "
    f"CASE WHEN o.status IN {KEPT} THEN o.points ELSE 0 END AS owed "
    f"FROM orders AS o WHERE o.status IN {RELEASED} OR o.status IN {KEPT}) WHERE net != owed",
)


def judge_points(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """Points = the points ledger for every user; an order that keeps its payment gives its
    user the points it recorded, a canceled or returned order's points were taken back (unless
    that is in flight), and never more than it gave."""
    bad: list[str] = []
    moving = 0
    for user_id, points, total, *_ in found.get("points.user", ()):
        bad.append(f"user {user_id}: points {points}, but the points ledger sums to {total}")
    for user_id, rows, *_ in found.get("points.orphan", ()):
        bad.append(f"user {user_id} does not exist but has {rows} points ledger rows")
    for order_id, user_id, status, net, owed, *_ in found.get("points.order", ()):
        if net < 0:
            bad.append(
                f"{status} order {order_id} took back {-net} more points from user {user_id} "
                "than it gave"
            )
        elif flight.points_moving(order_id):
            moving += 1
        elif owed:
            bad.append(f"{status} order {order_id} gives user {user_id} {net} points, not {owed}")
        else:
            bad.append(f"{status} order {order_id} still gives user {user_id} {net} points")
    return Verdict(
        bad, moving,
        f"{counts.users} users: points = points ledger, each order's points given or taken back",
    )


# -- coupons ----------------------------------------------------------------------------------

COUPONS = (
    # coupons marked used by an order that is not a live order holding them
    "SELECT 'coupons.marked', c.id, c.order_id, o.status, o.coupon_id, NULL, NULL, NULL "
    "FROM coupons AS c LEFT JOIN orders AS o ON o.id = c.order_id "
    f"WHERE c.order_id IS NOT NULL AND NOT (o.coupon_id IS c.id AND o.status IN {LIVE})",
    # live orders holding a coupon not marked used by them (this also finds two live holders)
    "SELECT 'coupons.held', o.id, o.coupon_id, c.order_id, c.id IS NULL, NULL, NULL, NULL "
    "FROM orders AS o LEFT JOIN coupons AS c ON c.id = o.coupon_id "
    f"WHERE o.coupon_id IS NOT NULL AND o.status IN {LIVE} AND c.order_id IS NOT o.id",
    # orders placed with a coupon of another user's (a coupon belongs to its user: SPEC 2);
    # a placement running, or one that failed (on that very coupon, say), was not placed
    "SELECT 'coupons.owner', o.id, o.user_id, c.id, c.user_id, NULL, NULL, NULL "
    "FROM orders AS o JOIN coupons AS c ON c.id = o.coupon_id WHERE c.user_id != o.user_id "
    f"AND {placed('o')}",
)


def judge_coupons(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """A coupon is used if and only if exactly one live order holds it.

    A coupon still marked used by a pending order (a placement running) or by a canceled one
    whose release is in the outbox is in flight. A returned order may keep its coupon or give
    it back: either is consistent (SPEC leaves a return's coupon to the shop).
    """
    bad: list[str] = []
    moving = 0
    for coupon_id, held_by, status, order_coupon, *_ in found.get("coupons.marked", ()):
        name = f"coupon {coupon_id} is marked used by order {held_by}"
        if status is None:
            bad.append(f"{name}, which does not exist")
        elif order_coupon != coupon_id:
            bad.append(f"{name}, whose coupon is {order_coupon}")
        elif status == "pending" or (
            status == "canceled" and flight.coupon_moving(coupon_id, held_by)
        ):
            moving += 1
        elif status != "returned":
            bad.append(f"coupon {coupon_id} is still marked used by {status} order {held_by}")
    for order_id, user_id, coupon_id, owner, *_ in found.get("coupons.owner", ()):
        bad.append(f"order {order_id} of user {user_id} holds coupon {coupon_id} of user {owner}")
    for order_id, coupon_id, marked_by, missing, *_ in found.get("coupons.held", ()):
        if missing:
            bad.append(f"live order {order_id} holds coupon {coupon_id}, which does not exist")
        elif marked_by is None:
            bad.append(f"coupon {coupon_id} is unused, but live order {order_id} holds it")
        else:
            bad.append(
                f"coupon {coupon_id} is marked used by order {marked_by}, "
                f"but live order {order_id} holds it"
            )
    return Verdict(bad, moving, f"{counts.coupons} coupons: used iff one live order holds it")
