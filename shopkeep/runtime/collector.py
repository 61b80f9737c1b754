"""Keeping the cycle collector's pauses short in a process that holds many live actors.

Why: CPython's full (generation 2) collection walks every tracked object, and stops the event
loop while it does. A server holds a few tracked objects per live actor (its cell, its actor,
its address), so with a hundred thousand live orders a full collection took 45-180 ms here,
every few thousand placements: the longest stalls the loop saw. Yet these objects are freed by
reference counting when their actor is passivated; the collector is only needed for garbage
in reference cycles, and that garbage is young (an exception and its traceback, a coroutine's
frame).

What :func:`freeze_survivors` does: after every collection of generation 1, the objects that
survived it are moved to the permanent generation (``gc.freeze()``), which no collection walks.
Young collections go on as before and reclaim young cycles; full collections find almost
nothing to walk. The price: a reference cycle that is still alive after two young collections
and becomes garbage later is never reclaimed. The runtime breaks its own cycles explicitly (a
cell forgets its commit future once it is settled, a drained cell drops its task), so what
this can keep is bounded by the cycles some handler creates and keeps for long; the soak
measures the process's memory over time with this on.

It also collects the young generations less often (:data:`THRESHOLDS`). Each collection of
generation 0 walks what is live and young at that moment (under load, the requests in flight),
so at CPython's default of one every 700 new tracked objects a placement paid for being walked
many times: 14-21 us of loop CPU a placement in the collector, one of the larger single costs.
At 3,000 (and generation 1 every third) it is 5-6 us, and the longest collection 9 ms, against
6.5-8.5 ms at the default (an embedded run of 60,000 keyed placements, 64 customers, twice each).
Larger thresholds cost less still but pause longer: 10,000 with generation 1 every time, 3-4 us
and 15 ms; 20,000 and the default ten, 3-4 us but 80-107 ms, since generation 1 then holds ten
young generations' survivors when it is walked. Over HTTP (``python -m shopkeep.bench.http``,
three alternated pairs): 7-8 us a placement against 26-30, 6.6% more placements a second, the
half-load p99 the same within the runs' spread (docs/performance.md).

It is process-wide, so it is for the program that owns the process to call: ``shopkeep serve``
and the benchmarks do; a program embedding the shop may.

A runtime that closes leaves its whole graph (the system, its registry and cells, the store)
to the collector, since its parts refer to each other, and much of it was frozen while it ran:
a process that runs several shops one after the other would keep every closed one. So a
runtime that opens first collects what is frozen (:func:`collect_frozen`, called by
``bootstrap.open_runtime``).
"""

from __future__ import annotations

import gc
from typing import Any

_installed = False
THRESHOLDS = (3_000, 3, 10)
"""``gc.set_threshold``'s three figures while the survivors are frozen (see the module)."""


def _freeze_after_generation_1(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def freeze_survivors() -> None:
    """Freeze what exists now, and from now on what survives each generation-1 collection;
    collect at :data:`THRESHOLDS`.

    Calling it again does nothing more.
    """
    global _installed
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    if not _installed:
        gc.callbacks.append(_freeze_after_generation_1)
        _installed = True


def frozen_objects() -> int:
    """Objects in the permanent generation. CPython counts them by walking the generation's
    list: about 10 ms a million objects, more with cold caches, all on the calling thread, so
    not for a scrape of a busy server (a bench server's /metrics stalled its loop 27 - 40 ms)."""
    return gc.get_freeze_count()


def collect_frozen() -> int:
    """Give the frozen objects back to the collector, collect every generation, and freeze
    what survives; return how many objects were collected (0, and nothing done, when
    survivors are not frozen in this process).

    A full collection of the whole heap: a few hundred milliseconds after a closed shop of a
    few seconds' placements (three such shops in a row left 432,986 frozen objects and a peak
    of 270 MB; collected before each next one, 34,390 and 164 MB). Call it where that pause is
    harmless: ``bootstrap.open_runtime`` does, before a runtime takes messages, when no other
    runtime of the process is open (a running one would pause with it).
    """
    if not _installed:
        return 0
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected
