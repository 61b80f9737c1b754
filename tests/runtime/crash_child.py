"""The process that ``test_crash.py`` kills: actors that arm durable timers and send durable
messages, run on a real SQLite file until a SIGKILL (or, with ``--finish``, until all is done).

Run as ``python -m tests.runtime.crash_child DB --generation N [--rate R] [--finish]`` from the
repository root. It prints ``ready <items already begun>`` once the runtime has started (timers
loaded, outbox rescanned), then begins the work items of the plan that are not begun yet, at
``--rate`` items a second (0: as fast as it can). Without ``--finish`` it then idles until it
is killed; with ``--finish`` it waits until every timer has fired and every durable message has
been applied, prints ``done <stats>`` and stops gracefully.

The plan is fixed by :func:`plan_of`, so every process and the test agree on it. Every effect
is deliberately *not* idempotent, so a timer fired twice or a message applied twice leaves a
trace the test can count:

- ``begin item k`` (a source actor) records the item, arms timer ``t{k}`` and sends a durable
  ``Credit`` to a sink, in one unit of work;
- the fire of ``t{k}`` bumps the source's ``fires`` counter, logs a ``crash_fire_log`` row and
  sends a durable ``Settle`` to the sink, in the unit that also deletes the timer row;
- the sink adds each ``Credit`` to its balance and logs it, and counts each ``Settle``.

Counters are written as absolute values computed from the actor's memory, so a reload that
left memory out of step with the disk shows as a counter that disagrees with the log rows.
``generation`` (which process did it) is written next to every effect, so the test can tell
that work armed in one process was finished by a later one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.logs import configure_logging
from shopkeep.runtime import (
    ActivationContext,
    Actor,
    ActorSystem,
    Address,
    Context,
    RuntimeConfig,
)
from shopkeep.store import MIGRATIONS, DatabaseInUse, Migration

ITEMS = 3000
SOURCES = 50
SINKS = 5
WORKERS = 16
"""Begins in flight at once: enough that the group-commit writer batches many units."""
SINK_WORK_S = 0.003
"""How long a sink works on a message: durable messages queue up at the sinks, so a kill often
finds outbox rows not yet applied."""
CONFIG = RuntimeConfig(timer_page_size=64, outbox_max_backlog=64, outbox_max_in_flight=32)
"""Small windows, so that the timer pages and the outbox spill are read again and again while
the work goes on, not only at start."""
MIN_DELAY_S = 0.05
MAX_DELAY_S = 1.5

EXIT_DATABASE_IN_USE = 3
EXIT_DEADLINE = 2

SOURCE = "crash_source"
SINK = "crash_sink"

SCHEMA = (
    *MIGRATIONS,
    Migration(
        len(MIGRATIONS) + 1,
        "crash test: work items, counters and logs without unique constraints",
        """
        CREATE TABLE crash_begun (
            item INTEGER NOT NULL, source INTEGER NOT NULL, due_at REAL NOT NULL,
            generation INTEGER NOT NULL
        );
        CREATE INDEX crash_begun_by_source ON crash_begun (source);
        CREATE TABLE crash_sources (id INTEGER PRIMARY KEY, fires INTEGER NOT NULL);
        CREATE TABLE crash_fire_log (
            item INTEGER NOT NULL, source INTEGER NOT NULL, fired_at REAL NOT NULL,
            generation INTEGER NOT NULL
        );
        CREATE TABLE crash_sinks (
            id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, credits INTEGER NOT NULL,
            settles INTEGER NOT NULL
        );
        CREATE TABLE crash_credit_log (
            item INTEGER NOT NULL, sink INTEGER NOT NULL, amount INTEGER NOT NULL,
            generation INTEGER NOT NULL
        );
        CREATE TABLE crash_settle_log (
            item INTEGER NOT NULL, sink INTEGER NOT NULL, generation INTEGER NOT NULL
        )
        """,
    ),
)


class Plan(NamedTuple):
    """What item ``k`` is: which source begins it, which sink it credits, how much, how soon."""

    source: int
    sink: int
    amount: int
    delay_s: float


def plan_of(item: int) -> Plan:
    """The fixed plan of ``item`` (a pure function: every process computes the same)."""
    spread = (item * 104_729) % 1000 / 999
    return Plan(
        source=item % SOURCES + 1,
        sink=(item // SOURCES) % SINKS + 1,
        amount=1 + (item * 7_919) % 97,
        delay_s=MIN_DELAY_S + spread * (MAX_DELAY_S - MIN_DELAY_S),
    )


# -- messages ------------------------------------------------------------------------------------


class Begin(msgspec.Struct, frozen=True, tag=True):
    """Begin work item ``item``: record it, arm its timer, credit its sink."""

    item: int


class Fire(msgspec.Struct, frozen=True, tag=True):
    """The timer of ``item`` is due."""

    item: int


class Credit(msgspec.Struct, frozen=True, tag=True):
    """Add ``amount`` to the sink's balance, for ``item``."""

    item: int
    amount: int


