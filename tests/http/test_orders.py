"""Orders over HTTP: placing, listing, paying, canceling, shipping, returns and refunds."""

from __future__ import annotations

from typing import Any

import pytest

from shopkeep.requests import MAX_AMOUNT
from tests.http.conftest import ADMIN, Api

ID_IN_WORDS = "Expected an id as this server writes them: 1 to 19 digits, no sign, no leading zero"

ORDER_FIELDS = {
    "id",
    "user_id",
    "status",
    "items",
    "coupon_id",
    "goods_amount",
    "shipping_fee",
    "order_amount",
    "coupon_discount",
    "wallet_amount",
    "pay_amount",
    "cancel_reason",
    "created_at",
    "confirmed_at",
    "paid_at",
    "canceled_at",
    "expires_at",
    "currency",  # SPEC 10: the shop's currency, shown in orders
}


async def test_a_placed_order_answers_201_with_exactly_the_fields_of_the_spec(api: Api) -> None:
    alice = await api.customer(balance=1_000)
    tea = await api.goods(price=3_000)
    placed = await api.call(
        "POST",
        "/v1/orders",
        alice.headers,
        {"items": [{"goods_id": tea, "quantity": 2}], "use_balance": 500, "expected_total": 7_000},
    )
    assert placed.status == 201
    assert set(placed.body) == ORDER_FIELDS
    assert placed.body["status"] == "awaiting_payment"
    assert placed.body["items"] == [{"goods_id": tea, "quantity": 2, "unit_price": 3_000}]
    assert (placed.body["wallet_amount"], placed.body["pay_amount"]) == (500, 6_500)
    assert placed.body["created_at"].endswith("Z")
    assert placed.body["expires_at"] == "2026-01-01T00:30:00Z"


