"""Header bytes no client library sends, sent raw over a socket: a token header that is not
printable ASCII is nobody's token (401 unauthorized, problem+json), never a 500 (SPEC 7)."""

from __future__ import annotations

import pytest

from shopkeep.proof.raw_http import RawAnswer, exchange, request_bytes
from tests.http.conftest import ADMIN, ADMIN_TOKEN, Api

STRANGE_TOKENS = [
    b"Bearer \xff\xfe",  # not UTF-8 at all
    b"Bearer caf\xc3\xa9",  # UTF-8, not ASCII
    b"Bearer tab\tinside",  # ASCII, not printable
    b"Bearer " + b"\xff" * 600,  # and too long besides
]


async def send(api: Api, method: str, path: str, headers: dict[str, bytes]) -> RawAnswer:
    server = api.client.server
    assert server.host is not None and server.port is not None
    return await exchange(server.host, server.port, request_bytes(method, path, headers))


@pytest.mark.parametrize("authorization", STRANGE_TOKENS)
async def test_a_token_that_is_not_printable_ascii_is_refused_401(
    api: Api, authorization: bytes
) -> None:
    answer = await send(api, "GET", "/v1/me", {"Authorization": authorization})

    assert answer.status == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.problem_code() == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "space", ["\u00a0", "\u2003", "\u3000", "\u0085", "\u2028"], ids=ascii
)
@pytest.mark.parametrize("where", ["before", "after"])
async def test_the_admin_token_beside_a_space_that_is_not_ascii_is_refused_401(
    api: Api, space: str, where: str
) -> None:
    padded = space + ADMIN_TOKEN if where == "before" else ADMIN_TOKEN + space
    authorization = b"Bearer " + padded.encode()

    answer = await send(api, "GET", "/v1/audit", {"Authorization": authorization})

    assert answer.status == 401


async def test_a_strange_token_on_an_admin_write_changes_nothing(api: Api) -> None:
    before = await api.call("GET", "/v1/goods", ADMIN)

    answer = await send(api, "POST", "/v1/goods", {"Authorization": b"Bearer \xff\xfe"})

    assert answer.status == 401
    assert (await api.call("GET", "/v1/goods", ADMIN)).body == before.body


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Request-Id", b"id-\xff"), ("Shopkeep-Signature", b"t=\xff,v1=\xfe")],
)
async def test_other_headers_of_strange_bytes_are_no_server_error(
    api: Api, name: str, value: bytes
) -> None:
    answer = await send(api, "POST", "/v1/payments/callback", {name: value})

    assert answer.status < 500
    assert answer.problem_code() is not None
