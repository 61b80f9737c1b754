"""The group-commit writer: many actors' units of work, one transaction, one fsync.

Why one writer: SQLite allows one writer at a time, and with ``synchronous=FULL`` every commit is
an fsync. Committing each unit alone caps the server near the fsync rate; committing all the units
that queued up while the previous batch was on disk amortises one fsync over all of them.

Why its own thread and not aiosqlite: aiosqlite makes one thread hop per call (~60 us here), and a
unit has several statements. The writer hands a whole batch to its thread in one hop, and runs the
statements there with the stdlib driver, which releases the GIL while SQLite works. With a
:class:`~shopkeep.store.writer_process.WriterProcess` the thread only hands each batch on to the
writer's own process and waits: binding and stepping then never compete with the event loop for
the GIL (``StoreConfig(writer="process")``, ``serve --writer process``; the thread is the
default).

Order: units are committed in submission order, so a unit is durable no later than any unit
submitted after it. A unit's future resolves only after the commit that holds it.

Plan: a batch's statements are not run one call each. :mod:`shopkeep.store.batch_plan` groups
them per table into executemany runs, keeps only the last of repeated overwrites of one row, and
joins INSERT runs into multi-row statements, each only where it cannot change what the batch
commits (its docstring says why). The plan is for the all-or-nothing attempt only; the retry
below runs each unit's own statements.

Failure: a batch that fails is rolled back and retried unit by unit under savepoints, so one bad
unit does not sink its neighbours. A failed unit's future gets :class:`CommitFailed`, and so does
every later unit of the same owner and incarnation (it was built on state that is not on disk);
``on_unit_failed`` lets the runtime restart that owner from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Hashable
from itertools import chain
from typing import Any, TypeVar

from shopkeep.store.batch_plan import Schema, plan
from shopkeep.store.batch_plan import Statement as Statement  # the bench replays them
from shopkeep.store.errors import CommitFailed, StoreError
from shopkeep.store.unit import UnitOfWork
from shopkeep.store.writer_process import (
    BatchNotSent,
    WriterProcess,
    WriterProcessDied,
    error_of,
)
from shopkeep.store.writer_thread import WriterThread

T = TypeVar("T")

FaultHook = Callable[[str], None]
"""Called before each SQLite call of the writer with its name ('begin', 'statement', 'commit');
raising from it simulates a storage fault (used by the fault tests)."""

Tap = Callable[[list[Statement]], None]
"""Called on the writer thread with each batch's statements before they run (benchmarks use it
to replay the same batches on a connection of their own and so measure the writer alone)."""


class _Call:
    """A function to run on the writer's connection between two batches."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]):
        self.fn = fn
        self.future = future


class WriterStats:
    """Counters for metrics and benchmarks: how the batches look and how long commits take."""

    __slots__ = (
        "batches", "failed_units", "last_batch_units", "recent_commit_s", "thread_s", "units",
    )

    def __init__(self) -> None:
        self.batches = 0
        self.units = 0
        self.failed_units = 0
        self.last_batch_units = 0
        self.thread_s = 0.0  # time spent committing batches on the writer thread, in all
        self.recent_commit_s: deque[float] = deque(maxlen=1024)


