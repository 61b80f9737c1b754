"""``shopkeep bench``: the load-testing harness (SPEC 9); its flags are in
:mod:`shopkeep.bench.load.flags`."""

from __future__ import annotations

import argparse
import functools
import textwrap
from typing import Any

from shopkeep.cli.common import add_log_flags

HELP_WIDTH = 78
EXIT_STATUSES = """exit status (when several apply, the first in this list wins):
  1  the audit failed (an invariant of the shop is broken), or the shop was not
     quiet within --settle (something still in flight)
  4  the error rate is above --max-error-rate (or no operation was answered, or
     the audit itself went unanswered)
  3  a --threshold failed
  6  the run was interrupted (Ctrl-C or SIGTERM): its report says what ran
  5  the run passed, but its --json or --html report could not be written
  0  none of the above: the run passed
  2  a usage error (a bad flag or variable) or the setup failed (no run)
  130  a second Ctrl-C (or SIGTERM) 0.5 s or more after the first and before the
       report, or one during the setup (no report)"""


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``bench`` and its flags."""
    from shopkeep.bench.load.flags import check_bench_flags, declare_bench_flags

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="drive a load mix against a server (or an embedded shop) and audit it",
        # raw text, so that the exit statuses stay one a line: the description is wrapped here
        description=textwrap.fill(
            "The load-testing harness (SPEC section 9). Creates its own users, goods and "
            "coupons, then runs a mix of customer journeys (placements sync and async, "
            "payments through the sandbox gateway, duplicate and late signed callbacks, "
            "cancels of unpaid and paid orders, ship, deliver, returns) with live progress; "
            "prints per operation its count, throughput, latency p50/p90/p99/max and errors "
            "by code, the harness's own CPU use and the shop's memory, then waits for the "
            "shop to be quiet and runs the audit, and checks the --threshold figures. "
            "Against a server, it must run with --sandbox; give it a short --order-timeout "
            "(a few seconds) for late callbacks to happen during the run. Ctrl-C (or SIGTERM) "
            "ends the run early and still prints the summary and writes the reports; a second "
            "one, or one during the setup, quits at once (status 130).",
            width=HELP_WIDTH,
        ),
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    declare_bench_flags(parser)
    add_log_flags(parser, "warning")
    parser.set_defaults(run=run_bench, check=functools.partial(check_bench_flags, parser))
    return parser


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench; its exit status (see :data:`EXIT_STATUSES`)."""
    from shopkeep.bench.load.command import execute
    from shopkeep.bench.load.run import BenchOptions

    options = BenchOptions(
        duration_s=args.duration,
        concurrency=args.concurrency,
        mix=args.weights,
        left_out=args.left_out,
        seed=args.seed,
        url=None if args.embedded else args.url,
        admin_token=args.admin_token,
        gateway_secret=args.gateway_secret,
        embedded_db=args.db,
        order_timeout_s=args.order_timeout,
        max_error_rate=args.max_error_rate,
        settle_s=args.settle,
        interval_s=args.interval,
        rate_per_s=args.rate,
        warmup_s=args.warmup,
        ramp_s=args.ramp,
        thresholds=tuple(args.threshold),
    )
    return execute(options, args.json, args.html, args.compare)
