"""Idempotency-Key over HTTP (SPEC 7): every route that moves money or stock takes one; a retry
answers the first answer with ``Idempotent-Replayed: true``; another body, 409; a key that is
not printable ASCII, 422 and nothing else (issue 12, defect 5: ``k\\xff`` failed the user
actor three times)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from shopkeep.actors import placement
from shopkeep.actors.goods import GoodsActor
from shopkeep.actors.protocol import GetGoods
from shopkeep.requests import KEY_PATTERN, MAX_KEY
from shopkeep.runtime import Address, Context
from tests.http.conftest import ADMIN, Answer, Api, Customer
from tests.shop.conftest import mail_queued

KEYED = {
    ("post", "/v1/users"),
    ("post", "/v1/goods"),
    ("post", "/v1/coupons"),
    ("post", "/v1/users/{user_id}/wallet/credit"),
    ("patch", "/v1/goods/{goods_id}"),
    ("post", "/v1/orders"),
    ("post", "/v1/orders/{order_id}/payment"),
    ("post", "/v1/orders/{order_id}/cancel"),
    ("post", "/v1/orders/{order_id}/ship"),
    ("post", "/v1/orders/{order_id}/deliver"),
    ("post", "/v1/orders/{order_id}/returns"),
    ("post", "/v1/returns/{return_id}/approve"),
}


@dataclass(frozen=True)
class Request:
    """One request: who sends it, where, with what body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None

    async def send(self, api: Api, key: str) -> Answer:
        return await api.call(
            self.method, self.path, {**self.headers, "Idempotency-Key": key}, self.body
        )


@dataclass(frozen=True)
class Route:
    """A keyed request, and another request under the same key."""

    request: Request
    other: Request


async def delivered(api: Api) -> tuple[Customer, dict[str, Any]]:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    await api.delivered(alice, order)
    return alice, order


async def credit(api: Api) -> Route:
    alice = await api.customer()
    path = f"/v1/users/{alice.id}/wallet/credit"
    return Route(Request("POST", path, ADMIN, {"amount": 500}),
                 Request("POST", path, ADMIN, {"amount": 600}))


async def create_goods(api: Api) -> Route:
    return Route(Request("POST", "/v1/goods", ADMIN, {"name": "tea", "price": 900, "stock": 5}),
                 Request("POST", "/v1/goods", ADMIN, {"name": "tea", "price": 900, "stock": 6}))


