"""The order-side invariants of SPEC section 6: money, states, refunds, and the amounts of
SPEC 2 they rest on.

Written as :mod:`shopkeep.actors.audit_sql` describes (SQL branches, fingerprint gates, a
judge each). These read the tables the order actor writes (orders, payments, refunds, refund_log,
timers) as SPEC.md and the schema define them.
"""

from __future__ import annotations

from typing import Final

from shopkeep.actors.audit_flight import InFlight
from shopkeep.actors.audit_sql import (
    KEPT,
    RELEASED,
    Counts,
    Findings,
    Verdict,
    agree,
    behind,
    fold,
    gate,
    placed,
    sql_list,
)
from shopkeep.actors.order_state import (
    AWAITING_PAYMENT,
    CANCEL_REASONS,
    CANCELED,
    DELIVERED,
    PAID,
    PAYMENT_STATUSES,
    PENDING,
    REFUND_KINDS,
    RETURNED,
    SHIPPED,
    STATUSES,
)
from shopkeep.payments.money import exponent, in_major_units

_STATUSES = sql_list(STATUSES)
_REASONS = sql_list(CANCEL_REASONS)
_KINDS = sql_list(REFUND_KINDS)

# -- money ------------------------------------------------------------------------------------

# A collection is a verified success callback seen for the first time (not a duplicate of a
# (payment, transaction) already counted): the payment log is the record of what the gateway
# collected, one row per transaction, even when one payment is collected twice. (CAST: the log
# keeps the body as bytes, and from SQLite 3.45 the JSON functions read a BLOB as binary JSONB.)
# A body that is no JSON is read as nothing (CASE: SQLite evaluates json_extract on it only
# when json_valid says it can), and named by the money check: one such row must not stop the
# whole audit with SQLite's "malformed JSON".
_READABLE = "json_valid(CAST(body AS TEXT))"
_COLLECTIONS = (
    f"(SELECT order_id, CASE WHEN {_READABLE} THEN json_extract(CAST(body AS TEXT), '$.amount') "
    "END AS amount FROM payment_log WHERE verified = 1 AND duplicate = 0 "
    f"AND CASE WHEN {_READABLE} THEN json_extract(CAST(body AS TEXT), '$.status') END "
    "= 'succeeded')"
)
# the payments collected, by what the shop made of each collection (the log's action, beside
# its body: reading every body again would cost this check two thirds of its time); a body
# that disagrees with its action shows in the money check's sums
_COLLECTED_PAYMENTS = (
    "(SELECT payment_id FROM payment_log WHERE verified = 1 AND duplicate = 0 AND action IN "
    "('applied', 'late_payment_refund', 'duplicate_payment_refund'))"
)
# The payment a refund marks refunded when it is done (payment_rules.refund_done): a cancel's,
# a return's or a late payment's; a second payment's too, unless it is a second transaction of
# the payment that paid the order (logged ``applied``), which still pays it.
_WHOLLY_REFUNDED = (
    "(SELECT payment_id FROM refunds WHERE status = 'refunded' AND payment_id IS NOT NULL "
    "AND (kind != 'duplicate_payment' OR payment_id NOT IN (SELECT payment_id FROM payment_log "
    "WHERE action = 'applied' AND verified = 1 AND duplicate = 0 AND payment_id IS NOT NULL)))"
)
_PAYMENT_STATUSES = sql_list(PAYMENT_STATUSES)
_KEPT = f"(SELECT id AS order_id, pay_amount AS amount FROM orders WHERE status IN {KEPT})"
_REFUNDED = "(SELECT order_id, gateway_amount AS amount FROM refunds WHERE status = 'refunded')"
_REFUNDING = "(SELECT order_id, gateway_amount AS amount FROM refunds WHERE status = 'refunding')"

