"""``shopkeep backup`` end to end: a live server under the load harness is backed up, and the
copy restores to a shop whose audit is ok; the operator's mistakes are one line, status 2.

The module's own work (steps from one snapshot, the checks, 0600) is tested embedded in
tests/store/test_backup.py; here it is the command, as an operator runs it beside ``serve``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from shopkeep.bench.processes import serving
from shopkeep.cli import main
from shopkeep.store.migrations import MIGRATIONS, apply_migrations

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "backup-admin-token-0123456789"
SECRET = "backup-gateway-secret-0123456789"
CREDENTIALS = {"SHOPKEEP_ADMIN_TOKEN": ADMIN, "SHOPKEEP_GATEWAY_SECRET": SECRET}
BENCH_S = 10
"""The harness's run: its first progress line comes after 5 s, the backup is taken then."""
ORDER_TIMEOUT = "3s"
"""Short enough that unpaid orders time out (and late callbacks are sent) within the run; long
enough that a journey that pays (place, start the payment, complete it, see it paid) finishes
before its order's deadline while the backup, its integrity check and its audit compete with
the server and the harness for two cores. At 1 s a full suite's run once ended with one
harness error, which operation's was not recorded; a failure now shows the harness's report
and the server's lines above info."""
TIMEOUT_S = 120


def shopkeep(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The command, run in ``cwd`` (where a relative or empty path lands) with this checkout's
    package on its path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "shopkeep", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def assert_usage_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "error:" in line
    for word in words:
        assert word in line


def orders_in(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])


