"""The runtime benchmark's sections: each measures some figures beside its baseline.

What each measures, and why the comparison is fair, is told in :mod:`shopkeep.bench.runtime`.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import suppress
from functools import partial
from typing import Any

import msgspec

from shopkeep.bench.common import percentile, rss_bytes
from shopkeep.bench.runtime_subject import (
    BENCH_MIGRATIONS,
    CLIENTS,
    INSERT_ACTOR_SQL,
    INSERT_ROWS_SQL,
    INSERT_TIMER_SQL,
    KIND,
    LONG_S,
    MODULE,
    PING,
    ROOT,
    ROUNDS,
    ROWS_PER_UNIT,
    ROWS_TABLE_SQL,
    TIMERS_PER_MESSAGE,
    ArmTimers,
    Expire,
    Figures,
    Scale,
    Write,
    bench_system,
    child_env,
    database_path,
    temp_folder,
)
from shopkeep.runtime import (
    ActorSystem,
    Address,
    RuntimeConfig,
)
from shopkeep.runtime.loop_monitor import LoopMonitor
from shopkeep.store import Store, StoreConfig

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
    with temp_folder() as directory:
        async with (
            bench_system(database_path(directory), writer=scale.writer) as eager_system,
            bench_system(
                os.path.join(directory, "lazy.db"), config=lazy, writer=scale.writer
            ) as lazy_system,
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
    with temp_folder() as directory:
        async with bench_system(
            database_path(directory), config=config, writer=scale.writer
        ) as system:
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


async def _commit_throughput(scale: Scale, max_batch: int) -> dict[str, float]:
    """The commit workload's rate, mean batch, the writer thread's time per batch (from handing
    a batch over to its commit) and whether the writer ran in a process of its own."""
    with temp_folder() as directory:
        async with bench_system(
            database_path(directory), max_batch=max_batch, writer=scale.writer
        ) as system:
            addresses = [Address(KIND, i) for i in range(CLIENTS)]
            await _activate(system, range(CLIENTS))
            await commit_load(system, addresses, _until(0.2))  # the WAL file grows to size
            writer = system.store.writer
            stats = writer.stats
            units, batches, thread_s = stats.units, stats.batches, stats.thread_s
            started = time.perf_counter()
            committed = await commit_load(system, addresses, _until(scale.commit_s))
            elapsed = time.perf_counter() - started
            batches = max(1, stats.batches - batches)
            return {
                "rate": committed / elapsed,
                "batch": (stats.units - units) / batches,
                "ms_per_batch": (stats.thread_s - thread_s) / batches * 1000,
                "in_process": float(writer.mode == "process"),
            }


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
    run = await _commit_throughput(scale, max_batch=1024)
    with temp_folder() as directory:
        ceiling = sqlite_ceiling(database_path(directory), CLIENTS, scale.commit_s)
    return {
        "commit_units_per_s_group": run["rate"],
        "commit_mean_batch_group": run["batch"],
        "commit_writer_ms_per_batch_group": run["ms_per_batch"],
        "commit_writer_in_process": run["in_process"],
        "commit_sqlite_ceiling_64_units_per_s": ceiling,
    }


async def measure_commit_single(scale: Scale) -> Figures:
    """``commit_units_per_s_single``: the same workload, one unit per transaction."""
    run = await _commit_throughput(scale, max_batch=1)
    with temp_folder() as directory:
        ceiling = sqlite_ceiling(database_path(directory), 1, scale.commit_s)
    return {
        "commit_units_per_s_single": run["rate"],
        "commit_mean_batch_single": run["batch"],
        "commit_sqlite_ceiling_1_units_per_s": ceiling,
    }


# -- memory ---------------------------------------------------------------------------------------


async def measure_idle_actors(scale: Scale) -> Figures:
    """``idle_actor_bytes`` (tracemalloc) and ``idle_actor_rss_bytes`` per live idle actor."""
    n = scale.idle_actors
    config = RuntimeConfig(idle_timeout_s=LONG_S, max_live_actors=max(200_000, 2 * n))
    warm = range(10_000_000, 10_000_000 + 1_000)  # first-use costs are not per actor
    with temp_folder() as directory:
        path = database_path(directory)
        async with bench_system(path, config=config, writer=scale.writer) as system:
            await _activate(system, warm)
            gc.collect()
            before = rss_bytes()
            started = time.perf_counter()
            await _activate(system, range(n))
            activations_per_s = n / (time.perf_counter() - started)
            gc.collect()
            rss_per_actor = (rss_bytes() - before) / n
            assert system.live_actors >= n, "actors were passivated while being counted"
        async with bench_system(path, config=config, writer=scale.writer) as system:
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


SWEEP_IDLE_S = 2.0
"""The idle timeout of the sweep section: its periodic sweep runs every second."""


async def measure_idle_sweep(scale: Scale) -> Figures:
    """``idle_sweep_stall_ms``: the longest loop stall while the periodic sweep passivates
    ``scale.idle_actors`` actors that went idle together; beside it, the same number dropped
    in one turn (``idle_sweep_one_turn_ms``, what the sweep did before it took a slice a turn)."""
    n = scale.idle_actors
    capacity = max(200_000, 2 * n)
    with temp_folder() as directory:
        path = database_path(directory)
        config = RuntimeConfig(idle_timeout_s=SWEEP_IDLE_S, max_live_actors=capacity)
        async with bench_system(path, config=config, writer=scale.writer) as system:
            await _activate(system, range(n))
            stalls = LoopMonitor(asyncio.get_running_loop())
            stalls.start()
            deadline = time.perf_counter() + 10 * SWEEP_IDLE_S
            while system.live_actors and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            stalls.stop()
            assert not system.live_actors, "the sweep left idle actors live"
        config = RuntimeConfig(idle_timeout_s=LONG_S, max_live_actors=capacity)
        async with bench_system(path, config=config, writer=scale.writer) as system:
            await _activate(system, range(n))
            started = time.perf_counter()
            went = system.registry.passivate_idle(math.inf, n)
            one_turn_s = time.perf_counter() - started
            assert went == n, f"{went} of {n} actors passivated in one turn"
    return {
        "idle_sweep_stall_ms": stalls.max_stall_s * 1000,
        "idle_sweep_one_turn_ms": one_turn_s * 1000,
        "idle_sweep_actors": n,
    }


async def measure_timers_rss(scale: Scale) -> Figures:
    """``timers_1m_rss_mb``: process RSS with a million timers pending, system running."""
    per_actor = scale.timer_messages * TIMERS_PER_MESSAGE
    rng = random.Random(1)
    with temp_folder() as directory:
        async with bench_system(database_path(directory), writer=scale.writer) as system:
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
    with temp_folder() as directory:
        async with bench_system(database_path(directory), writer=scale.writer) as system:
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


def measure_restart(scale: Scale) -> Figures:
    """``restart_ready_s``: a fresh process on a big database, from spawn to "ready"."""
    with temp_folder() as directory:
        path = database_path(directory)
        fill_restart_database(path, scale.restart_rows)
        command = [sys.executable, "-m", MODULE, "--ready-probe", path]
        started = time.perf_counter()
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=child_env()
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


async def ready_probe(path: str) -> None:
    """What the restart section's fresh process runs (``--ready-probe DB``): open the store on
    ``path`` and start the system, then say ``ready`` (and its time since the process began)
    on its output and close."""
    async with bench_system(path):
        print("ready", flush=True)
        try:
            since = f"{_since_process_start():.3f}"
        except OSError:
            since = "unknown"  # not Linux
        print(f"since_process_start {since}", flush=True)
