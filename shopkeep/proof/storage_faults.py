"""Group 3, storage faults: fail the Nth database call of an operation, for every N.

SQLite's own test loops fail its Nth allocation or I/O call for N = 1, 2, ... until the
statement under test completes. This does the same to the shop: for each operation (place in
one turn, place through the saga, pay, cancel, timeout, compensate), on a fresh shop set up the
same way each time, the Nth database call made while the operation runs (and while its
consequences settle: durable releases, refunds, timers) fails, for N = 1, 2, ... until the
operation completes without reaching call N. Database calls are the writer's (begin, each
statement, commit) and the reader's (every query, state loads included). Two kinds of fault:

- *once*: the Nth call fails and the disk works again (a transient EIO);
- *persistent*: the Nth call and every later one fail until the operation has ended (a disk
  that went read-only); then it is repaired;
- *crash*: the process dies at the Nth call (nothing more reaches the disk, memory is lost)
  and a new process opens the file, recovers, and carries on.

After each run, with the disk working, the shop is given time to retry, and then:

- the audit (SPEC 6) is ok;
- no partial effect: the shop's business state (stock, wallets, points, coupons, orders,
  payments, refunds, the gateway's books) is either the state before the operation or the
  state after it ran without a fault (a placement refused for a fault is a canceled order with
  nothing held, which the state before the operation does not count);
- what the live shop answers equals what a fresh process reads from the file.

``python -m shopkeep.proof storage-faults`` runs every operation in every mode (``MODES``); the
figure is the number of injection points covered.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shopkeep.proof.harness import (
    differences,
    drive,
    quiet_about_lost_units,
    scratch_folder,
    shop_views,
    silenced_logs,
)
from shopkeep.proof.storage_operations import OPERATIONS, Bench, Operation, business_state
from shopkeep.runtime.determinism import run_seeded

MODES = ("once", "persistent", "crash")
MAX_CALLS = 400
"""A bound on N: an operation that keeps making database calls past it is a finding."""
RECOVERY_TICKS = 3_600
"""Virtual seconds the shop may take, with the disk repaired, to finish what the fault cut."""


class DiskError(OSError):
    """The simulated storage fault."""


class FaultyDisk:
    """Counts database calls and fails the ``fail_at``-th (and, persistent, every later one)."""

    def __init__(self, fail_at: int, persistent: bool, crash: bool = False) -> None:
        self.fail_at = fail_at
        self.persistent = persistent or crash  # a dead process makes no more calls
        self.crash = crash
        self.calls = 0
        self.fired = False
        self.armed = True

    def __call__(self, operation: str) -> None:
        if not self.armed:
            return
        self.calls += 1
        if self.calls == self.fail_at or (self.persistent and self.calls > self.fail_at):
            self.fired = True
            raise DiskError(f"injected fault at database call {self.calls} ({operation})")


class FaultyReader:
    """A reader whose every query first asks the disk whether it works."""

    def __init__(self, inner: Any, disk: FaultyDisk) -> None:
        self._inner = inner
        self._disk = disk

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows, unless the disk fails this call."""
        self._disk("read")
        rows: list[tuple[Any, ...]] = await self._inner.fetchall(sql, params)
        return rows

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row, unless the disk fails this call."""
        self._disk("read")
        row: tuple[Any, ...] | None = await self._inner.fetchone(sql, params)
        return row

    async def close(self) -> None:
        """Close the real reader."""
        await self._inner.close()


@dataclass
class Tally:
    """What the fault loops covered, per operation and mode."""

    points: dict[tuple[str, str], int] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Injection points covered in all."""
        return sum(self.points.values())


async def run_once(operation: Operation, disk: FaultyDisk | None, folder: str) -> dict[str, Any]:
    """Set the bench up, run ``operation`` on a faulty disk, repair it, let the shop retry;
    answer the business state after, with ``outcome`` and ``problems`` (empty when all is
    well). With no disk, the reference run: no fault at all."""
    asyncio.get_running_loop().set_exception_handler(quiet_about_lost_units)
    bench = await Bench.open(folder, operation.config)
    try:
        await operation.prepare(bench)
        await bench.quiet()
        before = await business_state(bench)
        store = bench.shop.runtime.store
        real_reader, real_point_reader = store.reader, store.point_reader
        if disk is not None:
            store.writer.fault = disk
            store.reader = bench.shop.reader = FaultyReader(real_reader, disk)
            store.point_reader = FaultyReader(real_point_reader, disk)
        task = asyncio.get_running_loop().create_task(operation.run(bench))
        problems: list[str] = []
        try:
            await drive(bench.clock, [task], RECOVERY_TICKS)
        except AssertionError as hung:
            problems.append(f"the operation hung: {hung}")
        outcome = "cut" if not task.done() else _outcome(task)
        if disk is not None:
            disk.armed = False  # the disk is repaired
            store.writer.fault = None
            store.reader = bench.shop.reader = real_reader
            store.point_reader = real_point_reader
            if disk.crash and disk.fired:
                await bench.crash_and_reopen()
        await bench.recover()
        after = await business_state(bench)
        failed = await bench.audit_failures()
        if failed:
            problems.append(f"audit: {failed}")
        live = await shop_views(bench.shop)
        await bench.reopen()
        changed = differences(live, await shop_views(bench.shop))
        if changed:
            problems.append(f"a reload disagrees: {changed[:3]}")
        return {"before": before, "after": after, "outcome": outcome, "problems": problems}
    finally:
        await bench.close()


