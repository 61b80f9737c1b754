"""The store: one file, WAL, migrations, the process lock, group commit, failed commits."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from shopkeep.store import (
    MIGRATIONS,
    CommitFailed,
    DatabaseInUse,
    Migration,
    SchemaMismatch,
    Store,
    StoreConfig,
    StoreError,
    UnitOfWork,
    database,
)
from shopkeep.store.lock import ProcessLock
from shopkeep.store.private_files import open_private
from shopkeep.store.settings import keep
from shopkeep.store.writer import WriterStats

EVENTS = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "events", "CREATE TABLE events (n INTEGER)"))
INSERT = "INSERT INTO events (n) VALUES (?)"


@pytest.fixture(params=["thread", "process"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store whose writer commits on its thread, or in its own process (every test runs
    with both)."""
    config = StoreConfig(str(tmp_path / "s.db"), migrations=EVENTS, writer=request.param)
    opened = await Store.open(config)
    yield opened
    await opened.close()


def unit(*numbers: int, owner: object = None, incarnation: int = 0) -> UnitOfWork:
    work = UnitOfWork(owner, incarnation)
    for n in numbers:
        work.execute(INSERT, (n,))
    return work


async def events(store: Store) -> list[int]:
    return [row[0] for row in await store.reader.fetchall("SELECT n FROM events ORDER BY rowid")]


async def test_a_new_file_is_in_wal_mode_with_full_sync_and_the_latest_schema(
    store: Store, tmp_path: Path
) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(EVENTS),)
    assert store.schema_version == len(EVENTS)
    assert store.writer._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    conn.close()


async def test_migrations_are_applied_once_and_only_the_new_ones(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    first = await Store.open(StoreConfig(path, migrations=EVENTS))
    await first.writer.submit(unit(1))
    await first.close()
    more = (*EVENTS, Migration(len(EVENTS) + 1, "more", "ALTER TABLE events ADD COLUMN m INT"))
    second = await Store.open(StoreConfig(path, migrations=more))
    assert second.schema_version == len(more)
    assert await events(second) == [1]
    await second.close()


async def test_a_database_from_a_newer_shopkeep_is_refused_unchanged(tmp_path: Path) -> None:
    path = str(tmp_path / "new.db")
    await (await Store.open(StoreConfig(path, migrations=EVENTS))).close()
    sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.close()  # a later one
    with pytest.raises(SchemaMismatch, match="version 99 is newer than this shopkeep knows"):
        await Store.open(StoreConfig(path, migrations=EVENTS))
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (99,)


async def test_a_newer_shopkeeps_database_is_refused_before_its_journal_mode_changes(
    tmp_path: Path,
) -> None:
    # its header was switched to WAL first (and its change counter bumped), then refused
    path = str(tmp_path / "new.db")
    await (await Store.open(StoreConfig(path, migrations=EVENTS))).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA user_version = 99")
    before = Path(path).read_bytes()

    with pytest.raises(SchemaMismatch, match="version 99 is newer"):
        await Store.open(StoreConfig(path, migrations=EVENTS))

    assert Path(path).read_bytes() == before


async def test_an_upgrade_says_which_versions_it_migrated_between(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    await (await Store.open(StoreConfig(path, migrations=EVENTS[:-1]))).close()

    with capture_logs() as logs:
        again = await Store.open(StoreConfig(path, migrations=EVENTS))
        await again.close()
        await (await Store.open(StoreConfig(path, migrations=EVENTS))).close()

    migrated = [line for line in logs if line["event"] == "database_migrated"]
    assert migrated == [{
        "event": "database_migrated", "log_level": "info", "path": path,
        "from_version": len(EVENTS) - 1, "to_version": len(EVENTS),
    }]  # fmt: skip


async def test_an_upgrade_is_one_transaction_its_check_can_refuse(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    await (await Store.open(StoreConfig(path, migrations=EVENTS))).close()
    more = (
        *EVENTS,
        Migration(len(EVENTS) + 1, "more", "ALTER TABLE events ADD COLUMN m INT"),
        Migration(len(EVENTS) + 2, "yet more", "ALTER TABLE events ADD COLUMN k INT"),
    )
    columns: list[set[str]] = []

    def refuse(conn: sqlite3.Connection) -> None:
        columns.append({str(row[1]) for row in conn.execute("PRAGMA table_info(events)")})
        raise ValueError("not this shop's")

    with pytest.raises(ValueError, match="not this shop's"):
        await Store.open(StoreConfig(path, migrations=more, agree=refuse))

    assert columns == [{"n", "m", "k"}]  # the check saw the file migrated, and then it was not
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(EVENTS),)
        assert [row[1] for row in conn.execute("PRAGMA table_info(events)")] == ["n"]
    cut = (*more[:-1], Migration(len(more), "cut", "CREATE TABLE cut ("))
    with pytest.raises(StoreError):
        await Store.open(StoreConfig(path, migrations=cut))  # the first step stays undone too
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(EVENTS),)


async def test_a_refused_database_is_left_without_a_lock_file_the_refusal_made(
    tmp_path: Path,
) -> None:
    # another program's file, refused in one line, had a new `.lock` left beside it
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")

    with pytest.raises(SchemaMismatch, match="another program's"):
        await Store.open(StoreConfig(str(other), migrations=EVENTS))

    assert sorted(tmp_path.iterdir()) == [other]


async def test_a_new_database_whose_migrations_fail_is_not_left_half_made(
    tmp_path: Path,
) -> None:
    # a full disk cut them: the half-made file (some tables, version 1) was left, and the
    # next command took it for a shop's ("no such column" from the audit)
    failing = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "cut", "CREATE TABLE cut ("))

    with pytest.raises(StoreError):
        await Store.open(StoreConfig(str(tmp_path / "new.db"), migrations=failing))

    assert list(tmp_path.iterdir()) == []


