"""The writer's own process: where it commits, how it ends, and what its death costs."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shopkeep.store import CommitFailed, Store, StoreConfig, UnitOfWork
from shopkeep.store.writer_process import (
    Outcome,
    WriterProcess,
    WriterProcessDied,
    check_writable,
    error_of,
    file_identity,
)
from tests.store.test_store import EVENTS, INSERT, events, unit

ROOT = Path(__file__).resolve().parents[2]


def process_of(store: Store) -> WriterProcess:
    process = store.writer._process
    assert process is not None
    return process


def gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (or turned zombie) within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)  # an external process's exit has no event to await
    return False


async def open_store(path: Path) -> Store:
    return await Store.open(StoreConfig(str(path), migrations=EVENTS, writer="process"))


async def test_batches_are_committed_by_a_process_of_their_own(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "p.db")
    try:
        pid = process_of(store).pid
        assert pid is not None and pid != os.getpid()
        await asyncio.gather(*(store.writer.submit(unit(n)) for n in range(100)))
        assert await events(store) == list(range(100))
    finally:
        await store.close()


async def test_closing_the_store_ends_the_writer_process(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "p.db")
    pid = process_of(store).pid
    assert pid is not None
    await store.writer.submit(unit(1))
    await store.close()
    assert gone(pid)
    assert sqlite3.connect(tmp_path / "p.db").execute("SELECT n FROM events").fetchall() == [(1,)]


async def test_a_ctrl_c_a_group_stop_or_a_hangup_leaves_the_writer_process_to_its_parent(
    tmp_path: Path,
) -> None:
    # A terminal's Ctrl-C (SIGINT), a service manager's stop (SIGTERM) and the terminal
    # closing (SIGHUP) reach the whole process group: the child goes on committing what the
    # stopping parent flushes, and ends when the parent ends its input.
    store = await open_store(tmp_path / "p.db")
    try:
        await store.writer.submit(unit(1))
        pid = process_of(store).pid
        assert pid is not None
        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(pid, stop)  # our own child
        await store.writer.submit(unit(2))
        assert process_of(store).pid == pid
        assert await events(store) == [1, 2]
    finally:
        await store.close()
    child = process_of(store)._child
    assert child is None or child.wait(10) == 0
    assert gone(pid)


async def test_a_writer_process_killed_between_batches_is_replaced_for_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await open_store(tmp_path / "p.db")
    try:
        await store.writer.submit(unit(1))
        first = process_of(store).pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # our own child
        # Reaped, not only a zombie: the child has a checkpointer thread, and until it is torn
        # down too the child's pipe still takes a batch (which then fails as cut off mid-way).
        child = process_of(store)._child
        assert child is not None
        child.wait(10)
        await store.writer.submit(unit(2))
        assert process_of(store).pid not in (None, first)
        assert await events(store) == [1, 2]
        said = [(r.getMessage(), r.__dict__.get("event"), r.__dict__.get("pid"))
                for r in caplog.records if r.name == "shopkeep.store"]
        assert said == [(  # a sentence for a program's own logging, fields for shopkeep's
            f"writer_process_ended: the writer process {first} ended (killed by signal 9); "
            "the next batch starts another", "writer_process_ended", first,
        )]
    finally:
        await store.close()


class OnlyHere:
    """Unpicklable in the writer process (it imports nothing of ours): it dies reading it."""


def test_a_writer_process_that_dies_during_a_batch_is_reported_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "d.db")
    sqlite3.connect(path).execute("CREATE TABLE events (n INTEGER)").connection.close()
    process = WriterProcess(path, "FULL")
    try:
        assert process.commit([(INSERT, (1,), False)]) is None
        first = process.pid
        with pytest.raises(WriterProcessDied, match="ended in the middle of a batch"):
            process.commit([(INSERT, OnlyHere(), False)])
        assert process.commit([(INSERT, (2,), False)]) is None
        assert process.pid not in (None, first)
        warned = [r for r in caplog.records if r.name == "shopkeep.store"]
        assert [(r.levelname, r.__dict__.get("event"), r.__dict__.get("pid")) for r in warned] == [
            ("WARNING", "writer_process_ended", first)
        ]
    finally:
        process.close()
    assert sqlite3.connect(path).execute("SELECT n FROM events").fetchall() == [(1,), (2,)]


async def test_every_unit_of_a_batch_whose_writer_died_fails_and_nothing_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(tmp_path / "p.db")
    try:
        process = process_of(store)
        real_commit = process.commit
        calls: list[int] = []

        def dies_once(statements: list[tuple[str, Any, bool]], fresh_schema: bool) -> Outcome:
            calls.append(len(statements))
            if len(calls) == 1:
                real_commit(statements, fresh_schema=fresh_schema)  # may have committed, then died
                raise WriterProcessDied("the writer process ended in the middle of a batch")
            return real_commit(statements, fresh_schema=fresh_schema)

        monkeypatch.setattr(process, "commit", dies_once)
        results = await asyncio.gather(
            *(store.writer.submit(unit(n)) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, CommitFailed) for r in results)
        await store.writer.submit(unit(9))
        # the batch is on disk once, never twice: the outcome was unknown, not retried
        assert await events(store) == [0, 1, 2, 9]
    finally:
        await store.close()


def test_the_childs_errors_keep_their_sqlite_class() -> None:
    assert isinstance(error_of(("IntegrityError", "UNIQUE")), sqlite3.IntegrityError)
    assert isinstance(error_of(("OperationalError", "disk I/O")), sqlite3.OperationalError)
    unknown = error_of(("ValueError", "odd"))
    assert type(unknown) is sqlite3.Error and "ValueError: odd" in str(unknown)
    # a value SQLite cannot bind is the data's fault here as there (store.errors.DATA_FAULTS)
    assert isinstance(error_of(("OverflowError", "too large")), OverflowError)


async def test_a_batch_under_fault_injection_commits_on_the_thread(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "p.db")
    seen: list[str] = []
    try:
        store.writer.fault = seen.append
        bad = UnitOfWork("a", 1)
        bad.execute("INSERT INTO no_such_table VALUES (1)")
        results = await asyncio.gather(
            store.writer.submit(unit(1)), store.writer.submit(bad), return_exceptions=True
        )
        assert results[0] is None and isinstance(results[1], CommitFailed)
        assert "begin" in seen and "commit" in seen
    finally:
        store.writer.fault = None
        await store.close()


PARENT = """
import asyncio, sys
from shopkeep.store import Store, StoreConfig, UnitOfWork
from tests.store.test_store import EVENTS, unit

