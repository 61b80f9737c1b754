"""configure_logging: one format for every line of the process, the standard library's too."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import structlog
from aiohttp.http_exceptions import BadHttpMessage, ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError
from hypothesis import given
from hypothesis import strategies as st

from shopkeep.logs import ACCESS, IsoTimestamper, configure_logging, level_of


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Each line of ``stream`` parsed as JSON (each must be one object)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_structlog_line_is_one_json_object_with_level_and_utc_timestamp() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    structlog.get_logger("test").info("stocked", goods_id=7)

    [line] = lines(out)
    assert line["event"] == "stocked" and line["goods_id"] == "7" and line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert len(line["timestamp"]) == len("2026-01-02T03:04:05.678901Z")


def test_an_id_is_written_as_text_as_the_api_writes_it_and_other_numbers_are_not() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    structlog.get_logger("test").info("paid", payment_id=387415539938492416, id=2**62, amount=5)

    [line] = lines(out)
    assert (line["payment_id"], line["id"]) == ("387415539938492416", str(2**62))
    assert line["amount"] == 5


def test_a_timestamp_is_the_utc_second_and_its_microseconds_zero_padded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamp = IsoTimestamper()
    second = 1_767_323_045  # 2026-01-02T03:04:05Z
    for nanos, expected in [
        (42_999, "2026-01-02T03:04:05.000042Z"),
        (678_901_000, "2026-01-02T03:04:05.678901Z"),
        (1_000_000_000, "2026-01-02T03:04:06.000000Z"),
        (999_999_999, "2026-01-02T03:04:05.999999Z"),  # back a second: its own date again
    ]:
        monkeypatch.setattr("time.time_ns", lambda nanos=nanos: second * 10**9 + nanos)
        assert stamp.now() == expected


@given(st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=20))
def test_a_timestamp_is_what_datetime_writes_for_any_times_in_any_order(
    times_ns: list[int],
) -> None:
    stamp = IsoTimestamper()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for ns in times_ns:
        with mock.patch("time.time_ns", return_value=ns):
            written = stamp.now()
        at = epoch + timedelta(microseconds=ns // 1000)
        assert written == at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_an_aiohttp_record_of_the_standard_library_comes_out_as_the_same_json() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    logging.getLogger("aiohttp.server").error("Error handling request from %s", "127.0.0.1")

    [line] = lines(out)
    assert line["event"] == "Error handling request from 127.0.0.1"
    assert (line["level"], line["logger"]) == ("error", "aiohttp.server")
    assert line["timestamp"].endswith("Z")


def test_a_record_of_the_standard_library_brings_only_the_fields_it_is_allowed() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    logging.getLogger("shopkeep.store").warning(
        "the writer process %d ended", 7,
        extra={"event": "writer_process_ended", "pid": 7, "how": "exit status 1", "cookie": "s"},
    )

    [line] = lines(out)
    assert (line["event"], line["pid"], line["how"]) == ("writer_process_ended", 7, "exit status 1")
    assert "cookie" not in line  # a library's own extras are not written unlooked at


async def test_an_asyncio_error_with_its_exception_is_one_json_line_with_the_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    try:
        raise ValueError("lost")
    except ValueError as error:
        asyncio.get_running_loop().call_exception_handler({"message": "boom", "exception": error})

    [line] = lines(out)
    assert (line["logger"], line["level"], line["event"]) == ("asyncio", "error", "boom")
    assert "ValueError: lost" in line["exception"]


def test_a_request_aiohttp_could_not_parse_is_one_warning_line_without_a_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise BadHttpMessage("Invalid header token")
    except BadHttpMessage as error:
        logging.getLogger("aiohttp.server").error(
            "Error handling request from %s", "127.0.0.1", exc_info=error
        )

    [line] = lines(out)
    assert line["event"] == (
        "Error handling request from 127.0.0.1: 400, message:\n  Invalid header token"
    )
    assert (line["level"], line["logger"]) == ("warning", "aiohttp.server")
    assert "exception" not in line


def test_a_body_that_did_not_decode_read_again_after_its_400_is_one_warning_line() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        try:
            raise ContentEncodingError("Can not decode content-encoding: gzip")
        except ContentEncodingError as cause:
            raise RequestPayloadError(str(cause)) from cause
    except RequestPayloadError as error:  # as aiohttp's lingering read of its rest raises it
        logging.getLogger("aiohttp.server").error("Unhandled exception", exc_info=error)

    [line] = lines(out)
    assert (line["level"], line["logger"]) == ("warning", "aiohttp.server")
    assert "Can not decode content-encoding: gzip" in line["event"]
    assert "exception" not in line


def test_any_other_error_of_aiohttps_keeps_its_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise RuntimeError("a bug")
    except RuntimeError as error:
        logging.getLogger("aiohttp.server").error("Error handling request", exc_info=error)

    [line] = lines(out)
    assert line["level"] == "error"
    assert "Traceback" in line["exception"] and "a bug" in line["exception"]


def test_lines_below_the_level_are_dropped_for_both_kinds_of_logger() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)

    structlog.get_logger("test").info("quiet")
    logging.getLogger("asyncio").info("quiet too")
    logging.getLogger("asyncio").warning("heard")

    assert [line["event"] for line in lines(out)] == ["heard"]


def test_aiohttps_own_access_log_is_silenced_at_info() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)

    logging.getLogger("aiohttp.access").info('127.0.0.1 "GET / HTTP/1.1" 200')

    assert out.getvalue() == ""


def test_the_databases_statements_and_their_parameters_are_not_logged_even_at_debug() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)

    logging.getLogger("aiosqlite").debug("executing %s", ("SELECT 1 WHERE token_hash = ?",))

    assert out.getvalue() == ""


def test_the_stripe_sdks_two_lines_a_call_are_not_logged_but_its_warnings_are() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    logging.getLogger("stripe").info("message='Request to Stripe api' method=post")
    logging.getLogger("stripe").warning("retrying")

    assert "Request to Stripe api" not in out.getvalue() and "retrying" in out.getvalue()


def test_the_console_format_is_plain_text_without_colours_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)

    structlog.get_logger("test").info("stocked", goods_id=7)
    logging.getLogger("asyncio").warning("slow callback")

    text = out.getvalue()
    assert "stocked" in text and "goods_id=7" in text and "slow callback" in text
    assert "\x1b[" not in text


def test_without_a_format_a_stream_that_is_no_terminal_gets_json() -> None:
    out = io.StringIO()
    configure_logging("info", None, stream=out)

    structlog.get_logger("test").info("stocked")

    assert lines(out)[0]["event"] == "stocked"


@pytest.mark.parametrize(
    ("given", "level"),
    [("debug", 10), ("INFO", 20), ("Warning", 30), ("error", 40), ("critical", 50), (25, 25)],
)
def test_a_level_is_a_name_in_any_case_or_a_number(given: str | int, level: int) -> None:
    assert level_of(given) == level


def test_an_unknown_level_or_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("info", "xml", stream=io.StringIO())


class CountingStream(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_the_info_lines_of_one_loop_turn_are_written_together_at_its_end() -> None:
    out = CountingStream()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger("test")

    for n in range(3):
        log.info("answered", n=n)
    assert out.getvalue() == ""
    await asyncio.sleep(0)  # the turn ends

    assert [line["n"] for line in lines(out)] == [0, 1, 2]
    assert out.writes == 1


async def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    out = CountingStream()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger("test")

    log.info("answered")
    logging.getLogger("asyncio").warning("slow callback")

    assert [line["event"] for line in lines(out)] == ["answered", "slow callback"]


async def test_access_lines_and_other_lines_of_a_turn_keep_the_order_they_were_logged_in() -> None:
    out = CountingStream()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger("test")

    ACCESS.request("GET", "/healthz", 200, 0.5, "first", None)
    log.info("between")
    ACCESS.request("POST", "/v1/orders", 201, 1.5, "second", "7")
    ACCESS.request("GET", "/v1/orders/{order_id}", 200, 0.7, "third", "7")
    await asyncio.sleep(0)  # the turn ends

    written = lines(out)
    assert [line.get("request_id", line["event"]) for line in written] == [
        "first", "between", "second", "third",
    ]  # fmt: skip
    assert written[2]["route"] == "/v1/orders" and written[2]["user_id"] == "7"
    assert out.writes == 1


def test_lines_logged_by_loops_on_several_threads_at_once_each_come_out_once() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)

    async def log_lines(thread: int) -> None:
        for n in range(2_000):
            ACCESS.request("GET", "/healthz", 200, 0.5, f"{thread}-{n}", None)
            if n % 50 == 0:
                await asyncio.sleep(0)  # a turn ends: its lines are written

    threads = [
        threading.Thread(target=asyncio.run, args=(log_lines(thread),)) for thread in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ACCESS.request("GET", "/healthz", 200, 0.5, "last", None)  # no loop here: written at once

    written = [line["request_id"] for line in lines(out)]
    expected = [f"{thread}-{n}" for thread in range(4) for n in range(2_000)]
    assert sorted(written) == sorted([*expected, "last"])