def audit_over_http(url: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/v1/audit", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        answer: dict[str, object] = json.load(response)
        return answer


async def test_a_backup_taken_while_the_harness_runs_restores_to_a_shop_whose_audit_is_ok(
    tmp_path: Path,
) -> None:
    live, restored = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    restored.mkdir()
    copy = tmp_path / "copy.db"
    flags = ("--sandbox", "--order-timeout", ORDER_TIMEOUT)
    async with serving(live, *flags, env=CREDENTIALS) as server:
        harness = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shopkeep", "bench", "--url", server.url, "--duration",
            f"{BENCH_S}s", "--concurrency", "8", cwd=ROOT, env={**os.environ, **CREDENTIALS},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert harness.stderr is not None
        first_progress = b""
        while not (first_progress.startswith(b"bench ") and b" ops 0 " not in first_progress):
            # past the setup line and the opening progress line: orders are being placed
            first_progress = await asyncio.wait_for(harness.stderr.readline(), TIMEOUT_S)
            assert first_progress, "the harness ended before its progress line"
        loading = harness.returncode is None
        taken = await asyncio.to_thread(
            shopkeep, "backup", "--db", str(live / "shop.db"), "--to", str(copy)
        )
        report, rest = await asyncio.wait_for(harness.communicate(), TIMEOUT_S)
        server_log = server.log.read_text(errors="replace").splitlines()
    complaints = [line for line in server_log if '"level":"info"' not in line][-30:]

    assert first_progress.startswith(b"bench ") and loading
    assert taken.returncode == 0, taken.stderr
    (summary,) = taken.stdout.splitlines()
    assert summary.startswith("backup: ok: ") and "audit ok" in summary
    assert "pages copied" in taken.stderr  # progress, on stderr
    # the server's own audit after the run; on failure, what the harness and the server said
    assert harness.returncode == 0, "\n".join([rest.decode(), report.decode(), *complaints])
    assert orders_in(copy) > 0
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert shopkeep("audit", "--db", str(copy)).returncode == 0
    shutil.copy(copy, restored / "shop.db")
    async with serving(restored, "--sandbox", env=CREDENTIALS) as server:
        audit = await asyncio.to_thread(audit_over_http, server.url)
    assert audit["ok"] is True, audit


def test_a_backup_never_overwrites_a_file(tmp_path: Path) -> None:
    db, target = tmp_path / "shop.db", tmp_path / "taken.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    target.write_text("precious")

    result = shopkeep("backup", "--db", str(db), "--to", str(target))

    assert_usage_error(result, str(target), "exists already")
    assert target.read_text() == "precious"


def test_a_backup_named_as_one_of_the_databases_own_files_is_refused(tmp_path: Path) -> None:
    # with the server stopped they do not exist: the copy was said ok, then SQLite deleted it
    db = tmp_path / "shop.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    (tmp_path / "shop.db.lock").unlink()

    own = {"-wal": "WAL", "-shm": "shared memory", "-journal": "rollback journal",
           ".lock": "lock file"}
    for suffix, what in own.items():
        result = shopkeep("backup", "--db", str(db), "--to", f"shop.db{suffix}", cwd=tmp_path)

        assert_usage_error(result, f"shop.db{suffix}", f"the database's own {what}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shop.db"]


def test_a_backup_of_a_missing_database_or_to_nowhere_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0

    missing = shopkeep("backup", "--db", str(tmp_path / "none.db"), "--to", str(tmp_path / "c"))
    nowhere = shopkeep("backup", "--db", str(db), "--to", str(tmp_path / "no" / "copy.db"))
    untold = shopkeep("backup", "--db", str(db))
    unnamed = shopkeep("backup", "--db", str(db), "--to", "", cwd=tmp_path)
    blank = shopkeep("backup", "--db", str(db), "--to", " ", cwd=tmp_path)
    a_folder_to_be = shopkeep("backup", "--db", str(db), "--to", f"{tmp_path}/new/")

    assert_usage_error(missing, "none.db", "no such database file")
    assert_usage_error(nowhere, "does not exist")
    assert_usage_error(untold, "--to", "SHOPKEEP_TO")
    assert_usage_error(unnamed, "--to", "names no file")
    assert_usage_error(blank, "--to", "names no file")
    assert_usage_error(a_folder_to_be, "--to", "names no file")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["shop.db", "shop.db.lock"]


def test_a_backup_to_a_name_whose_journal_would_not_fit_is_a_usage_error(tmp_path: Path) -> None:
    # its .partial fitted, SQLite's -journal beside that did not: a traceback from the
    # clean-up of a file that could never have been made (and a copy kept as failing its
    # checks must leave room for the -wal audit looks for beside it)
    db = tmp_path / "shop.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    fits = "a" * (longest - len(".failed-checks-wal"))  # what audit looks for beside a copy

    too_long = shopkeep("backup", "--db", str(db), "--to", str(tmp_path / f"{fits}b"))
    just_fits = shopkeep("backup", "--db", str(db), "--to", str(tmp_path / fits))

    assert_usage_error(too_long, "--to", "its name is too long")
    assert just_fits.returncode == 0, just_fits.stderr
    made = {path.name for path in tmp_path.iterdir()} - {"shop.db", "shop.db.lock"}
    assert made <= {fits, "shop.db-wal", "shop.db-shm"} and fits in made  # no partial left


def test_a_backup_racing_another_to_the_same_file_is_a_usage_error_like_one_that_came_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, target = tmp_path / "shop.db", tmp_path / "copy.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    # the other backup made its .partial after this one looked, before it began to copy
    monkeypatch.setattr("shopkeep.cli.backup.target_problem", lambda target, db: None)
    Path(f"{target}.partial").write_bytes(b"")

    status = main(["backup", "--db", str(db), "--to", str(target)])

    [line] = capsys.readouterr().err.splitlines()[-1:]
    assert status == 2
    assert "--to" in line and "copy.db.partial exists" in line
    assert not target.exists()


def test_a_copy_that_fails_the_audit_is_kept_under_another_name_and_the_status_is_1(
    tmp_path: Path,
) -> None:
    # a backup taken as an invariant broke is the one that shows how: not thrown away, and
    # never under the name a checked backup takes
    db, target = tmp_path / "shop.db", tmp_path / "copy.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE goods SET stock = stock + 7")  # behind the stock ledger's back

    result = shopkeep("backup", "--db", str(db), "--to", str(target))

    assert result.returncode == 1
    said = result.stderr.splitlines()[-1]
    assert said.startswith(f"shopkeep backup: error: the copy of {db} failed its checks")
    assert "stock" in said and said.endswith(f"kept as {target}.failed-checks to look into, "
                                             f"not as {target}")
    assert not target.exists() and not Path(f"{target}.partial").exists()
    audited = shopkeep("audit", "--db", f"{target}.failed-checks")
    assert audited.returncode == 1 and "stock" in audited.stdout  # the copy, as it was

    again = shopkeep("backup", "--db", str(db), "--to", str(target))
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1].endswith(f"nothing was kept ({target}.failed-checks "
                                                  "exists)")


def test_a_backup_of_an_empty_database_file_is_a_usage_error_naming_the_flag(
    tmp_path: Path,
) -> None:
    db, target = tmp_path / "empty.db", tmp_path / "copy.db"
    sqlite3.connect(db).close()  # a database of no pages, no shop's

    result = shopkeep("backup", "--db", str(db), "--to", str(target))

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()  # no "0/0 pages copied" before it
    assert line.startswith(f"shopkeep backup: error: argument --db (env SHOPKEEP_DB): cannot "
                           f"back up {db}")
    assert not target.exists()


