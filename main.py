"""The shopkeep command line: ``python main.py serve | demo | bench | audit``.

Each subcommand is a pair of functions: ``add_<name>_parser`` declares its flags (and may set a
``check`` for usage errors argparse cannot see) and ``run_<name>`` carries it out and returns the
exit status; ``build_parser`` lists the subcommands. Every flag falls back to a ``SHOPKEEP_*``
environment variable, so a container can be configured without a command line.

Mistakes of the operator end with one line on stderr and exit status 2, never a traceback: bad
flags (argparse's usage error, cut to its one line), an unusable database path (checked before
anything starts), a store that refuses to open (``StoreError``), an address that cannot be
listened on.

Heavy modules (the runtime, the store, aiohttp) are imported inside the ``run_*`` functions, so
``--help`` and the early checks stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from shopkeep.payments.flags import add_provider_flags, check_provider_flags, provider_settings

PROG = "shopkeep"
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
WRITER_MODES = ("process", "thread")
EXIT_USAGE = 2
MIN_SECRET_LENGTH = 16
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the usage itself is in --help)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _env(name: str, default: str | None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _add_db(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=_env("SHOPKEEP_DB", "shopkeep.db"),
        help=f"SQLite database file, {what} (env SHOPKEEP_DB; default: %(default)s)",
    )


# ---------------------------------------------------------------- serve


def add_serve_parser(subparsers: Any) -> None:
    """Declare ``serve`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the shopkeep HTTP server (SPEC section 7) on a SQLite database file.",
    )
    _add_db(parser, "created if missing")
    parser.add_argument(
        "--host",
        default=_env("SHOPKEEP_HOST", "127.0.0.1"),
        help="address to listen on (env SHOPKEEP_HOST; default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env("SHOPKEEP_PORT", "8080"),
        help="TCP port to listen on, 0 for any free one (env SHOPKEEP_PORT; default: %(default)s)",
    )
    parser.add_argument(
        "--synchronous",
        type=str.upper,
        choices=SYNCHRONOUS_MODES,
        default=_env("SHOPKEEP_SYNCHRONOUS", "FULL"),
        help=(
            "SQLite synchronous mode: FULL survives a power cut, NORMAL may lose the last "
            "commits on one but not corrupt the file (env SHOPKEEP_SYNCHRONOUS; "
            "default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--writer",
        type=str.lower,
        choices=WRITER_MODES,
        default=_env("SHOPKEEP_WRITER", "process"),
        help=(
            "where commits run: a process of their own, which keeps SQLite's work off the "
            "server's GIL (faster, and shorter waits under load), or a thread of the server's "
            "process (see docs/performance.md; env SHOPKEEP_WRITER; default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--order-timeout",
        metavar="SECONDS",
        type=float,
        default=_env("SHOPKEEP_ORDER_TIMEOUT", "1800"),
        help=(
            "an order still unpaid this long after it was confirmed is canceled, its stock, "
            "coupon and wallet amount given back (env SHOPKEEP_ORDER_TIMEOUT; "
            "default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--max-unpaid-orders",
        metavar="N",
        type=int,
        default=_env("SHOPKEEP_MAX_UNPAID_ORDERS", "10"),
        help=(
            "unpaid orders one user may hold at once; one more is refused "
            "too_many_unpaid_orders (env SHOPKEEP_MAX_UNPAID_ORDERS; default: %(default)s)"
        ),
    )
    _add_connection_flags(parser)
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        default=_env("SHOPKEEP_ADMIN_TOKEN", None),
        help=(
            f"the bearer token of the admin, printable ASCII, at least {MIN_SECRET_LENGTH} "
            "characters (env SHOPKEEP_ADMIN_TOKEN); without one, a token is generated at first "
            "start, printed that once, and only its hash kept in the database. On the command "
            "line it is visible to every local user (ps): prefer the environment variable or "
            "--admin-token-file"
        ),
    )
    parser.add_argument(
        "--admin-token-file",
        metavar="PATH",
        default=_env("SHOPKEEP_ADMIN_TOKEN_FILE", None),
        help=(
            "read the admin token from this file instead, surrounding whitespace ignored "
            "(env SHOPKEEP_ADMIN_TOKEN_FILE)"
        ),
    )
    parser.add_argument(
        "--gateway-secret",
        metavar="SECRET",
        default=_env("SHOPKEEP_GATEWAY_SECRET", None),
        help=(
            "the secret payment callbacks are signed with (HMAC-SHA256), at least "
            f"{MIN_SECRET_LENGTH} characters (env SHOPKEEP_GATEWAY_SECRET); without one, a "
            "new secret is made at every start and never stored, which only the sandbox "
            "gateway can sign with. On the command line it is visible to every local user "
            "(ps): prefer the environment variable or --gateway-secret-file"
        ),
    )
    parser.add_argument(
        "--gateway-secret-file",
        metavar="PATH",
        default=_env("SHOPKEEP_GATEWAY_SECRET_FILE", None),
        help=(
            "read the gateway secret from this file instead, surrounding whitespace ignored "
            "(env SHOPKEEP_GATEWAY_SECRET_FILE)"
        ),
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        default=None,
        help=(
            "enable the sandbox payment gateway and its route POST "
            "/sandbox/payments/{id}/complete, which lets anyone mark a payment paid: for "
            "trying and load-testing only, never in production (env SHOPKEEP_SANDBOX=1; "
            "default: off)"
        ),
    )
    parser.add_argument(
        "--sandbox-callback-url",
        metavar="URL",
        default=_env("SHOPKEEP_SANDBOX_CALLBACK_URL", None),
        help=(
            "where the sandbox gateway POSTs its signed payment callbacks (env "
            "SHOPKEEP_SANDBOX_CALLBACK_URL; default: this server's own "
            "/v1/payments/callback)"
        ),
    )
    parser.add_argument(
        "--rate-limit",
        metavar="PER_S",
        type=float,
        default=_env("SHOPKEEP_RATE_LIMIT", "200"),
        help=(
            "requests a second one user's token may make, in bursts of twice that; more are "
            "refused 429 rate_limited (the admin's token is not limited; env "
            "SHOPKEEP_RATE_LIMIT; default: %(default)s, 0 for no limit)"
        ),
    )
    add_provider_flags(parser)
    parser.set_defaults(run=run_serve, check=functools.partial(check_serve, parser))


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """``serve``'s bounds on connections (SPEC 7; shopkeep.http.connection_limits)."""
    from shopkeep.http.connection_limits import KEEPALIVE_S, MAX_CONNECTIONS, READ_S

    parser.add_argument(
        "--keepalive-timeout",
        metavar="SECONDS",
        type=float,
        default=_env("SHOPKEEP_KEEPALIVE_TIMEOUT", f"{KEEPALIVE_S:g}"),
        help=(
            "an idle keep-alive connection is closed after this long (env "
            "SHOPKEEP_KEEPALIVE_TIMEOUT; default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--read-timeout",
        metavar="SECONDS",
        type=float,
        default=_env("SHOPKEEP_READ_TIMEOUT", f"{READ_S:g}"),
        help=(
            "a request's line, headers and body must all arrive within this long of its "
            "first byte (and a new connection's first request within this long of the "
            "connection), else the connection is closed unanswered: a slow or half-sent "
            "request cannot hold a connection (env SHOPKEEP_READ_TIMEOUT; default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        default=_env("SHOPKEEP_MAX_CONNECTIONS", str(MAX_CONNECTIONS)),
        help=(
            "connections open at once; one more is closed as soon as it is accepted, the "
            "open ones are served as before. Keep it below the process's limit on open "
            "files (ulimit -n) (env SHOPKEEP_MAX_CONNECTIONS; default: %(default)s)"
        ),
    )


def check_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see; exits with status 2 through ``parser.error``."""
    # argparse checks `choices` on the command line only, not on a default from the environment
    # (which it does pass through `type`, so it is upper case already).
    if args.synchronous not in SYNCHRONOUS_MODES:
        parser.error(
            f"SHOPKEEP_SYNCHRONOUS: invalid choice {args.synchronous!r} "
            f"(choose from {', '.join(SYNCHRONOUS_MODES)})"
        )
    if args.writer not in WRITER_MODES:
        choices = ", ".join(WRITER_MODES)
        parser.error(f"SHOPKEEP_WRITER: invalid choice {args.writer!r} (choose from {choices})")
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: {args.port} is not a TCP port (0-65535)")
    if not (math.isfinite(args.order_timeout) and args.order_timeout > 0):
        parser.error(f"argument --order-timeout: {args.order_timeout} is not a positive number")
    if not (math.isfinite(args.rate_limit) and args.rate_limit >= 0):
        parser.error(f"argument --rate-limit: {args.rate_limit} is not a number of requests")
    if args.max_unpaid_orders < 1:
        parser.error(f"argument --max-unpaid-orders: {args.max_unpaid_orders} is less than 1")
    for flag, seconds in (
        ("--keepalive-timeout", args.keepalive_timeout),
        ("--read-timeout", args.read_timeout),
    ):
        if not (math.isfinite(seconds) and seconds > 0):
            parser.error(f"argument {flag}: {seconds} is not a positive number")
    if args.max_connections < 1:
        parser.error(f"argument --max-connections: {args.max_connections} is less than 1")
    args.admin_token = secret_of(parser, "--admin-token", args.admin_token, args.admin_token_file)
    args.gateway_secret = secret_of(
        parser, "--gateway-secret", args.gateway_secret, args.gateway_secret_file
    )
    check_secret(parser, "--admin-token", args.admin_token)
    check_token_characters(parser, "--admin-token", args.admin_token)
    check_secret(parser, "--gateway-secret", args.gateway_secret)
    if args.sandbox is None:
        word = (os.environ.get("SHOPKEEP_SANDBOX") or "").strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            parser.error(f"SHOPKEEP_SANDBOX: {word!r} is neither 1 nor 0")
        args.sandbox = word in TRUE_WORDS
    url = args.sandbox_callback_url
    if url is not None and not url.startswith(("http://", "https://")):
        parser.error(f"argument --sandbox-callback-url: {url!r} is not an http(s) URL")
    check_provider_flags(parser, args)


def check_secret(parser: argparse.ArgumentParser, flag: str, value: str | None) -> None:
    """Refuse a configured token or secret too short to resist guessing."""
    if value is not None and len(value) < MIN_SECRET_LENGTH:
        parser.error(f"argument {flag}: shorter than {MIN_SECRET_LENGTH} characters")


def check_token_characters(parser: argparse.ArgumentParser, flag: str, value: str | None) -> None:
    """Refuse a bearer token no request could carry: the server takes printable ASCII only."""
    if value is not None and not (value.isascii() and value.isprintable()):
        parser.error(f"argument {flag}: not printable ASCII")


def secret_of(
    parser: argparse.ArgumentParser, flag: str, value: str | None, path: str | None
) -> str | None:
    """The secret given as ``flag``, or read from the file ``path`` given as ``flag``-file
    (not both): a file keeps it out of ``ps``."""
    if path is None:
        return value
    if value is not None:
        parser.error(f"argument {flag}-file: give {flag} or {flag}-file, not both")
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        parser.error(f"argument {flag}-file: cannot read {path}: {reason}")
    if not secret:
        parser.error(f"argument {flag}-file: {path} is empty")
    return secret


def database_path_problem(path: str) -> str | None:
    """Why the database file at ``path`` cannot be used, or ``None`` when it looks usable.

    SQLite in WAL mode creates ``-wal`` and ``-shm`` files beside the database, so the folder must
    be writable even when the file already exists.
    """
    db = Path(path)
    if db.is_dir():
        return "it is a directory"
    folder = db.parent
    if not folder.exists():
        return f"directory {str(folder)!r} does not exist"
    if not folder.is_dir():
        return f"{str(folder)!r} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"directory {str(folder)!r} is not writable"
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        return "the file is not readable and writable"
    return None


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; return the exit status."""
    problem = database_path_problem(args.db)
    if problem is not None:
        return _fail(f"cannot use database path {args.db}: {problem}")

    from shopkeep.http.connection_limits import ConnectionLimits
    from shopkeep.http.server import ServeOptions, StartupError, fastest_loop_factory, serve
    from shopkeep.logs import configure_logging
    from shopkeep.store.errors import StoreError

    options = ServeOptions(
        db=args.db,
        host=args.host,
        port=args.port,
        synchronous=args.synchronous,
        writer=args.writer,
        order_timeout_s=args.order_timeout,
        max_unpaid_orders=args.max_unpaid_orders,
        admin_token=args.admin_token,
        gateway_secret=args.gateway_secret,
        sandbox=args.sandbox,
        sandbox_callback_url=args.sandbox_callback_url,
        payments=provider_settings(args),
        refund_query_after_s=args.refund_query_after,
        connections=ConnectionLimits(
            keepalive_s=args.keepalive_timeout,
            read_s=args.read_timeout,
            max_connections=args.max_connections,
        ),
        rate_limit_per_s=args.rate_limit,
    )
    configure_logging()
    try:
        with asyncio.Runner(loop_factory=fastest_loop_factory()) as runner:
            runner.run(serve(options))
    except (StoreError, StartupError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
        return 130
    return 0


# ---------------------------------------------------------------- demo


def add_demo_parser(subparsers: Any) -> None:
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
    _add_db(parser, "created if missing; must hold no shop data yet")
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        default=_env("SHOPKEEP_ADMIN_TOKEN", None),
        help=(
            "when set (env SHOPKEEP_ADMIN_TOKEN), no admin token is generated: serve will be "
            "given this one; otherwise one is generated and printed, as serve's first start does"
        ),
    )
    parser.set_defaults(
        run=run_demo, check=lambda args: check_secret(parser, "--admin-token", args.admin_token)
    )


def run_demo(args: argparse.Namespace) -> int:
    """Fill the database and print what is in it; return the exit status."""
    problem = database_path_problem(args.db)
    if problem is not None:
        return _fail(f"cannot use database path {args.db}: {problem}")

    from shopkeep.demo import DemoRefused, fill
    from shopkeep.logs import configure_logging
    from shopkeep.store.errors import StoreError

    configure_logging(logging.WARNING)
    try:
        text = asyncio.run(fill(args.db, admin_token=args.admin_token))
    except (StoreError, DemoRefused) as error:
        return _fail(str(error))
    print(text)
    return 0


# ---------------------------------------------------------------- bench


def add_bench_parser(subparsers: Any) -> None:
    """Declare ``bench``; its flags are in :mod:`shopkeep.bench.load.flags`."""
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
    declare_bench_flags(parser, _env)
    parser.set_defaults(run=run_bench, check=functools.partial(check_bench_flags, parser))


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench; 0 when the audit is ok and errors stay under the rate, else 1."""
    from shopkeep.bench.load.command import execute
    from shopkeep.bench.load.run import BenchOptions
    from shopkeep.logs import configure_logging

    # the embedded shop logs like a server; the bench's own output is its progress and report
    configure_logging(logging.WARNING)
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


# ---------------------------------------------------------------- audit


def add_audit_parser(subparsers: Any) -> None:
    """Declare ``audit`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="check the invariants of a database offline",
        description=(
            "Check the invariants (stock, wallet, points, coupons, money, states, refunds) of a "
            "database file, opened read-only. Prints each check; exit status 0 when all hold, "
            "1 when one is violated."
        ),
    )
    _add_db(parser, "opened read-only")
    parser.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    """Audit the file and print each check; 0 when every check holds, else 1."""
    import sqlite3

    from shopkeep.actors.audit import audit_file

    try:
        report = audit_file(args.db)
    except FileNotFoundError:
        return _fail(f"cannot audit {args.db}: no such database file")
    except sqlite3.Error as error:
        return _fail(f"cannot audit {args.db}: {error}")
    width = max(len(check.name) for check in report.checks)
    for check in report.checks:
        verdict = "ok" if check.ok else "FAILED"
        print(f"{verdict:<6}  {check.name:<{width}}  {check.detail}".rstrip())
    print(f"audit: {'ok' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = OneLineParser(
        prog=PROG,
        description="shopkeep: the order and payment engine of a small online shop.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve_parser(subparsers)
    add_demo_parser(subparsers)
    add_bench_parser(subparsers)
    add_audit_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
    if check is not None:
        check(args)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
