"""A refund WeChat Pay takes but has not finished (PROCESSING) is asked about again after
``refund_query_after_s``: done then, it is refunded; failed (ABNORMAL), it stays refunding for
someone to act on, and the order's history says so; closed unpaid (CLOSED), it is sent again
under a number of its own; unknown to the provider, under its own number again; refused
(NOT_ENOUGH), it is said at once and tried again until it passes or is settled by hand, a
settlement waiting for the answer to a try under way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shopkeep.actors.order_messages import SettleRefund
from shopkeep.actors.protocol import Keyed
from shopkeep.errors import ShopError
from shopkeep.idempotency import IdempotencyKey
from shopkeep.payments.fakes.wechatpay import FakeWeChatPay
from shopkeep.payments.provider import RefundRequest, RefundState
from shopkeep.proof.provider_world import ProviderWorld
from shopkeep.runtime import Address, VirtualClock
from tests.payments.conftest import new_key


@pytest.fixture
def world(wechatpay: ProviderWorld) -> ProviderWorld:
    return wechatpay


async def canceled_its_answer_lost(
    world: ProviderWorld,
) -> tuple[FakeWeChatPay, dict[str, Any], dict[str, Any]]:
    """A paid order canceled, its refund's first call answered 500 (the provider may have
    taken it, as the shop sees it): (the fake, order, payment)."""
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    alice, order, payment = await world.paid_order()
    fake.fail_refunds(1)
    status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    await world.shop.runtime.system.quiet()
    return fake, order, payment


async def refund_answered(
    world: ProviderWorld, clock: VirtualClock, status: str
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A paid order canceled, its refund's second call answered ``status`` (the first failed,
    so that its key tells the refund id): (order, payment, refund key)."""
    fake, order, payment = await canceled_its_answer_lost(world)
    key = fake.refund_calls[-1]
    fake.refund_answers[key] = answer(fake, payment, key, status)
    await clock.advance(world.shop.config.refund_retry_s)
    await world.shop.runtime.system.quiet()
    return order, payment, key


async def processing_refund(world: ProviderWorld, clock: VirtualClock) -> tuple[str, str]:
    """A paid order canceled, its refund answered PROCESSING: (order id, refund key)."""
    order, _, key = await refund_answered(world, clock, "PROCESSING")
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunding"
    return str(order["id"]), key


async def queried_as(
    world: ProviderWorld, clock: VirtualClock, key: str, status: str | None
) -> FakeWeChatPay:
    """The processing refund under ``key`` asked about again, WeChat Pay answering ``status``
    (None: it has no such refund, 404); the fake."""
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    if status is None:
        del fake.refund_answers[key]
    else:
        fake.refund_answers[key]["status"] = status
    await clock.advance(world.shop.config.refund_query_after_s)
    await world.shop.runtime.system.quiet()
    return fake


def answer(fake: FakeWeChatPay, payment: dict[str, Any], key: str, status: str) -> dict[str, Any]:
    return {"refund_id": "5030X", "out_refund_no": key, "out_trade_no": str(payment["id"]),
            "status": status, "amount": {"refund": payment["amount"],
                                         "total": payment["amount"], "currency": "CNY"}}


