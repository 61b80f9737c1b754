"""The database, its -wal and -shm files and its lock file are created readable and writable
by their owner only (mode 0600), whatever the umask (SPEC 8)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from shopkeep.store import Store, StoreConfig
from tests.store.test_store import EVENTS, events, unit

SUFFIXES = ("", "-wal", "-shm", ".lock")


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask (022: files readable by everyone) while the test runs."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def modes_after_a_commit(
    opened: Path, where: Path | None = None, writer: str = "thread"
) -> dict[str, int]:
    """The modes of the database at ``where`` (``opened`` itself by default) and the files
    beside it, once a store opened as ``opened`` committed a unit."""
    store = await Store.open(StoreConfig(str(opened), migrations=EVENTS, writer=writer))
    try:
        await store.writer.submit(unit(1))
        return {suffix: mode(Path(f"{where or opened}{suffix}")) for suffix in SUFFIXES}
    finally:
        await store.close()


OWNERS_ALONE = dict.fromkeys(SUFFIXES, 0o600)


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_a_new_database_and_the_files_beside_it_are_their_owners_alone(
    tmp_path: Path, umask: None, writer: str
) -> None:
    assert await modes_after_a_commit(tmp_path / "shop.db", writer=writer) == OWNERS_ALONE


async def test_a_database_opened_through_a_link_is_created_its_owners_alone_where_it_points(
    tmp_path: Path, umask: None
) -> None:
    (tmp_path / "data").mkdir()
    real, link = tmp_path / "data" / "real.db", tmp_path / "link.db"
    link.symlink_to(real)  # nothing there yet: the store creates it

    assert await modes_after_a_commit(link, real) == OWNERS_ALONE


async def test_a_umask_that_takes_the_owners_bits_does_not_make_it_unusable(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    before = os.umask(0o277)
    try:
        store = await Store.open(StoreConfig(str(db), migrations=EVENTS, writer="thread"))
    finally:
        os.umask(before)
    try:
        await store.writer.submit(unit(1))
        assert await events(store) == [1]
        assert mode(db) == 0o600
    finally:
        await store.close()


async def test_an_existing_database_keeps_the_mode_its_owner_gave_it(
    tmp_path: Path, umask: None
) -> None:
    db = tmp_path / "shop.db"
    store = await Store.open(StoreConfig(str(db), migrations=EVENTS, writer="thread"))
    await store.close()
    db.chmod(0o640)

    with structlog.testing.capture_logs() as logs:
        for _ in range(2):  # as a server opens it: for its credentials, then as the shop
            store = await Store.open(StoreConfig(str(db), migrations=EVENTS, writer="thread"))
            await store.close()

    assert mode(db) == 0o640
    # said, since SQLite makes the -wal and -shm with its mode: others may read them too
    [said] = [line for line in logs if line["event"] == "database_not_private"]
    assert said["log_level"] == "warning" and said["mode"] == "0640"


async def test_a_private_database_opens_without_a_word_of_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    for _ in range(2):  # made, then opened again
        with structlog.testing.capture_logs() as logs:
            store = await Store.open(StoreConfig(str(db), migrations=EVENTS, writer="thread"))
            await store.close()
        assert [line for line in logs if line["event"] == "database_not_private"] == []



async def test_an_empty_file_given_as_the_database_is_made_its_owners_alone(
    tmp_path: Path, umask: None
) -> None:
    # what `touch` or a deploy tool leaves (0644): the database, its -wal and -shm were
    # created in it readable by every local user
    db = tmp_path / "shop.db"
    db.touch()
    assert mode(db) == 0o644

    assert await modes_after_a_commit(db) == OWNERS_ALONE


async def test_an_empty_sqlite_database_given_as_the_database_is_made_its_owners_alone(
    tmp_path: Path, umask: None
) -> None:
    # taken as new (no tables, version 0), it kept its 0644, and SQLite gave its -wal and
    # -shm the same: every wallet and token hash readable by every local user
    db = tmp_path / "shop.db"
    made = sqlite3.connect(db)
    made.execute("PRAGMA user_version = 0")
    made.commit()
    made.close()
    assert mode(db) == 0o644 and db.stat().st_size > 0

    assert await modes_after_a_commit(db) == OWNERS_ALONE
