"""Alipay's and WeChat Pay's wire formats held to the providers' own SDKs.

shopkeep's provider code and its fakes were written together: a misreading of a signing rule
could live in both and pass every other test. Here the SDKs a merchant would use are the
judges, signing and verifying as the providers' servers do: Ant's ``alipay-sdk-python`` and
``wechatpayv3``. Every request shopkeep signs is signed the same by the SDK; every answer and
notification the fakes sign verifies with it. (Stripe's webhooks are verified by Stripe's own
SDK inside shopkeep.)
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import wechatpayv3.utils as wechatpay_sdk
from aiohttp import web
from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa2, verify_with_rsa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from wechatpayv3.core import Core

from shopkeep.payments import alipay_wire, wechatpay_wire
from shopkeep.payments.alipay import AlipayProvider
from shopkeep.payments.fakes.alipay import FakeAlipay
from shopkeep.payments.fakes.common import FakeServer
from shopkeep.payments.fakes.wechatpay import PLATFORM_SERIAL, FakeWeChatPay
from shopkeep.payments.keys import private_pem, public_pem
from shopkeep.payments.provider import (
    BAD_SIGNATURE,
    Notice,
    PaymentPaid,
    PaymentProvider,
    PaymentRef,
    PaymentRequest,
    RefundRequest,
    Refused,
)
from shopkeep.payments.wechatpay import WeChatPayProvider
from tests.payments.conftest import write_keys

ALIPAY_APP_ID = "2021000000000001"
MCH_ID = "1900000001"
WECHAT_APP_ID = "wx0000000000000001"
CERT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
APIV3_KEY = "0123456789abcdef0123456789abcdef"
SUBJECT = '测试商品 «café» & a=b+c 100% / "quoted" \\ back'
"""A description with what a signing string must not mangle: non-ASCII, &, =, +, %, quotes."""


@dataclass
class Exchange:
    """One request a fake received, and its answer."""

    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes
    answer_headers: dict[str, str]
    answer_body: bytes


def recorded(fake: FakeServer) -> list[Exchange]:
    """Every exchange ``fake`` has from now on (before it starts)."""
    exchanges: list[Exchange] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        answer = await handler(request)
        assert isinstance(answer, web.Response)
        exchanges.append(Exchange(
            request.method, request.raw_path, dict(request.headers), body,
            dict(answer.headers), answer.body if isinstance(answer.body, bytes) else b"",
        ))
        return answer

    fake.app.middlewares.append(record)
    return exchanges


def bare(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """A key as Alipay's console gives it and its SDK takes it: the base64 of its DER, a
    private key as PKCS#1, a public one as SubjectPublicKeyInfo."""
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    else:
        der = key.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def payment(payment_id: int = 7, channel: str = "page") -> PaymentRequest:
    return PaymentRequest(payment_id=payment_id, order_id=70, amount=1999, currency="CNY",
                          description=SUBJECT, deadline=time.time() + 900,
                          channel=channel)  # type: ignore[arg-type]


REF = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
REFUND = RefundRequest(refund_id=31, payment_id=7, amount=500, currency="CNY",
                       payment_amount=1999)


async def every_call(
    provider: PaymentProvider, fake: FakeAlipay | FakeWeChatPay, channel: str = "page"
) -> None:
    """A payment's life at the provider: started, paid, asked about, refunded in part, the
    refund asked about, closed (a paid trade's close is answered, refused or not)."""
    await provider.start_payment(payment(channel=channel))
    await fake.pay("7", notify=False)
    assert isinstance(await provider.query_payment(REF), PaymentPaid)
    await provider.refund(REFUND)
    await provider.query_refund(REFUND)
    await provider.close_payment(REF)


# -- Alipay ---------------------------------------------------------------------------------------


@pytest.fixture
async def alipay(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey
) -> AsyncIterator[tuple[AlipayProvider, FakeAlipay, list[Exchange]]]:
    fake = FakeAlipay(app_id=ALIPAY_APP_ID, app_public_key=merchant_key.public_key(),
                      key=provider_key, time_scale=1e-6)
    exchanges = recorded(fake)
    await fake.start()
    private_file, public_file = write_keys(tmp_path, merchant_key, provider_key)
    provider = AlipayProvider.from_files(
        app_id=ALIPAY_APP_ID, private_key_file=private_file, public_key_file=public_file,
        notify_url="https://shop.example/v1/payments/alipay/notify", url=fake.gateway_url,
        timeout_s=2)
    yield provider, fake, exchanges
    await provider.close()
    await fake.close()


