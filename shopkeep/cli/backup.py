"""``shopkeep backup``: a consistent, checked copy of a live database (SPEC 8).

The work is :func:`shopkeep.backup.backup`'s (SQLite's online backup in steps, from one
snapshot, then ``integrity_check`` and the audit on the copy); this module is the command around
it: the operator's mistakes are refused in one line with status 2 before anything is copied,
progress goes to stderr, one summary line to stdout, and the status is 0 when the copy was kept,
1 when it was not (it failed a check, and is kept as ``FILE.failed-checks``; or the copy itself
failed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from shopkeep.cli.common import (
    Stopped,
    add_db_flag,
    add_file_flag,
    add_log_flags,
    names_no_file,
    stopped_by_signals,
    stopped_status,
)
from shopkeep.cli.flags import PROG, fail_about
from shopkeep.cli.values import database_file_problem

PROGRESS_STEPS = 10
"""Progress is said at each tenth of the pages copied."""


def add_backup_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``backup`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backup",
        help="copy a live database consistently, then check the copy",
        description=(
            "Copy the database file while the server keeps serving (SQLite's online backup, "
            "a few pages at a time, all from one snapshot), then check the copy (SQLite's "
            "integrity_check and the shop's audit). The copy is readable by its owner only and "
            "named FILE only once it passed; an existing FILE is never overwritten. Exit status "
            "0 when the copy was kept, 1 when it was not (the source damaged past its first "
            "page, the copy failed, or it failed a check: then kept as FILE.failed-checks, for "
            "a person to look into, unless that exists), 2 for a usage error (no such source "
            "file, one that cannot be read as a shop's database, as audit refuses it: not "
            "SQLite, its first page damaged, no shop's tables, written by a newer shopkeep; FILE "
            "or FILE.partial exists already), 128 + the signal's number when a Ctrl-C, SIGTERM "
            "or SIGHUP stopped it (nothing is kept; one that comes as the checked copy is kept "
            "lets it finish: status 0, the signal said). Restore with "
            "shopkeep restore, the server stopped."
        ),
    )
    add_db_flag(parser, "the live database to copy")
    add_file_flag(parser, "backup", "--to", "the file to write the copy to; must not exist")
    add_log_flags(parser, "warning")
    parser.set_defaults(run=run_backup)
    return parser


DATABASE_OWN_FILES = {
    "-wal": "WAL", "-shm": "shared memory", "-journal": "rollback journal", ".lock": "lock file",
}
"""The files beside a database that are its own, by the suffix of their names: SQLite's (it
deletes a file of such a name when it next opens or closes the database) and the server's
lock (:mod:`shopkeep.store.lock`)."""


def target_problem(target: str, db: str) -> str | None:
    """Why a copy of the database ``db`` cannot be written at ``target``, or ``None``."""
    unnamed = names_no_file(target)
    if unnamed is not None:
        return unnamed
    if os.path.lexists(target):
        return "it exists already"
    wanted = {os.path.abspath(target), str(Path(target).resolve())}
    for source in {os.path.abspath(db), str(Path(db).resolve())}:
        for suffix, what in DATABASE_OWN_FILES.items():
            if source + suffix in wanted:
                return (
                    f"it names the database's own {what}, which is removed or rewritten when "
                    "the database is next opened"
                )
    if os.path.lexists(target + ".partial"):
        return f"{target}.partial exists (another backup is writing it, or one was cut short)"
    folder = Path(target).parent
    if not folder.is_dir():
        return f"directory {str(folder)!r} does not exist"
    from shopkeep.backup import FAILED_CHECKS  # the backup's own module, loaded next anyway

    # the copy is first written beside it, under its name and ".partial", with SQLite's
    # journal of it beside that ("-journal"); one failing its checks is kept at its name and
    # FAILED_CHECKS, which audit reads (looking for its "-wal")
    longest = max(len(".partial-journal"), len(FAILED_CHECKS + "-wal"))
    if len(os.fsencode(Path(target).name)) + longest > _longest_name(folder):
        return "its name is too long"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"directory {str(folder)!r} is not writable"
    return None


def _longest_name(folder: Path) -> int:
    """The longest file name ``folder``'s file system takes, in bytes."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


class ProgressLine:
    """Says on stderr how far the copy is, at each tenth of it."""

    def __init__(self) -> None:
        self.said = -1

    def __call__(self, done: int, total: int) -> None:
        tenth = done * PROGRESS_STEPS // max(total, 1)
        if tenth > self.said and total > 0:  # no pages: no shop's file, as its error says
            self.said = tenth
            print(f"backup: {done}/{total} pages copied", file=sys.stderr, flush=True)


def run_backup(args: argparse.Namespace) -> int:
    """Copy and check; 0 when the copy was kept, 1 when not, 2 for the operator's mistakes."""
    missing = database_file_problem(args.db)
    if missing is not None:
        return fail_about(args, "db", f"cannot back up {args.db}: {missing}")
    problem = target_problem(args.to, args.db)
    if problem is not None:
        return fail_about(args, "to", f"cannot back up to {args.to}: {problem}")

    from shopkeep.backup import BackupError, SourceRefused, TargetTaken, backup

    try:
        with stopped_by_signals() as stops:
            report = backup(
                args.db, args.to, progress=ProgressLine(), keeping=stops.past_undoing
            )
    except (KeyboardInterrupt, Stopped) as stop:  # its .partial removed on the way out
        return stopped_status("backup", stop)
    except TargetTaken as error:  # made since it was looked at: another backup's, at once
        return fail_about(args, "to", str(error))
    except SourceRefused as error:  # no shop's database: as audit says it
        return fail_about(args, "db", str(error))
    except BackupError as error:
        print(f"{PROG} backup: error: {error}", file=sys.stderr)
        return 1
    size = os.path.getsize(report.path) / 2**20
    print(
        f"backup: ok: {args.db} -> {report.path}, {report.pages} pages ({size:.1f} MiB) in "
        f"{report.seconds:.1f} s; integrity {report.integrity}; audit ok"
    )
    if stops.held is not None:  # it came as the checked copy was kept: that was finished
        print(f"{PROG} backup: {signal.Signals(stops.held).name} came as the checked copy was "
              "kept: done first", file=sys.stderr)
    return 0