def test_a_backup_or_a_restore_of_a_file_that_is_no_database_names_its_flag(
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)

    backed_up = shopkeep("backup", "--db", str(text), "--to", str(tmp_path / "copy.db"))
    restored = shopkeep("restore", "--from", str(text), "--db", str(tmp_path / "shop.db"))

    assert backed_up.returncode == restored.returncode == 2
    assert "argument --db (env SHOPKEEP_DB): cannot back up" in backed_up.stderr
    assert "argument --from (env SHOPKEEP_FROM): cannot restore" in restored.stderr
    assert "is not a SQLite database" in backed_up.stderr + restored.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_backup_stopped_by_a_signal_says_so_and_leaves_no_partial_file(
    tmp_path: Path, stop: str
) -> None:
    # SIGTERM (a service manager's stop, ``timeout``) and SIGHUP ended the process where it
    # stood, leaving the full-size FILE.partial that refuses every later backup to FILE
    db, target = tmp_path / "shop.db", tmp_path / "copy.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    with closing(sqlite3.connect(db)) as conn, conn:  # 64 MiB: the copy takes many steps
        conn.execute("CREATE TABLE filler (bytes BLOB)")
        conn.executemany("INSERT INTO filler VALUES (zeroblob(1048576))", [()] * 64)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    backup = subprocess.Popen(
        [sys.executable, "-m", "shopkeep", "backup", "--db", str(db), "--to", str(target)],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        assert backup.stderr is not None
        first = backup.stderr.readline()  # the copy's first step is done
        assert "pages copied" in first, first
        backup.send_signal(getattr(signal, stop))
        said = backup.stderr.read()
        status = backup.wait(TIMEOUT_S)
    finally:
        if backup.poll() is None:
            backup.kill()  # our own child
            backup.wait(TIMEOUT_S)

    number = getattr(signal, stop).value
    assert status == 128 + number, said
    assert said.splitlines()[-1] == f"shopkeep backup: stopped by {stop}: nothing was kept"
    assert not list(tmp_path.glob("copy.db*"))  # no copy, no .partial


STOPPED_AT = """
import importlib, os, signal, sys
module_name, _, name = sys.argv[1].rpartition(".")
module = importlib.import_module(module_name)
step = getattr(module, name)

def then_stopped(*args, **kwargs):
    done = step(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # a service manager's stop, as the step ends
    return done

setattr(module, name, then_stopped)
from shopkeep.cli import main
sys.exit(main(sys.argv[2:]))
"""
"""``shopkeep`` with a SIGTERM sent to itself as the step ``argv[1]`` (``module.function``)
ends."""


def stopped_after(step: str, *command: str) -> subprocess.CompletedProcess[str]:
    """``shopkeep command`` stopped by a SIGTERM as ``step`` (``module.function``) ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", STOPPED_AT, step, *command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def test_a_backup_stopped_as_it_makes_its_partial_copy_leaves_none(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0
    target = tmp_path / "again.db"

    result = stopped_after(
        "shopkeep.store.private_files._create", "backup", "--db", str(db), "--to", str(target)
    )

    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert result.stderr.splitlines() == ["shopkeep backup: stopped by SIGTERM: nothing was kept"]
    assert not list(tmp_path.glob("again.db*"))


def test_a_backup_stopped_as_it_keeps_its_checked_copy_finishes_that_first(
    tmp_path: Path,
) -> None:
    # stopped once the copy was at its name, it said "nothing was kept" and exited 143 with
    # the copy kept: a retry then found the name taken
    db, target = tmp_path / "shop.db", tmp_path / "copy.db"
    assert shopkeep("demo", "--db", str(db)).returncode == 0

    result = stopped_after(
        "shopkeep.backup.remove_database", "backup", "--db", str(db), "--to", str(target)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backup: ok: {db} -> {target}")
    assert "SIGTERM came as the checked copy was kept: done first" in result.stderr
    assert sorted(p.name for p in tmp_path.glob("copy.db*")) == ["copy.db"]


HELD_TO_THE_END = """
import os, signal
from shopkeep.cli.common import stopped_by_signals
with stopped_by_signals() as stops:
    with stops.past_undoing():
        pass
os.kill(os.getpid(), signal.SIGTERM)  # as the command prints what it did, or exits
print("held", stops.held)
"""


def test_a_stop_past_undoing_is_held_to_the_process_end_not_the_blocks() -> None:
    # a signal just after a backup or restore was done, as it printed "ok" or exited, gave
    # 143: "nothing is kept", of a copy kept or a database replaced
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", HELD_TO_THE_END], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip

    assert (result.returncode, result.stdout) == (0, f"held {signal.SIGTERM.value}\n")


def newer_shop(path: Path) -> Path:
    """A shop's database as a shopkeep one migration ahead of this one leaves it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        apply_migrations(conn, MIGRATIONS)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    return path


def test_a_file_a_newer_shopkeep_wrote_is_refused_before_a_page_is_copied(
    tmp_path: Path,
) -> None:
    # audit refused it (2); backup copied every page, then failed (1), as restore did
    newer = newer_shop(tmp_path / "newer.db")

    backed_up = shopkeep("backup", "--db", str(newer), "--to", str(tmp_path / "copy.db"))
    restored = shopkeep("restore", "--from", str(newer), "--db", str(tmp_path / "shop.db"))

    assert_usage_error(backed_up, "argument --db", "is newer than this shopkeep knows")
    assert_usage_error(restored, "argument --from", "is newer than this shopkeep knows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newer.db"]
