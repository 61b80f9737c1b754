"""How soon the event loop hands the GIL to the store's threads: within half a millisecond.

Why: the store's writer thread needs the GIL for a few tens of microseconds at each end of a
batch (to hand the statements to the writer process and to read its answer; with the thread
writer, to bind each statement), and the reader thread for each row it returns. While the event
loop runs Python it holds the GIL, and CPython makes a thread that wants it wait for the switch
interval, 5 ms by default, before the holder is asked to let go. Under load the loop is seldom
idle, so each batch waited up to twice that: ``python -m shopkeep.bench.shop`` measured the
writer's time per batch in the run at 5.6 ms against 2.2 - 3.6 ms for the same batches alone,
and 3.5 - 3.7 ms once the interval was 0.5 ms (plain placements' p99 21.5 -> 18 - 19 ms). The
price is a few more switches while two threads both want to run Python, each a few
microseconds.

The interval is the interpreter's, for the whole process: the program that owns the process
sets it (``shopkeep serve``, the benchmarks, ``shopkeep bench --embedded``); a program embedding
the shop may call :func:`hand_gil_over_sooner` too.
"""

from __future__ import annotations

import sys
from typing import Final

SWITCH_INTERVAL_S: Final = 0.0005
"""The longest a thread that wants the GIL waits before its holder is asked to release it."""


def hand_gil_over_sooner() -> None:
    """Set the interpreter's switch interval to :data:`SWITCH_INTERVAL_S` (process-wide)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
