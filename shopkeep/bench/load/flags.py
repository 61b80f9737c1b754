"""The flags of ``shopkeep bench``, and the usage errors no one flag's converter can see.

Declared here rather than in :mod:`shopkeep.cli.bench` because they are many; each is declared
with :func:`shopkeep.cli.flags.flag`, so it has its ``SHOPKEEP_*`` variable like every other
command's. Only light modules are imported here: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from typing import Final

from shopkeep.actors.config import LEAST_S
from shopkeep.bench.load.compare import Baseline, BaselineError, read_baseline
from shopkeep.bench.load.mix import SIGNED, MixError, parse_mix
from shopkeep.bench.load.thresholds import Threshold, ThresholdError, parse_threshold
from shopkeep.cli.common import (
    check_token_characters,
    secret_flags,
    secret_of,
    writable_path_problem,
)
from shopkeep.cli.flags import flag, given_as, on_command_line, usage_error
from shopkeep.cli.values import base_url, duration, fraction, number, refuse, whole
from shopkeep.store.private_files import database_name_problem

MAX_CONCURRENCY: Final = 10_000
"""The most workers a run takes: each is a user with coupons made before it starts, and a
connection (``serve`` takes 1,024 at once by default, ``--max-connections``)."""
MAX_RATE: Final = 100_000.0
"""The highest --rate: far past what one shop answers, and what the schedule can keep."""


def report_path_problem(path: str, db: str | None) -> str | None:
    """Why a report may not be written at ``path``, or None: a file it cannot write, the
    run's own ``--db``, or any SQLite database (a shop's, one typo from its report's name:
    a report written over it, the shop was lost and the run passed)."""
    refused = writable_path_problem(path)
    if refused is not None:
        return refused
    if db is not None and os.path.realpath(path) == os.path.realpath(db):
        return "it is the run's --db"
    if os.path.isfile(path):
        from shopkeep.store.database import journal_of  # only for a file there: --help is fast

        if journal_of(path) is not None:
            return "it is a SQLite database, not a report: give the report another name"
    return None


def mix_text(text: str) -> str:
    """A mix as given, once it parses."""
    try:
        parse_mix(text)
    except MixError as error:
        raise refuse(str(error)) from None
    return text


def threshold(text: str) -> Threshold:
    """A threshold, once it parses."""
    try:
        return parse_threshold(text)
    except ThresholdError as error:
        raise refuse(str(error)) from None


def baseline(path: str) -> Baseline:
    """An earlier run's JSON report, read."""
    try:
        return read_baseline(path)
    except BaselineError as error:
        raise refuse(str(error)) from None


def declare_bench_flags(parser: argparse.ArgumentParser) -> None:
    """Add every flag of ``bench`` to ``parser``."""
    target = parser.add_mutually_exclusive_group()
    flag(parser, "--url", group=target, convert=base_url,
         help="the server to drive, e.g. http://127.0.0.1:8080")  # fmt: skip
    flag(
        parser, "--embedded", group=target, is_switch=True, shown_default="off",
        help="drive a fresh shop in this process through the Python API, without HTTP",
    )  # fmt: skip
    flag(
        parser, "--duration", convert=duration(minimum=1.0), metavar="DURATION", default="30s",
        help="how long journeys are started; 10m or more makes a soak",
    )  # fmt: skip
    flag(
        parser, "--concurrency", convert=whole(1, MAX_CONCURRENCY), metavar="N", default="64",
        help="workers running journeys at once (over HTTP, as many connections for them and as "
        "many again for the orders parked for their deadline; each worker "
        f"has two users of its own, made before the run: at most {MAX_CONCURRENCY:,})",
    )  # fmt: skip
    flag(
        parser, "--mix", convert=mix_text, metavar="JOURNEY=WEIGHT,...",
        shown_default="all of them, pay=25, the others 5 or 10",
        help="weights of the journeys; those left out are not run. Journeys: "
        "place, place_async, pay, pay_fail, duplicate_callback, late_callback, "
        "cancel_unpaid, cancel_paid, ship, return, cancel_race",
    )  # fmt: skip
    flag(
        parser, "--seed", convert=whole(), metavar="K", default="1",
        help="seed of every random choice (journeys, shoppers, goods)",
    )  # fmt: skip
    secret_flags(parser, "--admin-token", metavar="TOKEN",
                 help="the server's admin token, needed with --url")  # fmt: skip
    secret_flags(
        parser, "--gateway-secret", metavar="SECRET",
        help="the server's gateway secret, to sign the callbacks of the duplicate_callback "
        "and late_callback journeys; without it duplicate_callback is left out of the default "
        "mix, and late_callback has the sandbox call back late",
    )  # fmt: skip
    flag(
        parser, "--order-timeout", convert=duration(minimum=LEAST_S["order_timeout_s"]),
        metavar="DURATION", default="5s",
        help="with --embedded, the shop's payment deadline; a server's own is read from its "
        "orders (expires_at - confirmed_at): typed with --url, a usage error",
    )  # fmt: skip
    flag(
        parser, "--db", metavar="PATH", shown_default="a temporary file, removed after",
        help="with --embedded, the database file, which must not exist yet: the harness "
        "fills it with users, goods and orders of its own (typed with --url, a usage error)",
    )  # fmt: skip
    flag(
        parser, "--max-error-rate", convert=fraction, metavar="FRACTION", default="0",
        help="errors / attempts (operations answered plus errors) tolerated before the exit "
        "status is 4; expected refusals "
        "(e.g. insufficient_stock on place) are not errors",
    )  # fmt: skip
    flag(
        parser, "--settle", convert=duration(allow_zero=True, minimum=0.01), metavar="DURATION",
        default="30s",
        help="after the run, how long to wait for the shop to be quiet (nothing in flight in "
        "the audit) before its audit is final; not quiet by then, the run fails (status 1)",
    )  # fmt: skip
    flag(
        parser, "--interval", convert=duration(minimum=0.01), metavar="DURATION", default="1s",
        help="width of one point of the time series (10ms at least), and how often memory "
        "is sampled",
    )  # fmt: skip
    flag(
        parser, "--rate", convert=number(minimum=0, inclusive=False, maximum=MAX_RATE),
        metavar="JOURNEYS_PER_S",
        shown_default="no pacing, each worker starts its next journey as soon as its last "
        "one ended",
        help="start this many journeys a second on an open schedule (as for a soak at a "
        "fraction of capacity): latency counts from each journey's due time, and a start "
        "that cannot be made on time (every worker busy, or the schedule behind by more "
        "than 0.1s) is dropped and counted",
    )  # fmt: skip
    flag(
        parser, "--warmup", convert=duration(allow_zero=True, minimum=0.01), metavar="DURATION",
        default="0s",
        help="run journeys this long before --duration, and leave them out of the figures",
    )  # fmt: skip
    flag(
        parser, "--ramp", convert=duration(allow_zero=True, minimum=0.01), metavar="DURATION",
        default="0s",
        help="from the start (the warm-up's), raise the concurrency, or the --rate, linearly "
        "to its target over this time",
    )  # fmt: skip
    flag(
        parser, "--threshold", convert=threshold, metavar="FIGURE<VALUE", repeatable=True,
        shown_default="none",
        help="a figure the run must meet, else the exit status is 3; repeatable. "
        "FIGURE is OPERATION.STATISTIC (place.p99) or a STATISTIC of the whole run; "
        "STATISTIC is a latency pN, mean or max (VALUE in ms or s), errors or dropped "
        "(VALUE with % for a rate, bare for a count), count or per_s; comparators < <= > >=. "
        "E.g. --threshold 'place.p99<50ms' --threshold 'errors<0.1%'",
    )  # fmt: skip
    flag(
        parser, "--compare", convert=baseline, metavar="PREVIOUS_JSON",
        help="an earlier run's --json report: the text and HTML reports show each figure's "
        "change against it",
    )  # fmt: skip
    flag(parser, "--json", metavar="PATH", help="write the figures here as JSON")
    flag(parser, "--html", metavar="PATH",
         help="write a self-contained HTML report with charts here")  # fmt: skip


