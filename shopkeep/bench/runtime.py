"""The runtime benchmark: the actor runtime and its store, each figure beside a baseline.

``python -m shopkeep.bench.runtime --json PATH [--quick]`` measures, in one run on this machine,
and prints a table (metric, value, target, baseline/peer, pass/fail). A missed target is
reported, never an exit status: the figures are for people, not a gate.

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
  ``units / batches`` of the writer during the timed window. ``commit_sqlite_ceiling_*`` is what
  bare sqlite3 does with the same rows and transactions (64 units or 1 unit per commit) back to
  back in one thread: the disk's and SQLite's share of the cost, with no event loop in the way.
- ``idle_actor_bytes``: memory per live idle actor over 100,000 activations of a kind with one
  int field (each loaded from the store, asked once, written nothing), by tracemalloc (every
  Python allocation the activations keep, registry slot included); ``idle_actor_rss_bytes`` is
  the process RSS growth per actor, measured in a pass without tracemalloc, and
  ``activations_per_s`` how fast that pass activated them (64 at a time).
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
import gc
import json
import logging
import math
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from shopkeep.bench.common import install_uvloop, machine, percentile, rss_bytes
from shopkeep.runtime import (
    ActivationContext,
    Actor,
    ActorSystem,
    Address,
    Context,
    RealClock,
    RuntimeConfig,
)
from shopkeep.store import MIGRATIONS, Migration, Store, StoreConfig

MODULE = "shopkeep.bench.runtime"
ROOT = Path(__file__).resolve().parents[2]
KIND = "bench"
CLIENTS = 64
ROWS_PER_UNIT = 10
TIMERS_PER_MESSAGE = 100
ROUNDS = 3
LONG_S = 86_400.0
"""Idle timeout of the benchmark's systems: nothing is passivated while it is measured."""

ACTOR_TABLE_SQL = "CREATE TABLE bench_actor (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"
ROWS_TABLE_SQL = (
    "CREATE TABLE bench_rows (actor_id INTEGER NOT NULL, seq INTEGER NOT NULL, "
    "value INTEGER NOT NULL)"
)
BENCH_MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        len(MIGRATIONS) + 1,
        "bench: actor state and an append-only row table",
        f"{ACTOR_TABLE_SQL};\n{ROWS_TABLE_SQL}",
    ),
)
LOAD_SQL = "SELECT n FROM bench_actor WHERE id = ?"
INSERT_ROWS_SQL = "INSERT INTO bench_rows (actor_id, seq, value) VALUES (?, ?, ?)"
INSERT_ACTOR_SQL = "INSERT INTO bench_actor (id, n) VALUES (?, ?)"
INSERT_TIMER_SQL = (
    "INSERT INTO timers (kind, actor_id, name, due_at, seq, payload) VALUES (?, ?, ?, ?, ?, ?)"
)


# -- the actor under test -------------------------------------------------------------------------


class Ping(msgspec.Struct, frozen=True, tag=True):
    """Answer with the counter; write nothing."""


class Write(msgspec.Struct, frozen=True, tag=True):
    """Insert ``rows`` rows into ``bench_rows`` in this message's unit of work."""

    rows: int


class ArmTimers(msgspec.Struct, frozen=True, tag=True):
    """Arm one durable timer per due time, named ``t<first>``, ``t<first + 1>``, ..."""

    first: int
    dues: list[float]


class Expire(msgspec.Struct, frozen=True, tag=True):
    """A timer's message: timer ``slot`` fired."""

    slot: int


BenchMessage = Ping | Write | ArmTimers | Expire
PING = Ping()


