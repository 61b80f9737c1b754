"""A query parameter an operation does not take is refused 422, as an unknown body field is;
so is one given twice, which would be read as its first value alone.

The server ignored them: ``GET /v1/goods?limt=5`` answered the default page, and schemathesis's
negative_data_rejection check (every check, as ``python -m shopkeep.proof api-abuse`` runs it)
found a request outside the document accepted.
"""

from __future__ import annotations

import pytest

from tests.http.conftest import ADMIN, NONE, Api


@pytest.mark.parametrize("path", ["/v1/goods?limt=5", "/v1/goods?=", "/v1/audit?x=1"])
async def test_an_unknown_query_parameter_is_refused_422(api: Api, path: str) -> None:
    refused = await api.call("GET", path, ADMIN)

    assert (refused.status, refused.body["code"]) == (422, "validation_error")


async def test_a_query_parameter_given_twice_is_refused_once_naming_it(api: Api) -> None:
    refused = await api.call(
        "GET", "/v1/orders?status=paid&status=canceled&status=shipped&limit=2", ADMIN
    )

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert refused.body["errors"] == [
        {"detail": "query parameter 'status' is given more than once", "parameter": "status"}
    ]


async def test_an_unknown_query_parameter_given_twice_is_refused_once_as_unknown(
    api: Api,
) -> None:
    refused = await api.call("GET", "/v1/goods?status=paid&status=canceled", ADMIN)

    assert refused.body["errors"] == [
        {"detail": "unknown query parameter 'status'", "parameter": "status"}
    ]


async def test_the_query_parameters_an_operation_takes_are_served(api: Api) -> None:
    assert (await api.call("GET", "/v1/goods?limit=5", ADMIN)).status == 200


async def test_without_a_token_the_answer_is_still_401_not_422(api: Api) -> None:
    refused = await api.call("GET", "/v1/goods?limt=5", NONE)

    assert (refused.status, refused.body["code"]) == (401, "unauthorized")
