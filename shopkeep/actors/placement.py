"""The placement saga (SPEC 2), run inside the order actor's handler.

1. The pending order (row, items, history ``placed``) is submitted on its own
   (``ctx.checkpoint()``): units commit in submission order, so any stock, coupon or wallet
   change made for this order is durable no earlier than the order that recovery will find.
   Then the checks, by asks that take nothing (:class:`~shopkeep.actors.protocol.Quote`): each
   goods' stock at today's price, the coupon for the amount they make, ``expected_total``, the
   cap and the wallet's balance. A refusal there fails the order with nothing taken (SPEC 2:
   checks first); taking the stock first held the last unit from another customer while this
   order's refusal was on its way.
2. Take the stock of every item (asked concurrently: different goods actors), learning the unit
   prices. 3. Price the order. 4. Use the coupon, if any. Then the discount, wallet and pay
   amounts are known and ``expected_total`` is checked (price_changed): the coupon's value is
   only known once it is used, so the check comes after step 4 and before the wallet; so is
   the unpaid-orders cap of a user who was at it (admitted provisionally: an order that pays
   nothing goes through, one more unpaid order is refused too_many_unpaid_orders).
5. Debit the wallet, if any wallet amount: first the amounts are written and checkpointed, so
   that whoever undoes a cut placement knows what may have been debited.
6. Confirm: awaiting payment with its deadline, or paid when nothing is left to pay.

Steps 2-5 check again as they take (a concurrent order may have taken the stock or the coupon
since, or a price changed). Any refusal in steps 2-5 undoes every step already done with one
durable ReleaseAssets (all goods, the coupon if it was asked for, the wallet amount if debited)
and cancels the order, placement_failed, failure code = the refusal's code.

Unknown outcomes: an ask that failed with an error (not a refusal) is treated as a refusal of
that step (failure code ``overloaded`` or ``unavailable``). Usually it had no effect (the runtime
guarantees that for Overloaded, ActorStopped, a failed handler or commit); after a timeout the
message may still be handled later. The compensations are safe either way: each gives back only
what the order holds (ReturnStock the net still taken, ReleaseCoupon only from its holder,
ReleaseWallet at most the order's debit), and each queues behind the late message in the
asset's mailbox. That is also why a cut placement can be undone knowing only what was asked
(:func:`undo_cut_placement`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_rules import (
    check_totals,
    confirm,
    discounted,
    fail_placement,
    priced,
)
from shopkeep.actors.order_state import INTERRUPTED, Effect, Line, OrderState, SaveLines
from shopkeep.actors.protocol import DebitWallet, Quote, StockTaken, TakeStock, UseCoupon
from shopkeep.refusals import OVERLOADED, TOO_MANY_UNPAID_ORDERS, UNAVAILABLE, Refusal
from shopkeep.runtime import Address, Context, Overloaded

log = structlog.get_logger("shopkeep.placement")


class PlacingOrder(Protocol):
    """What a placement needs of the order actor running it (``order.OrderActor``): its
    address, its state and settings, and the way it writes a decision."""

    @property
    def address(self) -> Address:
        """The order's address."""

    @property
    def state(self) -> OrderState | None:
        """The order as it is now."""

    @property
    def config(self) -> ShopConfig:
        """The shop's settings."""

    def commit(self, ctx: Context, state: OrderState, effects: list[Effect]) -> None:
        """Write ``state`` and ``effects`` into the unit and make ``state`` current."""

UNDONE_FAILURES = frozenset({OVERLOADED, UNAVAILABLE, INTERRUPTED})
"""Failure codes of a placement that did nothing for the customer: no business rule said no,
everything taken was given back. Its Idempotency-Key does not stay bound to it (SPEC 7: the
retry runs afresh; ``Shop.place_order``)."""


BUSY_DETAIL = "the shop is too busy to take this order now; try again"
"""The detail of an ``overloaded`` placement (which actor was full is ours to know)."""
FAILED_DETAIL = "the order could not be placed now; try again"
"""The detail of an ``unavailable`` placement: what failed inside is logged, never answered."""


