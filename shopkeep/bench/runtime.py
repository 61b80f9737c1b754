"""The runtime benchmark: the actor runtime and its store, each figure beside a baseline.

``python -m shopkeep.bench.runtime --json PATH [--quick] [--writer thread|process]`` measures,
in one run on this machine, and prints a table (metric, value, target, baseline/peer,
pass/fail). A missed target is reported, never an exit status: the figures are for people, not
a gate. ``--writer`` chooses where every section's store commits, on a thread of the section's
process or in a writer process of its own (see :mod:`shopkeep.store.writer_process`); without
it, the store's default; the JSON's ``scale.writer`` says which.

What is measured, and why each comparison is fair:

- ``ask_per_s``: sequential ``await system.ask(addr, Ping())`` to one live actor whose handler
  writes nothing. Its ceiling, ``raw_future_ask_per_s``, is the least any asyncio mailbox can do:
  a deque, one long-lived consumer task woken by a future when the deque is empty, and a bare
  future per ask; no addressing, supervision, timeout or commit tracking. Both run on the same
  loop in the same process, interleaved, best of three rounds. ``pykka_ask_per_s`` is the same
  round trip with a pykka ThreadingActor (``ref.ask``), the usual Python actor library: its asks
  cross threads, which is what it costs to use it from a program. The runtime's ask runs the
  handler in the asker's task when the actor is idle (eager dispatch, ``RuntimeConfig.eager``);
  ``ask_no_eager_per_s`` shows the same ask through the mailbox task, for reference.
- ``tell_per_s`` / ``pykka_tell_per_s``: N tells to one actor then one ask, N / time. The
  runtime's mailbox is bounded, so this section raises the bound above N (a bound is a limit on
  memory, not on speed); pykka's inbox is unbounded.
- ``commit_units_per_s_group``: 64 clients, each asking its own actor in a loop; each message
  writes a unit of 10 row inserts, and an ask is answered only after its unit is committed
  (``synchronous=FULL``, so each commit is an fsync). ``commit_units_per_s_single`` is the same
  workload through the same writer with ``max_batch=1``: one transaction, one fsync per unit,
  which is what an actor store without group commit does. ``commit_mean_batch_*`` is
  ``units / batches`` of the writer during the timed window,
  ``commit_writer_ms_per_batch_group`` the writer thread's time per batch (from taking it to its
  commit; with a writer process, the wait for it included), and ``commit_writer_in_process`` is 1
  when the writer committed in a process of its own. ``commit_sqlite_ceiling_*`` is what
  bare sqlite3 does with the same rows and transactions (64 units or 1 unit per commit) back to
  back in one thread: the disk's and SQLite's share of the cost, with no event loop in the way.
- ``idle_actor_bytes``: memory per live idle actor over 100,000 activations of a kind with one
  int field (each loaded from the store, asked once, written nothing), by tracemalloc (every
  Python allocation the activations keep, registry slot included); ``idle_actor_rss_bytes`` is
  the process RSS growth per actor, measured in a pass without tracemalloc, and
  ``activations_per_s`` how fast that pass activated them (64 at a time).
- ``idle_sweep_stall_ms``: the longest stall of the loop while the periodic idle sweep (every
  second, at an idle timeout of 2 s) passivates as many actors as ``idle_actor_bytes`` counts,
  activated together; beside it, ``idle_sweep_one_turn_ms``, the same number dropped in one
  turn of the loop, as the sweep did before it took a slice of them a turn.
- ``timers_1m_rss_mb``: process RSS with 1,000,000 durable timers pending (armed through actors:
  1,000 actors x 10 messages x 100 timers, due in a day), the system still running.
- ``timer_lateness_p99_ms``: 10,000 timers due uniformly in a 10 s window (armed a few seconds
  before), fired while 64 clients run the commit workload; p99 of due-to-handled time (the
  runtime's own ``system.timers.lateness`` samples), with p50, max and the load's rate beside.
- ``restart_ready_s``: a database holding 1,000,000 actors' rows and 1,000,000 pending timers;
  the parent's wall time from spawning a fresh process (``--ready-probe DB``: open the store,
  start the system) to its line "ready". The file is in the page cache (a process restart, not a
  machine reboot); interpreter start and imports are included, as they are for a real restart.

Every section runs in its own child process (``--section NAME``), on its own database in a fresh
temporary directory, so no section inherits another's heap, garbage or threads: the memory
figures are of a process that did only that. ``--quick`` scales everything down for the tests;
its figures show that each section works, not what the runtime can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, replace
from typing import Any

from shopkeep.bench.common import install_uvloop, machine
from shopkeep.bench.runtime_sections import (
    measure_asks,
    measure_commit_group,
    measure_commit_single,
    measure_idle_actors,
    measure_idle_sweep,
    measure_pykka,
    measure_restart,
    measure_tells,
    measure_timer_lateness,
    measure_timers_rss,
    ready_probe,
)
from shopkeep.bench.runtime_subject import (
    MODULE,
    QUICK,
    ROOT,
    Figures,
    Scale,
    child_env,
    temp_folder,
)
from shopkeep.store import StoreConfig
from shopkeep.store.database import WRITER_MODES

# -- the report -----------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Scale], Coroutine[Any, Any, Figures] | Figures]] = {
    "asks": measure_asks,
    "tells": measure_tells,
    "pykka": measure_pykka,
    "commit_group": measure_commit_group,
    "commit_single": measure_commit_single,
    "idle_actors": measure_idle_actors,
    "idle_sweep": measure_idle_sweep,
    "timers_rss": measure_timers_rss,
    "timer_lateness": measure_timer_lateness,
    "restart": measure_restart,
}


@dataclass(frozen=True)
class Target:
    """A goal for one figure, possibly relative to a baseline's figure."""

    name: str
    metric: str
    text: str
    met: Callable[[Figures], bool]
    peer: str | None = None