MONEY_CTES = (
    "money_totals AS (SELECT c.n0 AS collected, k.n0 AS kept, d.n0 AS refunded, "
    f"g.n0 AS refunding, {agree(('c', 1), ('k', -1), ('d', -1), ('g', -1))} AS agree "
    f"FROM ({fold(_COLLECTIONS, 'order_id', 'amount')}) AS c, "
    f"({fold(_KEPT, 'order_id', 'amount')}) AS k, "
    f"({fold(_REFUNDED, 'order_id', 'amount')}) AS d, "
    f"({fold(_REFUNDING, 'order_id', 'amount')}) AS g)",
    "money_gate AS (SELECT 1 FROM money_totals WHERE NOT agree)",
)
MONEY = (
    # with the shop's currency (one for all its orders: a start in another is refused), for
    # the summary to write the totals as money
    "SELECT 'money.total', collected, kept, refunded, refunding, "
    "(SELECT currency FROM orders ORDER BY id DESC LIMIT 1), NULL, NULL FROM money_totals",
    # per order, only when the totals' fingerprints disagree: signed rows grouped by order
    "SELECT 'money.order', order_id, sum(collected), sum(kept), sum(refunded), "
    "(SELECT currency FROM orders WHERE id = order_id), NULL, NULL "
    f"FROM {behind('money_gate')} ("
    f"SELECT order_id, amount AS collected, 0 AS kept, 0 AS refunded FROM {_COLLECTIONS} "
    f"UNION ALL SELECT order_id, 0, amount, 0 FROM {_KEPT} "
    f"UNION ALL SELECT order_id, 0, 0, amount FROM {_REFUNDED} "
    f"UNION ALL SELECT order_id, 0, 0, amount FROM {_REFUNDING}) "
    "GROUP BY order_id HAVING sum(collected) != sum(kept) + sum(refunded)",
    "SELECT 'money.unreadable', id, order_id, NULL, NULL, NULL, NULL, NULL FROM payment_log "
    f"WHERE verified = 1 AND NOT {_READABLE}",
    # each payment's row against the log and the refunds (a row per payment, one or two an
    # order: no gate needed); its status is written in the unit that logs its callback or
    # marks its refund done, so none is ever in flight
    "SELECT 'money.payment', id, order_id, status, expected, NULL, NULL, NULL FROM ("
    f"SELECT p.id, p.order_id, p.status, CASE WHEN p.id IN {_COLLECTED_PAYMENTS} THEN "
    f"CASE WHEN p.id IN {_WHOLLY_REFUNDED} THEN 'refunded' ELSE 'succeeded' END END AS expected "
    "FROM payments AS p) "
    f"WHERE status NOT IN {_PAYMENT_STATUSES} "
    "OR (expected IS NULL AND status IN ('succeeded', 'refunded')) OR status != expected",
)


