"""/openapi.json and /docs: the document lists what is served, and the server keeps to it.

The last tests let schemathesis loose on a live server (aiohttp's TestServer on 127.0.0.1):
cases generated from the document, for every operation, as the admin and as a user, each
answer checked against the document (status, content type, headers, body schema) and for
server errors. Fixed seed, bounded examples, no shrinking: the same run every time.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, get_args

import hypothesis
import pytest
import schemathesis
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shopkeep.actors.order_state import STATUSES
from shopkeep.http.app import make_app
from shopkeep.http.auth import Access
from shopkeep.http.catalog import catalog
from shopkeep.http.config import HttpConfig
from shopkeep.http.schemas import OrderStatus
from tests.http.conftest import ADMIN, ADMIN_TOKEN, Api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 20
SEED = 20_260_101


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


def fuzz(url: str, token: str, known_ids: dict[str, str]) -> tuple[list[str], int]:
    """Run schemathesis against ``url``; the failures found, and how many calls were made."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the document does not load: {result.err()}")
            continue
        operation = result.ok()
        known = {
            name: known_ids[name]
            for name in re.findall(r"\{(\w+)\}", operation.path)
            if name in known_ids
        }
        cases = st.one_of(
            operation.as_strategy(), operation.as_strategy(path_parameters=known or None)
        )

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.seed(SEED)
        @given(case=cases)
        def conforms(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"})
            case.validate_response(response, checks=CHECKS)

        try:
            conforms()
        except Exception as failure:  # one report of every operation's failures
            failures.append(f"{operation.label}: {failure}")
    return failures, calls


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
        failures, calls = await asyncio.to_thread(fuzz, url, token, known)
    assert failures == []
    assert calls >= MAX_EXAMPLES * 10