class BenchActor(Actor):
    """One small int of state, loaded from the store like any virtual actor's."""

    kind = KIND
    messages = BenchMessage
    __slots__ = ("count",)
    count: int

    async def on_activate(self, ctx: ActivationContext) -> None:
        """Load the counter (absent rows start at 0)."""
        row = await ctx.reader.fetchone(LOAD_SQL, (self.address.id,))
        self.count = int(row[0]) if row is not None else 0

    async def receive(self, ctx: Context, message: Any) -> Any:
        """Ping answers, Write inserts rows, ArmTimers arms timers, Expire counts a fire."""
        match message:
            case Ping():
                return self.count
            case Write(rows=rows):
                self.count += 1
                me, seq = self.address.id, self.count
                ctx.executemany(INSERT_ROWS_SQL, [(me, seq, i) for i in range(rows)])
                return seq
            case ArmTimers(first=first, dues=dues):
                for offset, due_at in enumerate(dues):
                    slot = first + offset
                    ctx.arm_timer(f"t{slot}", due_at, Expire(slot))
                return len(dues)
            case Expire(slot=slot):
                self.count += 1
                return slot
        raise TypeError(f"unexpected message {message!r}")


@asynccontextmanager
async def bench_system(
    path: str, *, max_batch: int = 1024, config: RuntimeConfig | None = None
) -> AsyncIterator[ActorSystem]:
    """A started system of :class:`BenchActor` on the database at ``path`` (FULL durability).

    Not ``bootstrap.open_runtime``: the commit section needs ``StoreConfig.max_batch``.
    """
    store = await Store.open(
        StoreConfig(path, synchronous="FULL", migrations=BENCH_MIGRATIONS, max_batch=max_batch)
    )
    try:
        system = ActorSystem(
            store, clock=RealClock(), config=config or RuntimeConfig(idle_timeout_s=LONG_S)
        )
        system.register(BenchActor)
        await system.start()
        try:
            yield system
        finally:
            await system.stop()
    finally:
        await store.close()


@dataclass(frozen=True)
class Scale:
    """How much work each section does."""

    asks: int = 200_000
    tells: int = 200_000
    pykka_asks: int = 20_000
    pykka_tells: int = 100_000
    commit_s: float = 5.0
    idle_actors: int = 100_000
    timer_actors: int = 1_000
    timer_messages: int = 10
    lateness_timers: int = 10_000
    lateness_window_s: float = 10.0
    lateness_lead_s: float = 3.0
    restart_rows: int = 1_000_000


QUICK = Scale(
    asks=20_000,
    tells=20_000,
    pykka_asks=2_000,
    pykka_tells=10_000,
    commit_s=1.5,
    idle_actors=10_000,
    timer_actors=50,
    lateness_timers=1_000,
    lateness_window_s=2.0,
    lateness_lead_s=1.5,
    restart_rows=100_000,
)

Figures = dict[str, float]


def _database(directory: str) -> str:
    return os.path.join(directory, "bench.db")


def _tempdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="shopkeep-bench-")


# -- asks and tells -------------------------------------------------------------------------------


