"""A refund WeChat Pay takes but has not finished (PROCESSING) is asked about again after
``refund_query_after_s``: done then, it is refunded; failed (ABNORMAL), it stays refunding for
someone to act on, and the order's history says so; closed unpaid (CLOSED), it is sent again
under a number of its own; unknown to the provider, under its own number again; refused
(NOT_ENOUGH), it is said at once and tried again until it passes or is settled by hand."""

from __future__ import annotations

from typing import Any

import pytest

from shopkeep.errors import ShopError
from shopkeep.payments.fakes.wechatpay import FakeWeChatPay
from shopkeep.proof.provider_world import ProviderWorld
from shopkeep.runtime import VirtualClock


@pytest.fixture
def world(wechatpay: ProviderWorld) -> ProviderWorld:
    return wechatpay


async def refund_answered(
    world: ProviderWorld, clock: VirtualClock, status: str
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A paid order canceled, its refund's second call answered ``status`` (the first failed,
    so that its key tells the refund id): (order, payment, refund key)."""
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    alice, order, payment = await world.paid_order()
    fake.fail_refunds(1)
    status_code, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status_code == 200
    await world.shop.runtime.system.quiet()
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
    assert last["operation"] == "refund_settled" and "bank transfer, ref 4411" in last["remark"]
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
