"""A placement decided and applied in one turn, committed as one unit of work (SPEC 2).

The common path. The order actor's turn runs the user's, goods' and coupon's handlers itself
(``Context.join``: they are live and idle on this loop, and nothing else runs until the turn
ends), in two passes:

1. **Checks** (``Actor.check``: each participant's own rule, read from its memory, changing
   nothing): the user admits the order (the unpaid-orders cap, the Idempotency-Key), each goods
   quotes its price and says whether the quantity is there, the coupon says whether it applies
   and its value; then the amounts are priced and discounted, ``expected_total`` is compared,
   and the user says whether the wallet amount is there. Any refusal answers at once and
   nothing was taken anywhere: there is nothing to undo (under an Idempotency-Key, the key's
   row keeps the refusal: ``key_rules``). The one refusal held back is the unpaid-orders
   cap's: an order its coupon and wallet pay in full goes straight to paid and is never one
   more unpaid order (SPEC 2), which only its amounts tell. So a user at the cap is refused
   once the order proves to leave something to pay, or at the first other refusal (the cap
   answering, as the first check that failed). The saga, which asks the user before anything
   is priced, admits such an order at the cap provisionally and refuses it once priced unless
   it pays nothing (``placement.py``); a refusal there comes after stock was taken, so it is
   undone and recorded, as the saga's refusals are.
2. **Applies**: the same messages, handled. Since no other message ran in between, each
   answers as its check did; the order is born confirmed (or paid) with its final amounts.

The order's row, items and history, the stock takes and their ledger rows, the coupon's holder,
the wallet debit and its ledger row, the Idempotency-Key and the deadline are one unit: all of it
reaches the disk, or none of it and every participant reloads from the store.

Before the turn, the order activates its participants (``Context.activate``): those not live are
loaded, and for one handling another message or with mail queued, the order waits for its turn
in that mailbox. When a participant still cannot join as the turn runs (it became busy again
meanwhile) the order tries again, :data:`JOIN_ATTEMPTS` times in all. The placement takes the
saga in ``placement.py`` instead, which asks each step and compensates, when a participant
cannot join at all (its memory cannot answer a check without a read), stays busy through every
try, or is busy past half the ask timeout: the saga records the pending order first, so a
caller that stops waiting is answered an order that exists and goes on.
"""

from __future__ import annotations

import msgspec

from shopkeep.actors.key_rules import KeyUnknown, binds
from shopkeep.actors.key_store import find, keep_placement_answer
from shopkeep.actors.order_messages import Place, PlacedBefore
from shopkeep.actors.order_rules import (
    check_totals,
    confirm,
    discounted,
    new_order,
    priced,
)
from shopkeep.actors.order_state import Effect, OrderState
from shopkeep.actors.placement import PlacingOrder, placement_failure
from shopkeep.actors.protocol import (
    BeginOrder,
    DebitWallet,
    KeySeen,
    OrderTicket,
    StockTaken,
    TakeStock,
    UseCoupon,
)
from shopkeep.refusals import TOO_MANY_UNPAID_ORDERS, Refusal
from shopkeep.runtime import Address, Context
from shopkeep.runtime.join import NotJoinable, ParticipantBusy

JOIN_ATTEMPTS = 3
"""Turns a placement tries, each after waiting for its busy participants, before the saga.
Under load a participant is mostly busy for one message (a release, a read): one wait is
usually enough, and a participant busy three times running is one the saga waits for too."""


class PlacementDiverged(RuntimeError):
    """An apply answered otherwise than its check in the same turn: a bug in a participant.

    The turn fails, so nothing of it is written and every participant reloads from the store.
    """


class Participants:
    """The addresses of the actors a placement changes: the user, each goods, the coupon."""

    __slots__ = ("coupon", "goods", "user")

    def __init__(self, message: Place) -> None:
        self.user = Address("user", message.user_id)
        self.goods = [Address("goods", goods_id) for goods_id, _ in message.items]
        coupon_id = message.coupon_id
        self.coupon = None if coupon_id is None else Address("coupon", coupon_id)

    def all(self) -> list[Address]:
        """Every participant's address."""
        coupon = [] if self.coupon is None else [self.coupon]
        return [self.user, *self.goods, *coupon]


async def place_in_one_turn(
    actor: PlacingOrder, ctx: Context, message: Place, begin: BeginOrder
) -> OrderState | Refusal | PlacedBefore | None:
    """Check, then apply, the whole placement in one turn, after waiting for its participants'
    turns; None when they cannot join (nothing happened: run the saga). A refusal here was
    decided before anything was written (a wait refused as overloaded included). A key the
    user's memory cannot tell is looked up in the table first (:class:`KeyUnknown`): absent,
    the turn is tried again saying so; found, the saga's user reads it and answers."""
    who = Participants(message)
    for _ in range(JOIN_ATTEMPTS):
        try:
            await ctx.activate(who.all())  # the turn itself must not wait
        except ParticipantBusy:
            # busy past the wait: the saga records the order now, while the caller still waits
            return None
        except Exception as exc:  # overloaded, or a load failed: nothing was done
            return Refusal(*placement_failure(exc))
        try:
            checked = _check(actor, ctx, message, begin, who)
        except ParticipantBusy:
            continue  # one became busy while the order waited for another
        except KeyUnknown:
            assert begin.key is not None  # only a key is unknown
            if begin.key_absent or await find(ctx, message.user_id, begin.key) is not None:
                return None  # a retry, or a conflict
            begin = msgspec.structs.replace(begin, key_absent=True)
            continue
        except NotJoinable:
            return None
        if isinstance(checked, Refusal):
            return _keep_refusal(ctx, message, begin, who, checked)
        if isinstance(checked, PlacedBefore):
            return checked
        return _place(actor, ctx, begin, who, checked)
    return None


