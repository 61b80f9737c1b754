"""``shopkeep restore``: a backup put back in the place of a database a server left with a
``-wal`` file (a copy over it would take that file's pages), checked first, the replaced
database kept whole beside it; the operator's mistakes are one line and change nothing."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.actors.audit import audit_file
from shopkeep.backup import integrity
from shopkeep.restore import RestoreError, restore
from shopkeep.store.lock import ProcessLock
from shopkeep.store.migrations import MIGRATIONS, apply_migrations
from tests.cli.test_backup_command import assert_usage_error, shopkeep, stopped_after


def users_in(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


def shop_with_a_backup(folder: Path) -> tuple[Path, Path]:
    """A demo shop's database and a backup of it."""
    db, copy = folder / "shop.db", folder / "copy.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    assert shopkeep("backup", "--db", str(db), "--to", str(copy)).returncode == 0
    return db, copy


def leave_a_wal(db: Path) -> None:
    """Leave ``db`` as a server stopped uncleanly leaves it: commits in its ``-wal`` file that
    its main file has not taken (a connection's close would fold them in and remove it)."""
    wal = Path(f"{db}-wal")
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        with conn:
            conn.execute("UPDATE users SET name = name || ' (renamed after the backup)'")
        kept = wal.read_bytes()
    wal.write_bytes(kept)


def test_a_backup_restored_over_a_database_left_with_its_wal_is_whole_and_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    db, copy = shop_with_a_backup(tmp_path)
    users = users_in(copy)
    leave_a_wal(db)
    assert Path(f"{db}-wal").stat().st_size > 0

    result = shopkeep("restore", "--from", str(copy), "--db", str(db))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"restore: ok: {copy} -> {db}; the database it replaced is ")
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert integrity(str(db)) == "ok" and audit_file(str(db)).ok
    assert users_in(db) == users
    [replaced] = tmp_path.glob("shop.db.replaced-*[0-9]Z")
    assert Path(f"{replaced}-wal").exists()  # the old database whole: its commits with it
    assert users_in(replaced) == users  # read with its -wal, as it was
    assert (db.stat().st_mode & 0o777) == 0o600


def test_a_restore_over_a_database_a_server_holds_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    db, copy = shop_with_a_backup(tmp_path)
    before = db.read_bytes()
    lock = ProcessLock(str(db))
    lock.acquire()  # as a running server holds it
    try:
        result = shopkeep("restore", "--from", str(copy), "--db", str(db))
    finally:
        lock.release()

    assert_usage_error(result, "--db", "is in use", "stop it first")
    assert db.read_bytes() == before
    assert not list(tmp_path.glob("shop.db.replaced-*"))


def test_a_backup_that_fails_its_checks_is_not_restored(tmp_path: Path) -> None:
    db, copy = shop_with_a_backup(tmp_path)
    with closing(sqlite3.connect(copy)) as conn, conn:
        conn.execute("UPDATE goods SET stock = stock + 7")  # behind the stock ledger's back
    before = db.read_bytes()

    result = shopkeep("restore", "--from", str(copy), "--db", str(db))

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"shopkeep restore: error: cannot restore {copy}: its audit fails")
    assert db.read_bytes() == before


def test_a_refused_restore_to_where_no_database_is_leaves_nothing_there(tmp_path: Path) -> None:
    # its `<db>.lock` stayed, beside a database that does not exist
    _, copy = shop_with_a_backup(tmp_path)
    with closing(sqlite3.connect(copy)) as conn, conn:
        conn.execute("UPDATE goods SET stock = stock + 7")  # behind the stock ledger's back
    (tmp_path / "new").mkdir()

    result = shopkeep("restore", "--from", str(copy), "--db", str(tmp_path / "new" / "shop.db"))

    assert result.returncode == 1
    assert list((tmp_path / "new").iterdir()) == []


def test_a_backup_an_older_shopkeep_made_is_restored_and_migrated_at_the_next_start(
    tmp_path: Path,
) -> None:
    # its checks ran this shopkeep's audit on the older schema: "no such column", exit 1
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old, isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS[:5])
    db = tmp_path / "shop.db"

    result = shopkeep("restore", "--from", str(old), "--db", str(db))

    assert result.returncode == 0, result.stderr
    assert audit_file(str(db)).ok
    assert shopkeep("demo", "--db", str(db)).returncode == 0  # opened: migrated, and filled


