"""``shopkeep serve``: the HTTP server (SPEC 7 and 8) on a SQLite database file."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sqlite3
from typing import TYPE_CHECKING, Any, Final

from shopkeep.actors.config import LEAST_S, WHOLE_BOUNDS, ShopConfig
from shopkeep.cli.common import (
    MIN_SECRET_LENGTH,
    add_db_flag,
    add_log_flags,
    check_admin_token,
    check_secret,
    secret_flags,
    secret_of,
    writable_path_problem,
)
from shopkeep.cli.flags import (
    EXIT_INTERRUPTED,
    SWITCH_VARIABLE,
    argument_named,
    fail,
    fail_about,
    flag,
    given_as,
)
from shopkeep.cli.provider_flags import add_provider_flags, check_provider_flags, provider_settings
from shopkeep.cli.values import (
    DURATIONS_HELP,
    choice,
    duration,
    host,
    http_url,
    metavar_of,
    number,
    port,
    refuse,
    whole,
)
from shopkeep.http.connection_limits import KEEPALIVE_S, MAX_CONNECTIONS, READ_S
from shopkeep.http.rate_limit import KEYS_PER_DAY

if TYPE_CHECKING:
    from shopkeep.http.server import ServeOptions

SYNCHRONOUS_MODES: Final = ("FULL", "NORMAL")
WRITER_MODES: Final = ("process", "thread")
LEAST_RATE_LIMIT: Final = 0.001
"""The least ``--rate-limit`` but 0 (none): one request in 1,000 s, whose 429 says so in
``Retry-After``; a smaller one, 1e-300, would say it in 300 digits."""


def rate_limit(text: str) -> float:
    """``--rate-limit``: 0 (no limit), or at least :data:`LEAST_RATE_LIMIT`."""
    value = number()(text)
    if 0 < value < LEAST_RATE_LIMIT:
        raise refuse(f"{text!r} is below {LEAST_RATE_LIMIT:g} (one request in 1,000 s); 0 "
                     "for no limit")
    return value


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``serve`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the HTTP server",
        description=(
            "Run the shopkeep HTTP server (SPEC section 7) on a SQLite database file. Every "
            f"flag has its environment variable; {DURATIONS_HELP}."
        ),
    )
    add_db_flag(parser, "created if missing")
    flag(parser, "--host", convert=host, default="127.0.0.1", help="address to listen on")
    flag(parser, "--port", convert=port, default="8080",
         help="TCP port to listen on, 0 for any free one")  # fmt: skip
    flag(
        parser, "--synchronous", convert=choice(*SYNCHRONOUS_MODES, fold=str.upper),
        metavar=metavar_of(*SYNCHRONOUS_MODES), default="FULL",
        help="SQLite synchronous mode: FULL survives a power cut, NORMAL may lose the last "
        "commits on one but not corrupt the file",
    )  # fmt: skip
    flag(
        parser, "--writer", convert=choice(*WRITER_MODES), metavar=metavar_of(*WRITER_MODES),
        default="process",
        help="where commits run: a process of their own, which keeps SQLite's work off the "
        "server's GIL (faster, and shorter waits under load), or a thread of the server's "
        "process (see docs/performance.md)",
    )  # fmt: skip
    add_shop_flags(parser)
    add_connection_flags(parser)
    add_credential_flags(parser)
    flag(
        parser, "--sandbox", is_switch=True, shown_default="off",
        help="enable the sandbox payment gateway and its route POST "
        "/sandbox/payments/{id}/complete, which lets anyone mark a payment paid: for "
        f"trying and load-testing only, never in production ({SWITCH_VARIABLE})",
    )  # fmt: skip
    flag(
        parser, "--sandbox-callback-url", convert=http_url, metavar="URL",
        shown_default="this server's own /v1/payments/callback",
        help="where the sandbox gateway POSTs its signed payment callbacks",
    )  # fmt: skip
    flag(
        parser, "--rate-limit", convert=rate_limit, metavar="PER_S", default="200",
        shown_default="200, 0 for no limit",
        help="requests a second one user's token may make, in bursts of twice that; more are "
        "refused 429 rate_limited (the admin's token is not limited)",
    )  # fmt: skip
    flag(
        parser, "--keys-per-day", convert=whole(0), metavar="KEYS", default=str(KEYS_PER_DAY),
        shown_default=f"{KEYS_PER_DAY:,}, 0 for no limit",
        help="Idempotency-Keys one user's token may have kept in a day (each is kept a day with "
        "its answer, about 1 KB), beyond a day's worth at once; past it a keyed request is "
        "refused 429 rate_limited. Counted in memory: a restart starts every token afresh",
    )  # fmt: skip
    flag(
        parser, "--no-admin-ui", is_switch=True, shown_default="off: the console is served",
        help="do not serve the admin console at /admin (then /admin answers 404); the console "
        f"signs in with the admin token ({SWITCH_VARIABLE})",
    )  # fmt: skip
    add_provider_flags(parser)
    add_log_flags(parser, "info")
    parser.set_defaults(run=run_serve, check=functools.partial(check_serve, parser))
    return parser


def add_shop_flags(parser: argparse.ArgumentParser) -> None:
    """The shop's business settings (:class:`shopkeep.actors.config.ShopConfig`)."""
    defaults = ShopConfig()
    flag(
        parser, "--order-timeout", convert=duration(minimum=LEAST_S["order_timeout_s"]),
        metavar="DURATION", default=f"{defaults.order_timeout_s:g}s", shown_default="30m",
        help="an order still unpaid this long after it was confirmed is canceled, its stock, "
        "coupon and wallet amount given back",
    )  # fmt: skip
    flag(
        parser, "--max-unpaid-orders", convert=whole(*WHOLE_BOUNDS["max_unpaid_orders"]),
        metavar="N", default=str(defaults.max_unpaid_orders),
        help="unpaid orders one user may hold at once; one more is refused "
        "too_many_unpaid_orders (an order its coupon and wallet pay in full is never unpaid)",
    )  # fmt: skip
    flag(
        parser, "--shipping-fee", convert=whole(*WHOLE_BOUNDS["shipping_fee"]),
        metavar="MINOR_UNITS", default=str(defaults.shipping_fee),
        help="the flat shipping fee of an order, in minor units of --currency: the default is "
        "10.00 in a currency of cents, but 1,000 of a currency without (JPY: set your own)",
    )  # fmt: skip
    flag(
        parser, "--free-shipping-threshold",
        convert=whole(*WHOLE_BOUNDS["free_shipping_threshold"]), metavar="MINOR_UNITS",
        default=str(defaults.free_shipping_threshold),
        help="an order whose goods amount reaches this ships free (minor units of --currency, as "
        "--shipping-fee; 0: always free)",
    )  # fmt: skip
    flag(
        parser, "--points-rate", convert=whole(*WHOLE_BOUNDS["points_per_unit"]), metavar="POINTS",
        default=str(defaults.points_per_unit),
        help="points a user earns per whole currency unit paid (a yuan or a dollar: 100 minor "
        "units; a yen: one), from the gateway or the wallet; 0: no points",
    )  # fmt: skip


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """``serve``'s bounds on connections (SPEC 7; shopkeep.http.connection_limits)."""
    flag(
        parser, "--keepalive-timeout", convert=duration(minimum=0.01), metavar="DURATION",
        default=f"{KEEPALIVE_S:g}s",
        help="an idle keep-alive connection is closed after this long",
    )  # fmt: skip
    flag(
        parser, "--read-timeout", convert=duration(minimum=0.01), metavar="DURATION",
        default=f"{READ_S:g}s",
        help="a request's line, headers and body must all arrive within this long of its "
        "first byte (and a new connection's first request within this long of the "
        "connection), else the connection is closed unanswered: a slow or half-sent "
        "request cannot hold a connection; nor can a client that takes no answer for this "
        "long (its connection is aborted)",
    )  # fmt: skip
    flag(
        parser, "--max-connections", convert=whole(1), metavar="N", default=str(MAX_CONNECTIONS),
        help="connections open at once; one more is closed as soon as it is accepted, the "
        "open ones are served as before. The server raises its limit on open files "
        "(ulimit -n) to fit, as far as the system's hard limit lets it, and warns at start "
        "when it cannot",
    )  # fmt: skip