class RawMailbox:
    """The ceiling baseline: a deque and one consumer task woken by a future when it is empty."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, message: Any, reply: asyncio.Future[Any]) -> None:
        """Enqueue and wake the consumer if it sleeps."""
        self.items.append((message, reply))
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def consume(self, handle: Callable[[Any], Any]) -> None:
        """Answer every message with ``handle(message)``, forever."""
        loop = asyncio.get_running_loop()
        items = self.items
        while True:
            while not items:
                self.waiter = loop.create_future()
                await self.waiter
            message, reply = items.popleft()
            reply.set_result(handle(message))


async def _raw_asks(n: int) -> float:
    loop = asyncio.get_running_loop()
    mailbox = RawMailbox()
    state = [0]
    consumer = loop.create_task(mailbox.consume(lambda message: state[0]))
    try:
        started = time.perf_counter()
        for _ in range(n):
            reply: asyncio.Future[Any] = loop.create_future()
            mailbox.put(PING, reply)
            await reply
        return n / (time.perf_counter() - started)
    finally:
        consumer.cancel()
        with suppress(asyncio.CancelledError):
            await consumer


async def _system_asks(system: ActorSystem, n: int) -> float:
    ask, address = system.ask, Address(KIND, 1)
    await ask(address, PING)  # activation is not what is measured
    started = time.perf_counter()
    for _ in range(n):
        await ask(address, PING)
    return n / (time.perf_counter() - started)


async def measure_asks(scale: Scale) -> Figures:
    """``ask_per_s``, ``ask_no_eager_per_s`` and ``raw_future_ask_per_s``, best of rounds."""
    best = {"ask_per_s": 0.0, "ask_no_eager_per_s": 0.0, "raw_future_ask_per_s": 0.0}
    lazy = RuntimeConfig(idle_timeout_s=LONG_S, eager=False)
    with _tempdir() as directory:
        async with (
            bench_system(_database(directory)) as eager_system,
            bench_system(os.path.join(directory, "lazy.db"), config=lazy) as lazy_system,
        ):
            runs: list[tuple[str, Callable[[], Coroutine[Any, Any, float]]]] = [
                ("raw_future_ask_per_s", partial(_raw_asks, scale.asks)),
                ("ask_per_s", partial(_system_asks, eager_system, scale.asks)),
                ("ask_no_eager_per_s", partial(_system_asks, lazy_system, scale.asks)),
            ]
            for _ in range(ROUNDS):  # interleaved, so that a slow moment hits all alike
                for key, run in runs:
                    gc.collect()
                    best[key] = max(best[key], await run())
    return best


async def measure_tells(scale: Scale) -> Figures:
    """``tell_per_s``: N tells to one actor, then one ask; best of rounds."""
    n = scale.tells
    config = RuntimeConfig(idle_timeout_s=LONG_S, mailbox_size=n + 16, max_in_flight=n + 1024)
    best = 0.0
    with _tempdir() as directory:
        async with bench_system(_database(directory), config=config) as system:
            tell, address = system.tell, Address(KIND, 1)
            await system.ask(address, PING)
            for _ in range(ROUNDS):
                gc.collect()
                started = time.perf_counter()
                for _ in range(n):
                    tell(address, PING)
                await system.ask(address, PING)
                best = max(best, n / (time.perf_counter() - started))
    return {"tell_per_s": best}


def measure_pykka(scale: Scale) -> Figures:
    """``pykka_ask_per_s`` and ``pykka_tell_per_s`` with a pykka ThreadingActor."""
    import pykka

    class PykkaBench(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            return self.count

    ref = PykkaBench.start()
    try:
        ref.ask(PING)
        asks = tells = 0.0
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(scale.pykka_asks):
                ref.ask(PING)
            asks = max(asks, scale.pykka_asks / (time.perf_counter() - started))
            started = time.perf_counter()
            for _ in range(scale.pykka_tells):
                ref.tell(PING)
            ref.ask(PING)
            tells = max(tells, scale.pykka_tells / (time.perf_counter() - started))
    finally:
        ref.stop()
    return {"pykka_ask_per_s": asks, "pykka_tell_per_s": tells}


# -- group commit ---------------------------------------------------------------------------------


async def commit_load(
    system: ActorSystem, addresses: list[Address], done: Callable[[], bool]
) -> int:
    """One client per address asking a Write as soon as its last one is committed, until
    ``done()``; returns the units committed."""

    async def client(address: Address) -> int:
        ask, message, units = system.ask, Write(ROWS_PER_UNIT), 0
        while not done():
            await ask(address, message)
            units += 1
        return units

    return sum(await asyncio.gather(*(client(address) for address in addresses)))


def _until(seconds: float) -> Callable[[], bool]:
    deadline = time.perf_counter() + seconds
    return lambda: time.perf_counter() >= deadline


async def _activate(system: ActorSystem, ids: range, chunk: int = 64) -> None:
    # Some at once, so that the loads (a reader round trip each) overlap; 64 was the fastest
    # chunk here (1 and 1024 were both about half as fast).
    for start in range(ids.start, ids.stop, chunk):
        stop = min(ids.stop, start + chunk)
        await asyncio.gather(*(system.ask(Address(KIND, i), PING) for i in range(start, stop)))


async def _commit_throughput(scale: Scale, max_batch: int) -> tuple[float, float]:
    with _tempdir() as directory:
        async with bench_system(_database(directory), max_batch=max_batch) as system:
            addresses = [Address(KIND, i) for i in range(CLIENTS)]
            await _activate(system, range(CLIENTS))
            await commit_load(system, addresses, _until(0.2))  # the WAL file grows to size
            stats = system.store.writer.stats
            units, batches = stats.units, stats.batches
            started = time.perf_counter()
            committed = await commit_load(system, addresses, _until(scale.commit_s))
            elapsed = time.perf_counter() - started
            return committed / elapsed, (stats.units - units) / max(1, stats.batches - batches)


def sqlite_ceiling(path: str, units_per_commit: int, seconds: float) -> float:
    """Units per second that bare sqlite3 commits, back to back in one thread, with the same
    rows, pragmas and transactions as the writer would make of ``units_per_commit`` units:
    what the disk and SQLite allow, with no event loop, actor or future in the way."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(ROWS_TABLE_SQL)
        rows = [(u, 1, i) for u in range(units_per_commit) for i in range(ROWS_PER_UNIT)]
        commits, done = 0, _until(seconds)
        started = time.perf_counter()
        while not done():
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_ROWS_SQL, rows)
            conn.execute("COMMIT")
            commits += 1
        return commits * units_per_commit / (time.perf_counter() - started)
    finally:
        conn.close()


