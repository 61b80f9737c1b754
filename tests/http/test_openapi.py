"""/openapi.json and /docs: the document lists what is served, and the server keeps to it.

The last tests let schemathesis loose on a live server (aiohttp's TestServer on 127.0.0.1),
as the admin and as a user, with every check it has: :mod:`shopkeep.proof.api_fuzz`, the
fuzzing of the api-abuse proof group.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.order_state import CANCEL_REASONS, PAYMENT_STATUSES, REFUND_KINDS, STATUSES
from shopkeep.http.app import make_app
from shopkeep.http.auth import Access
from shopkeep.http.catalog import catalog
from shopkeep.http.config import HttpConfig
from shopkeep.http.errors import PROBLEMS
from shopkeep.http.schemas import CancelReason, Gateway, OrderStatus, PaymentStatus, RefundKind
from shopkeep.payments.alipay import AlipayProvider
from shopkeep.payments.names import GATEWAYS
from shopkeep.payments.signature import HEADER, HEADER_PATTERN, sign
from shopkeep.payments.stripe_provider import StripeProvider
from shopkeep.payments.wechatpay import WeChatPayProvider
from shopkeep.proof.api_fuzz import fuzz
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.http.conftest import ADMIN, ADMIN_TOKEN, Api

MAX_EXAMPLES = 20
TIME_FIELDS = {
    "created_at", "confirmed_at", "paid_at", "canceled_at", "expires_at", "at",
}  # fmt: skip


class AnyText(str):
    """Equal to any string (a description's wording is not what a test pins)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    __hash__ = str.__hash__


ANY_TEXT = AnyText()


async def test_the_document_lists_every_served_route_with_its_security(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
    }
    served = [op for op in catalog() if op.handler is not None]
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
    assert set(place["responses"]) == {
        "201", "202", "400", "401", "403", "404", "409", "413", "422", "429", "503"
    }  # fmt: skip
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


async def test_every_operation_documents_the_413_the_door_answers_to_an_oversized_body(
    api: Api,
) -> None:
    # the door refuses a body announced larger than the server takes on any route, a GET's too
    document = (await api.call("GET", "/openapi.json", {})).body
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "413" in operation["responses"], (method, path)
    refused = await api.call("GET", "/healthz", {}, data=b"x" * (HttpConfig.max_body_bytes + 1))
    assert refused.status == 413


async def test_the_docs_page_lists_every_route_and_schema_with_nothing_from_elsewhere(
    api: Api,
) -> None:
    page = await api.client.get("/docs")
    html = await page.text()
    assert page.content_type == "text/html"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "script-src" not in page.headers["Content-Security-Policy"]  # it runs none
    document = (await api.call("GET", "/openapi.json", {})).body
    for path in document["paths"]:
        assert f'<span class="path">{path}</span>' in html
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert 'id="problem-insufficient_stock"' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


async def test_the_document_names_its_server_and_tags_every_operation(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    assert document["servers"] == [{"url": "/", "description": ANY_TEXT}]
    tags = [tag["name"] for tag in document["tags"]]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            assert operation["tags"] and set(operation["tags"]) <= set(tags), (path, method)
    assert document["paths"]["/v1/orders/{order_id}"]["get"]["tags"] == ["orders"]


def schemas_in(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object nested in ``value``, with where it is."""
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from schemas_in(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from schemas_in(item, f"{path}/{index}")


async def test_every_time_in_the_document_is_a_date_time(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    times = {
        where
        for where, schema in schemas_in(document["components"]["schemas"])
        if where.rsplit("/properties/", 1)[-1].split("/")[0] in TIME_FIELDS
        and schema.get("type") == "string"
    }
    assert len(times) == 9  # a coupon's expiry (in and out), an order's five, history, refunds
    for where, schema in schemas_in(document["components"]["schemas"]):
        if where in times:
            assert schema.get("format") == "date-time", where


async def test_a_problems_code_is_one_of_the_codes_the_api_answers(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    code = document["components"]["schemas"]["Problem"]["properties"]["code"]
    assert code["enum"] == list(PROBLEMS)
    assert {"validation_error", "not_found", "rate_limited", "insufficient_stock"} <= set(
        code["enum"]
    )


async def test_a_refunds_documented_kinds_and_statuses_are_spec_7s(api: Api) -> None:
    # "failed" was documented as a status, which no refund ever reaches: one the provider
    # failed stays refunding, to be sent again or settled by hand
    document = (await api.call("GET", "/openapi.json", {})).body
    refund = document["components"]["schemas"]["RefundOut"]["properties"]
    assert set(refund["status"]["enum"]) == {"refunding", "refunded"}
    assert set(refund["kind"]["enum"]) == {"cancel", "return", "late_payment", "duplicate_payment"}


async def test_no_description_carries_restructured_text(api: Api) -> None:
    text = await (await api.client.get("/openapi.json")).text()
    assert "``" not in text
    assert not re.search(r":(class|func|meth|data|attr):`", text)


async def test_created_answers_document_their_location(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, answer in operation["responses"].items():
                named = "Location" in answer.get("headers", {})
                assert named == (status == "201" or (path, status) == ("/v1/orders", "202")), (
                    path, method, status,
                )  # fmt: skip


async def test_the_callback_requires_its_signature_header_with_its_pattern(api: Api) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    [header] = document["paths"]["/v1/payments/callback"]["post"]["parameters"]
    assert (header["name"], header["in"], header["required"]) == (HEADER, "header", True)
    assert header["schema"]["pattern"] == HEADER_PATTERN
    assert re.search(HEADER_PATTERN, sign("secret", 1_700_000_000, b"{}"))


async def test_the_providers_notify_routes_and_the_payment_fields_are_documented(
    api: Api,
) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    for path in ("/v1/payments/alipay/notify", "/v1/payments/wechatpay/notify",
                 "/v1/payments/stripe/webhook"):
        assert not document["paths"][path]["post"].get("security"), path
    payment = document["components"]["schemas"]["PaymentOut"]
    assert {"gateway", "currency"} <= set(payment["required"])
    assert {"gateway_url", "qr_code", "code_url", "client_secret"} <= set(payment["properties"])
    start = document["paths"]["/v1/orders/{order_id}/payment"]["post"]
    [channel] = [p for p in start["parameters"] if p["name"] == "channel"]
    assert channel["schema"]["enum"] == ["page", "qr"]
    assert "currency" in document["components"]["schemas"]["OrderOut"]["required"]


@pytest.mark.parametrize(
    ("path", "provider"),
    [("/v1/payments/alipay/notify", AlipayProvider),
     ("/v1/payments/wechatpay/notify", WeChatPayProvider),
     ("/v1/payments/stripe/webhook", StripeProvider)],
)
async def test_a_notify_routes_answers_are_documented_in_its_providers_own_format(
    api: Api, path: str, provider: Any
) -> None:
    # the provider reads them, so they are its format, not problem+json
    responses = (await api.call("GET", "/openapi.json", {})).body["paths"][path]["post"][
        "responses"
    ]
    for handled in (True, False):
        said = provider.answer(None, handled, "signature: mismatch")  # reads nothing of its own
        documented = responses[str(said.status)]
        if not said.body:
            assert "content" not in documented
            continue
        [(media, content)] = documented["content"].items()
        assert media == said.content_type
        schema = content["schema"]
        if media == "text/plain":
            assert said.body.decode() in schema.get("enum", [said.body.decode()])
        elif "$ref" not in schema:
            body = json.loads(said.body)
            assert set(schema["required"]) <= set(body) <= set(schema["properties"])
            for name, value in body.items():
                assert value in schema["properties"][name].get("enum", [value])


async def test_a_notify_route_of_another_provider_is_not_found(api: Api) -> None:
    answer = await api.call("POST", "/v1/payments/alipay/notify", {}, data=b"a=b")
    assert (answer.status, answer.body["code"]) == (404, "not_found")


@pytest.mark.parametrize("most", [10, 5_000])  # below the defaults' 1,000 and above
async def test_a_shops_own_limits_of_an_order_are_documented_and_kept(
    aiohttp_client: AiohttpClient, tmp_path: Path, clock: VirtualClock, most: int
) -> None:
    # a shop set above the defaults placed over the Python API what HTTP refused 422, and one
    # set below was refused past its limit in words naming the default's
    limits = ShopConfig(max_quantity=most, max_items=3)
    async with Shop.open(
        str(tmp_path / "limits.db"), gateway="sandbox", clock=clock, config=limits
    ) as shop:
        client = await aiohttp_client(make_app(shop, HttpConfig(admin_token=ADMIN_TOKEN)))
        api = Api(client, shop, clock)
        schemas = (await api.call("GET", "/openapi.json", {})).body["components"]["schemas"]
        assert schemas["PlaceOrderRequest"]["properties"]["items"]["maxItems"] == 3
        assert schemas["OrderItemRequest"]["properties"]["quantity"]["maximum"] == most
        customer, goods_id = await api.customer(), await api.goods(price=1, stock=10_000)
        body = {"items": [{"goods_id": goods_id, "quantity": most + 1}]}
        refused = await api.call("POST", "/v1/orders", customer.headers, body)
        assert (refused.status, refused.body["code"]) == (422, "validation_error")
        assert [e["pointer"] for e in refused.body["errors"]] == ["/items/0/quantity"]
        assert f"quantity must be 1 to {most}, not {most + 1}" in refused.body["detail"]
        placed = await api.order(customer, goods_id, quantity=most)
        assert placed["status"] == "awaiting_payment"


def test_the_documented_order_statuses_are_the_state_machines() -> None:
    assert get_args(OrderStatus) == STATUSES


def test_the_documented_reasons_kinds_and_gateways_are_the_ones_the_shop_writes() -> None:
    assert get_args(CancelReason) == CANCEL_REASONS
    assert get_args(PaymentStatus) == PAYMENT_STATUSES
    assert get_args(RefundKind) == REFUND_KINDS
    assert get_args(Gateway) == GATEWAYS


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


async def test_every_operation_declares_the_400_of_a_request_that_could_not_be_read(
    api: Api,
) -> None:
    # a body that does not decode as its Content-Encoding says is 400 on any route, and was
    # declared on none but the callbacks
    document = (await api.call("GET", "/openapi.json", {})).body
    undeclared = [
        (method, path)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if "400" not in op["responses"]
    ]
    refused = await api.call(
        "POST", "/v1/goods", {**ADMIN, "Content-Encoding": "deflate"}, data=b"not deflate"
    )

    assert undeclared == []
    assert (refused.status, refused.body["code"]) == (400, "bad_request")
