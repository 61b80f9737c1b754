"""The HTTP bench's bare baselines: the plain one answers at once, the waiting one after the
wait it is given, both with the same order-sized 201."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from shopkeep.bench import http_overhead
from shopkeep.bench.generators import ORDERS_PATH

BODY = {"items": [{"goods_id": "7", "quantity": 2}]}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the bare handler asks for, recorded instead of slept."""
    asked: list[float] = []

    async def recorded(delay: float) -> None:
        asked.append(delay)

    monkeypatch.setattr(asyncio, "sleep", recorded)  # the module the bare handler calls it in
    return asked


async def placed(aiohttp_client: AiohttpClient, wait_s: float) -> dict[str, Any]:
    client = await aiohttp_client(http_overhead.bare_app(wait_s))
    response = await client.post(ORDERS_PATH, json=BODY)
    assert response.status == 201
    answer: dict[str, Any] = await response.json()
    return answer


async def test_the_bare_baseline_answers_without_waiting(
    aiohttp_client: AiohttpClient, sleeps: list[float]
) -> None:
    answer = await placed(aiohttp_client, 0.0)

    assert sleeps == []
    assert answer["items"] == [{"goods_id": "7", "quantity": 2, "unit_price": http_overhead.PRICE}]


async def test_the_waiting_baseline_waits_as_long_as_told_before_it_answers_the_same(
    aiohttp_client: AiohttpClient, sleeps: list[float]
) -> None:
    answer = await placed(aiohttp_client, 0.003)

    assert sleeps == [0.003]
    assert answer["items"] == [{"goods_id": "7", "quantity": 2, "unit_price": http_overhead.PRICE}]
    assert answer["status"] == "awaiting_payment"
