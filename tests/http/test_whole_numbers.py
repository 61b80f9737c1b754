"""A whole number written with a fraction (``5.0``) is the integer it is, as the document says.

To JSON Schema, so to the OpenAPI document, ``5.0`` is an integer; the server refused it 422.
Found by schemathesis's positive_data_acceptance check (``python -m shopkeep.proof
api-abuse``, which runs every check). The second reading of a refused body, which finds its
whole numbers and every problem, may meet a fault msgspec stopped before: that body is refused
as not JSON.
"""

from __future__ import annotations

from tests.http.conftest import ADMIN, Api


async def test_whole_numbers_written_with_a_fraction_are_read_as_integers(api: Api) -> None:
    raw = b'{"name": "tea", "price": 1500.0, "stock": 3.0}'

    made = await api.call("POST", "/v1/goods", ADMIN, data=raw)

    assert made.status == 201, made.body
    assert (made.body["price"], made.body["stock"]) == (1500, 3)


async def test_a_number_with_a_real_fraction_is_still_refused(api: Api) -> None:
    raw = b'{"name": "tea", "price": 1500.5, "stock": 3}'

    refused = await api.call("POST", "/v1/goods", ADMIN, data=raw)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert refused.body["errors"] == [
        {"pointer": "/price", "detail": "Expected `int`, got `float`"}
    ]


async def test_a_number_as_a_string_is_still_refused(api: Api) -> None:
    raw = b'{"name": "tea", "price": 1500.0, "stock": "3"}'

    refused = await api.call("POST", "/v1/goods", ADMIN, data=raw)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert (await api.call("GET", "/v1/goods", ADMIN)).body["items"] == []


async def test_a_fraction_too_small_for_a_float_is_refused_not_rounded_away(api: Api) -> None:
    # as a float, 1999.9999999999999 is 2000.0: read as written, it is no whole number of cents
    for price in (b"1999.9999999999999", b"1.0000000000000001", b"2e-1"):
        raw = b'{"name": "tea", "price": ' + price + b', "stock": 3}'
        refused = await api.call("POST", "/v1/goods", ADMIN, data=raw)
        assert (refused.status, refused.body["code"]) == (422, "validation_error"), price
        assert refused.body["errors"] == [
            {"pointer": "/price", "detail": "Expected `int`, got `float`"}
        ]
    assert (await api.call("GET", "/v1/goods", ADMIN)).body["items"] == []


async def test_a_whole_number_written_with_an_exponent_is_the_integer_it_is(api: Api) -> None:
    made = await api.call("POST", "/v1/goods", ADMIN, data=b'{"name": "tea", "price": 15e2, '
                          b'"stock": 3E0}')  # fmt: skip
    assert made.status == 201, made.body
    assert (made.body["price"], made.body["stock"]) == (1500, 3)


async def test_numbers_past_every_bound_are_refused_422_whatever_their_size(api: Api) -> None:
    # 1e4300 read as an integer was past Python's 4,300 digits of text, a 60,000-digit
    # integer past what msgspec reads as a plain value: both answered 500; and int() of
    # 1e300000 held the loop for seconds
    for amount, detail in [
        (b"1e4300", "Expected `int` <= 1000000000000"),
        (b"-1e300000", "Expected `int` >= 0"),
        (b"9" * 60_000, "Expected `int` <= 1000000000000"),
    ]:
        raw = b'{"name": "tea", "price": ' + amount + b', "stock": 3}'
        refused = await api.call("POST", "/v1/goods", ADMIN, data=raw)
        assert (refused.status, refused.body["code"]) == (422, "validation_error"), amount[:9]
        assert refused.body["errors"] == [{"pointer": "/price", "detail": detail}]
    unknown = await api.call(
        "POST", "/v1/goods", ADMIN, data=b'{"name": "tea", "price": 1, "stock": 3, "x": 1e9999}'
    )
    assert unknown.body["errors"] == [
        {"pointer": "/x", "detail": "Object contains unknown field `x`"}
    ]
    assert (await api.call("GET", "/v1/goods", ADMIN)).body["items"] == []


async def test_every_problem_is_listed_beside_an_integer_of_thousands_of_digits(
    api: Api,
) -> None:
    raw = b'{"name": 5, "price": ' + b"9" * 5_000 + b', "stock": -1}'

    refused = await api.call("POST", "/v1/goods", ADMIN, data=raw)

    assert [problem["pointer"] for problem in refused.body["errors"]] == [
        "/name", "/price", "/stock"
    ]


async def test_zero_written_with_any_exponent_is_zero(api: Api) -> None:
    made = await api.call("POST", "/v1/goods", ADMIN,
                          data=b'{"name": "tea", "price": 15e2, "stock": 0e300000}')  # fmt: skip

    assert made.status == 201, made.body
    assert made.body["stock"] == 0


async def test_a_body_broken_after_a_refused_value_is_refused_as_not_json(api: Api) -> None:
    # msgspec refuses at the first wrong value, before it reaches the fault; the second reading,
    # which lists every problem, met the fault and answered 500
    customer = await api.customer(balance=100)
    for raw in (b'{"amount": 0}}', b'{"amount": "5",}', b'{"amount": 1.5', b'{"amount": "\xff"}'):
        refused = await api.call("POST", f"/v1/users/{customer.id}/wallet/credit", ADMIN, data=raw)
        assert (refused.status, refused.body["code"]) == (422, "validation_error"), raw
        [problem] = refused.body["errors"]
        assert problem["pointer"] == "" and problem["detail"].startswith("the body is not JSON")
    assert (await api.call("GET", f"/v1/users/{customer.id}", ADMIN)).body["balance"] == 100


async def test_nan_is_not_json_even_beside_a_refused_value(api: Api) -> None:
    customer = await api.customer()
    raw = b'{"items": [{"goods_id": 1e400, "quantity": NaN}]}'

    refused = await api.call("POST", "/v1/orders", customer.headers, data=raw)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert refused.body["errors"] == [
        {"pointer": "", "detail": "the body is not JSON: NaN is not JSON"}
    ]
