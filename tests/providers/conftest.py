"""Fixtures of the shop on each provider's fake: a virtual clock that starts at the real time
(the providers sign with real timestamps, checked within minutes of now) and the worlds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

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
