"""The seeded deterministic mode: replay an interleaving from its seed.

asyncio runs ready callbacks first-in first-out, so a test only ever sees one interleaving of
its tasks. :class:`SeededEventLoop` runs them in an order drawn from ``random.Random(seed)``
instead: each callback made ready is placed at a random position among those already waiting.
With the virtual clock and the store in inline mode (no threads), nothing else varies, so the
same seed replays the same interleaving exactly, and different seeds explore different ones.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class SeededEventLoop(asyncio.SelectorEventLoop):
    """An event loop whose ready queue is shuffled by a seeded random generator."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._random = random.Random(seed)

    def call_soon(
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """Schedule ``callback`` at a seeded random place among the ready callbacks."""
        handle = super().call_soon(callback, *args, context=context)
        ready = self._ready  # type: ignore[attr-defined]
        waiting = len(ready)
        if waiting > 1:
            position = self._random.randrange(waiting)
            if position != waiting - 1:
                ready.pop()
                ready.insert(position, handle)
        return handle


def run_seeded(seed: int, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh :class:`SeededEventLoop`."""
    loop = SeededEventLoop(seed)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
