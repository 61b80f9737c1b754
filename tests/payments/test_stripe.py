"""Stripe against its local fake, through the official SDK: PaymentIntents, webhooks signed
the way the SDK verifies them, refunds with idempotency keys, queries."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shopkeep.payments.fakes.common import Unpayable
from shopkeep.payments.fakes.stripe import FakeStripe, stripe_signature
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    MALFORMED,
    STALE,
    WRONG_AMOUNT,
    ConfigurationError,
    GatewayError,
    GatewayRefused,
    Ignored,
    Notice,
    PaymentClosed,
    PaymentOpen,
    PaymentPaid,
    PaymentRef,
    PaymentRequest,
    RefundDone,
    RefundFailed,
    RefundProcessing,
    RefundRequest,
    RefundTaken,
    Refused,
    RequestRefused,
    signed_malformed,
)
from shopkeep.payments.stripe_provider import WEBHOOK_PATH, StripeProvider
from tests.payments.conftest import (
    NOT_IDS,
    Receiver,
    assert_closed_refund_sent_again,
    assert_refund_failures_retryable,
    assert_refund_made_once,
)

API_KEY = "sk_test_fake"
SECRET = "whsec_fake"


class TroubledStripe(FakeStripe):
    """The fake, with two more of Stripe's ways: a refund's 500 kept under its Idempotency-Key
    (and replayed to the same key), and a 200 whose body is not JSON."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._kept_refund_failures = (0, False)
        self._garbled_intents = 0

    def keep_refund_failures(self, times: int = 1, *, made: bool = False) -> None:
        """The next ``times`` refund creations answer 500, kept under their key as Stripe keeps
        a failure whose execution began; ``made``: the refund was made before the failure."""
        self._kept_refund_failures = (times, made)

    def garble_next_intent(self) -> None:
        """The next PaymentIntent creation answers 200 with a body that is not JSON."""
        self._garbled_intents += 1

    async def _create_refund(self, request: web.Request) -> web.Response:
        failing, made = self._kept_refund_failures
        if not failing:
            return await super()._create_refund(request)
        self._kept_refund_failures = (failing - 1, made)
        if made:
            await super()._create_refund(request)
        else:
            await self.refund_gate(request.headers.get("Idempotency-Key", ""))
        params = await self._params(request)
        assert not isinstance(params, web.Response)
        return self._fail(request, params)  # kept under the key, over the refund's 200

    async def _create_intent(self, request: web.Request) -> web.Response:
        if self._garbled_intents:
            self._garbled_intents -= 1
            return web.Response(status=200, body=b"<html>gateway</html>",
                                content_type="text/html")
        return await super()._create_intent(request)


class World:
    """The fake, the provider pointed at it, and the shop's webhook route."""

    def __init__(
        self, fake: TroubledStripe, provider: StripeProvider, receiver: Receiver
    ) -> None:
        self.fake = fake
        self.provider = provider
        self.receiver = receiver

    async def start(self, payment_id: int = 7, amount: int = 1999) -> str:
        """Start a payment; the PaymentIntent's id."""
        checkout = await self.provider.start_payment(PaymentRequest(
            payment_id=payment_id, order_id=70, amount=amount, currency="USD",
            description="order 70", deadline=2_000_000_000.0))
        assert checkout.provider_ref is not None
        assert checkout.client_secret == f"{checkout.provider_ref}_secret_fake"
        return checkout.provider_ref

    def headers(self, payload: bytes, **options: int) -> dict[str, str]:
        return {"Stripe-Signature": stripe_signature(SECRET, payload, **options)}


@pytest.fixture
async def world(
    tmp_path: Path, receiver_of: Callable[[str], Awaitable[Receiver]]
) -> AsyncIterator[World]:
    receiver = await receiver_of(WEBHOOK_PATH)
    fake = TroubledStripe(api_key=API_KEY, webhook_secret=SECRET, webhook_url=receiver.url)
    await fake.start()
    (tmp_path / "api_key").write_text(f"  {API_KEY}\n")
    (tmp_path / "webhook_secret").write_text(f"{SECRET}\n")
    provider = StripeProvider.from_files(
        api_key_file=str(tmp_path / "api_key"),
        webhook_secret_file=str(tmp_path / "webhook_secret"),
        api_base=fake.url, timeout_s=0.5,
    )
    receiver.provider = provider
    yield World(fake, provider, receiver)
    await provider.close()
    await fake.close()