async def test_an_order_paid_by_coupon_and_wallet_is_paid_at_once(api: Api) -> None:
    alice = await api.customer(balance=10_000)
    tea = await api.goods(price=500)
    coupon = await api.call("POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 200})
    placed = await api.call(
        "POST",
        "/v1/orders",
        alice.headers,
        {
            "items": [{"goods_id": tea, "quantity": 1}],
            "coupon_id": coupon.body["id"],
            "use_balance": 1_300,
        },
    )
    assert (placed.status, placed.body["status"], placed.body["pay_amount"]) == (201, "paid", 0)


async def test_null_for_an_optional_field_means_what_its_absence_means(api: Api) -> None:
    made = await api.call("POST", "/v1/users", ADMIN, {"name": "alice", "balance": None})
    assert (made.status, made.body["balance"]) == (201, 0)
    alice = await api.customer()
    coupon = await api.call(
        "POST", "/v1/coupons", ADMIN,
        {"user_id": alice.id, "value": 200, "min_order_amount": None, "expires_at": None},
    )
    assert (coupon.status, coupon.body["min_order_amount"]) == (201, 0)
    placed = await api.call(
        "POST",
        "/v1/orders",
        alice.headers,
        {
            "items": [{"goods_id": await api.goods(), "quantity": 1}],
            "coupon_id": None,
            "use_balance": None,
            "expected_total": None,
        },
    )
    assert (placed.status, placed.body["wallet_amount"], placed.body["coupon_id"]) == (201, 0, None)
    await api.delivered(alice, placed.body)
    asked = await api.call(
        "POST", f"/v1/orders/{placed.body['id']}/returns", alice.headers, {"reason": None}
    )
    assert asked.status == 201, asked.body


async def test_an_asynchronous_placement_answers_202_pending(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods()
    pending = await api.call(
        "POST",
        "/v1/orders?wait=false",
        alice.headers,
        {"items": [{"goods_id": tea, "quantity": 1}]},
    )
    assert (pending.status, pending.body["status"]) == (202, "pending")
    polled = await api.call("GET", f"/v1/orders/{pending.body['id']}", alice.headers)
    assert polled.body["status"] == "awaiting_payment"


async def test_a_refused_placement_is_a_409_and_records_nothing(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods(stock=1)
    refused = await api.call(
        "POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 2}]}
    )
    assert refused.status == 409
    assert refused.content_type == "application/problem+json"
    assert refused.body["code"] == "insufficient_stock"
    assert refused.body["type"] == "/docs#problem-insufficient_stock"
    assert refused.body["title"] == "Insufficient stock"
    # decided in one turn, checks before writes: no order was recorded, so none is named
    assert "order_id" not in refused.body
    listed = await api.call("GET", "/v1/orders", alice.headers)
    assert listed.body["items"] == []


async def test_an_order_amounting_to_more_than_any_payment_can_carry_is_a_422(api: Api) -> None:
    alice = await api.customer()
    gold = await api.goods(price=MAX_AMOUNT, stock=3)
    refused = await api.call(
        "POST", "/v1/orders", alice.headers, {"items": [{"goods_id": gold, "quantity": 2}]}
    )
    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert str(MAX_AMOUNT) in refused.body["detail"]
    assert [error["pointer"] for error in refused.body["errors"]] == ["/items"]  # not the body
    listed = await api.call("GET", "/v1/orders", alice.headers)
    assert listed.body["items"] == []
    goods = await api.call("GET", f"/v1/goods/{gold}", alice.headers)
    assert goods.body["stock"] == 3


@pytest.mark.parametrize(
    ("options", "code"),
    [({"use_balance": 1}, "insufficient_balance"), ({"expected_total": 1}, "price_changed")],
)
async def test_each_business_refusal_keeps_its_code(
    api: Api, options: dict[str, int], code: str
) -> None:
    alice = await api.customer()
    tea = await api.goods()
    refused = await api.call(
        "POST",
        "/v1/orders",
        alice.headers,
        {"items": [{"goods_id": tea, "quantity": 1}], **options},
    )
    assert (refused.status, refused.body["code"]) == (409, code)


async def test_a_price_rise_the_wallet_would_pay_for_is_price_changed(api: Api) -> None:
    alice = await api.customer(balance=10_000)
    tea = await api.goods(price=1_000)
    order = {"items": [{"goods_id": tea, "quantity": 1}], "use_balance": 10_000}
    expected = {**order, "expected_total": 2_000}  # 1000 and shipping, all from the wallet
    paid = await api.call("POST", "/v1/orders", alice.headers, expected)
    assert (paid.status, paid.body["wallet_amount"], paid.body["pay_amount"]) == (201, 2_000, 0)

    raised = await api.call("PATCH", f"/v1/goods/{tea}", ADMIN, {"price": 5_000})
    assert raised.status == 200
    refused = await api.call("POST", "/v1/orders", alice.headers, expected)

    assert (refused.status, refused.body["code"]) == (409, "price_changed")
    assert "the total to pay is 6000 (6000 from the wallet" in refused.body["detail"]
    me = await api.call("GET", "/v1/me", alice.headers)
    assert me.body["balance"] == 8_000  # the first order's 2000 alone


async def test_a_coupon_of_another_user_answers_exactly_as_a_missing_one(api: Api) -> None:
    alice, bob = await api.customer(), await api.customer()
    tea = await api.goods()
    coupon = await api.call("POST", "/v1/coupons", ADMIN, {"user_id": bob.id, "value": 100})
    answers = []
    for coupon_id in (coupon.body["id"], "4242424242"):
        refused = await api.call(
            "POST",
            "/v1/orders",
            alice.headers,
            {"items": [{"goods_id": tea, "quantity": 1}], "coupon_id": coupon_id},
        )
        body = {k: v.replace(coupon_id, "<id>") if isinstance(v, str) else v
                for k, v in refused.body.items()}
        answers.append((refused.status, body))
    assert answers[0] == answers[1]  # the whole problem, no order_id in either: none recorded
    assert (answers[0][0], answers[0][1]["code"]) == (404, "not_found")
    assert (await api.call("GET", "/v1/orders", alice.headers)).body["items"] == []


async def test_the_eleventh_unpaid_order_is_refused(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods(price=100, stock=20)
    for _ in range(10):
        await api.order(alice, tea)
    refused = await api.call(
        "POST", "/v1/orders", alice.headers, {"items": [{"goods_id": tea, "quantity": 1}]}
    )
    assert (refused.status, refused.body["code"]) == (409, "too_many_unpaid_orders")


async def test_the_same_idempotency_key_answers_the_same_order_and_refuses_another_body(
    api: Api,
) -> None:
    alice = await api.customer()
    tea = await api.goods()
    keyed = {**alice.headers, "Idempotency-Key": "k-1"}
    body = {"items": [{"goods_id": tea, "quantity": 1}]}
    first = await api.call("POST", "/v1/orders", keyed, body)
    again = await api.call("POST", "/v1/orders", keyed, body)
    assert (first.status, again.status) == (201, 201)
    assert again.body["id"] == first.body["id"]
    other = await api.call(
        "POST", "/v1/orders", keyed, {"items": [{"goods_id": tea, "quantity": 2}]}
    )
    assert (other.status, other.body["code"]) == (409, "idempotency_conflict")
    assert (await api.call("GET", f"/v1/goods/{tea}", ADMIN)).body["stock"] == 9


@pytest.mark.parametrize(
    ("query", "headers", "body", "where"),
    [
        ("", {}, {"items": []}, "/items"),
        ("", {}, {"items": [{"goods_id": "1", "quantity": 0}]}, "/items/0/quantity"),
        ("", {}, {"items": [{"goods_id": "1", "quantity": 1001}]}, "/items/0/quantity"),
        ("", {}, {"items": [{"goods_id": "x1", "quantity": 1}]}, "/items/0/goods_id"),
        ("", {}, {"items": [{"goods_id": str(n), "quantity": 1} for n in range(1, 52)]},
         "/items"),
        ("", {}, {"items": [{"goods_id": "1", "quantity": 1}], "use_balance": -1}, "/use_balance"),
        ("?wait=maybe", {}, {"items": [{"goods_id": "1", "quantity": 1}]}, "wait"),
        (
            "",
            {"Idempotency-Key": "k" * 256},
            {"items": [{"goods_id": "1", "quantity": 1}]},
            "Idempotency-Key",
        ),
        (
            "",
            {"Idempotency-Key": "tab\tinside"},
            {"items": [{"goods_id": "1", "quantity": 1}]},
            "Idempotency-Key",
        ),
    ],
)
async def test_a_bad_order_request_is_a_validation_error_naming_where(
    api: Api, query: str, headers: dict[str, str], body: object, where: str
) -> None:
    alice = await api.customer()
    refused = await api.call("POST", f"/v1/orders{query}", {**alice.headers, **headers}, body)
    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert [error.get("pointer", error.get("parameter")) for error in refused.body["errors"]] == [
        where
    ]
    assert (await api.call("GET", "/v1/orders", ADMIN)).body["items"] == []


async def test_a_goods_listed_twice_is_listed_beside_the_bodys_other_problems(api: Api) -> None:
    # the rule past the types ran only on a body the types took: it was missing here
    alice = await api.customer()
    body = {"items": [{"goods_id": "7", "quantity": 1}, {"goods_id": "7", "quantity": 1},
                      {"goods_id": "x", "quantity": 1}, {"goods_id": "x", "quantity": 1}],
            "use_balance": -1}

    refused = await api.call("POST", "/v1/orders", alice.headers, body)

    # "x" is no id: refused as such, and not again as repeated
    assert [e["pointer"] for e in refused.body["errors"]] == [
        "/items/2/goods_id", "/items/3/goods_id", "/use_balance", "/items/1/goods_id"
    ]
    assert "listed again" in refused.body["errors"][3]["detail"]


async def test_every_problem_of_an_order_body_is_listed_with_its_pointer(api: Api) -> None:
    alice = await api.customer()
    body = {
        "items": [
            {"goods_id": "1", "quantity": 0},
            {"goods_id": "x", "quantity": 2},
            {"goods_id": "3", "quantity": "many", "colour": "red"},
            {"quantity": 1},
        ],
        "use_balance": -5,
        "status": "paid",
    }
    refused = await api.call("POST", "/v1/orders", alice.headers, body)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert refused.body["errors"] == [
        {"pointer": "/items/0/quantity", "detail": "Expected `int` >= 1"},
        {"pointer": "/items/1/goods_id", "detail": ID_IN_WORDS},
        {"pointer": "/items/2/quantity", "detail": "Expected `int`, got `str`"},
        {"pointer": "/items/2/colour", "detail": "Object contains unknown field `colour`"},
        {"pointer": "/items/3/goods_id", "detail": "Object missing required field `goods_id`"},
        {"pointer": "/use_balance", "detail": "Expected `int` >= 0"},
        {"pointer": "/status", "detail": "Object contains unknown field `status`"},
    ]
    assert (
        refused.body["detail"]
        == "Expected `int` >= 1 - at `/items/0/quantity` (and 6 more: see errors)"
    )


@pytest.mark.parametrize(
    ("path", "body", "pointer", "words"),
    [
        ("/v1/users", {"name": "a\u0001b"}, "/name", "without control characters"),
        ("/v1/users", {"name": "  "}, "/name", "not blank"),
        ("/v1/users", {"name": "\u200b\ufeff\u2060"}, "/name", "nor only invisible characters"),
        ("/v1/goods", {"name": "\u00ad", "price": 1, "stock": 1}, "/name", "not blank"),
        ("/v1/users", {"name": "\U000e0020\U000e0041"}, "/name", "not blank"),  # tags
        ("/v1/goods", {"name": "tea\u0000", "price": 1, "stock": 1}, "/name", "not blank"),
    ],
)
async def test_a_text_refused_for_its_pattern_says_why_in_words(
    api: Api, path: str, body: dict[str, Any], pointer: str, words: str
) -> None:
    # msgspec's regex, control characters escaped twice over, was the detail
    refused = await api.call("POST", path, ADMIN, body)
    assert refused.status == 422
    [problem] = refused.body["errors"]
    assert problem["pointer"] == pointer and words in problem["detail"]
    assert "regex" not in refused.body["detail"]


async def test_every_rule_an_order_breaks_is_listed_with_its_pointer(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods()
    line = {"goods_id": tea, "quantity": 1}
    refused = await api.call("POST", "/v1/orders", alice.headers, {"items": [line, line, line]})

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert [error["pointer"] for error in refused.body["errors"]] == [
        "/items/1/goods_id",
        "/items/2/goods_id",
    ]


async def test_every_bad_query_parameter_is_listed_by_name(api: Api) -> None:
    alice = await api.customer()
    refused = await api.call("GET", "/v1/orders?limit=0&status=lost&cursor=x&limt=5", alice.headers)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert [error["parameter"] for error in refused.body["errors"]] == [
        "limit", "status", "cursor", "limt",
    ]  # fmt: skip


async def test_a_goods_id_beyond_64_bits_names_no_goods(api: Api) -> None:
    alice = await api.customer()
    body = {"items": [{"goods_id": "9223372036854775808", "quantity": 1}]}
    refused = await api.call("POST", "/v1/orders", alice.headers, body)

    assert (refused.status, refused.body["code"]) == (404, "not_found")
    assert (await api.call("GET", "/v1/orders", ADMIN)).body["items"] == []


async def test_a_body_that_is_not_json_is_a_validation_error(api: Api) -> None:
    alice = await api.customer()
    refused = await api.call("POST", "/v1/orders", alice.headers, data=b"{not json")
    assert (refused.status, refused.body["code"]) == (422, "validation_error")


async def test_orders_are_listed_by_owner_and_status_page_by_page(api: Api) -> None:
    alice, bob = await api.customer(), await api.customer()
    tea = await api.goods()
    first, second = await api.order(alice, tea), await api.order(alice, tea)
    bobs = await api.order(bob, tea)
    await api.call("POST", f"/v1/orders/{first['id']}/cancel", alice.headers)
    mine = await api.call("GET", "/v1/orders", alice.headers)
    assert [o["id"] for o in mine.body["items"]] == [second["id"], first["id"]]
    canceled = await api.call("GET", "/v1/orders?status=canceled", alice.headers)
    assert [o["id"] for o in canceled.body["items"]] == [first["id"]]
    every = await api.call("GET", "/v1/orders?limit=2", ADMIN)
    assert [o["id"] for o in every.body["items"]] == [bobs["id"], second["id"]]
    rest = await api.call("GET", f"/v1/orders?limit=2&cursor={every.body['next_cursor']}", ADMIN)
    assert [o["id"] for o in rest.body["items"]] == [first["id"]]
    refused = await api.call("GET", "/v1/orders?status=lost", ADMIN)
    assert (refused.status, refused.body["code"]) == (422, "validation_error")


async def test_an_order_lists_its_lines_as_the_customer_gave_them_wherever_it_is_read(
    api: Api,
) -> None:
    # read back by their key, lines came in goods id order: the list showed another order
    # of lines than the placement's answer and the order itself
    alice = await api.customer()
    tea, cake, jam = await api.goods(), await api.goods(), await api.goods()
    lines = [{"goods_id": goods_id, "quantity": 1} for goods_id in (cake, jam, tea)]
    placed = await api.call("POST", "/v1/orders", alice.headers, {"items": lines})
    order_id = placed.body["id"]

    listed = await api.call("GET", "/v1/orders", alice.headers)
    read = await api.call("GET", f"/v1/orders/{order_id}", alice.headers)
    for answer in (placed.body, listed.body["items"][0], read.body):
        assert [line["goods_id"] for line in answer["items"]] == [cake, jam, tea]


async def test_an_order_tells_its_history(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    history = await api.call("GET", f"/v1/orders/{order['id']}/history", alice.headers)
    assert history.status == 200 and history.body["next_cursor"] is None
    assert [(h["from"], h["to"], h["operation"]) for h in history.body["items"]] == [
        (None, "pending", "placed"),
        ("pending", "awaiting_payment", "confirmed"),
    ]
    assert set(history.body["items"][0]) == {"from", "to", "operation", "remark", "at"}


async def test_a_payment_is_started_once_then_answered_again_with_200(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods(price=12_000))
    started = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)
    assert started.status == 201
    assert set(started.body) == {
        "id", "order_id", "amount", "status", "gateway", "currency", "gateway_url"
    }
    assert (started.body["amount"], started.body["status"]) == (12_000, "created")
    assert (started.body["gateway"], started.body["currency"]) == ("sandbox", "CNY")
    again = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)
    assert (again.status, again.body) == (200, started.body)


async def test_a_paid_order_earns_points_and_cannot_be_paid_again(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods(price=12_000))
    await api.pay(alice, order)
    assert (await api.call("GET", "/v1/me", alice.headers)).body["points"] == 120
    paid = await api.call("GET", f"/v1/orders/{order['id']}", alice.headers)
    assert paid.body["status"] == "paid" and paid.body["paid_at"] is not None
    refused = await api.call("POST", f"/v1/orders/{order['id']}/payment", alice.headers)
    assert (refused.status, refused.body["code"]) == (409, "invalid_state")


async def test_canceling_twice_is_harmless_and_an_admin_cancel_says_so(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods()
    mine, theirs = await api.order(alice, tea), await api.order(alice, tea)
    once = await api.call("POST", f"/v1/orders/{mine['id']}/cancel", alice.headers)
    twice = await api.call("POST", f"/v1/orders/{mine['id']}/cancel", alice.headers)
    assert (once.status, twice.status) == (200, 200)
    assert (twice.body["status"], twice.body["cancel_reason"]) == ("canceled", "user")
    by_admin = await api.call("POST", f"/v1/orders/{theirs['id']}/cancel", ADMIN)
    assert by_admin.body["cancel_reason"] == "admin"


async def test_a_shipped_order_cannot_be_canceled(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    await api.pay(alice, order)
    shipped = await api.call("POST", f"/v1/orders/{order['id']}/ship", ADMIN)
    assert (shipped.status, shipped.body["status"]) == (200, "shipped")
    refused = await api.call("POST", f"/v1/orders/{order['id']}/cancel", alice.headers)
    assert (refused.status, refused.body["code"]) == (409, "invalid_state")


async def test_an_unpaid_order_cannot_be_shipped_or_delivered(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    for step in ("ship", "deliver"):
        refused = await api.call("POST", f"/v1/orders/{order['id']}/{step}", ADMIN)
        assert (refused.status, refused.body["code"]) == (409, "invalid_state")


async def test_a_delivered_order_is_returned_refunded_and_restocked(api: Api) -> None:
    alice = await api.customer()
    tea = await api.goods(price=5_000, stock=5)
    order = await api.order(alice, tea, quantity=2)  # 10_000: shipping is free
    await api.delivered(alice, order)
    asked = await api.call(
        "POST", f"/v1/orders/{order['id']}/returns", alice.headers, {"reason": "too strong"}
    )
    assert asked.status == 201
    assert asked.body == {"id": asked.body["id"], "order_id": order["id"], "status": "requested"}
    approved = await api.call("POST", f"/v1/returns/{asked.body['id']}/approve", ADMIN)
    assert (approved.status, approved.body["status"]) == (200, "approved")
    await api.settle()
    refunds = await api.call("GET", f"/v1/orders/{order['id']}/refunds", alice.headers)
    [refund] = refunds.body["items"]
    assert set(refund) == {
        "id",
        "order_id",
        "kind",
        "wallet_amount",
        "gateway_amount",
        "status",
        "created_at",
    }
    assert (refund["kind"], refund["status"], refund["gateway_amount"]) == (
        "return",
        "refunded",
        10_000,
    )
    assert (await api.call("GET", f"/v1/goods/{tea}", ADMIN)).body["stock"] == 5
    assert (await api.call("GET", "/v1/audit", ADMIN)).body["ok"] is True


async def test_a_return_needs_a_delivered_order_and_may_come_without_a_body(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    refused = await api.call("POST", f"/v1/orders/{order['id']}/returns", alice.headers)
    assert (refused.status, refused.body["code"]) == (409, "invalid_state")
    await api.delivered(alice, order)
    asked = await api.call("POST", f"/v1/orders/{order['id']}/returns", alice.headers)
    assert asked.status == 201


async def test_asking_again_to_return_an_order_answers_its_open_request_with_200(
    api: Api,
) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods())
    await api.delivered(alice, order)
    path = f"/v1/orders/{order['id']}/returns"
    first = await api.call("POST", path, alice.headers, {"reason": "too big"})

    again = await api.call("POST", path, alice.headers, {"reason": "too small"})

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert "Location" not in again.headers


async def test_an_unknown_return_is_not_found(api: Api) -> None:
    refused = await api.call("POST", "/v1/returns/77/approve", ADMIN)
    assert (refused.status, refused.body["code"]) == (404, "not_found")


async def test_a_paid_order_canceled_is_refunded_through_the_gateway(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods(price=5_000))  # + 1_000 shipping
    await api.pay(alice, order)
    await api.call("POST", f"/v1/orders/{order['id']}/cancel", alice.headers)
    await api.settle()
    refunds = await api.call("GET", f"/v1/orders/{order['id']}/refunds", ADMIN)
    assert [(r["kind"], r["gateway_amount"], r["status"]) for r in refunds.body["items"]] == [
        ("cancel", 6_000, "refunded")
    ]


async def walk(api: Api, path: str, headers: dict[str, str]) -> list[list[Any]]:
    """Every page of the list at ``path``, one item a page, following ``next_cursor``."""
    pages: list[list[Any]] = []
    cursor = None
    for _ in range(20):
        query = "?limit=1" + ("" if cursor is None else f"&cursor={cursor}")
        page = await api.call("GET", path + query, headers)
        assert page.status == 200, page.body
        pages.append(page.body["items"])
        cursor = page.body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"{path} did not end")


async def test_an_orders_history_and_refunds_are_paged_like_every_list(api: Api) -> None:
    alice = await api.customer()
    order = await api.order(alice, await api.goods(price=12_000))
    await api.pay(alice, order)
    canceled = await api.call("POST", f"/v1/orders/{order['id']}/cancel", alice.headers)
    assert canceled.status == 200
    await api.settle()  # the refund, and its history entry
    base = f"/v1/orders/{order['id']}"
    whole = (await api.call("GET", base + "/history", alice.headers)).body["items"]
    assert [page for page in await walk(api, base + "/history", alice.headers) if page] == [
        [entry] for entry in whole
    ]
    assert len(whole) == 5  # placed, confirmed, paid, canceled_by_user, refunded
    refunds = await walk(api, base + "/refunds", alice.headers)
    assert [r["kind"] for page in refunds for r in page] == ["cancel"]
    refused = await api.call("GET", base + "/history?limit=0", alice.headers)
    assert (refused.status, refused.body["code"]) == (422, "validation_error")


async def test_an_orders_history_cursor_tells_nothing_of_other_orders(api: Api) -> None:
    alice, bob = await api.customer(), await api.customer()
    tea = await api.goods(price=12_000)
    first = await api.order(alice, tea)
    for _ in range(3):  # the shop busy with another customer's orders between two looks
        await api.order(bob, tea)
    second = await api.order(alice, tea)

    cursors = [
        (await api.call("GET", f"/v1/orders/{order['id']}/history?limit=1", alice.headers))
        .body["next_cursor"]
        for order in (first, second)
    ]

    assert cursors[0] == cursors[1]


@pytest.mark.parametrize("written", ["12345", "0012", "99999999999999999999"])
async def test_a_missing_order_is_said_missing_in_the_same_words_however_its_id_is_written(
    api: Api, written: str
) -> None:
    alice = await api.customer()
    missing = await api.call("GET", f"/v1/orders/{written}", alice.headers)

    assert (missing.status, missing.body["detail"]) == (404, f"order {written} does not exist")
