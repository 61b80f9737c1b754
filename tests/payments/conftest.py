"""Fixtures of the payment-provider tests: RSA key pairs made once per run, and a receiver
that plays the shop's notification route in front of a provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments.fakes.common import FakeServer
from shopkeep.payments.keys import private_pem, public_pem
from shopkeep.payments.provider import (
    GatewayError,
    GatewayRefused,
    PaymentProvider,
    RefundClosed,
    RefundDone,
    RefundMissing,
    RefundRequest,
    Refused,
    Verdict,
)

NOT_IDS = ("07", " 7", "+7", "7_0", "99999999999999999999", "x")
"""Texts that are no id as the shop writes ids (another spelling of 7, or past 64 bits):
what a notification naming a payment or an order by one of them names nothing."""


def new_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (the size both Chinese providers use)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def merchant_key() -> rsa.RSAPrivateKey:
    """The shop's own key (Alipay's app key, WeChat Pay's merchant API key)."""
    return new_key()


@pytest.fixture(scope="session")
def provider_key() -> rsa.RSAPrivateKey:
    """The provider's key (Alipay's, WeChat Pay's platform key): its fake signs with it."""
    return new_key()


@pytest.fixture(scope="session")
def forger_key() -> rsa.RSAPrivateKey:
    """Somebody else's key."""
    return new_key()


def write_keys(
    tmp_path: Path, private: rsa.RSAPrivateKey, public: rsa.RSAPrivateKey
) -> tuple[str, str]:
    """PEM files of ``private`` and of ``public``'s public half."""
    private_file, public_file = tmp_path / "private.pem", tmp_path / "public.pem"
    private_file.write_bytes(private_pem(private))
    public_file.write_bytes(public_pem(public.public_key()))
    return str(private_file), str(public_file)


class Receiver:
    """The shop's notification route for one provider, on 127.0.0.1: verifies what arrives,
    keeps every verdict, and answers as the provider expects (refused ones refused; the first
    ``refuse_next`` authentic ones refused too, to make the provider retry)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.provider: PaymentProvider | None = None
        self.verdicts: list[Verdict] = []
        self.arrived: asyncio.Queue[Verdict] = asyncio.Queue()
        self.refuse_next = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.url = f"http://127.0.0.1:{port}{self.path}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.provider is not None, "set the provider before notifications arrive"
        verdict = await self.provider.verify_callback(
            await request.read(), request.headers, time.time()
        )
        self.verdicts.append(verdict)
        self.arrived.put_nowait(verdict)
        handled = not isinstance(verdict, Refused)
        if handled and self.refuse_next:
            self.refuse_next -= 1
            handled = False
        answer = self.provider.answer(handled, getattr(verdict, "detail", ""))
        return web.Response(status=answer.status, body=answer.body,
                            content_type=answer.content_type)


@pytest.fixture
async def receiver_of() -> AsyncIterator[Callable[[str], Awaitable[Receiver]]]:
    """Start a receiver on a route (closed after the test)."""
    made: list[Receiver] = []

    async def start(path: str) -> Receiver:
        receiver = Receiver(path)
        made.append(receiver)
        await receiver.start()
        return receiver

    yield start
    for receiver in made:
        await receiver.close()


async def assert_refund_made_once(
    provider: PaymentProvider,
    fake: FakeServer,
    refund: RefundRequest,
    other: RefundRequest,
    paid: str,
    key: str,
) -> None:
    """Asked twice, ``refund`` is made once, under the provider's idempotency ``key``, of the
    payment known to the fake as ``paid``; a query finds it, and finds no ``other`` refund."""
    assert await provider.refund(refund) == RefundDone()
    assert await provider.refund(refund) == RefundDone()
    assert list(fake.refunds) == [key]
    assert fake.refund_calls == [key, key]
    assert fake.refunded(paid) == refund.amount
    assert await provider.query_refund(refund) == RefundDone()
    assert await provider.query_refund(other) == RefundMissing()


async def assert_closed_refund_sent_again(
    provider: PaymentProvider, fake: FakeServer, refund: RefundRequest, paid: str, said: str
) -> None:
    """A refund the provider closed unpaid (saying ``said``) is closed to a query and to the
    same request again; sent again as the next issue, under the refund id and ``-1``, it is a
    new refund, which a query finds done. The money moves once, by the second."""
    assert await provider.refund(refund) == RefundDone()
    fake.close_refund(refund.key)
    assert fake.refunded(paid) == 0
    assert await provider.query_refund(refund) == RefundClosed(said)
    assert await provider.refund(refund) == RefundClosed(said)  # its key names it for good
    again = msgspec.structs.replace(refund, issue=1)
    assert again.key == f"{refund.refund_id}-1"
    assert await provider.refund(again) == RefundDone()
    assert await provider.query_refund(again) == RefundDone()
    assert list(fake.refunds) == [again.key]
    assert fake.refunded(paid) == refund.amount


async def assert_refund_failures_retryable(
    provider: PaymentProvider, fake: FakeServer, refund: RefundRequest, paid: str
) -> None:
    """A refund the provider answers 500 to, or never answers, raises a GatewayError to retry
    (not a refusal) and moves no money; the next try makes it."""
    fake.fail_refunds(1)
    with pytest.raises(GatewayError) as failed:
        await provider.refund(refund)
    assert not isinstance(failed.value, GatewayRefused)
    fake.hang_refunds(1)
    with pytest.raises(GatewayError) as hung:
        await provider.refund(refund)
    assert not isinstance(hung.value, GatewayRefused)
    assert fake.refunds == {}
    assert await provider.refund(refund) == RefundDone()
    assert fake.refunded(paid) == refund.amount
