"""GET /healthz: liveness, answered without a token and without touching the shop's actors or
database; 503 while the store is stuck at one commit."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest
from pytest_aiohttp import AiohttpClient

from shopkeep.http import routes
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.shop import Shop
from tests.http.conftest import Api


class UnusableShop:
    """A shop with nothing in it but its store's busy time: a handler that touched anything
    else would fail the test."""

    runtime = None
    system = None
    reader = None

    def store_busy_s(self) -> float:
        return 0.0


async def test_healthz_answers_ok_without_a_token_or_the_shop(
    aiohttp_client: AiohttpClient,
) -> None:
    app = make_app(cast(Shop, UnusableShop()), HttpConfig(admin_token="unused"))
    client = await aiohttp_client(app)

    response = await client.get("/healthz")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"status": "ok"}


async def test_healthz_answers_503_while_the_store_is_stuck_at_one_commit(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "STALLED_AFTER_S", 0.0)  # any commit under way is "stuck"
    entered, release = threading.Event(), threading.Event()

    def stuck_disk(conn: object) -> None:
        entered.set()
        release.wait(10)

    held = asyncio.ensure_future(api.shop.runtime.store.writer.call(stuck_disk))
    assert await asyncio.to_thread(entered.wait, 10)
    stalled = await api.call("GET", "/healthz", {})
    release.set()
    await held

    assert stalled.status == 503
    assert stalled.body["code"] == "unavailable" and "its disk does not answer" in stalled.body[
        "detail"
    ]
    assert "Retry-After" in stalled.headers
    assert (await api.call("GET", "/healthz", {})).status == 200
