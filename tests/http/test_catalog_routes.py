"""Users, goods, coupons and the audit over HTTP: each route's success and its refusals."""

from __future__ import annotations

import pytest

from shopkeep.actors import goods_rules
from shopkeep.paging import MAX_LIMIT, page_after, page_bounds
from tests.http.conftest import ADMIN, Api


async def test_an_admin_creates_a_user_who_sees_themselves_with_the_token_given_once(
    api: Api,
) -> None:
    made = await api.call("POST", "/v1/users", ADMIN, {"name": "alice", "balance": 5_000})
    assert made.status == 201
    assert set(made.body) == {"id", "name", "balance", "points", "token"}
    assert isinstance(made.body["id"], str) and made.body["id"].isdigit()
    me = await api.call("GET", "/v1/me", {"Authorization": f"Bearer {made.body['token']}"})
    assert me.status == 200
    assert me.body == {"id": made.body["id"], "name": "alice", "balance": 5_000, "points": 0}
    seen = await api.call("GET", f"/v1/users/{made.body['id']}", ADMIN)
    assert seen.body == me.body


async def test_a_credit_adds_to_the_wallet(api: Api) -> None:
    alice = await api.customer(balance=100)
    credited = await api.call("POST", f"/v1/users/{alice.id}/wallet/credit", ADMIN, {"amount": 250})
    assert (credited.status, credited.body["balance"]) == (200, 350)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "bob", "balance": -1},
        {"name": "bob", "balance": 10**12 + 1},
        {"name": 5},
        {"name": "   "},
    ],
)
async def test_a_bad_user_is_refused_with_validation_error(api: Api, body: object) -> None:
    refused = await api.call("POST", "/v1/users", ADMIN, body)
    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert refused.content_type == "application/problem+json"


async def test_a_credit_of_nothing_or_to_nobody_is_refused(api: Api) -> None:
    alice = await api.customer()
    zero = await api.call("POST", f"/v1/users/{alice.id}/wallet/credit", ADMIN, {"amount": 0})
    assert (zero.status, zero.body["code"]) == (422, "validation_error")
    assert zero.body["errors"] == [{"pointer": "/amount", "detail": "Expected `int` >= 1"}]
    nobody = await api.call("POST", "/v1/users/12345/wallet/credit", ADMIN, {"amount": 1})
    assert (nobody.status, nobody.body["code"]) == (404, "not_found")


@pytest.mark.parametrize("user_id", ["abc", "-1", "99999999999999999999", "9223372036854775808"])
async def test_an_id_that_cannot_be_a_64_bit_number_names_nothing(api: Api, user_id: str) -> None:
    refused = await api.call("GET", f"/v1/users/{user_id}", ADMIN)
    assert (refused.status, refused.body["code"]) == (404, "not_found")


async def test_goods_are_created_repriced_restocked_and_listed_page_by_page(api: Api) -> None:
    ids = [await api.goods(price=100 * n, stock=n) for n in range(1, 4)]
    patched = await api.call("PATCH", f"/v1/goods/{ids[0]}", ADMIN, {"price": 150, "restock": 4})
    assert patched.status == 200
    assert patched.body == {"id": ids[0], "name": "tea", "price": 150, "stock": 5}
    first = await api.call("GET", "/v1/goods?limit=2", ADMIN)
    assert [g["id"] for g in first.body["items"]] == [ids[2], ids[1]]
    cursor = first.body["next_cursor"]
    second = await api.call("GET", f"/v1/goods?limit=2&cursor={cursor}", ADMIN)
    assert [g["id"] for g in second.body["items"]] == [ids[0]]
    assert second.body["next_cursor"] is None
    one = await api.call("GET", f"/v1/goods/{ids[1]}", ADMIN)
    assert one.body == {"id": ids[1], "name": "tea", "price": 200, "stock": 2}


