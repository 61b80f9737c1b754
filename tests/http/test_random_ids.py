"""Lookups of ids that exist nowhere leave nothing behind: no actor stays in memory for them
(each would cost memory for as long as it lived, for the price of one request)."""

from __future__ import annotations

import random

from tests.http.conftest import ADMIN, Api

ROUTES = (
    ("GET", "/v1/goods/{id}"),
    ("GET", "/v1/users/{id}"),
    ("GET", "/v1/orders/{id}"),
    ("GET", "/v1/orders/{id}/history"),
    ("GET", "/v1/orders/{id}/refunds"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("POST", "/v1/users/{id}/wallet/credit"),
    ("PATCH", "/v1/goods/{id}"),
)
BODIES = {"/v1/users/{id}/wallet/credit": {"amount": 1}, "/v1/goods/{id}": {"restock": 1}}
USERS_MAY_CALL = {("GET", "/v1/goods/{id}"), *((m, t) for m, t in ROUTES if "orders" in t)}
"""The routes a user's token may call (the others are the admin's: 403 to a user)."""


async def test_a_thousand_lookups_of_random_ids_leave_the_live_actors_unchanged(api: Api) -> None:
    alice = await api.customer()
    await api.order(alice, await api.goods())
    system = api.shop.runtime.system
    before = system.live_actors
    draw = random.Random(12)
    for n in range(1_000):
        method, template = ROUTES[n % len(ROUTES)]
        body = BODIES.get(template) if method != "GET" else None
        headers = alice.headers if n % 3 == 0 and (method, template) in USERS_MAY_CALL else ADMIN
        path = template.format(id=draw.randrange(1, 2**63))
        answer = await api.call(method, path, headers, body)
        assert answer.status == 404, (method, path, answer.body)
    assert system.live_actors == before


async def test_an_id_written_with_leading_zeros_names_nothing(api: Api) -> None:
    tea = await api.goods()

    assert (await api.call("GET", f"/v1/goods/{tea}", ADMIN)).status == 200
    assert (await api.call("GET", f"/v1/goods/0{tea}", ADMIN)).status == 404
    assert (await api.call("GET", "/v1/goods/00", ADMIN)).status == 404
