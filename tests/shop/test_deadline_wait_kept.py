"""The deadline's wait for the provider's answers keeps its end (SPEC 4, 10; docs/payments.md:
30 s at most), and its questions are asked once.

An activation after a restart has no record of the questions the one before it asked; an
answer to one of them (the provider down: "did not answer", a second before the wait ends)
must not start a new wait of its own, which kept the order, its stock and its coupon held
twice as long. Nor may the order be passivated while they are out (each answer would reach an
activation that asks them all again), nor the deadline sweep ask them again meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shopkeep.actors.order_messages import OrderView, PaymentView
from shopkeep.actors.recovery import DeadlineSweep
from shopkeep.payments.provider import GatewayError, PaymentPaid, PaymentRef
from shopkeep.runtime import Address, RuntimeConfig, VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import assert_audit_ok, settle

WAIT_STEPS = 200
"""Half-seconds the test waits for the timeout at most: 100 s of the virtual clock."""


def provider_down(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's provider answers no payment query (a 503, a refused connection)."""

    async def down(ref: PaymentRef) -> Any:
        raise GatewayError("the provider is down")

    monkeypatch.setattr(shop.provider, "query_payment", down)


async def restarted_past_the_deadline(
    path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> tuple[OrderView, PaymentView]:
    """An order with two payments, the first declined, whose deadline asked a provider that
    answers nothing, the shop closed 5 s into the wait: the order, and its first payment."""
    async with Shop.open(path, gateway="sandbox", clock=clock) as shop:
        ann = await shop.create_user("ann")
        tea = await shop.create_goods("tea", price=2_000, stock=5)
        order = await shop.place_order(ann.user.id, [(tea.id, 1)])
        payment = (await shop.start_payment(order.id)).payment
        assert shop.gateway is not None
        await shop.gateway.complete(payment.id, order.id, payment.amount, "failed")
        await shop.start_payment(order.id)  # a second card, yet to be paid
        provider_down(shop, monkeypatch)
        assert order.expires_at is not None
        await clock.advance(order.expires_at - clock.now() + 5)  # its questions out
        await settle(shop)
        assert (await shop.get_order(order.id)).status == "awaiting_payment"
    return order, payment


async def timed_out_within_the_wait(shop: Shop, clock: VirtualClock, order: OrderView) -> None:
    """Move the clock on until the order is no longer awaiting payment: timed out, within the
    deadline's one wait, everything it held given back."""
    for _ in range(WAIT_STEPS):
        await clock.advance(0.5)
        await settle(shop)
        if (await shop.get_order(order.id)).status != "awaiting_payment":
            break
    timed_out = await shop.get_order(order.id)
    assert (timed_out.status, timed_out.cancel_reason) == ("canceled", "timeout")
    assert timed_out.canceled_at is not None and order.expires_at is not None
    grace = shop.config.payment_query_grace_s
    assert timed_out.canceled_at <= order.expires_at + grace + 0.5  # not a second wait
    assert (await shop.get_goods(order.items[0].goods_id)).stock == 5
    await assert_audit_ok(shop)


async def test_a_restart_while_the_deadline_waits_for_the_provider_keeps_the_waits_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    order, _ = await restarted_past_the_deadline(tmp_path / "shop.db", clock, monkeypatch)

    async with Shop.open(tmp_path / "shop.db", gateway="sandbox", clock=clock) as shop:
        provider_down(shop, monkeypatch)
        await timed_out_within_the_wait(shop, clock, order)


async def test_a_paid_answer_refused_after_a_restart_keeps_the_waits_end_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "paid", of another amount than the payment's: refused, as the callback would be, and
    # an answer of the question the activation before asked
    clock = VirtualClock()
    order, first = await restarted_past_the_deadline(tmp_path / "shop.db", clock, monkeypatch)

    async with Shop.open(tmp_path / "shop.db", gateway="sandbox", clock=clock) as shop:

        async def paid_otherwise(ref: PaymentRef) -> PaymentPaid:
            if ref.payment_id != first.id:
                raise GatewayError("the provider is down")  # the second, still unanswered
            return PaymentPaid(amount=first.amount + 1, currency="CNY", gateway_txn_id="t-x")

        monkeypatch.setattr(shop.provider, "query_payment", paid_otherwise)
        await timed_out_within_the_wait(shop, clock, order)


QUICK_TO_FORGET = RuntimeConfig(idle_timeout_s=1)
"""A runtime that passivates an actor idle for a second."""


async def one_unpaid_order(shop: Shop) -> tuple[OrderView, PaymentView]:
    """An order of one tea with its payment started: (order, payment)."""
    ann = await shop.create_user("ann")
    tea = await shop.create_goods("tea", price=2_000, stock=5)
    order = await shop.place_order(ann.user.id, [(tea.id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    assert order.expires_at is not None
    return order, payment


class SlowProvider:
    """The shop's provider answering its payment queries only once :attr:`answer` is set
    (what it answers then: its own answer); :attr:`questioned` is set at the first question,
    which is sent once the order's unit (its deadline armed again) is committed."""

    def __init__(self, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answer, self.questioned = asyncio.Event(), asyncio.Event()
        self.asked: list[int] = []
        query = shop.provider.query_payment

        async def slow(ref: PaymentRef) -> Any:
            self.asked.append(ref.payment_id)
            self.questioned.set()
            await self.answer.wait()
            return await query(ref)

        monkeypatch.setattr(shop.provider, "query_payment", slow)

    @contextlib.asynccontextmanager
    async def question_out(self, clock: VirtualClock, order: OrderView) -> AsyncIterator[None]:
        """The block runs with ``order``'s deadline question out (the clock moved to its
        deadline, the question asked); then the question is answered however the block ends
        (else the shop's close waits for it)."""
        assert order.expires_at is not None
        try:
            await clock.advance(order.expires_at - clock.now())
            await asyncio.wait_for(self.questioned.wait(), timeout=30)
            yield
        finally:
            self.answer.set()


async def test_an_order_waiting_for_the_providers_answer_is_not_passivated_nor_swept_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    path = tmp_path / "shop.db"
    opened = Shop.open(path, gateway="sandbox", clock=clock, runtime_config=QUICK_TO_FORGET)
    async with opened as shop:
        order, payment = await one_unpaid_order(shop)
        provider = SlowProvider(shop, monkeypatch)
        system = shop.runtime.system
        async with provider.question_out(clock, order):  # then answered "open"
            await shop.runtime.store.writer.flush()
            await clock.advance(10)  # idle ten times its timeout, the question still out
            assert system.is_live(Address("order", order.id))
            assert await DeadlineSweep(system, shop.config).sweep() == 0  # its timer's to decide
        await settle(shop)

        timed_out = await shop.get_order(order.id)
        assert (timed_out.status, timed_out.cancel_reason) == ("canceled", "timeout")
        assert provider.asked == [payment.id]
        remarks = [e.remark for e in (await shop.order_history(order.id)).items]
        assert f"payment {payment.id}: open at the provider" in remarks  # it did answer
        await assert_audit_ok(shop)


async def test_an_order_paid_while_its_question_is_out_lets_go_of_its_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # paid by its callback, the deadline timer canceled: nothing else would ever clear it
    clock = VirtualClock()
    path = tmp_path / "shop.db"
    opened = Shop.open(path, gateway="sandbox", clock=clock, runtime_config=QUICK_TO_FORGET)
    async with opened as shop:
        order, payment = await one_unpaid_order(shop)
        provider = SlowProvider(shop, monkeypatch)
        assert shop.gateway is not None
        async with provider.question_out(clock, order):
            assert await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
        await settle(shop)
        assert (await shop.get_order(order.id)).status == "paid"

        await clock.advance(5)  # idle past its timeout, nothing out any more
        assert not shop.runtime.system.is_live(Address("order", order.id))
