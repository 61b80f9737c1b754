"""The runtime benchmark's subject: the actor it measures, its schema, and how big each section is.

Shared by the sections (:mod:`shopkeep.bench.runtime_sections`) and the report
(:mod:`shopkeep.bench.runtime`), so a section's child process and the parent agree on both.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from shopkeep.runtime import (
    ActivationContext,
    Actor,
    ActorSystem,
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
    path: str,
    *,
    max_batch: int = 1024,
    config: RuntimeConfig | None = None,
    writer: str | None = None,
) -> AsyncIterator[ActorSystem]:
    """A started system of :class:`BenchActor` on the database at ``path`` (FULL durability).

    Not ``bootstrap.open_runtime``: the commit section needs ``StoreConfig.max_batch``.
    ``writer`` overrides the store's default writer ("thread" or "process").
    """
    store_config = StoreConfig(
        path, synchronous="FULL", migrations=BENCH_MIGRATIONS, max_batch=max_batch
    )
    if writer is not None:
        store_config = dataclasses.replace(store_config, writer=writer)
    store = await Store.open(store_config)
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
    writer: str | None = None
    """Where every section's store commits ("thread" or "process"); None: the store's default."""


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


def database_path(directory: str) -> str:
    """The bench's database in ``directory``."""
    return os.path.join(directory, "bench.db")


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    """A folder of the bench's own, removed with everything in it when done."""
    return tempfile.TemporaryDirectory(prefix="shopkeep-bench-")


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout first on its import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return env
