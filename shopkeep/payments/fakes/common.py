"""What every local fake provider shares: a server on 127.0.0.1, failure switches for refunds,
the books of refunds received, and notifications delivered with retries.

A fake is told what to do by its owner (a test, the proof harness): :meth:`FakeServer.fail_refunds`
makes the next refund calls answer 500, :meth:`FakeServer.hang_refunds` makes them never answer
(the client times out), and each fake's ``pay`` makes the customer pay and the provider notify,
retrying until the shop acknowledges, like the provider (its documented schedule, with a
provider's minute a millisecond).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web

HOST: Final = "127.0.0.1"
"""Fakes listen on loopback only."""
TIME_SCALE: Final = 1 / 60_000
"""The fakes' clock for notification retries: a provider's minute is a millisecond here."""


@dataclass
class FakeRefund:
    """A refund the fake made: the payment it refunded, how much, the idempotency key."""

    key: str
    payment: str
    amount: int
    provider_id: str


@dataclass
class Delivery:
    """One notification's delivery: how many tries, and whether the shop acknowledged it."""

    attempts: int = 0
    acknowledged: bool = False
    answers: list[int] = field(default_factory=list)


class Unpayable(Exception):
    """The customer tried to pay a payment the provider closed (or canceled): it refuses."""


Acknowledges = Callable[[int, bytes], bool]
"""Whether an HTTP answer (status, body) acknowledges a notification, by the provider's rule."""


class FakeServer:
    """An aiohttp app on 127.0.0.1 (port chosen by the OS) with the shared switches and books."""

    name = "fake"
    schedule: tuple[float, ...] = (0.0, 60.0, 600.0)
    """The provider's pauses before each try of a notification, in its seconds (the first try
    at once); each fake sets its provider's documented schedule."""

    def __init__(self, *, time_scale: float = TIME_SCALE) -> None:
        self.app = web.Application()
        self.url = ""
        self.retries = tuple(pause * time_scale for pause in self.schedule)
        """The pauses on this fake's clock."""
        self.refunds: dict[str, FakeRefund] = {}
        """Idempotency key -> the refund made under it (a repeat adds nothing here)."""
        self.refund_calls: list[str] = []
        """Every refund call's idempotency key, repeats and failed ones included."""
        self._failing = 0
        self._hanging = 0
        self._released = asyncio.Event()
        self.refund_arrived = asyncio.Event()
        """Set by each refund call as it arrives (clear it to await the next one)."""
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def start(self) -> str:
        """Listen on 127.0.0.1; the base URL (``http://127.0.0.1:<port>``)."""
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.url = f"http://{HOST}:{port}"
        return self.url

    async def close(self) -> None:
        """Release hanging calls and stop the server and the notification client."""
        self._released.set()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def next_id(self, prefix: str) -> str:
        """A new provider-side id (``prefix`` + a counter)."""
        return f"{prefix}{next(self._ids):08d}"

    # -- refund switches ------------------------------------------------------------------------

    def fail_refunds(self, times: int = 1) -> None:
        """The next ``times`` refund calls answer 500 and refund nothing."""
        self._failing += times

    def hang_refunds(self, times: int = 1) -> None:
        """The next ``times`` refund calls never answer (until the fake closes)."""
        self._hanging += times

    async def refund_gate(self, key: str) -> web.Response | None:
        """Called first by each fake's refund route: records the call, then answers 500, hangs,
        or lets the refund go on (None)."""
        self.refund_calls.append(key)
        self.refund_arrived.set()
        if self._hanging:
            self._hanging -= 1
            await self._released.wait()
            return web.Response(status=503)
        if self._failing:
            self._failing -= 1
            return web.json_response({"code": "SYSTEM_ERROR", "message": "fake"}, status=500)
        return None

    def record_refund(self, key: str, payment: str, amount: int, prefix: str) -> FakeRefund:
        """The refund under ``key``: made now, or the one made before (idempotency)."""
        refund = self.refunds.get(key)
        if refund is None:
            refund = self.refunds[key] = FakeRefund(key, payment, amount, self.next_id(prefix))
        return refund

    def close_refund(self, key: str) -> None:
        """Close the refund made under ``key`` unpaid, as a provider does to one it could not
        pay out (WeChat Pay's CLOSED, Stripe's canceled): its amount is the payment's again,
        and this fake's answers about it say it is closed."""
        self.closed(self.refunds.pop(key))

    def closed(self, refund: FakeRefund) -> None:
        """Make this fake's answers about ``refund`` say it is closed (each provider's word);
        a provider that closes no refund (Alipay) raises."""
        raise NotImplementedError(f"{self.name} closes no refund")

    def refunded(self, payment: str) -> int:
        """Everything refunded of ``payment``."""
        return sum(r.amount for r in self.refunds.values() if r.payment == payment)

    # -- notifications --------------------------------------------------------------------------

    async def deliver(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]],
        acknowledges: Acknowledges,
    ) -> Delivery:
        """POST ``body`` to ``url`` until acknowledged or the schedule runs out.

        ``headers`` may be a function, called afresh on each try (a scheme that signs the time
        of sending signs each try anew).
        """
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        delivery = Delivery()
        for pause in self.retries:
            if pause:
                await asyncio.sleep(pause)
            delivery.attempts += 1
            sent = headers() if callable(headers) else headers
            try:
                async with self._client.post(url, data=body, headers=dict(sent)) as response:
                    answer = await response.read()
                    delivery.answers.append(response.status)
                    if acknowledges(response.status, answer):
                        delivery.acknowledged = True
                        return delivery
            except (TimeoutError, aiohttp.ClientError):
                delivery.answers.append(0)
        return delivery
