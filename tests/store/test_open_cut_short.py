"""A shop whose opening is cut short (its task cancelled, a Ctrl-C) leaves no thread behind.

aiosqlite's reader threads are no daemons: one left running, a reader opened before the cut
or one cut between its connect and its settings, would keep the program from ever exiting once
``asyncio.run`` returned."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from shopkeep.shop import Shop

CUTS = 200
"""Cuts tried, one a loop turn later than the one before: the opening's awaits all fall
within them."""
JOIN_S = 5.0
"""How long the threads left are given to end, all together: one that does not has nothing to
end it."""


async def test_an_opening_cut_at_any_turn_leaves_no_thread_running(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    async with Shop.open(path, gateway="sandbox"):  # made once: each cut opens it again
        pass
    before = set(threading.enumerate())

    async def use() -> None:
        async with Shop.open(path, gateway="sandbox") as shop:
            await shop.create_user("ann")

    for turns in range(CUTS):
        task = asyncio.ensure_future(use())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    left = [thread for thread in threading.enumerate() if thread not in before]
    deadline = time.monotonic() + JOIN_S
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert [thread.name for thread in left if thread.is_alive()] == []
