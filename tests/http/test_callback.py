"""POST /v1/payments/callback: signed callbacks are applied once; forged ones change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from shopkeep.payments.signature import sign
from shopkeep.requests import MAX_AMOUNT
from tests.http.conftest import ADMIN, Api


async def awaiting_payment(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order awaiting payment and its started payment."""
    alice = await api.customer()
    order = await api.order(alice, await api.goods(price=12_000))
    started = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)
    return order, started.body


async def test_a_signed_success_pays_the_order_and_a_duplicate_is_acknowledged(
    api: Api,
) -> None:
    order, payment = await awaiting_payment(api)
    raw = api.callback(payment)

    first = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)
    again = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)

    assert (first.status, first.body) == (200, {"received": True})
    assert (again.status, again.body) == (200, {"received": True})
    paid = await api.call("GET", f"/v1/orders/{order['id']}", ADMIN)
    assert paid.body["status"] == "paid"
    assert (await api.call("GET", "/v1/audit", ADMIN)).body["ok"] is True


async def test_a_signed_failure_leaves_the_order_awaiting_payment(api: Api) -> None:
    order, payment = await awaiting_payment(api)
    raw = api.callback(payment, "failed")
    answered = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)
    assert answered.status == 200
    assert (await api.call("GET", f"/v1/orders/{order['id']}", ADMIN)).body["status"] == (
        "awaiting_payment"
    )


Forgery = Callable[[Api, dict[str, Any]], tuple[bytes, dict[str, str]]]


