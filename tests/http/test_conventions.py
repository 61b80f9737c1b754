"""SPEC 7's conventions: what is created is named in Location (and can be read there), every
GET answers HEAD, and the admin can replace a user's token, the old one stopping at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from tests.http.conftest import ADMIN, Api, Customer, bearer


async def test_every_answer_that_creates_something_names_where_to_read_it(api: Api) -> None:
    alice = await api.customer()
    made = await api.call("POST", "/v1/users", ADMIN, {"name": "bob"})
    goods = await api.call("POST", "/v1/goods", ADMIN, {"name": "tea", "price": 900, "stock": 5})
    coupon = await api.call("POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 100})
    body = {"items": [{"goods_id": goods.body["id"], "quantity": 1}]}
    order = await api.call("POST", "/v1/orders", alice.headers, body)
    pending = await api.call("POST", "/v1/orders?wait=false", alice.headers, body)
    payment = await api.call("POST", f"/v1/orders/{order.body['id']}/payment", alice.headers)
    delivered = await api.order(alice, goods.body["id"])
    await api.delivered(alice, delivered)
    asked = await api.call("POST", f"/v1/orders/{delivered['id']}/returns", alice.headers)

    created = {
        f"/v1/users/{made.body['id']}": made,
        f"/v1/goods/{goods.body['id']}": goods,
        f"/v1/coupons/{coupon.body['id']}": coupon,
        f"/v1/orders/{order.body['id']}": order,
        f"/v1/orders/{pending.body['id']}": pending,
        f"/v1/payments/{payment.body['id']}": payment,
        f"/v1/returns/{asked.body['id']}": asked,
    }
    for location, answer in created.items():
        assert answer.status in (201, 202), answer.body
        assert answer.headers["Location"] == location
        read = await api.call("GET", location, ADMIN)
        assert read.status == 200, (location, read.body)
        assert read.body["id"] == answer.body["id"]


async def test_the_same_open_payment_again_creates_nothing_and_names_no_location(
    api: Api,
) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    first = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)
    again = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)

    assert (first.status, again.status) == (201, 200)
    assert "Location" not in again.headers


async def scene(api: Api) -> tuple[Customer, Customer, dict[str, str]]:
    """Alice with a coupon, a payment and a return; Bob, who is not Alice."""
    alice, bob = await api.customer(), await api.customer()
    tea = await api.goods()
    coupon = await api.call("POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 100})
    order = await api.order(alice, tea)
    await api.delivered(alice, order)
    asked = await api.call("POST", f"/v1/orders/{order['id']}/returns", alice.headers)
    payment = await api.pay(alice, await api.order(alice, tea))
    return alice, bob, {
        "coupons": coupon.body["id"], "payments": payment["id"], "returns": asked.body["id"],
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["coupons", "payments", "returns"])
async def test_a_users_own_things_are_theirs_to_read_and_anothers_are_not_found(
    api: Api, kind: str
) -> None:
    alice, bob, ids = await scene(api)
    path = f"/v1/{kind}/{ids[kind]}"

    mine = await api.call("GET", path, alice.headers)
    theirs = await api.call("GET", path, bob.headers)
    nothing = await api.call("GET", f"/v1/{kind}/4242424242", alice.headers)

    assert mine.status == 200 and mine.body["id"] == ids[kind]
    assert (await api.call("GET", path, ADMIN)).body == mine.body
    assert (theirs.status, theirs.body["code"]) == (404, "not_found")
    assert theirs.body["detail"].replace(ids[kind], "<id>") == nothing.body["detail"].replace(
        "4242424242", "<id>"
    )


@pytest.mark.parametrize(
    "path", ["/v1/goods", "/v1/orders", "/v1/audit", "/healthz", "/openapi.json", "/v1/me"]
)
async def test_every_get_answers_head_with_its_headers_and_no_body(api: Api, path: str) -> None:
    alice = await api.customer()
    headers = alice.headers if path == "/v1/me" else ADMIN
    got = await api.call("GET", path, headers)
    async with api.client.request("HEAD", path, headers=headers) as head:
        assert head.status == got.status == 200
        assert head.headers["Content-Type"] == got.headers["Content-Type"]
        assert await head.read() == b""


async def test_head_keeps_the_guard_of_its_get(api: Api) -> None:
    async with api.client.request("HEAD", "/v1/orders") as head:
        assert head.status == 401
    alice = await api.customer()
    async with api.client.request("HEAD", "/v1/audit", headers=alice.headers) as head:
        assert head.status == 403


async def test_a_replaced_token_stops_working_at_once_and_the_new_one_works(api: Api) -> None:
    alice = await api.customer()
    assert (await api.call("GET", "/v1/me", alice.headers)).status == 200  # remembered now

    replaced = await api.call("POST", f"/v1/users/{alice.id}/token", ADMIN)

    assert replaced.status == 200, replaced.body
    assert set(replaced.body) == {"token"}
    old = await api.call("GET", "/v1/me", alice.headers)
    assert (old.status, old.body["code"]) == (401, "unauthorized")
    new = await api.call("GET", "/v1/me", bearer(replaced.body["token"]))
    assert (new.status, new.body["id"]) == (200, alice.id)


async def test_a_token_replaced_while_its_requests_body_comes_is_refused(api: Api) -> None:
    # the door admits a caller by the headers; the body came seconds later, and the order was
    # placed with a token that had named nobody since the replacement's answer
    alice = await api.customer()
    goods = await api.goods()
    body = msgspec.json.encode({"items": [{"goods_id": goods, "quantity": 1}]})
    replaced = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield body[:10]
        await replaced.wait()
        yield body[10:]

    placing = asyncio.create_task(
        api.client.post("/v1/orders", data=slowly(), headers=alice.headers)
    )
    assert (await api.call("GET", "/healthz", {})).status == 200  # the headers are in
    assert (await api.call("POST", f"/v1/users/{alice.id}/token", ADMIN)).status == 200
    replaced.set()

    async with await placing as answered:
        assert answered.status == 401
    assert (await api.call("GET", "/v1/orders", ADMIN)).body["items"] == []


@pytest.mark.parametrize(
    ("who", "user", "status"),
    [("alice", "self", 403), ("admin", "4242424242", 404), ("admin", "abc", 404)],
)
async def test_only_the_admin_replaces_a_token_and_only_a_users(
    api: Api, who: str, user: str, status: int
) -> None:
    alice = await api.customer()
    headers: dict[str, Any] = alice.headers if who == "alice" else ADMIN
    user_id = alice.id if user == "self" else user

    refused = await api.call("POST", f"/v1/users/{user_id}/token", headers)

    assert refused.status == status
    assert (await api.call("GET", "/v1/me", alice.headers)).status == 200