def refund_of(intent: str, refund_id: int = 31, amount: int = 1999) -> RefundRequest:
    return RefundRequest(refund_id=refund_id, payment_id=7, amount=amount, currency="USD",
                         payment_amount=1999, gateway_txn_id=intent)


async def test_a_payment_is_one_payment_intent_however_often_it_is_started(world: World) -> None:
    first = await world.start(amount=1999)
    again = await world.start(amount=1999)
    assert first == again and list(world.fake.intents) == [first]
    intent = world.fake.intents[first]
    assert (intent["amount"], intent["currency"]) == (1999, "usd")
    assert intent["metadata"] == {"payment_id": "7", "order_id": "70"}


async def test_a_genuine_webhook_is_the_shops_callback_with_amount_received(
    world: World,
) -> None:
    intent = await world.start(amount=1999)
    delivery = await world.fake.pay(intent)
    assert delivery is not None and delivery.answers == [200]
    notice = world.receiver.verdicts[0]
    assert isinstance(notice, Notice)
    assert (notice.payment_id, notice.order_id, notice.status) == (7, 70, "succeeded")
    assert (notice.amount, notice.currency, notice.gateway_txn_id) == (1999, "USD", intent)


async def test_a_failed_payment_and_other_events(world: World) -> None:
    intent = await world.start()
    await world.fake.fail(intent)
    failed = world.receiver.verdicts[0]
    assert isinstance(failed, Notice) and failed.status == "failed"
    other = world.fake.event("charge.refunded", {"id": "ch_1", "object": "charge"})
    verdict = await world.provider.verify_callback(other, world.headers(other), time.time())
    assert isinstance(verdict, Ignored)
    foreign = world.fake.event("payment_intent.succeeded", world.fake.intents[intent]
                               | {"metadata": {}})
    verdict = await world.provider.verify_callback(foreign, world.headers(foreign), time.time())
    assert isinstance(verdict, Ignored)


async def test_a_webhook_naming_no_id_as_the_shop_writes_it_is_not_the_shops(
    world: World,
) -> None:
    intent = await world.start()
    for odd in NOT_IDS:
        metadata = {"payment_id": odd, "order_id": "70"}
        event = world.fake.event(
            "payment_intent.succeeded", world.fake.intents[intent] | {"metadata": metadata}
        )
        verdict = await world.provider.verify_callback(event, world.headers(event), time.time())
        assert isinstance(verdict, Ignored), odd
        metadata = {"payment_id": "7", "order_id": odd}
        event = world.fake.event(
            "payment_intent.succeeded", world.fake.intents[intent] | {"metadata": metadata}
        )
        verdict = await world.provider.verify_callback(event, world.headers(event), time.time())
        assert isinstance(verdict, Notice) and verdict.order_id is None, odd


async def test_stripe_sends_again_until_the_answer_is_2xx(world: World) -> None:
    intent = await world.start()
    world.receiver.refuse_next = 2
    delivery = await world.fake.pay(intent)
    assert delivery is not None and delivery.answers == [400, 400, 200]


async def test_a_forged_altered_or_stale_webhook_is_refused(world: World) -> None:
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    payload = world.fake.event("payment_intent.succeeded", world.fake.intents[intent])
    forged = {"Stripe-Signature": stripe_signature("whsec_other", payload)}
    altered = payload.replace(b'"amount_received": 1999', b'"amount_received": 1')
    assert altered != payload
    for raw, headers in ((payload, forged), (altered, world.headers(payload)), (payload, {})):
        verdict = await world.provider.verify_callback(raw, headers, time.time())
        assert isinstance(verdict, Refused) and verdict.reason == BAD_SIGNATURE
    for off_by in (-301, 301, 10 * 365 * 86_400):  # outside the window, either side
        signed = world.headers(payload, timestamp=int(time.time()) + off_by)
        verdict = await world.provider.verify_callback(payload, signed, time.time())
        assert isinstance(verdict, Refused) and verdict.reason == STALE, off_by
    near = world.headers(payload, timestamp=int(time.time()) + 250)
    assert isinstance(await world.provider.verify_callback(payload, near, time.time()), Notice)
    for odd in ("t=1,v1=\u00ff", "t=\u0661,v1=00"):  # no ASCII: the SDK would raise TypeError
        verdict = await world.provider.verify_callback(
            payload, {"Stripe-Signature": odd}, time.time()
        )
        assert isinstance(verdict, Refused) and verdict.reason == BAD_SIGNATURE, odd
    for garbage in (b"not json", b"[]", b'"event"', b"1", b'{"type": 5}', b"\xff\xfe"):
        verdict = await world.provider.verify_callback(
            garbage, world.headers(garbage), time.time()
        )
        assert isinstance(verdict, Refused) and verdict.reason == MALFORMED, garbage


