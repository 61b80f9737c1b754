"""The sandbox behind the provider interface: SPEC 7's signed callbacks, refunds and queries
through the existing SandboxGateway."""

from __future__ import annotations

import msgspec
import pytest

from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import (
    MALFORMED,
    GatewayError,
    Notice,
    PaymentOpen,
    PaymentPaid,
    PaymentRef,
    PaymentRequest,
    RefundDone,
    RefundMissing,
    RefundRequest,
    Refused,
)
from shopkeep.payments.sandbox import CALLBACK_PATH, SandboxProvider
from shopkeep.payments.signature import HEADER
from shopkeep.runtime import VirtualClock

SECRET = "sandbox-secret"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def sent() -> list[tuple[bytes, str]]:
    return []


@pytest.fixture
def provider(clock: VirtualClock, sent: list[tuple[bytes, str]]) -> SandboxProvider:
    gateway = SandboxGateway(SECRET, clock, remember=None)

    async def sink(raw_body: bytes, signature: str) -> bool:
        sent.append((raw_body, signature))
        return True

    gateway.attach(sink)
    return SandboxProvider(gateway, SECRET, currency="EUR")


def refund_of(refund_id: int = 31) -> RefundRequest:
    return RefundRequest(refund_id=refund_id, payment_id=7, amount=500, currency="EUR",
                         payment_amount=500)


async def test_a_payment_is_the_sandbox_page(provider: SandboxProvider) -> None:
    checkout = await provider.start_payment(PaymentRequest(
        payment_id=7, order_id=70, amount=500, currency="EUR", description="x", deadline=0.0))
    assert checkout.gateway_url == "https://sandbox.shopkeep.invalid/pay/7"
    assert provider.callback_path == CALLBACK_PATH


async def test_a_signed_callback_naming_no_currency_is_a_notice_of_the_payments_own(
    provider: SandboxProvider, sent: list[tuple[bytes, str]], clock: VirtualClock
) -> None:
    assert await provider.gateway.complete(7, 70, 500, "succeeded", "txn-1")
    raw, signature = sent[0]
    notice = await provider.verify_callback(raw, {HEADER.lower(): signature}, clock.now())
    assert notice == Notice(payment_id=7, order_id=70, amount=500, currency=None,
                            status="succeeded", gateway_txn_id="txn-1")
    assert isinstance(notice, Notice)
    assert msgspec.json.encode(notice.callback_body()) == raw


async def test_a_callback_failing_spec_7s_checks_is_refused_with_the_same_reasons(
    provider: SandboxProvider, clock: VirtualClock
) -> None:
    gateway = provider.gateway
    body = gateway.callback(7, 70, 500, "succeeded", "txn-1")
    now = clock.now()
    cases = [
        (body, {}, "signature_missing"),
        (body, {HEADER: "t=1,v1=xyz"}, "signature_malformed"),
        (body, {HEADER: gateway.signature(body, int(now) - 301)}, "signature_stale"),
        (body + b" ", {HEADER: gateway.signature(body)}, "signature_mismatch"),
    ]
    for unsigned_body in (b"{}", gateway.callback(7, 70, 500, "pending", "t"),
                          gateway.callback(7, 70, 500, "succeeded", None)):
        cases.append((unsigned_body, {HEADER: gateway.signature(unsigned_body)}, MALFORMED))
    for raw, headers, reason in cases:
        verdict = await provider.verify_callback(raw, headers, now)
        assert isinstance(verdict, Refused) and verdict.reason == reason, (raw, verdict)


@pytest.mark.parametrize("seconds_away", [-300, 300])
async def test_a_callback_signed_300_seconds_away_either_way_is_within_the_window(
    provider: SandboxProvider, seconds_away: int
) -> None:
    gateway = provider.gateway
    body = gateway.callback(7, 70, 500, "succeeded", "txn-1")
    now = 1_800_000_000.9  # late in its second: the header counts whole seconds
    signed = gateway.signature(body, int(now) + seconds_away)

    verdict = await provider.verify_callback(body, {HEADER: signed}, now)

    assert isinstance(verdict, Notice)


@pytest.mark.parametrize("spelt", ["07", "+7", " 7", "7\n", "7_0", "٧", "0"])
async def test_a_callback_naming_an_id_not_as_the_shop_writes_it_is_malformed(
    provider: SandboxProvider, clock: VirtualClock, spelt: str
) -> None:
    body = msgspec.json.encode(
        {"payment_id": spelt, "order_id": "70", "amount": 500, "status": "succeeded",
         "gateway_txn_id": "txn-1"}
    )
    signed = provider.gateway.signature(body)

    verdict = await provider.verify_callback(body, {HEADER: signed}, clock.now())

    assert isinstance(verdict, Refused) and verdict.reason == MALFORMED


async def test_refunds_are_made_once_and_fail_while_the_sandbox_fails_them(
    provider: SandboxProvider,
) -> None:
    await provider.gateway.complete(7, 70, 500, "succeeded", "txn-1")
    provider.gateway.refunds_failing = True
    with pytest.raises(GatewayError):
        await provider.refund(refund_of())
    assert await provider.query_refund(refund_of()) == RefundMissing()
    provider.gateway.refunds_failing = False
    assert await provider.refund(refund_of()) == RefundDone()
    assert await provider.refund(refund_of()) == RefundDone()
    assert provider.gateway.total_refunded == 500
    assert await provider.query_refund(refund_of()) == RefundDone()


async def test_a_query_finds_what_the_sandbox_collected(provider: SandboxProvider) -> None:
    ref = PaymentRef(payment_id=7, order_id=70, amount=500, currency="EUR")
    assert await provider.query_payment(ref) == PaymentOpen()
    provider.gateway.collect(7, "txn-1", 500)
    assert await provider.query_payment(ref) == PaymentPaid(
        amount=500, currency="EUR", gateway_txn_id="txn-1")


async def test_a_query_reads_its_payment_s_book_not_every_book(
    provider: SandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    for payment_id in range(1, 1_001):
        provider.gateway.collect(payment_id, f"txn-{payment_id}", 100)

    def walked(_: object) -> None:
        raise AssertionError("the query walked every payment's book")

    # the active query runs at every unpaid order's deadline: walking the books each time
    # made it cost as much as the sandbox remembers (a tenth of the load harness's loop)
    monkeypatch.setattr(SandboxGateway, "collected", property(walked))
    ref = PaymentRef(payment_id=500, order_id=5_000, amount=100, currency="EUR")
    assert await provider.query_payment(ref) == PaymentPaid(
        amount=100, currency="EUR", gateway_txn_id="txn-500")


def test_the_answers_are_spec_7s(provider: SandboxProvider) -> None:
    assert provider.answer(True).status == 200
    assert provider.answer(True).body == b'{"received":true}'
    refused = provider.answer(False, "signature: mismatch")
    assert (refused.status, refused.content_type) == (400, "application/problem+json")
    assert b"invalid_callback" in refused.body
