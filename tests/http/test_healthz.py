"""GET /healthz: liveness, answered without a token and without touching the shop."""

from __future__ import annotations

from typing import cast

from pytest_aiohttp import AiohttpClient

from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.shop import Shop


class UnusableShop:
    """A shop with nothing in it: a handler that touched it would fail the test."""

    runtime = None
    system = None
    reader = None


async def test_healthz_answers_ok_without_a_token_or_the_shop(
    aiohttp_client: AiohttpClient,
) -> None:
    app = make_app(cast(Shop, UnusableShop()), HttpConfig(admin_token="unused"))
    client = await aiohttp_client(app)

    response = await client.get("/healthz")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"status": "ok"}
