"""The HTTP micro-benchmark in instructions (``shopkeep.bench.http_instructions``): a counted
process handles its requests, callgrind's count is read from what it prints, and without
valgrind it says what it needs instead of failing obscurely. (The counts themselves take a
minute under valgrind: the on-demand run's business, not the suite's.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shopkeep.bench import http_instructions
from shopkeep.bench.http_instructions import instructions_of, measure_instructions

ROOT = Path(__file__).resolve().parents[2]

CALLGRIND_TAIL = """==123== Events    : Ir
==123== Collected : 1234567890
==123==
==123== I   refs:      1,234,567,890
"""


@pytest.mark.parametrize("side", ["shopkeep", "bare"])
def test_a_counted_process_handles_its_requests_and_ends_cleanly(side: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shopkeep.bench.http_instructions", "--counted", side, "20", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_count_is_read_from_what_callgrind_prints() -> None:
    assert instructions_of(CALLGRIND_TAIL) == 1_234_567_890


def test_output_without_a_count_is_an_error_that_shows_the_output() -> None:
    with pytest.raises(RuntimeError, match="valgrind: not a callgrind run"):
        instructions_of("valgrind: not a callgrind run")


def test_without_valgrind_the_mode_says_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs valgrind"):
        measure_instructions(10)


def test_the_per_request_count_is_the_difference_over_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = {
        ("shopkeep", False): 1_000_000, ("shopkeep", True): 1_000_000 + 10 * 150,
        ("bare", False): 900_000, ("bare", True): 900_000 + 10 * 60,
    }  # fmt: skip
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/valgrind")
    monkeypatch.setattr(
        http_instructions,
        "count_instructions",
        lambda side, count, handle, valgrind: counted[side, handle],
    )
    figures = measure_instructions(10)
    assert figures["http_overhead_shopkeep_instructions"] == 150
    assert figures["http_overhead_bare_instructions"] == 60
    assert figures["http_overhead_instructions_ratio"] == 2.5