async def test_a_lock_file_a_full_disk_cannot_write_is_one_error_and_left_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pid's write raised OSError past every handler: a traceback, and an empty lock left
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("shopkeep.store.lock.os.write", full)

    with pytest.raises(StoreError, match=r"cannot write lock file .*No space left on device"):
        await Store.open(StoreConfig(str(tmp_path / "new.db"), migrations=EVENTS))

    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_settings_kept_on_a_full_database_raise_its_own_error(tmp_path: Path) -> None:
    # SQLite had rolled back by itself: the ROLLBACK raised "no transaction is active" in
    # place of "database or disk is full", the words the command line then showed
    with closing(sqlite3.connect(tmp_path / "full.db", isolation_level=None)) as conn:
        conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")  # as full as a disk can be

        with pytest.raises(sqlite3.OperationalError, match="full"):
            keep({"admin": "x" * 100_000}, conn)


def test_a_lock_taken_on_a_file_its_refused_holder_removed_is_taken_again_on_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the removal is safe only if a waiter that opened the file before it was removed, and
    # locked it after, notices and locks the file by that name instead: else two holders
    database = str(tmp_path / "s.db")
    refused = ProcessLock(database)
    refused.acquire()
    opened_before = os.open(refused.path, os.O_RDWR)
    refused.release(undo=True)
    opens = [(opened_before, False)]  # the waiter's first open: the file now removed
    monkeypatch.setattr(
        "shopkeep.store.lock.open_private",
        lambda path: opens.pop() if opens else open_private(path),
    )

    waiting = ProcessLock(database)
    waiting.acquire()
    try:
        assert waiting.fd is not None
        assert os.fstat(waiting.fd).st_ino == os.stat(waiting.path).st_ino
        with pytest.raises(DatabaseInUse):
            ProcessLock(database).acquire()  # the file by that name is the one held
    finally:
        waiting.release()


async def test_a_second_store_on_the_same_file_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(DatabaseInUse, match="in use by a shop already open in this process"):
        await Store.open(StoreConfig(str(tmp_path / "s.db"), migrations=EVENTS, lock_wait_s=0))


