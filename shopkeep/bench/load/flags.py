"""The flags of ``python main.py bench``, and the usage errors argparse cannot see.

Declared here rather than in ``main.py`` (which keeps one ``add_<name>_parser`` per command)
because they are many; ``env`` is main.py's lookup of a ``SHOPKEEP_*`` variable, so a flag
falls back to the environment the same way as every other command's. Only light modules are
imported here: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from shopkeep.bench.load.mix import SIGNED, MixError, parse_mix

EnvLookup = Callable[[str, str | None], str | None]


def declare_bench_flags(parser: argparse.ArgumentParser, env: EnvLookup) -> None:
    """Add every flag of ``bench`` to ``parser``."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--url",
        default=env("SHOPKEEP_BENCH_URL", None),
        help="the server to drive, e.g. http://127.0.0.1:8080 (env SHOPKEEP_BENCH_URL)",
    )
    target.add_argument(
        "--embedded",
        action="store_true",
        help="drive a fresh shop in this process through the Python API, without HTTP",
    )
    parser.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="how long journeys are started; 600 or more makes a soak (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=int,
        default=64,
        help="workers running journeys at once, and the most connections open "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--mix",
        metavar="JOURNEY=WEIGHT,...",
        default=None,
        help="weights of the journeys; those left out are not run. Journeys: "
        "place, place_async, pay, pay_fail, duplicate_callback, late_callback, "
        "cancel_unpaid, cancel_paid, ship, return, cancel_race (default: all of them, "
        "pay=25, the others 5 or 10)",
    )
    parser.add_argument(
        "--seed",
        metavar="K",
        type=int,
        default=1,
        help="seed of every random choice (journeys, shoppers, goods; default: %(default)s)",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        default=env("SHOPKEEP_ADMIN_TOKEN", None),
        help="the server's admin token, needed with --url (env SHOPKEEP_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--gateway-secret",
        metavar="SECRET",
        default=env("SHOPKEEP_GATEWAY_SECRET", None),
        help=(
            "the server's gateway secret, to sign the callbacks of the duplicate_callback and "
            "late_callback journeys (env SHOPKEEP_GATEWAY_SECRET); without it they are left "
            "out of the default mix"
        ),
    )
    parser.add_argument(
        "--order-timeout",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help=(
            "with --embedded, the shop's payment deadline (default: %(default)s); a server's "
            "own is read from its orders (expires_at - confirmed_at)"
        ),
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="with --embedded, the database file (default: a temporary one, removed after)",
    )
    parser.add_argument(
        "--max-error-rate",
        metavar="FRACTION",
        type=float,
        default=0.0,
        help=(
            "errors / operations tolerated before the exit status is 1 (default: "
            "%(default)s); expected refusals (e.g. insufficient_stock on place) are not errors"
        ),
    )
    parser.add_argument(
        "--settle",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help=(
            "after the run, how long to wait for the shop to be quiet (nothing in flight in "
            "the audit) before its audit is final (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="width of one point of the time series, and how often memory is sampled "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        metavar="JOURNEYS_PER_S",
        type=float,
        default=None,
        help="start at most this many journeys a second, paced across the workers (an open "
        "schedule, as for a soak at a fraction of capacity); default: no pacing, each worker "
        "starts its next journey as soon as its last one ended",
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures here as JSON")
    parser.add_argument(
        "--html", metavar="PATH", help="write a self-contained HTML report with charts here"
    )


def check_bench_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see (exits with status 2 through ``parser.error``); also
    settles the mix into ``args.weights``."""
    if not args.embedded and not args.url:
        parser.error("one of --url or --embedded is required")
    if args.url and not args.url.startswith(("http://", "https://")):
        parser.error(f"argument --url: {args.url!r} is not an http(s) URL")
    if args.url and not args.admin_token:
        parser.error("--url needs --admin-token (or SHOPKEEP_ADMIN_TOKEN)")
    for flag, value in (
        ("--duration", args.duration),
        ("--order-timeout", args.order_timeout),
        ("--interval", args.interval),
    ):
        if not (math.isfinite(value) and value > 0):
            parser.error(f"argument {flag}: {value} is not a positive number")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        parser.error(f"argument --rate: {args.rate} is not a positive number")
    if not (math.isfinite(args.settle) and args.settle >= 0):
        parser.error(f"argument --settle: {args.settle} is not a number of seconds")
    if args.concurrency < 1:
        parser.error(f"argument --concurrency: {args.concurrency} is less than 1")
    if not 0 <= args.max_error_rate <= 1:
        parser.error(f"argument --max-error-rate: {args.max_error_rate} is not in [0, 1]")
    try:
        weights = parse_mix(args.mix)
    except MixError as error:
        parser.error(f"argument --mix: {error}")
    if args.url and not args.gateway_secret:
        signed = sorted(SIGNED & set(weights))
        if args.mix and signed:
            parser.error(f"journeys {', '.join(signed)} need --gateway-secret")
        weights = {name: weight for name, weight in weights.items() if name not in SIGNED}
    args.weights = weights
