"""``shopkeep demo``: a fresh database filled with a small shop to try things on."""

from __future__ import annotations

import argparse
import asyncio
import functools
from typing import Any

from shopkeep.cli.common import (
    add_db_flag,
    add_log_flags,
    check_admin_token,
    secret_flags,
    secret_of,
    writable_path_problem,
)
from shopkeep.cli.flags import fail_about
from shopkeep.cli.provider_flags import add_currency_flag


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``demo`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="fill a fresh database with demo users, goods and coupons",
        description=(
            "Fill a fresh database with users, goods and coupons, and print their ids and the "
            "users' API tokens (and the admin token, when this generates it). Refuses a "
            "database that already holds users, goods, coupons or orders."
        ),
    )
    add_db_flag(parser, "created if missing; must hold no shop data yet")
    secret_flags(
        parser, "--admin-token", metavar="TOKEN",
        help="when set, no admin token is generated: serve will be given this one; otherwise "
        "one is generated and printed, as serve's first start does",
    )  # fmt: skip
    add_currency_flag(parser)
    add_log_flags(parser, "warning")
    parser.set_defaults(
        run=run_demo,
        check=functools.partial(check_demo, parser),
    )
    return parser


def check_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The admin token, from the flag or its file; exits with status 2 if it is unusable."""
    args.admin_token = secret_of(parser, args, "admin_token")
    check_admin_token(parser, args, args.admin_token)


def run_demo(args: argparse.Namespace) -> int:
    """Fill the database and print what is in it; return the exit status."""
    problem = writable_path_problem(args.db)
    if problem is not None:
        return fail_about(args, "db", f"cannot use database path {args.db}: {problem}")

    from shopkeep.demo import DemoRefused, fill
    from shopkeep.opening import CurrencyMismatch
    from shopkeep.store.errors import UNREADABLE, StoreError, unreadable

    try:
        text = asyncio.run(fill(args.db, admin_token=args.admin_token, currency=args.currency))
    except (StoreError, DemoRefused) as error:
        return fail_about(args, "db", str(error))
    except CurrencyMismatch as error:  # an empty database an earlier serve kept another in
        return fail_about(args, "currency", str(error))
    except UNREADABLE as error:  # SQLite's own, as the shop opens (a disk full, damaged pages)
        return fail_about(args, "db", f"cannot use database {args.db}: {unreadable(error)}")
    print(text)
    return 0
