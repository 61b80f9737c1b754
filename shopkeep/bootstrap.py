"""The composition root: the one place that builds the store and the actor system.

``open_runtime`` opens the database (lock, migrations, writer, reader), starts the actor system
on it, and on exit stops it gracefully (stop intake, drain mailboxes, flush the writer) and
closes the store. The server, the embedded API and the tests all start from here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from shopkeep.runtime import Actor, ActorSystem, Clock, RealClock, RuntimeConfig
from shopkeep.runtime.collector import collect_frozen
from shopkeep.store import MIGRATIONS, Migration, Store, StoreConfig


@dataclass
class Runtime:
    """A started actor system and the store under it."""

    system: ActorSystem
    store: Store


async def finish_despite_cancel(step: Awaitable[None]) -> None:
    """Run a closing ``step`` to its end even when the caller is cancelled meanwhile (a
    Ctrl-C, a ``wait_for`` running out while the block ends), then let the cancel through:
    a close cut halfway leaves the writer's and the reader's threads running, and the program
    never exits."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


class _Open:
    """How many runtimes of this process are open (from their opening to their close)."""

    count = 0


@asynccontextmanager
async def open_runtime(
    db_path: str,
    *,
    synchronous: str = "FULL",
    clock: Clock | None = None,
    config: RuntimeConfig | None = None,
    kinds: Sequence[type[Actor]] = (),
    migrations: Sequence[Migration] = MIGRATIONS,
    inline: bool = False,
    writer: str = "thread",
    id_floors: Sequence[str] = (),
    prepare: Callable[[Store], Awaitable[None]] | None = None,
    agree: Callable[[sqlite3.Connection], None] | None = None,
) -> AsyncIterator[Runtime]:
    """Open the database at ``db_path`` and run an actor system on it until the block ends.

    ``writer``: "thread" or "process", where the group-commit writer commits (see StoreConfig).
    ``id_floors``: queries of ids kept in no ``id`` column (see ``ActorSystem.id_floors``).
    ``prepare``: checks of the database awaited before any actor runs (nothing in its outbox
    or timers is sent on before they pass; what they raise ends the open). ``agree``: the
    same checks of a file being migrated, run before its migrations commit (see
    ``StoreConfig``): a refused upgrade leaves it as it was.
    Where the collector freezes survivors, what earlier runtimes of this process left frozen is
    collected first (``collector.collect_frozen``), unless another runtime is open: that full
    collection would pause it.
    """
    if _Open.count == 0:
        collect_frozen()
    _Open.count += 1
    try:
        store = await Store.open(
            StoreConfig(
                db_path, synchronous=synchronous, migrations=migrations, inline=inline,
                writer=writer, agree=agree,
            )
        )
        try:
            if prepare is not None:
                await prepare(store)
            system = ActorSystem(
                store, clock=clock or RealClock(), config=config, id_floors=id_floors
            )
            for kind in kinds:
                system.register(kind)
            await system.start()
            try:
                yield Runtime(system, store)
            finally:
                await finish_despite_cancel(system.stop())
        finally:
            await finish_despite_cancel(store.close())
    finally:
        _Open.count -= 1
