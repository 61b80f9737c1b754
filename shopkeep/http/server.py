"""The composition root of the HTTP server: ``shopkeep serve`` runs :func:`serve`.

:func:`running` is the whole assembly, in the order that makes a clean stop possible:

1. the credentials, read from the database's ``settings`` table before the shop opens (the
   gateway secret must be known to open it): a configured admin token wins; otherwise the
   token generated at first start, announced that once and its hash kept only when the server
   listens (a start that never listens, killed included, leaves nothing: the next makes
   another); the gateway secret as configured, else a new one for this run, never written;
2. the shop (actors and store) with its business settings, and in sandbox mode the HTTP sandbox
   gateway, whose callbacks go out over HTTP to this server's own callback route;
3. the app: the routes of :mod:`shopkeep.http.app`, plus ``/metrics``, the admin console
   (``/admin``) unless turned off and, in sandbox mode, ``/sandbox/...``; then the listening
   socket, whose connections are bounded (:mod:`shopkeep.http.connections`: keep-alive and
   read timeouts, a cap); then the loop monitor (:mod:`shopkeep.runtime.loop_monitor`), whose
   figures ``/metrics`` shows, from the moment the server listens.

Leaving the block undoes it in reverse: refuse new writes but the providers' callbacks (503,
nothing done), let the sandbox's callbacks on their way arrive (``SANDBOX_SETTLE_S`` at most;
a sandbox complete is refused 503 from then on), stop taking
connections (requests under way finish), stop the gateway's retries, drain the actors and
flush the store, close the callback client.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import msgspec
import structlog
from aiohttp import web

from shopkeep.actors.config import ShopConfig
from shopkeep.credentials import Credentials, put_in_force, settle_credentials
from shopkeep.http.app import DOOR, make_app
from shopkeep.http.config import HttpConfig
from shopkeep.http.connection_limits import ConnectionLimits, files_for_connections
from shopkeep.http.connections import BoundedRunner, BoundedServer
from shopkeep.http.metrics import Metrics, metrics_routes
from shopkeep.http.sandbox import (
    CALLBACK_PATH,
    HttpCallbackSink,
    HttpSandboxGateway,
    local_url,
    sandbox_routes,
)
from shopkeep.opening import check_upgrade
from shopkeep.payments.names import CALLED_BACK_AT_PUBLIC_URL
from shopkeep.payments.provider import ConfigurationError, PaymentProvider
from shopkeep.payments.sandbox import SandboxProvider
from shopkeep.payments.settings import ProviderSettings, build_provider
from shopkeep.runtime import Clock, RealClock, RuntimeConfig
from shopkeep.runtime.collector import freeze_survivors
from shopkeep.runtime.loop_monitor import LoopMonitor
from shopkeep.shop import Shop
from shopkeep.stop_requests import StopRequests
from shopkeep.store import Store, StoreConfig
from shopkeep.store.errors import StoreError
from shopkeep.store.gil import hand_gil_over_sooner

log = structlog.get_logger("shopkeep.serve")

class StartupError(Exception):
    """The server could not start because of its configuration; ``str()`` is one line.

    The operator's fault (a port already taken, a host that is not ours), not a bug.
    """


class ListenError(StartupError):
    """The server could not listen where it was told (a port taken, a host not ours)."""

    @classmethod
    def of(cls, host: str, port: int, error: OSError) -> ListenError:
        """The refusal of ``host``:``port``, as the system gave it."""
        return cls(f"cannot listen on {host}:{port}: {error.strerror or error}")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``serve`` is told (SPEC 8); each comes from a flag or a ``SHOPKEEP_*``."""

    db: str
    host: str = "127.0.0.1"
    port: int = 8080
    synchronous: str = "FULL"
    writer: str = "process"
    """Where the group-commit writer commits: "process" (its own, the default: measured faster
    and with shorter waits than a thread, which competes with the event loop for the GIL;
    docs/performance.md) or "thread"."""
    order_timeout_s: float = ShopConfig.order_timeout_s
    max_unpaid_orders: int = ShopConfig.max_unpaid_orders
    shipping_fee: int = ShopConfig.shipping_fee
    free_shipping_threshold: int = ShopConfig.free_shipping_threshold
    points_per_unit: int = ShopConfig.points_per_unit
    admin_token: str | None = None
    gateway_secret: str | None = None
    sandbox: bool = False
    """``--sandbox``: the same as ``payments.gateway == "sandbox"``."""
    payments: ProviderSettings = field(default_factory=ProviderSettings)
    """The payment provider and its configuration (SPEC 10). Without a gateway (and without
    ``sandbox``) the server refuses to start: it never falls back to a fake silently."""
    sandbox_callback_url: str | None = None
    """Where the sandbox gateway POSTs callbacks; this server's own callback route if None."""
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    """Keep-alive and read timeouts, and the cap on open connections (SPEC 7)."""
    refund_query_after_s: float = ShopConfig.refund_query_after_s
    """A refund the provider has not finished is asked about again after this (SPEC 10)."""
    rate_limit_per_s: float = HttpConfig.rate_limit_per_s
    """Requests a second one token may make (``HttpConfig.rate_limit_per_s``); 0: no limit."""
    keys_per_day: int = HttpConfig.keys_per_day
    """Idempotency-Keys one user's token may have kept in a day (``HttpConfig.keys_per_day``);
    0: no limit."""
    admin_ui: bool = True
    """Serve the admin console at ``/admin`` (``--no-admin-ui``: not at all, /admin is 404)."""
    runtime: RuntimeConfig | None = None
    """The actor runtime's limits (:data:`SERVER_RUNTIME` when None); no flag sets them: a
    test or a proof that needs a small in-flight cap builds its options in Python."""


