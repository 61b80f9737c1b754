"""Fixtures of the shop on each provider's fake: a virtual clock that starts at the real time
(the providers sign with real timestamps, checked within minutes of now) and the worlds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shopkeep.proof.provider_world import ProviderWorld, provider_world
from shopkeep.runtime import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=time.time())


@pytest.fixture
async def alipay(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[ProviderWorld]:
    """The shop on Alipay's fake."""
    async with provider_world("alipay", tmp_path, clock=clock) as made:
        yield made


@pytest.fixture
async def wechatpay(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[ProviderWorld]:
    """The shop on WeChat Pay's fake."""
    async with provider_world("wechatpay", tmp_path, clock=clock) as made:
        yield made


async def past_the_deadline(
    world: ProviderWorld, clock: VirtualClock, order_id: str
) -> dict[str, Any]:
    """The order ``order_id`` once its deadline has passed and the provider answered the
    deadline's questions, or the order's wait for them ran out (a question unanswered is asked
    again while the order waits)."""
    await clock.advance(world.shop.config.order_timeout_s)
    await world.shop.runtime.system.quiet()
    for _ in range(int(world.shop.config.payment_query_grace_s)):
        if (await world.order(order_id))["status"] != "awaiting_payment":
            break
        await clock.advance(1)
        await world.shop.runtime.system.quiet()
    return await world.order(order_id)
