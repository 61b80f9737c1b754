"""``shopkeep audit``: the invariants of SPEC 6, checked offline on any copy of a database."""

from __future__ import annotations

import argparse
from typing import Any

from shopkeep.cli.common import add_db_flag, add_log_flags
from shopkeep.cli.flags import fail_about
from shopkeep.cli.values import database_file_problem


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``audit`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="check the invariants of a database offline",
        description=(
            "Check the invariants (stock, wallet, points, coupons, money, states, refunds, "
            "amounts) of a database file, opened read-only (no data changes; SQLite may add the "
            "-wal and -shm files a live database has beside it): a live shop's, or a backup. "
            "Prints each check; exit status 0 when all hold, 1 when one is violated, 2 when the "
            "file cannot be audited (no database, or a damaged one: SQLite's integrity_check runs "
            "first)."
        ),
    )
    add_db_flag(parser, "opened read-only")
    add_log_flags(parser, "warning")
    parser.set_defaults(run=run_audit)
    return parser


def run_audit(args: argparse.Namespace) -> int:
    """Audit the file and print each check; 0 when every check holds, else 1."""
    from shopkeep.actors.audit import audit_file
    from shopkeep.store.database import unreadable_at
    from shopkeep.store.errors import UNREADABLE

    missing = database_file_problem(args.db)
    if missing is not None:
        return fail_about(args, "db", f"cannot audit {args.db}: {missing}")
    try:
        report = audit_file(args.db)
    except (*UNREADABLE, OSError) as error:  # not a database; gone since it was looked at
        return fail_about(args, "db", f"cannot audit {args.db}: {unreadable_at(args.db, error)}")
    width = max(len(check.name) for check in report.checks)
    for check in report.checks:
        verdict = "ok" if check.ok else "FAILED"
        print(f"{verdict:<6}  {check.name:<{width}}  {check.detail}".rstrip())
    print(f"audit: {'ok' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1
