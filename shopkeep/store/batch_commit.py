"""The writer thread's side of a group commit: one batch, one SQLite transaction.

:class:`BatchCommitter` runs a batch's planned statements (:mod:`shopkeep.store.batch_plan`) in
one transaction on the writer's connection, or hands them to the writer's own process
(:mod:`shopkeep.store.writer_process`), which plans them there, off the event loop's GIL. When
that all-or-nothing attempt fails, it is rolled back
and the batch is run again unit by unit, each under a savepoint and with its own statements in
their own order, so one bad unit does not sink its neighbours and the unit at fault is found
exactly as if there had been no plan. The event loop's side, which queues units and answers
them, is :mod:`shopkeep.store.writer`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Hashable

from shopkeep.store.batch_plan import Schema, Statement, planned
from shopkeep.store.unit import UnitOfWork
from shopkeep.store.writer_process import (
    BatchNotSent,
    FileIdentity,
    WriterProcess,
    WriterProcessDied,
    error_of,
    refuse_unless_named,
)

FaultHook = Callable[[str], None]
"""Called before each SQLite call of the writer with its name ('begin', 'statement', 'commit');
raising from it simulates a storage fault (used by the fault tests)."""

Tap = Callable[[list[Statement]], None]
"""Called on the writer thread with each batch's statements, as its units wrote them, before
they are planned and run (benchmarks use it to replay the same batches on a connection of their
own, planned the same way, and so measure the writer alone)."""


class BatchCommitter:
    """Commits batches of units on the writer's connection (call it from one thread only)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        process: WriterProcess | None,
        named: tuple[str, FileIdentity] | None = None,
    ) -> None:
        self.conn = conn
        self.process = process
        self.named = named
        """The database's path and the file the store opened there: a batch is refused
        (nothing written) while the path names another, or none (:func:`check_still_named`)."""
        self.fault: FaultHook | None = None
        self.tap: Tap | None = None
        self.schema: Schema | None = None  # what the plan knows of the tables; None: read it
        self._child_schema_stale = False  # the writer process must read the schema again

    def schema_may_have_changed(self) -> None:
        """Something ran on the writer's connection that may have changed the schema (a
        call): the plans read it again, here and in the writer's process."""
        self.schema = None
        self._child_schema_stale = True

    def commit(self, units: list[UnitOfWork]) -> list[BaseException | None] | None:
        """Commit ``units`` in one transaction; ``None`` when all did, else one entry a unit
        (the failures the unit-by-unit retry found)."""
        conn = self.conn
        submitted = [statement for unit in units for statement in unit.statements]
        if self.tap is not None:
            self.tap(submitted)
        if self.process is not None and self.fault is None:
            # planned in the writer's process, whose GIL is not the event loop's; it looks at
            # the file too (here, the stat's release of the GIL cost the batch a hand-over)
            return self._commit_in_process(units, submitted)
        moved = self._not_at_its_name(units)
        if moved is not None:
            return moved
        statements, self.schema = planned(conn, submitted, self.schema)
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

    def _commit_in_process(
        self, units: list[UnitOfWork], statements: list[Statement]
    ) -> list[BaseException | None] | None:
        # The fault hook runs only in this process, so a writer under fault injection commits
        # on the thread instead (the same statements, the same unit-by-unit retry).
        assert self.process is not None
        try:
            outcome = self.process.commit(statements, fresh_schema=self._child_schema_stale)
        except BatchNotSent:
            # nothing reached the child (not the flag either): find the unit at fault here
            return self._commit_one_by_one(units)
        except WriterProcessDied as exc:
            # It may have committed before it died: retrying could write the batch twice, so
            # every unit fails and its actor reloads what the disk really holds.
            return [exc] * len(units)
        self._child_schema_stale = False
        if outcome is None:
            return None
        if len(units) == 1:
            return [error_of(outcome)]
        # rolled back in the child: find the failing units here, on this process's connection
        return self._commit_one_by_one(units)

    def _not_at_its_name(self, units: list[UnitOfWork]) -> list[BaseException | None] | None:
        """Each unit's failure while the database's path names another file or none (see
        :func:`check_still_named`); None when it names the store's."""
        if self.named is not None:
            try:
                refuse_unless_named(self.conn, *self.named)
            except sqlite3.OperationalError as exc:
                return [exc] * len(units)
        return None

    def _commit_one_by_one(self, units: list[UnitOfWork]) -> list[BaseException | None]:
        moved = self._not_at_its_name(units)
        if moved is not None:
            return moved
        conn = self.conn
        failures: list[BaseException | None] = [None] * len(units)
        failed_owners: dict[Hashable, int] = {}  # owner -> incarnation whose unit failed
        try:
            self._check("begin")
            conn.execute("BEGIN IMMEDIATE")
            failed_units: set[int] = set()  # ids of this batch's units that failed
            for index, unit in enumerate(units):
                if built_on_failure(unit, failed_owners) or any(
                    id(d) in failed_units or d.failed for d in unit.after
                ):
                    failures[index] = Skipped()
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
                    record_failure(unit, failed_owners)
                conn.execute("RELEASE unit")
            self._check("commit")
            conn.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            return [exc] * len(units)
        return failures

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing is pending
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    def _check(self, operation: str) -> None:
        if self.fault is not None:
            self.fault(operation)


def built_on_failure(unit: UnitOfWork, failed_owners: dict[Hashable, int]) -> bool:
    """Whether an owner of ``unit`` had a unit fail in this incarnation (or a later one)."""
    for owner, incarnation in unit.owners():
        failed_incarnation = failed_owners.get(owner)
        if failed_incarnation is not None and incarnation <= failed_incarnation:
            return True
    return False


def record_failure(unit: UnitOfWork, failed_owners: dict[Hashable, int]) -> None:
    """Note that every owner of ``unit`` has a failed unit in its incarnation."""
    for owner, incarnation in unit.owners():
        failed_owners[owner] = max(incarnation, failed_owners.get(owner, -1))


class Skipped(Exception):
    """Marks a unit not tried because an earlier unit of its owner failed in the same batch."""