def count_tries(monkeypatch: pytest.MonkeyPatch, on_try: Callable[[int], None]) -> list[int]:
    """Count the tries of every ProcessLock to take its lock (the count in a list), calling
    ``on_try`` with the count before each."""
    tries = [0]
    take = ProcessLock._try

    def counted(lock: ProcessLock) -> None:
        tries[0] += 1
        on_try(tries[0])
        take(lock)

    monkeypatch.setattr(ProcessLock, "_try", counted)
    return tries


async def test_a_second_store_of_the_process_is_refused_without_waiting(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it waited out lock_wait_s (2 s by default) in time.sleep, the loop and the first store
    # with it stopped, for a lock the first would never let go meanwhile
    tries = count_tries(monkeypatch, lambda count: None)

    with pytest.raises(DatabaseInUse, match="in use by a shop already open in this process"):
        await Store.open(StoreConfig(str(tmp_path / "s.db"), migrations=EVENTS, lock_wait_s=60))

    assert tries == [0]  # refused before any try of the lock: nothing to wait for


async def test_a_store_waits_for_anothers_lock_with_its_loop_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "s.db")
    await (await Store.open(StoreConfig(path, migrations=EVENTS))).close()
    held = os.open(path + ".lock", os.O_RDWR)  # as another process's writer holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    tried_twice = asyncio.Event()

    def on_try(count: int) -> None:
        if count == 2:
            tried_twice.set()

    count_tries(monkeypatch, on_try)

    config = StoreConfig(path, migrations=EVENTS, lock_wait_s=60)
    opening = asyncio.ensure_future(Store.open(config))
    await tried_twice.wait()  # this test's own coroutine runs while the open waits
    assert not opening.done()
    os.close(held)

    await (await opening).close()


async def test_a_database_in_a_missing_folder_is_said_so(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(StoreError, match=f"cannot open database .*: no folder {missing}$"):
        await Store.open(StoreConfig(str(missing / "s.db"), migrations=EVENTS))
    assert list(tmp_path.iterdir()) == []


async def test_a_second_store_through_a_symbolic_link_is_refused(
    store: Store, tmp_path: Path
) -> None:
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "s.db")
    with pytest.raises(DatabaseInUse, match=f"database {link} is in use"):
        await Store.open(StoreConfig(str(link), migrations=EVENTS, lock_wait_s=0))


async def test_a_second_process_on_the_same_file_refuses_with_one_line(
    store: Store, tmp_path: Path
) -> None:
    script = (
        "import asyncio, sys\n"
        "from shopkeep.store import Store, StoreConfig, StoreError\n"
        "try:\n"
        f"    asyncio.run(Store.open(StoreConfig({str(tmp_path / 's.db')!r}, lock_wait_s=0)))\n"
        "except StoreError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout.count("\n") == 1
    assert "is in use by another shopkeep process" in done.stdout


async def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="it is a directory"):
        await Store.open(StoreConfig(str(tmp_path)))


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
async def test_a_name_sqlite_keeps_beside_a_database_is_refused_before_anything_is_made(
    tmp_path: Path, suffix: str
) -> None:
    # a shop opened at shop.db-wal, closed, then shop.db opened: SQLite took the file for
    # shop.db's log, found it none and deleted it, the other shop's orders with it
    with pytest.raises(StoreError, match="SQLite keeps a file of that name beside a database"):
        await Store.open(StoreConfig(str(tmp_path / f"shop.db{suffix}")))

    assert list(tmp_path.iterdir()) == []


async def test_a_pipe_is_not_a_database_and_nothing_is_made_beside_it(tmp_path: Path) -> None:
    # SQLite failed on it ("disk I/O error") once it had made its journal and the lock beside
    pipe = tmp_path / "pipe.db"
    os.mkfifo(pipe)

    with pytest.raises(StoreError, match="not a regular file"):
        await Store.open(StoreConfig(str(pipe)))

    assert sorted(tmp_path.iterdir()) == [pipe]


@pytest.mark.parametrize("name", ["", ":memory:", "file:shop.db?mode=memory"])
async def test_sqlites_names_of_no_file_are_refused_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="a shop needs a database file"):
        await Store.open(StoreConfig(name))
    assert list(tmp_path.iterdir()) == []  # not a lock, nor a stray ":memory:" file


