"""``shopkeep bench`` once its flags are checked: run, print, write the reports, exit.

The exit status is :func:`shopkeep.bench.load.report.exit_status`'s (0 ok, 1 the audit failed or
the shop was not quiet within ``--settle``, 4 the error rate is above ``--max-error-rate``, 3 a
threshold failed, 6 the run was interrupted: the most serious wins), or 2 when the setup could
not be done (the server cannot be reached, the admin token is refused: said in one line, before
any figure).

Ctrl-C (SIGINT) ends the run early: the journeys stop, one audit is asked, and the summary is
printed and the reports written as for any run (they say it was interrupted; no pass: status
6 unless something more serious failed). A second Ctrl-C
ends the process at once, with status 130 and no report, unless it came within
:data:`SAME_SIGNAL_S` of the first (then it is the same request); a Ctrl-C during the setup,
before any journey ran, ends it there (status 130, one line: there is nothing to report).
SIGTERM (``timeout``, a CI job's end, ``docker stop``) is taken as Ctrl-C: the run ends with
its summary, and an embedded run's temporary database is removed. Once the run is over, while
the summary is printed and the reports written, a signal is ignored: the status they say is
the one the process exits with (a Ctrl-C then ended it with 130 after a summary that said 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Final

from shopkeep.bench.common import install_uvloop, machine, publish
from shopkeep.bench.load.compare import Baseline
from shopkeep.bench.load.html_report import render_html
from shopkeep.bench.load.report import EXIT_SETUP, figures, render
from shopkeep.bench.load.run import (
    BenchOptions,
    Outcome,
    SetupInterrupted,
    drive,
    open_target,
)
from shopkeep.bench.load.target import Refused
from shopkeep.cli.flags import EXIT_INTERRUPTED
from shopkeep.runtime.collector import freeze_survivors
from shopkeep.stop_requests import StopRequests
from shopkeep.store.errors import StoreError
from shopkeep.store.gil import hand_gil_over_sooner


def say(line: str) -> None:
    """A line for the operator, on stderr (stdout is the report)."""
    print(line, file=sys.stderr, flush=True)


def quit_now(*_: object) -> None:
    """End the process at once: the operator asked twice."""
    say("bench: interrupted again: exiting now, without a report")
    os._exit(EXIT_INTERRUPTED)


STOPPING_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""What stops a run (the first) or ends the process (the second): Ctrl-C, and the SIGTERM of
``timeout``, a CI job's end or ``docker stop``."""


def interrupter(stop: asyncio.Event, running: asyncio.Event) -> Callable[[], None]:
    """The handler of :data:`STOPPING_SIGNALS` during the run: the first stops it, the second
    (not the first's echo: :mod:`shopkeep.stop_requests`) ends the process. During the setup
    (``running`` not set yet) the stop says nothing: the setup's end says it, in one line."""
    requests = StopRequests()

    def on_interrupt() -> None:
        asked = requests.asked()
        if asked == "same":
            return
        if asked == "again":
            quit_now()
        if running.is_set():
            say("bench: interrupted: stopping (interrupt again to quit now)")
        stop.set()

    return on_interrupt


def ignore_signals() -> None:
    """From the end of the run to the process's exit, :data:`STOPPING_SIGNALS` are ignored:
    the summary and the reports are being written, and the exit status they say must be the
    process's (a Ctrl-C then, or in the interpreter's exit, ended it with 130 after a summary
    that said 0). Writing them takes milliseconds; the process exits right after."""
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


async def measure(options: BenchOptions) -> Outcome:
    """Open the target and drive it, Ctrl-C or SIGTERM stopping the run early."""
    stop, running = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOPPING_SIGNALS:
        loop.add_signal_handler(signum, interrupter(stop, running))
    try:
        async with open_target(options, say) as target:
            return await drive(target, options, stop=stop, say=say, running=running)
    finally:
        for signum in STOPPING_SIGNALS:
            loop.remove_signal_handler(signum)


def execute(
    options: BenchOptions,
    json_path: str | None,
    html_path: str | None,
    baseline: Baseline | None = None,
) -> int:
    """Run the bench of ``options``; print the table; write JSON and HTML if asked; the exit
    status (see the module docstring). The process is to exit with it: from the end of the
    run on, :data:`STOPPING_SIGNALS` are ignored (:func:`ignore_signals`)."""
    load_before = os.getloadavg()[0]
    uvloop_version = install_uvloop()
    if options.url is None:
        # the embedded shop lives in this process, which is its server: its collector is kept
        # from walking the long-lived heap as ``serve``'s is (without it the full collections
        # grew with the shop and its p99 with them: 120 ms at the start of a minute, 500 at
        # its end), and its loop hands the GIL to the store's threads as soon (store/gil.py)
        freeze_survivors()
        hand_gil_over_sooner()
    try:
        outcome = asyncio.run(measure(options))
        ignore_signals()
    except SetupInterrupted as interrupted:
        say(f"bench: {interrupted}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        # a second Ctrl-C as the event loop closed, its handlers gone and ours not yet set
        say("bench: interrupted again: exiting now, without a report")
        return EXIT_INTERRUPTED
    except Refused as refused:
        where = options.url or "the embedded shop"
        say(f"shopkeep bench: error: setup against {where} failed: {refused}")
        return EXIT_SETUP
    except StoreError as refused:  # the embedded shop's database could not be opened
        say(f"shopkeep bench: error: setup of the embedded shop failed: {refused}")
        return EXIT_SETUP
    return report(options, outcome, json_path, html_path, baseline, uvloop_version, load_before)


REPORT_UNWRITTEN = 5
"""The exit status of a run that passed but whose --json or --html report could not be
written."""


def report(
    options: BenchOptions,
    outcome: Outcome,
    json_path: str | None,
    html_path: str | None,
    baseline: Baseline | None,
    uvloop_version: str | None,
    load_before: float,
) -> int:
    """Print the summary, write the reports, say the failures; the exit status."""
    data = figures(options, outcome, baseline)
    data["machine"] = machine(
        {"uvloop" if uvloop_version else "asyncio"}, uvloop_version, load_before
    )
    written = True
    # each report on its own: one that cannot be written (the paths were checked before the
    # run: a full disk, a folder gone) does not keep the other from being written. The HTML
    # first, so that the table and the JSON, written after it, give the status it leaves
    if html_path:
        try:
            with open(html_path, "w", encoding="utf-8") as file:
                file.write(render_html(data))
        except OSError as exc:
            say(f"bench: cannot write the --html report {html_path}: {exc}")
            written = False
            if data["exit_status"] == 0:
                data["exit_status"] = REPORT_UNWRITTEN
    try:
        publish(data, render(data), json_path)  # the table first: it is never lost
    except OSError as exc:
        say(f"bench: cannot write the --json report {json_path}: {exc}")
        written = False
    for failure in data["failures"]:
        say(f"bench: {failure}")
    for warning in data["warnings"]:
        say(f"bench: warning: {warning}")
    status: int = data["exit_status"]
    if status in (0, REPORT_UNWRITTEN) and not written:
        # the table, printed before the JSON could not be written, may say 0: the last line
        # says what the status is
        say(f"bench: the run passed, but its report was not written: exit status "
            f"{REPORT_UNWRITTEN}")
        return REPORT_UNWRITTEN
    return status
