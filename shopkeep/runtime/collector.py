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

It is process-wide, so it is for the program that owns the process to call: ``shopkeep serve``
and the benchmarks do; a program embedding the shop may.
"""

from __future__ import annotations

import gc
from typing import Any

_installed = False


def _freeze_after_generation_1(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def freeze_survivors() -> None:
    """Freeze what exists now, and from now on what survives each generation-1 collection.

    Calling it again does nothing more.
    """
    global _installed
    gc.freeze()
    if not _installed:
        gc.callbacks.append(_freeze_after_generation_1)
        _installed = True


def frozen_objects() -> int:
    """Objects in the permanent generation (for metrics)."""
    return gc.get_freeze_count()