def missing_signature(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return api.callback(payment), {}


def wrong_secret(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment)
    return raw, {"Shopkeep-Signature": sign("not-the-secret", int(api.clock.now()), raw)}


def altered_body(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment)
    return raw.replace(b'"succeeded"', b'"failed"'), api.signed(raw)


def stale_timestamp(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment)
    return raw, api.signed(raw, at=int(api.clock.now()) - 301)


def future_timestamp(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment)
    return raw, api.signed(raw, at=int(api.clock.now()) + 301)


def malformed_header(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return api.callback(payment), {"Shopkeep-Signature": "v1=abc"}


def malformed_body(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = b'{"payment_id": '
    return raw, api.signed(raw)


def unknown_payment(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback({**payment, "id": "1", "order_id": "2"})
    return raw, api.signed(raw)


def wrong_amount(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment, amount=payment["amount"] - 1)
    return raw, api.signed(raw)


def amount_out_of_range(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment, amount=MAX_AMOUNT + 1)
    return raw, api.signed(raw)


def another_currency(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment).replace(b"}", b', "currency": "USD"}')
    return raw, api.signed(raw)


def unknown_field(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = api.callback(payment).replace(b"}", b', "paid_by": "someone else"}')
    return raw, api.signed(raw)


def replay_of_another_signature(api: Api, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    signed_failure = api.signed(api.callback(payment, "failed"))
    return api.callback(payment), signed_failure


FORGERIES: list[Forgery] = [
    missing_signature,
    wrong_secret,
    altered_body,
    stale_timestamp,
    future_timestamp,
    malformed_header,
    malformed_body,
    unknown_payment,
    wrong_amount,
    amount_out_of_range,
    another_currency,
    unknown_field,
    replay_of_another_signature,
]


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda forge: forge.__name__)
async def test_a_forged_callback_is_refused_400_and_changes_nothing(
    api: Api, forge: Forgery
) -> None:
    order, payment = await awaiting_payment(api)
    raw, headers = forge(api, payment)

    refused = await api.call("POST", "/v1/payments/callback", headers, data=raw)

    assert (refused.status, refused.body["code"]) == (400, "invalid_callback")
    assert refused.content_type == "application/problem+json"
    now = await api.call("GET", f"/v1/orders/{order['id']}", ADMIN)
    assert (now.body["status"], now.body["paid_at"]) == ("awaiting_payment", None)
    assert (await api.call("GET", "/v1/audit", ADMIN)).body["ok"] is True


@pytest.mark.parametrize("amount", [1, MAX_AMOUNT + 1], ids=["another", "beyond_any"])
async def test_an_authentic_callback_of_another_amount_is_a_warning(api: Api, amount: int) -> None:
    _, payment = await awaiting_payment(api)
    raw = api.callback(payment, amount=amount)

    with capture_logs() as logs:
        refused = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)

    assert refused.status == 400
    warned = [line for line in logs if line["event"] == "callback_refused"]
    assert [(line["log_level"], line["reason"]) for line in warned] == [("warning", "amount")]


async def test_a_signed_callback_of_a_shape_the_shop_does_not_take_is_a_warning(api: Api) -> None:
    # a provider that adds a field sends its callbacks again for days: the metric alone
    # counted them with anyone's probes
    _, payment = await awaiting_payment(api)
    raw, headers = unknown_field(api, payment)
    unsigned, _ = malformed_body(api, payment)

    with capture_logs() as logs:
        refused = await api.call("POST", "/v1/payments/callback", headers, data=raw)
        anyones = await api.call("POST", "/v1/payments/callback", {}, data=unsigned)

    assert (refused.status, anyones.status) == (400, 400)
    warned = [line for line in logs if line["event"] == "callback_refused"]
    assert [(line["log_level"], line["reason"]) for line in warned] == [("warning", "malformed")]


async def test_a_signed_callbacks_refusal_is_short_whatever_the_body_holds(api: Api) -> None:
    # a field name of 5,000 characters went whole into the warning and the answer
    _, payment = await awaiting_payment(api)
    raw = api.callback(payment).replace(b"}", b', "' + b"x" * 5_000 + b'": 1}')
    zeros = api.callback({**payment, "id": "007"})

    with capture_logs() as logs:
        long = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)
        padded = await api.call("POST", "/v1/payments/callback", api.signed(zeros), data=zeros)

    details = [line["detail"] for line in logs if line["event"] == "callback_refused"]
    assert (long.status, padded.status) == (400, 400) and len(details) == 2
    assert all(len(detail) < 300 for detail in details) and "payment_id" in details[1]
    assert len(long.body["detail"]) < 300


async def test_a_callback_naming_the_payments_own_currency_is_applied(api: Api) -> None:
    order, payment = await awaiting_payment(api)
    assert payment["currency"] == "CNY"
    raw = api.callback(payment).replace(b"}", b', "currency": "CNY"}')

    answered = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)

    assert (answered.status, answered.body) == (200, {"received": True})
    assert (await api.call("GET", f"/v1/orders/{order['id']}", ADMIN)).body["status"] == "paid"


async def test_the_callback_needs_no_bearer_token_and_ignores_one(api: Api) -> None:
    _, payment = await awaiting_payment(api)
    raw = api.callback(payment)
    headers = {**api.signed(raw), **ADMIN}
    assert (await api.call("POST", "/v1/payments/callback", headers, data=raw)).status == 200


@pytest.mark.parametrize("txn", [None, ""])
async def test_a_success_without_its_gateway_transaction_is_refused_and_changes_nothing(
    api: Api, txn: str | None
) -> None:
    order, payment = await awaiting_payment(api)
    raw = api.callback(payment).replace(b'"txn-1"', b"null" if txn is None else b'""')

    refused = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)

    assert refused.status == 400
    unchanged = await api.call("GET", f"/v1/orders/{order['id']}", ADMIN)
    assert unchanged.body["status"] == "awaiting_payment"


async def test_callbacks_that_fail_verification_are_counted_and_never_stored(api: Api) -> None:
    order, payment = await awaiting_payment(api)
    await api.settle()
    before = await api.shop.reader.fetchone("SELECT count(*), coalesce(sum(length(body)), 0) "
                                            "FROM payment_log")
    junk = b'{"payment_id": "' + b"9" * 60_000 + b'"}'
    for headers in ({}, {"Shopkeep-Signature": "t=1,v1=" + "0" * 64}):
        for _ in range(10):
            refused = await api.call("POST", "/v1/payments/callback", headers, data=junk)
            assert refused.status == 400
    after = await api.shop.reader.fetchone("SELECT count(*), coalesce(sum(length(body)), 0) "
                                           "FROM payment_log")
    assert after == before
    assert api.shop.rejected_callbacks == {"signature_missing": 10, "signature_stale": 10}
    unchanged = await api.call("GET", f"/v1/orders/{order['id']}", ADMIN)
    assert unchanged.body["status"] == "awaiting_payment" and payment["amount"] > 0