async def test_a_signature_header_is_read_for_its_time_as_the_sdk_reads_it(world: World) -> None:
    # the SDK reads "t=<n>=x" as t=<n> and verifies it; the shop's own reading of the time
    # took "<n>=x" for a number: a 500 with a traceback
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    payload = world.fake.event("payment_intent.succeeded", world.fake.intents[intent])
    signed = world.headers(payload)["Stripe-Signature"]
    time_part, signatures = signed.split(",", 1)
    for header in (f"{time_part}=x,{signatures}", f"{signatures},{time_part},t=9"):
        verdict = await world.provider.verify_callback(
            payload, {"Stripe-Signature": header}, time.time()
        )

        assert isinstance(verdict, Notice), header
    ahead = world.headers(payload, timestamp=int(time.time()) + 301)["Stripe-Signature"]
    time_part, signatures = ahead.split(",", 1)
    verdict = await world.provider.verify_callback(
        payload, {"Stripe-Signature": f"{time_part}=1,{signatures}"}, time.time()
    )
    assert isinstance(verdict, Refused) and verdict.reason == STALE


async def test_a_signed_webhook_nested_too_deeply_is_refused_as_malformed(world: World) -> None:
    # msgspec's RecursionError went through: a 500 with a traceback
    deep = b'{"type": "payment_intent.succeeded", "data": {"object": ' + (
        b"[" * 20_000 + b"]" * 20_000
    ) + b"}}"

    verdict = await world.provider.verify_callback(deep, world.headers(deep), time.time())

    assert verdict == signed_malformed("not a PaymentIntent event: nested too deeply")


async def test_a_signed_success_without_its_amount_received_is_malformed_not_zero(
    world: World,
) -> None:
    # read as "0 received": refused as the wrong amount ("the callback says 0"), and counted
    # so, where the operator is told to look for malformed (another API version's shape)
    intent = {"id": "pi_1", "object": "payment_intent", "amount": 12_000, "currency": "usd",
              "status": "succeeded", "metadata": {"payment_id": "7", "order_id": "70"}}
    body = (b'{"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", '
            b'"data": {"object": ' + json.dumps(intent).encode() + b"}}")

    verdict = await world.provider.verify_callback(body, world.headers(body), time.time())

    assert verdict == signed_malformed("a payment_intent.succeeded without its amount_received")


async def test_a_body_that_is_not_utf8_is_anyones_whatever_its_signature_says(
    world: World,
) -> None:
    # the SDK decodes the body before it looks at the signature: a warning for each such
    # unsigned request would let anyone fill the log
    garbage = b"\xff\xfe garbage"
    for headers in ({}, {"Stripe-Signature": "t=1,v1=00"}, world.headers(garbage)):
        verdict = await world.provider.verify_callback(garbage, headers, time.time())

        assert verdict == Refused(MALFORMED, "the payload is not a JSON event"), headers


async def test_a_refund_asked_twice_is_made_once(world: World) -> None:
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    refund, other = refund_of(intent), refund_of(intent, refund_id=32)
    # the idempotency key is the refund id itself (SPEC 10)
    await assert_refund_made_once(world.provider, world.fake, refund, other, intent, "31")


