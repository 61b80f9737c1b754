"""Group 1: 500 seeded simulations of the whole shop under faults, each replayable.

The seeds run in five batches of a hundred, so that each test stays well inside the suite's
per-test timeout on a slow machine, and a failure names its batch as well as its seeds.
"""

from __future__ import annotations

import pytest

import shopkeep.payments.sandbox as sandbox_module
from shopkeep.proof.simulation import figure, main, run_seed, run_seeds

SEEDS = 500
BATCH = 100
FAULTS = (
    "crashes",
    "I/O errors",
    "duplicates acknowledged",
    "late payments",
    "acknowledgements lost",
    "forged callbacks",
)


@pytest.mark.parametrize("first", range(0, SEEDS, BATCH))
def test_a_hundred_seeds_keep_every_invariant_under_faults(first: int) -> None:
    failures, total = run_seeds(range(first, first + BATCH))

    print(figure(total, len(failures), 0.0))
    replays = [f"seed {r.seed}: {r.failure} (replay: --seed {r.seed})" for r in failures]
    assert not replays, replays
    assert total["seeds"] == BATCH
    for fault in FAULTS:  # the faults did happen: not only the happy path was proven
        assert total[fault] >= BATCH // 20, (fault, total[fault])


def test_a_seed_replays_its_trace_exactly() -> None:
    first, again = run_seed(7), run_seed(7)

    assert first.failure is None and again.failure is None
    assert first.digest == again.digest
    assert len(first.trace) > 30


def test_different_seeds_tell_different_stories() -> None:
    digests = {run_seed(seed).digest for seed in range(3)}

    assert len(digests) == 3


def test_a_failing_seed_is_printed_with_its_replay_and_replays_identically(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a planted bug: the sandbox provider takes every signature for good, so forgeries get
    # through
    monkeypatch.setattr(sandbox_module, "verify", lambda *_: (True, "ok"))

    status = main(["--seeds", "8"])

    printed = capsys.readouterr().out
    assert status == 1
    failing = [int(line.split()[1]) for line in printed.splitlines() if "FAILED" in line]
    assert failing, printed
    seed = failing[0]
    assert f"replay: python -m shopkeep.proof simulation --seed {seed}" in printed
    first, again = run_seed(seed), run_seed(seed)
    assert first.failure is not None and "forged callback" in first.failure
    assert (again.failure, again.digest) == (first.failure, first.digest)