class Settle(msgspec.Struct, frozen=True, tag=True):
    """The timer of ``item`` has fired."""

    item: int


SourceMessage = Begin | Fire
SinkMessage = Credit | Settle


class WrongFire(Exception):
    """A timer fire that does not match what the source armed: a runtime bug."""


# -- actors --------------------------------------------------------------------------------------

GENERATION = 0
"""Which process this is (set from the command line before the runtime starts)."""

UPSERT_SOURCE = (
    "INSERT INTO crash_sources (id, fires) VALUES (?, ?) "
    "ON CONFLICT (id) DO UPDATE SET fires = excluded.fires"
)
UPSERT_SINK = (
    "INSERT INTO crash_sinks (id, balance, credits, settles) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET balance = excluded.balance, credits = excluded.credits, "
    "settles = excluded.settles"
)


class Source(Actor):
    """Begins work items: each one arms a timer and sends a durable credit."""

    kind = SOURCE
    messages = SourceMessage
    __slots__ = ("begun", "fires")

    async def on_activate(self, ctx: ActivationContext) -> None:
        reader = ctx.reader
        rows = await reader.fetchall(
            "SELECT item FROM crash_begun WHERE source = ?", (self.address.id,)
        )
        self.begun = {row[0] for row in rows}
        row = await reader.fetchone(
            "SELECT fires FROM crash_sources WHERE id = ?", (self.address.id,)
        )
        self.fires = row[0] if row else 0

    async def receive(self, ctx: Context, message: SourceMessage) -> bool:
        match message:
            case Begin(item):
                if item in self.begun:
                    return False
                plan = plan_of(item)
                due_at = ctx.now() + plan.delay_s
                self.begun.add(item)
                ctx.execute(
                    "INSERT INTO crash_begun (item, source, due_at, generation) "
                    "VALUES (?, ?, ?, ?)",
                    (item, self.address.id, due_at, GENERATION),
                )
                ctx.arm_timer(f"t{item}", due_at, Fire(item))
                ctx.send(Address(SINK, plan.sink), Credit(item, plan.amount))
                return True
            case Fire(item):
                if ctx.timer != f"t{item}" or item not in self.begun:
                    raise WrongFire(f"timer {ctx.timer!r} delivered {message!r}")
                self.fires += 1
                ctx.execute(UPSERT_SOURCE, (self.address.id, self.fires))
                ctx.execute(
                    "INSERT INTO crash_fire_log (item, source, fired_at, generation) "
                    "VALUES (?, ?, ?, ?)",
                    (item, self.address.id, ctx.now(), GENERATION),
                )
                ctx.send(Address(SINK, plan_of(item).sink), Settle(item))
                return True


class Sink(Actor):
    """Keeps a balance of credits and a count of settlements; few sinks, so they are busy."""

    kind = SINK
    messages = SinkMessage
    __slots__ = ("balance", "credits", "settles")

    async def on_activate(self, ctx: ActivationContext) -> None:
        row = await ctx.reader.fetchone(
            "SELECT balance, credits, settles FROM crash_sinks WHERE id = ?", (self.address.id,)
        )
        self.balance, self.credits, self.settles = row if row else (0, 0, 0)

    async def receive(self, ctx: Context, message: SinkMessage) -> None:
        sink = self.address.id
        await asyncio.sleep(SINK_WORK_S)
        match message:
            case Credit(item, amount):
                self.balance += amount
                self.credits += 1
                ctx.execute(
                    "INSERT INTO crash_credit_log (item, sink, amount, generation) "
                    "VALUES (?, ?, ?, ?)",
                    (item, sink, amount, GENERATION),
                )
            case Settle(item):
                self.settles += 1
                ctx.execute(
                    "INSERT INTO crash_settle_log (item, sink, generation) VALUES (?, ?, ?)",
                    (item, sink, GENERATION),
                )
        ctx.execute(UPSERT_SINK, (sink, self.balance, self.credits, self.settles))


