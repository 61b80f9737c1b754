"""The group-commit writer: many actors' units of work, one transaction, one fsync.

Why one writer: SQLite allows one writer at a time, and with ``synchronous=FULL`` every commit is
an fsync. Committing each unit alone caps the server near the fsync rate; committing all the units
that queued up while the previous batch was on disk amortises one fsync over all of them.

Where a batch commits: with a :class:`~shopkeep.store.writer_process.WriterProcess`
(``StoreConfig(writer="process")``, the store's default; ``serve --writer process``), in the
writer's own process, which binds and steps without competing with the event loop for the GIL.
The loop drives it: it writes each batch to the process's pipe and reads the answer when the
pipe has it (:class:`~shopkeep.store.writer_process.LoopLink`), settles that batch's units and
sends everything queued meanwhile as the next batch in the same callback, so no loop turn lies
between an answer and the next batch. Nothing is handed between threads on that path: a writer
thread that only carried batches to the process cost a thread wake, two hand-overs of the GIL
and a ``call_soon_threadsafe`` a batch, more than the carrying itself (at 1,300 placements a
second over HTTP, 9% of a core, and the loop's own share went down by less when the loop took
the pipe over). What must run on this process's connection (a call, the unit-by-unit retry of a
batch the process rolled back, a batch under fault injection) runs on a thread of its own, one
thing at a time, in the queue's order.

Without a process (``writer="thread"``) the writer's thread commits, with the stdlib driver,
which releases the GIL while SQLite works (not aiosqlite: one thread hop a call, ~60 us here,
and a unit has several statements). That thread drives itself: the loop appends units to a
queue (and kicks the thread if it sleeps), the thread takes everything queued as its next batch
the moment the previous one is committed, and the loop only hears each outcome (one
``call_soon_threadsafe`` a batch).

Order: units are committed in submission order, so a unit is durable no later than any unit
submitted after it. A unit's future resolves only after the commit that holds it.

Plan: a batch's statements are not run one call each. :mod:`shopkeep.store.batch_plan` groups
them per table into executemany runs, keeps only the last of repeated overwrites of one row, and
joins INSERT runs into multi-row statements, each only where it cannot change what the batch
commits (its docstring says why); with a writer process the plan is made there. The plan is
for the all-or-nothing attempt only; the retry below runs each unit's own statements. The
transactions themselves, on the writer thread, are :mod:`shopkeep.store.batch_commit`'s.

Failure: a batch that fails is rolled back and retried unit by unit under savepoints, so one bad
unit does not sink its neighbours. A failed unit's future gets :class:`CommitFailed`, and so does
every later unit of the same owner and incarnation (it was built on state that is not on disk);
``on_unit_failed`` lets the runtime restart that owner from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from shopkeep.store.batch_commit import (
    BatchCommitter,
    FaultHook,
    Skipped,
    Tap,
    built_on_failure,
    record_failure,
)
from shopkeep.store.batch_plan import Statement as Statement  # the bench replays them
from shopkeep.store.errors import CommitFailed, StoreError
from shopkeep.store.unit import UnitOfWork
from shopkeep.store.writer_process import (
    BatchNotSent,
    LoopLink,
    WriterProcess,
    WriterProcessDied,
    error_of,
)
from shopkeep.store.writer_process import (
    Outcome as ProcessOutcome,
)
from shopkeep.tally import Tally

T = TypeVar("T")


class _Call:
    """A function to run on the writer's connection between two batches."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]):
        self.fn = fn
        self.future = future


