"""The deadline's wait for the provider's answers keeps its end across a restart (SPEC 4, 10;
docs/payments.md: 30 s at most).

An activation after a restart has no record of the questions the one before it asked; an
answer to one of them (the provider down: "did not answer", a second before the wait ends)
must not start a new wait of its own, which kept the order, its stock and its coupon held
twice as long.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeep.payments.provider import GatewayError, PaymentRef
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import assert_audit_ok, settle

WAIT_STEPS = 200
"""Half-seconds the test waits for the timeout at most: 100 s of the virtual clock."""


def provider_down(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's provider answers no payment query (a 503, a refused connection)."""

    async def down(ref: PaymentRef) -> Any:
        raise GatewayError("the provider is down")

    monkeypatch.setattr(shop.provider, "query_payment", down)


async def test_a_restart_while_the_deadline_waits_for_the_provider_keeps_the_waits_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    path = tmp_path / "shop.db"
    async with Shop.open(path, gateway="sandbox", clock=clock) as shop:
        grace = shop.config.payment_query_grace_s
        ann = await shop.create_user("ann")
        tea = await shop.create_goods("tea", price=2_000, stock=5)
        order = await shop.place_order(ann.user.id, [(tea.id, 1)])
        await shop.start_payment(order.id)
        provider_down(shop, monkeypatch)
        assert order.expires_at is not None
        await clock.advance(order.expires_at - clock.now() + 5)  # its questions out
        await settle(shop)
        assert (await shop.get_order(order.id)).status == "awaiting_payment"

    async with Shop.open(path, gateway="sandbox", clock=clock) as shop:
        provider_down(shop, monkeypatch)
        for _ in range(WAIT_STEPS):
            await clock.advance(0.5)
            await settle(shop)
            if (await shop.get_order(order.id)).status != "awaiting_payment":
                break
        timed_out = await shop.get_order(order.id)

        assert (timed_out.status, timed_out.cancel_reason) == ("canceled", "timeout")
        assert timed_out.canceled_at is not None
        assert timed_out.canceled_at <= order.expires_at + grace + 0.5  # not a second wait
        assert (await shop.get_goods(tea.id)).stock == 5
        await assert_audit_ok(shop)
