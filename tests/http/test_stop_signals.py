"""SIGINT and SIGTERM: the first stops the server gracefully, a second one ends it at once."""

from __future__ import annotations

import asyncio
import signal

from structlog.testing import capture_logs

from shopkeep.http.server import stopper


async def test_the_first_signal_asks_for_the_graceful_stop() -> None:
    stop = asyncio.Event()
    exits: list[int] = []

    stopper(stop, exits.append)(signal.SIGTERM)

    assert stop.is_set()
    assert exits == []


async def test_a_second_signal_while_stopping_ends_the_process_at_once() -> None:
    stop = asyncio.Event()
    exits: list[int] = []
    on_signal = stopper(stop, exits.append)

    on_signal(signal.SIGTERM)
    with capture_logs() as logs:
        on_signal(signal.SIGINT)

    assert exits == [128 + signal.SIGINT]  # 130, as a shell reports a Ctrl-C
    assert [(line["event"], line["log_level"], line["signal"]) for line in logs] == [
        ("stopping_now", "warning", "SIGINT")
    ]


async def test_a_second_sigterm_exits_with_the_status_a_shell_gives_it() -> None:
    stop = asyncio.Event()
    exits: list[int] = []
    on_signal = stopper(stop, exits.append)

    on_signal(signal.SIGTERM)
    on_signal(signal.SIGTERM)

    assert exits == [143]