SANDBOX_SETTLE_S = 5.0
"""How long a graceful stop waits for the sandbox's callbacks on their way, at most."""

SERVER_RUNTIME = RuntimeConfig(idle_timeout_s=60.0)
"""The server's runtime: actors idle for a minute are passivated (the runtime's default is
five minutes). An order is busy in the seconds after it is placed and rarely after; keeping
five minutes of them alive made the heap so large that the cyclic garbage collector's full
collections, which find nothing to free there, paused the event loop 50-300 ms every few
seconds under the soak (``python -m shopkeep.proof soak``; measured with ``gc.callbacks``)."""


def settings_store(
    options: ServeOptions, payments: ProviderSettings | None = None
) -> StoreConfig:
    """The store of ``options``' database as the credentials open it, before or after the
    shop: a few reads and at most one write, not worth a writer process of its own; the
    server's first look at the file, so every page of it is read first (a damaged one is
    refused before the credentials write to it), and the first open that may migrate it: an
    older shopkeep's file is migrated only if it is a shop of ``payments``' currency and
    provider (``opening.check_upgrade``), else left as it was."""
    agree = None
    if payments is not None and payments.gateway is not None:
        agree = functools.partial(
            check_upgrade, path=options.db, currency=payments.currency, gateway=payments.gateway
        )
    return StoreConfig(
        options.db, synchronous=options.synchronous, writer="thread", check_pages=True,
        agree=agree,
    )


async def open_credentials(
    options: ServeOptions, payments: ProviderSettings | None = None
) -> Credentials:
    """:func:`settle_credentials` on the database of ``options``, opened just for that (and
    migrated, if it is a shop of ``payments``: :func:`settings_store`)."""
    store = await Store.open(settings_store(options, payments))
    try:
        return await settle_credentials(
            store.writer, admin_token=options.admin_token, gateway_secret=options.gateway_secret
        )
    finally:
        await store.close()