def _outcome(task: asyncio.Task[str]) -> str:
    error = task.exception()
    return task.result() if error is None else f"error {type(error).__name__}"


def run_operation(operation: Operation, mode: str, tally: Tally, max_calls: int) -> None:
    """The fault loop of one operation in one mode: N = 1, 2, ... until it completes."""
    folder = scratch_folder(f"shopkeep-faults-{operation.name}-")
    try:
        reference = run_seeded(0, lambda: run_once(operation, None, str(folder / "ref.db")))
        changed = reference["after"] != reference["before"]
        if reference["problems"] or changed != operation.changes:
            tally.failures.append(f"{operation.name}: the fault-free run went wrong: {reference}")
            return
        outcomes: dict[str, int] = {}
        points = 0
        for n in range(1, max_calls + 1):
            disk = FaultyDisk(n, persistent=mode == "persistent", crash=mode == "crash")
            path = str(folder / f"n{n}.db")
            result = run_seeded(n, lambda disk=disk, path=path: run_once(operation, disk, path))  # type: ignore[misc]
            if not disk.fired:
                break  # the operation completed before reaching call N: every point is covered
            points += 1
            where = f"{operation.name}, {mode}, call {n}"
            end = result["after"]
            if end == reference["after"]:
                kind = "completed"
            elif end == result["before"]:
                kind = "no effect"
            else:
                kind = "partial"
                tally.failures.append(
                    f"{where}: a partial effect ({result['outcome']}): "
                    f"{_diff(result['before'], reference['after'], end)}"
                )
            for problem in result["problems"]:
                tally.failures.append(f"{where}: {problem}")
            outcomes[kind] = outcomes.get(kind, 0) + 1
        else:
            tally.failures.append(f"{operation.name}, {mode}: still calling after {max_calls}")
        tally.points[(operation.name, mode)] = points
        tally.outcomes[(operation.name, mode)] = outcomes
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _diff(before: dict[str, Any], done: dict[str, Any], end: dict[str, Any]) -> str:
    keys = [k for k in end if end[k] != before.get(k) and end[k] != done.get(k)]
    return "; ".join(f"{k}: {end[k]} (before {before.get(k)}, done {done.get(k)})" for k in keys)


def run_all(names: Sequence[str], modes: Sequence[str], max_calls: int = MAX_CALLS) -> Tally:
    """The fault loops of the named operations in the given modes."""
    tally = Tally()
    with silenced_logs():
        for operation in OPERATIONS:
            if operation.name in names:
                for mode in modes:
                    run_operation(operation, mode, tally, max_calls)
    return tally


def figure(tally: Tally, seconds: float) -> str:
    """The group's one-line figure."""
    per_operation = ", ".join(
        f"{name} {mode} {points}" for (name, mode), points in tally.points.items()
    )
    completed = sum(o.get("completed", 0) for o in tally.outcomes.values())
    no_effect = sum(o.get("no effect", 0) for o in tally.outcomes.values())
    return (
        f"storage faults: {tally.total} injection points covered ({per_operation}); "
        f"{completed} completed anyway, {no_effect} left no effect, "
        f"{len(tally.failures)} failures (partial effects, audit, reload); {seconds:.1f} s"
    )


def main(argv: list[str]) -> int:
    """``python -m shopkeep.proof storage-faults [--operation NAME ...] [--mode MODE ...]``."""
    parser = argparse.ArgumentParser(prog="python -m shopkeep.proof storage-faults")
    names = [operation.name for operation in OPERATIONS]
    parser.add_argument("--operation", action="append", choices=names, help="default: all")
    parser.add_argument("--mode", action="append", choices=MODES, help="default: every one of them")
    parser.add_argument("--max-calls", type=int, default=MAX_CALLS, help="the largest N")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tally = run_all(args.operation or names, args.mode or MODES, args.max_calls)
    for failure in tally.failures:
        print(f"FAILED: {failure}")
    for (name, mode), outcomes in tally.outcomes.items():
        print(f"{name:>10} {mode:>10}: {tally.points[(name, mode)]:>4} points {outcomes}")
    print(figure(tally, time.perf_counter() - started))
    return 1 if tally.failures else 0
