"""Alipay against its local fake: page pay and QR, RSA2 notifications, refunds, queries."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import alipay_wire as wire
from shopkeep.payments.alipay import NOTIFY_PATH, AlipayProvider, currency_named
from shopkeep.payments.fakes.alipay import SELLER_ID, FakeAlipay
from shopkeep.payments.fakes.common import Unpayable
from shopkeep.payments.keys import sign_sha256_rsa
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    MALFORMED,
    STALE,
    TOLERANCE_S,
    WRONG_AMOUNT,
    WRONG_APP,
    ConfigurationError,
    GatewayError,
    GatewayRefused,
    Ignored,
    Notice,
    PaymentClosed,
    PaymentOpen,
    PaymentPaid,
    PaymentPaidRefused,
    PaymentRef,
    PaymentRequest,
    RefundRequest,
    Refused,
)
from shopkeep.payments.settings import ProviderSettings, build_provider
from tests.payments.conftest import (
    NOT_IDS,
    Receiver,
    assert_refund_failures_retryable,
    assert_refund_made_once,
    write_keys,
)

APP_ID = "2021000000000001"


class World:
    """The fake, the provider pointed at it, and the shop's notify route."""

    def __init__(self, fake: FakeAlipay, provider: AlipayProvider, receiver: Receiver) -> None:
        self.fake = fake
        self.provider = provider
        self.receiver = receiver

    async def start(self, payment_id: int = 7, amount: int = 1999, channel: str = "page") -> str:
        """Start a payment and open the cashier (the trade exists at Alipay from then on)."""
        request = PaymentRequest(
            payment_id=payment_id, order_id=70, amount=amount, currency="CNY",
            description="order 70", deadline=2_000_000_000.0, channel=channel,  # type: ignore[arg-type]
        )
        checkout = await self.provider.start_payment(request)
        if channel == "page":
            assert checkout.gateway_url is not None
            url = checkout.gateway_url
            async with aiohttp.ClientSession() as browser, browser.get(url) as page:
                assert page.status == 200
        return str(payment_id)


@pytest.fixture
async def world(
    tmp_path: Path,
    merchant_key: rsa.RSAPrivateKey,
    provider_key: rsa.RSAPrivateKey,
    receiver_of: Callable[[str], Awaitable[Receiver]],
) -> AsyncIterator[World]:
    fake = FakeAlipay(app_id=APP_ID, app_public_key=merchant_key.public_key(), key=provider_key,
                      time_scale=1e-6)
    await fake.start()
    receiver = await receiver_of(NOTIFY_PATH)
    private_file, public_file = write_keys(tmp_path, merchant_key, provider_key)
    provider = AlipayProvider.from_files(
        app_id=APP_ID, private_key_file=private_file, public_key_file=public_file,
        notify_url=receiver.url, url=fake.gateway_url, timeout_s=0.5,
    )
    receiver.provider = provider
    yield World(fake, provider, receiver)
    await provider.close()
    await fake.close()


def refund_of(payment_id: int, refund_id: int = 31, amount: int = 1999) -> RefundRequest:
    return RefundRequest(refund_id=refund_id, payment_id=payment_id, amount=amount,
                         currency="CNY", payment_amount=1999)


async def test_a_payment_is_a_signed_page_pay_url_the_cashier_accepts(world: World) -> None:
    await world.start(amount=1999)
    trade = world.fake.trades["7"]
    assert (trade.amount, trade.passback, trade.notify_url) == (1999, "70", world.receiver.url)


async def test_the_qr_channel_answers_the_precreated_qr_code(world: World) -> None:
    checkout = await world.provider.start_payment(PaymentRequest(
        payment_id=8, order_id=80, amount=5, currency="CNY", description="x",
        deadline=2_000_000_000.0, channel="qr"))
    assert checkout.qr_code == "https://qr.alipay.com/fake8"
    assert checkout.gateway_url is None


async def test_a_genuine_notification_is_the_shops_callback_with_the_exact_amount(
    world: World,
) -> None:
    await world.start(amount=1999)
    delivery = await world.fake.pay("7")
    assert delivery is not None and (delivery.acknowledged, delivery.attempts) == (True, 1)
    notice = world.receiver.verdicts[0]
    assert isinstance(notice, Notice)
    trade_no = world.fake.trades["7"].trade_no
    assert (notice.payment_id, notice.order_id) == (7, 70)
    assert (notice.amount, notice.currency) == (1999, "CNY")
    assert (notice.status, notice.gateway_txn_id) == ("succeeded", trade_no)


