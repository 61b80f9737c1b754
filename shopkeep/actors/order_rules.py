"""The order's rules: pure functions from state (and facts) to a new state and effects.

No IO and no awaits here: the shell (``order.py``) asks the asset actors, passes their answers
in, and writes the effects. Business refusals are :class:`Refusal` values. Payments and their
callbacks are in ``payment_rules.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from msgspec.structs import replace

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_state import (
    APPROVED,
    AWAITING_PAYMENT,
    BY_ADMIN,
    BY_TIMEOUT,
    BY_USER,
    CANCEL_REFUND,
    CANCELED,
    DELIVERED,
    PAID,
    PENDING,
    PLACEMENT_FAILED,
    REFUNDED,
    REFUNDING,
    REQUESTED,
    RETURN_REFUND,
    RETURNED,
    SHIPPED,
    TRANSITIONS,
    ArmDeadline,
    Award,
    CancelDeadline,
    Decision,
    Effect,
    Fulfil,
    History,
    Line,
    OrderState,
    Refund,
    Release,
    RequestRefund,
    ReturnRequest,
    SaveLines,
    SaveRefund,
    SaveReturn,
    Settled,
)
from shopkeep.payments.money import exponent
from shopkeep.payments.names import DEFAULT_CURRENCY
from shopkeep.refusals import INVALID_STATE, NOT_FOUND, PRICE_CHANGED, VALIDATION_ERROR, Refusal
from shopkeep.requests import MAX_AMOUNT

# -- transitions ------------------------------------------------------------------------------


def can_move(from_status: str, to_status: str) -> bool:
    """Whether SPEC 7's state machine allows ``from_status -> to_status``."""
    return to_status in TRANSITIONS.get(from_status, frozenset())


def move(state: OrderState, to_status: str, operation: str, remark: str = "") -> Decision:
    """Change the status (which must be allowed) and record it in the history."""
    if not can_move(state.status, to_status):
        raise ValueError(f"order {state.id}: {state.status} -> {to_status} is not allowed")
    return replace(state, status=to_status), [History(state.status, to_status, operation, remark)]


def invalid_state(state: OrderState, wanted: str) -> Refusal:
    """The refusal for an operation the order's status does not allow."""
    return Refusal(INVALID_STATE, f"order {state.id} is {state.status}: cannot {wanted}", state.id)


# -- amounts ----------------------------------------------------------------------------------


def shipping_fee(goods_amount: int, config: ShopConfig) -> int:
    """Free from the threshold on, the flat fee below it."""
    return 0 if goods_amount >= config.free_shipping_threshold else config.shipping_fee


def coupon_discount(value: int | None, order_amount: int) -> int:
    """A coupon takes off its value, never more than the order amount."""
    return 0 if value is None else max(0, min(value, order_amount))


def wallet_amount(use_balance: int, remaining: int) -> int:
    """What the user asked to pay from the wallet, at most what remains to pay."""
    return max(0, min(use_balance, remaining))