async def main():
    store = await Store.open(StoreConfig(sys.argv[1], migrations=EVENTS, writer="process"))
    await store.writer.submit(unit(7))
    print(store.writer._process.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_after_a_sigkill_the_writer_process_ends_and_releases_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "k.db"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
    finally:
        parent.kill()  # SIGKILL: no clean-up runs in the parent
        parent.wait(timeout=30)
    assert gone(child), "the writer process outlived its parent"
    reopened = await Store.open(StoreConfig(str(path), migrations=EVENTS, lock_wait_s=0))
    try:
        assert await events(reopened) == [7]
    finally:
        await reopened.close()


async def test_a_writer_process_that_cannot_start_fails_its_batch_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(tmp_path / "p.db")
    try:
        process_of(store).close()  # the next batch has to start a new one

        def no_process(*args: Any, **kwargs: Any) -> Any:
            raise OSError("Resource temporarily unavailable")

        monkeypatch.setattr(subprocess, "Popen", no_process)
        results = await asyncio.gather(
            *(store.writer.submit(unit(n)) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, CommitFailed) for r in results)
        assert "cannot start the writer process" in str(results[0])
        monkeypatch.undo()
        await store.writer.submit(unit(9))  # the writer task is still there
        assert await events(store) == [9]
    finally:
        await store.close()


async def test_a_parameter_that_does_not_pickle_fails_only_its_unit(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "p.db")
    try:
        bad = UnitOfWork("a", 1)
        bad.execute(INSERT, (lambda: 1,))
        results = await asyncio.gather(
            store.writer.submit(unit(1)),
            store.writer.submit(bad),
            store.writer.submit(unit(2)),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], CommitFailed)
        assert await events(store) == [1, 2]
    finally:
        await store.close()


def test_a_writer_process_that_finds_another_file_at_the_path_writes_nothing_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "d.db")
    sqlite3.connect(path).execute("CREATE TABLE events (n INTEGER)").connection.close()
    identity = file_identity(path)
    assert identity is not None
    os.rename(path, tmp_path / "moved.db")  # an operator's mistake, then another file there
    sqlite3.connect(path).execute("CREATE TABLE events (n INTEGER)").connection.close()
    process = WriterProcess(path, "FULL", identity=identity)
    try:
        outcome = process.commit([(INSERT, (1,), False)])
        assert outcome is not None and "no longer there" in outcome[1]
        # it left: the next batches fail at once, with no new process each
        with pytest.raises(WriterProcessDied, match="could not open the database"):
            process.commit([(INSERT, (2,), False)])
        os.replace(tmp_path / "moved.db", path)  # put back
        monkeypatch.setattr(time, "monotonic", lambda: float("inf"))  # REOPEN_AFTER_S later
        assert process.commit([(INSERT, (3,), False)]) is None
    finally:
        process.close()
    assert sqlite3.connect(path).execute("SELECT n FROM events").fetchall() == [(3,)]


def test_a_connection_sqlite_opened_read_only_is_found_out(tmp_path: Path) -> None:
    # SQLite opens a file it may not write read-only without a word (here asked to)
    path = tmp_path / "r.db"
    writable = sqlite3.connect(path, isolation_level=None)
    writable.execute("CREATE TABLE events (n INTEGER)")
    check_writable(writable)  # nothing said
    read_only = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        check_writable(read_only)
    assert not read_only.in_transaction