async def test_any_user_may_read_the_goods(api: Api) -> None:
    tea = await api.goods()
    alice = await api.customer()
    assert (await api.call("GET", "/v1/goods", alice.headers)).status == 200
    assert (await api.call("GET", f"/v1/goods/{tea}", alice.headers)).status == 200


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-3", "limit=-181617197657144131584", "limit=x", "limit=1e3",
     "cursor=abc", "cursor=-5"],
)  # fmt: skip
async def test_a_bad_page_is_a_validation_error(api: Api, query: str) -> None:
    refused = await api.call("GET", f"/v1/goods?{query}", ADMIN)
    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert query.split("=")[0] in refused.body["detail"]
    assert "regex" not in refused.body["detail"]  # said in words, not as Python's pattern


async def test_a_limit_above_the_cap_is_taken_as_the_cap(api: Api) -> None:
    # SPEC 7: lists take ?limit= (capped); a page never holds more than the cap
    for _ in range(3):
        await api.goods()
    # a number too long for any integer type is more than the cap too (4,400 digits: past
    # what int() converts)
    for limit in (str(MAX_LIMIT + 1), "1000000000", "181617197657144131584", "9" * 4400):
        page = await api.call("GET", f"/v1/goods?limit={limit}", ADMIN)
        assert (page.status, len(page.body["items"]), page.body["next_cursor"]) == (200, 3, None)
    # zeros in front change nothing: 2, however written
    padded = await api.call("GET", "/v1/goods?limit=" + "0" * 4400 + "2", ADMIN)
    assert (padded.status, len(padded.body["items"])) == (200, 2)
    assert page_bounds(MAX_LIMIT + 1, None)[0] == page_after(2**63 - 1, None)[0] == MAX_LIMIT


async def test_unknown_goods_are_not_found_and_a_bad_patch_is_refused(api: Api) -> None:
    tea = await api.goods()
    missing = await api.call("GET", "/v1/goods/42", ADMIN)
    assert (missing.status, missing.body["code"]) == (404, "not_found")
    for body in ({"price": -1}, {"restock": 0}, {"price": "1"}):
        refused = await api.call("PATCH", f"/v1/goods/{tea}", ADMIN, body)
        assert (refused.status, refused.body["code"]) == (422, "validation_error")


async def test_a_restock_past_the_most_a_goods_holds_is_refused_and_changes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(goods_rules, "MAX_HELD", 1_000)  # 2**53 - 1 takes 9,008 restocks
    tea = await api.goods(stock=990)
    refused = await api.call("PATCH", f"/v1/goods/{tea}", ADMIN, {"price": 1, "restock": 11})
    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert "above the most a goods holds (1000)" in refused.body["detail"]
    assert [error["pointer"] for error in refused.body["errors"]] == ["/restock"]
    unchanged = await api.call("GET", f"/v1/goods/{tea}", ADMIN)
    assert (unchanged.body["stock"], unchanged.body["price"]) == (990, 1_000)
    filled = await api.call("PATCH", f"/v1/goods/{tea}", ADMIN, {"restock": 10})
    assert (filled.status, filled.body["stock"]) == (200, 1_000)