def judge_money(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """Everything collected through the gateway is kept by an order or refunded.

    The equation, per order and so in total::

        sum(amount of the order's collections: payment_log rows verified, not duplicate,
                                                whose callback says succeeded)
      = pay_amount                    if the order is paid, shipped or delivered (else 0)
      + sum(refunds.gateway_amount    where status in (refunding, refunded))

    It holds for every flow of SPEC sections 3 to 5: a paid order keeps its one collection; a
    canceled paid order and a returned order refund it; a late success (after a cancel) and a
    second success for a paid order (another payment, or the same payment with another
    transaction id) are each a collection with a refund of their own. Created or failed
    payments collected nothing. Collections are counted from the payment log rather than from
    ``payments``, because one payment collected twice is one ``payments`` row but two
    transactions at the gateway.

    Each ``payments`` row must then say what the log and the refunds say of it: succeeded once
    collected, refunded once a refund of it is paid out (a cancel's, a return's, a late
    payment's, or a second payment's that did not pay the order), created or failed while
    nothing was collected.
    """
    bad: list[str] = []
    moving = 0
    for order_id, collected, kept, refunded, currency, *_ in found.get("money.order", ()):
        if flight.order_moving(order_id):
            moving += 1
        else:
            amounts = [_money(amount, currency) for amount in (collected, kept, refunded)]
            bad.append("order {}: collected {}, but kept {} + refunded {}".format(
                order_id, *amounts
            ))
    for log_id, order_id, *_ in found.get("money.unreadable", ()):
        bad.append(f"payment log row {log_id} of order {order_id} is no callback body")
    for payment_id, order_id, status, expected, *_ in found.get("money.payment", ()):
        payment = f"payment {payment_id} of order {order_id} is {status!r}"
        if status not in PAYMENT_STATUSES:
            bad.append(payment)
        elif expected is None:
            bad.append(f"{payment}, but the log shows no collection of it")
        else:
            bad.append(f"{payment}, but its collection and refunds make it {expected!r}")
    summary = "collected = kept by orders + refunded"
    for collected, kept, refunded, refunding, currency, *_ in found.get("money.total", ()):
        amounts = [_money(amount, currency) for amount in (collected, kept, refunded, refunding)]
        summary = (
            "collected {} = kept by orders {} + refunded {} + refunding {}".format(*amounts)
            + (f" ({currency})" if currency else "")
        )
    return Verdict(bad, moving, summary)


def _money(minor: object, currency: str | None) -> str:
    """An amount of the summary in its currency's major units (``12.34``), or as it is when it
    is none a currency writes (a damaged file's: the audit says what it found)."""
    if not isinstance(currency, str) or not isinstance(minor, int) or minor < 0:
        return str(minor)
    return in_major_units(minor, exponent(currency), thousands=",")


# -- states -----------------------------------------------------------------------------------

_DELIVERED_TIMES = ("paid_at", "shipped_at", "delivered_at")
TIMES_OF_STATUS: Final = {
    PENDING: ((), ("confirmed_at", "expires_at", "paid_at", "shipped_at", "delivered_at",
                   "canceled_at")),
    AWAITING_PAYMENT: (("expires_at",), ("paid_at", "shipped_at", "delivered_at", "canceled_at")),
    PAID: (("paid_at",), ("shipped_at", "delivered_at", "canceled_at")),
    SHIPPED: (("paid_at", "shipped_at"), ("delivered_at", "canceled_at")),
    DELIVERED: (_DELIVERED_TIMES, ("canceled_at",)),
    RETURNED: (_DELIVERED_TIMES, ("canceled_at",)),
    CANCELED: (("canceled_at",), ("shipped_at", "delivered_at")),
}  # fmt: skip
"""Per status, the times of what it says happened, and of what cannot have happened yet: an
order set back to ``pending`` (which a start would then undo as an interrupted placement) or
moved past shipping without it has the times to show it. A canceled order was never shipped:
a shipped one cannot be canceled (SPEC 5)."""


def _wrong_time() -> str:
    """SQL naming an order's first time its status contradicts (NULL: none)."""
    cases = [
        f"WHEN status = '{status}' AND {column} IS {'NOT ' * never}NULL "
        f"THEN '{'has' if never else 'has no'} {column}'"
        for status, (had, not_yet) in TIMES_OF_STATUS.items()
        for never, columns in ((False, had), (True, not_yet))
        for column in columns
    ]
    return f"CASE {' '.join(cases)} END"


STATES = (
    "SELECT 'states.order', id, status, cancel_reason, NULL, NULL, NULL, NULL FROM orders "
    f"WHERE status NOT IN {_STATUSES} "
    "OR (status = 'canceled') != (cancel_reason IS NOT NULL) "
    f"OR (cancel_reason IS NOT NULL AND cancel_reason NOT IN {_REASONS})",
    "SELECT 'states.deadline', o.id, o.expires_at, NULL, NULL, NULL, NULL, NULL "
    "FROM orders AS o WHERE o.status = 'awaiting_payment' AND NOT EXISTS "
    "(SELECT 1 FROM timers AS t "
    "WHERE t.kind = 'order' AND t.actor_id = o.id AND t.name = 'deadline')",
    "SELECT 'states.pending', count(*), NULL, NULL, NULL, NULL, NULL, NULL FROM orders "
    "WHERE status = 'pending'",
    # what each status says happened has its time, what it says has not has none, and an
    # order awaiting payment has something to pay (one that pays nothing is paid at once)
    "SELECT 'states.times', id, status, wrong, pay_amount, NULL, NULL, NULL FROM "
    f"(SELECT id, status, {_wrong_time()} AS wrong, pay_amount FROM orders) "
    "WHERE wrong IS NOT NULL OR status = 'awaiting_payment' AND pay_amount <= 0",
    # a returned order was returned by an approved request, and only such an order was
    "SELECT 'states.return', r.id, r.order_id, r.status, o.status, NULL, NULL, NULL "
    "FROM returns AS r LEFT JOIN orders AS o ON o.id = r.order_id "
    "WHERE r.status NOT IN ('requested', 'approved') "
    "OR (r.status = 'approved') != (o.status IS 'returned')",
    "SELECT 'states.unreturned', id, NULL, NULL, NULL, NULL, NULL, NULL FROM orders "
    "WHERE status = 'returned' AND id NOT IN "
    "(SELECT order_id FROM returns WHERE status = 'approved')",
)


def judge_states(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """Every order in an allowed state, a cancel reason iff canceled, the time of what its
    status says happened, every order awaiting payment with its deadline (and its timer) and
    something to pay; an order returned iff a return of it was approved, and every return
    requested or approved; pending orders (placements running) are in flight."""
    bad: list[str] = []
    for order_id, status, reason, *_ in found.get("states.order", ()):
        if status not in STATUSES:
            bad.append(f"order {order_id} is in unknown status {status!r}")
        elif status == "canceled" and reason is None:
            bad.append(f"canceled order {order_id} has no cancel reason")
        elif status != "canceled":
            bad.append(f"{status} order {order_id} has cancel reason {reason!r}")
        else:
            bad.append(f"canceled order {order_id} has unknown cancel reason {reason!r}")
    for order_id, *_ in found.get("states.deadline", ()):
        bad.append(f"order {order_id} awaits payment with no deadline timer")
    for order_id, status, wrong, pay, *_ in found.get("states.times", ()):
        if wrong is not None:
            bad.append(f"{status} order {order_id} {wrong}")
        else:
            bad.append(f"order {order_id} awaits a payment of {pay}")
    for return_id, order_id, status, order_status, *_ in found.get("states.return", ()):
        if status not in ("requested", "approved"):
            bad.append(f"return {return_id} of order {order_id} is {status!r}")
        elif order_status is None:
            bad.append(f"return {return_id} names order {order_id}, which does not exist")
        else:
            bad.append(f"{status} return {return_id} of order {order_id}, which is {order_status}")
    for order_id, *_ in found.get("states.unreturned", ()):
        bad.append(f"returned order {order_id} has no approved return")
    pending = sum(int(row[0]) for row in found.get("states.pending", ()))
    return Verdict(
        bad,
        pending,
        f"{counts.orders} orders in allowed states (each awaiting payment has its deadline)",
        "in flight (pending placements)",
    )


# -- refunds ----------------------------------------------------------------------------------

REFUNDS = (
    "SELECT 'refunds.missing', o.id, o.status, NULL, NULL, NULL, NULL, NULL FROM orders AS o "
    f"WHERE o.status IN {RELEASED} AND o.id IN "
    "(SELECT order_id FROM payments WHERE status IN ('succeeded', 'refunded')) "
    "AND o.id NOT IN (SELECT order_id FROM refunds)",
    # refund_log has no index on refund_id: NOT IN builds one list, where NOT EXISTS would scan
    # the log once per refund
    "SELECT 'refunds.unlogged', id, order_id, NULL, NULL, NULL, NULL, NULL FROM refunds "
    "WHERE id NOT IN (SELECT refund_id FROM refund_log)",
    "SELECT 'refunds.status', id, order_id, status, kind, NULL, NULL, NULL FROM refunds "
    f"WHERE status NOT IN ('refunding', 'refunded') OR kind NOT IN {_KINDS}",
    # a cancel's refund is a canceled order's, a return's a returned order's
    "SELECT 'refunds.kind', r.id, r.order_id, r.kind, o.status, NULL, NULL, NULL "
    "FROM refunds AS r JOIN orders AS o ON o.id = r.order_id "
    "WHERE r.kind = 'cancel' AND o.status != 'canceled' "
    "OR r.kind = 'return' AND o.status != 'returned'",
    # a refund still refunding is being driven: an attempt on its way to its refunder, or the
    # refunder's timer (a query, a retry), each deleted only in the unit that replaces it;
    # else the provider failed it (left for the staff), or its end is on its way to the order
    "SELECT 'refunds.stuck', r.id, r.order_id, NULL, NULL, NULL, NULL, NULL FROM refunds AS r "
    "WHERE r.status = 'refunding' AND r.provider_failed IS NULL AND NOT EXISTS "
    "(SELECT 1 FROM timers AS t WHERE t.kind = 'refunder' AND t.actor_id = r.id) "
    "AND NOT EXISTS (SELECT 1 FROM outbox AS b WHERE b.kind = 'refunder' AND b.actor_id = r.id)",
    # the refunds the shop still drives: in flight until the provider pays them out (SPEC 6:
    # once quiet, none is), however long it refuses them
    "SELECT 'refunds.refunding', count(*), NULL, NULL, NULL, NULL, NULL, NULL FROM refunds "
    "WHERE status = 'refunding' AND provider_failed IS NULL",
    # a refund is refunded in the unit that logs it so (or settled by hand)
    "SELECT 'refunds.unlogged_done', id, order_id, NULL, NULL, NULL, NULL, NULL FROM refunds "
    "WHERE status = 'refunded' AND id NOT IN (SELECT refund_id FROM refund_log "
    "WHERE event IN ('refunded', 'settled_by_hand'))",
)


def judge_refunds(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """Every canceled or returned order that was paid has a refund record, every refund record
    has its log (a refunded one, the entry that refunded it), no refund is left outside
    refunding / refunded, a refund refunding is still being driven (an attempt or a timer of
    its refunder) unless the provider failed it, and a cancel's or a return's refund is of an
    order so ended. A refund driven is in flight: the shop is not quiet while the provider has
    not paid it out."""
    bad: list[str] = []
    moving = 0
    for order_id, status, *_ in found.get("refunds.missing", ()):
        if flight.order_moving(order_id):
            moving += 1
        else:
            bad.append(f"{status} order {order_id} was paid but has no refund record")
    for refund_id, order_id, *_ in found.get("refunds.unlogged", ()):
        bad.append(f"refund {refund_id} of order {order_id} has no log")
    for refund_id, order_id, status, kind, *_ in found.get("refunds.status", ()):
        what = status if status not in ("refunding", "refunded") else f"of kind {kind}"
        bad.append(f"refund {refund_id} of order {order_id} is {what!r}")
    for refund_id, order_id, kind, status, *_ in found.get("refunds.kind", ()):
        bad.append(f"{kind} refund {refund_id} is of order {order_id}, which is {status}")
    stuck = found.get("refunds.stuck", ())
    for refund_id, order_id, *_ in stuck:
        if flight.order_moving(order_id):
            moving += 1
        else:
            bad.append(
                f"refund {refund_id} of order {order_id} is refunding with nothing driving it"
            )
    for refunding, *_ in found.get("refunds.refunding", ()):
        moving += int(refunding) - len(stuck)  # driven: an attempt or a timer of its refunder
    for refund_id, order_id, *_ in found.get("refunds.unlogged_done", ()):
        bad.append(f"refund {refund_id} of order {order_id} is refunded, but its log never says so")
    return Verdict(bad, moving, f"{counts.refunds} refunds, each recorded and logged")


# -- amounts ----------------------------------------------------------------------------------

_PRICED = placed()
# its complement written out: the planner reads ``status = 'pending'`` by the index on status
_UNPRICED_IDS = (
    "(SELECT id FROM orders WHERE status = 'pending' "
    "OR (status = 'canceled' AND cancel_reason = 'placement_failed'))"
)
# An item's price is NULL until its order is priced: an unpriced order's goods amount is 0.
_ITEMS = "(SELECT order_id, quantity * unit_price AS amount FROM order_items)"
_DEBITS = (
    "(SELECT order_id, -amount AS amount FROM wallet_ledger WHERE reason = 'order_debit' "
    f"AND order_id NOT IN {_UNPRICED_IDS})"
)

AMOUNTS_CTES = (
    gate("items_gate", fold("orders", "id", "goods_amount"), fold(_ITEMS, "order_id", "amount")),
    gate(
        "debits_gate",
        fold(f"(SELECT id, wallet_amount FROM orders WHERE {_PRICED})", "id", "wallet_amount"),
        fold(_DEBITS, "order_id", "amount"),
    ),
)
AMOUNTS = (
    "SELECT 'amounts.order', id, goods_amount, shipping_fee, order_amount, coupon_discount, "
    f"wallet_amount, pay_amount FROM orders WHERE {_PRICED} AND ("
    "order_amount != goods_amount + shipping_fee "
    "OR pay_amount != order_amount - coupon_discount - wallet_amount "
    "OR min(goods_amount, shipping_fee, coupon_discount, wallet_amount, pay_amount) < 0 "
    "OR (coupon_id IS NULL AND coupon_discount != 0))",
    # per order, only when the fingerprints of the goods amounts and the items' disagree
    "SELECT 'amounts.items', o.id, o.goods_amount, i.amount, NULL, NULL, NULL, NULL "
    f"FROM {behind('items_gate')} (SELECT order_id, coalesce(sum(amount), 0) AS amount "
    f"FROM {_ITEMS} GROUP BY order_id) AS i JOIN orders AS o ON o.id = i.order_id "
    "WHERE o.goods_amount != i.amount",
    "SELECT 'amounts.debit', o.id, o.wallet_amount, coalesce(d.amount, 0), NULL, NULL, NULL, "
    f"NULL FROM {behind('debits_gate')} orders AS o LEFT JOIN (SELECT order_id, "
    f"sum(amount) AS amount FROM {_DEBITS} GROUP BY order_id) AS d ON d.order_id = o.id "
    f"WHERE {placed('o')} "
    "AND o.wallet_amount != coalesce(d.amount, 0)",
    "SELECT 'amounts.payment', o.id, o.status, o.pay_amount, NULL, NULL, NULL, NULL "
    f"FROM orders AS o WHERE o.status IN {KEPT} AND o.pay_amount > 0 AND NOT EXISTS "
    "(SELECT 1 FROM payments AS p WHERE p.order_id = o.id AND p.status = 'succeeded' "
    "AND p.amount = o.pay_amount)",
    # a coupon takes off at most its value (SPEC 2: min(value, order amount))
    "SELECT 'amounts.coupon', o.id, o.coupon_discount, c.id, c.value, NULL, NULL, NULL "
    "FROM orders AS o JOIN coupons AS c ON c.id = o.coupon_id "
    f"WHERE {placed('o')} "
    "AND o.coupon_discount > c.value",
    # a cancel's or a return's refund gives the order's wallet amount back; a late or second
    # payment's refunds only what the gateway collected (the money check weighs gateway parts)
    "SELECT 'amounts.refund', r.id, r.order_id, r.kind, r.wallet_amount, o.wallet_amount, "
    "NULL, NULL FROM refunds AS r JOIN orders AS o ON o.id = r.order_id "
    "WHERE r.wallet_amount != CASE WHEN r.kind IN ('cancel', 'return') "
    "THEN o.wallet_amount ELSE 0 END",
)


def judge_amounts(found: Findings, flight: InFlight, counts: Counts) -> Verdict:
    """Every priced order's amounts are SPEC 2's: order = goods + shipping, pay = order -
    coupon discount - wallet amount, none negative, no discount without a coupon; its goods
    amount is what its items cost; its wallet amount is what the wallet's ledger says it
    debited; an order that keeps money it was paid has the succeeded payment of its pay
    amount; and each refund's wallet part is the order's (a cancel's, a return's) or none."""
    bad: list[str] = []
    for order_id, goods, shipping, order, discount, wallet, pay in found.get(
        "amounts.order", ()
    ):
        bad.append(
            f"order {order_id}: goods {goods} + shipping {shipping} = order {order}, less "
            f"discount {discount} and wallet {wallet} = pay {pay} does not add up"
        )
    for order_id, goods, items, *_ in found.get("amounts.items", ()):
        bad.append(f"order {order_id}: goods amount {goods}, but its items cost {items}")
    for order_id, wallet, debited, *_ in found.get("amounts.debit", ()):
        bad.append(f"order {order_id}: wallet amount {wallet}, but the wallet debited {debited}")
    for order_id, status, pay, *_ in found.get("amounts.payment", ()):
        bad.append(f"{status} order {order_id} has no succeeded payment of its {pay}")
    for order_id, discount, coupon_id, value, *_ in found.get("amounts.coupon", ()):
        bad.append(
            f"order {order_id}: discount {discount}, but coupon {coupon_id} is worth {value}"
        )
    for refund_id, order_id, kind, wallet, order_wallet, *_ in found.get("amounts.refund", ()):
        owed = order_wallet if kind in ("cancel", "return") else 0
        bad.append(
            f"{kind} refund {refund_id} of order {order_id} gives the wallet {wallet}, not {owed}"
        )
    return Verdict(
        bad, 0, f"{counts.orders} orders' amounts add up, with their items, wallet and payment"
    )
