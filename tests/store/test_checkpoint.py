"""The WAL's checkpoints: on a thread of their own, out of the commits."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from shopkeep.store import Store, StoreConfig
from shopkeep.store.writer_process import (
    BACKSTOP_PAGES,
    WAL_KEPT_BYTES,
    Checkpointer,
    checkpoint,
    checkpoint_aside,
    open_checkpointer,
)
from tests.store.test_store import EVENTS, unit
from tests.store.test_writer_process import process_of

PAGE = 4096


def writer_connection(path: Path) -> sqlite3.Connection:
    """A connection that writes as the store's writers do: WAL, checkpoints past the
    backstop only."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    conn.execute("CREATE TABLE pages (body BLOB)")
    return conn


def test_a_wal_a_long_reader_let_grow_is_cut_back_when_it_starts_over(tmp_path: Path) -> None:
    # a backup under load held its snapshot while the WAL grew to 74 MB, kept at that size
    # until the server restarted
    path = tmp_path / "c.db"
    writer = writer_connection(path)
    writer.execute("PRAGMA synchronous = OFF")  # what is kept of the file, not how it syncs
    checkpoint_aside(writer, str(path), "OFF").close()  # the writer as the store sets it
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM pages").fetchone()  # the backup's snapshot
    rows = WAL_KEPT_BYTES // PAGE + 1_000
    for _ in range(0, rows, 1_000):
        writer.executemany("INSERT INTO pages VALUES (?)", [(os.urandom(PAGE),)] * 1_000)
    grown = os.path.getsize(f"{path}-wal")
    reader.execute("COMMIT")
    checkpointer = open_checkpointer(str(path), "OFF")
    checkpoint(checkpointer)

    writer.execute("INSERT INTO pages VALUES (?)", (b"the WAL starts over",))

    assert grown > WAL_KEPT_BYTES >= os.path.getsize(f"{path}-wal")
    checkpointer.close()
    reader.close()
    writer.close()


def test_a_checkpoint_copies_every_page_of_the_wal_that_no_reader_needs(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    writer = writer_connection(path)
    for _ in range(3):  # 1,500 pages: past SQLite's automatic checkpoint, which did not run
        writer.executemany("INSERT INTO pages VALUES (?)", [(os.urandom(PAGE),)] * 500)
    checkpointer = open_checkpointer(str(path), "FULL")

    pages, copied = checkpoint(checkpointer)

    assert pages >= 1_500 and copied == pages
    checkpointer.close()
    writer.close()


def test_a_checkpoint_leaves_the_pages_a_reader_still_reads_and_does_not_wait(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    writer = writer_connection(path)
    writer.execute("INSERT INTO pages VALUES (?)", (b"first",))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM pages").fetchone() == (1,)  # a snapshot
    writer.executemany("INSERT INTO pages VALUES (?)", [(os.urandom(PAGE),)] * 10)
    checkpointer = open_checkpointer(str(path), "FULL")

    pages, copied = checkpoint(checkpointer)

    assert copied < pages  # what came after the reader's snapshot waits for it
    reader.execute("COMMIT")
    assert checkpoint(checkpointer)[1] == pages
    for conn in (checkpointer, reader, writer):
        conn.close()


def test_a_checkpointer_stops_when_closed(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    writer_connection(path).close()
    checkpointer = Checkpointer(str(path), "FULL", every_s=0.001)
    checkpointer.start()

    checkpointer.close()

    assert not any(t.name == "shopkeep-checkpoint" for t in threading.enumerate())


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_the_stores_writers_leave_the_checkpoints_to_a_thread_of_their_own(
    tmp_path: Path, writer: str
) -> None:
    store = await Store.open(StoreConfig(str(tmp_path / "s.db"), migrations=EVENTS, writer=writer))
    try:
        await store.writer.submit(unit(1, 2, 3))
        if writer == "thread":
            backstop = store.writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()
            assert backstop == (BACKSTOP_PAGES,)
            assert any(t.name == "shopkeep-checkpoint" for t in threading.enumerate())
        else:  # the writer process: its main thread and its checkpointer
            pid = process_of(store).pid
            assert len(os.listdir(f"/proc/{pid}/task")) == 2
    finally:
        await store.close()
    assert not any(t.name == "shopkeep-checkpoint" for t in threading.enumerate())
