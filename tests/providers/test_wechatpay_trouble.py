"""A shop on WeChat Pay's fake meeting what an attacker or a troubled provider sends: a
notification whose signed headers hold a byte that is not UTF-8 is refused (400) and changes
nothing; a refund answered with no status WeChat Pay knows (a 200 ``SYSTEM_ERROR``) is asked
again, never left for the staff to pay back by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import pytest

from shopkeep.payments import wechatpay_wire as wire
from shopkeep.payments.fakes.wechatpay import FakeWeChatPay
from shopkeep.proof.provider_world import ProviderWorld
from shopkeep.runtime import VirtualClock


@pytest.fixture
def world(wechatpay: ProviderWorld) -> ProviderWorld:
    return wechatpay


async def post_raw(url: str, body: bytes, headers: Mapping[str, bytes]) -> int:
    """POST ``body`` to ``url`` with header values sent as these very bytes (aiohttp's client
    would encode them as UTF-8); the answer's status."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    lines = [
        f"POST {where.path} HTTP/1.1".encode(), f"Host: {where.netloc}".encode(),
        f"Content-Length: {len(body)}".encode(), b"Connection: close",
        *(name.encode() + b": " + value for name, value in headers.items()),
    ]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("header", [wire.NONCE, wire.TIMESTAMP])
async def test_a_notification_whose_signed_header_is_not_utf8_is_refused_and_changes_nothing(
    world: ProviderWorld, header: str
) -> None:
    # aiohttp reads the byte as a surrogate, which the signed message's encoding refused: a 500
    _, order, payment = await world.payment_started()
    await world.pay(payment, notify=False)
    body, headers = world.notification(payment)
    raw = {name: value.encode() for name, value in headers.items()}
    raw[header] = raw[header][:4] + b"\xff" + raw[header][4:]

    assert await post_raw(world.notify_url, body, raw) == 400

    assert (await world.order(order["id"]))["status"] == "awaiting_payment"
    assert world.shop.rejected_callbacks["bad_signature"] == 1
    status, answer = await world.post(body, headers)  # the genuine one still pays it
    assert world.acknowledged(status, answer), (status, answer)
    assert (await world.order(order["id"]))["status"] == "paid"
    await world.audit_ok()


NO_STATUS: Final[dict[str, str]] = {"code": "SYSTEM_ERROR", "message": "busy"}


def refund_answer(payment: Mapping[str, Any], key: str, status: str) -> dict[str, Any]:
    """WeChat Pay's answer about the refund under ``key`` of ``payment``, in ``status``."""
    return {"refund_id": "5030X", "out_refund_no": key, "out_trade_no": str(payment["id"]),
            "status": status, "amount": {"refund": payment["amount"],
                                         "total": payment["amount"], "currency": "CNY"}}


@pytest.mark.parametrize("asked", ["refund", "query"])
async def test_a_refund_answered_with_no_status_is_asked_again_not_left_for_manual_action(
    world: ProviderWorld, clock: VirtualClock, asked: str
) -> None:
    # taken as failed, the refund was offered to the staff to settle by hand while WeChat Pay
    # might still pay it out: the customer paid back twice
    fake = world.fake
    assert isinstance(fake, FakeWeChatPay)
    config = world.shop.config
    alice, order, payment = await world.paid_order()
    fake.fail_refunds(1)  # so that the first call tells the refund's key
    status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    await world.shop.runtime.system.quiet()
    key = fake.refund_calls[-1]
    if asked == "query":  # taken, not finished: asked about after refund_query_after_s
        fake.refund_answers[key] = refund_answer(payment, key, "PROCESSING")
        await clock.advance(config.refund_retry_max_s)
        await world.shop.runtime.system.quiet()
    fake.refund_answers[key] = NO_STATUS

    await clock.advance(config.refund_query_after_s if asked == "query" else config.refund_retry_s)
    await world.shop.runtime.system.quiet()

    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunding"
    [waiting] = await world.shop.refunds_in_flight()
    assert waiting.provider_failed is None  # still the provider's, not the staff's
    fake.refund_answers[key] = refund_answer(payment, key, "SUCCESS")  # answered at last
    await clock.advance(config.refund_retry_max_s)
    await world.shop.runtime.system.quiet()
    [refund] = await world.refunds(order["id"])
    assert refund["status"] == "refunded"
    # the refund asked again, or the query: the refund sent no more often than that
    assert fake.refund_calls == [key] * (3 if asked == "refund" else 2)
    status, history = await world.call("GET", f"/v1/orders/{order['id']}/history", world.admin)
    assert status == 200
    assert "refund_failed" not in [entry["operation"] for entry in history["items"]]
    await world.audit_ok()