TARGETS = (
    Target(
        "ask_vs_raw_future",
        "ask_per_s",
        ">= 0.7 x raw future",
        lambda f: f["ask_per_s"] >= 0.7 * f["raw_future_ask_per_s"],
        "raw_future_ask_per_s",
    ),
    Target(
        "ask_vs_pykka",
        "ask_per_s",
        ">= 10 x pykka",
        lambda f: f["ask_per_s"] >= 10 * f["pykka_ask_per_s"],
        "pykka_ask_per_s",
    ),
    Target(
        "commit_group_absolute",
        "commit_units_per_s_group",
        ">= 30,000",
        lambda f: f["commit_units_per_s_group"] >= 30_000,
    ),
    Target(
        "commit_group_vs_single",
        "commit_units_per_s_group",
        ">= 5 x single",
        lambda f: f["commit_units_per_s_group"] >= 5 * f["commit_units_per_s_single"],
        "commit_units_per_s_single",
    ),
    Target(
        "idle_actor_bytes", "idle_actor_bytes", "<= 1,000", lambda f: f["idle_actor_bytes"] <= 1000
    ),
    Target(
        "idle_sweep_stall_ms",
        "idle_sweep_stall_ms",
        "<= 20",
        lambda f: f["idle_sweep_stall_ms"] <= 20,
        "idle_sweep_one_turn_ms",
    ),
    Target(
        "timers_1m_rss_mb", "timers_1m_rss_mb", "<= 300", lambda f: f["timers_1m_rss_mb"] <= 300
    ),
    Target(
        "timer_lateness_p99_ms",
        "timer_lateness_p99_ms",
        "<= 50",
        lambda f: f["timer_lateness_p99_ms"] <= 50,
    ),
    Target("restart_ready_s", "restart_ready_s", "<= 2", lambda f: f["restart_ready_s"] <= 2),
)