async def measure_commit_group(scale: Scale) -> Figures:
    """``commit_units_per_s_group``: the commit workload with normal group commit."""
    rate, batch = await _commit_throughput(scale, max_batch=1024)
    with _tempdir() as directory:
        ceiling = sqlite_ceiling(_database(directory), CLIENTS, scale.commit_s)
    return {
        "commit_units_per_s_group": rate,
        "commit_mean_batch_group": batch,
        "commit_sqlite_ceiling_64_units_per_s": ceiling,
    }


async def measure_commit_single(scale: Scale) -> Figures:
    """``commit_units_per_s_single``: the same workload, one unit per transaction."""
    rate, batch = await _commit_throughput(scale, max_batch=1)
    with _tempdir() as directory:
        ceiling = sqlite_ceiling(_database(directory), 1, scale.commit_s)
    return {
        "commit_units_per_s_single": rate,
        "commit_mean_batch_single": batch,
        "commit_sqlite_ceiling_1_units_per_s": ceiling,
    }


# -- memory ---------------------------------------------------------------------------------------


async def measure_idle_actors(scale: Scale) -> Figures:
    """``idle_actor_bytes`` (tracemalloc) and ``idle_actor_rss_bytes`` per live idle actor."""
    n = scale.idle_actors
    config = RuntimeConfig(idle_timeout_s=LONG_S, max_live_actors=max(200_000, 2 * n))
    warm = range(10_000_000, 10_000_000 + 1_000)  # first-use costs are not per actor
    with _tempdir() as directory:
        path = _database(directory)
        async with bench_system(path, config=config) as system:
            await _activate(system, warm)
            gc.collect()
            before = rss_bytes()
            started = time.perf_counter()
            await _activate(system, range(n))
            activations_per_s = n / (time.perf_counter() - started)
            gc.collect()
            rss_per_actor = (rss_bytes() - before) / n
            assert system.live_actors >= n, "actors were passivated while being counted"
        async with bench_system(path, config=config) as system:
            await _activate(system, warm)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                await _activate(system, range(n))
                gc.collect()
                traced_per_actor = (tracemalloc.get_traced_memory()[0] - before) / n
            finally:
                tracemalloc.stop()
            assert system.live_actors >= n, "actors were passivated while being counted"
    return {
        "idle_actor_bytes": traced_per_actor,
        "idle_actor_rss_bytes": rss_per_actor,
        "activations_per_s": activations_per_s,
    }