async def _put_credentials_in_force(
    shop: Shop, credentials: Credentials, announce: Callable[[str], None]
) -> None:
    """Once the server listens (no longer a start that can fail): announce the admin token
    generated, then keep its hash, and retire the generated one a configured one replaces
    (:func:`put_in_force`). A database that cannot take them (a full disk) is said in the
    log: the server runs with them all the same, and the next start decides again."""
    if credentials.new_admin_token is not None:
        announce(credentials.new_admin_token)
    try:
        replaced = await put_in_force(shop.runtime.store.writer, credentials)
    except (StoreError, OSError, sqlite3.Error) as error:
        log.warning("admin_token_not_kept", error=str(error),
                    detail="in force until this server stops; a start without --admin-token "
                    "then generates and prints another")
        return
    if replaced:
        log.warning("admin_token_replaced",
                    detail="another start announced a token while this one started: the one "
                    "announced last is in force, the other no longer works")
    if credentials.retired_admin_hash is not None:
        log.info("generated_admin_token_retired",
                 detail="the admin token given replaces it for good")


def announce_admin_token(token: str) -> None:
    """Print a newly generated admin token on stdout (logs may be shipped elsewhere)."""
    print(f"admin token (shown this once, only its hash is kept): {token}", flush=True)


@dataclass
class Server:
    """A running server: where it listens and what it is made of."""

    url: str
    shop: Shop
    app: web.Application
    metrics: Metrics
    gateway: HttpSandboxGateway | None
    sink: HttpCallbackSink | None
    loop_monitor: LoopMonitor | None = None
    """How late the event loop has been for its timers (``/metrics``: ``shopkeep_loop_*``)."""
    connections: BoundedServer | None = None
    """The server that accepts connections: how many are open, refused, timed out."""


def build_app(
    shop: Shop,
    credentials: Credentials,
    metrics: Metrics,
    gateway: HttpSandboxGateway | None,
    *,
    rate_limit_per_s: float = HttpConfig.rate_limit_per_s,
    keys_per_day: int = HttpConfig.keys_per_day,
    admin_ui: bool = False,
    public_url: str = "",
) -> web.Application:
    """The app of :func:`shopkeep.http.app.make_app` with metrics and, given a gateway, the
    sandbox route and sandbox mode. The metrics time every answer as the client gets it,
    problems included. ``admin_ui``: the admin console at ``/admin`` too (``shopkeep.admin``),
    reached by browsers at ``public_url`` (``--public-url``: an https one makes its session
    cookie Secure)."""
    config = HttpConfig(
        admin_token="",
        admin_token_hash=credentials.admin_token_hash,
        sandbox=gateway is not None,
        rate_limit_per_s=rate_limit_per_s,
        keys_per_day=keys_per_day,
    )
    routes = [*metrics_routes(metrics)]
    if gateway is not None:
        routes += sandbox_routes(shop, gateway)
    app = make_app(shop, config, extra_routes=routes, metrics=metrics)
    if admin_ui:
        from shopkeep.admin import mount

        mount(app, shop, credentials.admin_token_hash, metrics=metrics, public_url=public_url)
    return app


async def check_listenable(host: str, port: int) -> None:
    """Listen on ``host``:``port`` as the site will, and stop at once; ListenError when that
    fails (a port taken, an address not this machine's). A port that another process takes
    between this and the start is still refused then, once the database is open."""
    loop = asyncio.get_running_loop()
    try:
        probe = await loop.create_server(asyncio.Protocol, host, port, reuse_address=True)
    except OSError as error:
        raise ListenError.of(host, port, error) from error
    probe.close()
    await probe.wait_closed()


