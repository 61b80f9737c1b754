"""What the commands make of database files that are not what they seem: a file with two names,
a pipe, a file damaged where SQLite's complaint quotes its bytes, a backup with commits in its
own ``-wal``, a file made at a backup's target while the copy runs.

What each would do unchecked: two servers serve one file through a hard link, each losing the
other's writes; a pipe as ``--db`` is opened (and a device has a journal left beside it); a
damaged file gives a traceback and the exit status of a failed audit; a restore from a file
with a ``-wal`` leaves its commits out; a backup replaces a file made at its target meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.backup import BackupError, backup
from tests.cli.test_backup_command import assert_usage_error, shopkeep
from tests.cli.test_restore_command import shop_with_a_backup, users_in


def test_a_database_with_a_second_name_is_refused_by_every_name(tmp_path: Path) -> None:
    db, second = tmp_path / "shop.db", tmp_path / "second.db"
    db.write_bytes(b"")  # a fresh database, which demo would fill
    os.link(db, second)

    for name in (db, second):
        assert_usage_error(shopkeep("demo", "--db", str(name)), "2 names (hard links)")


def test_a_pipe_as_the_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.db"
    os.mkfifo(pipe)

    assert_usage_error(shopkeep("demo", "--db", str(pipe)), "not a regular file")
    assert sorted(tmp_path.iterdir()) == [pipe]


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A shop's database whose schema holds a byte that is not text, where SQLite's complaint
    about it quotes it."""
    db, _ = shop_with_a_backup(tmp_path)
    pages = bytearray(db.read_bytes())
    pages[pages.index(b"CREATE TABLE goods") + 7] = 0xAB
    bad = tmp_path / "damaged.db"
    bad.write_bytes(pages)
    return bad


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "--db", "{db}"],
        ["backup", "--db", "{db}", "--to", "{folder}/copy.db"],
        ["demo", "--db", "{db}"],
    ],
)
def test_a_damaged_file_is_refused_in_one_line(damaged: Path, command: list[str]) -> None:
    args = [part.format(db=damaged, folder=damaged.parent) for part in command]
    result = shopkeep(*args)

    assert "Traceback" not in result.stderr
    assert result.returncode in (1, 2) and len(result.stderr.splitlines()) == 1, result.stderr
    assert "damaged" in result.stderr
    if command[0] == "audit":
        assert result.returncode == 2  # 1 says an invariant is violated


def test_a_damaged_backup_is_not_restored(damaged: Path) -> None:
    target = damaged.parent / "restored.db"

    result = shopkeep("restore", "--from", str(damaged), "--db", str(target))

    assert result.returncode == 1 and "damaged" in result.stderr, result.stderr
    assert not target.exists() and not Path(f"{target}.partial").exists()


