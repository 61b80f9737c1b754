"""The order kind after placement: cancels and refunds, fulfilment, returns, and the
supervision of cut placements and lost deadlines."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from shopkeep.actors import recovery
from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_messages import (
    ApproveReturn,
    Cancel,
    Deliver,
    GetRefunds,
    OrderView,
    RefundView,
    RequestReturn,
    ReturnView,
    Ship,
)
from shopkeep.actors.order_state import Line, OrderState
from shopkeep.actors.order_store import (
    HISTORY_SQL,
    INSERT_ITEM_SQL,
    INSERT_ORDER_SQL,
    order_row,
)
from shopkeep.actors.protocol import DebitWallet, TakeStock, UseCoupon
from shopkeep.actors.recovery import recover_cut_placements, start_deadline_sweep
from shopkeep.refusals import Refusal
from shopkeep.runtime import VirtualClock
from shopkeep.store import UnitOfWork
from tests.actors.order_shop import Shop, open_shop

HALF_HOUR = 30 * 60




async def paid_order(shop: Shop, balance: int = 1_000, use_balance: int = 1_000
                     ) -> tuple[int, int, int, OrderView]:
    """alice, tea, her coupon, and her paid order of 2 tea (pay amount 4500)."""
    alice = await shop.user(balance=balance)
    tea = await shop.goods(price=2_500, stock=10)
    coupon = await shop.coupon(alice, value=500)
    order = await shop.placed(alice, [(tea, 2)], coupon_id=coupon, use_balance=use_balance)
    await shop.pay(order.id)
    await shop.quiet()
    return alice, tea, coupon, await shop.order(order.id)


async def refunds(shop: Shop, order_id: int) -> list[RefundView]:
    return list(await shop.ask("order", order_id, GetRefunds()))


# -- cancels ----------------------------------------------------------------------------------


async def test_canceling_an_unpaid_order_gives_everything_back(shop: Shop) -> None:
    alice = await shop.user(balance=1_000)
    tea = await shop.goods(price=2_500, stock=10)
    coupon = await shop.coupon(alice, value=500)
    order = await shop.placed(alice, [(tea, 2)], coupon_id=coupon, use_balance=1_000)

    canceled = await shop.ask("order", order.id, Cancel("user"))

    assert isinstance(canceled, OrderView) and canceled.cancel_reason == "user"
    await shop.quiet()
    assert (await shop.stock(tea), await shop.coupon_holder(coupon)) == (10, None)
    assert await shop.wallet(alice) == (1_000, 0)
    assert await shop.rows("SELECT count(*) FROM timers WHERE kind = 'order'") == [(0,)]
    await shop.audit_ok()


async def test_canceling_twice_is_harmless(shop: Shop) -> None:
    _alice, tea, _, order = await paid_order(shop)
    first = await shop.ask("order", order.id, Cancel("admin"))
    second = await shop.ask("order", order.id, Cancel("user"))
    assert isinstance(first, OrderView) and first.cancel_reason == "admin"
    assert second == first
    await shop.quiet()
    assert len(await refunds(shop, order.id)) == 1
    assert await shop.stock(tea) == 10
    await shop.audit_ok()


async def test_a_paid_order_canceled_while_the_gateway_refuses_refunds_is_refunded_later(
    shop: Shop, clock: VirtualClock
) -> None:
    alice, tea, coupon, order = await paid_order(shop)
    assert order.pay_amount == 4_500 and await shop.wallet(alice) == (0, 55)
    shop.gateway.fail_refunds_until(clock.now() + 10)

    canceled = await shop.ask("order", order.id, Cancel("user"))

    assert isinstance(canceled, OrderView) and canceled.status == "canceled"
    (refund,) = await refunds(shop, order.id)
    assert (refund.kind, refund.status) == ("cancel", "refunding")
    assert (refund.wallet_amount, refund.gateway_amount) == (1_000, 4_500)
    await shop.quiet()
    # the assets come back at once; the money waits for the gateway
    assert await shop.stock(tea) == 10 and await shop.coupon_holder(coupon) is None
    assert await shop.wallet(alice) == (1_000, 0)
    assert shop.gateway.total_refunded == 0

    for _ in range(9):
        await clock.advance(1)
    assert (await refunds(shop, order.id))[0].status == "refunding"
    for _ in range(10):
        await clock.advance(1)

    assert (await refunds(shop, order.id))[0].status == "refunded"
    assert shop.gateway.total_refunded == 4_500
    log = await shop.rows("SELECT event FROM refund_log WHERE refund_id = ? ORDER BY id",
                          (refund.id,))
    assert [row[0] for row in log] == ["created", *["gateway_failed"] * 4, "refunded"]
    assert await shop.rows("SELECT status FROM shipments") == [("intercepted",)]
    await shop.audit_ok()


async def test_a_shipped_order_cannot_be_canceled(shop: Shop) -> None:
    _, tea, _, order = await paid_order(shop)
    shipped = await shop.ask("order", order.id, Ship())
    assert isinstance(shipped, OrderView) and shipped.status == "shipped"

    refusal = await shop.ask("order", order.id, Cancel("user"))

    assert isinstance(refusal, Refusal) and refusal.code == "invalid_state"
    assert (await shop.order(order.id)).status == "shipped"
    assert await shop.stock(tea) == 8
    await shop.audit_ok()


async def test_a_second_successful_payment_of_a_paid_order_is_refunded(shop: Shop) -> None:
    _, _, _, order = await paid_order(shop)
    # the gateway collects the same payment again, under another transaction id
    payments = await shop.rows("SELECT id, amount FROM payments WHERE order_id = ?", (order.id,))
    (payment_id, amount), = payments
    assert await shop.gateway.complete(payment_id, order.id, amount, "succeeded", "second-txn")
    await shop.quiet()
    (refund,) = await refunds(shop, order.id)
    assert (refund.kind, refund.status, refund.gateway_amount) == ("duplicate_payment",
                                                                   "refunded", 4_500)
    assert (await shop.order(order.id)).status == "paid"
    assert shop.gateway.total_collected - shop.gateway.total_refunded == 4_500
    await shop.audit_ok()


# -- fulfilment and returns -------------------------------------------------------------------


async def test_an_approved_return_refunds_and_puts_the_stock_back(shop: Shop) -> None:
    alice, tea, _coupon, order = await paid_order(shop)
    assert isinstance(await shop.ask("order", order.id, Ship()), OrderView)
    delivered = await shop.ask("order", order.id, Deliver())
    assert isinstance(delivered, OrderView) and delivered.status == "delivered"

    asked = await shop.ask("order", order.id, RequestReturn("too big"))
    assert isinstance(asked, ReturnView) and asked.status == "requested"
    approved = await shop.ask("order", order.id, ApproveReturn(asked.id))
    assert isinstance(approved, ReturnView) and approved.status == "approved"

    await shop.quiet()
    assert (await shop.order(order.id)).status == "returned"
    (refund,) = await refunds(shop, order.id)
    assert (refund.kind, refund.status, refund.gateway_amount) == ("return", "refunded", 4_500)
    assert await shop.stock(tea) == 10
    assert await shop.wallet(alice) == (1_000, 0)
    assert await shop.history(order.id) == [
        "placed", "confirmed", "paid", "shipped", "delivered", "return_requested", "returned",
        "refunded",
    ]
    assert await shop.rows("SELECT reason FROM stock_ledger WHERE order_id = ? ORDER BY id",
                           (order.id,)) == [("take",), ("return",)]
    await shop.audit_ok()


async def test_only_a_delivered_order_can_be_returned(shop: Shop) -> None:
    _, _, _, order = await paid_order(shop)
    refusal = await shop.ask("order", order.id, RequestReturn(""))
    assert isinstance(refusal, Refusal) and refusal.code == "invalid_state"


# -- supervision: cut placements and lost deadlines -------------------------------------------


async def cut_placement(shop: Shop, user_id: int, goods_id: int, coupon_id: int,
                        wallet_amount: int) -> int:
    """What a crash mid-placement leaves: a pending order whose assets are (partly) taken."""
    order_id = shop.new_id()
    await shop.begin(user_id, order_id)
    now = shop.clock.now()
    unit = UnitOfWork()
    pending = OrderState(
        id=order_id, user_id=user_id, status="pending", lines=(Line(goods_id, 3),),
        coupon_id=coupon_id, use_balance=wallet_amount, wallet_amount=wallet_amount,
        created_at=now,
    )
    unit.execute(INSERT_ORDER_SQL, (order_id, *order_row(pending)))
    unit.execute(INSERT_ITEM_SQL, (order_id, goods_id, 3, None, 0))
    unit.execute(HISTORY_SQL, (order_id, None, "pending", "placed", "", now))
    await shop.rt.store.writer.submit(unit)
    await shop.ask("goods", goods_id, TakeStock(order_id, 3))
    await shop.ask("coupon", coupon_id, UseCoupon(order_id, user_id, 3_000, now))
    await shop.ask("user", user_id, DebitWallet(order_id, wallet_amount))
    return order_id


async def test_recovery_undoes_a_placement_cut_by_a_crash(tmp_path: Path,
                                                           clock: VirtualClock) -> None:
    path = tmp_path / "shop.db"
    async with open_shop(path, clock) as before_crash:
        alice = await before_crash.user(balance=5_000)
        tea = await before_crash.goods(price=1_000, stock=10)
        coupon = await before_crash.coupon(alice, value=500)
        order_id = await cut_placement(before_crash, alice, tea, coupon, wallet_amount=2_000)
        assert await before_crash.stock(tea) == 7
        assert await before_crash.wallet(alice) == (3_000, 0)

    async with open_shop(path, clock) as shop:
        with capture_logs() as logs:
            assert await recover_cut_placements(shop.system) == 1
        await shop.quiet()

        order = await shop.order(order_id)
        assert (order.status, order.cancel_reason) == ("canceled", "placement_failed")
        assert await shop.rows("SELECT failure_code FROM orders") == [("interrupted",)]
        assert await shop.stock(tea) == 10
        assert await shop.coupon_holder(coupon) is None
        assert await shop.wallet(alice) == (5_000, 0)
        assert await recover_cut_placements(shop.system) == 0
        await shop.audit_ok()
    said = [(line["event"], line["undone"]) for line in logs if "undone" in line]
    assert said == [("placements_recovered", 1)]  # what the restart did, in its log


async def test_a_restart_that_undid_a_whole_batch_of_placements_says_so_too(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with exactly a batch's worth, the last query found none and returned unlogged
    path = tmp_path / "shop.db"
    async with open_shop(path, clock) as before_crash:
        alice = await before_crash.user(balance=5_000)
        tea = await before_crash.goods(price=1_000, stock=10)
        coupon = await before_crash.coupon(alice, value=500)
        await cut_placement(before_crash, alice, tea, coupon, wallet_amount=2_000)
    monkeypatch.setattr(recovery, "BATCH", 1)

    async with open_shop(path, clock) as shop:
        with capture_logs() as logs:
            assert await recover_cut_placements(shop.system) == 1
        await shop.quiet()

    assert [line["undone"] for line in logs if line["event"] == "placements_recovered"] == [1]


async def test_the_sweep_cancels_an_overdue_order_whose_timer_was_lost(
    shop: Shop, clock: VirtualClock
) -> None:
    alice = await shop.user()
    tea = await shop.goods(price=2_500, stock=10)
    order = await shop.placed(alice, [(tea, 2)])
    lost = UnitOfWork()
    lost.execute("DELETE FROM timers WHERE kind = 'order'")
    await shop.rt.store.writer.submit(lost)
    shop.system.timers.resync()
    sweep = start_deadline_sweep(shop.system, ShopConfig(sweep_interval_s=70))
    try:
        await clock.advance(HALF_HOUR + 10)
        assert (await shop.order(order.id)).status == "awaiting_payment"  # no timer fired
        await clock.advance(70)  # the sweep at 1890 s
        final = await shop.order(order.id)
    finally:
        sweep.cancel()
    assert (final.status, final.cancel_reason) == ("canceled", "timeout")
    assert sweep.told == 1
    await shop.quiet()
    assert await shop.stock(tea) == 10
    await shop.audit_ok()


async def test_the_sweep_undoes_a_placement_left_pending_in_a_running_server(
    shop: Shop, clock: VirtualClock
) -> None:
    alice = await shop.user(balance=5_000)
    tea = await shop.goods(price=1_000, stock=10)
    coupon = await shop.coupon(alice, value=500)
    order_id = await cut_placement(shop, alice, tea, coupon, wallet_amount=1_000)
    sweep = start_deadline_sweep(shop.system, ShopConfig(sweep_interval_s=60))
    try:
        await clock.advance(60)
        assert await shop.rows("SELECT status FROM orders") == [("pending",)]  # within grace
        await clock.advance(120)
    finally:
        sweep.cancel()
    await shop.quiet()
    assert (await shop.order(order_id)).cancel_reason == "placement_failed"
    assert await shop.stock(tea) == 10
    assert await shop.wallet(alice) == (5_000, 0)
    await shop.audit_ok()
