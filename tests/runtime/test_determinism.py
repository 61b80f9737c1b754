"""The seeded mode: one seed, one interleaving, replayed exactly; other seeds explore others."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from shopkeep.bootstrap import open_runtime
from shopkeep.runtime import VirtualClock, run_seeded
from tests.runtime.probe import PROBE_MIGRATIONS, Add, Arm, Get, Probe, probe


def scenario(seed: int) -> list[tuple[int, object]]:
    """Ten clients racing to three actors, with timers; returns the order actors saw."""

    async def main() -> list[tuple[int, object]]:
        Probe.reset()
        clock = VirtualClock()
        with tempfile.TemporaryDirectory() as folder:
            async with open_runtime(
                str(Path(folder) / "d.db"),
                kinds=[Probe],
                migrations=PROBE_MIGRATIONS,
                clock=clock,
                inline=True,
            ) as rt:

                async def client(n: int) -> None:
                    for step in range(3):
                        await rt.system.ask(probe((n + step) % 3), Add(n * 10 + step))
                    await rt.system.ask(probe(n % 3), Arm(f"t{n}", 5, n))

                await asyncio.gather(*(client(n) for n in range(10)))
                await clock.advance(10)
                for actor in range(3):
                    await rt.system.ask(probe(actor), Get())
        return list(Probe.journal)

    return run_seeded(seed, main)


def test_the_same_seed_replays_the_same_interleaving() -> None:
    assert scenario(7) == scenario(7)


def test_different_seeds_explore_different_interleavings() -> None:
    runs = {repr(scenario(seed)) for seed in range(6)}
    assert len(runs) > 1
