"""SIGINT, SIGTERM and SIGHUP: the first stops the server gracefully, a second one ends it at
once."""

from __future__ import annotations

import asyncio
import os
import signal

from structlog.testing import capture_logs

from shopkeep.http.server import stop_signals, stopper
from shopkeep.stop_requests import SAME_SIGNAL_S


async def test_the_first_signal_asks_for_the_graceful_stop_and_says_which() -> None:
    stop = asyncio.Event()
    exits: list[int] = []

    with capture_logs() as logs:
        stopper(stop, exits.append)(signal.SIGTERM)

    assert stop.is_set()
    assert exits == []
    assert [(line["event"], line["signal"]) for line in logs] == [("stop_asked", "SIGTERM")]


async def test_a_hangup_stops_the_server_gracefully_as_a_sigterm_does() -> None:
    stop = asyncio.Event()
    exits: list[int] = []
    with stop_signals(stopper(stop, exits.append)):
        os.kill(os.getpid(), signal.SIGHUP)
        await stop.wait()
    assert exits == []
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # given back after the block


class Clock:
    """Seconds that pass only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_second_signal_while_stopping_ends_the_process_at_once() -> None:
    stop, clock = asyncio.Event(), Clock()
    exits: list[int] = []
    on_signal = stopper(stop, exits.append, clock)

    on_signal(signal.SIGTERM)
    clock.now += SAME_SIGNAL_S
    with capture_logs() as logs:
        on_signal(signal.SIGINT)

    assert exits == [128 + signal.SIGINT]  # 130, as a shell reports a Ctrl-C
    assert [(line["event"], line["log_level"], line["signal"]) for line in logs] == [
        ("stopping_now", "warning", "SIGINT")
    ]


async def test_a_second_sigterm_exits_with_the_status_a_shell_gives_it() -> None:
    stop, clock = asyncio.Event(), Clock()
    exits: list[int] = []
    on_signal = stopper(stop, exits.append, clock)

    on_signal(signal.SIGTERM)
    clock.now += 1.0
    on_signal(signal.SIGTERM)

    assert exits == [143]


async def test_a_signal_sent_twice_at_once_is_one_graceful_stop() -> None:
    # `timeout 4 make serve`: timeout's SIGTERM to make's group, then make's to its child, 85
    # microseconds apart, ended the stop they asked for in three runs of seven
    stop, clock = asyncio.Event(), Clock()
    exits: list[int] = []
    on_signal = stopper(stop, exits.append, clock)

    with capture_logs() as logs:
        on_signal(signal.SIGTERM)
        clock.now += 0.0001
        on_signal(signal.SIGTERM)

    assert stop.is_set() and exits == []
    assert [line["event"] for line in logs] == ["stop_asked"]


async def test_a_hangup_ignored_from_the_start_stays_ignored_as_nohup_asks() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts its command
    try:
        stop = asyncio.Event()
        with stop_signals(stopper(stop, [0].append)):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # no handler of ours
            os.kill(os.getpid(), signal.SIGHUP)  # dropped by the system, the process lives
        assert not stop.is_set()
    finally:
        signal.signal(signal.SIGHUP, previous)