def check_bench_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors that span flags (exits with status 2 through ``parser.error``); also
    settles the mix into ``args.weights``."""
    if args.url and args.embedded:
        # argparse keeps the two apart on the command line only; one given there wins over
        # the other's variable
        url_typed = given_as(args, "url") == "--url"
        if url_typed == (given_as(args, "embedded") == "--embedded"):
            usage_error(parser, args, "embedded", f"not allowed with {given_as(args, 'url')}")
        if url_typed:
            args.embedded = False
        else:
            args.url = None
    if not args.embedded and not args.url:
        parser.error("one of --url or --embedded is required (or SHOPKEEP_URL, SHOPKEEP_EMBEDDED)")
    if args.url:
        for dest in ("db", "order_timeout"):
            # typed beside --url, a flag that would mean nothing is refused; its variable,
            # exported for serve (SHOPKEEP_DB, SHOPKEEP_ORDER_TIMEOUT), is left alone
            if on_command_line(args, dest):
                usage_error(parser, args, dest, "only with --embedded: a server has its own")
    if args.embedded and args.db is not None:
        misnamed = database_name_problem(args.db)
        if misnamed is not None:
            usage_error(parser, args, "db", f"cannot use database path {args.db}: {misnamed}")
        if os.path.lexists(args.db):
            # never a shop's own database: SHOPKEEP_DB, exported for serve, names one
            usage_error(parser, args, "db", f"{args.db} exists; give the bench a new file")
        refused = writable_path_problem(args.db)
        if refused is not None:
            usage_error(parser, args, "db", f"cannot use database path {args.db}: {refused}")
    for report in ("json", "html"):  # checked now: a run is not lost for a report's path
        path = getattr(args, report)
        refused = None if path is None else report_path_problem(path, args.db)
        if refused is not None:
            usage_error(parser, args, report, f"cannot write {path}: {refused}")
    if args.json and args.html and os.path.realpath(args.json) == os.path.realpath(args.html):
        usage_error(parser, args, "html", f"{args.html} is the --json report's file too")
    args.admin_token = secret_of(parser, args, "admin_token")
    args.gateway_secret = secret_of(parser, args, "gateway_secret")
    if args.url and not args.admin_token:
        parser.error("--url needs --admin-token or --admin-token-file")
    # a CR or LF (a token file edited on Windows) no request can carry: refused here, not
    # by aiohttp's header check in a traceback
    check_token_characters(parser, args, "admin_token", args.admin_token)
    weights = parse_mix(args.mix)
    args.left_out = ()
    if args.url and not args.gateway_secret:
        signed = sorted(SIGNED & set(weights))
        if args.mix and signed:
            parser.error(f"journeys {', '.join(signed)} need --gateway-secret")
        weights = {name: weight for name, weight in weights.items() if name not in SIGNED}
        args.left_out = tuple(signed)  # of the default mix: the setup's line says so
    args.weights = weights
    if args.rate is None and any(t.statistic == "dropped" for t in args.threshold or ()):
        # a closed loop drops nothing: the threshold would fail as "measured nothing"
        usage_error(parser, args, "threshold", "dropped counts paced starts: it needs --rate")