class GroupCommitWriter:
    """Commits units of work in submission order, many to a transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        inline: bool = False,
        max_batch: int = 1024,
        process: WriterProcess | None = None,
    ) -> None:
        self._conn = conn
        self._process = process
        self._inline = inline
        self._max_batch = max_batch
        self._queue: deque[tuple[UnitOfWork, asyncio.Future[None]] | _Call] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._busy = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # the loop it was started on (see start)
        self._thread = None if inline else WriterThread("shopkeep-writer")
        self._failed_owners: dict[Hashable, int] = {}
        self._schema: Schema | None = None  # read on the writer thread, before a batch
        self.fault: FaultHook | None = None
        self.tap: Tap | None = None
        self.on_unit_failed: Callable[[UnitOfWork, CommitFailed], None] | None = None
        self.stats = WriterStats()

    # -- the loop side -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="shopkeep-writer")

    def submit(self, unit: UnitOfWork) -> asyncio.Future[None]:
        """Queue ``unit``; the future resolves after the commit that holds it."""
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[None] = self._loop.create_future()
        self._queue.append((unit, future))
        self._poke()
        return future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer's connection after every unit submitted so far.

        For reads that must see every submitted change and nothing half-done (the timer pages).
        """
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(fn, future))
        self._poke()
        return await future

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or has failed)."""
        while self._queue or self._busy:
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    async def close(self) -> None:
        """Flush, stop the task and the thread. The connection is the caller's to close."""
        await self.flush()
        self._closed = True
        self._poke()
        if self._task is not None:
            await self._task
        if self._process is not None:
            await self._start(self._process.close)
        if self._thread is not None:
            self._thread.stop()

    @property
    def mode(self) -> str:
        """Where batches commit: "inline" (on the loop), "thread" or "process"."""
        if self._inline:
            return "inline"
        return "thread" if self._process is None else "process"

    @property
    def backlog(self) -> int:
        """Units and calls waiting for the writer."""
        return len(self._queue)

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        # Pipelining: when a batch commits and more units are already queued, the next batch
        # goes to the thread first and only then are the committed units' owners answered, so
        # their Python work overlaps the next fsync instead of delaying it. When nothing is
        # queued, half of the owners are answered at once and given a loop turn to submit their
        # next units; the next batch starts with those, and only then is the other half
        # answered. Units still commit in submission order, and every answer still comes after
        # the commit that holds its unit.
        loop = asyncio.get_running_loop()
        deferred: list[asyncio.Future[None]] = []
        while True:
            if not self._queue:
                if deferred:
                    _succeed(deferred)
                    deferred = []
                    continue
                if self._idle is not None and not self._idle.done():
                    self._idle.set_result(None)
                if self._closed:
                    return
                self._wake = loop.create_future()
                await self._wake
                continue
            self._busy = True
            try:
                head = self._queue[0]
                if isinstance(head, _Call):
                    _succeed(deferred)
                    deferred = []
                    self._queue.popleft()
                    await self._run_call(head)
                    continue
                jobs = self._admitted(self._take_batch())
                if not jobs:
                    continue
                units = [unit for unit, _ in jobs]
                started = time.perf_counter()
                commit = self._start(self._commit, units)
                _succeed(deferred)  # their owners run while this batch is on the disk
                deferred = []
                try:
                    failures = await commit
                except Exception as exc:
                    # not from SQLite (the commit catches that): e.g. a tap that raised before
                    # the transaction began. The task goes on; the batch fails.
                    failures = [exc] * len(units)
                self._record(len(units), time.perf_counter() - started)
                committed: list[asyncio.Future[None]] = []
                for index, (unit, future) in enumerate(jobs):
                    cause = failures[index] if failures is not None else None
                    if cause is not None:
                        self._fail(unit, future, cause)  # at once: no later unit may build on it
                    else:
                        committed.append(future)
                if self._inline:
                    _succeed(committed)
                elif self._queue and not isinstance(self._queue[0], _Call):
                    deferred = committed  # answered once the next batch is on its way
                elif len(committed) >= 8:
                    half = len(committed) // 2
                    _succeed(committed[:half])
                    deferred = committed[half:]
                    await asyncio.sleep(0)
                else:
                    _succeed(committed)
            finally:
                self._busy = False

    def _take_batch(self) -> list[tuple[UnitOfWork, asyncio.Future[None]]]:
        batch: list[tuple[UnitOfWork, asyncio.Future[None]]] = []
        queue = self._queue
        while queue and len(batch) < self._max_batch and not isinstance(queue[0], _Call):
            job = queue.popleft()
            assert not isinstance(job, _Call)
            batch.append(job)
        return batch

    def _admitted(
        self, batch: list[tuple[UnitOfWork, asyncio.Future[None]]]
    ) -> list[tuple[UnitOfWork, asyncio.Future[None]]]:
        """The units that may be tried: not those of an owner whose earlier unit failed."""
        if not self._failed_owners and not any(unit.after for unit, _ in batch):
            return batch  # the common case, checked at C speed
        jobs = []
        for unit, future in batch:
            if _built_on_failure(unit, self._failed_owners) or unit.orphaned:
                self._fail(unit, future, None)
            else:
                jobs.append((unit, future))
        return jobs

    def _record(self, units: int, seconds: float) -> None:
        stats = self.stats
        stats.recent_commit_s.append(seconds)
        stats.batches += 1
        stats.units += units
        stats.last_batch_units = units

    async def _run_call(self, call: _Call) -> None:
        self._schema = None  # the call may change it (the batches are planned by it)
        try:
            result = await self._start(call.fn, self._conn)
        except Exception as exc:
            if not call.future.done():
                call.future.set_exception(exc)
        else:
            if not call.future.done():
                call.future.set_result(result)

    def _fail(
        self, unit: UnitOfWork, future: asyncio.Future[None], cause: BaseException | None
    ) -> None:
        unit.failed = True
        _record_failure(unit, self._failed_owners)
        self.stats.failed_units += 1
        if cause is None or isinstance(cause, _Skipped):
            error = CommitFailed("not committed: a unit it was built on failed")
        else:
            error = CommitFailed(f"commit failed: {cause}", cause)
        if not future.done():
            future.set_exception(error)
        if self.on_unit_failed is not None:
            try:
                self.on_unit_failed(unit, error)
            except Exception as exc:  # the hook's bug must not stop every later commit
                self._loop.call_exception_handler(
                    {"message": "the writer's on_unit_failed hook raised", "exception": exc}
                )

    def forget_failure(self, owner: Hashable) -> None:
        """The owner restarted from the store: its new units are built on durable state."""
        self._failed_owners.pop(owner, None)

    def _start(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Begin ``fn(*args)`` on the writer thread (inline: run it now); await the result."""
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            return self._thread.run(loop, fn, *args)
        future: asyncio.Future[T] = loop.create_future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    # -- the thread side -----------------------------------------------------------------------

    def _commit(self, units: list[UnitOfWork]) -> list[BaseException | None] | None:
        """Commit ``units`` in one transaction; ``None`` when all did, else one entry a unit."""
        started = time.perf_counter()
        try:
            return self._commit_batch(units)
        finally:
            self.stats.thread_s += time.perf_counter() - started

    def _commit_batch(self, units: list[UnitOfWork]) -> list[BaseException | None] | None:
        conn = self._conn
        statements = self._plan(units)
        if self.tap is not None:
            self.tap(statements)
        if self._process is not None and self.fault is None:
            return self._commit_in_process(units, statements)
        try:
            self._check("begin")
            conn.execute("BEGIN IMMEDIATE")
            for sql, params, many in statements:
                self._check("statement")
                if many:
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params)
            self._check("commit")
            conn.execute("COMMIT")
            return None
        except Exception as exc:
            self._rollback()
            if len(units) == 1:
                return [exc]
            return self._commit_one_by_one(units)

    def _plan(self, units: list[UnitOfWork]) -> list[Statement]:
        """The batch's statements as :mod:`shopkeep.store.batch_plan` runs them."""
        try:
            if self._schema is None:
                self._schema = Schema.read(self._conn)
            statements = chain.from_iterable(unit.statements for unit in units)
            planned, schema_may_change = plan(statements, self._schema, self._conn)
        except Exception:
            # e.g. the schema could not be read: run the statements as they were submitted
            self._schema = None
            return [statement for unit in units for statement in unit.statements]
        if schema_may_change:
            self._schema = None
        return planned

    def _commit_in_process(
        self, units: list[UnitOfWork], statements: list[Statement]
    ) -> list[BaseException | None] | None:
        # The fault hook runs only in this process, so a writer under fault injection commits
        # on the thread instead (the same statements, the same unit-by-unit retry).
        assert self._process is not None
        try:
            outcome = self._process.commit(statements)
        except BatchNotSent:
            return self._commit_one_by_one(units)  # nothing reached the child: find it here
        except WriterProcessDied as exc:
            # It may have committed before it died: retrying could write the batch twice, so
            # every unit fails and its actor reloads what the disk really holds.
            return [exc] * len(units)
        if outcome is None:
            return None
        if len(units) == 1:
            return [error_of(outcome)]
        # rolled back in the child: find the failing units here, on this process's connection
        return self._commit_one_by_one(units)

    def _commit_one_by_one(self, units: list[UnitOfWork]) -> list[BaseException | None]:
        conn = self._conn
        failures: list[BaseException | None] = [None] * len(units)
        failed_owners: dict[Hashable, int] = {}  # owner -> incarnation whose unit failed
        try:
            self._check("begin")
            conn.execute("BEGIN IMMEDIATE")
            failed_units: set[int] = set()  # ids of this batch's units that failed
            for index, unit in enumerate(units):
                if _built_on_failure(unit, failed_owners) or any(
                    id(d) in failed_units or d.failed for d in unit.after
                ):
                    failures[index] = _Skipped()
                    failed_units.add(id(unit))
                    continue
                conn.execute("SAVEPOINT unit")
                try:
                    for sql, params, many in unit.statements:
                        self._check("statement")
                        if many:
                            conn.executemany(sql, params)
                        else:
                            conn.execute(sql, params)
                except Exception as exc:
                    conn.execute("ROLLBACK TO unit")
                    failures[index] = exc
                    failed_units.add(id(unit))
                    _record_failure(unit, failed_owners)
                conn.execute("RELEASE unit")
            self._check("commit")
            conn.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            return [exc] * len(units)
        return failures

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing is pending
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _check(self, operation: str) -> None:
        if self.fault is not None:
            self.fault(operation)


def _succeed(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _built_on_failure(unit: UnitOfWork, failed_owners: dict[Hashable, int]) -> bool:
    """Whether an owner of ``unit`` had a unit fail in this incarnation (or a later one)."""
    for owner, incarnation in unit.owners():
        failed_incarnation = failed_owners.get(owner)
        if failed_incarnation is not None and incarnation <= failed_incarnation:
            return True
    return False


def _record_failure(unit: UnitOfWork, failed_owners: dict[Hashable, int]) -> None:
    """Note that every owner of ``unit`` has a failed unit in its incarnation."""
    for owner, incarnation in unit.owners():
        failed_owners[owner] = max(incarnation, failed_owners.get(owner, -1))


class _Skipped(Exception):
    """Marks a unit not tried because an earlier unit of its owner failed in the same batch."""