def placement_failure(answer: Any) -> tuple[str, str]:
    """The failure code and detail of a step that did not succeed: its refusal, or the error of
    its ask (``overloaded`` or ``unavailable``, with a detail that names nothing internal: it
    reaches the client and the order's history; the error itself is logged)."""
    if isinstance(answer, Refusal):
        return answer.code, answer.detail
    if isinstance(answer, Overloaded):
        return OVERLOADED, BUSY_DETAIL
    log.warning("placement_step_failed", error=f"{type(answer).__name__}: {answer!s:.500}")
    return UNAVAILABLE, FAILED_DETAIL


def _fail(
    actor: PlacingOrder,
    ctx: Context,
    state: OrderState,
    failure: tuple[str, str],
    *,
    coupon_asked: bool,
    wallet_debited: int = 0,
    pointer: str | None = None,
) -> Refusal:
    code, detail = failure
    state, effects = fail_placement(
        state, code, detail, ctx.now(), coupon_asked=coupon_asked, wallet_debited=wallet_debited
    )
    actor.commit(ctx, state, [SaveLines(), *effects])
    return Refusal(code, detail, state.id, pointer)


async def _checks(
    ctx: Context, state: OrderState, expected_total: int | None, capped: bool, config: ShopConfig
) -> tuple[OrderState, Refusal | None]:
    """The placement's checks by asks, nothing taken (each participant's :class:`Quote`): the
    goods and their stock at today's prices, the coupon for the amount they make, the expected
    total, the unpaid-orders cap, the wallet's balance. The order as far as the checks priced
    it (a refused order keeps its prices), and the refusal, or None when the steps may begin
    (they check again as they take: a concurrent order may take the stock, the coupon or the
    balance meanwhile)."""
    quotes = await _ask_each(ctx, state, lambda line: Quote(TakeStock(state.id, line.quantity)))
    prices = _prices(state, quotes)
    if not isinstance(prices, dict):
        return state, Refusal(*prices)
    state = priced(state, prices, config)
    coupon_value: int | None = None
    if state.coupon_id is not None:
        use = UseCoupon(state.id, state.user_id, state.order_amount, ctx.now())
        value = await _coupon_value(ctx, state.coupon_id, Quote(use))
        if not isinstance(value, int):
            return state, Refusal(*value)
        coupon_value = value
    state = discounted(state, coupon_value)
    refusal = _totals_refused(state, expected_total, capped, config)
    if refusal is not None or state.wallet_amount == 0:
        return state, refusal
    try:
        left = await ctx.ask(
            Address("user", state.user_id), Quote(DebitWallet(state.id, state.wallet_amount))
        )
    except Exception as exc:
        return state, Refusal(*placement_failure(exc))
    return state, left if isinstance(left, Refusal) else None


def _prices(state: OrderState, answers: list[Any]) -> dict[int, int] | tuple[str, str]:
    """Each line's unit price from its goods' StockTaken (or a quote of one), by goods; else
    the failure (code, detail) of the first answer that is none. A cancellation is raised."""
    for answer in answers:
        if isinstance(answer, asyncio.CancelledError):
            raise answer
    prices: dict[int, int] = {}
    for line, answer in zip(state.lines, answers, strict=True):
        if not isinstance(answer, StockTaken):
            return placement_failure(answer)
        prices[line.goods_id] = answer.unit_price
    return prices


async def _coupon_value(ctx: Context, coupon_id: int, message: Any) -> int | tuple[str, str]:
    """The coupon's value, as it answers ``message`` (a UseCoupon, or a Quote of one); else the
    failure (code, detail): its refusal, or the error of the ask."""
    try:
        answer = await ctx.ask(Address("coupon", coupon_id), message)
    except Exception as exc:
        return placement_failure(exc)
    if not isinstance(answer, int) or isinstance(answer, bool):
        return placement_failure(answer)
    return answer


def _totals_refused(
    state: OrderState, expected_total: int | None, capped: bool, config: ShopConfig
) -> Refusal | None:
    """The discounted order refused for its totals (the largest amount, ``expected_total``)
    or, its user at the unpaid-orders cap (``capped``), for leaving something to pay."""
    refusal = check_totals(state, expected_total)
    if refusal is not None or not (capped and state.pay_amount > 0):
        return refusal
    cap = config.max_unpaid_orders
    detail = (f"user {state.user_id} already has {cap} unpaid orders or more (at most "
              f"{cap}), and this one leaves {state.pay_amount} to pay")
    return Refusal(TOO_MANY_UNPAID_ORDERS, detail)