async def test_a_processing_refund_is_asked_about_later_and_marked_refunded(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order_id, key = await processing_refund(world, clock)
    await queried_as(world, clock, key, "SUCCESS")
    [refund] = await world.refunds(order_id)
    assert refund["status"] == "refunded"
    assert world.shop.active_queries["refund:refunded"] == 1
    await world.audit_ok()


async def test_a_refund_the_provider_failed_stays_refunding_and_the_history_says_so(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order_id, key = await processing_refund(world, clock)
    await queried_as(world, clock, key, "ABNORMAL")
    [refund] = await world.refunds(order_id)
    assert refund["status"] == "refunding"
    status, history = await world.call("GET", f"/v1/orders/{order_id}/history", world.admin)
    assert status == 200
    assert history["items"][-1]["operation"] == "refund_failed"
    assert world.shop.active_queries["refund:failed"] == 1


async def test_a_refund_wechat_pay_closed_unpaid_is_sent_again_under_a_new_number(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order_id, key = await processing_refund(world, clock)
    fake = await queried_as(world, clock, key, "CLOSED")  # a week in PROCESSING, no money moved
    assert fake.refund_calls[-1] == f"{key}-1"
    assert list(fake.refunds) == [f"{key}-1"]
    [refund] = await world.refunds(order_id)
    assert refund["status"] == "refunded"
    assert world.shop.active_queries["refund:closed"] == 1
    await world.audit_ok()


async def test_a_refund_call_answered_closed_is_sent_again_under_a_new_number(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, payment, key = await refund_answered(world, clock, "CLOSED")  # closed, unpaid
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    assert fake.refund_calls == [key, key, f"{key}-1"]
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunded"
    assert fake.refunded(str(payment["id"])) == payment["amount"]
    await world.audit_ok()


async def test_a_refund_the_provider_has_no_word_of_is_sent_again_under_its_number(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order_id, key = await processing_refund(world, clock)
    fake = await queried_as(world, clock, key, None)  # 404: the refund never arrived
    assert fake.refund_calls[-1] == key
    assert list(fake.refunds) == [key]
    [refund] = await world.refunds(order_id)
    assert refund["status"] == "refunded"
    assert world.shop.active_queries["refund:missing"] == 1
    await world.audit_ok()


async def test_a_refund_call_answered_abnormal_is_left_for_manual_action_not_sent_again(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, _, key = await refund_answered(world, clock, "ABNORMAL")
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    await clock.advance(world.shop.config.refund_retry_max_s * 4)
    await world.shop.runtime.system.quiet()
    assert fake.refund_calls == [key, key]  # the failed first try, then ABNORMAL: no more
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunding"
    status, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert status == 200
    assert history["items"][-1]["operation"] == "refund_failed"


async def test_a_refund_the_provider_failed_is_settled_by_hand_with_a_note_of_how(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, _, _ = await refund_answered(world, clock, "ABNORMAL")
    [refund] = await world.refunds(order["id"])
    [waiting] = await world.shop.refunds_in_flight()
    assert waiting.id == int(refund["id"]) and waiting.provider_failed == "ABNORMAL"

    settled = await world.shop.settle_refund(int(refund["id"]), "bank transfer, ref 4411")

    assert settled.status == "refunded"
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunded"
    status, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert status == 200
    last = history["items"][-1]
    assert last["operation"] == "refund_settled" and last["remark"].endswith(
        " paid back outside the provider: bank transfer, ref 4411"
    ) and "through the provider" not in last["remark"]
    assert await world.shop.refunds_in_flight() == []
    await world.audit_ok()


async def test_a_refund_still_with_the_provider_cannot_be_settled_by_hand(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order_id, _ = await processing_refund(world, clock)
    [refund] = await world.refunds(order_id)

    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(int(refund["id"]), "bank transfer")

    assert refused.value.code == "invalid_state"
    [refund] = await world.refunds(order_id)
    assert refund["status"] == "refunding"


async def test_a_refund_settled_by_hand_is_not_settled_again(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, _, _ = await refund_answered(world, clock, "ABNORMAL")
    [refund] = await world.refunds(order["id"])
    await world.shop.settle_refund(int(refund["id"]), "cash at the counter")

    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(int(refund["id"]), "cash at the counter")

    assert refused.value.code == "invalid_state"
    status, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert status == 200
    assert [e["operation"] for e in history["items"]].count("refund_settled") == 1


async def test_a_settle_by_hand_asked_again_under_its_key_is_answered_its_first_answer(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    order, _, _ = await refund_answered(world, clock, "ABNORMAL")
    [refund] = await world.refunds(order["id"])
    first = await world.shop.settle_refund(
        int(refund["id"]), "bank transfer", idempotency_key="settle-4411"
    )

    again = IdempotencyKey("settle-4411")
    replayed = await world.shop.settle_refund(
        int(refund["id"]), "bank transfer", idempotency_key=again
    )

    assert replayed == first and again.replayed
    with pytest.raises(ShopError) as conflict:  # the key names that settlement only
        await world.shop.settle_refund(int(refund["id"]), "cash", idempotency_key="settle-4411")
    assert conflict.value.code == "idempotency_conflict"


@pytest.mark.parametrize("note", ["", "   ", "x" * 2001])
async def test_settling_a_refund_by_hand_needs_a_note_of_how(
    world: ProviderWorld, clock: VirtualClock, note: str
) -> None:
    order, _, _ = await refund_answered(world, clock, "ABNORMAL")
    [refund] = await world.refunds(order["id"])

    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(int(refund["id"]), note)

    assert refused.value.code == "validation_error"
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunding"


async def test_settling_a_refund_that_does_not_exist_is_not_found(world: ProviderWorld) -> None:
    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(424242, "bank transfer")
    assert refused.value.code == "not_found"


async def refused_refund(
    world: ProviderWorld,
) -> tuple[FakeWeChatPay, dict[str, Any], dict[str, Any]]:
    """A paid order the merchant refunded in WeChat Pay's own console first, then canceled:
    the shop's refund is refused (403 NOT_ENOUGH) at every try. (the fake, order, payment)"""
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    alice, order, payment = await world.paid_order()
    fake.record_refund("console-refund", str(payment["id"]), payment["amount"], "5030")
    status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    await world.shop.runtime.system.quiet()
    return fake, order, payment


async def test_a_refund_the_provider_refuses_is_said_at_once_and_tried_until_settled_by_hand(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    fake, order, payment = await refused_refund(world)  # which only the staff can end

    [refund] = await world.refunds(order["id"])
    [waiting] = await world.shop.refunds_in_flight()
    assert refund["status"] == "refunding" and "NOT_ENOUGH" in (waiting.provider_failed or "")
    tries = len(fake.refund_calls)
    await clock.advance(world.shop.config.refund_retry_s * 2)
    await world.shop.runtime.system.quiet()
    assert len(fake.refund_calls) > tries  # some refusals pass once the merchant acts

    await world.shop.settle_refund(int(refund["id"]), "refunded in the provider's console")
    tries = len(fake.refund_calls)
    await clock.advance(world.shop.config.refund_retry_max_s * 4)
    await world.shop.runtime.system.quiet()
    assert len(fake.refund_calls) == tries  # settled: never sent again
    _, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    said = [e["remark"] for e in history["items"] if e["operation"] == "refund_failed"]
    assert len(said) == 1 and "refused it" in said[0]
    assert "NOT_ENOUGH" not in said[0]  # the merchant's balance is the staff's to read
    assert fake.refunded(str(payment["id"])) == payment["amount"]  # once, by the console
    await world.audit_ok()


async def test_a_refused_refund_the_provider_takes_later_is_no_longer_the_staffs_to_settle(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    fake, order, payment = await refused_refund(world)
    key = fake.refund_calls[-1]
    fake.refund_answers[key] = answer(fake, payment, key, "PROCESSING")  # taken at last

    await clock.advance(world.shop.config.refund_retry_s * 2)
    await world.shop.runtime.system.quiet()

    [refund] = await world.refunds(order["id"])
    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(int(refund["id"]), "bank transfer")
    assert refused.value.code == "invalid_state"  # the provider may still pay it out
    # the history told the customer of the refusal, and ended there: it says it was taken
    _, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert [e["operation"] for e in history["items"]][-2:] == ["refund_failed", "refund_taken"]


async def settled_during_a_try(
    world: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch,
    order: dict[str, Any], refund_id: int,
) -> asyncio.Future[Any]:
    """The refused refund ``refund_id`` of ``order`` sent again, and the staff settling it by
    hand while that try is at the provider, which answers it only once the settlement is
    asked and the order has done all it can with it meanwhile: the settlement's outcome, to
    await."""
    provider, system = world.shop.provider, world.shop.system
    refund, ask = provider.refund, system.ask
    at_the_provider, settle_asked = asyncio.Event(), asyncio.Event()

    async def answered_after_the_settle(request: RefundRequest) -> RefundState:
        at_the_provider.set()
        await settle_asked.wait()
        await system.settled(Address("order", int(order["id"])))
        return await refund(request)

    async def asking(to: Address, message: Any, **options: Any) -> Any:
        if isinstance(message, SettleRefund | Keyed):
            settle_asked.set()  # the ask goes on at once: it is in a mailbox when a waiter wakes
        return await ask(to, message, **options)

    monkeypatch.setattr(provider, "refund", answered_after_the_settle)
    monkeypatch.setattr(system, "ask", asking)
    await clock.advance(world.shop.config.refund_retry_s)  # the retry's timer fires
    await at_the_provider.wait()
    return asyncio.ensure_future(world.shop.settle_refund(refund_id, "bank transfer"))


async def refund_events(world: ProviderWorld, refund_id: int) -> list[str]:
    """The refund's log, oldest first: what each step did, in the order it was written."""
    rows = await world.shop.reader.fetchall(
        "SELECT event FROM refund_log WHERE refund_id = ? ORDER BY id", (refund_id,)
    )
    return [event for (event,) in rows]


async def test_a_settle_during_a_try_the_provider_then_takes_is_refused_and_paid_back_once(
    world: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, order, payment = await refused_refund(world)
    [refund] = await world.refunds(order["id"])
    del fake.refunds["console-refund"]  # undone in the console: the next try passes

    settling = await settled_during_a_try(world, clock, monkeypatch, order, int(refund["id"]))

    with pytest.raises(ShopError) as refused:
        await settling
    assert refused.value.code == "invalid_state"  # the provider took it after all
    await world.shop.runtime.system.quiet()
    assert fake.refunded(str(payment["id"])) == payment["amount"]  # once, by the provider
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunded"
    _, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    operations = [entry["operation"] for entry in history["items"]]
    assert "refunded" in operations and "refund_settled" not in operations
    await world.audit_ok()


async def test_a_settle_during_a_try_the_provider_refuses_again_is_applied_after_its_answer(
    world: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, order, payment = await refused_refund(world)  # the console's refund stays: refused
    [refund] = await world.refunds(order["id"])

    settling = await settled_during_a_try(world, clock, monkeypatch, order, int(refund["id"]))

    assert (await settling).status == "refunded"
    await clock.advance(world.shop.config.refund_retry_max_s * 4)
    await world.shop.runtime.system.quiet()
    assert len(fake.refund_calls) == 2  # the first try, the one under way; none after
    events = await refund_events(world, int(refund["id"]))
    assert events[-1] == "settled_by_hand"  # the try under way was answered before it
    assert fake.refunded(str(payment["id"])) == payment["amount"]  # once, by the console
    await world.audit_ok()


async def test_a_refused_refund_whose_last_try_went_unanswered_is_settled_only_once_refused_again(
    world: ProviderWorld, clock: VirtualClock
) -> None:
    fake, order, payment = await refused_refund(world)
    [refund] = await world.refunds(order["id"])
    refund_id = int(refund["id"])
    fake.fail_refunds(1)  # the next try's answer is a 500: the provider may have taken it

    await clock.advance(world.shop.config.refund_retry_s * 2)
    await world.shop.runtime.system.quiet()

    [waiting] = await world.shop.refunds_in_flight()
    assert waiting.provider_failed is None  # no longer shown as refused
    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(refund_id, "bank transfer")
    assert refused.value.code == "invalid_state" and "did not answer" in refused.value.detail

    await clock.advance(world.shop.config.refund_retry_s * 4)  # the next try: refused again
    await world.shop.runtime.system.quiet()
    [waiting] = await world.shop.refunds_in_flight()
    assert "NOT_ENOUGH" in (waiting.provider_failed or "")
    assert (await world.shop.settle_refund(refund_id, "bank transfer")).status == "refunded"
    assert fake.refunded(str(payment["id"])) == payment["amount"]  # once, by the console
    await world.audit_ok()


async def test_a_no_to_the_request_as_such_after_a_lost_answer_is_not_the_staffs_to_settle(
    world: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first try's answer lost (the provider may have taken it), then the merchant's key
    # changed by mistake: WeChat Pay's 401 refused the request as such, which says nothing of
    # the refund, yet it showed as refused and the staff could pay it back twice
    fake, order, payment = await canceled_its_answer_lost(world)
    monkeypatch.setattr(world.shop.provider, "_key", new_key())  # a key it does not have
    calls = len(fake.refund_calls)

    await clock.advance(world.shop.config.refund_retry_s * 4)
    await world.shop.runtime.system.quiet()

    assert len(fake.refund_calls) == calls  # refused before it reached the refunds
    [waiting] = await world.shop.refunds_in_flight()
    assert waiting.provider_failed is None and "401" in (waiting.last_word or "")
    with pytest.raises(ShopError) as refused:
        await world.shop.settle_refund(waiting.id, "bank transfer")
    assert refused.value.code == "invalid_state"
    monkeypatch.undo()  # the key put right: the refund goes through, once
    await clock.advance(world.shop.config.refund_retry_max_s * 2)
    await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunded"
    assert fake.refunded(str(payment["id"])) == payment["amount"]
    await world.audit_ok()