async def test_a_refund_stripe_canceled_is_sent_again_under_a_key_of_its_own(
    world: World,
) -> None:
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    await assert_closed_refund_sent_again(
        world.provider, world.fake, refund_of(intent), intent, "canceled"
    )


async def test_a_refund_that_failed_at_stripe_says_its_failure_reason(world: World) -> None:
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    refund = refund_of(intent)
    assert await world.provider.refund(refund) == RefundDone()

    world.fake.fail_refund(refund.key)  # the card is gone

    assert await world.provider.query_refund(refund) == RefundFailed(
        "failed: expired_or_canceled_card"
    )


@pytest.mark.parametrize("status", [None, "a_status_stripe_adds_later"])
async def test_a_refund_of_no_known_status_is_no_answer_not_a_failure(
    world: World, status: str | None
) -> None:
    # taken for failed: the staff were invited to pay it back by hand while Stripe paid it
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    refund = refund_of(intent)
    assert await world.provider.refund(refund) == RefundDone()
    made = world.fake.refunds[refund.key]
    world.fake.stripe_refunds[made.provider_id]["status"] = status

    with pytest.raises(GatewayError) as unanswered:
        await world.provider.query_refund(refund)

    assert not isinstance(unanswered.value, GatewayRefused)


async def test_a_cancel_answered_without_a_canceled_intent_is_no_answer(world: World) -> None:
    # "{}" was taken for closed: the order timed out, the intent stayed payable, and a
    # payment made then, its webhook lost, was never found
    intent = await world.start()
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="USD", provider_ref=intent)

    world.fake.answer_next_cancel({})

    with pytest.raises(GatewayError):
        await world.provider.close_payment(ref)
    assert world.fake.intents[intent]["status"] != "canceled"


async def test_a_refund_the_provider_fails_or_never_answers_is_an_error_to_retry(
    world: World,
) -> None:
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    await assert_refund_failures_retryable(world.provider, world.fake, refund_of(intent), intent)


async def test_a_refund_stripe_refuses_is_a_refusal(world: World) -> None:
    intent = await world.start()
    with pytest.raises(GatewayRefused, match="400") as refused:  # not paid: nothing to refund
        await world.provider.refund(refund_of(intent))
    assert not isinstance(refused.value, RequestRefused)  # a no to this refund: the staff's


@pytest.mark.parametrize("mistake", ["a key Stripe does not take", "a mistyped API base"])
async def test_a_refund_refused_for_the_shops_settings_is_a_refusal_of_the_request(
    world: World, mistake: str
) -> None:
    # it says nothing of the refund (an earlier try whose answer was lost may have been
    # taken): a refusal the staff could settle by hand, paying the customer back twice
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    key, base = ("sk_test_rolled", world.fake.url) if mistake.startswith("a key") else (
        API_KEY, world.fake.url + "/typo")
    mistaken = StripeProvider(api_key=key, webhook_secret=SECRET, api_base=base)
    try:
        with pytest.raises(RequestRefused, match=r"40[14]"):
            await mistaken.refund(refund_of(intent))
    finally:
        await mistaken.close()
    assert world.fake.refunded(intent) == 0


async def test_a_refusal_stripe_keeps_under_the_refund_id_does_not_outlive_its_cause(
    world: World,
) -> None:
    # Stripe answers a refusal whose execution began again to the same key for a day: a
    # refund refused while its intent was not paid stayed refused once it was
    intent = await world.start()
    refund = refund_of(intent)
    with pytest.raises(GatewayRefused, match="400"):
        await world.provider.refund(refund)

    await world.fake.pay(intent, notify=False)

    assert await world.provider.refund(refund) == RefundDone()  # under a key of its own
    assert await world.provider.refund(refund) == RefundDone()  # found, not made again
    [kept] = world.fake.refunds
    assert kept.startswith("31-") and world.fake.refunded(intent) == refund.amount


async def test_a_query_finds_a_payment_whose_webhook_was_dropped(world: World) -> None:
    unknown = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="USD")
    assert await world.provider.query_payment(unknown) == PaymentOpen(exists=False)
    intent = await world.start()
    known = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="USD",
                       provider_ref=intent)
    assert await world.provider.query_payment(known) == PaymentOpen()
    await world.fake.pay(intent, notify=False)
    assert world.receiver.verdicts == []
    paid = PaymentPaid(amount=1999, currency="USD", gateway_txn_id=intent)
    assert await world.provider.query_payment(known) == paid
    assert await world.provider.query_payment(unknown) == paid  # found by its metadata