def assert_alipays_sdk_signs_as(
    params: dict[str, str], key: rsa.RSAPrivateKey, unsigned: tuple[str, ...]
) -> None:
    """``params`` carry the signature Ant's SDK makes, and verifies, over the rest of them
    but ``unsigned`` (RSA2 over PKCS#1 v1.5 is deterministic: the same bytes)."""
    content = get_sign_content({k: v for k, v in params.items() if k not in unsigned})
    sign = params["sign"]
    assert sign_with_rsa2(bare(key), content, "utf-8") == sign
    assert verify_with_rsa(bare(key.public_key()), content.encode("utf-8"), sign)


async def test_alipays_sdk_signs_every_request_as_shopkeep_signs_it(
    alipay: tuple[AlipayProvider, FakeAlipay, list[Exchange]], merchant_key: rsa.RSAPrivateKey
) -> None:
    provider, fake, exchanges = alipay
    page = await provider.start_payment(payment())
    assert page.gateway_url is not None
    async with aiohttp.ClientSession() as browser, browser.get(page.gateway_url) as cashier:
        assert cashier.status == 200  # the trade opens at Alipay
    await provider.start_payment(payment(8, channel="qr"))
    await every_call(provider, fake, channel="qr")

    signed = [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.gateway_url).query))]
    signed += [dict(urllib.parse.parse_qsl(ex.body.decode())) for ex in exchanges
               if ex.method == "POST"]
    methods = {params["method"] for params in signed}
    assert methods == {"alipay.trade.page.pay", "alipay.trade.precreate", "alipay.trade.query",
                       "alipay.trade.refund", "alipay.trade.fastpay.refund.query",
                       "alipay.trade.close"}
    for params in signed:
        assert_alipays_sdk_signs_as(params, merchant_key, unsigned=("sign",))
        if params["method"] in ("alipay.trade.page.pay", "alipay.trade.precreate"):
            assert json.loads(params["biz_content"])["subject"] == SUBJECT


async def test_alipays_answers_and_notifications_as_the_fake_signs_them_verify_with_the_sdk(
    alipay: tuple[AlipayProvider, FakeAlipay, list[Exchange]], provider_key: rsa.RSAPrivateKey
) -> None:
    provider, fake, exchanges = alipay
    await every_call(provider, fake, channel="qr")

    for ex in (ex for ex in exchanges if ex.method == "POST"):
        method = dict(urllib.parse.parse_qsl(ex.body.decode()))["method"]
        text = ex.answer_body.decode()
        found = alipay_wire.signed_section(text, alipay_wire.response_key(method))
        assert found is not None, text
        sign = json.loads(text)["sign"]
        assert verify_with_rsa(bare(provider_key.public_key()), found[1].encode(), sign)
    # a notification is signed over all but sign and sign_type, as Alipay's docs and SDKs say
    body = fake.notification("7")
    notified = dict(urllib.parse.parse_qsl(body.decode()))
    assert_alipays_sdk_signs_as(notified, provider_key, unsigned=("sign", "sign_type"))
    verdict = await provider.verify_callback(body, {}, time.time())
    assert isinstance(verdict, Notice) and verdict.payment_id == 7, verdict


async def test_a_notification_the_sdk_did_not_sign_as_alipay_is_refused(
    alipay: tuple[AlipayProvider, FakeAlipay, list[Exchange]], provider_key: rsa.RSAPrivateKey
) -> None:
    provider, fake, _ = alipay
    await provider.start_payment(payment(channel="qr"))
    await fake.pay("7", notify=False)
    notified = dict(urllib.parse.parse_qsl(fake.notification("7").decode()))
    # signed as a request is (sign_type included): not what Alipay signs a notification over
    content = get_sign_content({k: v for k, v in notified.items() if k != "sign"})
    notified["sign"] = sign_with_rsa2(bare(provider_key), content, "utf-8")

    verdict = await provider.verify_callback(
        urllib.parse.urlencode(notified).encode(), {}, time.time()
    )

    assert isinstance(verdict, Refused) and verdict.reason == BAD_SIGNATURE


