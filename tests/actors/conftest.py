"""Fixtures of the order tests: the order harness on a real SQLite file, on a virtual clock.

(The asset tests define their own ``shop`` fixture, which takes precedence in their module.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shopkeep.runtime import VirtualClock
from tests.actors.order_shop import Shop, open_shop


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def shop(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[Shop]:
    async with open_shop(tmp_path / "shop.db", clock) as shop:
        yield shop
