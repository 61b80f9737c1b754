"""The shopkeep command line: ``python main.py serve`` (later also demo, bench, audit).

Each subcommand is a pair of functions: ``add_<name>_parser`` declares its flags (and may set a
``check`` for usage errors argparse cannot see) and ``run_<name>`` carries it out and returns the
exit status; ``build_parser`` lists the subcommands. Every flag falls back to a ``SHOPKEEP_*``
environment variable, so a container can be configured without a command line.

Mistakes of the operator end with one line on stderr and exit status 2, never a traceback: bad
flags (argparse's usage error), an unusable database path (checked before anything starts), a
store that refuses to open (``StoreError``), an address that cannot be listened on.

Heavy modules (the runtime, the store, aiohttp) are imported inside ``run_serve``, so ``--help``
and the early checks stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROG = "shopkeep"
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
EXIT_USAGE = 2


class StartupError(Exception):
    """The server could not start because of its configuration; ``str()`` is one line.

    The operator's fault (a port already taken, a host that is not ours), not a bug.
    """


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------- serve


def add_serve_parser(subparsers: Any) -> None:
    """Declare ``serve`` and its flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the shopkeep HTTP server on a SQLite database file.",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=_env("SHOPKEEP_DB", "shopkeep.db"),
        help="SQLite database file, created if missing (env SHOPKEEP_DB; default: %(default)s)",
    )
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
    parser.set_defaults(run=run_serve, check=functools.partial(check_serve, parser))


def check_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see; exits with status 2 through ``parser.error``."""
    # argparse checks `choices` on the command line only, not on a default from the environment
    # (which it does pass through `type`, so it is upper case already).
    if args.synchronous not in SYNCHRONOUS_MODES:
        parser.error(
            f"SHOPKEEP_SYNCHRONOUS: invalid choice {args.synchronous!r} "
            f"(choose from {', '.join(SYNCHRONOUS_MODES)})"
        )
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: {args.port} is not a TCP port (0-65535)")


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

    from shopkeep.logs import configure_logging
    from shopkeep.store.errors import StoreError

    configure_logging()
    try:
        with asyncio.Runner(loop_factory=_fastest_loop_factory()) as runner:
            runner.run(serve(args.db, args.host, args.port, synchronous=args.synchronous))
    except (StoreError, StartupError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
        return 130
    return 0


def _fastest_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else asyncio's default.

    A loop factory rather than a global event loop policy: policies are deprecated from
    Python 3.14 on, and this touches nothing outside the server's own runner.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve(db: str, host: str, port: int, *, synchronous: str) -> None:
    """Open the runtime, serve HTTP on ``host:port`` until a stop signal, then close both."""
    import structlog
    from aiohttp import web

    from shopkeep.bootstrap import open_runtime
    from shopkeep.http.app import make_app

    log = structlog.get_logger("shopkeep.serve")
    async with open_runtime(db, synchronous=synchronous) as runtime:
        runner = web.AppRunner(make_app(runtime))
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as error:
                reason = error.strerror or str(error)
                raise StartupError(f"cannot listen on {host}:{port}: {reason}") from error
            bound_host, bound_port = runner.addresses[0][:2]
            shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
            log.info(
                "serving",
                url=f"http://{shown_host}:{bound_port}",
                db=db,
                synchronous=synchronous,
            )
            await _stop_signal()
            log.info("stopping")
        finally:
            await runner.cleanup()
    # Leaving `open_runtime` stopped the actors and flushed the store: the shutdown is complete.
    log.info("stopped")


async def _stop_signal() -> None:
    """Return on the first SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="shopkeep: the order and payment engine of a small online shop.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve_parser(subparsers)
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
