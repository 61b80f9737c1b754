"""Group 2: kill -9 of the real server, Jepsen style.

``python -m shopkeep.proof kill9 --cycles 1000`` starts ``shopkeep serve`` on 127.0.0.1
with a real SQLite file and a short payment deadline, then repeats a cycle: 8 to 32 clients
drive mixed writes (:mod:`shopkeep.proof.kill9_traffic`), the server gets SIGKILL at a random
moment, the file is checked with the server down, the server is restarted on the same file and
port, and the checks of :mod:`shopkeep.proof.kill9_checks` run. The first violation ends the
run (its cycle is the one to look at). The last line printed is the figure.

The server's lives take turns committing on a thread and in a writer process of its own
(``serve --writer``), so both ways survive the kills. The deadline is short (1 s by default)
so that the orders left unpaid near each kill see their deadline pass while the server is
down, and must be seen to fire once after the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from shopkeep.proof.kill9_checks import Acknowledged, Verdict, Verifier, snapshot
from shopkeep.proof.kill9_traffic import Clients, History, make_fixture
from shopkeep.proof.serving import ServeProcess

CUSTOMERS = 24
GOODS = 6


WRITERS = ("process", "thread")
"""The writer modes of ``serve`` that the server's lives take in turn (both must survive)."""

@dataclass(frozen=True)
class Plan:
    """How a run goes: its size and its randomness."""

    cycles: int = 30
    min_clients: int = 8
    max_clients: int = 32
    burst_s: float = 1.2
    """The kill comes at a uniformly random moment between 0.2 s and this after traffic starts."""
    order_timeout_s: float = 1.0
    seed: int = 2
    max_unpaid_orders: int = 10


@dataclass
class Figures:
    """What a run saw; :meth:`line` is the figure printed last."""

    plan: Plan
    cycles: int = 0
    writes: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "unknown": 0})
    unknown_applied: int = 0
    unknown_absent: int = 0
    deadlines_fired: int = 0
    acknowledged: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    """Failed writes by their answer's code (``no answer``: the server was gone)."""
    restart_s: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, verdict: Verdict) -> None:
        """Count one cycle's verdict in."""
        self.cycles += 1
        self.unknown_applied += verdict.unknown_applied
        self.unknown_absent += verdict.unknown_absent
        self.deadlines_fired += verdict.deadlines_fired
        self.violations += [f"cycle {self.cycles}: {v}" for v in verdict.violations]

    def line(self) -> str:
        """The one-line figure."""
        w = self.writes
        clean = self.cycles - len({v.split(":")[0] for v in self.violations})
        restart = statistics.median(self.restart_s) if self.restart_s else 0.0
        return (
            f"kill9: {self.cycles} kill -9 cycles, {self.plan.min_clients}-"
            f"{self.plan.max_clients} clients, {sum(w.values())} writes ({w['ok']} ok, "
            f"{w['failed']} failed, {w['unknown']} unknown; unknown placements "
            f"{self.unknown_applied} wholly applied, {self.unknown_absent} wholly absent), "
            f"{self.acknowledged} acknowledged orders kept, {self.deadlines_fired} deadlines "
            f"passed while down fired once, {clean}/{self.cycles} cycles with integrity_check, "
            f"audit and every check ok, {len(self.violations)} violations; restart "
            f"{restart:.2f} s median, {self.seconds:.0f} s in all"
        )


async def run(plan: Plan, folder: Path) -> Figures:
    """Run ``plan`` on a new database in ``folder``; the figures (violations included)."""
    began = time.perf_counter()
    figures = Figures(plan)
    rng = random.Random(plan.seed)
    admin, secret = secrets.token_urlsafe(24), secrets.token_hex(16)
    flags = [
        "--gateway",
        "sandbox",
        f"--admin-token={admin}",  # a token may begin with "-": not a separate argument
        "--gateway-secret",
        secret,
        "--order-timeout",
        str(plan.order_timeout_s),
        "--max-unpaid-orders",
        str(plan.max_unpaid_orders),
    ]
    timeout = aiohttp.ClientTimeout(total=30)
    with ServeProcess(folder / "shop.db", folder, flags) as server:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await server.start(session)
            fixture = await make_fixture(session, server.url, admin, secret, CUSTOMERS, GOODS)
        history, acknowledged = History(), Acknowledged()
        verifier = Verifier(server.db, server.url, fixture, acknowledged)
        for cycle in range(plan.cycles):
            history.writes = []
            clients = Clients(fixture, history, server.url, f"{plan.seed}-{cycle}")
            # A session per phase: connections kept alive across a kill are dead after it.
            async with aiohttp.ClientSession(timeout=timeout) as session:
                traffic = asyncio.create_task(
                    clients.run(session, rng.randint(plan.min_clients, plan.max_clients))
                )
                await asyncio.sleep(rng.uniform(0.2, plan.burst_s))  # the random moment
                server.kill()
                clients.stop.set()
                await traffic
            for write in history.writes:
                figures.writes[write.outcome] += 1
                if write.outcome == "failed":
                    code = write.answer.get("code") if isinstance(write.answer, dict) else None
                    figures.refusals[f"{write.kind} {code or 'no answer'}"] += 1
            before = await asyncio.to_thread(snapshot, server.db)
            # the next life commits on a thread or in a process of its own, turn about
            server.flags = [*flags, "--writer", WRITERS[cycle % len(WRITERS)]]
            async with aiohttp.ClientSession(timeout=timeout) as session:
                figures.restart_s.append(await server.start(session))
                ready_at = time.time()
                verdict = await verifier.verify(session, history.writes, before, ready_at)
            figures.add(verdict)
            if verdict.violations:
                break
        status = server.stop()
    if status != 0:
        figures.violations.append(f"the last server stopped with status {status}")
    figures.acknowledged = len(acknowledged.placed)
    figures.seconds = time.perf_counter() - began
    return figures


def main(argv: list[str]) -> int:
    """The command line: run, print the violations (if any) and the figure last."""
    parser = argparse.ArgumentParser(
        prog="python -m shopkeep.proof kill9",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cycles", type=int, default=Plan.cycles, help="kill -9 cycles")
    parser.add_argument(
        "--clients",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=(Plan.min_clients, Plan.max_clients),
        help="clients per cycle, drawn between MIN and MAX (default 8 32)",
    )
    parser.add_argument("--seed", type=int, default=Plan.seed, help="the run's random seed")
    parser.add_argument(
        "--burst",
        type=float,
        default=Plan.burst_s,
        help="latest kill moment, seconds after traffic starts (default 1.2)",
    )
    parser.add_argument("--folder", type=Path, help="keep the database and logs here")
    args = parser.parse_args(argv)
    plan = Plan(
        cycles=args.cycles,
        min_clients=args.clients[0],
        max_clients=args.clients[1],
        seed=args.seed,
        burst_s=args.burst,
    )
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        figures = asyncio.run(run(plan, args.folder))
    else:
        with tempfile.TemporaryDirectory(prefix="shopkeep-kill9-") as folder:
            figures = asyncio.run(run(plan, Path(folder)))
    for violation in figures.violations:
        print(violation)
    print("failed writes: " + ", ".join(f"{k} {n}" for k, n in figures.refusals.most_common()))
    print(figures.line())
    return 1 if figures.violations else 0
