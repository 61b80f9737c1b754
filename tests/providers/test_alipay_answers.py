"""What Alipay (its local fake) may say that the shop must take right, over the shop's HTTP API:
a 4xx from a mistyped gateway URL is a refusal, not an outage; a signed amount with more
decimals than yuan has is a wrong amount, in a notification and in the deadline's query; a
notification about no payment's result is acknowledged, counted and logged."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from shopkeep.http.metrics import BusinessCollector
from shopkeep.payments.alipay import AlipayProvider
from shopkeep.payments.fakes.alipay import FakeAlipay
from shopkeep.payments.provider import GatewayError
from shopkeep.proof.provider_world import ProviderWorld
from shopkeep.runtime import VirtualClock
from tests.providers.conftest import past_the_deadline

NO_AMOUNT_OF_YUAN = ("120.001", "120.000")
"""The order's 120 yuan written with three decimals: no amount of fen, whatever its value."""


def fake_of(world: ProviderWorld) -> FakeAlipay:
    assert isinstance(world.fake, FakeAlipay)
    return world.fake


def mistype_the_gateway_url(world: ProviderWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's ``--alipay-url`` with a typo in its path: the fake answers 404 "Not Found"."""
    provider = world.shop.provider
    assert isinstance(provider, AlipayProvider)
    monkeypatch.setattr(provider, "_url", fake_of(world).url + "/gateway.dp")


async def test_a_qr_payment_start_meeting_a_404_from_a_mistyped_alipay_url_is_provider_refused(
    alipay: ProviderWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it was answered 503 "try again", which no retry could change
    alice = await alipay.customer()
    order = await alipay.placed(alice)
    mistype_the_gateway_url(alipay, monkeypatch)

    with capture_logs() as logs:
        status, problem = await alipay.call(
            "POST", f"/v1/orders/{order['id']}/payment?channel=qr", alice
        )

    assert (status, problem["code"]) == (502, "provider_refused")
    [failed] = [line for line in logs if line["event"] == "payment_start_failed"]
    assert failed["refused"] is True and "404" in failed["error"]


async def test_a_refund_meeting_a_404_is_retried_until_the_url_is_right(
    alipay: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a refusal is a GatewayError still: the refund stays refunding, tried again, never dropped
    alice, order, _ = await alipay.paid_order()
    mistype_the_gateway_url(alipay, monkeypatch)
    status, _ = await alipay.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
    assert status == 200
    await alipay.shop.runtime.system.quiet()
    [refund] = await alipay.refunds(order["id"])
    assert refund["status"] == "refunding"

    monkeypatch.undo()  # the operator fixes the URL
    await clock.advance(alipay.shop.config.refund_retry_max_s)
    await alipay.shop.runtime.system.quiet()

    [refund] = await alipay.refunds(order["id"])
    assert refund["status"] == "refunded"
    assert len(alipay.refunds_under(refund["id"])) == 1
    await alipay.audit_ok()


async def test_an_authentic_notification_of_no_amount_of_yuan_is_refused_with_a_warning(
    alipay: ProviderWorld,
) -> None:
    # it was refused as malformed, silently: SPEC 10 logs an authentic wrong amount as a warning
    _, order, payment = await alipay.payment_started()
    await alipay.pay(payment, notify=False)
    for amount in NO_AMOUNT_OF_YUAN:
        body, headers = alipay.notification(payment, total_amount=amount)
        with capture_logs() as logs:
            status, answer = await alipay.post(body, headers)
        assert (status, answer) == (400, b"fail")
        warned = [line for line in logs if line["event"] == "callback_refused"]
        assert [(line["log_level"], line["reason"], line["provider"]) for line in warned] == [
            ("warning", "wrong_amount", "alipay")
        ]
        assert amount in warned[0]["detail"]

    assert alipay.shop.rejected_callbacks["wrong_amount"] == len(NO_AMOUNT_OF_YUAN)
    assert (await alipay.order(order["id"]))["status"] == "awaiting_payment"
    await alipay.audit_ok()


async def test_noise_nobody_signed_is_refused_without_a_warning(alipay: ProviderWorld) -> None:
    # anyone can send it: a warning each would let anyone fill the log
    _, _, payment = await alipay.payment_started()
    await alipay.pay(payment, notify=False)
    forged, headers = alipay.notification(payment, forged=True, total_amount="120.001")
    for body in (forged, b"total_amount=1&total_amount=2", b"\xff"):
        with capture_logs() as logs:
            status, _ = await alipay.post(body, headers)
        assert status == 400
        assert [line for line in logs if line["event"] == "callback_refused"] == []


async def paid_and_queried_as(
    alipay: ProviderWorld,
    monkeypatch: pytest.MonkeyPatch,
    changed: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """An order paid at Alipay, its notification lost, whose ``alipay.trade.query`` answers
    ``changed`` of what it would: the order, its payment, and the payments asked about."""
    _, order, payment = await alipay.payment_started()
    await alipay.pay(payment, notify=False)
    fake = fake_of(alipay)
    answered, asked = fake._query, []

    def query(params: Mapping[str, str], biz: Mapping[str, Any]) -> dict[str, Any]:
        asked.append(biz["out_trade_no"])
        return changed(answered(params, biz))

    monkeypatch.setattr(fake, "_query", query)
    return order, payment, asked


async def test_a_deadline_query_answering_no_amount_of_yuan_times_the_order_out_once_asked(
    alipay: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it was taken for no answer: the history said "did not answer", and the provider was
    # asked again for ever, the waits doubling
    order, payment, asked = await paid_and_queried_as(
        alipay, monkeypatch, lambda answer: answer | {"total_amount": "120.000"}
    )

    with capture_logs() as logs:
        await clock.advance(alipay.shop.config.order_timeout_s)  # not its grace: answered
        await alipay.shop.runtime.system.quiet()
    timed_out = await alipay.order(order["id"])
    assert (timed_out["status"], timed_out["cancel_reason"]) == ("canceled", "timeout")
    status, history = await alipay.call("GET", f"/v1/orders/{order['id']}/history", alipay.admin)
    assert status == 200
    [said] = [e["remark"] for e in history["items"] if e["operation"] == "payment_queried"]
    assert said.startswith(f"payment {payment['id']}: succeeded, refused: ") and "120.000" in said
    warned = [line for line in logs if line["event"] == "callback_refused"]
    assert [(line["log_level"], line["reason"], line["via"]) for line in warned] == [
        ("warning", "wrong_amount", "query")
    ]

    for _ in range(3):
        await clock.advance(alipay.shop.config.refund_retry_max_s)
        await alipay.shop.runtime.system.quiet()
    assert asked == [str(payment["id"])]
    assert alipay.shop.active_queries["payment:error"] == 0
    assert alipay.shop.order_stats.callbacks_rejected["wrong_amount"] == 1  # as in /metrics
    assert await alipay.refunds(order["id"]) == []
    await alipay.audit_ok()


async def test_a_deadline_query_answering_paid_without_its_trade_no_is_refused_once_asked(
    alipay: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a KeyError, taken for no answer: "the provider did not answer", asked again for ever
    order, payment, asked = await paid_and_queried_as(
        alipay, monkeypatch, lambda answer: {k: v for k, v in answer.items() if k != "trade_no"}
    )

    await clock.advance(alipay.shop.config.order_timeout_s)
    await alipay.shop.runtime.system.quiet()
    for _ in range(3):
        await clock.advance(alipay.shop.config.refund_retry_max_s)
        await alipay.shop.runtime.system.quiet()

    status, history = await alipay.call("GET", f"/v1/orders/{order['id']}/history", alipay.admin)
    assert status == 200
    [said] = [e["remark"] for e in history["items"] if e["operation"] == "payment_queried"]
    refused = "succeeded, refused: trade_no: missing from a paid trade"
    assert said == f"payment {payment['id']}: {refused}"
    assert asked == [str(payment["id"])]
    assert (await alipay.order(order["id"]))["cancel_reason"] == "timeout"


def ignored_in_the_metrics(world: ProviderWorld) -> float:
    """``shopkeep_callbacks_total{result="ignored"}`` as ``/metrics`` would say it now."""
    [family] = [f for f in BusinessCollector(world.shop).collect()
                if f.name == "shopkeep_callbacks"]
    values = [s.value for s in family.samples if s.labels == {"result": "ignored"}]
    return sum(values)


async def test_a_notification_about_no_payments_result_is_acknowledged_counted_and_logged(
    alipay: ProviderWorld,
) -> None:
    # acknowledged, as it must be, but shown nowhere: neither in the metrics nor in the log
    _, order, payment = await alipay.payment_started()
    await alipay.pay(payment, notify=False)
    full_refund: dict[str, Any] = {"trade_status": "TRADE_CLOSED", "refund_fee": "120.00",
                                   "gmt_refund": "2024-01-01 00:00:00"}
    waiting: dict[str, Any] = {"trade_status": "WAIT_BUYER_PAY"}
    for changes in (full_refund, waiting):
        body, headers = alipay.notification(payment, **changes)
        with capture_logs() as logs:
            status, answer = await alipay.post(body, headers)
        assert (status, answer) == (200, b"success")
        told = [line for line in logs if line["event"] == "callback_ignored"]
        assert [(line["log_level"], line["provider"]) for line in told] == [("info", "alipay")]
        assert changes["trade_status"] in told[0]["reason"]

    assert ignored_in_the_metrics(alipay) == 2
    assert (await alipay.order(order["id"]))["status"] == "awaiting_payment"


async def test_a_deadline_query_the_provider_failed_tells_the_customer_no_more_than_that(
    alipay: ProviderWorld, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the history, which the customer reads, quoted the provider's error: its URL, its
    # merchant's ids, its raw answer
    customer, order, payment = await alipay.payment_started()
    inner = "alipay: POST http://10.0.0.7/gateway.do answered 500: 'seller 2088000000000001'"

    async def down(ref: object) -> object:
        raise GatewayError(inner)

    monkeypatch.setattr(alipay.shop.provider, "query_payment", down)

    with capture_logs() as logs:
        await past_the_deadline(alipay, clock, order["id"])
    status, history = await alipay.call("GET", f"/v1/orders/{order['id']}/history", customer)

    assert status == 200
    [said] = [e["remark"] for e in history["items"] if e["operation"] == "payment_queried"]
    assert said == f"payment {payment['id']}: the provider did not answer"
    logged = [line for line in logs if line["event"] == "payment_query_failed"]
    assert logged and all(inner in line["error"] for line in logged)  # the operator's to read