@asynccontextmanager
async def running(
    options: ServeOptions,
    *,
    announce: Callable[[str], None] = announce_admin_token,
    clock: Clock | None = None,
) -> AsyncIterator[Server]:
    """Run the server of ``options`` until the block ends; see the module's docstring.
    ``clock``: the shop's time (wall time when None; the console's screenshots set it back
    to draw an hour of orders in a minute)."""
    payments = options.payments
    if options.sandbox:
        payments = msgspec.structs.replace(payments, gateway="sandbox")
    # a real provider is built (its credentials read), and the address tried, before the
    # database is touched: a start refused for either creates no database
    real = None if payments.gateway == "sandbox" else open_provider(options, payments, None, "")
    await check_listenable(options.host, options.port)
    allowed = files_for_connections(options.connections.max_connections)
    if allowed is not None:
        log.warning(
            "max_connections_past_open_files", max_connections=options.connections.max_connections,
            allowed=allowed, detail="the system's limit on open files (ulimit -n) refuses "
            "connections past about this many before the cap does; raise it or lower "
            "--max-connections",
        )
    credentials = await open_credentials(options, payments)
    async with AsyncExitStack() as stack:
        clock = clock or RealClock()
        gateway = HttpSandboxGateway(credentials.gateway_secret, clock) if real is None else None
        provider = real or open_provider(options, payments, gateway, credentials.gateway_secret)
        settings = ShopConfig(
            order_timeout_s=options.order_timeout_s,
            max_unpaid_orders=options.max_unpaid_orders,
            shipping_fee=options.shipping_fee,
            free_shipping_threshold=options.free_shipping_threshold,
            points_per_unit=options.points_per_unit,
            currency=payments.currency,
            refund_query_after_s=options.refund_query_after_s,
        )
        sink = HttpCallbackSink() if gateway is not None else None
        if sink is not None:
            stack.push_async_callback(sink.close)
        shop = await stack.enter_async_context(
            Shop.open(
                options.db,
                config=settings,
                clock=clock,
                gateway=provider,
                gateway_secret=credentials.gateway_secret,
                runtime_config=options.runtime or SERVER_RUNTIME,
                synchronous=options.synchronous,
                writer=options.writer,
            )
        )
        monitor = LoopMonitor(asyncio.get_running_loop())
        metrics = Metrics(shop, loop_monitor=monitor)
        app = build_app(
            shop,
            credentials,
            metrics,
            gateway,
            rate_limit_per_s=options.rate_limit_per_s,
            keys_per_day=options.keys_per_day,
            admin_ui=options.admin_ui,
            public_url=payments.public_url,
        )
        runner = BoundedRunner(app, options.connections)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        if gateway is not None:
            # before the listener closes: the sandbox's callbacks on their way still reach it
            stack.push_async_callback(gateway.settle, SANDBOX_SETTLE_S, shop.knows_outcome)
        if runner.bounded is not None:
            metrics.watch_connections(runner.bounded)
        try:
            await web.TCPSite(runner, options.host, options.port).start()
        except OSError as error:
            raise ListenError.of(options.host, options.port, error) from error
        bound_host, bound_port = runner.addresses[0][:2]
        url = local_url(bound_host, bound_port)
        if gateway is not None and sink is not None:
            # the customer's link: where browsers reach the shop (a proxy's, a tunnel's);
            # the sandbox's own callbacks stay on this listener
            gateway.public_url = payments.public_url.rstrip("/") or url
            sink.url = options.sandbox_callback_url or url + CALLBACK_PATH
            gateway.attach(sink)
            # loudly (SPEC 8): at the highest level, which no --log-level hides
            log.critical(
                "sandbox_enabled",
                detail="anyone who can reach this server can mark payments paid through "
                "POST /sandbox/payments/{payment_id}/complete; never run it so in production",
                callback_url=sink.url,
            )
        # from here on the loop serves: what starting took (building the app, the console's
        # templates) is no stall a request could have waited behind
        monitor.start()
        stack.callback(monitor.stop)
        log.info(
            "serving",
            url=url,
            db=options.db,
            synchronous=options.synchronous,
            writer=options.writer,
            gateway=provider.name,
            currency=payments.currency,
            order_timeout_s=options.order_timeout_s,
            keepalive_s=options.connections.keepalive_s,
            read_s=options.connections.read_s,
            max_connections=options.connections.max_connections,
        )
        await _put_credentials_in_force(shop, credentials, announce)
        yield Server(url, shop, app, metrics, gateway, sink, monitor, runner.bounded)
        log.info("stopping")
        # no new order or payment while the sandbox's callbacks settle: requests under way
        # finish, the providers' callbacks are still taken
        app[DOOR].gate.stop_taking_writes()
    # The exit stack stopped the listener, the gateway's retries, the actors and the store.
    log.info("stopped")


