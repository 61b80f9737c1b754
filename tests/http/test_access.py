"""Who may call what: the broken-object-level-authorization (BOLA) matrix and the roles.

A valid token on a route of the other role answers 403 forbidden, saying whose route it is;
another user's order answers 404 not_found, as an order nobody has, so probing ids teaches a
caller nothing. Every route with an id is tried as its owner, as another user, with no token
and with a wrong token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpClient

from shopkeep.http.app import make_app
from shopkeep.http.auth import (
    ADMINS_ROUTE,
    MAX_TOKEN,
    NOT_A_USER,
    ONE_TOKEN,
    _remembered_hash,
    bearer_hash,
)
from shopkeep.http.config import HttpConfig
from shopkeep.proof.api_probes import (
    ADMIN_ROUTES,
    ME_ROUTES,
    ORDER_ROUTES,
    bola_matrix,
    build_scene,
)
from shopkeep.shop import Shop
from shopkeep.shop_accounts import hash_token
from tests.http.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    NONE,
    SECRET,
    WRONG,
    Answer,
    Api,
    Customer,
    bearer,
)


@dataclass(frozen=True)
class Scene:
    """Alice's order (delivered, when the route needs it), and Bob, who is not Alice."""

    alice: Customer
    bob: Customer
    order: dict[str, Any]


async def scene(api: Api, *, delivered: bool) -> Scene:
    alice, bob = await api.customer(balance=100), await api.customer(balance=100)
    order = await api.order(alice, await api.goods())
    if delivered:
        await api.delivered(alice, order)
    return Scene(alice, bob, order)


@pytest.mark.parametrize(("method", "template", "delivered"), ORDER_ROUTES)
async def test_an_order_route_serves_its_owner_hides_it_from_others_and_asks_strangers_for_a_token(
    api: Api, method: str, template: str, delivered: bool
) -> None:
    s = await scene(api, delivered=delivered)
    path = template.format(id=s.order["id"])
    before = await api.call("GET", f"/v1/orders/{s.order['id']}", ADMIN)

    other = await api.call(method, path, s.bob.headers)
    none = await api.call(method, path, NONE)
    wrong = await api.call(method, path, WRONG)

    assert (other.status, other.body["code"]) == (404, "not_found")
    assert (none.status, none.body["code"]) == (401, "unauthorized")
    assert (wrong.status, wrong.body["code"]) == (401, "unauthorized")
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await api.call("GET", f"/v1/orders/{s.order['id']}", ADMIN)).body == before.body
    owner = await api.call(method, path, s.alice.headers)
    assert owner.status in (200, 201), owner.body


async def test_another_users_404_is_the_same_as_for_an_order_that_does_not_exist(
    api: Api,
) -> None:
    s = await scene(api, delivered=False)
    theirs = await api.call("GET", f"/v1/orders/{s.order['id']}", s.bob.headers)
    missing = await api.call("GET", "/v1/orders/1", s.bob.headers)
    assert (theirs.status, theirs.body["title"]) == (missing.status, missing.body["title"])


async def test_a_user_lists_only_their_own_orders(api: Api) -> None:
    s = await scene(api, delivered=False)
    assert (await api.call("GET", "/v1/orders", s.bob.headers)).body["items"] == []


@pytest.mark.parametrize(("method", "template", "body"), ADMIN_ROUTES)
async def test_an_admin_route_is_forbidden_to_a_user_and_unauthorized_without_a_token(
    api: Api, method: str, template: str, body: dict[str, Any] | None
) -> None:
    s = await scene(api, delivered=True)
    asked = await api.call("POST", f"/v1/orders/{s.order['id']}/returns", s.alice.headers)
    ids = {
        "user": s.alice.id,
        "goods": s.order["items"][0]["goods_id"],
        "order": s.order["id"],
        "return": asked.body["id"],
    }
    path = template.format(**ids)
    payload = (
        None
        if body is None
        else {
            key: value.format(**ids) if isinstance(value, str) else value
            for key, value in body.items()
        }
    )

    as_user: Answer = await api.call(method, path, s.alice.headers, payload)
    assert (as_user.status, as_user.body["code"]) == (403, "forbidden")
    assert as_user.body["detail"] == ADMINS_ROUTE
    for headers in (NONE, WRONG):
        stranger = await api.call(method, path, headers, payload)
        assert (stranger.status, stranger.body["code"]) == (401, "unauthorized")
    as_admin = await api.call(method, path, ADMIN, payload)
    assert as_admin.status not in (401, 404), as_admin.body


@pytest.mark.parametrize(("method", "template", "body"), ME_ROUTES)
async def test_a_route_that_acts_as_me_is_forbidden_to_the_admin(
    api: Api, method: str, template: str, body: dict[str, Any] | None
) -> None:
    path = template.format(order="1", delivered="1")  # refused before any order is looked at
    refused = await api.call(method, path, ADMIN, body)
    assert (refused.status, refused.body["code"]) == (403, "forbidden")
    assert refused.body["detail"] == NOT_A_USER


async def test_the_whole_matrix_at_once_finds_no_leak_and_changes_nothing(api: Api) -> None:
    scene = await build_scene(api.call, ADMIN, SECRET, api.clock.now)

    probed = await bola_matrix(api.call, scene)

    assert probed.leaks == []
    assert probed.probes == 3 * (len(ORDER_ROUTES) + len(ADMIN_ROUTES)) + len(ME_ROUTES)


