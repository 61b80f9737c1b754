"""Group 6: the soak. Ten minutes at 80% of capacity: memory must not creep, p99 must not drift.

``python -m shopkeep.proof soak [--minutes 10] [--fraction 0.8]`` starts ``shopkeep serve``
(sandbox on, a 5 s payment deadline so that late callbacks happen, the writer in a process of
its own as by default, or on a thread with ``--writer thread``) on a fresh file in a
temporary folder, then drives it with the load harness of ``shopkeep bench``
(:mod:`shopkeep.bench.load`, its whole default mix):

1. capacity: the harness unpaced (each of ``--concurrency`` workers starts its next journey as
   soon as its last one ended) for ``--capacity-seconds``; capacity = journeys started per
   second;
2. the soak: the harness paced at ``--fraction`` x capacity journeys a second for ``--minutes``,
   its time series one point a minute, the server's resident memory read from its ``/metrics``
   once a minute;
3. the verdict: resident memory at the end at most ``--memory-growth`` (10%) above its level
   one minute in (the first minute fills the caches: token cache, live actors, SQLite's page
   cache); every minute's p99 latency (all operations) at most ``--p99-drift`` (2x) the first
   full minute's; no error; the audit ok once the shop is quiet.

On demand only (it is ten minutes by definition); ``tests/proof/test_soak.py`` runs the same
code for seconds, to show that it works, not that the server soaks. The last line printed is
the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from shopkeep.bench.load.mix import DEFAULT_MIX
from shopkeep.bench.load.report import figures as report_figures
from shopkeep.bench.load.run import BenchOptions, drive, open_target
from shopkeep.proof.serving import ServeProcess

ORDER_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Plan:
    """How long and how hard to soak, and what counts as stable."""

    minutes: float = 10.0
    fraction: float = 0.8
    concurrency: int = 64
    capacity_seconds: float = 30.0
    interval_s: float = 60.0
    memory_growth: float = 0.10
    p99_drift: float = 2.0
    seed: int = 1
    writer: str = "process"


@dataclass
class Soaked:
    """What the soak measured."""

    capacity_per_s: float
    offered_per_s: float
    achieved_per_s: float
    minutes: list[dict[str, Any]]
    memory_settled_mb: float | None
    memory_end_mb: float | None
    errors: int
    audit_ok: bool
    problems: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float | None:
        """Resident memory growth from one interval in to the end, as a fraction."""
        if not self.memory_settled_mb or self.memory_end_mb is None:
            return None
        return self.memory_end_mb / self.memory_settled_mb - 1

    def line(self) -> str:
        """The figure, one line."""
        p99s = [m["p99_ms"] for m in self.minutes if m["p99_ms"] is not None]
        p99 = (
            f"p99 per interval {p99s[0]:.0f} ms first, {p99s[-1]:.0f} ms last, "
            f"{max(p99s):.0f} ms max" if p99s else "no latencies"
        )
        growth = "-" if self.growth is None else f"{self.growth:+.1%}"
        return (
            f"soak: {len(self.minutes)} intervals at {self.offered_per_s:.1f} journeys/s "
            f"offered ({self.offered_per_s / self.capacity_per_s:.0%} of a measured capacity of "
            f"{self.capacity_per_s:.1f}/s), {self.achieved_per_s:.1f}/s achieved; resident "
            f"memory {self.memory_settled_mb or 0:.1f} -> {self.memory_end_mb or 0:.1f} MiB "
            f"({growth}); {p99}; errors {self.errors}; audit {'ok' if self.audit_ok else 'FAILED'}"
            f"; {len(self.problems)} problems"
        )


def options(plan: Plan, url: str, admin: str, secret: str, seconds: float,
            rate: float | None, interval_s: float) -> BenchOptions:  # fmt: skip
    """The harness's options for one phase against the server at ``url``."""
    return BenchOptions(
        duration_s=seconds,
        concurrency=plan.concurrency,
        mix=dict(DEFAULT_MIX),
        seed=plan.seed,
        url=url,
        admin_token=admin,
        gateway_secret=secret,
        settle_s=60.0,
        interval_s=interval_s,
        rate_per_s=rate,
    )


async def phase(bench: BenchOptions) -> dict[str, Any]:
    """Run the harness once; its report (the figures of ``shopkeep bench --json``)."""
    async with open_target(bench) as target:
        outcome = await drive(target, bench)
    return report_figures(bench, outcome)


def judge(plan: Plan, soaked: Soaked) -> list[str]:
    """Every way the soak was not stable (empty when it was)."""
    problems = []
    if soaked.growth is not None and soaked.growth > plan.memory_growth:
        problems.append(f"resident memory grew {soaked.growth:.1%} (> {plan.memory_growth:.0%})")
    full = [m for m in soaked.minutes if m["p99_ms"] is not None]
    if full:
        first = full[0]["p99_ms"]
        for index, minute in enumerate(full[1:], start=2):
            if minute["p99_ms"] > plan.p99_drift * first:
                problems.append(
                    f"interval {index}: p99 {minute['p99_ms']:.0f} ms > {plan.p99_drift:g} x "
                    f"the first's {first:.0f} ms"
                )
    if soaked.errors:
        problems.append(f"{soaked.errors} errors")
    if not soaked.audit_ok:
        problems.append("the audit failed")
    return problems


