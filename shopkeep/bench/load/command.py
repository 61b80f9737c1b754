"""``shopkeep bench`` once its flags are checked: run, print, write the reports.

The exit status: 0 when the audit is ok and the error rate is at most ``--max-error-rate``;
1 otherwise, or when the setup could not be done (the server cannot be reached, the admin
token is refused: said in one line, before any figure).
"""

from __future__ import annotations

import asyncio
import os
import sys

from shopkeep.bench.common import install_uvloop, machine, publish
from shopkeep.bench.load.html_report import render_html
from shopkeep.bench.load.report import figures, render
from shopkeep.bench.load.run import BenchOptions, Outcome, drive, open_target
from shopkeep.bench.load.target import Refused


async def measure(options: BenchOptions) -> Outcome:
    """Open the target and drive it."""
    async with open_target(options) as target:
        return await drive(target, options)


def execute(options: BenchOptions, json_path: str | None, html_path: str | None) -> int:
    """Run the bench of ``options``; print the table; write JSON and HTML if asked; the exit
    status (see the module docstring)."""
    load_before = os.getloadavg()[0]
    uvloop_version = install_uvloop()
    try:
        outcome = asyncio.run(measure(options))
    except Refused as refused:
        where = options.url or "the embedded shop"
        print(f"shopkeep: error: bench setup against {where} failed: {refused}", file=sys.stderr)
        return 1
    data = figures(options, outcome)
    data["machine"] = machine(
        {"uvloop" if uvloop_version else "asyncio"}, uvloop_version, load_before
    )
    if html_path:
        with open(html_path, "w", encoding="utf-8") as file:
            file.write(render_html(data))
    status = publish(data, render(data), json_path)
    for failure in data["failures"]:
        print(f"bench: {failure}", file=sys.stderr)
    return max(status, 0 if data["passed"] else 1)
