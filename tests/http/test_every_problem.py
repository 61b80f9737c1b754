"""A 422 lists every problem of the request, wherever it is: in the query, in the
``Idempotency-Key`` header and in the body together (SPEC 7: "A validation error lists every
problem found").

The route's guard checks the query before the handler runs, and a handler checks its key
header before its body: each used to answer the first part that had a problem alone, so a
client fixing it met the next 422 only on its next try.
"""

from __future__ import annotations

from typing import Any

from tests.http.conftest import ADMIN, Api

TOO_LONG_KEY = "k" * 256
BAD_ORDER = {"items": [], "x": 1}


def where(answer_body: dict[str, Any]) -> list[str]:
    """Where each listed problem is: a body pointer, or a parameter's name."""
    return [e.get("pointer", e.get("parameter")) for e in answer_body["errors"]]


async def test_a_bad_query_a_bad_key_and_a_bad_body_are_listed_together(api: Api) -> None:
    customer = await api.customer()
    headers = {**customer.headers, "Idempotency-Key": TOO_LONG_KEY}

    refused = await api.call("POST", "/v1/orders?wait=bogus&foo=1", headers, BAD_ORDER)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert where(refused.body) == ["wait", "foo", "Idempotency-Key", "/items", "/x"]
    assert refused.body["detail"].endswith("(and 4 more: see errors)")


async def test_a_bad_key_and_a_bad_body_are_listed_together(api: Api) -> None:
    user = await api.customer()

    refused = await api.call(
        "POST",
        f"/v1/users/{user.id}/wallet/credit",
        {**ADMIN, "Idempotency-Key": TOO_LONG_KEY},
        {"amount": 0},
    )

    assert refused.status == 422
    assert where(refused.body) == ["Idempotency-Key", "/amount"]


async def test_a_bad_query_and_a_body_on_a_route_that_takes_none_are_listed_together(
    api: Api,
) -> None:
    customer = await api.customer()
    order = await api.order(customer, await api.goods())

    refused = await api.call(
        "POST", f"/v1/orders/{order['id']}/payment?channel=fax", customer.headers, {"a": 1}
    )

    assert refused.status == 422
    assert where(refused.body) == ["channel", "/a"]


async def test_a_bad_query_with_a_good_key_and_body_lists_the_query_alone(api: Api) -> None:
    customer = await api.customer()
    goods_id = await api.goods()
    headers = {**customer.headers, "Idempotency-Key": "k-1"}
    body = {"items": [{"goods_id": goods_id, "quantity": 1}]}

    refused = await api.call("POST", "/v1/orders?wait=maybe", headers, body)

    assert refused.status == 422
    assert where(refused.body) == ["wait"]
    # nothing was placed, and the key bound nothing: the same key places afresh
    placed = await api.call("POST", "/v1/orders", headers, body)
    assert placed.status == 201
    assert "Idempotent-Replayed" not in placed.headers


async def test_a_bad_body_alone_is_listed_as_before(api: Api) -> None:
    customer = await api.customer()

    refused = await api.call("POST", "/v1/orders", customer.headers, BAD_ORDER)

    assert where(refused.body) == ["/items", "/x"]


async def test_a_callbacks_body_is_not_decoded_for_problems_before_its_signature(
    api: Api,
) -> None:
    refused = await api.call("POST", "/v1/payments/callback?x=1", {}, {"nonsense": True})

    assert refused.status == 422
    assert where(refused.body) == ["x"]
