"""Group 3: every database call of every operation fails once, and for good, in turn."""

from __future__ import annotations

from shopkeep.proof.storage_faults import MODES, figure, run_all
from shopkeep.proof.storage_operations import OPERATIONS


def test_a_storage_fault_at_any_call_leaves_no_partial_effect_and_memory_equal_to_disk() -> None:
    names = [operation.name for operation in OPERATIONS]

    tally = run_all(names, MODES)

    print(figure(tally, 0.0))
    assert tally.failures == []
    assert set(tally.points) == {(name, mode) for name in names for mode in MODES}
    assert all(points >= 10 for points in tally.points.values()), tally.points
    assert tally.total >= 300
