"""``shopkeep bench``: the load-testing harness (SPEC 9); its flags are in
:mod:`shopkeep.bench.load.flags`."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from shopkeep.cli.common import add_log_flags, configure_logs


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``bench`` and its flags."""
    from shopkeep.bench.load.flags import check_bench_flags, declare_bench_flags

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="drive a load mix against a server (or an embedded shop) and audit it",
        description=(
            "The load-testing harness (SPEC section 9). Creates its own users, goods and "
            "coupons, then runs a mix of customer journeys (placements sync and async, "
            "payments through the sandbox gateway, duplicate and late signed callbacks, "
            "cancels of unpaid and paid orders, ship, deliver, returns) with live progress; "
            "prints per operation its count, throughput, latency p50/p90/p99/max and errors "
            "by code, the harness's own CPU use and the shop's memory, then waits for the "
            "shop to be quiet and runs the audit. Exit status 0 when the audit is ok and the "
            "error rate is at most --max-error-rate, 1 otherwise, 2 for a usage error. "
            "Against a server, it must run with --sandbox; give it a short --order-timeout "
            "(a few seconds) for late callbacks to happen during the run."
        ),
    )
    declare_bench_flags(parser)
    add_log_flags(parser, "warning")
    parser.set_defaults(run=run_bench, check=functools.partial(check_bench_flags, parser))
    return parser


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench; 0 when the audit is ok and errors stay under the rate, else 1."""
    from shopkeep.bench.load.command import execute
    from shopkeep.bench.load.run import BenchOptions

    # the embedded shop logs like a server; the bench's own output is its progress and report
    configure_logs(args)
    options = BenchOptions(
        duration_s=args.duration,
        concurrency=args.concurrency,
        mix=args.weights,
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
    )
    return execute(options, args.json, args.html)
