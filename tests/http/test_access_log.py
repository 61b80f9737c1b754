"""One access-log line per request: method, route pattern, status, duration, request id, user."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from shopkeep.logs import ACCESS, configure_logging
from tests.http.conftest import ADMIN, Api


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """The process logging as ``serve`` does (JSON), into a stream; restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    yield stream
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def requests(stream: io.StringIO) -> list[dict[str, Any]]:
    """The access-log lines written to ``stream``."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in parsed if line["event"] == "request"]


async def test_a_request_writes_one_line_naming_its_route_pattern_not_its_ids(
    api: Api, out: io.StringIO
) -> None:
    alice = await api.customer()
    tea = await api.goods()
    out.truncate(0)
    out.seek(0)

    answered = await api.call("GET", f"/v1/goods/{tea}", alice.headers)

    [line] = requests(out)
    assert line == {
        "event": "request",
        "level": "info",
        "method": "GET",
        "route": "/v1/goods/{goods_id}",
        "status": 200,
        "request_id": answered.headers["X-Request-Id"],
        "user_id": alice.id,
        "duration_ms": line["duration_ms"],
        "timestamp": line["timestamp"],
    }
    assert 0 <= line["duration_ms"] < 10_000


async def test_problems_unmatched_paths_and_the_admin_are_logged_too(
    api: Api, out: io.StringIO
) -> None:
    await api.call("GET", "/no/such/path", {})
    await api.call("GET", "/v1/orders", {})  # no token: 401
    await api.call("GET", "/v1/users/1", ADMIN)  # no such user: 404
    given = await api.call("GET", "/healthz", {"X-Request-Id": "trace-me-42"})

    logged = [(r["route"], r["status"], r["user_id"], r["request_id"]) for r in requests(out)]
    assert logged == [
        ("unmatched", 404, None, logged[0][3]),
        ("/v1/orders", 401, None, logged[1][3]),
        ("/v1/users/{user_id}", 404, None, logged[2][3]),
        ("/healthz", 200, None, "trace-me-42"),
    ]
    assert given.headers["X-Request-Id"] == "trace-me-42"


async def test_a_path_holding_a_newline_is_answered_and_logged_as_any_unmatched_one(
    api: Api, out: io.StringIO
) -> None:
    # aiohttp's "." stops at a newline: no route took /healthz%0A, and aiohttp answered a
    # plain-text 404 of its own, with no request id and no access line
    for path in ("/healthz%0A", "/v1/orders/1%0A", "/v1/me%0A"):
        answered = await api.call("GET", path, {})

        assert answered.status == 404, path
        assert answered.headers["Content-Type"] == "application/problem+json"
        assert answered.body["code"] == "not_found"
        assert "X-Request-Id" in answered.headers
    logged = [(r["route"], r["status"]) for r in requests(out)]
    assert logged == [("unmatched", 404)] * 3


async def test_above_info_no_request_is_logged(api: Api, out: io.StringIO) -> None:
    configure_logging("warning", "json", stream=out)

    await api.call("GET", "/healthz", {})

    assert requests(out) == []


async def test_a_program_that_configured_structlog_itself_gets_the_line_as_an_event(
    api: Api,
) -> None:
    with capture_logs() as captured:
        answered = await api.call("GET", "/healthz", {})

    [line] = [event for event in captured if event["event"] == "request"]
    assert line["route"] == "/healthz" and line["status"] == 200
    assert line["request_id"] == answered.headers["X-Request-Id"]


def test_the_json_access_line_is_the_line_the_renderer_writes_from_the_same_event(
    out: io.StringIO,
) -> None:
    ACCESS.request("POST", "/v1/orders", 201, 1.25, "req-1", None)
    writer = structlog.get_config()["logger_factory"]()
    writer.flush()
    [direct] = out.getvalue().splitlines()
    stamped = json.loads(direct)["timestamp"]

    renderer = structlog.get_config()["processors"][-1]
    event = {
        "method": "POST", "route": "/v1/orders", "status": 201, "duration_ms": 1.25,
        "request_id": "req-1", "user_id": None, "event": "request", "level": "info",
        "timestamp": stamped,
    }  # fmt: skip
    assert direct == renderer(None, "info", event)


def configure_structlog_to_keep_events() -> list[structlog.typing.EventDict]:
    """Configure structlog as a program embedding shopkeep might: every event kept in the list
    returned."""
    events: list[structlog.typing.EventDict] = []

    def keep(logger: object, method: str, event: structlog.typing.EventDict) -> str:
        events.append(event)
        return "kept"

    structlog.configure(processors=[keep], logger_factory=structlog.ReturnLoggerFactory())
    return events


async def test_a_program_that_configures_structlog_after_serve_did_gets_the_line_as_an_event(
    out: io.StringIO,
) -> None:
    events = configure_structlog_to_keep_events()
    ACCESS.request("POST", "/v1/orders", 201, 1.25, "req-1", "7")
    ACCESS.request("GET", "/healthz", 200, 0.5, "req-2", None)
    await asyncio.sleep(0)  # the turn ends: nothing waits in serve's writer

    assert [(e["route"], e["request_id"]) for e in events] == [
        ("/v1/orders", "req-1"), ("/healthz", "req-2"),
    ]  # fmt: skip
    assert out.getvalue() == ""


async def test_structlog_configured_between_two_loop_turns_gets_the_later_turns_lines(
    out: io.StringIO,
) -> None:
    ACCESS.request("POST", "/v1/orders", 201, 1.25, "before", "7")
    await asyncio.sleep(0)  # the turn ends: serve's writer writes its line
    events = configure_structlog_to_keep_events()
    ACCESS.request("GET", "/healthz", 200, 0.5, "after", None)
    await asyncio.sleep(0)

    assert [json.loads(line)["request_id"] for line in out.getvalue().splitlines()] == ["before"]
    assert [e["request_id"] for e in events] == ["after"]
