"""WeChat Pay answers the shop cannot believe or read: each is no answer (a GatewayError, asked
again: 503 for a payment start), never a crash (500); and a 4xx WeChat Pay did not sign (its
401 to a request whose signature it could not verify, a 404 of a mistyped URL) is a refusal
(502), as a signed one is.

The platform here writes its answers as raw bytes, signed with the platform key over exactly
those bytes: aiohttp's server, which the fakes use, cannot send a header byte that is not
UTF-8 (it drops it), and aiohttp's client hands one on as a surrogate."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments import wechatpay_wire as wire
from shopkeep.payments.keys import sign_sha256_rsa
from shopkeep.payments.provider import (
    GatewayError,
    GatewayRefused,
    PaymentRef,
    PaymentRequest,
    RefundRequest,
)
from shopkeep.payments.wechatpay import WeChatPayProvider

MCH_ID = "1900000001"
APP_ID = "wx0000000000000001"
APIV3_KEY = b"0123456789abcdef0123456789abcdef"
CODE_URL = b'{"code_url":"weixin://wxpay/bizpayurl?pr=raw7"}'
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class RawPlatform:
    """WeChat Pay's API on 127.0.0.1 answering every request with the reply set last
    (:meth:`answer`), as raw bytes."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self._reply = b""
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def answer(
        self, status: int, body: bytes, *, timestamp: bytes | None = None,
        nonce: bytes = b"5K8264ILTKCH16CQ2502SI8ZNMTM67VS", signed: bool = True,
    ) -> None:
        """Answer ``status`` and ``body`` from now on, with ``Wechatpay-*`` headers of these
        bytes, the platform's signature covering them as they are (none if not ``signed``)."""
        timestamp = timestamp or str(int(time.time())).encode()
        message = timestamp + b"\n" + nonce + b"\n" + body + b"\n"
        headers = {
            wire.TIMESTAMP.encode(): timestamp,
            wire.NONCE.encode(): nonce,
            wire.SIGNATURE.encode(): sign_sha256_rsa(self._key, message).encode(),
            wire.SERIAL.encode(): b"PUB_KEY_ID_0000000000000001",
        } if signed else {}
        headers |= {
            b"Content-Type": b"application/json",
            b"Content-Length": str(len(body)).encode(),
            b"Connection": b"close",
        }
        lines = [b"HTTP/1.1 %d Answer" % status, *(k + b": " + v for k, v in headers.items())]
        self._reply = b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = _LENGTH.search(head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(self._reply)
        await writer.drain()
        writer.close()


@pytest.fixture
async def platform(provider_key: rsa.RSAPrivateKey) -> AsyncIterator[RawPlatform]:
    made = RawPlatform(provider_key)
    await made.start()
    yield made
    await made.close()


@pytest.fixture
async def provider(
    platform: RawPlatform, merchant_key: rsa.RSAPrivateKey, provider_key: rsa.RSAPrivateKey
) -> AsyncIterator[WeChatPayProvider]:
    made = WeChatPayProvider(
        mch_id=MCH_ID, app_id=APP_ID, private_key=merchant_key, cert_serial="5157F09E",
        apiv3_key=APIV3_KEY, platform_keys=[provider_key.public_key()],
        notify_url="http://127.0.0.1/v1/payments/wechatpay/notify", url=platform.url,
        timeout_s=2.0,
    )
    yield made
    await made.close()


START = PaymentRequest(payment_id=7, order_id=70, amount=1999, currency="CNY",
                       description="order 70", deadline=2_000_000_000.0)


async def no_answer(provider: WeChatPayProvider) -> GatewayError:
    """The payment start's error, which must be an outage, not a refusal."""
    with pytest.raises(GatewayError) as failed:
        await provider.start_payment(START)
    assert not isinstance(failed.value, GatewayRefused), failed.value
    return failed.value


async def test_the_raw_platform_is_believed_when_its_headers_are_wechat_pays(
    platform: RawPlatform, provider: WeChatPayProvider
) -> None:
    platform.answer(200, CODE_URL)
    checkout = await provider.start_payment(START)
    assert checkout.code_url == "weixin://wxpay/bizpayurl?pr=raw7"


@pytest.mark.parametrize("header", ["nonce", "timestamp"])
async def test_an_answer_whose_signed_header_holds_a_byte_that_is_not_utf8_is_no_answer(
    platform: RawPlatform, provider: WeChatPayProvider, header: str
) -> None:
    # the byte reached the signed message's encoding as a surrogate: UnicodeEncodeError, a 500
    if header == "nonce":
        platform.answer(200, CODE_URL, nonce=b"5K8264ILTKCH16CQ\xff2502SI8ZNMTM67V")
    else:
        platform.answer(200, CODE_URL, timestamp=str(int(time.time())).encode() + b"\xff")
    failed = await no_answer(provider)
    assert "not signed by WeChat Pay" in str(failed)


@pytest.mark.parametrize("body", [
    b"{}", b'{"code_url": ""}', b'{"code_url": 7}', b'{"prepay_id": "wx201410272009395522"}',
    b"[]", b"not json", b"",
])
async def test_a_signed_200_without_a_code_url_is_no_answer_not_a_refusal(
    platform: RawPlatform, provider: WeChatPayProvider, body: bytes
) -> None:
    # docs/payments.md: a provider that does not answer is 503, one that refuses (a 4xx) 502
    platform.answer(200, body)
    await no_answer(provider)


async def test_a_signed_4xx_to_a_payment_start_is_a_refusal(
    platform: RawPlatform, provider: WeChatPayProvider
) -> None:
    platform.answer(400, b'{"code":"PARAM_ERROR","message":"total"}')
    with pytest.raises(GatewayRefused, match="PARAM_ERROR"):
        await provider.start_payment(START)


SIGN_ERROR = b'{"code":"SIGN_ERROR","message":"signature verification failed"}'
NOT_FOUND_PAGE = b"<html><body>404 Not Found</body></html>"


@pytest.mark.parametrize(("status", "body"), [(401, SIGN_ERROR), (404, NOT_FOUND_PAGE)])
async def test_an_unsigned_4xx_is_a_refusal_with_its_words(
    platform: RawPlatform, provider: WeChatPayProvider, status: int, body: bytes
) -> None:
    # WeChat Pay signs no answer to a request whose signature it could not verify (a wrong
    # merchant key or certificate serial): asking again would be refused again, unseen
    platform.answer(status, body, signed=False)
    with pytest.raises(GatewayRefused, match=f"not signed by WeChat Pay \\({status}\\)") as no:
        await provider.start_payment(START)
    assert body[:20].decode() in str(no.value)
    with pytest.raises(GatewayRefused):
        await provider.refund(RefundRequest(refund_id=8, payment_id=7, amount=1999,
                                            currency="CNY", payment_amount=1999))


@pytest.mark.parametrize("status", [200, 408, 409, 429])
async def test_an_unsigned_answer_that_is_not_a_no_is_no_answer(
    platform: RawPlatform, provider: WeChatPayProvider, status: int
) -> None:
    # a request that timed out, a conflict, rate limiting: "not now", tried again
    platform.answer(status, CODE_URL if status == 200 else SIGN_ERROR, signed=False)
    await no_answer(provider)


@pytest.mark.parametrize("status", [408, 409])
async def test_a_signed_answer_that_is_not_a_no_is_no_answer_to_every_call(
    platform: RawPlatform, provider: WeChatPayProvider, status: int
) -> None:
    # signed, a request that timed out or a conflict was a refusal: the payment start a 502,
    # the refund a "provider refused" in the history, where an outage is asked again
    platform.answer(status, b'{"code":"FREQUENCY_LIMITED","message":"slow down"}')
    refund = RefundRequest(refund_id=8, payment_id=7, amount=1999, currency="CNY",
                           payment_amount=1999)
    payment = PaymentRef(payment_id=7, order_id=70, amount=1999, currency="CNY")
    await no_answer(provider)
    for call in (provider.refund(refund), provider.query_refund(refund),
                 provider.query_payment(payment), provider.close_payment(payment)):
        with pytest.raises(GatewayError, match=f"{status} FREQUENCY_LIMITED") as failed:
            await call

        assert not isinstance(failed.value, GatewayRefused), failed.value