async def test_krona_go_to_stripe_in_its_hundredths_and_come_back_whole(world: World) -> None:
    # Stripe writes ISK as a two-decimal currency (100 is one króna); ISO 4217 and the shop
    # count whole krónur: 6000 kr sent as 6000 was a charge of 60 kr
    checkout = await world.provider.start_payment(PaymentRequest(
        payment_id=7, order_id=70, amount=6000, currency="ISK", description="order 70",
        deadline=2_000_000_000.0))
    intent = checkout.provider_ref
    assert intent is not None and world.fake.intents[intent]["amount"] == 600_000
    await world.fake.pay(intent)
    notice = world.receiver.verdicts[0]
    assert isinstance(notice, Notice) and (notice.amount, notice.currency) == (6000, "ISK")
    ref = PaymentRef(payment_id=7, order_id=70, amount=6000, currency="ISK", provider_ref=intent)
    assert await world.provider.query_payment(ref) == PaymentPaid(
        amount=6000, currency="ISK", gateway_txn_id=intent)
    refund = RefundRequest(refund_id=31, payment_id=7, amount=6000, currency="ISK",
                           payment_amount=6000, gateway_txn_id=intent)
    assert isinstance(await world.provider.refund(refund), RefundDone)
    assert [r["amount"] for r in world.fake.stripe_refunds.values()] == [600_000]


async def test_a_webhook_of_krona_not_whole_is_refused_as_a_wrong_amount(world: World) -> None:
    intent = await world.start()
    paid = {**world.fake.intents[intent], "status": "succeeded", "currency": "isk",
            "amount_received": 600_050}
    payload = world.fake.event("payment_intent.succeeded", paid)
    verdict = await world.provider.verify_callback(payload, world.headers(payload), time.time())
    assert isinstance(verdict, Refused) and verdict.reason == WRONG_AMOUNT


async def test_a_wrong_api_key_is_refused_by_stripe(world: World) -> None:
    wrong = StripeProvider(api_key="sk_test_other", webhook_secret=SECRET,
                           api_base=world.fake.url)
    try:
        with pytest.raises(GatewayRefused, match="401"):
            await wrong.start_payment(PaymentRequest(
                payment_id=9, order_id=90, amount=1, currency="USD", description="x",
                deadline=2_000_000_000.0))
    finally:
        await wrong.close()


def test_a_missing_or_empty_secret_file_refuses_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n  \n")
    for files, says in (
        ({"api_key_file": None, "webhook_secret_file": None}, "--stripe-api-key-file"),
        ({"api_key_file": str(tmp_path / "empty"), "webhook_secret_file": None},
         "--stripe-api-key-file"),
    ):
        with pytest.raises(ConfigurationError, match=says) as error:
            StripeProvider.from_files(**files)
        assert "\n" not in str(error.value)



@pytest.mark.parametrize("made", [False, True])
async def test_a_failure_stripe_replays_under_the_payment_id_is_reconciled(
    world: World, made: bool
) -> None:
    # Stripe keeps a 500 under its Idempotency-Key and replays it for a day: the payment id
    # alone would stay unpayable (providers.md: a replayed 500 means reconcile, not resend)
    world.fake.fail_intents(1, made=made)
    request = PaymentRequest(payment_id=7, order_id=70, amount=1999, currency="USD",
                             description="order 70", deadline=2_000_000_000.0)
    with pytest.raises(GatewayError):
        await world.provider.start_payment(request)
    checkout = await world.provider.start_payment(request)
    again = await world.provider.start_payment(request)
    assert checkout.client_secret and again == checkout
    [intent] = world.fake.intents.values()  # found when it was made, else made once more
    assert checkout.provider_ref == intent["id"]
    assert intent["metadata"] == {"payment_id": "7", "order_id": "70"}