async def test_alipay_sends_again_until_the_answer_is_success(world: World) -> None:
    await world.start()
    world.receiver.refuse_next = 2
    delivery = await world.fake.pay("7")
    assert delivery is not None and (delivery.acknowledged, delivery.attempts) == (True, 3)
    assert world.provider.answer(True).body == b"success"
    assert world.provider.answer(True).status == 200
    assert world.provider.answer(False).body != b"success"


async def test_alipay_gives_up_after_its_eight_notifications(world: World) -> None:
    await world.start()
    world.receiver.refuse_next = 100
    delivery = await world.fake.pay("7")
    assert delivery is not None and (delivery.acknowledged, delivery.attempts) == (False, 8)


async def test_a_forged_or_altered_notification_is_refused(
    world: World, forger_key: rsa.RSAPrivateKey
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    genuine = dict(urllib.parse.parse_qsl(world.fake.notification("7").decode()))
    forged = wire.sign_params(genuine, forger_key, wire.NOTIFICATION_UNSIGNED)
    altered = genuine | {"total_amount": "0.01"}
    unsigned = {k: v for k, v in genuine.items() if k != "sign"}
    for params in (forged, altered, unsigned):
        verdict = await world.provider.verify_callback(
            urllib.parse.urlencode(params).encode(), {}, time.time())
        assert isinstance(verdict, Refused) and verdict.reason == BAD_SIGNATURE


async def test_a_notification_for_another_app_is_refused(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    body = world.fake.notification("7", app_id="2021000000000002")
    verdict = await world.provider.verify_callback(body, {}, time.time())
    assert isinstance(verdict, Refused) and verdict.reason == WRONG_APP


async def test_a_signed_notification_naming_no_id_as_the_shop_writes_it_is_malformed(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    for odd in NOT_IDS:
        for field in ("out_trade_no", "passback_params"):
            body = world.fake.notification("7", **{field: odd})
            verdict = await world.provider.verify_callback(body, {}, time.time())
            assert isinstance(verdict, Refused) and verdict.reason == MALFORMED, (field, odd)


async def test_a_notification_sent_outside_the_window_or_at_no_time_is_refused_stale(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    now = time.time()
    for sent in (wire.beijing_time(now - TOLERANCE_S - 2), wire.beijing_time(now + 2 * 86_400),
                 "yesterday", ""):
        body = world.fake.notification("7", notify_time=sent)
        verdict = await world.provider.verify_callback(body, {}, now)
        assert isinstance(verdict, Refused) and verdict.reason == STALE, sent
    retried = world.fake.notification("7", notify_time=wire.beijing_time(now - 60))
    assert isinstance(await world.provider.verify_callback(retried, {}, now), Notice)


async def test_with_a_seller_id_configured_another_sellers_notification_is_refused(
    world: World, tmp_path: Path
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    body = world.fake.notification("7")
    settings = ProviderSettings(
        gateway="alipay", public_url="https://shop.example", alipay_app_id=APP_ID,
        alipay_private_key_file=str(tmp_path / "private.pem"),
        alipay_public_key_file=str(tmp_path / "public.pem"), alipay_url=world.fake.gateway_url,
        alipay_seller_id=SELLER_ID,
    )  # fmt: skip
    ours = build_provider(settings, sandbox=lambda: world.provider)
    theirs = build_provider(
        msgspec.structs.replace(settings, alipay_seller_id="2088000000000002"),
        sandbox=lambda: world.provider,
    )
    try:
        assert isinstance(await ours.verify_callback(body, {}, time.time()), Notice)
        refused = await theirs.verify_callback(body, {}, time.time())
        assert isinstance(refused, Refused) and refused.reason == WRONG_APP
    finally:
        await ours.close()
        await theirs.close()


async def test_refund_and_finished_notifications_are_acknowledged_and_ignored(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    full_refund = world.fake.notification("7", trade_status="TRADE_CLOSED", refund_fee="19.99",
                                          gmt_refund="2024-01-01 00:00:00")
    partial = world.fake.notification("7", trade_status="TRADE_FINISHED", refund_fee="1.00",
                                      out_biz_no="31")
    for body in (full_refund, partial):
        assert isinstance(await world.provider.verify_callback(body, {}, time.time()), Ignored)
    closed = await world.provider.verify_callback(
        world.fake.notification("7", trade_status="TRADE_CLOSED", trade_no=""), {}, time.time())
    assert isinstance(closed, Notice) and closed.status == "failed"


async def test_a_payments_notification_saying_nothing_was_refunded_is_the_payments_news(
    world: World,
) -> None:
    # Alipay's documented sample of a payment's notification carries refund_fee=0.00: it was
    # taken for a refund's, acknowledged and dropped, the order left unpaid
    await world.start(amount=200)
    await world.fake.pay("7", notify=False)
    body = world.fake.notification("7", refund_fee="0.00", gmt_close="2024-01-01 00:00:00")

    notice = await world.provider.verify_callback(body, {}, time.time())

    assert isinstance(notice, Notice) and (notice.status, notice.amount) == ("succeeded", 200)


async def test_a_notification_signed_over_its_empty_values_too_is_authentic(
    world: World,
) -> None:
    # Alipay's Java SDK checks a notification over every parameter, `body=` included: it
    # was refused forever, the order paid only by the deadline's query
    await world.start(amount=200)
    await world.fake.pay("7", notify=False)
    body = world.fake.notification_signed_empty("7", body="")
    assert b"body=&" in body or body.endswith(b"body=")

    notice = await world.provider.verify_callback(body, {}, time.time())

    assert isinstance(notice, Notice) and notice.status == "succeeded"


async def test_a_refund_asked_twice_is_made_once(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    await assert_refund_made_once(
        world.provider, world.fake, refund_of(7), refund_of(7, refund_id=32), "7", "7/31"
    )


async def test_a_refund_the_provider_fails_or_never_answers_is_an_error_to_retry(
    world: World,
) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    await assert_refund_failures_retryable(world.provider, world.fake, refund_of(7), "7")


async def test_a_query_finds_a_payment_whose_notification_was_dropped(world: World) -> None:
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    assert await world.provider.query_payment(ref) == PaymentOpen(exists=False)  # TRADE_NOT_EXIST
    await world.start()
    assert await world.provider.query_payment(ref) == PaymentOpen()
    await world.fake.pay("7", notify=False)
    assert world.receiver.verdicts == []
    paid = await world.provider.query_payment(ref)
    assert paid == PaymentPaid(amount=1999, currency="CNY",
                               gateway_txn_id=world.fake.trades["7"].trade_no)


@pytest.mark.parametrize(
    ("fields", "currency"),
    [({}, "CNY"), ({"trans_currency": "USD"}, "USD"), ({"currency": "USD"}, "USD"),
     ({"trans_currency": "CNY", "currency": "USD"}, "USD"), ({"trans_currency": "CNY"}, "CNY")],
)
def test_a_trade_naming_another_currency_anywhere_is_in_that_currency(
    fields: dict[str, str], currency: str
) -> None:
    # in a notification and in the query's answer alike: the order refuses it as not its own
    assert currency_named(fields) == currency


async def test_an_answer_not_signed_by_alipay_is_not_believed(
    world: World, tmp_path: Path, merchant_key: rsa.RSAPrivateKey, forger_key: rsa.RSAPrivateKey,
) -> None:
    private_file, public_file = write_keys(tmp_path, merchant_key, forger_key)
    misled = AlipayProvider.from_files(
        app_id=APP_ID, private_key_file=private_file, public_key_file=public_file,
        notify_url=world.receiver.url, url=world.fake.gateway_url)
    try:
        with pytest.raises(GatewayError, match=r"not signed by Alipay .* --alipay-public-key-file"):
            await misled.query_payment(PaymentRef(payment_id=7, order_id=70, amount=1,
                                                  currency="CNY"))
    finally:
        await misled.close()


@pytest.mark.parametrize(
    ("app_id", "signs_with_the_app_key", "refused_as"),
    [("2021000000000002", True, "isv.invalid-app-id"), (APP_ID, False, "isv.invalid-signature")],
)
async def test_alipays_unsigned_refusal_of_the_app_is_a_refusal_naming_what_to_fix(
    world: World, tmp_path: Path, merchant_key: rsa.RSAPrivateKey, forger_key: rsa.RSAPrivateKey,
    provider_key: rsa.RSAPrivateKey, app_id: str, signs_with_the_app_key: bool, refused_as: str,
) -> None:
    # Alipay answers a request of an unknown app, or one whose signature fails, unsigned: a
    # refusal (a start is 502, a refund's row shows it to the staff), in Alipay's words
    app_key = merchant_key if signs_with_the_app_key else forger_key
    private_file, public_file = write_keys(tmp_path, app_key, provider_key)
    misconfigured = AlipayProvider.from_files(
        app_id=app_id, private_key_file=private_file, public_key_file=public_file,
        notify_url=world.receiver.url, url=world.fake.gateway_url)
    try:
        with pytest.raises(GatewayRefused) as raised:
            await misconfigured.refund(refund_of(7))
        said = str(raised.value)
        assert "alipay.trade.refund was refused, unsigned: 40002" in said
        assert refused_as in said and "--alipay-app-id and --alipay-private-key-file" in said
    finally:
        await misconfigured.close()


@pytest.mark.parametrize("signed_as_sent", [True, False], ids=["escaped", "unescaped"])
async def test_an_answer_writing_its_slashes_escaped_is_believed_whichever_text_was_signed(
    world: World, monkeypatch: pytest.MonkeyPatch, provider_key: rsa.RSAPrivateKey,
    signed_as_sent: bool,
) -> None:
    # a precreate's qr_code arrives as https:\/\/qr.alipay.com\/...; Alipay's PHP SDK checks
    # the signature over the text as sent, then with the slashes unescaped
    def escaped(method: str, section: Mapping[str, object]) -> web.Response:
        plain = json.dumps(section, ensure_ascii=False, separators=(",", ":"))
        sent = plain.replace("/", "\\/")
        sign = sign_sha256_rsa(provider_key, (sent if signed_as_sent else plain).encode())
        body = f'{{"{wire.response_key(method)}":{sent},"sign":"{sign}"}}'
        return web.Response(text=body, content_type="application/json")

    monkeypatch.setattr(world.fake, "_answer", escaped)
    checkout = await world.provider.start_payment(PaymentRequest(
        payment_id=7, order_id=70, amount=1999, currency="CNY", description="order 70",
        deadline=2_000_000_000.0, channel="qr"))
    assert checkout.qr_code == "https://qr.alipay.com/fake7"


async def test_an_unsigned_answer_other_than_the_apps_refusal_is_never_believed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "paid", unsigned, as anyone on the way could answer it: no answer, asked again
    await world.start()
    await world.fake.pay("7", notify=False)

    def unsigned(method: str, section: Mapping[str, object]) -> web.Response:
        body = json.dumps({wire.response_key(method): section}).encode()
        return web.Response(body=body, content_type="application/json")

    monkeypatch.setattr(world.fake, "_answer", unsigned)
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    not_believed = r"the answer to alipay\.trade\.query is not signed"
    with pytest.raises(GatewayError, match=not_believed) as failed:
        await world.provider.query_payment(ref)
    assert not isinstance(failed.value, GatewayRefused)


def test_keys_are_read_as_pem_or_as_alipays_bare_base64(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey
) -> None:
    pkcs1 = merchant_key.private_bytes(serialization.Encoding.DER,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())
    spki = provider_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "app.txt").write_text(base64.b64encode(pkcs1).decode() + "\n")
    (tmp_path / "alipay.txt").write_text("  " + base64.b64encode(spki).decode() + "\n")
    provider = AlipayProvider.from_files(
        app_id=APP_ID, private_key_file=str(tmp_path / "app.txt"),
        public_key_file=str(tmp_path / "alipay.txt"), notify_url="http://127.0.0.1/n")
    assert provider.app_id == APP_ID


@pytest.mark.parametrize(
    ("app_id", "private", "public", "says"),
    [
        (None, "app.pem", "alipay.pem", "--alipay-app-id is required"),
        (APP_ID, None, "alipay.pem", "--alipay-private-key-file is required"),
        (APP_ID, "missing.pem", "alipay.pem", "--alipay-private-key-file"),
        (APP_ID, "app.pem", "garbage.pem", "--alipay-public-key-file"),
    ],
)
def test_a_provider_without_readable_credentials_refuses_in_one_line(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey,
    app_id: str | None, private: str | None, public: str, says: str,
) -> None:
    write_keys(tmp_path, merchant_key, merchant_key)
    (tmp_path / "app.pem").write_bytes((tmp_path / "private.pem").read_bytes())
    (tmp_path / "alipay.pem").write_bytes((tmp_path / "public.pem").read_bytes())
    (tmp_path / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    with pytest.raises(ConfigurationError) as error:
        AlipayProvider.from_files(
            app_id=app_id, private_key_file=str(tmp_path / private) if private else None,
            public_key_file=str(tmp_path / public), notify_url="http://127.0.0.1/n")
    assert says in str(error.value) and "\n" not in str(error.value)


async def test_a_trade_open_at_the_deadline_is_closed_and_can_no_longer_be_paid(
    world: World,
) -> None:
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    assert await world.provider.close_payment(ref) is None  # never opened: TRADE_NOT_EXIST
    await world.start()

    assert await world.provider.close_payment(ref) == PaymentClosed("TRADE_CLOSED")
    assert await world.provider.query_payment(ref) == PaymentClosed("TRADE_CLOSED")
    with pytest.raises(Unpayable):
        await world.fake.pay("7")
    assert await world.provider.close_payment(ref) is None  # closed already: no error


async def test_a_trade_paid_before_the_close_stays_paid(world: World) -> None:
    await world.start()
    await world.fake.pay("7", notify=False)
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")

    assert await world.provider.close_payment(ref) is None  # TRADE_STATUS_ERROR
    assert isinstance(await world.provider.query_payment(ref), PaymentPaid)


async def test_a_signed_notification_of_no_amount_of_yuan_is_refused_as_a_wrong_amount(
    world: World,
) -> None:
    # authentic, so not the malformed noise anyone sends: the shop warns of it
    await world.start(amount=1999)
    await world.fake.pay("7", notify=False)
    for amount in ("19.991", "19.990"):
        body = world.fake.notification("7", total_amount=amount)
        verdict = await world.provider.verify_callback(body, {}, time.time())
        assert isinstance(verdict, Refused) and verdict.reason == WRONG_AMOUNT, amount
        assert amount in verdict.detail


async def test_a_query_answering_paid_in_no_amount_of_yuan_is_refused_as_a_wrong_amount(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it raised GatewayError, an outage to ask about again for ever
    await world.start(amount=1999)
    await world.fake.pay("7", notify=False)
    answered = world.fake._query

    def three_decimals(params: Mapping[str, str], biz: Mapping[str, object]) -> dict[str, object]:
        return answered(params, biz) | {"total_amount": "19.990"}

    monkeypatch.setattr(world.fake, "_query", three_decimals)
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")

    refused = await world.provider.query_payment(ref)

    assert isinstance(refused, PaymentPaidRefused) and refused.reason == WRONG_AMOUNT
    assert "19.990" in refused.detail


async def plain_page(request: web.Request) -> web.Response:
    """A page of somebody's in front of the gateway, no answer of Alipay's."""
    return web.Response(text="<html>portal</html>", content_type="text/html")


async def busy(request: web.Request) -> web.Response:
    return web.Response(status=409, text="conflict")


@pytest.mark.parametrize(
    ("path", "refused"),
    [("/gateway.dp", True), ("/busy", False), ("/portal", False)],
    ids=["404 of a mistyped path", "409 not now", "200 no answer of Alipay's"],
)
async def test_an_http_4xx_without_alipays_answer_is_a_refusal_on_every_call(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey,
    path: str, refused: bool,
) -> None:
    # a mistyped --alipay-url answered 404 was taken for an outage: "try again" (503)
    fake = FakeAlipay(app_id=APP_ID, app_public_key=merchant_key.public_key(), key=provider_key)
    fake.app.router.add_post("/busy", busy)
    fake.app.router.add_post("/portal", plain_page)
    await fake.start()
    private_file, public_file = write_keys(tmp_path, merchant_key, provider_key)
    provider = AlipayProvider.from_files(
        app_id=APP_ID, private_key_file=private_file, public_key_file=public_file,
        notify_url="http://127.0.0.1/n", url=fake.url + path, timeout_s=0.5,
    )
    ref = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: provider.start_payment(PaymentRequest(
            payment_id=7, order_id=70, amount=1999, currency="CNY", description="order 70",
            deadline=2_000_000_000.0, channel="qr")),
        lambda: provider.query_payment(ref),
        lambda: provider.close_payment(ref),
        lambda: provider.refund(refund_of(7)),
        lambda: provider.query_refund(refund_of(7)),
    ]
    try:
        for call in calls:
            with pytest.raises(GatewayError) as failed:
                await call()
            assert isinstance(failed.value, GatewayRefused) is refused, failed.value
    finally:
        await provider.close()
        await fake.close()