def test_a_restore_to_where_no_database_is_puts_the_backup_there(tmp_path: Path) -> None:
    _, copy = shop_with_a_backup(tmp_path)
    fresh = tmp_path / "fresh.db"

    result = shopkeep("restore", "--from", str(copy), "--db", str(fresh))

    assert (result.returncode, result.stdout.strip()) == (0, f"restore: ok: {copy} -> {fresh}")
    assert audit_file(str(fresh)).ok


def test_a_missing_backup_or_none_named_is_a_usage_error(tmp_path: Path) -> None:
    db, _ = shop_with_a_backup(tmp_path)
    shutil.copy(db, tmp_path / "untouched.db")

    missing = shopkeep("restore", "--from", str(tmp_path / "none.db"), "--db", str(db))
    folder = shopkeep("restore", "--from", str(tmp_path), "--db", str(db))
    untold = shopkeep("restore", "--db", str(db))

    assert_usage_error(missing, "--from", "none.db", "no such database file")
    assert_usage_error(folder, "--from", "it is a folder")
    assert_usage_error(untold, "--from", "SHOPKEEP_FROM")
    assert db.read_bytes() == (tmp_path / "untouched.db").read_bytes()


def test_a_restore_over_itself_or_into_no_folder_is_a_usage_error_and_changes_nothing(
    tmp_path: Path,
) -> None:
    _, copy = shop_with_a_backup(tmp_path)
    before = copy.read_bytes()

    itself = shopkeep("restore", "--from", str(copy), "--db", str(copy))
    nowhere = shopkeep("restore", "--from", str(copy), "--db", str(tmp_path / "no" / "shop.db"))

    assert_usage_error(itself, "--from", "over itself")
    assert_usage_error(nowhere, "--db", "its folder does not exist")
    assert copy.read_bytes() == before and not list(tmp_path.glob("copy.db.replaced-*"))


def test_a_restore_to_a_folder_or_to_no_name_is_a_usage_error_and_moves_nothing(
    tmp_path: Path,
) -> None:
    _, copy = shop_with_a_backup(tmp_path)
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")

    into_a_folder = shopkeep("restore", "--from", str(copy), "--db", str(folder))
    unnamed = shopkeep("restore", "--from", str(copy), "--db", "", cwd=folder)
    a_folder_to_be = shopkeep("restore", "--from", str(copy), "--db", f"{tmp_path}/new/")
    a_file_as_folder = shopkeep("restore", "--from", str(copy), "--db", f"{copy}/")

    assert_usage_error(into_a_folder, "--db", "it is a directory")
    assert_usage_error(unnamed, "--db", "it names no file")
    assert_usage_error(a_folder_to_be, "--db", "it names no file")
    assert_usage_error(a_file_as_folder, "--db", "it names no file")
    assert not (tmp_path / "new").exists() and copy.is_file()
    assert (folder / "notes.txt").read_text() == "kept"
    assert not list(tmp_path.glob("*.replaced-*"))


def test_a_restore_over_a_file_that_is_no_database_is_a_usage_error_and_moves_nothing(
    tmp_path: Path,
) -> None:
    # a mistyped --db (notes, a config file, through a link too) was moved aside and a
    # database put at its name, "the database it replaced" said of a text file
    _, copy = shop_with_a_backup(tmp_path)
    notes, link = tmp_path / "notes.txt", tmp_path / "link.db"
    notes.write_text("important notes")
    link.symlink_to(notes)

    over_notes = shopkeep("restore", "--from", str(copy), "--db", str(notes))
    through_a_link = shopkeep("restore", "--from", str(copy), "--db", str(link))

    assert_usage_error(over_notes, "--db", "it is not a database")
    assert_usage_error(through_a_link, "--db", "it is not a database")
    assert notes.read_text() == "important notes" and link.is_symlink()
    assert not list(tmp_path.glob("*.replaced-*")) and not list(tmp_path.glob("notes.txt.*"))