def left_by_a_kill(db: Path, to: Path) -> None:
    """At ``to``, ``db`` as a server killed after a commit leaves it: the commit (its users
    renamed) in the ``-wal`` file only, beside the ``-shm``."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        with conn:
            conn.execute("UPDATE users SET name = name || ' (renamed after the backup)'")
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{db}{suffix}", f"{to}{suffix}")


def test_a_backup_with_commits_in_its_own_wal_is_restored_with_them(tmp_path: Path) -> None:
    _, copy = shop_with_a_backup(tmp_path)
    killed, target = tmp_path / "killed.db", tmp_path / "restored.db"
    left_by_a_kill(copy, killed)

    result = shopkeep("restore", "--from", str(killed), "--db", str(target))

    assert result.returncode == 0, result.stderr
    with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as conn:
        [renamed] = conn.execute(
            "SELECT count(*) FROM users WHERE name LIKE '%(renamed after the backup)'"
        ).fetchone()
    assert renamed == users_in(target) > 0


def test_a_file_made_at_the_target_while_the_backup_copies_is_kept(tmp_path: Path) -> None:
    db, _ = shop_with_a_backup(tmp_path)
    target = tmp_path / "taken.db"

    def someone_writes_the_target(done: int, total: int) -> None:
        if not target.exists():
            target.write_text("precious")

    with pytest.raises(BackupError, match="made while the copy ran"):
        backup(str(db), str(target), progress=someone_writes_the_target)

    assert target.read_text() == "precious"
    assert not Path(f"{target}.partial").exists()


@pytest.mark.parametrize("made", ["empty", "another program's"])
def test_a_file_that_is_no_shops_is_said_to_be_so_by_the_audit(tmp_path: Path, made: str) -> None:
    db = tmp_path / "other.db"
    with closing(sqlite3.connect(db)) as conn:
        if made != "empty":
            conn.execute("CREATE TABLE notes (body TEXT)")

    result = shopkeep("audit", "--db", str(db))

    assert_usage_error(result, "not a shop's database")


def test_a_backup_cut_short_before_is_a_usage_error_naming_its_partial_copy(
    tmp_path: Path,
) -> None:
    db, _ = shop_with_a_backup(tmp_path)
    (tmp_path / "again.db.partial").write_text("a copy a kill cut short")

    result = shopkeep("backup", "--db", str(db), "--to", str(tmp_path / "again.db"))

    assert_usage_error(result, "again.db.partial exists")


HALF_WRITTEN = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = DELETE")
conn.execute("PRAGMA cache_size = 1")  # pages spill to the file before the commit
conn.execute("BEGIN")
conn.execute("UPDATE users SET balance = balance + 100000")
for n in range(3000):
    conn.execute("INSERT INTO payment_log (payment_id, order_id, verified, duplicate, action, "
                 "body, at) VALUES (?, 1, 1, 0, 'applied', ?, 0)", (n, b"x" * 200))
os._exit(0)  # killed mid-transaction: its journal is left hot
"""


def test_a_file_a_write_was_cut_short_in_is_not_audited_as_it_lies(tmp_path: Path) -> None:
    # read immutable, its half-written pages were audited: "wallet FAILED", exit 1, of a
    # database whose committed state holds
    _, copy = shop_with_a_backup(tmp_path)
    cut = subprocess.run([sys.executable, "-c", HALF_WRITTEN, str(copy)], check=False)
    assert cut.returncode == 0 and Path(f"{copy}-journal").stat().st_size > 0

    result = shopkeep("audit", "--db", str(copy))

    assert_usage_error(result, "a write cut short left copy.db-journal")


@pytest.mark.parametrize("command", ["audit", "backup"])
def test_a_database_read_by_a_second_name_is_refused(tmp_path: Path, command: str) -> None:
    # read by another name than the server's, without the server's -wal: commits missing
    db, _ = shop_with_a_backup(tmp_path)
    second = tmp_path / "second.db"
    os.link(db, second)
    to = ["--to", str(tmp_path / "copy2.db")] if command == "backup" else []
    args = ["--db", str(second), *to]

    assert_usage_error(shopkeep(command, *args), "2 names (hard links)")
    assert not (tmp_path / "copy2.db").exists()


def test_a_refused_second_name_leaves_no_lock_file_beside_it(tmp_path: Path) -> None:
    db, second = tmp_path / "shop.db", tmp_path / "second.db"
    db.write_bytes(b"")
    os.link(db, second)

    assert_usage_error(shopkeep("demo", "--db", str(second)), "2 names (hard links)")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["second.db", "shop.db"]


def test_a_restore_cut_short_before_is_a_usage_error_naming_its_partial_copy(
    tmp_path: Path,
) -> None:
    # exit 1 said "the backup failed its checks"; the message named the resolved path
    db, copy = shop_with_a_backup(tmp_path)
    (tmp_path / "shop.db.partial").write_bytes(copy.read_bytes())  # a kill -9 left it

    result = shopkeep("restore", "--from", str(copy), "--db", str(db))

    assert_usage_error(result, f"{db}.partial exists")