async def _take_stock(ctx: Context, state: OrderState) -> list[Any]:
    """Every line's TakeStock answer (or the error of its ask), in line order."""
    return await _ask_each(ctx, state, lambda line: TakeStock(state.id, line.quantity))


async def _ask_each(
    ctx: Context, state: OrderState, message: Callable[[Line], Any]
) -> list[Any]:
    """Each line's goods asked ``message(line)``: the answers (or the errors), in line order."""
    asks = [ctx.ask(Address("goods", line.goods_id), message(line)) for line in state.lines]
    if len(asks) == 1:
        # most orders have one line: awaiting it directly spares gather's task and callbacks
        try:
            return [await asks[0]]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*asks, return_exceptions=True)


async def run_placement(
    actor: PlacingOrder, ctx: Context, expected_total: int | None, capped: bool = False
) -> OrderState | Refusal:
    """Steps 2-6 for the pending order in ``actor.state`` (step 1 is written and submitted).
    ``capped``: its user was at the unpaid-orders cap, which refuses it once its amounts show
    it leaves something to pay (an order paid in full is never unpaid: SPEC 2)."""
    state = actor.state
    assert state is not None
    order_id = state.id
    config = actor.config

    # 1b. checks first (SPEC 2): what each goods and the coupon would answer, the amounts,
    # the expected total and the cap, asked before anything is taken; stock taken first held
    # the last unit from another customer while a refusal of this one was on its way
    checked, refusal = await _checks(ctx, state, expected_total, capped, config)
    if refusal is not None:
        failure = (refusal.code, refusal.detail)
        return _fail(actor, ctx, checked, failure, coupon_asked=False, pointer=refusal.pointer)

    # 2. stock
    prices = _prices(state, await _take_stock(ctx, state))
    if not isinstance(prices, dict):
        return _fail(actor, ctx, state, prices, coupon_asked=False)

    # 3. amounts
    state = priced(state, prices, config)

    # 4. coupon (checked in 1b: this is the use, which a concurrent order may have won since)
    coupon_value: int | None = None
    if state.coupon_id is not None:
        use = UseCoupon(order_id, state.user_id, state.order_amount, ctx.now())
        value = await _coupon_value(ctx, state.coupon_id, use)
        if not isinstance(value, int):
            return _fail(actor, ctx, state, value, coupon_asked=True)
        coupon_value = value
    state = discounted(state, coupon_value)
    refusal = _totals_refused(state, expected_total, capped, config)
    if refusal is not None:  # a price changed since 1b
        return _fail(actor, ctx, state, (refusal.code, refusal.detail), coupon_asked=True)

    # 5. wallet
    if state.wallet_amount > 0:
        actor.commit(ctx, state, [SaveLines()])
        ctx.checkpoint()
        debit = DebitWallet(order_id, state.wallet_amount)
        try:
            answer = await ctx.ask(Address("user", state.user_id), debit)
        except Exception as exc:
            # the debit may still happen (a timeout): the release is capped at the order's
            # debit and queues behind it, so giving back the whole amount is exact either way
            wallet = state.wallet_amount
            failure = placement_failure(exc)
            return _fail(actor, ctx, state, failure, coupon_asked=True, wallet_debited=wallet)
        if isinstance(answer, Refusal):
            return _fail(actor, ctx, state, placement_failure(answer), coupon_asked=True)

    # 6. confirm
    state, effects = confirm(state, ctx.now(), config)
    actor.commit(ctx, state, effects)
    return state


def undo_cut_placement(actor: PlacingOrder, ctx: Context) -> None:
    """Undo a pending order whose placement is not running (cut by a crash or a lost message).

    Everything that may have been taken is released: the stock of every goods, the coupon, and
    the wallet amount if one was recorded (it is written before the debit is asked). Each
    release gives back only what the order actually holds, so this is exact whichever steps
    had happened, and harmless if it runs twice.
    """
    state = actor.state
    assert state is not None
    detail = "the placement was cut short and has been undone"
    state, effects = fail_placement(
        state, INTERRUPTED, detail, ctx.now(), coupon_asked=True,
        wallet_debited=state.wallet_amount,
    )
    actor.commit(ctx, state, effects)