async def test_the_admin_sees_and_acts_on_every_order(api: Api) -> None:
    s = await scene(api, delivered=False)
    path = f"/v1/orders/{s.order['id']}"
    assert (await api.call("GET", path, ADMIN)).status == 200
    assert (await api.call("GET", f"{path}/history", ADMIN)).status == 200
    assert (await api.call("POST", f"{path}/cancel", ADMIN)).status == 200


async def test_starting_a_payment_or_a_return_is_the_users_alone(api: Api) -> None:
    s = await scene(api, delivered=True)
    for path in (f"/v1/orders/{s.order['id']}/payment", f"/v1/orders/{s.order['id']}/returns"):
        refused = await api.call("POST", path, ADMIN)
        assert (refused.status, refused.body["code"]) == (403, "forbidden"), path
        assert refused.body["detail"] == NOT_A_USER


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer-nope x", "Bearer " + "x" * 600],
)
async def test_a_malformed_authorization_is_unauthorized(api: Api, authorization: str) -> None:
    refused = await api.call("GET", "/v1/goods", {"Authorization": authorization})
    assert (refused.status, refused.body["code"]) == (401, "unauthorized")


async def test_the_bearer_scheme_is_case_insensitive(api: Api) -> None:
    alice = await api.customer()
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    assert (await api.call("GET", "/v1/me", {"Authorization": f"bearer {token}"})).status == 200


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs"])
async def test_public_routes_need_no_token_and_ignore_a_wrong_one(api: Api, path: str) -> None:
    assert (await api.call("GET", path, NONE)).status == 200
    assert (await api.call("GET", path, WRONG)).status == 200


async def test_an_unknown_route_is_a_problem_not_found_even_without_a_token(api: Api) -> None:
    missing = await api.call("GET", "/v1/nothing-here", NONE)
    assert (missing.status, missing.body["code"]) == (404, "not_found")
    assert missing.content_type == "application/problem+json"
    wrong_method = await api.call("DELETE", "/v1/goods", ADMIN)
    assert (wrong_method.status, wrong_method.body["code"]) == (405, "method_not_allowed")
    assert "GET" in wrong_method.headers["Allow"]


async def test_a_server_that_keeps_only_the_admin_tokens_hash_admits_the_admin_not_the_hash(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    config = HttpConfig(admin_token="", admin_token_hash=hash_token(ADMIN_TOKEN))
    client = await aiohttp_client(make_app(shop, config))
    async with client.get("/v1/audit", headers=ADMIN) as admitted:
        assert admitted.status == 200
    async with client.get("/v1/audit", headers=bearer(hash_token(ADMIN_TOKEN))) as hash_as_token:
        assert hash_as_token.status == 401


async def test_without_an_admin_token_nobody_is_admin(
    aiohttp_client: AiohttpClient, shop: Shop
) -> None:
    client = await aiohttp_client(make_app(shop, HttpConfig(admin_token="")))
    async with client.get("/v1/audit", headers=bearer("")) as refused:
        assert refused.status == 401


def test_a_bearer_header_is_parsed_and_hashed_once_for_the_requests_that_repeat_it() -> None:
    header = "Bearer a-token-sent-with-every-request"
    before = _remembered_hash.cache_info()

    hashes = {bearer_hash(header) for _ in range(3)}

    assert hashes == {hash_token("a-token-sent-with-every-request")}
    after = _remembered_hash.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)
    assert bearer_hash("Basic a-token-sent-with-every-request") is None


def test_a_header_longer_than_any_issued_token_is_hashed_but_not_remembered() -> None:
    # a flood of made-up 8 KB headers, each remembered, held half a gigabyte for good
    long_token = "t" * MAX_TOKEN
    made_up = f"Bearer {'x' * 8000}"
    before = _remembered_hash.cache_info()

    hashes = [bearer_hash(f"Bearer {long_token}") for _ in range(2)]
    refused = bearer_hash(made_up)

    assert hashes == [hash_token(long_token)] * 2 and refused is None
    assert _remembered_hash.cache_info().currsize == before.currsize


async def test_two_authorization_headers_are_refused_whoever_they_name(api: Api) -> None:
    # the first one acted: a proxy that checked the last (or added its own) sent another
    # caller's request on
    alice, bob = await api.customer(balance=10_000), await api.customer(balance=10_000)
    goods = await api.goods()
    body = json.dumps({"items": [{"goods_id": goods, "quantity": 1}]}).encode()
    for first, second in ((alice, bob), (alice, {"Authorization": "Bearer nope"}), (ADMIN, bob)):
        headers = CIMultiDict(first.headers if isinstance(first, Customer) else first)
        headers.add("Authorization", (second.headers if isinstance(second, Customer) else second)[
            "Authorization"
        ])
        async with api.client.post("/v1/orders", headers=headers, data=body) as answer:
            problem = await answer.json(content_type=None)
            assert (answer.status, problem["code"]) == (401, "unauthorized")
            assert problem["detail"] == ONE_TOKEN
    for customer in (alice, bob):
        mine = await api.call("GET", "/v1/orders", customer.headers)
        assert mine.body["items"] == []


async def test_an_answer_carrying_a_secret_is_kept_by_no_cache(api: Api) -> None:
    # a bearer token, a payment's client secret: answered with no Cache-Control at all
    made = await api.call("POST", "/v1/users", ADMIN, {"name": "ann"})
    replaced = await api.call("POST", f"/v1/users/{made.body['id']}/token", ADMIN)
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    started = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)
    again = await api.call("GET", f"/v1/payments/{started.body['id']}", alice.headers)
    me = await api.call("GET", "/v1/me", alice.headers)

    for answer in (made, replaced, started, again):
        assert answer.headers.get("Cache-Control") == "no-store", answer.body
    assert "Cache-Control" not in me.headers  # what holds no secret is not marked
