"""The soak's code runs (for seconds, not minutes) and judges stability as it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeep.proof.soak import Plan, Soaked, judge, run, settled_memory


def soaked(p99s: list[float], memory: tuple[float, float], errors: int = 0) -> Soaked:
    minutes = [{"p99_ms": p99, "resident_memory_bytes": None} for p99 in p99s]
    return Soaked(100.0, 80.0, 80.0, minutes, memory[0], memory[1], errors, audit_ok=True)


def test_a_steady_soak_has_no_problem() -> None:
    assert judge(Plan(), soaked([40, 55, 70, 45], (60.0, 65.0))) == []


def test_memory_growing_past_its_bound_is_a_problem() -> None:
    assert judge(Plan(), soaked([40, 40], (60.0, 67.0))) == [
        "resident memory grew 11.7% (> 10%)"
    ]


def test_a_p99_drifting_past_twice_the_first_is_a_problem() -> None:
    problems = judge(Plan(), soaked([40, 60, 81], (60.0, 60.0), errors=2))
    assert problems == ["interval 3: p99 81 ms > 2 x the first's 40 ms", "2 errors"]


def test_memory_settles_one_interval_in() -> None:
    assert settled_memory([50.0, 60.0, 61.0]) == 60.0
    assert settled_memory([50.0]) == 50.0
    assert settled_memory([None, None]) is None


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_short_soak_offers_its_fraction_of_capacity_and_keeps_the_books(
    tmp_path: Path, writer: str
) -> None:
    plan = Plan(
        minutes=0.1, fraction=0.5, concurrency=8, capacity_seconds=2.0, interval_s=2.0,
        writer=writer,
    )  # fmt: skip
    result = await run(plan, tmp_path)
    assert result.audit_ok and result.errors == 0
    assert result.capacity_per_s > 0
    assert result.offered_per_s == 0.5 * result.capacity_per_s
    assert 0.7 * result.offered_per_s <= result.achieved_per_s <= 1.1 * result.offered_per_s
    assert len(result.minutes) >= 3
    assert result.memory_settled_mb and result.memory_end_mb
    assert result.line().startswith("soak: ")
