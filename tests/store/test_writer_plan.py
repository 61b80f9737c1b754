"""The writer with its batch plan: grouped statements, and failures still found unit by unit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shopkeep.store import MIGRATIONS, CommitFailed, Migration, Store, StoreConfig, UnitOfWork
from shopkeep.store.batch_plan import Statement, planned

TABLES = (
    *MIGRATIONS,
    Migration(
        len(MIGRATIONS) + 1,
        "events and unique tags",
        "CREATE TABLE events (n INTEGER);\n"
        "CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER NOT NULL);\n"
        "CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0))",
    ),
)
EVENT = "INSERT INTO events (n) VALUES (?)"
TAG = "INSERT INTO tags (name, n) VALUES (?, ?)"
COUNT = "UPDATE counters SET n = ? WHERE id = ?"
COUNTED = (
    "CREATE TABLE seen (n INTEGER);"
    "CREATE TRIGGER counted AFTER UPDATE ON counters"
    " BEGIN INSERT INTO seen (n) VALUES (new.n); END;"
)
"""A trigger that records every UPDATE of a counter: its table is no longer plain to the plan."""


@pytest.fixture(params=["thread", "process"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    config = StoreConfig(str(tmp_path / "p.db"), migrations=TABLES, writer=request.param)
    opened = await Store.open(config)
    yield opened
    await opened.close()


def tagged(n: int, tag: str, owner: str, incarnation: int = 1) -> UnitOfWork:
    unit = UnitOfWork(owner, incarnation)
    unit.execute(EVENT, (n,))
    unit.execute(TAG, (tag, n))
    return unit


async def rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    return await store.reader.fetchall(sql)


@asynccontextmanager
async def writer_held(store: Store) -> AsyncIterator[None]:
    """Keep the writer busy until the block ends, so that what it submits is one batch (the
    writer takes a batch as soon as it is free)."""
    gate = threading.Event()
    held = asyncio.create_task(store.writer.call(lambda conn: gate.wait(10)))
    await asyncio.sleep(0)  # the call is queued first
    try:
        yield
    finally:
        gate.set()
        await held


async def test_a_grouped_batch_with_a_failing_unit_commits_its_neighbours(store: Store) -> None:
    calls: list[list[Statement]] = []
    store.writer.tap = calls.append
    bad = tagged(3, "t1", owner="a")  # the same tag as unit 1: UNIQUE fails
    orphan = tagged(6, "t6", owner="c")
    orphan.after.append(bad)
    units = [
        tagged(1, "t1", owner="b"),
        tagged(2, "t2", owner="c"),
        bad,
        tagged(4, "t4", owner="d"),
        tagged(5, "t5", owner="a"),  # a later unit of the failed unit's owner
        orphan,  # built on the failed unit
        tagged(7, "t7", owner="a", incarnation=2),  # after a restart: fine
    ]
    async with writer_held(store):
        futures = [store.writer.submit(unit) for unit in units]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert len(calls) == 1 and len(calls[0]) == 14  # one batch, as its units wrote it
    grouped, _ = await store.writer.call(lambda conn: planned(conn, calls[0], None))
    assert len(grouped) < 14  # and planned into fewer calls (in the writer's process, if any)
    assert [r is None for r in results] == [True, True, False, True, False, False, True]
    assert isinstance(results[2], CommitFailed) and "UNIQUE" in str(results[2])
    assert await rows(store, "SELECT n FROM events ORDER BY n") == [(1,), (2,), (4,), (7,)]
    assert await rows(store, "SELECT name FROM tags ORDER BY n") == [
        ("t1",),
        ("t2",),
        ("t4",),
        ("t7",),
    ]


async def test_coalesced_updates_leave_the_last_value(store: Store) -> None:
    await counter_at(store, 0)
    futures = []
    for n in range(1, 11):
        unit = UnitOfWork("counter", 1)
        unit.execute(COUNT, (n, 1))
        futures.append(store.writer.submit(unit))
    await asyncio.gather(*futures)
    assert await rows(store, "SELECT n FROM counters") == [(10,)]


async def test_a_coalesced_away_update_that_breaks_a_check_still_fails_its_unit(
    store: Store,
) -> None:
    await counter_at(store, 5)
    broken, fixed = UnitOfWork("x", 1), UnitOfWork("y", 1)
    broken.execute(COUNT, (-1, 1))
    fixed.execute(COUNT, (3, 1))
    results = await asyncio.gather(
        store.writer.submit(broken), store.writer.submit(fixed), return_exceptions=True
    )
    assert isinstance(results[0], CommitFailed) and "CHECK" in str(results[0])
    assert results[1] is None
    assert await rows(store, "SELECT n FROM counters") == [(3,)]


async def test_a_tap_that_raises_fails_its_batch_and_the_writer_goes_on(store: Store) -> None:
    def broken_tap(statements: list[Statement]) -> None:
        raise RuntimeError("tap broke")

    store.writer.tap = broken_tap
    with pytest.raises(CommitFailed, match="tap broke"):
        await store.writer.submit(tagged(1, "t1", owner="a"))
    store.writer.tap = None
    await store.writer.submit(tagged(2, "t2", owner="b"))
    assert await rows(store, "SELECT n FROM events") == [(2,)]


async def test_a_failure_hook_that_raises_does_not_stop_the_writer(store: Store) -> None:
    reported: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))

    def broken_hook(unit: UnitOfWork, error: CommitFailed) -> None:
        raise RuntimeError("hook broke")

    store.writer.on_unit_failed = broken_hook
    bad = UnitOfWork("a", 1)
    bad.execute("INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(CommitFailed):
        await store.writer.submit(bad)
    await store.writer.submit(tagged(2, "t2", owner="b"))
    assert await rows(store, "SELECT n FROM events") == [(2,)]
    assert [str(context["exception"]) for context in reported] == ["hook broke"]


async def test_a_refused_unit_refuses_the_later_units_of_its_joined_owners_in_its_batch(
    store: Store,
) -> None:
    bad = UnitOfWork("a", 1)
    bad.execute("INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(CommitFailed):
        await store.writer.submit(bad)
    refused = tagged(1, "t1", owner="a")  # a later unit of the failed owner...
    refused.joined.append(("b", 1))  # ... that also changed b
    built_on_b = tagged(2, "t2", owner="b")  # so b's next unit is built on a failure
    built_on_refused = tagged(3, "t3", owner="c")
    built_on_refused.after.append(refused)
    fine = tagged(4, "t4", owner="d")
    async with writer_held(store):
        futures = [
            store.writer.submit(unit) for unit in (refused, built_on_b, built_on_refused, fine)
        ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [isinstance(result, CommitFailed) for result in results] == [True, True, True, False]
    assert await rows(store, "SELECT n FROM events") == [(4,)]


async def test_a_trigger_added_by_a_call_stops_the_coalescing_of_its_tables_updates(
    store: Store,
) -> None:
    await counter_at(store, 0)
    await coalescing_batch(store, (1, 2))  # planned with the schema as it was: read, kept
    await store.writer.call(lambda conn: conn.executescript(COUNTED))

    await coalescing_batch(store, (3, 4, 5))

    # every UPDATE ran: the plan (in the writer's process, if any) read the schema again
    assert await rows(store, "SELECT n FROM seen ORDER BY rowid") == [(3,), (4,), (5,)]
    assert await rows(store, "SELECT n FROM counters") == [(5,)]


async def test_the_schema_is_read_again_even_when_the_batch_after_the_call_was_not_sent(
    store: Store,
) -> None:
    await counter_at(store, 0)
    await coalescing_batch(store, (1, 2))
    await store.writer.call(lambda conn: conn.executescript(COUNTED))
    unsendable = UnitOfWork("other", 1)
    unsendable.execute(EVENT, (lambda: 1,))  # no pickle: never reaches a writer process
    with pytest.raises(CommitFailed):
        await store.writer.submit(unsendable)
    counted = UnitOfWork("counter", 1)  # one unit, so no call holds the writer before it
    for n in (3, 4, 5):
        counted.execute(COUNT, (n, 1))

    await store.writer.submit(counted)

    assert await rows(store, "SELECT n FROM seen ORDER BY rowid") == [(3,), (4,), (5,)]


async def counter_at(store: Store, n: int) -> None:
    """Counter 1, committed at ``n``."""
    setup = UnitOfWork("setup")
    setup.execute("INSERT INTO counters (id, n) VALUES (1, ?)", (n,))
    await store.writer.submit(setup)


async def coalescing_batch(store: Store, values: tuple[int, ...]) -> None:
    """One batch of UPDATEs of the same counter, one unit each (the plan would keep the last)."""
    units = []
    for n in values:
        unit = UnitOfWork("counter", 1)
        unit.execute(COUNT, (n, 1))
        units.append(unit)
    async with writer_held(store):
        futures = [store.writer.submit(unit) for unit in units]
    await asyncio.gather(*futures)
