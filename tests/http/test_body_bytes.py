"""A request's body is read once, in one step when it came whole with its headers, and
``request.read()`` answers the same bytes afterwards."""

from __future__ import annotations

import asyncio
from unittest import mock

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from shopkeep.http.inputs import body_bytes

BODY = b'{"items": [{"goods_id": "1", "quantity": 1}]}'


def request_with(
    body: bytes, headers: dict[str, str], *, whole: bool
) -> tuple[web.Request, StreamReader]:
    """A request whose body is ``body`` so far, and whole if ``whole``."""
    loop = asyncio.get_running_loop()
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
    payload.feed_data(body)
    if whole:
        payload.feed_eof()
    request = make_mocked_request("POST", "/v1/orders", headers, payload=payload)
    return request, payload


async def test_a_body_that_came_whole_is_taken_at_once_and_read_again_the_same() -> None:
    request, payload = request_with(BODY, {"Content-Length": str(len(BODY))}, whole=True)

    assert await body_bytes(request) == BODY
    assert await request.read() == BODY
    assert payload.is_eof()


async def test_a_body_still_arriving_is_read_by_aiohttp_to_its_end() -> None:
    request, payload = request_with(BODY[:10], {"Content-Length": str(len(BODY))}, whole=False)

    reading = asyncio.ensure_future(body_bytes(request))
    await asyncio.sleep(0)  # one turn: it runs until it waits for the rest
    assert not reading.done()
    payload.feed_data(BODY[10:])
    payload.feed_eof()

    assert await reading == BODY


async def test_a_chunked_body_is_read_by_aiohttp_within_its_limit() -> None:
    request, _ = request_with(BODY, {"Transfer-Encoding": "chunked"}, whole=True)

    assert await body_bytes(request) == BODY