async def measure_timers_rss(scale: Scale) -> Figures:
    """``timers_1m_rss_mb``: process RSS with a million timers pending, system running."""
    per_actor = scale.timer_messages * TIMERS_PER_MESSAGE
    rng = random.Random(1)
    with _tempdir() as directory:
        async with bench_system(_database(directory)) as system:
            gc.collect()
            baseline = rss_bytes()
            far = system.clock.now() + LONG_S

            async def arm(actor_id: int) -> None:
                address = Address(KIND, actor_id)
                for first in range(0, per_actor, TIMERS_PER_MESSAGE):
                    dues = [far + rng.random() * 3600 for _ in range(TIMERS_PER_MESSAGE)]
                    await system.ask(address, ArmTimers(first, dues))

            await asyncio.gather(*(arm(actor_id) for actor_id in range(scale.timer_actors)))
            await system.store.writer.flush()
            gc.collect()
            rss = rss_bytes()
            row = await system.store.reader.fetchone("SELECT count(*) FROM timers")
            pending = int(row[0]) if row is not None else 0
            expected = scale.timer_actors * per_actor
            assert pending == expected, f"{pending} timers pending, {expected} armed"
            return {
                "timers_1m_rss_mb": rss / 2**20,
                "timers_baseline_rss_mb": baseline / 2**20,
                "timers_pending": float(pending),
                "timers_in_memory": float(system.timers.pending_in_memory),
            }


# -- timer lateness under load --------------------------------------------------------------------


async def measure_timer_lateness(scale: Scale) -> Figures:
    """``timer_lateness_p99_ms``: timers due in a window, fired while the commit load runs."""
    total = scale.lateness_timers
    rng = random.Random(2)
    with _tempdir() as directory:
        async with bench_system(_database(directory)) as system:
            clock = system.clock
            load = [Address(KIND, i) for i in range(CLIENTS)]
            timer_ids = range(1_000_000, 1_000_000 + math.ceil(total / TIMERS_PER_MESSAGE))
            await _activate(system, range(CLIENTS))
            await _activate(system, timer_ids)
            opens = clock.now() + scale.lateness_lead_s
            width = scale.lateness_window_s
            arms = []
            for index, actor_id in enumerate(timer_ids):
                first = index * TIMERS_PER_MESSAGE
                count = min(TIMERS_PER_MESSAGE, total - first)
                dues = [opens + rng.random() * width for _ in range(count)]
                arms.append(system.ask(Address(KIND, actor_id), ArmTimers(first, dues)))
            await asyncio.gather(*arms)
            if clock.now() >= opens:
                raise RuntimeError("arming the timers took longer than the lead time")
            deadline = time.perf_counter() + scale.lateness_lead_s + width + 60.0
            timers = system.timers

            def finished() -> bool:
                return timers.fired >= total or time.perf_counter() >= deadline

            started = time.perf_counter()
            units = await commit_load(system, load, finished)
            elapsed = time.perf_counter() - started
            if timers.fired < total:
                raise RuntimeError(f"only {timers.fired} of {total} timers fired")
            samples = list(timers.lateness)
    return {
        "timer_lateness_p99_ms": percentile(samples, 0.99) * 1000,
        "timer_lateness_p50_ms": percentile(samples, 0.50) * 1000,
        "timer_lateness_max_ms": max(samples) * 1000,
        "lateness_load_units_per_s": units / elapsed,
    }


# -- restart --------------------------------------------------------------------------------------


async def _create_schema(path: str) -> None:
    store = await Store.open(StoreConfig(path, migrations=BENCH_MIGRATIONS))
    await store.close()


