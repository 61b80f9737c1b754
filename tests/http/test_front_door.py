"""The front door stands before every route's handler, not as a middleware: what that keeps and
what it refuses."""

from __future__ import annotations

import pytest
from aiohttp import web
from prometheus_client import generate_latest
from pytest_aiohttp import AiohttpClient

from shopkeep.admin import mount
from shopkeep.http.app import DOOR, make_app
from shopkeep.http.config import HttpConfig
from shopkeep.http.metrics import Metrics
from shopkeep.http.request_ids import HEADER
from shopkeep.shop import Shop
from tests.admin.conftest import console_app
from tests.http.conftest import ADMIN, NONE, Api


def apps_of(app: web.Application) -> list[web.Application]:
    """``app`` and the sub-apps mounted in it."""
    mounted = [resource.get_info().get("app") for resource in app.router.resources()]
    return [app, *(sub for sub in mounted if isinstance(sub, web.Application))]


async def test_the_api_and_its_console_have_no_middleware_for_aiohttp_to_chain(
    shop: Shop,
) -> None:
    app, _ = console_app(shop)
    assert len(apps_of(app)) == 2  # the console is a sub-app
    for each in apps_of(app):
        assert not each.middlewares


async def test_a_route_added_past_the_front_door_stops_the_app_from_starting(
    aiohttp_client: AiohttpClient, shop: Shop, config: HttpConfig
) -> None:
    async def open_door(request: web.Request) -> web.Response:
        return web.Response(text="anyone")

    app = make_app(shop, config)
    app.router.add_get("/v1/open", open_door)
    with pytest.raises(RuntimeError, match="/v1/open is served past the front door"):
        await aiohttp_client(app)


async def test_an_extra_route_is_behind_the_door_token_and_request_id_included(
    aiohttp_client: AiohttpClient, shop: Shop, config: HttpConfig
) -> None:
    async def report(request: web.Request) -> web.Response:
        return web.Response(text="report")

    app = make_app(shop, config, extra_routes=[web.get("/v1/report", report)])
    client = await aiohttp_client(app)
    async with client.get("/v1/report") as refused:
        assert refused.status == 401
        assert refused.headers[HEADER]
    async with client.get("/v1/report", headers=ADMIN) as served:
        assert (served.status, await served.text()) == (200, "report")
        assert served.headers[HEADER]


async def test_a_wrong_method_on_a_route_with_a_path_parameter_answers_405_with_allow(
    api: Api,
) -> None:
    wrong = await api.call("PUT", "/v1/orders/1", ADMIN)
    assert (wrong.status, wrong.body["code"]) == (405, "method_not_allowed")
    assert set(wrong.headers["Allow"].split(",")) >= {"GET"}


async def test_a_head_request_is_answered_with_the_get_routes_headers_and_no_body(
    api: Api,
) -> None:
    async with api.client.head("/healthz") as answer:
        assert answer.status == 200
        assert answer.headers[HEADER]
        assert await answer.read() == b""


async def test_the_console_and_its_files_are_behind_the_api_door_too(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    metrics = Metrics(shop, process=False)
    app = make_app(shop, HttpConfig(admin_token="t"), metrics=metrics)
    mount(app, shop, None, metrics=metrics)
    client = await aiohttp_client(app)
    async with client.get("/admin/static/admin.css") as stylesheet:
        assert stylesheet.status == 200
        assert stylesheet.headers[HEADER]
    async with client.get("/admin/static/app.py") as not_vendored:
        assert not_vendored.status == 404
    async with client.get("/admin/no-such-page", allow_redirects=False) as unknown:
        assert unknown.status == 303  # no session: to the sign-in page, as any page
        assert unknown.headers[HEADER]
    exposed = generate_latest(metrics.registry).decode()
    assert 'route="/admin/static/{name}"' in exposed
    assert 'route="unmatched"' in exposed


async def test_an_unknown_path_needs_no_token_and_is_not_found(api: Api) -> None:
    missing = await api.call("POST", "/v2/anything", NONE)
    assert (missing.status, missing.body["code"]) == (404, "not_found")


async def test_a_stopping_server_refuses_new_writes_and_still_takes_the_callbacks(
    api: Api,
) -> None:
    # while the sandbox's stop waited for its callbacks, orders and payments were still
    # started, which the stop then left without their callbacks
    alice = await api.customer()
    tea = await api.goods()
    order = await api.order(alice, tea)
    started = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)

    api.client.app[DOOR].gate.stop_taking_writes()

    body = {"items": [{"goods_id": tea, "quantity": 1}]}
    refused = await api.call("POST", "/v1/orders", alice.headers, body)
    assert (refused.status, refused.body["code"]) == (503, "unavailable")
    assert "stopping" in refused.body["detail"] and "Retry-After" in refused.headers
    raw = api.callback(started.body)
    paid = await api.call("POST", "/v1/payments/callback", api.signed(raw), data=raw)
    assert paid.status == 200
    read = await api.call("GET", f"/v1/orders/{order['id']}", alice.headers)
    assert (read.status, read.body["status"]) == (200, "paid")
    health = await api.call("GET", "/healthz", {})  # a load balancer sends writes elsewhere
    assert (health.status, health.body["code"]) == (503, "unavailable")
    assert len((await api.call("GET", "/v1/orders", ADMIN)).body["items"]) == 1
