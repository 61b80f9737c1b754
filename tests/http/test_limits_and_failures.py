"""Sizes, load, bugs and request ids: what the client gets when the answer is not a success."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from shopkeep.errors import ShopError
from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.runtime import (
    AskTimeout,
    Overloaded,
    RuntimeConfig,
    ShuttingDown,
    VirtualClock,
    current_trace,
)
from shopkeep.shop import Shop
from shopkeep.store.errors import CommitFailed
from tests.http.conftest import ADMIN, Api


@pytest.fixture
def config() -> HttpConfig:
    return HttpConfig(admin_token="test-admin-token", max_body_bytes=1024)


async def test_a_body_announced_too_large_is_refused_413_unread(api: Api) -> None:
    big = b'{"name": "' + b"x" * 2000 + b'", "price": 1, "stock": 1}'
    refused = await api.call("POST", "/v1/goods", ADMIN, data=big)
    assert (refused.status, refused.body["code"]) == (413, "payload_too_large")
    assert (await api.call("GET", "/v1/goods", ADMIN)).body["items"] == []


async def test_a_chunked_body_too_large_is_refused_413_too(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'", "price": 1, "stock": 1}'

    async with api.client.post("/v1/goods", headers=ADMIN, data=chunks()) as response:
        assert response.status == 413
        assert (await response.json(content_type=None))["code"] == "payload_too_large"
    assert (await api.call("GET", "/v1/goods", ADMIN)).body["items"] == []


async def test_a_body_within_the_limit_is_served(api: Api) -> None:
    assert len(await api.goods()) > 0


@pytest.mark.parametrize(
    ("error", "code", "retry_after"),
    [
        (Overloaded("mailbox full", retry_after=2.5), "overloaded", "3"),
        (ShuttingDown("stopping", retry_after=5.0), "unavailable", "5"),
        (AskTimeout("no answer"), "unavailable", "1"),
        (ShopError("overloaded", "stock actor busy", order_id=12), "overloaded", "1"),
        (ShopError("unavailable", "stock actor failed", order_id=12), "unavailable", "1"),
        # the store locked past its busy timeout, or its writer process gone mid-batch
        (CommitFailed("commit failed: database is locked"), "unavailable", "1"),
    ],
)
async def test_load_answers_503_with_retry_after(
    api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, code: str, retry_after: str
) -> None:
    alice = await api.customer()
    tea = await api.goods()

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(api.shop, "place_order", refuse)
    refused = await api.call(
        "POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 1}]}
    )
    assert (refused.status, refused.body["code"]) == (503, code)
    assert refused.headers["Retry-After"] == retry_after
    assert not any(
        word in refused.body["detail"] for word in ("mailbox", "no answer", "database")
    )
    if isinstance(error, ShopError):
        assert refused.body["order_id"] == "12"


async def test_a_full_runtime_answers_503_overloaded_with_its_retry_after(
    aiohttp_client: AiohttpClient, tmp_path: Path, clock: VirtualClock, config: HttpConfig
) -> None:
    full = RuntimeConfig(max_in_flight=0, overload_retry_after_s=2.0)  # not one message fits
    async with Shop.open(
        str(tmp_path / "full.db"), gateway="sandbox", clock=clock, runtime_config=full
    ) as shop:
        client = await aiohttp_client(make_app(shop, config))
        async with client.get("/v1/goods/1", headers=ADMIN) as refused:
            assert refused.status == 503
            assert (await refused.json(content_type=None))["code"] == "overloaded"
            assert refused.headers["Retry-After"] == "2"


async def test_a_bug_answers_500_without_its_traceback_and_logs_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.shop, "list_goods", broken)
    with structlog.testing.capture_logs() as logs:
        failed = await api.call("GET", "/v1/goods", ADMIN)
    assert (failed.status, failed.body["code"]) == (500, "internal_error")
    assert "secret" not in str(failed.body) and "Traceback" not in str(failed.body)
    [logged] = [line for line in logs if line["event"] == "http_internal_error"]
    assert logged["path"] == "/v1/goods" and logged["exc_info"] is True


async def test_a_sane_request_id_is_kept_and_reaches_the_logs_and_the_actors(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str | None, Any]] = []
    get_goods = api.shop.get_goods

    async def traced(goods_id: int) -> Any:
        seen.append((current_trace.get(), structlog.contextvars.get_contextvars()["request_id"]))
        return await get_goods(goods_id)

    tea = await api.goods()
    monkeypatch.setattr(api.shop, "get_goods", traced)
    answer = await api.call("GET", f"/v1/goods/{tea}", {**ADMIN, "X-Request-Id": "req-42"})
    assert answer.headers["X-Request-Id"] == "req-42"
    assert seen == [("req-42", "req-42")]
    assert current_trace.get() is None


@pytest.mark.parametrize("given", ["", "x" * 129, "bad id", "é"])
async def test_an_insane_request_id_is_replaced_by_a_fresh_one(api: Api, given: str) -> None:
    answer = await api.call("GET", "/healthz", {"X-Request-Id": given})
    assert answer.headers["X-Request-Id"] != given
    assert len(answer.headers["X-Request-Id"]) == 32


async def test_problems_carry_the_request_id_too(api: Api) -> None:
    answer = await api.call("GET", "/v1/goods", {"X-Request-Id": "req-401"})
    assert (answer.status, answer.headers["X-Request-Id"]) == (401, "req-401")


async def sandbox_complete(request: web.Request) -> web.Response:
    return web.Response(status=202)


SANDBOX_ROUTE = web.post("/sandbox/payments/{payment_id}/complete", sandbox_complete)


@pytest.mark.parametrize("sandbox", [True, False])
async def test_the_sandbox_route_is_mounted_and_documented_only_in_sandbox_mode(
    aiohttp_client: AiohttpClient, shop: Shop, sandbox: bool
) -> None:
    config = HttpConfig(admin_token="t", sandbox=sandbox)
    client = await aiohttp_client(make_app(shop, config, extra_routes=[SANDBOX_ROUTE]))
    completed = await client.post("/sandbox/payments/1/complete", json={"result": "failed"})
    assert completed.status == (202 if sandbox else 404)
    document = await (await client.get("/openapi.json")).json()
    assert ("/sandbox/payments/{payment_id}/complete" in document["paths"]) is sandbox


async def test_extra_middlewares_see_every_answer_with_its_final_status(
    aiohttp_client: AiohttpClient, shop: Shop, config: HttpConfig
) -> None:
    statuses: list[int] = []

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        statuses.append(response.status)
        return response

    client = await aiohttp_client(make_app(shop, config, middlewares=[count]))
    await client.get("/v1/goods")
    await client.get("/healthz")
    assert statuses == [401, 200]


@pytest.mark.parametrize(
    "name", ["a\x00b", "\x1b[31mred", "tab\there", "del\x7f", "c1\x85", "eve\n"]
)
async def test_a_name_with_a_control_character_is_refused_422(api: Api, name: str) -> None:
    refused = await api.call("POST", "/v1/goods", ADMIN, {"name": name, "price": 1, "stock": 1})

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert refused.body["errors"][0]["pointer"] == "/name"
