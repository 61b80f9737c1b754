"""``shopkeep restore``: a backup put back in a stopped database's place (the work is
:func:`shopkeep.restore.restore`'s).

The operator's mistakes (no such backup, the database still served) are refused in one line
with status 2 and change nothing; a backup that fails its checks, or cannot be copied there,
status 1, changes nothing either; a restore done says in one line where the database it
replaced went.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
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


def add_restore_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``restore`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "restore",
        help="put a backup back in a stopped database's place",
        description=(
            "Put a backup (made by shopkeep backup) in the place of the database, the server "
            "stopped. The backup is checked first (SQLite's integrity_check and the shop's "
            "audit). The database it replaces is not deleted: it is renamed, with its -wal and "
            "-shm files, to PATH.replaced-<UTC time>, so that nothing of it is lost and nothing "
            "of it mixes into the restored file (a -wal file left by a server that did not stop "
            "cleanly would be applied to whatever file is next opened under its name: a plain "
            "copy over the database corrupts it). Exit status 0 when restored, 1 when the "
            "backup failed its checks or could not be copied there (a full disk: nothing "
            "changed), 2 for a usage error (no such backup, one that cannot be read as a "
            "shop's database, as audit refuses it, "
            "the database in use by a server: nothing changed), 128 + the signal's number when a "
            "Ctrl-C, SIGTERM or SIGHUP stopped it while it copied (nothing changed); one that "
            "comes once the checked copy is being put in place lets it finish (status 0, the "
            "signal said)."
        ),
    )
    add_db_flag(parser, "the database to put the backup in the place of")
    add_file_flag(parser, "restore", "--from", "the backup to restore")
    add_log_flags(parser, "warning")
    parser.set_defaults(run=run_restore)
    return parser


def run_restore(args: argparse.Namespace) -> int:
    """Restore; 0 done, 1 the backup failed its checks, 2 for the operator's mistakes."""
    source = getattr(args, "from")
    missing = database_file_problem(source)
    if missing is not None:
        return fail_about(args, "from", f"cannot restore {source}: {missing}")
    # a folder would be moved aside as a database, and "" is the working folder; a device or
    # a pipe would be moved aside too
    problem = names_no_file(args.db) or ("it is a directory" if os.path.isdir(args.db) else None)
    if problem is None and os.path.exists(args.db) and not os.path.isfile(args.db):
        problem = "not a regular file"
    if problem is not None:
        return fail_about(args, "db", f"cannot restore to {args.db!r}: {problem}")

    from shopkeep.restore import RestoreError, RestoreRefused, restore
    from shopkeep.store.errors import DatabaseInUse, StoreError

    try:
        with stopped_by_signals() as stops:
            report = restore(source, args.db, swapping=stops.past_undoing)
    except (KeyboardInterrupt, Stopped) as stop:  # its .partial removed on the way out
        return stopped_status("restore", stop)
    except DatabaseInUse as error:
        return fail_about(args, "db", f"cannot restore over {args.db}: {error}: stop it first")
    except RestoreRefused as refused:
        return fail_about(args, "from" if refused.about == "backup" else "db", str(refused))
    except StoreError as error:  # the lock file cannot be made there (a folder not writable)
        return fail_about(args, "db", f"cannot restore to {args.db}: {error}")
    except RestoreError as error:
        print(f"{PROG} restore: error: {error}", file=sys.stderr)
        return 1
    kept = "" if report.replaced is None else f"; the database it replaced is {report.replaced}"
    print(f"restore: ok: {source} -> {report.path}{kept}")
    if stops.held is not None:  # it came as the copy was put in place: that was finished
        print(f"{PROG} restore: {signal.Signals(stops.held).name} came as the checked copy was "
              "put in place: done first", file=sys.stderr)
    return 0
