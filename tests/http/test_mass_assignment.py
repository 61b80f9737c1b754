"""Mass assignment: a body that sets a field the server owns is refused 422, and changes nothing.

Every write body of SPEC 7 is sent valid plus one server-owned field (an id, a status, an
amount, an owner, a token...). Request types forbid unknown fields, so none of them can land.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.http.conftest import ADMIN, Api

WRITES = [
    ("POST", "/v1/users", {"name": "eve"}, {"id": "1"}),
    ("POST", "/v1/users", {"name": "eve"}, {"points": 1_000}),
    ("POST", "/v1/users", {"name": "eve"}, {"token": "chosen"}),
    ("POST", "/v1/users/{user}/wallet/credit", {"amount": 1}, {"balance": 10**9}),
    ("POST", "/v1/goods", {"name": "tea", "price": 1, "stock": 1}, {"id": "7"}),
    ("PATCH", "/v1/goods/{goods}", {"price": 1}, {"stock": 10**6}),
    ("PATCH", "/v1/goods/{goods}", {"price": 1}, {"name": "renamed"}),
    ("POST", "/v1/coupons", {"user_id": "{user}", "value": 1}, {"state": "used"}),
    ("POST", "/v1/coupons", {"user_id": "{user}", "value": 1}, {"order_id": "{order}"}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1}]},
     {"status": "paid"}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1}]},
     {"pay_amount": 0}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1}]},
     {"user_id": "{other}"}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1, "unit_price": 1}]},
     {}),
    ("POST", "/v1/orders/{order}/payment", {}, {"amount": 1}),
    ("POST", "/v1/orders/{order}/cancel", {}, {"cancel_reason": "timeout"}),
    ("POST", "/v1/orders/{order}/returns", {"reason": "broken"}, {"status": "approved"}),
]


def filled(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with ``{name}`` placeholders in its strings replaced by ``ids``."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: filled(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [filled(item, ids) for item in value]
    return value


async def snapshot(api: Api) -> list[Any]:
    """Everything a write could change, as the admin sees it."""
    answers = [
        await api.call("GET", "/v1/orders", ADMIN),
        await api.call("GET", "/v1/goods", ADMIN),
        await api.call("GET", "/v1/audit", ADMIN),
    ]
    return [answer.body for answer in answers]


@pytest.mark.parametrize(("method", "template", "body", "owned"), WRITES)
async def test_a_write_that_sets_a_server_owned_field_is_refused_and_changes_nothing(
    api: Api, method: str, template: str, body: dict[str, Any], owned: dict[str, Any]
) -> None:
    alice, bob = await api.customer(), await api.customer()
    goods = await api.goods()
    order = await api.order(alice, goods)
    ids = {"user": alice.id, "other": bob.id, "goods": goods, "order": order["id"]}
    as_admin = template.startswith(("/v1/users", "/v1/goods", "/v1/coupons"))
    headers = ADMIN if as_admin else alice.headers
    before = await snapshot(api)

    refused = await api.call(method, filled(template, ids), headers, filled({**body, **owned}, ids))

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert "unknown field" in refused.body["detail"]
    assert await snapshot(api) == before
