"""What an order's decision asks of others, carried out in the message's unit of work: its
payment-deadline timer armed or canceled, and durable messages to its user (settled, points),
its assets' supervisor (release), the warehouse (a paid order to ship), the refunder and the
payment's query actor (the provider asked, and the payment closed there).

The rows of the decision are :func:`shopkeep.actors.order_store.write`'s; the rules that decide
both are pure (``order_rules``, ``payment_rules``). Joining the same unit, a state change and
everything it causes commit together, or not at all.
"""

from __future__ import annotations

from shopkeep.actors.fulfilment import await_shipment
from shopkeep.actors.order_messages import DeadlineReached
from shopkeep.actors.order_state import (
    ArmDeadline,
    AskProvider,
    Award,
    CancelDeadline,
    Effect,
    Fulfil,
    OrderState,
    Release,
    RequestRefund,
    Settled,
)
from shopkeep.actors.payment_query import QueryPayment
from shopkeep.actors.protocol import AwardPoints, OrderSettled, ReleaseAssets
from shopkeep.actors.refund_rules import first_attempt
from shopkeep.runtime import Address, Context

DEADLINE = "deadline"
"""The name of the order's payment-deadline timer."""


def carry_out(ctx: Context, after: OrderState, effects: list[Effect]) -> None:
    """Arm and cancel the order's timer and send the messages ``effects`` ask for, the order
    being ``after``, into the message's unit."""
    order_id = after.id
    for effect in effects:
        match effect:
            case ArmDeadline(due_at, unanswered):
                reached = DeadlineReached() if unanswered is None else DeadlineReached(
                    True, unanswered
                )
                ctx.arm_timer(DEADLINE, due_at, reached)
            case CancelDeadline():
                ctx.cancel_timer(DEADLINE)
            case Settled():
                ctx.send(Address("user", after.user_id), OrderSettled(order_id))
            case Award(points):
                ctx.send(Address("user", after.user_id), AwardPoints(order_id, points))
            case Release(stock_reason, coupon, wallet_amount, revoke_points):
                message = ReleaseAssets(
                    order_id=order_id,
                    user_id=after.user_id,
                    goods_ids=after.goods_ids,
                    coupon_id=after.coupon_id if coupon else None,
                    wallet_amount=wallet_amount,
                    revoke_points=revoke_points,
                    stock_reason=stock_reason,
                )
                ctx.send(Address("assets", order_id), message)
            case Fulfil():
                await_shipment(ctx, order_id)
            case AskProvider(payment_id, answer_by):
                payment = after.payment(payment_id)
                assert payment is not None  # the rules ask only of the order's own
                question = QueryPayment(
                    order_id, payment_id, payment.amount, payment.currency, payment.provider_ref,
                    attempt=1 if answer_by is None else 0, payable_until=after.expires_at,
                    answer_by=answer_by,
                )
                ctx.send(Address("payment_query", payment_id), question)
            case RequestRefund(refund, txn_id):
                paid = None if refund.payment_id is None else after.payment(refund.payment_id)
                attempt = first_attempt(refund, order_id, paid, txn_id)
                ctx.send(Address("refunder", refund.id), attempt)
