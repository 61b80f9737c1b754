"""The HTTP overhead micro-benchmark counted in instructions: the same figure on every run
(to within 0.1%).

:mod:`shopkeep.bench.http_overhead` times shopkeep's HTTP layer and a bare aiohttp handler
over the same requests; on a shared machine those times swing with whatever else runs (the
ratio of their medians moved from 2.3 to 3.0 in a day). Instructions do not: ``python -m
shopkeep.bench.http_instructions`` counts what a request executes on each side under valgrind's
callgrind. Each side runs in a process of its own twice, building the same :data:`COUNTED`
requests both times (after handling a few to warm up) and handling them in one only, so the
difference over their number is what a request costs, its share of the collector included,
the building and the start-up not. ``PYTHONHASHSEED`` is fixed, so the dictionaries are the
same on every run, and the counts of the same code differ by a few hundredths of a percent
(172,624 and 172,688 for shopkeep's side in two runs). A change to the HTTP layer shows here
exactly, where the times cannot resolve it; the issue's target stays the time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from shopkeep.bench.http_overhead import both_apps, mocked_posts, run_as_served, user_tokens

COUNTED: Final = 1_000
"""Requests whose instructions are counted, on each side."""
SIDES: Final = ("shopkeep", "bare")
_COLLECTED: Final = re.compile(r"Collected : (\d+)")


async def handle_counted(side: str, count: int, handle: bool) -> None:
    """What a counted process does: build ``count`` requests for ``side`` (after handling a
    few to warm it up), and handle them only if ``handle``."""
    tokens = user_tokens()
    shop_side, bare_side = both_apps(tokens)
    app = shop_side if side == "shopkeep" else bare_side
    for request in mocked_posts(app, 200, tokens, "1"):
        await app._handle(request)
    requests = mocked_posts(app, count, tokens, "1")
    if handle:
        for request in requests:
            await app._handle(request)


def instructions_of(valgrind_output: str) -> int:
    """The instructions callgrind counted, from what it printed."""
    found = _COLLECTED.search(valgrind_output)
    if found is None:
        raise RuntimeError(f"callgrind printed no count: {valgrind_output[-500:]}")
    return int(found.group(1))


def count_instructions(side: str, count: int, handle: bool, valgrind: str) -> int:
    """The instructions a process of :func:`handle_counted` executes, under callgrind."""
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "shopkeep.bench.http_instructions",
         "--counted", side, str(count), "1" if handle else "0"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dictionaries on every run
    )  # fmt: skip
    return instructions_of(done.stderr)


def measure_instructions(count: int = COUNTED) -> dict[str, float]:
    """Instructions a request costs on each side and their ratio (see the module's
    docstring); RuntimeError without valgrind. Two processes at a time."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("counting instructions needs valgrind (Debian's package valgrind)")
    runs = [(side, handle) for side in SIDES for handle in (False, True)]
    with ThreadPoolExecutor(2) as pool:
        counted = list(
            pool.map(lambda run: count_instructions(run[0], count, run[1], valgrind), runs)
        )
    by_run = dict(zip(runs, counted, strict=True))
    each = {side: (by_run[side, True] - by_run[side, False]) / count for side in SIDES}
    return {
        "http_overhead_shopkeep_instructions": each["shopkeep"],
        "http_overhead_bare_instructions": each["bare"],
        "http_overhead_instructions_ratio": each["shopkeep"] / each["bare"],
        "http_overhead_counted": count,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m shopkeep.bench.http_instructions",
        description="instructions a request costs in shopkeep's HTTP layer and a bare handler",
    )
    parser.add_argument("--counted", nargs=3, help=argparse.SUPPRESS)  # a counted process
    options = parser.parse_args(argv)
    if options.counted:
        side, count, handle = options.counted
        run_as_served(handle_counted(side, int(count), handle == "1"))
        return 0
    print(json.dumps(measure_instructions(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
