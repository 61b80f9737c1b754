"""Live progress while a run goes: one line, rewritten in place on a terminal.

On a terminal (stderr is a TTY) the line is redrawn twice a second with a carriage return;
elsewhere (a CI log, a file) a plain line is printed every :data:`PLAIN_EVERY_S` seconds, so a
log is not flooded and still shows a run that hangs. The line: elapsed / planned seconds,
operations answered and their rate since the last refresh, errors, expected refusals, the p99
of every latency so far (read from the recorder's histogram), and the journeys parked until a
deadline (during the warm-up: its time and the operations left out). It is shown as the run
starts, and once more when it ends, its rate then over the whole run.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

from shopkeep.bench.load.recorder import Recorder, percentile_ms

TTY_EVERY_S = 0.5
PLAIN_EVERY_S = 5.0


def status_line(recorder: Recorder, planned_s: float, rate: float, parked: int) -> str:
    """The progress line (without a line end)."""
    p99_ms = percentile_ms(recorder.histogram, 99.0) or 0.0
    if recorder.warming_up():
        return (
            f"bench warm-up {recorder.now():.1f}/{recorder.warmup_s:g}s  "
            f"{recorder.warmup_operations:,} ops left out"
        )
    return (
        f"bench {recorder.measured():6.1f}/{planned_s:.0f}s  ops {recorder.count:,}  "
        f"{rate:,.0f} ops/s  errors {recorder.errors:,}  refused {recorder.refusals:,}  "
        f"p99 {p99_ms:,.1f} ms  parked {parked}"
    )


async def show_progress(
    recorder: Recorder, planned_s: float, parked: Callable[[], int], out: TextIO = sys.stderr
) -> None:
    """Write the progress line until cancelled (then end the line on a terminal)."""
    tty = out.isatty()
    every = TTY_EVERY_S if tty else PLAIN_EVERY_S
    last_count, last_at = recorder.count, recorder.measured()

    def show(*, final: bool = False) -> None:
        nonlocal last_count, last_at
        now = recorder.measured()
        since_count, since_at = (0, 0.0) if final else (last_count, last_at)
        rate = (recorder.count - since_count) / max(now - since_at, 1e-9)
        last_count, last_at = recorder.count, now
        line = status_line(recorder, planned_s, rate, parked())
        out.write("\r" + line + "\x1b[K" if tty else line + "\n")
        out.flush()

    try:
        show()  # at once: a log shows that the run started
        while True:
            await asyncio.sleep(every)
            show()
    finally:
        # the last state, always (its rate over the whole run): a run shorter than the plain
        # period still shows one line
        show(final=True)
        if tty:
            out.write("\n")
            out.flush()
