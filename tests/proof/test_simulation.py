"""Group 1: 500 seeded simulations of the whole shop under faults, each replayable."""

from __future__ import annotations

from shopkeep.proof.simulation import figure, run_seed, run_seeds

SEEDS = 500


def test_five_hundred_seeds_keep_every_invariant_under_faults() -> None:
    failures, total = run_seeds(range(SEEDS))

    print(figure(total, len(failures), 0.0))
    replays = [f"seed {r.seed}: {r.failure} (replay: --seed {r.seed})" for r in failures]
    assert not replays, replays
    assert total["seeds"] == SEEDS
    # the faults did happen, not just the happy path
    for fault in (
        "crashes",
        "I/O errors",
        "duplicates acknowledged",
        "late payments",
        "acknowledgements lost",
        "forged callbacks",
    ):
        assert total[fault] >= SEEDS // 20, (fault, total[fault])


def test_a_seed_replays_its_trace_exactly() -> None:
    first, again = run_seed(7), run_seed(7)

    assert first.failure is None and again.failure is None
    assert first.digest == again.digest
    assert len(first.trace) > 30


def test_different_seeds_tell_different_stories() -> None:
    digests = {run_seed(seed).digest for seed in range(3)}

    assert len(digests) == 3