def _place(
    actor: PlacingOrder, ctx: Context, begin: BeginOrder, who: Participants, checked: Checked
) -> OrderState:
    state, effects = checked
    if state.pay_amount == 0:  # paid at once: never unpaid, so under no cap (see _check)
        begin = msgspec.structs.replace(begin, max_unpaid=None)
    _apply(ctx, state, begin, who)
    confirmed, confirm_effects = confirm(state, ctx.now(), actor.config)
    actor.commit(ctx, confirmed, [*effects, *confirm_effects])
    return confirmed


Checked = tuple[OrderState, list[Effect]]
"""The priced and discounted order, and the effects of its being placed."""


def _check(
    actor: PlacingOrder, ctx: Context, message: Place, begin: BeginOrder, who: Participants
) -> Checked | Refusal | PlacedBefore:
    ticket = ctx.join(who.user, begin, check=True)
    if isinstance(ticket, Refusal):
        if ticket.code != TOO_MANY_UNPAID_ORDERS:
            return ticket
        # at the cap, unless the order proves to pay nothing; else the cap's refusal answers,
        # as the first check that failed
        checked = _check_assets(actor, ctx, message, who)
        if isinstance(checked, Refusal) or checked[0].pay_amount > 0:
            return ticket
        return checked
    if not isinstance(ticket, OrderTicket):
        raise PlacementDiverged(f"the user's check answered {ticket!r}")
    if ticket.existing:
        return PlacedBefore(ticket.order_id)
    return _check_assets(actor, ctx, message, who)


def _check_assets(
    actor: PlacingOrder, ctx: Context, message: Place, who: Participants
) -> Checked | Refusal:
    """The checks after the user's admission: the stock and prices, the coupon, the amounts,
    ``expected_total``, the wallet."""
    order_id = actor.address.id
    now = ctx.now()
    prices: dict[int, int] = {}
    for (goods_id, quantity), goods in zip(message.items, who.goods, strict=True):
        quote = ctx.join(goods, TakeStock(order_id, quantity), check=True)
        if not isinstance(quote, StockTaken):
            return _refusal(quote)
        prices[goods_id] = quote.unit_price
    state, effects = new_order(
        order_id, message.user_id, message.items, message.coupon_id, message.use_balance, now,
        actor.config.currency,
    )
    state = priced(state, prices, actor.config)
    coupon_value: int | None = None
    if who.coupon is not None:
        use = UseCoupon(order_id, message.user_id, state.order_amount, now)
        value = ctx.join(who.coupon, use, check=True)
        if not isinstance(value, int) or isinstance(value, bool):
            return _refusal(value)
        coupon_value = value
    state = discounted(state, coupon_value)
    refusal = check_totals(state, message.expected_total)
    if refusal is not None:
        # no order was recorded: no order id (where in the request is kept: /items)
        return msgspec.structs.replace(refusal, order_id=None)
    if state.wallet_amount > 0:
        balance = ctx.join(who.user, DebitWallet(order_id, state.wallet_amount), check=True)
        if isinstance(balance, Refusal):
            return balance
    return state, effects


def _apply(ctx: Context, state: OrderState, begin: BeginOrder, who: Participants) -> None:
    order_id = state.id
    _expect(ctx.join(who.user, begin), OrderTicket)
    for line, goods in zip(state.lines, who.goods, strict=True):
        _expect(ctx.join(goods, TakeStock(order_id, line.quantity)), StockTaken)
    if who.coupon is not None:
        use = UseCoupon(order_id, state.user_id, state.order_amount, ctx.now())
        _expect(ctx.join(who.coupon, use), int)
    if state.wallet_amount > 0:
        _expect(ctx.join(who.user, DebitWallet(order_id, state.wallet_amount)), int)


def _keep_refusal(
    ctx: Context, message: Place, begin: BeginOrder, who: Participants, refusal: Refusal
) -> Refusal:
    """The checks' refusal, kept with the placement's Idempotency-Key when it binds one
    (``key_rules.binds``): the order writes the key's row, refusal and all, into the turn's
    unit, and the user is told of the key in the same turn (``KeySeen``), so that it looks the
    key up from now on. A user that does not exist keeps no keys."""
    if begin.key is not None and binds(refusal):
        assert begin.row_by_order  # the one-turn placement's key row is the order's to write
        if ctx.join(who.user, KeySeen(begin.key)) is None:  # else: no such user
            keep_placement_answer(ctx, begin, message.user_id, refusal)
    return refusal


def _expect(answer: object, kind: type) -> None:
    if not isinstance(answer, kind):
        raise PlacementDiverged(f"a participant's apply answered {answer!r} after its check")


def _refusal(answer: object) -> Refusal:
    if isinstance(answer, Refusal):
        return Refusal(answer.code, answer.detail)
    raise PlacementDiverged(f"a participant's check answered {answer!r}")
