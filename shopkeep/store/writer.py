"""The group-commit writer: many actors' units of work, one transaction, one fsync.

Why one writer: SQLite allows one writer at a time, and with ``synchronous=FULL`` every commit is
an fsync. Committing each unit alone caps the server near the fsync rate; committing all the units
that queued up while the previous batch was on disk amortises one fsync over all of them.

Why its own thread and not aiosqlite: aiosqlite makes one thread hop per call (~60 us here), and a
unit has several statements. The writer's thread runs a whole batch in one go with the stdlib
driver, which releases the GIL while SQLite works. The thread drives itself: the loop appends
units to a queue (and kicks the thread if it sleeps), the thread takes everything queued as its
next batch the moment the previous one is committed, and the loop only hears each outcome (one
``call_soon_threadsafe`` a batch). No loop turn lies between two commits, which matters when the
loop is busy: a batch handed over by the loop waited for the loop's turn. With a
:class:`~shopkeep.store.writer_process.WriterProcess` the thread only hands each batch on to the
writer's own process and waits: binding and stepping then never compete with the event loop for
the GIL (``StoreConfig(writer="process")``, the store's default; ``serve --writer process``).

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
from shopkeep.store.writer_process import FileIdentity, WriterProcess
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


WRITING_AGAIN_AFTER_S = 1.0
"""How long after its last refusal of its own (a full disk) a batch committed whole ends the
run of refusals: a disk nearly full takes some commits between refusals, which would each
end one and begin the next."""


class WriterStats:
    """Counters for metrics and benchmarks: how the batches look and how long commits take."""

    __slots__ = (
        "batches", "busy_since", "commit_s", "failed_units", "in_refusal",
        "last_batch_units", "refusal_cause", "refused_at", "refused_units", "statements",
        "thread_s", "units",
    )

    def __init__(self) -> None:
        self.batches = 0
        self.units = 0  # committed (a failed unit counts in failed_units only)
        self.statements = 0  # submitted, as the units wrote them (before the batch plan)
        self.failed_units = 0
        self.last_batch_units = 0
        self.thread_s = 0.0  # time spent committing batches on the writer thread, in all
        self.commit_s = Tally(COMMIT_BUCKETS)
        """How long each batch took to commit, from its hand-over to its outcome."""
        self.busy_since: float | None = None
        """When (``time.perf_counter``) the batch or call the writer is at began; None
        between them. Set on the writer's thread, read on the loop: one attribute."""
        self.refused_units = 0
        """Units the store refused for its own sake (a full disk, an I/O error), not for what
        they write (``CommitFailed.refused_by_store``): in ``failed_units`` too."""
        self.refusal_cause: BaseException | None = None
        """What SQLite raised the last time it refused a unit so; None if never."""
        self.refused_at: float | None = None
        """When (``time.monotonic``) it last did; None if never."""
        self.in_refusal = False
        """Whether the store is in a run of refusals of its own: from one until a batch
        commits whole :data:`WRITING_AGAIN_AFTER_S` or more after the last."""

    def refusing(self, within_s: float) -> str | None:
        """What the store said if it is in a run of refusals of its own (a full disk) and
        refused a unit in the last ``within_s`` seconds, or is at a batch now (which ends the
        run only by committing: a lock another program holds makes each try wait SQLite's
        busy timeout, twice, and the refusals come ten seconds apart); else None."""
        refused_at = self.refused_at
        if not self.in_refusal or refused_at is None:
            return None
        if self.busy_since is None and time.monotonic() - refused_at > within_s:
            return None
        return str(self.refusal_cause)

    def busy_s(self) -> float:
        """How long the writer has been at its current batch or call (0 when at none): what
        a disk that stopped answering shows as."""
        since = self.busy_since
        return 0.0 if since is None else max(0.0, time.perf_counter() - since)


Job = tuple[UnitOfWork, asyncio.Future[None]]
Outcome = tuple[list[Job], list[BaseException | None] | None, float]
"""A batch's jobs, one failure (or None) a job (None: all committed), and its commit time."""