# -- WeChat Pay -----------------------------------------------------------------------------------


@pytest.fixture
async def wechat(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey
) -> AsyncIterator[tuple[WeChatPayProvider, FakeWeChatPay, list[Exchange]]]:
    fake = FakeWeChatPay(mch_id=MCH_ID, merchant_public_key=merchant_key.public_key(),
                         platform_key=provider_key, apiv3_key=APIV3_KEY.encode())
    exchanges = recorded(fake)
    await fake.start()
    private_file, public_file = write_keys(tmp_path, merchant_key, provider_key)
    (tmp_path / "apiv3.key").write_text(APIV3_KEY + "\n")
    provider = WeChatPayProvider.from_files(
        mch_id=MCH_ID, app_id=WECHAT_APP_ID, private_key_file=private_file,
        cert_serial=CERT_SERIAL, apiv3_key_file=str(tmp_path / "apiv3.key"),
        platform_public_key_file=public_file,
        notify_url="https://shop.example/v1/payments/wechatpay/notify", url=fake.url,
        timeout_s=2)
    yield provider, fake, exchanges
    await provider.close()
    await fake.close()


def merchants_sdk(merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey) -> Core:
    """wechatpayv3's client of the merchant, with WeChat Pay's public key (it asks nothing
    of the network so)."""
    return Core(MCH_ID, CERT_SERIAL, private_pem(merchant_key).decode(), APIV3_KEY,
                public_key=public_pem(provider_key.public_key()).decode(),
                public_key_id=PLATFORM_SERIAL)


async def test_wechat_pays_sdk_writes_every_authorization_as_shopkeep_writes_it(
    wechat: tuple[WeChatPayProvider, FakeWeChatPay, list[Exchange]],
    merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, fake, exchanges = wechat
    await every_call(provider, fake)

    assert len(exchanges) == 5
    for ex in exchanges:
        authorization = ex.headers["Authorization"]
        said = wechatpay_wire.parse_authorization(authorization)
        assert said is not None, authorization
        with monkeypatch.context() as frozen:  # the SDK reads the clock: shopkeep's moment
            frozen.setattr(wechatpay_sdk.time, "time", itertools.repeat(
                float(said["timestamp"])).__next__)
            expected = wechatpay_sdk.build_authorization(
                ex.path_qs, ex.method, MCH_ID, CERT_SERIAL, merchant_key,
                data=ex.body.decode() or None, nonce_str=said["nonce_str"])
        assert authorization == expected
        # and the fake's answer is signed as WeChat Pay signs one
        answer = {k.lower(): v for k, v in ex.answer_headers.items()}
        assert wechatpay_sdk.rsa_verify(
            answer["wechatpay-timestamp"], answer["wechatpay-nonce"],
            ex.answer_body.decode(), answer["wechatpay-signature"], provider_key.public_key())
        assert merchants_sdk(merchant_key, provider_key)._verify_signature(
            ex.answer_headers, ex.answer_body.decode())
    assert SUBJECT in json.loads(exchanges[0].body)["description"]


async def test_wechat_pays_sdk_reads_the_fakes_notification_as_shopkeep_does(
    wechat: tuple[WeChatPayProvider, FakeWeChatPay, list[Exchange]],
    merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey,
) -> None:
    provider, fake, _ = wechat
    await provider.start_payment(payment())
    await fake.pay("7", notify=False)
    body = fake.notification("7")
    headers = fake.headers_for(body)

    event = merchants_sdk(merchant_key, provider_key).callback(headers, body)
    verdict = await provider.verify_callback(body, headers, time.time())

    assert event is not None and event["event_type"] == "TRANSACTION.SUCCESS"
    transaction = event["resource"]
    assert transaction["out_trade_no"] == "7" and transaction["amount"]["total"] == 1999
    assert isinstance(verdict, Notice) and verdict.payment_id == 7
    assert verdict.gateway_txn_id == transaction["transaction_id"]
    tampered = body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCES ")
    assert merchants_sdk(merchant_key, provider_key).callback(headers, tampered) is None
    refused = await provider.verify_callback(tampered, headers, time.time())
    assert isinstance(refused, Refused) and refused.reason == BAD_SIGNATURE