# -- the process ---------------------------------------------------------------------------------


async def begin_items(system: ActorSystem, items: Sequence[int], rate: float) -> None:
    """Ask each item's source to begin it, ``WORKERS`` at a time, paced at ``rate`` a second."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue: Iterator[tuple[int, int]] = enumerate(items)  # shared by the workers

    async def worker() -> None:
        for index, item in queue:
            if rate > 0:
                await asyncio.sleep(started + index / rate - loop.time())
            await system.ask(Address(SOURCE, plan_of(item).source), Begin(item))

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def outstanding(runtime: Runtime) -> tuple[int, int, int]:
    """(items not begun, timer rows, outbox rows), as committed."""
    row = await runtime.store.reader.fetchone(
        "SELECT (SELECT count(DISTINCT item) FROM crash_begun), "
        "(SELECT count(*) FROM timers), (SELECT count(*) FROM outbox)"
    )
    assert row is not None
    return ITEMS - row[0], row[1], row[2]


async def settle(runtime: Runtime) -> None:
    """Wait until every item is begun, every timer has fired and the outbox is empty."""
    while await outstanding(runtime) != (0, 0, 0):
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> int:
    """One life of the process; returns its exit status (when it is not killed first)."""
    try:
        async with open_runtime(
            args.db, kinds=[Source, Sink], migrations=SCHEMA, config=CONFIG
        ) as runtime:
            rows = await runtime.store.reader.fetchall("SELECT DISTINCT item FROM crash_begun")
            begun = {row[0] for row in rows}
            print(f"ready {len(begun)}", flush=True)
            todo = [item for item in range(ITEMS) if item not in begun]
            try:
                async with asyncio.timeout(args.deadline):
                    await begin_items(runtime.system, todo, args.rate)
                    if args.finish:
                        await settle(runtime)
                    else:
                        await asyncio.Event().wait()  # until the test kills this process
            except TimeoutError:
                left = await outstanding(runtime)
                print(
                    f"crash_child: deadline of {args.deadline:g} s passed with {left[0]} items "
                    f"not begun, {left[1]} timers and {left[2]} outbox messages left"
                    + ("" if args.finish else " (and nobody killed this process)"),
                    file=sys.stderr,
                )
                return EXIT_DEADLINE
            print("done " + json.dumps(stats(runtime)), flush=True)
    except DatabaseInUse as exc:
        print(f"crash_child: {exc}; the previous child is still alive", file=sys.stderr)
        return EXIT_DATABASE_IN_USE
    return 0


def stats(runtime: Runtime) -> dict[str, Any]:
    """What this process did, for the test's report."""
    system = runtime.system
    return {
        "timers_fired": system.timers.fired,
        "outbox_delivered": system.outbox.delivered,
        "outbox_redeliveries": system.outbox.redeliveries,
        "dead_letters": system.stats.dead_letters,
        "restarts": system.stats.restarts,
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.runtime.crash_child")
    parser.add_argument("db", help="the SQLite file")
    parser.add_argument("--generation", type=int, required=True, help="which run this is")
    parser.add_argument("--rate", type=float, default=0.0, help="items begun a second (0: max)")
    parser.add_argument("--finish", action="store_true", help="run until all work is done")
    parser.add_argument("--deadline", type=float, default=60.0, help="give up after seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    """Entry point."""
    global GENERATION
    args = parse_args(argv)
    GENERATION = args.generation
    configure_logging(logging.INFO, stream=sys.stderr)
    started = time.monotonic()
    status = asyncio.run(run(args))
    print(
        f"crash_child: generation {args.generation} exits {status} after "
        f"{time.monotonic() - started:.2f} s",
        file=sys.stderr,
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
