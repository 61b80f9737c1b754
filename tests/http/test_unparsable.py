"""Requests aiohttp's parser refuses before any handler sees them (a control character in a
header, a line past its limit), sent raw to a running server on 127.0.0.1: each is answered
problem+json like any other refusal, never repeats the refused bytes, and changes nothing. A
token or key header of such bytes is refused 401 / 422 as SPEC 7 says of any header that is not
printable ASCII."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from shopkeep.http.config import HttpConfig
from shopkeep.http.server import Server
from shopkeep.proof.raw_http import RawAnswer, exchange, read_answer, request_bytes
from shopkeep.requests import KEY_RULE
from tests.http.conftest import serving

ADMIN_TOKEN = "admin-token-of-the-unparsable-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}".encode()}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with serving(tmp_path, writer="thread", sandbox=True, admin_token=ADMIN_TOKEN) as served:
        yield served


async def send(
    server: Server, method: str, path: str, headers: dict[str, bytes], body: bytes = b""
) -> RawAnswer:
    host, port = server.url.removeprefix("http://").split(":")
    return await exchange(host, int(port), request_bytes(method, path, headers, body))


def problem_of(answer: RawAnswer) -> dict[str, object]:
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, object] = msgspec.json.decode(answer.body)
    return problem


@pytest.mark.parametrize("control", [b"\x01", b"\x7f", b"\x00"])
async def test_a_token_with_a_control_character_is_refused_401(
    server: Server, control: bytes
) -> None:
    answer = await send(server, "GET", "/v1/me", {"Authorization": b"Bearer ab" + control + b"cd"})

    assert answer.status == 401
    assert problem_of(answer)["code"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert b"ab" not in answer.body


async def test_a_key_with_a_control_character_is_refused_422_and_credits_nothing(
    server: Server,
) -> None:
    created = await send(server, "POST", "/v1/users", ADMIN, b'{"name": "ann", "balance": 100}')
    user = msgspec.json.decode(created.body)
    credit = b'{"amount": 500}'

    answer = await send(
        server, "POST", f"/v1/users/{user['id']}/wallet/credit",
        {**ADMIN, "Idempotency-Key": b"key\x01one"}, credit,
    )

    assert answer.status == 422
    problem = problem_of(answer)
    assert problem["code"] == "validation_error"
    assert problem["errors"] == [{"parameter": "Idempotency-Key", "detail": KEY_RULE}]
    after = await send(server, "GET", f"/v1/users/{user['id']}", ADMIN)
    assert msgspec.json.decode(after.body)["balance"] == 100


async def test_another_header_the_parser_refuses_is_a_400_problem_naming_it_not_its_value(
    server: Server,
) -> None:
    answer = await send(server, "GET", "/healthz", {"X-Trace": b"secret\x01value"})

    assert answer.status == 400
    problem = problem_of(answer)
    assert problem["code"] == "bad_request"
    assert "X-Trace" in str(problem["detail"])
    assert b"secret" not in answer.body


@pytest.mark.parametrize(("raw", "detail"), [
    # the target itself was the detail, or the URL's scheme
    (b"GET *SECRET-TOKEN HTTP/1.1\r\nHost: x\r\n\r\n",
     "the request's target is neither a path nor a URL with a host"),
    (b"GET http://x:99999/v1/me HTTP/1.1\r\nHost: x\r\n\r\n",
     "the request's target is neither a path nor a URL with a host"),
    # cut at the colon the words quote: "Data after `Connection" (aiohttp's parser answers
    # the bytes after such a request in its place, when they come in the same read)
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
     "Data after `Connection: close`"),
])
async def test_a_request_the_parser_refuses_is_said_in_its_words_never_its_bytes(
    server: Server, raw: bytes, detail: str
) -> None:
    host, port = server.url.removeprefix("http://").split(":")

    answer = await exchange(host, int(port), raw)

    assert (answer.status, problem_of(answer)["detail"]) == (400, detail)
    assert b"SECRET" not in answer.body


async def test_a_header_line_past_the_parsers_limit_is_a_400_problem(server: Server) -> None:
    answer = await send(server, "GET", "/healthz", {"X-Long": b"a" * 9_000})

    assert answer.status == 400
    problem = problem_of(answer)
    assert problem["code"] == "bad_request"
    # aiohttp's words were "Got more than 8190 bytes when reading"
    assert problem["detail"] == ("a line of the request (a header, or its target) is longer "
                                 "than the 8190 bytes this server reads")
    assert b"aaaa" not in answer.body


async def test_an_unparsable_request_is_answered_with_a_request_id_of_its_own(
    server: Server,
) -> None:
    # OpenAPI: every answer carries X-Request-Id; the client's own cannot be trusted among
    # headers that did not parse
    answers = [
        await send(server, "GET", "/healthz", {"X-Request-Id": b"mine", "X-Bad": b"a\x01"})
        for _ in range(2)
    ]

    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert ids[0] != ids[1]


async def test_an_unparsable_request_has_its_access_line_like_any_other(server: Server) -> None:
    # SPEC 8: one access line per request, with its method, route, status, duration and id
    with capture_logs() as logs:
        answer = await send(server, "GET", "/healthz", {"X-Bad": b"a\x01"})

    [line] = [line for line in logs if line["event"] == "request"]
    assert (line["method"], line["route"], line["status"]) == ("-", "unparsable", 400)
    assert line["request_id"] == answer.headers["x-request-id"]
    assert line["duration_ms"] >= 0 and line["user_id"] is None


async def test_the_server_still_answers_after_refusing_unparsable_requests(
    server: Server,
) -> None:
    await send(server, "GET", "/v1/me", {"Authorization": b"Bearer \x01"})

    assert (await send(server, "GET", "/healthz", {})).status == 200


async def test_unparsable_requests_are_counted_in_the_metrics(server: Server) -> None:
    # they reach no route, so the requests' own histogram never sees them: a flood of them
    # showed only in the log
    for _ in range(3):
        await send(server, "GET", "/healthz", {"X-Bad": b"a\x01"})

    metrics = await send(server, "GET", "/metrics", {})
    assert b"shopkeep_connections_unparsable_requests_total 3.0" in metrics.body
    # and timed as their access lines say them: the requests' histogram counts every line
    timed = b'_count{method="other",route="unparsable",status="400"} 3.0'
    assert b"shopkeep_http_request_duration_seconds" + timed in metrics.body


@pytest.mark.parametrize(
    ("coding", "says"),
    [
        (b"gzip", "content-encoding: gzip"),  # not compressed as it says: aiohttp refuses it
        (b"deflate", "content-encoding: deflate"),
        # aiohttp passes these on as they came: a JSON body under "bogus" made a user
        (b"bogus", "is not one this server decodes"),
        (b"x-gzip", "is not one this server decodes"),
        (b"compress", "is not one this server decodes"),
        (b"gzip, gzip", "is not one this server decodes"),
    ],
)
async def test_a_body_that_does_not_decode_as_its_coding_says_is_refused_400_and_changes_nothing(
    server: Server, coding: bytes, says: str
) -> None:
    answer = await send(
        server, "POST", "/v1/users", {**ADMIN, "Content-Encoding": coding}, b'{"name": "ann"}'
    )

    assert answer.status == 400
    if coding in (b"gzip", b"deflate"):
        assert answer.headers["connection"] == "close"  # aiohttp closes it after such a body
    problem = problem_of(answer)
    assert problem["code"] == "bad_request"
    assert says in str(problem["detail"])
    assert (await server.shop.list_users()).items == []


@pytest.mark.parametrize("transfer", [b"gzip, chunked", b"x-foo,chunked", b"deflate ,  Chunked"])
async def test_a_transfer_coding_before_chunked_is_refused_400_and_changes_nothing(
    server: Server, transfer: bytes
) -> None:
    # aiohttp read the chunks and passed the body on as if the gzip were not there: a plain
    # JSON body made a user, a gzipped one was "not JSON"
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"name": "ann"}'
    head = request_bytes("GET", "/v1/users", {**ADMIN, "Transfer-Encoding": transfer})
    request = head.replace(b"GET", b"POST", 1) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    answer = await exchange(host, int(port), request)

    assert answer.status == 400 and problem_of(answer)["code"] == "bad_request"
    assert "is not one this server decodes (chunked alone" in str(problem_of(answer)["detail"])
    assert (await server.shop.list_users()).items == []


async def test_a_coding_said_twice_is_refused_400_whatever_the_first_says(
    server: Server,
) -> None:
    # the check read the first line (identity), aiohttp inflates by the last (x-foo), which
    # it passes on raw: the credit was made
    twice = {**ADMIN, "Content-Encoding": b"identity\r\nContent-Encoding: x-foo"}

    answer = await send(server, "POST", "/v1/users", twice, b'{"name": "ann"}')

    assert answer.status == 400 and problem_of(answer)["code"] == "bad_request"
    assert "identity, x-foo" in str(problem_of(answer)["detail"])
    assert (await server.shop.list_users()).items == []


async def test_a_body_inflating_past_the_limit_is_refused_413_whatever_its_framing(
    server: Server,
) -> None:
    # sent whole with its Content-Length, it was taken as aiohttp inflated it: 70 KiB placed
    body = gzip.compress(b" " * 70 * 1024 + b'{"name": "ann"}')
    assert len(body) < HttpConfig.max_body_bytes

    answer = await send(server, "POST", "/v1/users", {**ADMIN, "Content-Encoding": b"gzip"}, body)

    assert answer.status == 413 and problem_of(answer)["code"] == "payload_too_large"
    assert (await server.shop.list_users()).items == []


async def test_a_placement_in_a_coding_the_server_does_not_decode_places_nothing(
    server: Server,
) -> None:
    # the placement's own quick read of the body skipped the check: a "bogus" order was placed
    shop = server.shop
    ann = await shop.create_user("ann")
    tea = await shop.create_goods("tea", price=100, stock=5)
    body = b'{"items": [{"goods_id": "%d", "quantity": 1}]}' % tea.id
    headers = {"Authorization": f"Bearer {ann.token}".encode(), "Content-Encoding": b"bogus"}

    answer = await send(server, "POST", "/v1/orders", headers, body)

    assert answer.status == 400 and problem_of(answer)["code"] == "bad_request"
    assert (await shop.get_goods(tea.id)).stock == 5
    assert (await shop.list_orders()).items == []


async def test_a_body_said_to_be_in_no_coding_is_taken(server: Server) -> None:
    answer = await send(
        server, "POST", "/v1/users", {**ADMIN, "Content-Encoding": b"Identity"}, b'{"name": "ann"}'
    )

    assert answer.status == 201


async def test_an_expectation_other_than_100_continue_is_ignored_and_answered_by_the_route(
    server: Server,
) -> None:
    request_id = b"expecting-something-else"
    answer = await send(
        server, "GET", "/healthz", {"Expect": b"100-continue-please", "X-Request-Id": request_id}
    )

    assert answer.status == 200  # RFC 9110 lets a server ignore it; aiohttp answered 417
    assert answer.headers["x-request-id"] == request_id.decode()


async def test_100_continue_still_comes_before_the_body_is_read(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        body = b'{"name": "ann", "balance": 100}'
        head = request_bytes("POST", "/v1/users", {**ADMIN, "Expect": b"100-continue"}, body)
        writer.write(head[: -len(body)])  # the headers alone: the body waits for the 100
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        answer = await asyncio.wait_for(read_answer(reader), 5)
    finally:
        writer.close()
    assert answer.status == 201


async def test_a_body_announced_too_large_is_refused_413_without_a_100_inviting_it(
    server: Server,
) -> None:
    # a 100 came first: a conforming client uploaded the whole body to learn it was refused
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            b"POST /v1/users HTTP/1.1\r\nHost: shop\r\nAuthorization: "
            + ADMIN["Authorization"]
            + b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        writer.write(head)  # the headers alone: the body would wait for the 100
        answer = await asyncio.wait_for(read_answer(reader), 5)
    finally:
        writer.close()
    assert answer.status == 413
    assert answer.headers["connection"] == "close"  # the body, if it comes, is no request
    assert (await server.shop.list_users()).items == []