async def test_many_units_share_one_transaction_and_keep_their_order(store: Store) -> None:
    futures = [store.writer.submit(unit(n, n + 1000)) for n in range(200)]
    await asyncio.gather(*futures)
    assert await events(store) == [x for n in range(200) for x in (n, n + 1000)]
    assert store.writer.stats.batches < 20
    assert store.writer.stats.units == 200


async def test_a_failing_unit_fails_alone_and_later_units_of_its_owner_are_not_committed(
    store: Store,
) -> None:
    bad = UnitOfWork("a", 1)
    bad.execute("INSERT INTO no_such_table VALUES (1)")
    futures = [
        store.writer.submit(unit(1, owner="b", incarnation=1)),
        store.writer.submit(bad),
        store.writer.submit(unit(2, owner="c", incarnation=1)),
        store.writer.submit(unit(3, owner="a", incarnation=1)),  # built on the failed one
        store.writer.submit(unit(4, owner="a", incarnation=2)),  # after a restart: fine
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] is None and results[2] is None and results[4] is None
    assert isinstance(results[1], CommitFailed) and "no such table" in str(results[1])
    assert isinstance(results[3], CommitFailed) and "a unit it was built on failed" in str(
        results[3]
    )
    assert results[3].cause is results[1].cause  # the store's refusal it was built on
    assert await events(store) == [1, 2, 4]