def settled_memory(samples: list[float | None]) -> float | None:
    """The memory one interval in (the first sample with the caches filled), else the first."""
    known = [sample for sample in samples if sample is not None]
    if len(samples) > 1 and samples[1] is not None:
        return samples[1]
    return known[0] if known else None


def megabytes(value: float | None) -> float | None:
    """Bytes as MiB (None stays None)."""
    return None if value is None else value / 2**20


async def run(plan: Plan, folder: Path) -> Soaked:
    """Start the server, measure its capacity, soak it, judge."""
    admin, secret = secrets.token_hex(16), secrets.token_hex(32)
    flags = ["--sandbox", "--order-timeout", str(ORDER_TIMEOUT_S), "--admin-token", admin,
             "--gateway-secret", secret, "--writer", plan.writer]  # fmt: skip
    with ServeProcess(folder / "soak.db", folder, flags) as server:
        async with aiohttp.ClientSession() as session:
            await server.start(session)
        seconds = plan.capacity_seconds
        measured = await phase(options(plan, server.url, admin, secret, seconds, None, seconds))
        capacity = sum(measured["journeys"].values()) / measured["elapsed_s"]
        offered = plan.fraction * capacity
        soak = await phase(
            options(plan, server.url, admin, secret, plan.minutes * 60, offered, plan.interval_s)
        )
        server.stop()
    minutes = [point for point in soak["series"] if point["t"] > 0]
    memory = [point["resident_memory_bytes"] for point in minutes]
    soaked = Soaked(
        capacity_per_s=capacity,
        offered_per_s=offered,
        achieved_per_s=sum(soak["journeys"].values()) / soak["elapsed_s"],
        minutes=minutes,
        memory_settled_mb=megabytes(settled_memory(memory)),
        memory_end_mb=megabytes(soak["resident_memory_bytes"]["end"]),
        errors=soak["totals"]["errors"],
        audit_ok=soak["audit_ok"],
    )
    soaked.problems = judge(plan, soaked)
    return soaked


def main(argv: list[str]) -> int:
    """The command line: soak, print each interval, the problems, and the figure last."""
    parser = argparse.ArgumentParser(
        prog="python -m shopkeep.proof soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Plan()
    parser.add_argument("--minutes", type=float, default=defaults.minutes, help="soak length")
    parser.add_argument("--fraction", type=float, default=defaults.fraction,
                        help="of the measured capacity, offered during the soak")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency,
                        help="harness workers (connections)")  # fmt: skip
    parser.add_argument("--capacity-seconds", type=float, default=defaults.capacity_seconds,
                        help="how long capacity is measured")  # fmt: skip
    parser.add_argument("--interval", type=float, default=defaults.interval_s,
                        help="seconds per point of the time series (memory sampled as often)")
    parser.add_argument("--memory-growth", type=float, default=defaults.memory_growth,
                        help="largest growth of resident memory allowed, as a fraction")
    parser.add_argument("--p99-drift", type=float, default=defaults.p99_drift,
                        help="largest p99 allowed in an interval, times the first one's")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the harness's seed")
    parser.add_argument("--writer", choices=("thread", "process"), default=defaults.writer,
                        help="where the server commits (serve --writer; default: process)")
    parser.add_argument("--folder", type=Path, help="keep the database and logs here")
    args = parser.parse_args(argv)
    plan = Plan(
        minutes=args.minutes, fraction=args.fraction, concurrency=args.concurrency,
        capacity_seconds=args.capacity_seconds, interval_s=args.interval,
        memory_growth=args.memory_growth, p99_drift=args.p99_drift, seed=args.seed,
        writer=args.writer,
    )  # fmt: skip
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        soaked = asyncio.run(run(plan, args.folder))
    else:
        with tempfile.TemporaryDirectory(prefix="shopkeep-soak-") as folder:
            soaked = asyncio.run(run(plan, Path(folder)))
    for index, point in enumerate(soaked.minutes, start=1):
        memory = megabytes(point["resident_memory_bytes"])
        p99 = point["p99_ms"]
        print(
            f"interval {index}: {point['ops_per_s']:.0f} ops/s, p99 "
            f"{'-' if p99 is None else f'{p99:.0f} ms'}, resident memory "
            f"{'-' if memory is None else f'{memory:.1f} MiB'}"
        )
    for problem in soaked.problems:
        print(problem)
    print(soaked.line())
    return 1 if soaked.problems else 0