COMMIT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Bounds of the commit-latency histogram, seconds: an fsync takes from a fraction of a
millisecond (a fast disk's cache) to many (a busy disk)."""


class WriterStats:
    """Counters for metrics and benchmarks: how the batches look and how long commits take."""

    __slots__ = (
        "batches", "commit_s", "failed_units", "last_batch_units", "statements", "thread_s",
        "units",
    )

    def __init__(self) -> None:
        self.batches = 0
        self.units = 0  # committed (a failed unit counts in failed_units only)
        self.statements = 0  # submitted, as the units wrote them (before the batch plan)
        self.failed_units = 0
        self.last_batch_units = 0
        self.thread_s = 0.0  # time spent committing batches (on the thread, or in the process)
        self.commit_s = Tally(COMMIT_BUCKETS)
        """How long each batch took to commit, from its hand-over to its outcome."""


Job = tuple[UnitOfWork, asyncio.Future[None]]
Outcome = tuple[list[Job], list[BaseException | None] | None, float]
"""A batch's jobs, one failure (or None) a job (None: all committed), and its commit time."""
Failures = list[BaseException | None] | None
"""One failure (or None) a unit, or None when every unit committed."""


class _Sent:
    """A batch in the writer's process: its jobs, the units tried (not refused), which were
    refused (None: none), and when it was sent."""

    __slots__ = ("jobs", "refused", "started", "tried")

    def __init__(
        self, jobs: list[Job], tried: list[UnitOfWork], refused: list[bool] | None, started: float
    ) -> None:
        self.jobs = jobs
        self.tried = tried
        self.refused = refused
        self.started = started


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
        # Appended on the loop, taken on the writer thread: deque's append and popleft are
        # atomic, so the two need no lock.
        self._queue: deque[Job | _Call] = deque()
        self._unsettled = 0  # submitted units and calls whose future is not settled yet
        self._idle: asyncio.Future[None] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop  # the loop it was started on (see start)
        self._task: asyncio.Task[None] | None = None  # inline: the task that commits
        self._wake: asyncio.Future[None] | None = None  # inline: wakes that task
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None  # the thread has ended
        self._kicks: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._sleeping = False  # the thread waits for a kick
        self._failed_owners: dict[Hashable, int] = {}  # the writer thread's (inline: loop's)
        self._committer = BatchCommitter(conn)
        # with a process: the loop drives it, and this thread runs what needs conn
        self._link: LoopLink | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False  # a batch is in the process, or work on the executor's thread
        self._pump_due = False  # a _pump is scheduled
        self._sent: _Sent | None = None
        self.on_unit_failed: Callable[[UnitOfWork, CommitFailed], None] | None = None
        self.stats = WriterStats()

    # -- the loop side -------------------------------------------------------------------------

    def start(self) -> None:
        """Start committing: the writer thread, or (inline) a task on the running loop."""
        self._loop = asyncio.get_running_loop()
        if self._inline:
            self._task = self._loop.create_task(self._run_inline(), name="shopkeep-writer")
            return
        if self._process is not None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="shopkeep-writer")
            self._link = LoopLink(self._process, self._loop, self._answered, self._cut)
            return
        self._stopped = self._loop.create_future()
        # A daemon: a program that exits without closing its store does not hang on it (a
        # transaction cut by the exit is rolled back by SQLite at the next open, as after a crash)
        self._thread = threading.Thread(target=self._work, name="shopkeep-writer", daemon=True)
        self._thread.start()

    def submit(self, unit: UnitOfWork) -> asyncio.Future[None]:
        """Queue ``unit``; the future resolves after the commit that holds it."""
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[None] = self._loop.create_future()
        self.stats.statements += len(unit.statements)
        self._unsettled += 1
        self._queue.append((unit, future))
        self._poke()
        return future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the writer's connection after every unit submitted so far.

        For reads that must see every submitted change and nothing half-done (the timer pages).
        """
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._unsettled += 1
        self._queue.append(_Call(fn, future))
        self._poke()
        return await future

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or has failed)."""
        while self._unsettled:
            if self._idle is None or self._idle.done():
                self._idle = self._loop.create_future()
            await asyncio.shield(self._idle)

    async def close(self) -> None:
        """Flush, then stop the thread (and the writer process). The connection is the caller's
        to close."""
        await self.flush()
        self._closed = True
        self._poke()
        if self._task is not None:
            await self._task
        if self._link is not None and self._executor is not None:
            self._link.stop()
            await self._loop.run_in_executor(self._executor, self._link.process.close)
            self._executor.shutdown()
        if self._stopped is not None and self._thread is not None:
            await self._stopped
            self._thread.join()

    @property
    def fault(self) -> FaultHook | None:
        """The storage-fault hook (see :data:`FaultHook`); None: no fault."""
        return self._committer.fault

    @fault.setter
    def fault(self, hook: FaultHook | None) -> None:
        self._committer.fault = hook

    @property
    def tap(self) -> Tap | None:
        """What sees each batch's statements before they run (see :data:`Tap`)."""
        return self._committer.tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self._committer.tap = tap

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

    def forget_failure(self, owner: Hashable) -> None:
        """The owner restarted from the store: its new units are built on durable state.

        Call it before the owner's new incarnation submits a unit: the writer thread reads this
        state when it takes a batch (a dict's pop and get are atomic, so no lock is needed).
        """
        self._failed_owners.pop(owner, None)

    def _poke(self) -> None:
        if self._inline:
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
        elif self._link is not None:
            if not self._busy and not self._pump_due and not self._closed:
                # after the submitting turn: the units it and its neighbours submit go together
                self._pump_due = True
                self._loop.call_soon(self._pump)
        elif self._sleeping:
            self._sleeping = False  # one kick wakes it: the units queued after it need none
            self._kicks.put(None)

    def _settle(self, outcome: Outcome) -> None:
        """On the loop: answer a batch's units, failures first (no later unit may build on one)."""
        jobs, failures, seconds = outcome
        stats = self.stats
        stats.commit_s.observe(seconds)
        stats.batches += 1
        committed = len(jobs)
        if failures is not None:
            committed -= sum(cause is not None for cause in failures)
        stats.units += committed
        stats.last_batch_units = committed
        if failures is not None:
            for (unit, future), cause in zip(jobs, failures, strict=True):
                if cause is not None:
                    self._report(unit, future, cause)
        for _, future in jobs:
            if not future.done():
                future.set_result(None)
        self._settled(len(jobs))

    def _settle_call(self, call: _Call, result: Any, error: BaseException | None) -> None:
        if not call.future.done():
            if error is not None:
                call.future.set_exception(error)
            else:
                call.future.set_result(result)
        self._settled(1)

    def _settled(self, count: int) -> None:
        self._unsettled -= count
        if not self._unsettled and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _report(self, unit: UnitOfWork, future: asyncio.Future[None], cause: BaseException) -> None:
        self.stats.failed_units += 1
        if isinstance(cause, Skipped):
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

    async def _run_inline(self) -> None:
        # The deterministic mode: the same steps as the thread's, on the loop, no thread at all.
        while True:
            item = self._next_item()
            if item is None:
                if self._closed:
                    return
                self._wake = self._loop.create_future()
                await self._wake
                continue
            self._handle(item, self._settle, self._settle_call)

    # -- the writer thread ---------------------------------------------------------------------
    #
    # Pipelining: the thread takes the next batch as soon as it has committed one (the units
    # submitted while that one was on the disk), and hands the outcome to the loop without
    # waiting for it: the loop answers a batch's units while the next batch is being written,
    # and no loop turn lies between two commits. Units still commit in submission order, and
    # every answer still comes after the commit that holds its unit.

    def _work(self) -> None:
        try:
            while (item := self._next_item(wait=True)) is not None:
                self._handle(item, self._post_settle, self._post_settle_call)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(_set_done, self._stopped)

    def _post_settle(self, outcome: Outcome) -> None:
        self._loop.call_soon_threadsafe(self._settle, outcome)

    def _post_settle_call(self, call: _Call, result: Any, error: BaseException | None) -> None:
        self._loop.call_soon_threadsafe(self._settle_call, call, result, error)

    def _next_item(self, wait: bool = False) -> list[Job] | _Call | None:
        """The next call or batch; None when there is none (``wait``: once closed)."""
        queue = self._queue
        while True:
            if queue:
                if isinstance(queue[0], _Call):
                    return queue.popleft()  # type: ignore[return-value]
                batch: list[Job] = []
                while queue and len(batch) < self._max_batch and not isinstance(queue[0], _Call):
                    batch.append(queue.popleft())  # type: ignore[arg-type]
                return batch
            if self._closed or not wait:
                return None
            # Sleep until submit kicks. The flag goes up before the queue is looked at again, so
            # a unit queued after that look finds the flag up and kicks; a kick left over when the
            # look found a unit only makes the next sleep look once more.
            self._sleeping = True
            if not queue and not self._closed:
                self._kicks.get()
            self._sleeping = False

    def _handle(
        self,
        item: list[Job] | _Call,
        settle: Callable[[Outcome], None],
        settle_call: Callable[[_Call, Any, BaseException | None], None],
    ) -> None:
        if isinstance(item, _Call):
            self._committer.schema_may_have_changed()  # batches are planned by it
            try:
                result = item.fn(self._conn)
            except Exception as exc:
                settle_call(item, None, exc)
            else:
                settle_call(item, result, None)
            return
        started = time.perf_counter()
        try:
            failures = self._commit_admitted(item)
        except Exception as exc:
            # not from SQLite (the commit catches that): e.g. a tap that raised before the
            # transaction began. The writer goes on; the batch fails.
            failures = [exc] * len(item)
            for unit, _ in item:
                self._mark_failed(unit)
        settle((item, failures, time.perf_counter() - started))

    def _commit_admitted(self, jobs: list[Job]) -> Failures:
        """Commit the units that may be tried (not those built on a failed unit); one failure
        (or None) a job, or None when all committed."""
        refused = self._admit(jobs)
        tried = _tried(jobs, refused)
        return self._failures(jobs, refused, self._commit(tried) if tried else None)

    def _admit(self, jobs: list[Job]) -> list[bool] | None:
        """Which of ``jobs`` may not be tried, being built on a failed unit (each marked failed
        at once: a later unit of the batch may be built on it); None when all may."""
        failed_owners = self._failed_owners
        if not failed_owners and not any(unit.after for unit, _ in jobs):
            return None  # the common case: no unit to refuse
        refused = []
        for unit, _ in jobs:
            no = built_on_failure(unit, failed_owners) or unit.orphaned
            if no:
                self._mark_failed(unit)
            refused.append(no)
        return refused if any(refused) else None

    def _failures(self, jobs: list[Job], refused: list[bool] | None, tried: Failures) -> Failures:
        """One failure a job, from the tried units' outcome (``tried``: None when all of them
        committed) and the refused ones; every unit that failed is marked so."""
        failures = tried
        if refused is not None:
            each = iter(tried if tried is not None else [None] * refused.count(False))
            failures = [Skipped() if no else next(each) for no in refused]
        if failures is not None:
            for (unit, _), cause in zip(jobs, failures, strict=True):
                if cause is not None:
                    self._mark_failed(unit)
        return failures

    def _commit(self, units: list[UnitOfWork]) -> list[BaseException | None] | None:
        started = time.perf_counter()
        try:
            return self._committer.commit(units)
        finally:
            self.stats.thread_s += time.perf_counter() - started

    def _mark_failed(self, unit: UnitOfWork) -> None:
        unit.failed = True
        record_failure(unit, self._failed_owners)


    # -- the writer's process, driven from the loop -----------------------------------------------
    #
    # One thing at a time, in the queue's order, as on the thread: a batch in the process or work
    # on the executor's thread (``_busy``). Each ends on the loop, which then starts the next.

    def _pump(self) -> None:
        self._pump_due = False
        while not self._busy:
            item = self._next_item()
            if item is None:
                return
            if isinstance(item, _Call) or self._committer.fault is not None:
                # the fault hook runs only in this process: such a batch commits on the thread
                self._on_thread(item)
            else:
                self._send(item)

    def _send(self, jobs: list[Job]) -> None:
        link, committer = self._link, self._committer
        assert link is not None
        refused = self._admit(jobs)
        tried = _tried(jobs, refused)
        started = time.perf_counter()
        if not tried:
            self._finish(_Sent(jobs, tried, refused, started), None)
            return
        statements = [statement for unit in tried for statement in unit.statements]
        try:
            if committer.tap is not None:
                committer.tap(statements)
            link.send(statements, fresh_schema=committer.child_schema_stale)
        except BatchNotSent:
            # nothing reached the child: find the unit at fault on this process's connection
            self._retry_on_thread(_Sent(jobs, tried, refused, started))
            return
        except Exception as exc:
            # the process is gone or cannot start (its outcome unknown: not retried), or a tap
            # raised before anything was sent: the batch fails, the writer goes on
            self._finish(_Sent(jobs, tried, refused, started), [exc] * len(tried))
            return
        committer.child_schema_stale = False
        self._sent = _Sent(jobs, tried, refused, started)
        self._busy = True

    def _answered(self, outcome: ProcessOutcome) -> None:
        """The process answered the batch in flight (None: committed)."""
        sent, self._sent = self._sent, None
        assert sent is not None
        self._busy = False
        if outcome is None:
            self._finish(sent, None)
        elif len(sent.tried) == 1:
            self._finish(sent, [error_of(outcome)])
        else:
            self._retry_on_thread(sent)  # rolled back in the child: find the failing units here
        self._pump()

    def _cut(self, error: WriterProcessDied) -> None:
        """The process ended with the batch in flight: it may have committed before it died.
        Retrying could write the batch twice, so every unit fails and its owner reloads what
        the disk really holds."""
        sent, self._sent = self._sent, None
        assert sent is not None
        self._busy = False
        self._finish(sent, [error] * len(sent.tried))
        self._pump()

    def _finish(self, sent: _Sent, tried: Failures) -> None:
        seconds = time.perf_counter() - sent.started
        self.stats.thread_s += seconds
        self._settle((sent.jobs, self._failures(sent.jobs, sent.refused, tried), seconds))

    def _retry_on_thread(self, sent: _Sent) -> None:
        committer = self._committer

        def retry() -> Failures:
            return committer.commit_one_by_one(sent.tried)

        def then(outcome: Failures | BaseException) -> None:
            if isinstance(outcome, BaseException):
                outcome = [outcome] * len(sent.tried)
            self._finish(sent, outcome)

        self._run_on_thread(retry, then)

    def _on_thread(self, item: list[Job] | _Call) -> None:
        def handle() -> tuple[Any, ...]:
            handled: list[tuple[Any, ...]] = []
            self._handle(
                item,
                lambda outcome: handled.append((outcome,)),
                lambda call, result, error: handled.append((call, result, error)),
            )
            return handled[0]

        def then(handled: tuple[Any, ...] | BaseException) -> None:
            if isinstance(handled, BaseException):  # _handle catches all but a bug of its own
                handled = _broken(item, handled)
            if isinstance(item, _Call):
                self._settle_call(*handled)
            else:
                self._settle(*handled)

        self._run_on_thread(handle, then)

    def _run_on_thread(
        self, work: Callable[[], T], then: Callable[[T | BaseException], None]
    ) -> None:
        """Run ``work`` on the executor's thread, then ``then`` with its result (or what it
        raised) on the loop, and go on with the queue."""
        assert self._executor is not None
        self._busy = True
        running = self._loop.run_in_executor(self._executor, work)

        def done(future: asyncio.Future[T]) -> None:
            self._busy = False
            error = future.exception()
            then(future.result() if error is None else error)
            self._pump()

        running.add_done_callback(done)


def _tried(jobs: list[Job], refused: list[bool] | None) -> list[UnitOfWork]:
    """The units of ``jobs`` not refused."""
    if refused is None:
        return [unit for unit, _ in jobs]
    return [unit for (unit, _), no in zip(jobs, refused, strict=True) if not no]


def _broken(item: list[Job] | _Call, error: BaseException) -> tuple[Any, ...]:
    """What to settle ``item`` with when the work meant to commit it raised ``error``."""
    if isinstance(item, _Call):
        return (item, None, error)
    return ((item, [error] * len(item), 0.0),)


def _set_done(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