class GroupCommitWriter:
    """Commits units of work in submission order, many to a transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        inline: bool = False,
        max_batch: int = 1024,
        process: WriterProcess | None = None,
        named: tuple[str, FileIdentity] | None = None,
    ) -> None:
        self._conn = conn
        self._process = process
        self._inline = inline
        self._max_batch = max_batch
        # Appended on the loop, taken on the writer thread: deque's append and popleft are
        # atomic, so the two need no lock.
        self._queue: deque[Job | _Call] = deque()
        self._unsettled = 0  # submitted units and calls whose future is not settled yet
        # the future of the last unit or call submitted: settled in the order they were, so
        # once it is, every one before it is too
        self._last: asyncio.Future[Any] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop  # the loop it was started on (see start)
        self._task: asyncio.Task[None] | None = None  # inline: the task that commits
        self._wake: asyncio.Future[None] | None = None  # inline: wakes that task
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None  # the thread has ended
        self._kicks: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._sleeping = False  # the thread waits for a kick
        # the writer thread's (inline: the loop's). An owner stays in it once one of its units
        # failed: a unit of that incarnation may still be open across an await, to be refused
        # whenever it comes; a restart is a new incarnation, which the entry does not refuse
        self._failed_owners: dict[Hashable, int] = {}
        self._committer = BatchCommitter(conn, process, named)
        self.on_unit_failed: Callable[[UnitOfWork, CommitFailed], None] | None = None
        self.on_refusal_changed: Callable[[bool], None] | None = None
        """Called when a run of the store's own refusals begins (True) or ends (False); see
        :attr:`WriterStats.in_refusal`."""
        self.stats = WriterStats()

    # -- the loop side -------------------------------------------------------------------------

    def start(self) -> None:
        """Start committing: the writer thread, or (inline) a task on the running loop."""
        self._loop = asyncio.get_running_loop()
        if self._inline:
            self._task = self._loop.create_task(self._run_inline(), name="shopkeep-writer")
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
        self._last = future
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
        self._last = future
        self._queue.append(_Call(fn, future))
        self._poke()
        return await future

    async def settled_so_far(self) -> None:
        """Wait until every unit and call submitted before this call is settled (committed,
        or failed), not for those submitted meanwhile: a busy store is never idle, and what
        counts what was answered (the audit) must not wait for the load to stop."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])

    async def flush(self) -> None:
        """Wait until nothing submitted is unsettled: those submitted while it waits too (for
        shutting down, when nothing new comes; under load it waits for the load to stop)."""
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

    def _poke(self) -> None:
        if self._inline:
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)
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
        if failures is None:
            # (in a run of refusals, refused_at is set)
            if stats.in_refusal and time.monotonic() - (stats.refused_at or 0.0) >= (
                WRITING_AGAIN_AFTER_S
            ):
                stats.in_refusal = False
                self._refusal_changed()
        else:
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
        stats = self.stats
        stats.failed_units += 1
        if isinstance(cause, Skipped):
            refusal = stats.refusal_cause if stats.in_refusal else None
            if refusal is not None:
                # built on a unit the store refused, in a run of its refusals: refused alike,
                # and said so (a caller was told only that a unit before it failed)
                error = CommitFailed(
                    f"not committed: a unit it was built on failed: {refusal}", refusal
                )
            else:
                error = CommitFailed("not committed: a unit it was built on failed")
        else:
            error = CommitFailed(f"commit failed: {cause}", cause)
        if error.refused_by_store:
            stats.refused_units += 1
            stats.refusal_cause = error.cause
            stats.refused_at = time.monotonic()
            if not stats.in_refusal:
                stats.in_refusal = True
                self._refusal_changed()
        if not future.done():
            future.set_exception(error)
        if self.on_unit_failed is not None:
            try:
                self.on_unit_failed(unit, error)
            except Exception as exc:  # the hook's bug must not stop every later commit
                self._loop.call_exception_handler(
                    {"message": "the writer's on_unit_failed hook raised", "exception": exc}
                )

    def _refusal_changed(self) -> None:
        if self.on_refusal_changed is not None:
            try:
                self.on_refusal_changed(self.stats.in_refusal)
            except Exception as exc:  # the hook's bug must not stop every later commit
                self._loop.call_exception_handler(
                    {"message": "the writer's on_refusal_changed hook raised", "exception": exc}
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
            if self._process is not None:
                self._process.close()
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
        stats = self.stats
        stats.busy_since = started = time.perf_counter()
        if isinstance(item, _Call):
            self._committer.schema_may_have_changed()  # batches are planned by it
            result: Any = None
            error: BaseException | None = None
            try:
                result = item.fn(self._conn)
            except Exception as exc:
                error = exc
            stats.busy_since = None
            settle_call(item, result, error)
            return
        try:
            failures = self._commit_admitted(item)
        except Exception as exc:
            # not from SQLite (the commit catches that): e.g. a tap that raised before the
            # transaction began. The writer goes on; the batch fails.
            failures = [exc] * len(item)
            for unit, _ in item:
                self._mark_failed(unit)
        stats.busy_since = None
        settle((item, failures, time.perf_counter() - started))

    def _commit_admitted(self, jobs: list[Job]) -> list[BaseException | None] | None:
        """Commit the units that may be tried (not those built on a failed unit); one failure
        (or None) a job, or None when all committed."""
        failed_owners = self._failed_owners
        refused: list[bool] | None = None  # the common case: no unit to refuse
        if failed_owners or any(unit.after for unit, _ in jobs):
            refused = []
            for unit, _ in jobs:
                no = built_on_failure(unit, failed_owners) or unit.orphaned
                if no:
                    self._mark_failed(unit)  # at once: a later unit here may be built on it
                refused.append(no)
        if refused is None or not any(refused):
            failures = self._commit([unit for unit, _ in jobs])
        else:
            tried = [unit for (unit, _), no in zip(jobs, refused, strict=True) if not no]
            outcome = self._commit(tried) if tried else None
            each = iter(outcome if outcome is not None else [None] * len(tried))
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


def _set_done(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