def _format(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def render_table(figures: Figures, met: dict[str, bool]) -> str:
    """The report as a fixed-width table: targets first, then the other figures."""
    rows = [("metric", "value", "target", "baseline/peer", "result")]
    for target in TARGETS:
        peer = ""
        if target.peer:
            ratio = figures[target.metric] / figures[target.peer]
            peer = f"{target.peer} = {_format(figures[target.peer])} (x{ratio:.2f})"
        result = "pass" if met[target.name] else "FAIL"
        rows.append((target.metric, _format(figures[target.metric]), target.text, peer, result))
    targeted = {target.metric for target in TARGETS}
    for metric, value in figures.items():
        if metric not in targeted:
            rows.append((metric, _format(value), "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def run_section(name: str, scale: Scale) -> Figures:
    """Run one section in this process and return its figures."""
    outcome = SECTIONS[name](scale)
    if isinstance(outcome, dict):
        return outcome
    return asyncio.run(outcome)


def run_section_in_child(name: str, quick: bool, writer: str | None) -> tuple[Figures, str]:
    """Run one section in a fresh process; its figures and the event loop it used."""
    with temp_folder() as directory:
        out = os.path.join(directory, "section.json")
        command = [sys.executable, "-m", MODULE, "--section", name, "--json", out]
        if quick:
            command.append("--quick")
        if writer is not None:
            command += ["--writer", writer]
        child = subprocess.run(command, cwd=ROOT, env=child_env(), timeout=1800, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"section {name} failed with status {child.returncode}")
        with open(out) as file:
            report = json.load(file)
    return {k: float(v) for k, v in report["figures"].items()}, str(report["loop"])


def run_all(
    quick: bool, json_path: str | None, uvloop_version: str | None, writer: str | None = None
) -> dict[str, Any]:
    """Every section, each in its own process; print the table, write the JSON."""
    figures: Figures = {}
    loops: set[str] = set()
    load_before = os.getloadavg()[0]
    for name in SECTIONS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        section, loop = run_section_in_child(name, quick, writer)
        figures.update(section)
        loops.add(loop)
    met = {target.name: bool(target.met(figures)) for target in TARGETS}
    report: dict[str, Any] = {
        **figures,
        "machine": machine(loops, uvloop_version, load_before),
        "scale": {"quick": quick, **asdict(replace(QUICK if quick else Scale(), writer=writer))},
        "targets_met": met,
    }
    print(render_table(figures, met))
    print(
        f"event loop: {', '.join(sorted(loops))}; quick: {quick}; "
        f"writer: {writer or 'the default (' + StoreConfig.writer + ')'}"
    )
    if json_path is not None:
        with open(json_path, "w") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
    return report


def _loop_name() -> str:
    async def name() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    return asyncio.run(name())


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="write the figures here as JSON")
    parser.add_argument("--quick", action="store_true", help="scaled down, for the tests")
    parser.add_argument(
        "--writer",
        choices=WRITER_MODES,
        help="where the stores commit: on a thread or in a process (default: the store's)",
    )
    parser.add_argument(
        "--section",
        choices=sorted(SECTIONS),
        help="run this section alone, in this process, and print (or write) its figures as JSON",
    )
    parser.add_argument("--ready-probe", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    uvloop_version = install_uvloop()
    if args.ready_probe:
        asyncio.run(ready_probe(args.ready_probe))
        return 0
    from shopkeep.logs import configure_logging

    configure_logging(logging.WARNING, stream=sys.stderr)
    if args.section:
        scale = replace(QUICK if args.quick else Scale(), writer=args.writer)
        figures = run_section(args.section, scale)
        report = {"figures": figures, "loop": _loop_name()}
        if args.json:
            with open(args.json, "w") as file:
                json.dump(report, file)
        else:
            print(json.dumps(report))
        return 0
    run_all(args.quick, args.json, uvloop_version, args.writer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
