"""Orders across restarts and under contention: what is on disk is what the order knows."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shopkeep.actors.order_messages import Cancel, GetRefunds, OrderView
from shopkeep.refusals import Refusal
from shopkeep.runtime import VirtualClock
from tests.actors.order_shop import open_shop

HALF_HOUR = 30 * 60


async def test_an_order_reloaded_after_a_restart_remembers_its_payment(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    path = tmp_path / "shop.db"
    async with open_shop(path, clock) as shop:
        alice = await shop.user()
        tea = await shop.goods(price=2_500, stock=10)
        order = await shop.placed(alice, [(tea, 2)])
        await shop.pay(order.id)
        ((payment_id, txn_id),) = await shop.rows("SELECT id, gateway_txn_id FROM payments")

    async with open_shop(path, clock) as shop:
        # the gateway retries the callback it sent before the restart
        body = shop.gateway.callback(payment_id, order.id, 6_000, "succeeded", txn_id)
        assert await shop.gateway.deliver(body)
        _, answer = shop.callbacks[-1]
        assert answer.action == "duplicate"

        canceled = await shop.ask("order", order.id, Cancel("user"))
        assert isinstance(canceled, OrderView) and canceled.status == "canceled"
        await shop.quiet()
        (refund,) = await shop.ask("order", order.id, GetRefunds())
        assert (refund.kind, refund.status, refund.gateway_amount) == ("cancel", "refunded", 6_000)
        assert await shop.stock(tea) == 10
        assert await shop.wallet(alice) == (0, 0)  # the 60 points earned are taken back
        await shop.audit_ok()


async def test_a_deadline_that_passed_while_the_server_was_down_fires_at_start(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    path = tmp_path / "shop.db"
    async with open_shop(path, clock) as shop:
        alice = await shop.user()
        tea = await shop.goods(price=2_500, stock=10)
        order = await shop.placed(alice, [(tea, 2)])

    await clock.advance(HALF_HOUR + 3_600)  # an hour and a half of outage

    async with open_shop(path, clock) as shop:
        await shop.quiet()
        final = await shop.order(order.id)
        assert (final.status, final.cancel_reason) == ("canceled", "timeout")
        assert await shop.stock(tea) == 10
        await shop.audit_ok()


async def test_many_buyers_of_the_last_units_never_oversell(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with open_shop(tmp_path / "shop.db", clock) as shop:
        tea = await shop.goods(price=100, stock=30)
        buyers = [await shop.user() for _ in range(300)]

        answers = await asyncio.gather(*(shop.place(buyer, [(tea, 1)]) for buyer in buyers))

        confirmed = [a for a in answers if isinstance(a, OrderView)]
        refused = [a for a in answers if isinstance(a, Refusal)]
        assert len(confirmed) == 30 and all(o.status == "awaiting_payment" for o in confirmed)
        assert {r.code for r in refused} == {"insufficient_stock"} and len(refused) == 270
        assert await shop.stock(tea) == 0
        await shop.audit_ok()