async def test_a_failed_commit_leaves_nothing_of_its_batch_on_disk(store: Store) -> None:
    def fail_commit(operation: str) -> None:
        if operation == "commit":
            raise sqlite3.OperationalError("disk I/O error")

    store.writer.fault = fail_commit
    results = await asyncio.gather(
        *(store.writer.submit(unit(n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, CommitFailed) for r in results)
    store.writer.fault = None
    await store.writer.submit(unit(9))
    assert await events(store) == [9]


async def test_the_reader_is_its_own_read_only_connection(store: Store) -> None:
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|query_only|attempt to write"):
        await store.reader.fetchall("INSERT INTO events (n) VALUES (1)")


async def test_close_flushes_what_was_submitted(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    opened = await Store.open(StoreConfig(path, migrations=EVENTS))
    for n in range(50):
        opened.writer.submit(unit(n)).add_done_callback(lambda f: f.exception())
    await opened.close()
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()
    assert rows == (50,)


async def test_a_unit_built_on_a_unit_that_failed_fails_with_it(store: Store) -> None:
    bad = UnitOfWork("a", 1)
    bad.execute("INSERT INTO no_such_table VALUES (1)")
    built = unit(5, owner="b", incarnation=1)
    built.after.append(bad)
    independent = unit(6, owner="c", incarnation=1)
    results = await asyncio.gather(
        store.writer.submit(bad),
        store.writer.submit(built),
        store.writer.submit(independent),
        return_exceptions=True,
    )
    assert isinstance(results[0], CommitFailed)
    assert isinstance(results[1], CommitFailed) and "built on failed" in str(results[1])
    assert results[2] is None
    later = unit(7, owner="d", incarnation=1)
    later.after.append(bad)  # in a later batch: refused at once
    with pytest.raises(CommitFailed):
        await store.writer.submit(later)
    assert await events(store) == [6]


async def test_the_audits_reader_is_its_own_and_reads_the_file_the_store_opened(
    store: Store, tmp_path: Path
) -> None:
    await store.writer.submit(unit(1, 2))
    assert store.audit_reader is not store.reader
    os.rename(store.config.path, tmp_path / "moved.db")  # an operator's mistake
    rows = await store.audit_reader.fetchall("SELECT n FROM events ORDER BY n")
    assert rows == [(1,), (2,)]  # the shop's, wherever its file went
    assert not os.path.exists(store.config.path)  # and no file made at its name
    os.rename(tmp_path / "moved.db", store.config.path)


async def test_nothing_is_written_while_the_database_file_is_not_at_its_name(
    store: Store, tmp_path: Path
) -> None:
    # removed, SQLite would write on into the unlinked file, every commit acknowledged and all
    # lost when the server stops; renamed, the writes would go where no one looks
    await store.writer.submit(unit(1))
    os.rename(store.config.path, tmp_path / "moved.db")
    with pytest.raises(CommitFailed, match="no longer there") as refused:
        await store.writer.submit(unit(2))
    assert refused.value.refused_by_store
    os.rename(tmp_path / "moved.db", store.config.path)  # put back
    await store.writer.submit(unit(3))
    assert await events(store) == [1, 3]


@pytest.mark.parametrize("ending", ["-wal", "-shm"])
async def test_nothing_is_written_once_the_wal_is_removed_and_what_was_is_in_the_file(
    store: Store, ending: str
) -> None:
    # SQLite would commit on into the removed -wal, which another connection never reads
    # and a crash takes with it: every write acknowledged since the last checkpoint lost
    await store.writer.submit(unit(1, 2))
    os.remove(store.config.path + ending)  # an operator "cleaning up"

    with pytest.raises(CommitFailed, match="restart the server") as refused:
        await store.writer.submit(unit(3))

    assert refused.value.refused_by_store
    # the database file alone (its -wal set aside): what was committed is in it
    with closing(sqlite3.connect(f"file:{store.config.path}?immutable=1", uri=True)) as file:
        assert file.execute("SELECT n FROM events ORDER BY rowid").fetchall() == [(1,), (2,)]


def test_a_store_at_a_batch_after_a_run_of_refusals_counts_as_refusing_until_it_commits() -> None:
    # another program holding the write lock: each try waits SQLite's busy timeout twice (the
    # batch, then its units one by one), the refusals ten seconds apart, and /healthz said ok
    # for half of every ten seconds in which no write was taken
    stats = WriterStats()
    stats.in_refusal, stats.refusal_cause = True, sqlite3.OperationalError("database is locked")
    stats.refused_at = time.monotonic() - 6

    assert stats.refusing(5.0) is None  # writing nothing since: no longer said refusing

    stats.busy_since = time.perf_counter() - 4  # at the next batch, waiting for the lock
    assert stats.refusing(5.0) == "database is locked"


async def test_a_unit_built_on_one_the_store_refused_is_refused_alike_and_says_why(
    store: Store, tmp_path: Path
) -> None:
    # a caller whose unit followed a refused one of the same actor was told only that "a unit
    # it was built on failed", and was not counted among the store's refusals
    os.rename(store.config.path, tmp_path / "moved.db")
    with pytest.raises(CommitFailed):
        await store.writer.submit(unit(1, owner="a"))
    with pytest.raises(CommitFailed, match="no longer there") as built_on:
        await store.writer.submit(unit(2, owner="a"))
    os.rename(tmp_path / "moved.db", store.config.path)
    assert built_on.value.refused_by_store
    assert store.writer.stats.refused_units == 2


@pytest.mark.parametrize(("free_blocks", "said"), [
    (10, " (its disk is full: 40,960 bytes free)"), (1 << 20, ""),
])
def test_an_open_that_fails_on_a_full_disk_says_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_blocks: int, said: str
) -> None:
    # SQLite said only "disk I/O error" of a database already there whose -wal could not grow
    # (the disk looked at is the one its links lead to)
    (tmp_path / "disk").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "disk")

    class Disk:
        f_frsize = 4096
        f_bavail = free_blocks
        f_blocks = 1 << 20

    def statvfs(path: str) -> object:
        assert path == str(tmp_path / "disk")
        return Disk()

    monkeypatch.setattr(os, "statvfs", statvfs)
    assert database.disk_full_beside(str(tmp_path / "link" / "shop.db")) == said


def test_a_file_system_of_no_disk_is_never_said_full() -> None:
    # /proc has no blocks at all, none free: a file there was "on a full disk"
    assert os.statvfs("/proc").f_blocks == 0
    assert database.disk_full_beside("/proc/version") == ""
