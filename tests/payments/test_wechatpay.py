"""WeChat Pay API v3 against its local fake: Native pay, signed and encrypted notifications,
refunds by out_refund_no, queries."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import wechatpay_wire as wire
from shopkeep.payments.fakes.common import Unpayable
from shopkeep.payments.fakes.wechatpay import PLATFORM_SERIAL, FakeWeChatPay
from shopkeep.payments.keys import private_pem, public_pem
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    MALFORMED,
    STALE,
    WRONG_APP,
    ConfigurationError,
    GatewayError,
    GatewayRefused,
    Notice,
    PaymentClosed,
    PaymentOpen,
    PaymentPaid,
    PaymentRef,
    PaymentRequest,
    RefundFailed,
    RefundRequest,
    Refused,
    signed_malformed,
)
from shopkeep.payments.wechatpay import NOTIFY_PATH, WeChatPayProvider
from tests.payments.conftest import (
    NOT_IDS,
    Receiver,
    assert_closed_refund_sent_again,
    assert_refund_failures_retryable,
    assert_refund_made_once,
    write_keys,
)

MCH_ID = "1900000001"
APP_ID = "wx0000000000000001"
APIV3_KEY = b"0123456789abcdef0123456789abcdef"


class World:
    """The fake, the provider pointed at it, and the shop's notify route."""

    def __init__(
        self, fake: FakeWeChatPay, provider: WeChatPayProvider, receiver: Receiver
    ) -> None:
        self.fake = fake
        self.provider = provider
        self.receiver = receiver

    async def start(self, payment_id: int = 7, amount: int = 1999) -> str:
        checkout = await self.provider.start_payment(PaymentRequest(
            payment_id=payment_id, order_id=70, amount=amount, currency="CNY",
            description="order 70", deadline=2_000_000_000.0))
        assert checkout.code_url == f"weixin://wxpay/bizpayurl?pr=fake{payment_id}"
        return str(payment_id)


@pytest.fixture
async def world(
    tmp_path: Path,
    merchant_key: rsa.RSAPrivateKey,
    provider_key: rsa.RSAPrivateKey,
    receiver_of: Callable[[str], Awaitable[Receiver]],
) -> AsyncIterator[World]:
    fake = FakeWeChatPay(mch_id=MCH_ID, merchant_public_key=merchant_key.public_key(),
                         platform_key=provider_key, apiv3_key=APIV3_KEY)
    await fake.start()
    receiver = await receiver_of(NOTIFY_PATH)
    private_file, public_file = write_keys(tmp_path, merchant_key, provider_key)
    (tmp_path / "apiv3.key").write_bytes(APIV3_KEY + b"\n")
    provider = WeChatPayProvider.from_files(
        mch_id=MCH_ID, app_id=APP_ID, private_key_file=private_file, cert_serial="5157F09E",
        apiv3_key_file=str(tmp_path / "apiv3.key"), platform_public_key_file=public_file,
        notify_url=receiver.url, url=fake.url, timeout_s=0.5,
    )
    receiver.provider = provider
    yield World(fake, provider, receiver)
    await provider.close()
    await fake.close()


def refund_of(payment_id: int, refund_id: int = 31, amount: int = 1999) -> RefundRequest:
    return RefundRequest(refund_id=refund_id, payment_id=payment_id, amount=amount,
                         currency="CNY", payment_amount=1999)


async def test_a_payment_is_a_native_code_url_for_the_signed_order(world: World) -> None:
    await world.start(amount=1999)
    order = world.fake.orders["7"]
    assert (order.amount, order.currency, order.attach, order.appid) == (1999, "CNY", "70", APP_ID)
    assert order.notify_url == world.receiver.url


async def test_a_genuine_notification_is_the_shops_callback_with_the_exact_amount(
    world: World,
) -> None:
    await world.start(amount=1999)
    delivery = await world.fake.pay("7")
    assert delivery is not None and (delivery.acknowledged, delivery.answers) == (True, [204])
    notice = world.receiver.verdicts[0]
    assert isinstance(notice, Notice)
    assert (notice.payment_id, notice.order_id, notice.status) == (7, 70, "succeeded")
    assert (notice.amount, notice.currency) == (1999, "CNY")
    assert notice.gateway_txn_id == world.fake.orders["7"].transaction_id


