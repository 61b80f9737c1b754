"""/openapi.json and /docs: the document lists what is served, and the server keeps to it.

The last tests let schemathesis loose on a live server (aiohttp's TestServer on 127.0.0.1),
as the admin and as a user, with every check it has: :mod:`shopkeep.proof.api_fuzz`, the
fuzzing of the api-abuse proof group.
"""

from __future__ import annotations

import asyncio
from typing import get_args

import pytest
from aiohttp.test_utils import TestServer

from shopkeep.actors.order_state import STATUSES
from shopkeep.http.app import make_app
from shopkeep.http.auth import Access
from shopkeep.http.catalog import catalog
from shopkeep.http.config import HttpConfig
from shopkeep.http.schemas import OrderStatus
from shopkeep.proof.api_fuzz import fuzz
from tests.http.conftest import ADMIN, ADMIN_TOKEN, Api

MAX_EXAMPLES = 20


async def test_the_document_lists_every_served_route_with_its_security(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
    }
    served = [op for op in catalog(HttpConfig(admin_token="x")) if op.handler is not None]
    for op in served:
        entry = document["paths"][op.path][op.method.lower()]
        assert entry["security"] == ([] if op.access is Access.PUBLIC else [{"bearer": []}])
    listed = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert listed == {(op.path, op.method.lower()) for op in served}


async def test_every_problem_is_documented_as_problem_json_and_503_with_retry_after(
    api: Api,
) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    place = document["paths"]["/v1/orders"]["post"]
    assert set(place["responses"]) == {"201", "202", "401", "404", "409", "413", "422", "503"}
    assert place["responses"]["409"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert place["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert place["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlaceOrderRequest"
    }
    names = {p["name"]: p["in"] for p in place["parameters"]}
    assert names == {"Idempotency-Key": "header", "wait": "query"}
    request = document["components"]["schemas"]["PlaceOrderRequest"]
    assert request["additionalProperties"] is False


async def test_the_docs_page_lists_every_route_and_schema_with_nothing_from_elsewhere(
    api: Api,
) -> None:
    page = await api.client.get("/docs")
    html = await page.text()
    assert page.content_type == "text/html"
    document = (await api.call("GET", "/openapi.json", {})).body
    for path in document["paths"]:
        assert f'<span class="path">{path}</span>' in html
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert 'id="problem-insufficient_stock"' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_the_documented_order_statuses_are_the_state_machines() -> None:
    assert get_args(OrderStatus) == STATUSES


@pytest.mark.parametrize("who", ["admin", "user"])
async def test_the_server_keeps_to_its_document_under_generated_requests(
    api: Api, who: str
) -> None:
    alice = await api.customer(balance=50_000)
    tea = await api.goods(price=2_000, stock=1_000)
    await api.call("POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 100})
    delivered = await api.order(alice, tea)
    await api.delivered(alice, delivered)
    asked = await api.call("POST", f"/v1/orders/{delivered['id']}/returns", alice.headers)
    known = {
        "user_id": alice.id,
        "goods_id": tea,
        "order_id": (await api.order(alice, tea))["id"],
        "return_id": asked.body["id"],
    }
    token = ADMIN_TOKEN if who == "admin" else alice.headers["Authorization"].split()[1]
    async with TestServer(make_app(api.shop, HttpConfig(admin_token=ADMIN_TOKEN)),
                          host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        found = await asyncio.to_thread(fuzz, url, token, known, MAX_EXAMPLES)
    assert found.failures == [], "\n".join(found.failures)
    assert found.server_errors == 0
    assert found.cases >= MAX_EXAMPLES * 10
