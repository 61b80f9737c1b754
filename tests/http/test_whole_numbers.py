"""A whole number written with a fraction (``5.0``) is the integer it is, as the document says.

To JSON Schema, so to the OpenAPI document, ``5.0`` is an integer; the server refused it 422.
Found by schemathesis's positive_data_acceptance check (``python -m shopkeep.proof
api-abuse``, which runs every check).
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