def points_for(pay_amount: int, wallet: int, config: ShopConfig) -> int:
    """Points per whole currency unit of pay amount + wallet amount (100 minor units of yuan
    or dollars, one yen: as many as the currency's minor unit has)."""
    unit: int = 10 ** exponent(config.currency)
    return config.points_per_unit * ((pay_amount + wallet) // unit)


def priced(state: OrderState, unit_prices: Mapping[int, int], config: ShopConfig) -> OrderState:
    """The order with each item's unit price (as its stock was taken) and the goods amount,
    shipping fee and order amount."""
    lines = tuple(replace(line, unit_price=unit_prices[line.goods_id]) for line in state.lines)
    goods = sum(line.quantity * unit_prices[line.goods_id] for line in state.lines)
    fee = shipping_fee(goods, config)
    return replace(
        state, lines=lines, goods_amount=goods, shipping_fee=fee, order_amount=goods + fee
    )


def discounted(state: OrderState, coupon_value: int | None) -> OrderState:
    """The order with its coupon discount, wallet amount and pay amount."""
    discount = coupon_discount(coupon_value, state.order_amount)
    wallet = wallet_amount(state.use_balance, state.order_amount - discount)
    return replace(
        state,
        coupon_discount=discount,
        wallet_amount=wallet,
        pay_amount=state.order_amount - discount - wallet,
    )


# -- placement --------------------------------------------------------------------------------


def validate_request(
    items: Sequence[tuple[int, int]],
    use_balance: int,
    expected_total: int | None,
    config: ShopConfig,
) -> Refusal | None:
    """Checks that need no other actor: the items, quantities and amounts asked for. The one
    place a placement request is checked: the embedded API calls it (through
    :func:`request_problems`, for every problem) before asking the order, and the order again
    for whatever reaches it."""
    found = request_problems(items, use_balance, expected_total, config)
    return Refusal(VALIDATION_ERROR, found[0][1]) if found else None


def request_problems(
    items: Sequence[tuple[int, int]],
    use_balance: int,
    expected_total: int | None,
    config: ShopConfig,
) -> list[tuple[str, str]]:
    """Every problem :func:`validate_request` finds, each with where it is: a JSON Pointer
    into the request as SPEC 7's body has it (``/items/2/quantity``)."""
    found = line_problems(items, config)
    if not 0 <= use_balance <= MAX_AMOUNT:
        found.append(("/use_balance", f"use_balance must be between 0 and {MAX_AMOUNT}"))
    if expected_total is not None and not 0 <= expected_total <= MAX_AMOUNT:
        found.append(("/expected_total", f"expected_total must be between 0 and {MAX_AMOUNT}"))
    return found


def line_problems(
    lines: Sequence[tuple[object, object]], config: ShopConfig
) -> list[tuple[str, str]]:
    """The order's rules for its ``lines`` (goods id, quantity), each problem with where it
    is: at least one line, at most ``max_items``, each goods once, each quantity 1 to
    ``max_quantity``. A part that is no id or no whole number (None, say: a request's types
    refused it already) breaks none of these, so that they are found beside the types'."""
    found: list[tuple[str, str]] = []
    if not lines:
        found.append(("/items", "an order needs at least one item"))
    if len(lines) > config.max_items:
        found.append((
            "/items",
            f"at most {config.max_items} items per order (one per goods), not {len(lines)}",
        ))
    found.extend(repeated_goods([object() if g is None else g for g, _ in lines]))
    for index, (goods_id, quantity) in enumerate(lines):
        if type(quantity) is int and not 1 <= quantity <= config.max_quantity:
            found.append((
                f"/items/{index}/quantity",
                f"goods {goods_id}: quantity must be 1 to {config.max_quantity}, not {quantity}",
            ))  # fmt: skip
    return found


def repeated_goods(goods_ids: Sequence[object]) -> list[tuple[str, str]]:
    """Each line of an order that names a goods an earlier line named, with where it is: a
    goods appears once in an order (its quantity says how many)."""
    found: list[tuple[str, str]] = []
    first: dict[object, int] = {}
    for index, goods_id in enumerate(goods_ids):
        if goods_id in first:
            found.append((
                f"/items/{index}/goods_id",
                f"each goods may appear once in an order: goods {goods_id} is listed again "
                f"(first at /items/{first[goods_id]})",
            ))  # fmt: skip
        first.setdefault(goods_id, index)
    return found


def new_order(
    order_id: int,
    user_id: int,
    items: Sequence[tuple[int, int]],
    coupon_id: int | None,
    use_balance: int,
    now: float,
    currency: str = DEFAULT_CURRENCY,
) -> Decision:
    """The pending order, before any asset is taken, in the shop's ``currency``."""
    state = OrderState(
        currency=currency,
        id=order_id,
        user_id=user_id,
        status=PENDING,
        lines=tuple(Line(goods_id, quantity) for goods_id, quantity in items),
        coupon_id=coupon_id,
        use_balance=use_balance,
        created_at=now,
    )
    return state, [History(None, PENDING, "placed")]


def check_totals(state: OrderState, expected_total: int | None) -> Refusal | None:
    """The priced order's totals refused: validation_error when it would amount to more than
    any amount the shop takes (:data:`MAX_AMOUNT`: its payment, refund and callbacks could not
    carry it), price_changed when the client expected to pay something else: the expected
    total is what the customer pays, from the wallet and through the provider (SPEC 2: any
    price change reaches it, one the wallet would pay for included, but where a coupon pays
    the whole order, when the customer pays nothing whatever the prices)."""
    if state.order_amount > MAX_AMOUNT:
        return Refusal(
            VALIDATION_ERROR,
            f"the order would amount to {state.order_amount}, above the most an order may "
            f"amount to ({MAX_AMOUNT})",
            pointer="/items",  # their prices and quantities together
        )
    if expected_total is None or expected_total == state.pay_amount + state.wallet_amount:
        return None
    return Refusal(
        PRICE_CHANGED,
        f"the total to pay is {state.pay_amount + state.wallet_amount} ({state.wallet_amount} "
        f"from the wallet, {state.pay_amount} through the provider), {expected_total} was "
        "expected",
        state.id,
    )


def confirm(state: OrderState, now: float, config: ShopConfig) -> Decision:
    """Every asset is held: await payment until the deadline, or, with nothing to pay, be paid."""
    state, effects = move(state, AWAITING_PAYMENT, "confirmed")
    effects.insert(0, SaveLines())
    if state.pay_amount == 0:
        state = replace(state, confirmed_at=now)
        state, paid_effects = mark_paid(state, None, now, config, "nothing left to pay")
        return state, effects + paid_effects
    due = now + config.order_timeout_s
    state = replace(state, confirmed_at=now, expires_at=due)
    effects.append(ArmDeadline(due))
    return state, effects


def mark_paid(
    state: OrderState, payment_id: int | None, now: float, config: ShopConfig, remark: str = ""
) -> Decision:
    """Paid: points earned, the user's unpaid count settled, handed to fulfilment."""
    points = points_for(state.pay_amount, state.wallet_amount, config)
    state, effects = move(state, PAID, "paid", remark)
    state = replace(state, paid_at=now, points=points, paid_payment_id=payment_id)
    effects += [CancelDeadline(), Settled(), Fulfil()]
    if points > 0:
        effects.append(Award(points))
    return state, effects


def fail_placement(
    state: OrderState,
    code: str,
    detail: str,
    now: float,
    *,
    coupon_asked: bool,
    wallet_debited: int,
) -> Decision:
    """A step refused (or the placement was cut): undo every step, cancel placement_failed.

    The order keeps what it was priced at (nothing, when it failed before its goods were), and
    no discount or wallet amount, since every step is undone: it shows what it would have cost,
    pay amount = order amount, as SPEC 2's formula says of an order with neither. Priced above
    any amount the shop takes, it keeps no price at all (as before pricing): no amount it
    shows is beyond one (nor past a JavaScript number's exact integers); its history says
    what it would have amounted to."""
    state, effects = move(state, CANCELED, "placement_failed", f"{code}: {detail}")
    if state.order_amount > MAX_AMOUNT:
        state = replace(
            state, lines=tuple(replace(line, unit_price=None) for line in state.lines),
            goods_amount=0, shipping_fee=0, order_amount=0,
        )
    state = replace(
        state, cancel_reason=PLACEMENT_FAILED, failure_code=code, canceled_at=now,
        coupon_discount=0, wallet_amount=0, pay_amount=state.order_amount,
    )
    release = Release("release", coupon_asked and state.coupon_id is not None, wallet_debited,
                      revoke_points=False)
    return state, [*effects, release, Settled()]


def placement_outcome(state: OrderState) -> Refusal | None:
    """The refusal a failed placement answers with (None when it did not fail)."""
    if state.cancel_reason != PLACEMENT_FAILED:
        return None
    return Refusal(state.failure_code or PLACEMENT_FAILED, "the placement failed", state.id)


# -- cancels and the deadline -----------------------------------------------------------------


class CancelPlan(Enum):
    """What a cancel of the order takes (SPEC 5)."""

    UNCHANGED = "unchanged"
    """Canceled already: answer the order as it is."""
    UNPAID = "unpaid"
    """Confirmed, unpaid: cancel and release."""
    INTERCEPT = "intercept"
    """Paid: intercept fulfilment first, then cancel, release and refund."""


def plan_cancel(state: OrderState, if_status: str | None = None) -> CancelPlan | Refusal:
    """Which cancel applies, or invalid_state once shipped, or when the order is no longer
    ``if_status`` (the status the canceler saw; canceled already is answered as it is). A
    pending order never gets here: its placement's own message is ahead of any cancel in the
    order's mailbox, and one cut short by a crash is undone when the order is next loaded
    (``undo_cut_placement``)."""
    if if_status is not None and state.status not in (if_status, CANCELED):
        return Refusal(
            INVALID_STATE,
            f"order {state.id} is {state.status}, not {if_status}: not canceled",
            state.id,
        )
    match state.status:
        case "canceled":
            return CancelPlan.UNCHANGED
        case "awaiting_payment":
            return CancelPlan.UNPAID
        case "paid":
            return CancelPlan.INTERCEPT
    return invalid_state(state, "cancel")


_CANCEL_OPERATIONS = {
    BY_USER: "canceled_by_user",
    BY_ADMIN: "canceled_by_admin",
    BY_TIMEOUT: "canceled_by_timeout",
}


def cancel_unpaid(state: OrderState, reason: str, now: float) -> Decision:
    """Confirmed, unpaid -> canceled: stock, coupon and wallet amount go back."""
    state, effects = move(state, CANCELED, _CANCEL_OPERATIONS[reason])
    state = replace(state, cancel_reason=reason, canceled_at=now)
    release = Release("release", state.coupon_id is not None, state.wallet_amount, False)
    return state, [*effects, CancelDeadline(), release, Settled()]


def cancel_paid(state: OrderState, reason: str, now: float, refund_id: int) -> Decision:
    """Paid (fulfilment intercepted) -> canceled: assets back, points back, money refunded."""
    state, effects = move(state, CANCELED, _CANCEL_OPERATIONS[reason])
    state = replace(state, cancel_reason=reason, canceled_at=now)
    release = Release("release", state.coupon_id is not None, state.wallet_amount, True)
    state, refund_effects = open_refund(
        state,
        Refund(refund_id, CANCEL_REFUND, state.paid_payment_id, state.wallet_amount,
               state.pay_amount, REFUNDING, now),
        now,
    )
    return state, [*effects, release, *refund_effects]


def deadline_reached(state: OrderState, now: float) -> Decision | None:
    """Unpaid at the deadline -> canceled (timeout); anything else is left as it is."""
    if state.status != AWAITING_PAYMENT or state.expires_at is None or state.expires_at > now:
        return None
    return cancel_unpaid(state, BY_TIMEOUT, now)


# -- refunds ----------------------------------------------------------------------------------


def open_refund(
    state: OrderState, refund: Refund, now: float, txn_id: str | None = None
) -> Decision:
    """Record a refund (status refunding) and ask the refunder for its gateway part (of the
    transaction ``txn_id``, else of the payment's own); with no gateway part it is refunded at
    once (its wallet part goes back with the release), the history saying so."""
    effects: list[Effect] = []
    if refund.gateway_amount > 0:
        effects += [SaveRefund(refund, "created"), RequestRefund(refund, txn_id)]
    else:
        refund = replace(refund, status=REFUNDED, refunded_at=now)
        effects += [
            SaveRefund(refund, "refunded", "nothing to refund through the gateway"),
            History(state.status, state.status, "refunded", refund.told(state.currency)),
        ]
    return replace(state, refunds=(*state.refunds, refund)), effects


# -- fulfilment and returns -------------------------------------------------------------------


def ship(state: OrderState, now: float) -> Decision | Refusal | None:
    """Paid -> shipped (None: shipped already, nothing to do)."""
    if state.status == SHIPPED:
        return None
    if state.status != PAID:
        return invalid_state(state, "ship")
    state, effects = move(state, SHIPPED, "shipped")
    return replace(state, shipped_at=now), effects


def deliver(state: OrderState, now: float) -> Decision | Refusal | None:
    """Shipped -> delivered (None: delivered already)."""
    if state.status == DELIVERED:
        return None
    if state.status != SHIPPED:
        return invalid_state(state, "deliver")
    state, effects = move(state, DELIVERED, "delivered")
    return replace(state, delivered_at=now), effects


def request_return(
    state: OrderState, return_id: int, reason: str, now: float
) -> tuple[OrderState, list[Effect], ReturnRequest] | Refusal:
    """A delivered order may be asked back once; asking again answers the same request."""
    if state.status != DELIVERED:
        return invalid_state(state, "return it (only delivered orders)")
    for request in state.returns:
        if request.status == REQUESTED:
            return state, [], request
    request = ReturnRequest(return_id, reason, REQUESTED, now)
    effects: list[Effect] = [
        SaveReturn(request),
        History(DELIVERED, DELIVERED, "return_requested", reason),
    ]
    return replace(state, returns=(*state.returns, request)), effects, request


def approve_return(
    state: OrderState, return_id: int, now: float, refund_id: int
) -> tuple[OrderState, list[Effect], ReturnRequest] | Refusal:
    """An admin approves: returned, stock back (reason return), coupon, wallet amount and
    points back, the gateway part refunded. Approving again answers the return as it is."""
    request = state.return_request(return_id)
    if request is None:
        return Refusal(NOT_FOUND, f"order {state.id} has no return {return_id}", state.id)
    if request.status == APPROVED:
        return state, [], request
    if state.status != DELIVERED:
        return invalid_state(state, "approve a return")
    state, effects = move(state, RETURNED, "returned", request.reason)
    request = replace(request, status=APPROVED, approved_at=now)
    returns = tuple(request if r.id == return_id else r for r in state.returns)
    state = replace(state, returns=returns)
    release = Release("return", state.coupon_id is not None, state.wallet_amount, True)
    state, refund_effects = open_refund(
        state,
        Refund(refund_id, RETURN_REFUND, state.paid_payment_id, state.wallet_amount,
               state.pay_amount, REFUNDING, now),
        now,
    )
    return state, [*effects, SaveReturn(request), release, *refund_effects], request
