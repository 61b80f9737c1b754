"""The seeded mode: one seed, one interleaving, replayed exactly; other seeds explore others."""

from __future__ import annotations

import asyncio
from typing import Any

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import VirtualClock
from tests.runtime.probe import Add, Arm, Get, journal_of_seeded_run, probe


async def ten_clients_racing_to_three_actors(runtime: Runtime, clock: VirtualClock) -> None:
    async def client(n: int) -> None:
        for step in range(3):
            await runtime.system.ask(probe((n + step) % 3), Add(n * 10 + step))
        await runtime.system.ask(probe(n % 3), Arm(f"t{n}", 5, n))

    await asyncio.gather(*(client(n) for n in range(10)))
    await clock.advance(10)
    for actor in range(3):
        await runtime.system.ask(probe(actor), Get())


def scenario(seed: int) -> list[tuple[int, Any]]:
    return journal_of_seeded_run(seed, ten_clients_racing_to_three_actors)


def test_the_same_seed_replays_the_same_interleaving() -> None:
    assert scenario(7) == scenario(7)


def test_different_seeds_explore_different_interleavings() -> None:
    runs = {repr(scenario(seed)) for seed in range(6)}
    assert len(runs) > 1