async def test_an_intent_closed_at_the_deadline_is_canceled_and_can_no_longer_be_paid(
    world: World,
) -> None:
    intent = await world.start()
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="USD", provider_ref=intent)

    assert await world.provider.close_payment(ref) == PaymentClosed("canceled")
    assert world.fake.intents[intent]["cancellation_reason"] == "abandoned"
    assert await world.provider.query_payment(ref) == PaymentClosed("canceled")
    with pytest.raises(Unpayable):
        await world.fake.pay(intent)
    # canceled already: nothing more to close, and no error
    assert await world.provider.close_payment(ref) is None


async def test_an_intent_paid_before_the_close_is_not_canceled_and_the_query_finds_it(
    world: World,
) -> None:
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    unknown = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="USD")

    assert await world.provider.close_payment(unknown) is None  # found by its metadata
    assert await world.provider.query_payment(unknown) == PaymentPaid(
        amount=1999, currency="USD", gateway_txn_id=intent
    )


@pytest.mark.parametrize(
    "answered", [{}, {"id": "pi_z", "object": "payment_intent", "status": "requires_action"}]
)
async def test_an_intent_answered_without_its_client_secret_is_an_outage_to_retry(
    world: World, answered: dict[str, str]
) -> None:
    world.fake.answer_next_intent(answered)
    request = PaymentRequest(payment_id=8, order_id=80, amount=1999, currency="USD",
                             description="order 80", deadline=2_000_000_000.0)

    with pytest.raises(GatewayError) as failed:  # it raised AttributeError: a 500
        await world.provider.start_payment(request)

    assert not isinstance(failed.value, GatewayRefused)
    assert (await world.provider.start_payment(request)).client_secret


async def test_an_intent_answered_200_but_not_json_is_an_outage_to_retry(world: World) -> None:
    # the SDK's APIError carries the 200: it was taken for a refusal (a 502, not a 503)
    world.fake.garble_next_intent()
    request = PaymentRequest(payment_id=8, order_id=80, amount=1999, currency="USD",
                             description="order 80", deadline=2_000_000_000.0)

    with pytest.raises(GatewayError) as failed:
        await world.provider.start_payment(request)

    assert not isinstance(failed.value, GatewayRefused)
    assert (await world.provider.start_payment(request)).client_secret


@pytest.mark.parametrize(("made", "then", "state"), [
    (False, None, RefundDone()),
    (True, None, RefundDone()),
    (True, "pending", RefundProcessing()),
    (True, "failed", RefundFailed("failed: expired_or_canceled_card")),
])
async def test_a_refund_failure_stripe_replays_under_the_refund_id_is_reconciled(
    world: World, made: bool, then: str | None, state: RefundTaken
) -> None:
    # sent again under its key, the refund was answered the kept 500 for a day, never looked
    # up though it may exist (providers.md: a replayed 500 means reconcile, not resend)
    intent = await world.start()
    await world.fake.pay(intent, notify=False)
    refund = refund_of(intent)
    world.fake.keep_refund_failures(1, made=made)
    with pytest.raises(GatewayError):
        await world.provider.refund(refund)
    if then == "pending":
        [made_first] = world.fake.refunds.values()
        world.fake.stripe_refunds[made_first.provider_id]["status"] = "pending"
    elif then == "failed":
        world.fake.fail_refund(refund.key)

    assert await world.provider.refund(refund) == state  # found, or made under a key of its own
    assert await world.provider.refund(refund) == state  # found, not made again
    assert await world.provider.query_refund(refund) == state

    [kept] = world.fake.refunds  # one refund, whose metadata names the refund id
    assert (kept == "31") if made else kept.startswith("31-")
    assert world.fake.refunded(intent) == refund.amount
    [stripes] = world.fake.stripe_refunds.values()
    assert stripes["metadata"] == {"refund_id": "31"}


async def test_an_intent_stripe_has_not_is_a_no_about_it_not_a_refusal_of_the_request(
    world: World,
) -> None:
    # Stripe's 404 names the object it lacks (resource_missing); a 404 without it, no API
    with pytest.raises(GatewayRefused, match="404") as raised:
        await world.provider.query_payment(PaymentRef(
            payment_id=7, order_id=90, amount=1, currency="USD", provider_ref="pi_unknown"))
    assert not isinstance(raised.value, RequestRefused)