async def test_wechat_pay_sends_again_until_the_answer_is_2xx(world: World) -> None:
    await world.start()
    world.receiver.refuse_next = 1
    delivery = await world.fake.pay("7")
    assert delivery is not None and delivery.answers == [400, 204]


async def test_a_forged_altered_stale_or_probe_notification_is_refused(
    world: World, forger_key: rsa.RSAPrivateKey
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    body = world.fake.notification("7")
    now = time.time()
    genuine = world.fake.headers_for(body)
    forged = wire.signed_headers(forger_key, PLATFORM_SERIAL, body, str(int(now)))
    probe = genuine | {wire.SIGNATURE: "WECHATPAY/SIGNTEST/" + genuine[wire.SIGNATURE]}
    altered = body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESS ")
    cases = [(body, forged), (body, probe), (altered, genuine), (body, {})]
    for raw, headers in cases:
        verdict = await world.provider.verify_callback(raw, headers, now)
        assert isinstance(verdict, Refused) and verdict.reason == BAD_SIGNATURE
    stale = world.fake.headers_for(body, timestamp=int(now) - 301)
    verdict = await world.provider.verify_callback(body, stale, now)
    assert isinstance(verdict, Refused) and verdict.reason == STALE
    # str.isdigit takes the first two (int() refuses ²); WeChat Pay signs ASCII headers only,
    # so they sign nothing, even signed; an empty time is no time
    for odd, reason in (("²", BAD_SIGNATURE), ("١٧", BAD_SIGNATURE), ("", STALE)):
        signed_odd = world.fake.headers_for(body, timestamp=odd)
        verdict = await world.provider.verify_callback(body, signed_odd, now)
        assert isinstance(verdict, Refused) and verdict.reason == reason, odd
    assert isinstance(await world.provider.verify_callback(body, genuine, now), Notice)


async def test_a_notification_for_another_merchant_or_app_is_refused(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    for field in ({"mchid": "1900000002"}, {"appid": "wx0000000000000002"}):
        body = world.fake.notification("7", **field)
        verdict = await world.provider.verify_callback(
            body, world.fake.headers_for(body), time.time())
        assert isinstance(verdict, Refused) and verdict.reason == WRONG_APP


async def test_a_resource_that_does_not_decrypt_is_refused(world: World) -> None:
    await world.start()
    event = json.loads(world.fake.notification("7"))
    event["resource"]["associated_data"] = "refund"
    body = json.dumps(event).encode()
    verdict = await world.provider.verify_callback(body, world.fake.headers_for(body), time.time())
    assert isinstance(verdict, Refused) and verdict.reason == MALFORMED


async def test_a_signed_notification_naming_no_id_as_the_shop_writes_it_is_malformed(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    for odd in NOT_IDS:
        body = world.fake.notification("7", out_trade_no=odd)
        verdict = await world.provider.verify_callback(
            body, world.fake.headers_for(body), time.time())
        assert isinstance(verdict, Refused) and verdict.reason == MALFORMED, odd
        # the order's id is optional: one that is no id is not read as another order's
        body = world.fake.notification("7", attach=odd)
        verdict = await world.provider.verify_callback(
            body, world.fake.headers_for(body), time.time())
        assert isinstance(verdict, Notice) and verdict.order_id is None, odd


async def test_a_success_without_its_transaction_id_is_malformed(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    for txn in ("", 123, None):
        body = world.fake.notification("7", transaction_id=txn)
        verdict = await world.provider.verify_callback(
            body, world.fake.headers_for(body), time.time())
        assert isinstance(verdict, Refused) and verdict.reason == MALFORMED, txn


async def test_a_resource_that_is_no_transaction_object_is_malformed(world: World) -> None:
    await world.start()
    event = json.loads(world.fake.notification("7"))
    for plain in ([1], "x", 5, None):
        event["resource"] = wire.encrypt_resource(
            APIV3_KEY, json.dumps(plain).encode(), "transaction"
        )
        body = json.dumps(event).encode()
        verdict = await world.provider.verify_callback(
            body, world.fake.headers_for(body), time.time())
        assert isinstance(verdict, Refused) and verdict.reason == MALFORMED, plain


async def test_a_refund_asked_twice_is_made_once(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    await assert_refund_made_once(
        world.provider, world.fake, refund_of(7), refund_of(7, refund_id=32), "7", "31"
    )


async def test_a_refund_wechat_pay_closed_is_sent_again_under_a_key_of_its_own(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    await assert_closed_refund_sent_again(world.provider, world.fake, refund_of(7), "7", "CLOSED")


async def test_a_refund_the_provider_fails_or_never_answers_is_an_error_to_retry(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    await assert_refund_failures_retryable(world.provider, world.fake, refund_of(7), "7")


async def test_a_query_finds_a_payment_whose_notification_was_dropped(world: World) -> None:
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    assert await world.provider.query_payment(ref) == PaymentOpen(exists=False)  # ORDER_NOT_EXIST
    await world.start()
    assert await world.provider.query_payment(ref) == PaymentOpen()  # NOTPAY
    await world.fake.pay("7", notify=False)
    assert world.receiver.verdicts == []
    assert await world.provider.query_payment(ref) == PaymentPaid(
        amount=1999, currency="CNY", gateway_txn_id=world.fake.orders["7"].transaction_id)


async def test_an_answer_not_signed_by_the_platform_is_not_believed(
    world: World, merchant_key: rsa.RSAPrivateKey, forger_key: rsa.RSAPrivateKey,
) -> None:
    misled = WeChatPayProvider(
        mch_id=MCH_ID, app_id=APP_ID, private_key=merchant_key, cert_serial="5157F09E",
        apiv3_key=APIV3_KEY, platform_keys=[forger_key.public_key()],
        notify_url=world.receiver.url, url=world.fake.url)
    try:
        with pytest.raises(GatewayError, match="not signed by WeChat Pay"):
            await misled.query_payment(PaymentRef(payment_id=7, order_id=70, amount=1,
                                                  currency="CNY"))
    finally:
        await misled.close()


async def test_a_key_file_of_the_old_platform_key_and_the_new_believes_either(
    world: World, tmp_path: Path, merchant_key: rsa.RSAPrivateKey,
    provider_key: rsa.RSAPrivateKey, forger_key: rsa.RSAPrivateKey,
) -> None:
    # while WeChat Pay rotates its platform key, answers come signed by the old or the new
    ring = tmp_path / "platform-keys.pem"
    ring.write_bytes(public_pem(forger_key.public_key()) + public_pem(provider_key.public_key()))
    private_file = tmp_path / "merchant.pem"
    private_file.write_bytes(private_pem(merchant_key))
    rotating = WeChatPayProvider.from_files(
        mch_id=MCH_ID, app_id=APP_ID, private_key_file=str(private_file),
        cert_serial="5157F09E", apiv3_key_file=str(tmp_path / "apiv3.key"),
        platform_public_key_file=str(ring), notify_url=world.receiver.url, url=world.fake.url)
    try:
        ref = PaymentRef(payment_id=7, order_id=70, amount=1, currency="CNY")
        # the answer (no such order) is signed with the second key
        assert await rotating.query_payment(ref) == PaymentOpen(exists=False)
    finally:
        await rotating.close()


async def test_a_request_signed_with_another_merchant_key_is_refused_by_wechat_pay(
    world: World, forger_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey,
) -> None:
    impostor = WeChatPayProvider(
        mch_id=MCH_ID, app_id=APP_ID, private_key=forger_key, cert_serial="5157F09E",
        apiv3_key=APIV3_KEY, platform_keys=[provider_key.public_key()],
        notify_url=world.receiver.url, url=world.fake.url)
    try:
        with pytest.raises(GatewayRefused, match="401"):
            await impostor.start_payment(PaymentRequest(
                payment_id=9, order_id=90, amount=1, currency="CNY", description="x",
                deadline=2_000_000_000.0))
    finally:
        await impostor.close()


def test_an_apiv3_key_of_the_wrong_length_refuses_in_one_line(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey
) -> None:
    private_file, public_file = write_keys(tmp_path, merchant_key, merchant_key)
    (tmp_path / "apiv3.key").write_text("short\n")
    with pytest.raises(ConfigurationError, match="--wechatpay-apiv3-key-file"):
        WeChatPayProvider.from_files(
            mch_id=MCH_ID, app_id=APP_ID, private_key_file=private_file, cert_serial="1",
            apiv3_key_file=str(tmp_path / "apiv3.key"), platform_public_key_file=public_file,
            notify_url="http://127.0.0.1/n")


async def test_an_order_open_at_the_deadline_is_closed_and_can_no_longer_be_paid(
    world: World,
) -> None:
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    assert await world.provider.close_payment(ref) is None  # ORDER_NOT_EXIST
    await world.start()

    assert await world.provider.close_payment(ref) == PaymentClosed("CLOSED")
    assert await world.provider.query_payment(ref) == PaymentClosed("CLOSED")
    with pytest.raises(Unpayable):
        await world.fake.pay("7")


async def test_an_order_paid_before_the_close_stays_paid(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")

    assert await world.provider.close_payment(ref) is None  # ORDERPAID
    assert isinstance(await world.provider.query_payment(ref), PaymentPaid)


@pytest.mark.parametrize("answered", [
    {"code": "SYSTEM_ERROR", "message": "busy"},  # a 200 that is no refund's answer
    {"refund_id": "50300001", "out_refund_no": "31"},  # a refund without its status
    {"refund_id": "50300001", "out_refund_no": "31", "status": None},
    {"refund_id": "50300001", "out_refund_no": "31", "status": "SOMETHING_NEW"},
])
async def test_a_refund_answer_without_a_known_status_is_no_answer_to_retry_not_a_failure(
    world: World, answered: dict[str, object]
) -> None:
    # a failure invites the staff to pay the money back by hand: only ABNORMAL says WeChat Pay
    # could not pay it out; an answer that says nothing of the refund is asked again
    await world.start()
    await world.fake.pay("7", notify=False)
    refund = refund_of(7)
    world.fake.refund_answers[refund.key] = answered

    for asked in (world.provider.refund, world.provider.query_refund):
        with pytest.raises(GatewayError) as failed:
            await asked(refund)
        assert not isinstance(failed.value, GatewayRefused), asked

    world.fake.refund_answers[refund.key] = {**answered, "status": "ABNORMAL"}
    assert await world.provider.refund(refund) == RefundFailed("ABNORMAL")
    assert await world.provider.query_refund(refund) == RefundFailed("ABNORMAL")


async def test_a_signed_notification_of_the_wrong_shape_is_refused_saying_what_is_wrong(
    world: World,
) -> None:
    # the refusal's words are what WeChat Pay's staff would read: they named Python's
    # exceptions ("'list' object has no attribute 'get'", or a bare "'currency'")
    await world.start()
    await world.fake.pay("7", notify=False)
    amount_of = json.loads(world.fake.notification("7"))  # a whole event, to take apart
    no_currency = world.fake.transaction("7") | {"amount": {"total": 1999}}
    deep = b"[" * 20_000 + b"]" * 20_000
    shapes = {
        b"[]": "the body is not a JSON object",
        b"not json": "the body is not JSON",
        b'{"event_type": "\xff"}': "the body is not JSON",
        deep: "the body is not JSON",  # the parser's RecursionError went through: a 500
        b'{"id": ' + b"9" * 5_000 + b"}": "the body is not JSON",
        json.dumps(amount_of | {
            "resource": wire.encrypt_resource(APIV3_KEY, deep, "transaction")
        }).encode(): "its resource's plaintext is not JSON",
        json.dumps(amount_of | {"resource": "x"}).encode(): "its resource is not a JSON object",
        world.fake.notification("7", amount="1999"): "its amount is not a JSON object",
        world.fake.notification("7", **no_currency): "its currency is not a string",
    }
    for body, said in shapes.items():
        verdict = await world.provider.verify_callback(
            body, world.fake.headers_for(body), time.time())
        assert verdict == signed_malformed(f"not a payment notification: {said}"), body