async def create_coupon(api: Api) -> Route:
    alice = await api.customer()
    return Route(Request("POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 100}),
                 Request("POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 200}))


async def restock(api: Api) -> Route:
    path = f"/v1/goods/{await api.goods()}"
    return Route(Request("PATCH", path, ADMIN, {"restock": 5}),
                 Request("PATCH", path, ADMIN, {"restock": 6}))


async def place(api: Api) -> Route:
    alice, tea = await api.customer(), await api.goods()
    return Route(
        Request("POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 1}]}),
        Request("POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 2}]}),
    )


async def payment(api: Api) -> Route:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    path = f"/v1/orders/{order['id']}"
    return Route(Request("POST", f"{path}/payment", alice.headers),
                 Request("POST", f"{path}/cancel", alice.headers))


async def cancel(api: Api) -> Route:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    path = f"/v1/orders/{order['id']}"
    return Route(Request("POST", f"{path}/cancel", alice.headers),
                 Request("POST", f"{path}/payment", alice.headers))


async def ship(api: Api) -> Route:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    await api.pay(alice, order)
    path = f"/v1/orders/{order['id']}"
    return Route(Request("POST", f"{path}/ship", ADMIN), Request("POST", f"{path}/deliver", ADMIN))


async def deliver(api: Api) -> Route:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    await api.pay(alice, order)
    path = f"/v1/orders/{order['id']}"
    await api.call("POST", f"{path}/ship", ADMIN)
    return Route(Request("POST", f"{path}/deliver", ADMIN), Request("POST", f"{path}/ship", ADMIN))


async def ask_return(api: Api) -> Route:
    alice, order = await delivered(api)
    path = f"/v1/orders/{order['id']}/returns"
    return Route(Request("POST", path, alice.headers, {"reason": "too strong"}),
                 Request("POST", path, alice.headers, {"reason": "too weak"}))


async def approve(api: Api) -> Route:
    alice, order = await delivered(api)
    asked = await api.call("POST", f"/v1/orders/{order['id']}/returns", alice.headers)
    return Route(Request("POST", f"/v1/returns/{asked.body['id']}/approve", ADMIN),
                 Request("POST", f"/v1/orders/{order['id']}/ship", ADMIN))


ROUTES = pytest.mark.parametrize(
    "route",
    [create_goods, create_coupon, credit, restock, place, payment, cancel, ship, deliver,
     ask_return, approve],
    ids=lambda route: route.__name__,
)


@ROUTES
async def test_a_retry_answers_the_first_answer_again_marked_replayed(
    api: Api, route: Callable[[Api], Awaitable[Route]]
) -> None:
    request = (await route(api)).request
    first = await request.send(api, "key-1")
    again = await request.send(api, "key-1")

    assert first.status in (200, 201), first.body
    assert (again.status, again.body) == (first.status, first.body)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"


@ROUTES
async def test_the_same_key_with_another_request_answers_409_idempotency_conflict(
    api: Api, route: Callable[[Api], Awaitable[Route]]
) -> None:
    keyed = await route(api)
    await keyed.request.send(api, "key-1")

    other = await keyed.other.send(api, "key-1")

    assert (other.status, other.body["code"]) == (409, "idempotency_conflict")
    assert "Idempotent-Replayed" not in other.headers


async def test_goods_created_under_one_key_by_racing_retries_are_created_once(api: Api) -> None:
    # the key was checked and then ignored: every retry made another goods, with its stock
    request = Request("POST", "/v1/goods", ADMIN, {"name": "tea", "price": 900, "stock": 5})

    answers = await asyncio.gather(*(request.send(api, "goods-1") for _ in range(5)))

    assert {answer.body["id"] for answer in answers} == {answers[0].body["id"]}
    assert len((await api.call("GET", "/v1/goods", ADMIN)).body["items"]) == 1


async def test_a_user_created_again_under_its_key_is_the_same_user_with_a_new_token(
    api: Api,
) -> None:
    # only the token's hash is kept: the replay gives a token that works, the first one stops
    request = Request("POST", "/v1/users", ADMIN, {"name": "dana", "balance": 500})
    first = await request.send(api, "user-1")

    again = await request.send(api, "user-1")

    assert (again.status, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert {k: v for k, v in again.body.items() if k != "token"} == {
        k: v for k, v in first.body.items() if k != "token"
    }
    assert again.body["token"] != first.body["token"]
    old = await api.call("GET", "/v1/me", {"Authorization": f"Bearer {first.body['token']}"})
    new = await api.call("GET", "/v1/me", {"Authorization": f"Bearer {again.body['token']}"})
    assert (old.status, new.status, new.body["balance"]) == (401, 200, 500)
    other = await Request("POST", "/v1/users", ADMIN, {"name": "dana"}).send(api, "user-1")
    assert (other.status, other.body["code"]) == (409, "idempotency_conflict")


async def test_the_same_key_and_body_with_or_without_waiting_answer_the_same_order(
    api: Api,
) -> None:
    # SPEC 2: the same key with the same body returns the same order; ?wait= is no body
    alice, tea = await api.customer(), await api.goods()
    body = {"items": [{"goods_id": tea, "quantity": 1}]}
    for first, then in (("?wait=false", ""), ("", "?wait=false")):
        key = {**alice.headers, "Idempotency-Key": f"either-way{first}"}
        placed = await api.call("POST", f"/v1/orders{first}", key, body)
        again = await api.call("POST", f"/v1/orders{then}", key, body)
        assert placed.status in (201, 202), placed.body
        assert (again.status, again.body) == (placed.status, placed.body)
        assert again.headers["Idempotent-Replayed"] == "true"
    orders = await api.call("GET", "/v1/orders", alice.headers)
    assert len(orders.body["items"]) == 2


async def test_a_placement_refused_by_its_checks_keeps_the_refusal_under_its_key(
    api: Api,
) -> None:
    # the checks refuse in one turn, before any order exists; the refusal is the first answer,
    # so the same request answers it again, replayed, and another request is a conflict
    alice = await api.customer()
    tea = await api.goods(stock=1)
    body = {"items": [{"goods_id": tea, "quantity": 1}], "expected_total": 1}
    keyed = {**alice.headers, "Idempotency-Key": "k-1"}
    await api.call("GET", f"/v1/goods/{tea}", ADMIN)  # every participant live: one turn
    first = await api.call("POST", "/v1/orders", keyed, body)
    again = await api.call("POST", "/v1/orders", keyed, body)
    other = await api.call("POST", "/v1/orders", keyed, {**body, "expected_total": None})

    assert (first.status, first.body["code"], "order_id" in first.body) == (
        409, "price_changed", False
    )
    assert "Idempotent-Replayed" not in first.headers
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (other.status, other.body["code"]) == (409, "idempotency_conflict")
    assert (await api.call("GET", "/v1/orders", alice.headers)).body["items"] == []
    assert (await api.call("GET", f"/v1/goods/{tea}", ADMIN)).body["stock"] == 1


async def test_a_refused_request_is_refused_again_under_its_key_after_the_obstacle_is_gone(
    api: Api,
) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    ship = f"/v1/orders/{order['id']}/ship"
    keyed = {**ADMIN, "Idempotency-Key": "ship-1"}
    refused = await api.call("POST", ship, keyed)
    await api.pay(alice, order)

    again = await api.call("POST", ship, keyed)
    shipped = await api.call("POST", ship, {**ADMIN, "Idempotency-Key": "ship-2"})

    assert (refused.status, refused.body["code"]) == (409, "invalid_state")
    assert (again.status, again.body) == (refused.status, refused.body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (shipped.status, shipped.body["status"]) == (200, "shipped")


async def send_raw(api: Api, head: bytes, body: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``head`` (request line and headers, CRLF-separated, without the blank line) and
    ``body`` over a socket, as no client library would; answer the status and JSON body."""
    server = api.client.server
    assert server.host is not None and server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            head + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body
        )
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), msgspec.json.decode(payload)


async def place_with_key_lines(api: Api, keys: bytes) -> tuple[int, Any]:
    """A customer's placement sent as raw bytes, its Idempotency-Key header lines ``keys``
    (what no HTTP client sends): the status and the problem."""
    alice = await api.customer()
    tea = await api.goods()
    token = alice.headers["Authorization"].encode()
    body = msgspec.json.encode({"items": [{"goods_id": tea, "quantity": 1}]})
    head = (
        b"POST /v1/orders HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n"
        b"Authorization: " + token + b"\r\n" + keys
    )
    return await send_raw(api, head, body)


@pytest.mark.parametrize("key", [b"k\xff", b"caf\xc3\xa9", b"\xff" * 300, b"tab\tinside"])
async def test_a_key_that_is_not_printable_ascii_is_refused_422_and_no_actor_fails(
    api: Api, key: bytes
) -> None:
    status, problem = await place_with_key_lines(api, b"Idempotency-Key: " + key)
    await api.settle()

    assert (status, problem["code"]) == (422, "validation_error")
    assert "Idempotency-Key" in problem["detail"]
    assert (await api.call("GET", "/v1/orders", ADMIN)).body["items"] == []
    assert await api.shop.reader.fetchall("SELECT count(*) FROM dead_letters") == [(0,)]
    stats = api.shop.runtime.system.stats
    assert (stats.restarts, stats.dead_letters) == (0, 0)


async def test_two_keys_on_one_request_are_refused_422_and_nothing_is_placed(api: Api) -> None:
    # the first was taken and the second ignored: a retry sending the second alone was
    # another request
    keys = b"Idempotency-Key: one\r\nIdempotency-Key: two"

    status, problem = await place_with_key_lines(api, keys)

    assert (status, problem["code"]) == (422, "validation_error")
    assert problem["errors"] == [
        {"parameter": "Idempotency-Key", "detail": "given more than once: send one key"}
    ]
    assert (await api.call("GET", "/v1/orders", ADMIN)).body["items"] == []


async def test_a_placement_past_the_ask_timeout_answers_202_with_its_pending_order(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await api.customer()
    tea = await api.goods()
    gate, holding, reached = asyncio.Event(), asyncio.Event(), asyncio.Event()
    handle, ask_each = GoodsActor.receive, placement._ask_each

    async def busy(actor: GoodsActor, ctx: Context, message: Any) -> Any:
        if isinstance(message, GetGoods):
            holding.set()
            await gate.wait()
        return await handle(actor, ctx, message)

    async def asking(ctx: Context, state: Any, message: Any) -> list[Any]:
        reached.set()  # the saga asks the busy goods now (its checks): it waits behind GetGoods
        return await ask_each(ctx, state, message)

    monkeypatch.setattr(GoodsActor, "receive", busy)
    monkeypatch.setattr(placement, "_ask_each", asking)
    held = asyncio.create_task(api.call("GET", f"/v1/goods/{tea}", ADMIN))
    await holding.wait()
    placing = asyncio.create_task(
        api.call("POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 1}]})
    )
    # the order waits for the goods' turn in its mailbox, half the ask timeout at most; then
    # the saga records it pending and asks; at the ask timeout the answer is that order
    timeout = api.shop.runtime.system.config.ask_timeout_s
    await mail_queued(api.shop, Address("goods", int(tea)))
    await api.clock.advance(timeout / 2)
    await reached.wait()
    await api.clock.advance(timeout / 2)
    answered = await placing
    gate.set()
    await held

    assert (answered.status, answered.body["status"]) == (202, "pending")
    polled = await api.call("GET", f"/v1/orders/{answered.body['id']}", alice.headers)
    assert polled.status == 200


async def test_the_document_gives_every_keyed_route_the_key_and_the_replay_header(
    api: Api,
) -> None:
    document = (await api.call("GET", "/openapi.json", {})).body
    found = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            params = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
            if not params:
                continue
            found.add((method, path))
            (param,) = params
            assert param["in"] == "header" and not param["required"]
            assert param["schema"]["pattern"] == KEY_PATTERN
            assert param["schema"]["maxLength"] == MAX_KEY
            assert "409" in operation["responses"]
            successes = [s for s in operation["responses"] if s.startswith("2")]
            for status in successes:
                headers = operation["responses"][status]["headers"]
                assert headers["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
    assert found == KEYED