def fill_restart_database(path: str, n: int) -> None:
    """``n`` actors' rows and ``n`` pending timers (one each, due in a day), straight in SQLite."""
    asyncio.run(_create_schema(path))
    encode = msgspec.msgpack.encode
    far = time.time() + LONG_S
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # the fill is not what is measured
        conn.execute("BEGIN")
        conn.executemany(INSERT_ACTOR_SQL, ((i, i % 1000) for i in range(n)))
        conn.executemany(
            INSERT_TIMER_SQL,
            ((KIND, i, "expire", far + i * 1e-3, i + 1, encode(Expire(i))) for i in range(n)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return env


def measure_restart(scale: Scale) -> Figures:
    """``restart_ready_s``: a fresh process on a big database, from spawn to "ready"."""
    with _tempdir() as directory:
        path = _database(directory)
        fill_restart_database(path, scale.restart_rows)
        command = [sys.executable, "-m", MODULE, "--ready-probe", path]
        started = time.perf_counter()
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env()
        ) as child:
            assert child.stdout is not None
            ready = child.stdout.readline()
            parent_s = time.perf_counter() - started
            rest, _ = child.communicate(timeout=120)
        if ready.strip() != "ready" or child.returncode != 0:
            raise RuntimeError(f"the ready probe failed (status {child.returncode}): {ready!r}")
    figures = {"restart_ready_s": parent_s}
    with suppress(ValueError, IndexError):
        figures["restart_ready_child_s"] = float(rest.split()[-1])
    return figures


def _since_process_start() -> float:
    # Both from /proc, in seconds since boot: psutil's create_time() adds a boot time rounded
    # to the second, too coarse for this. The start time is in clock ticks (10 ms).
    with open("/proc/self/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    with open("/proc/uptime") as uptime:
        now = float(uptime.read().split()[0])
    return now - int(fields[19]) / os.sysconf("SC_CLK_TCK")


async def _ready_probe(path: str) -> None:
    async with bench_system(path):
        print("ready", flush=True)
        try:
            since = f"{_since_process_start():.3f}"
        except OSError:
            since = "unknown"  # not Linux
        print(f"since_process_start {since}", flush=True)


# -- the report -----------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Scale], Coroutine[Any, Any, Figures] | Figures]] = {
    "asks": measure_asks,
    "tells": measure_tells,
    "pykka": measure_pykka,
    "commit_group": measure_commit_group,
    "commit_single": measure_commit_single,
    "idle_actors": measure_idle_actors,
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


def run_section_in_child(name: str, quick: bool) -> tuple[Figures, str]:
    """Run one section in a fresh process; its figures and the event loop it used."""
    with _tempdir() as directory:
        out = os.path.join(directory, "section.json")
        command = [sys.executable, "-m", MODULE, "--section", name, "--json", out]
        if quick:
            command.append("--quick")
        child = subprocess.run(command, cwd=ROOT, env=_child_env(), timeout=1800, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"section {name} failed with status {child.returncode}")
        with open(out) as file:
            report = json.load(file)
    return {k: float(v) for k, v in report["figures"].items()}, str(report["loop"])


def run_all(quick: bool, json_path: str | None, uvloop_version: str | None) -> dict[str, Any]:
    """Every section, each in its own process; print the table, write the JSON."""
    figures: Figures = {}
    loops: set[str] = set()
    load_before = os.getloadavg()[0]
    for name in SECTIONS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        section, loop = run_section_in_child(name, quick)
        figures.update(section)
        loops.add(loop)
    met = {target.name: bool(target.met(figures)) for target in TARGETS}
    report: dict[str, Any] = {
        **figures,
        "machine": machine(loops, uvloop_version, load_before),
        "scale": {"quick": quick, **asdict(QUICK if quick else Scale())},
        "targets_met": met,
    }
    print(render_table(figures, met))
    print(f"event loop: {', '.join(sorted(loops))}; quick: {quick}")
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
    parser.add_argument("--section", choices=sorted(SECTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--ready-probe", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    uvloop_version = install_uvloop()
    if args.ready_probe:
        asyncio.run(_ready_probe(args.ready_probe))
        return 0
    from shopkeep.logs import configure_logging

    configure_logging(logging.WARNING, sys.stderr)
    if args.section:
        scale = QUICK if args.quick else Scale()
        figures = run_section(args.section, scale)
        report = {"figures": figures, "loop": _loop_name()}
        if args.json:
            with open(args.json, "w") as file:
                json.dump(report, file)
        else:
            print(json.dumps(report))
        return 0
    run_all(args.quick, args.json, uvloop_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