def add_credential_flags(parser: argparse.ArgumentParser) -> None:
    """The admin token and the gateway secret, each also from a file (kept out of ``ps``)."""
    secret_flags(
        parser, "--admin-token", metavar="TOKEN",
        help=f"the bearer token of the admin, printable ASCII, at least {MIN_SECRET_LENGTH} "
        "characters; without one, a token is generated at first start, printed that once, "
        "and only its hash kept in the database (one given retires it for good)",
    )  # fmt: skip
    secret_flags(
        parser, "--gateway-secret", metavar="SECRET",
        help="the secret payment callbacks are signed with (HMAC-SHA256), at least "
        f"{MIN_SECRET_LENGTH} characters; without one, a new secret is made at every start "
        "and never stored, which only the sandbox gateway can sign with",
    )  # fmt: skip


def check_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors no one flag's converter can see; exits with status 2 through the parser."""
    args.admin_token = secret_of(parser, args, "admin_token")
    args.gateway_secret = secret_of(parser, args, "gateway_secret")
    check_admin_token(parser, args, args.admin_token)
    check_secret(parser, args, "gateway_secret", args.gateway_secret)
    check_provider_flags(parser, args)


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """What ``serve`` was told, as the server takes it."""
    from shopkeep.http.connection_limits import ConnectionLimits
    from shopkeep.http.server import ServeOptions

    return ServeOptions(
        db=args.db,
        host=args.host,
        port=args.port,
        synchronous=args.synchronous,
        writer=args.writer,
        order_timeout_s=args.order_timeout,
        max_unpaid_orders=args.max_unpaid_orders,
        shipping_fee=args.shipping_fee,
        free_shipping_threshold=args.free_shipping_threshold,
        points_per_unit=args.points_rate,
        admin_token=args.admin_token,
        gateway_secret=args.gateway_secret,
        sandbox=args.sandbox,
        sandbox_callback_url=args.sandbox_callback_url,
        connections=ConnectionLimits(
            keepalive_s=args.keepalive_timeout,
            read_s=args.read_timeout,
            max_connections=args.max_connections,
        ),
        rate_limit_per_s=args.rate_limit,
        keys_per_day=args.keys_per_day,
        admin_ui=not args.no_admin_ui,
        payments=provider_settings(args),
        refund_query_after_s=args.refund_query_after,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT, SIGTERM or SIGHUP, then shut down gracefully; return the exit status."""
    problem = writable_path_problem(args.db)
    if problem is not None:
        return fail_about(args, "db", f"cannot use database path {args.db}: {problem}")

    from shopkeep.http.server import ListenError, StartupError, fastest_loop_factory, serve
    from shopkeep.opening import CurrencyMismatch, GatewayMismatch
    from shopkeep.store.errors import StoreError, unreadable

    options = serve_options(args)
    try:
        with asyncio.Runner(loop_factory=fastest_loop_factory()) as runner:
            runner.run(serve(options))
    except ListenError as error:
        return fail(args, f"{argument_named(args, 'host')}, {given_as(args, 'port')}: {error}")
    except StoreError as error:
        return fail_about(args, "db", str(error))
    except (sqlite3.DatabaseError, UnicodeDecodeError) as error:  # damaged pages met as the
        # shop reads its state (SQLite's message quoting their bytes: store.errors.UNREADABLE)
        return fail_about(args, "db", f"cannot use database {args.db}: {unreadable(error)}")
    except CurrencyMismatch as error:
        return fail_about(args, "currency", str(error))
    except GatewayMismatch as error:
        return fail_about(args, "gateway", str(error))
    except StartupError as error:
        return fail(args, str(error))
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
        return EXIT_INTERRUPTED
    return 0