def open_provider(
    options: ServeOptions,
    payments: ProviderSettings,
    gateway: HttpSandboxGateway | None,
    secret: str,
) -> PaymentProvider:
    """The payment provider ``payments`` choose (the sandbox over ``gateway``); its callbacks
    come back to ``--public-url`` (by default the listening address). StartupError, in one
    line naming the choices or what is missing, when it cannot be built."""
    if not payments.public_url:
        if options.port == 0 and payments.gateway in CALLED_BACK_AT_PUBLIC_URL:
            raise StartupError(
                f"--port is 0: the port is picked only once the server listens, and "
                f"{payments.gateway} is told where to call back before: give --public-url"
            )
        here = local_url(options.host, options.port)
        payments = msgspec.structs.replace(payments, public_url=here)
    currency = payments.currency

    def sandbox() -> PaymentProvider:
        assert gateway is not None
        return SandboxProvider(gateway, secret, currency=currency)

    try:
        return build_provider(payments, sandbox)
    except ConfigurationError as error:
        raise StartupError(str(error)) from None


async def serve(options: ServeOptions) -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP, then shut down gracefully; a second one while it is
    stopping ends the process at once (:func:`stopper`).

    The signals are caught from before the start, so a stop asked for while the server is
    still starting (say, right after it logged ``serving``) is a graceful stop too.
    """
    stop = asyncio.Event()
    with stop_signals(stopper(stop)):
        async with running(options):
            # What starting built lives as long as the process, and so do most objects that
            # survive young collections (live actors): out of the full collections' sight
            # (runtime/collector.py), which otherwise paused the loop ~180 ms under load.
            freeze_survivors()
            # and the loop lets the store's threads have the GIL within 0.5 ms, not 5 ms
            hand_gil_over_sooner()
            await stop.wait()


def stopper(
    stop: asyncio.Event,
    exit_now: Callable[[int], object] = os._exit,
    clock: Callable[[], float] | None = None,
) -> Callable[[int], None]:
    """The handler of SIGINT, SIGTERM and SIGHUP: the first sets ``stop`` (the graceful stop:
    requests under way finish, the actors drain, the store commits what they wrote); one more
    while that runs (not the first's echo: :mod:`shopkeep.stop_requests`) ends the process at
    once, with the status a shell gives a process that signal ended (130, 143, 129). Nothing
    acknowledged is lost: an answer waits for its commit, and the writer's process finishes the
    transaction it is in before it sees its input end. ``clock``: seconds, for a test."""

    requests = StopRequests(clock)

    def on_signal(signum: int) -> None:
        asked = requests.asked()
        if asked == "same":  # the first's echo (timeout, make): the same request
            return
        if asked == "first":
            log.info("stop_asked", signal=signal.Signals(signum).name)
            stop.set()
            return
        log.warning(
            "stopping_now",
            signal=signal.Signals(signum).name,
            detail="asked again while stopping: ending without waiting for the rest of the "
            "stop; what was not committed was never acknowledged",
        )
        exit_now(128 + signum)

    return on_signal


@contextmanager
def stop_signals(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback`` with the signal's number on SIGINT, SIGTERM or SIGHUP while the block
    runs. SIGHUP too: the terminal that started the server closing, or a ``kill -HUP`` out of
    the habit of daemons that reload on it, ended the process at once (the signal's default),
    with requests under way cut unanswered; there is nothing to reload. But a SIGHUP ignored
    from the start stays ignored: ``nohup shopkeep serve`` asked the server to outlive its
    terminal."""
    loop = asyncio.get_running_loop()
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals += (signal.SIGHUP,)
    for signum in signals:
        loop.add_signal_handler(signum, callback, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def fastest_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else asyncio's default (None).

    A loop factory rather than a global event loop policy: policies are deprecated from
    Python 3.14 on, and this touches nothing outside the runner it is given to. Every process
    that serves (``shopkeep serve``, the flood's server, the HTTP bench's bare baseline) runs on
    the loop this chooses, so they compare on the same loop.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