def test_a_backup_pauses_between_its_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the sqlite3 module sleeps only when a step finds the database busy: never, here
    db, _ = shop_with_a_backup(tmp_path)
    pauses: list[float] = []
    monkeypatch.setattr("shopkeep.backup.time.sleep", pauses.append)

    report = backup(str(db), str(tmp_path / "stepped.db"), pages_per_step=8, pause_s=0.04)

    steps = -(-report.pages // 8)
    assert steps > 2 and pauses == [0.04] * (steps - 1)


def beside_an_older_wal(db: Path) -> None:
    """``db`` with, beside it, a ``-wal`` an older copy of it left: what copying a backup over
    the file by hand leaves when a server did not stop cleanly. Replayed onto the newer file,
    its older pages make it malformed."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        with conn:
            conn.execute("UPDATE users SET name = name || ' (then)'")
        older = Path(f"{db}-wal").read_bytes()
    with closing(sqlite3.connect(db)) as conn, conn:  # the file's later life, folded in
        conn.executemany(
            "INSERT INTO users (id, name, balance, points, token_hash, created_at) "
            "VALUES (?, ?, 0, 0, ?, 0)",
            [(10**6 + n, f"later {n}", f"hash {n}") for n in range(300)],
        )
    Path(f"{db}-wal").write_bytes(older)


READING_THE_FILE = [
    ["serve", "--sandbox", "--port", "0", "--db", "{db}"],
    ["backup", "--db", "{db}", "--to", "{folder}/second.db"],
    ["restore", "--from", "{db}", "--db", "{folder}/restored.db"],
    ["audit", "--db", "{db}"],
]
"""Every command that reads a database file through what lies beside it ({db}; {folder}: the
test's own): each refuses a -wal that is not the file's, as serve does."""


@pytest.mark.parametrize("command", READING_THE_FILE)
def test_a_file_beside_an_older_wal_is_refused_and_both_are_left_as_they_were(
    tmp_path: Path, command: list[str]
) -> None:
    # refused, but the read-write connection's close first copied the older -wal into the
    # file and removed it: the newer pages overwritten, for good
    db, _ = shop_with_a_backup(tmp_path)
    beside_an_older_wal(db)
    both = (db, Path(f"{db}-wal"))
    before = [path.read_bytes() for path in both]

    result = shopkeep(*(part.format(db=db, folder=tmp_path) for part in command))

    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "malformed" in result.stderr
    # and says what to do: the file alone is whole
    assert "the file alone is whole, but read with the -wal beside it" in result.stderr
    assert "move the -wal and -shm away" in result.stderr
    assert [path.read_bytes() for path in both] == before
    assert not list(tmp_path.glob("second.db*")) and not list(tmp_path.glob("restored.db*"))


def with_another_shops_wal(db: Path, other: Path) -> None:
    """Beside ``db``, a ``-wal`` of the shop ``other``: its settings (its file id among them)
    and users changed, the change left in its ``-wal``, copied beside ``db``."""
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        with conn:
            conn.execute("INSERT INTO settings (key, value) VALUES ('note', 'the other shop')")
            conn.execute("UPDATE users SET name = name || ' (of the other shop)'")
        shutil.copyfile(f"{other}-wal", f"{db}-wal")


# read through it, a backup or a restore would copy the other shop, and the audit check it
@pytest.mark.parametrize("command", READING_THE_FILE)
def test_a_file_beside_another_shops_wal_is_refused_and_both_are_left_as_they_were(
    tmp_path: Path, command: list[str]
) -> None:
    # read through the other shop's -wal, the file was that shop, whole: the server served it,
    # and its checkpoint wrote it over the file
    db, _ = shop_with_a_backup(tmp_path)
    other = tmp_path / "other.db"
    assert shopkeep("demo", "--db", str(other)).returncode == 0
    with_another_shops_wal(db, other)
    both = (db, Path(f"{db}-wal"))
    before = [path.read_bytes() for path in both]

    result = shopkeep(*(part.format(db=db, folder=tmp_path) for part in command))

    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.returncode == 2 or command[0] != "serve"
    assert "the -wal beside it was written for another database" in result.stderr
    assert "the file alone is whole, but" not in result.stderr
    assert [path.read_bytes() for path in both] == before
    assert not list(tmp_path.glob("second.db*")) and not list(tmp_path.glob("restored.db*"))


@pytest.mark.parametrize("command", READING_THE_FILE)
def test_a_backup_copied_by_hand_over_a_file_left_with_its_wal_is_refused_as_it_was(
    tmp_path: Path, command: list[str]
) -> None:
    # the -wal, the server's commits after the backup, made the copy half each (or, read
    # whole, lost them at the checkpoint): the file's id is the same shop's, so only the
    # file's mode tells them apart. SQLite reads the -wal whatever the copy's header says:
    # the audit checked, and a backup or a restore copied, what the file does not hold
    db, copy = shop_with_a_backup(tmp_path)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        with conn:
            conn.execute("UPDATE users SET name = name || ' (after the backup)'")
        after = Path(f"{db}-wal").read_bytes()
    shutil.copyfile(copy, db)  # cp copy.db shop.db, over the file
    Path(f"{db}-wal").write_bytes(after)
    both = (db, Path(f"{db}-wal"))
    before = [path.read_bytes() for path in both]

    result = shopkeep(*(part.format(db=db, folder=tmp_path) for part in command))

    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.returncode == 2 or command[0] in ("backup", "restore")  # 1: not read
    assert "the -wal beside it was written for the file that was there before" in result.stderr
    assert [path.read_bytes() for path in both] == before
    assert not list(tmp_path.glob("second.db*")) and not list(tmp_path.glob("restored.db*"))



@pytest.mark.parametrize("command", READING_THE_FILE)
def test_a_file_that_is_no_database_is_said_to_be_none_by_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    # the audit said "the database is damaged" of a text file, the others SQLite's own words
    db = tmp_path / "shop.db"
    db.write_text("name,price\ntea,1200\n" * 200)
    before = db.read_bytes()

    result = shopkeep(*(part.format(db=db, folder=tmp_path) for part in command))

    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "it is not a SQLite database, or its first page is damaged" in result.stderr
    assert "the database is damaged" not in result.stderr
    assert db.read_bytes() == before


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder mounted read-only (a file system of its own, made and mounted here: only
    where this process may mount, as root can), with a closed shop's database in it."""
    folder = tmp_path / "mounted"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a read-only file system needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
                          capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount here: {made.stderr.decode().strip()}")
    try:
        assert shopkeep("demo", "--db", str(folder / "shop.db")).returncode == 0
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=False)
        assert remounted.returncode == 0
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("command", ["backup", "audit"])
def test_a_closed_database_in_a_read_only_folder_is_backed_up_and_audited(
    read_only_folder: Path, tmp_path: Path, command: str
) -> None:
    # a database in WAL mode needs its -shm made beside it even to be read: the audit read
    # such a file as one nothing changes, the backup said "unable to open database file"
    db = read_only_folder / "shop.db"
    to = ["--to", str(tmp_path / "copy.db")] if command == "backup" else []

    result = shopkeep(command, "--db", str(db), *to)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("audit ok" if to else "audit: ok")


def test_a_database_in_a_read_only_folder_a_server_holds_is_not_read_as_unchanging(
    read_only_folder: Path,
) -> None:
    # read as a file nothing changes while a server started on it (through another, writable
    # mount of the same folder), the audit reported violations of a torn state
    db = read_only_folder / "shop.db"
    with open(f"{db}.lock", "rb") as lock_file:  # what a server holds for its life
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        result = shopkeep("audit", "--db", str(db))

    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "a server holds it" in result.stderr