async def test_what_an_order_gives_back_never_takes_a_stock_past_the_most_a_goods_holds(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on hand counted alone, a restock while an order held two units, then its cancel, took
    # the stock to 1,002
    monkeypatch.setattr(goods_rules, "MAX_HELD", 1_000)
    alice = await api.customer()
    tea = await api.goods(price=1, stock=1_000)
    order = await api.order(alice, tea, quantity=2)
    refused = await api.call("PATCH", f"/v1/goods/{tea}", ADMIN, {"restock": 2})
    assert refused.status == 422
    await api.call("POST", f"/v1/orders/{order['id']}/cancel", alice.headers)
    assert (await api.call("GET", f"/v1/goods/{tea}", ADMIN)).body["stock"] == 1_000


async def test_a_coupon_is_given_and_listed_for_its_owner_only(api: Api) -> None:
    alice, bob = await api.customer(), await api.customer()
    made = await api.call(
        "POST",
        "/v1/coupons",
        ADMIN,
        {
            "user_id": alice.id,
            "value": 300,
            "min_order_amount": 1_000,
            "expires_at": "2030-01-02T03:04:05+01:00",
        },
    )
    assert made.status == 201
    assert made.body == {
        "id": made.body["id"],
        "user_id": alice.id,
        "value": 300,
        "min_order_amount": 1_000,
        "expires_at": "2030-01-02T02:04:05Z",
        "state": "unused",
        "order_id": None,
    }
    mine = await api.call("GET", "/v1/coupons", alice.headers)
    assert [c["id"] for c in mine.body["items"]] == [made.body["id"]]
    assert (await api.call("GET", "/v1/coupons", bob.headers)).body["items"] == []


@pytest.mark.parametrize("expires_at", [
    "2030-01-02T03:04:05", "yesterday",
    # an offset takes them outside the years 1 to 9999 in UTC: refused, not moved
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
])
async def test_a_coupon_expiry_must_be_an_rfc_3339_time_of_the_years_1_to_9999_in_utc(
    api: Api, expires_at: str
) -> None:
    alice = await api.customer()
    refused = await api.call(
        "POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 1, "expires_at": expires_at}
    )
    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert [error["pointer"] for error in refused.body["errors"]] == ["/expires_at"]
    assert (await api.call("GET", "/v1/coupons", alice.headers)).body["items"] == []


async def test_an_expiry_outside_the_years_is_listed_with_the_bodys_other_problems(
    api: Api,
) -> None:
    alice = await api.customer()
    body = {"user_id": alice.id, "value": -5, "expires_at": "0001-01-01T00:30:00+01:00"}

    refused = await api.call("POST", "/v1/coupons", ADMIN, body)

    assert refused.status == 422
    found = {error["pointer"]: error["detail"] for error in refused.body["errors"]}
    assert set(found) == {"/value", "/expires_at"}  # the expiry was left out
    assert found["/expires_at"].startswith("outside the years 1 to 9999 in UTC (0001-01-01")


@pytest.mark.parametrize(
    ("expires_at", "taken"),
    [
        ("0477-03-01T12:00:00Z", "0477-03-01T12:00:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("0001-01-01T02:00:00+01:00", "0001-01-01T01:00:00Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T22:59:59-01:00", "9999-12-31T23:59:59Z"),
        # as RFC 3339 lets an application take it (and the document says it is taken)
        ("2030-01-01 08:00:00+08:00", "2030-01-01T00:00:00Z"),
        ("2030-01-01t00:00:00z", "2030-01-01T00:00:00Z"),
    ],
)
async def test_a_coupon_expiry_of_any_year_rfc_3339_writes_is_taken(
    api: Api, expires_at: str, taken: str
) -> None:
    alice = await api.customer()
    made = await api.call(
        "POST", "/v1/coupons", ADMIN, {"user_id": alice.id, "value": 1, "expires_at": expires_at}
    )
    assert made.status == 201, made.body
    assert made.body["expires_at"] == taken


async def test_a_coupon_for_nobody_is_not_found(api: Api) -> None:
    refused = await api.call("POST", "/v1/coupons", ADMIN, {"user_id": "7", "value": 1})
    assert (refused.status, refused.body["code"]) == (404, "not_found")


async def test_the_audit_answers_every_check(api: Api) -> None:
    alice = await api.customer()
    await api.order(alice, await api.goods())
    audit = await api.call("GET", "/v1/audit", ADMIN)
    assert audit.status == 200 and audit.body["ok"] is True
    assert all(set(check) == {"name", "ok", "detail"} for check in audit.body["checks"])


async def test_a_cursor_beyond_every_id_lists_from_the_newest(api: Api) -> None:
    tea = await api.goods()
    listed = await api.call("GET", "/v1/goods?cursor=9999999999999999999", ADMIN)
    assert listed.status == 200, listed.body
    assert [g["id"] for g in listed.body["items"]] == [tea]
