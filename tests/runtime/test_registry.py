"""The registry's order of last use, and the idle sweep's walk from its front."""

from __future__ import annotations

from shopkeep.runtime import Actor, Address
from shopkeep.runtime.cell import Cell
from shopkeep.runtime.registry import Registry


def listed(registry: Registry, *used_at: float) -> list[Cell]:
    """One cell per time in ``used_at``, added in that order, each first used then."""
    cells = [Cell(Address("probe", n), Actor, at) for n, at in enumerate(used_at)]
    for cell in cells:
        registry.add(cell)
    return cells


def order_of(registry: Registry) -> list[int]:
    return [cell.address.id for cell in registry.cells()]


def test_a_cell_used_again_a_second_after_it_was_listed_moves_to_the_end() -> None:
    registry = Registry()
    first, _ = listed(registry, 0.0, 0.5)
    registry.touch(first, 0.9)  # within the second it was listed: stays put
    assert order_of(registry) == [0, 1]
    registry.touch(first, 1.0)
    assert order_of(registry) == [1, 0]


def test_a_cell_used_every_half_second_still_moves_once_a_second() -> None:
    registry = Registry()
    busy, _ = listed(registry, 0.0, 0.1)
    for step in range(1, 5):  # used at 0.5, 1.0, 1.5, 2.0
        registry.touch(busy, step * 0.5)
    assert busy.listed_at == 2.0 and busy.last_used == 2.0
    assert order_of(registry) == [1, 0]


def test_the_sweep_drops_the_oldest_idle_cells_first_and_at_most_as_many_as_asked() -> None:
    registry = Registry()
    listed(registry, 0.0, 1.0, 2.0, 3.0)
    assert registry.passivate_idle(cutoff=10.0, most=3) == 3
    assert order_of(registry) == [3]


def test_the_sweep_skips_a_busy_cell_and_one_used_since_and_keeps_them() -> None:
    registry = Registry()
    _, busy, used_since, _ = listed(registry, 0.0, 1.0, 2.0, 3.0)
    busy.busy = True
    registry.touch(used_since, 2.5)  # within its second: still listed at 2.0
    assert registry.passivate_idle(cutoff=2.2, most=10) == 1
    assert order_of(registry) == [1, 2, 3]


def test_the_sweep_stops_at_the_first_cell_listed_after_its_cutoff() -> None:
    registry = Registry()
    _, recent = listed(registry, 0.0, 100.0)
    behind = Cell(Address("probe", 2), Actor, 200.0)
    registry.add(behind)
    behind.last_used = 0.0  # were the walk to go on, it would take this one too
    assert registry.passivate_idle(cutoff=50.0, most=10) == 1
    assert order_of(registry) == [1, 2]
    assert recent.address in registry