def test_two_restores_in_a_row_keep_both_databases_they_replaced(tmp_path: Path) -> None:
    db, copy = shop_with_a_backup(tmp_path)

    for _ in range(2):
        assert shopkeep("restore", "--from", str(copy), "--db", str(db)).returncode == 0

    assert len(list(tmp_path.glob("shop.db.replaced-*[0-9Z]"))) == 2
    assert audit_file(str(db)).ok


def test_a_restore_through_a_link_restores_where_it_points(tmp_path: Path) -> None:
    db, copy = shop_with_a_backup(tmp_path)
    link = tmp_path / "link.db"
    link.symlink_to(db)

    result = shopkeep("restore", "--from", str(copy), "--db", str(link))

    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and link.resolve() == db.resolve()
    assert audit_file(str(db)).ok and list(tmp_path.glob("shop.db.replaced-*"))



def restore_stopped_after(step: str, db: Path, copy: Path) -> subprocess.CompletedProcess[str]:
    return stopped_after(
        f"shopkeep.restore.{step}", "restore", "--from", str(copy), "--db", str(db)
    )


@pytest.mark.parametrize("step", [
    "shopkeep.restore.copy_database", "shopkeep.store.private_files._create",
])
def test_a_restore_stopped_as_it_copies_removes_its_copy_and_changes_nothing(
    tmp_path: Path, step: str
) -> None:
    # its .partial (full-size, or as it was just made) was left, said "nothing was kept",
    # and refused the next restore
    db, copy = shop_with_a_backup(tmp_path)
    before = db.read_bytes()

    result = stopped_after(step, "restore", "--from", str(copy), "--db", str(db))

    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr.splitlines() == ["shopkeep restore: stopped by SIGTERM: nothing was kept"]
    assert db.read_bytes() == before
    assert not list(tmp_path.glob("shop.db.partial*")) and not list(tmp_path.glob("*.replaced-*"))


@pytest.mark.parametrize("step", ["_move_aside", "_sync_folder"])
def test_a_restore_stopped_as_it_puts_the_copy_in_place_finishes_that_first(
    tmp_path: Path, step: str
) -> None:
    # stopped between moving the database aside and putting the copy at its name, it left no
    # database there at all, and said "nothing was kept"; stopped once the copy was in place,
    # it said "nothing was kept" too
    db, copy = shop_with_a_backup(tmp_path)

    result = restore_stopped_after(step, db, copy)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"restore: ok: {copy} -> {db}")
    assert "SIGTERM came as the checked copy was put in place: done first" in result.stderr
    assert integrity(str(db)) == "ok" and audit_file(str(db)).ok
    [replaced] = [kept for kept in tmp_path.glob("shop.db.replaced-*")
                  if not kept.name.endswith(("-wal", "-shm"))]
    assert users_in(replaced) == users_in(db)  # the database it replaced, kept whole



@pytest.mark.parametrize("refused", ["the database", "the copy"])
def test_a_restore_the_system_will_not_rename_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    # a file this user may not move (another's, in a sticky folder; an immutable one): a
    # traceback, the -wal moved aside without its database, and a .partial left behind
    db, copy = shop_with_a_backup(tmp_path)
    leave_a_wal(db)
    before = {name: Path(f"{db}{name}").read_bytes() for name in ("", "-wal")}
    files = sorted(tmp_path.iterdir())
    rename, replace = os.rename, os.replace

    def refusing(source: str, target: str) -> None:
        if source == {"the database": str(db), "the copy": f"{db}.partial"}[refused]:
            raise PermissionError(1, "Operation not permitted")
        (replace if target == str(db) else rename)(source, target)

    monkeypatch.setattr(os, "rename", refusing)
    monkeypatch.setattr(os, "replace", refusing)
    said = {"the database": "cannot move the database there aside",
            "the copy": "cannot put the checked copy in its place"}[refused]
    with pytest.raises(RestoreError, match=f"{said} .*: it is left as it was"):
        restore(str(copy), str(db))

    monkeypatch.undo()
    assert {name: Path(f"{db}{name}").read_bytes() for name in ("", "-wal")} == before
    assert sorted(tmp_path.iterdir()) == files  # no .partial, nothing moved aside
