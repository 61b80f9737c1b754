"""GET /healthz: liveness, answered without touching the runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pytest_aiohttp import AiohttpClient

from shopkeep.http.app import make_app

if TYPE_CHECKING:
    from shopkeep.bootstrap import Runtime


class UnusableRuntime:
    """A runtime with nothing in it: a handler that touched it would fail the test."""

    system = None
    store = None


async def test_healthz_answers_ok(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(make_app(cast("Runtime", UnusableRuntime())))

    response = await client.get("/healthz")

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"status": "ok"}
