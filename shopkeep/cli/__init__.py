"""The shopkeep command line: ``shopkeep serve | demo | bench | audit | backup | restore``
(SPEC 8).

The same parser runs as the ``shopkeep`` console script, as ``python -m shopkeep`` and as
``python main.py`` in a checkout. Each subcommand has its module here: ``add_<name>_parser``
declares its flags (and may set a ``check`` for usage errors that span flags) and
``run_<name>`` carries it out and returns the exit status. Every flag is declared with
:func:`shopkeep.cli.flags.flag`, which gives it its ``SHOPKEEP_*`` environment variable.

Mistakes of the operator end with one line on stderr and exit status 2, never a traceback: bad
flags or variables (cut to one line, naming the flag or the variable), an unusable database path
(checked before anything starts), a store that refuses to open, an address that cannot be
listened on.

Heavy modules (the runtime, the store, aiohttp) are imported inside the ``run_*`` functions, so
``--help`` and the early checks stay fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Final

from shopkeep import __version__
from shopkeep.cli.audit import add_audit_parser
from shopkeep.cli.backup import add_backup_parser
from shopkeep.cli.bench import add_bench_parser
from shopkeep.cli.common import configure_logs
from shopkeep.cli.demo import add_demo_parser
from shopkeep.cli.flags import EXIT_INTERRUPTED, PROG, OneLineParser
from shopkeep.cli.restore import add_restore_parser
from shopkeep.cli.serve import add_serve_parser
from shopkeep.cli.values import DURATIONS_HELP

__all__ = ["build_parser", "main"]

BROKEN_PIPE: Final = 128 + signal.SIGPIPE
"""The exit status of a command whose output's reader closed first, as a shell's own commands
end (killed by SIGPIPE, which Python turns into an exception)."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = OneLineParser(
        prog=PROG,
        description=(
            "shopkeep: the order and payment engine of a small online shop. Every flag of "
            "every command can be given as an environment variable instead: --order-timeout "
            f"as SHOPKEEP_ORDER_TIMEOUT, and so on (see each command's --help); {DURATIONS_HELP}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve_parser(subparsers)
    add_demo_parser(subparsers)
    add_bench_parser(subparsers)
    add_audit_parser(subparsers)
    add_backup_parser(subparsers)
    add_restore_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
    # before the checks, which read the secret files and warn of one others may read: the
    # warning goes where the logs go, as they go (structlog's defaults print to stdout, into
    # the tokens ``demo`` prints)
    configure_logs(args)
    try:
        if check is not None:
            check(args)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except KeyboardInterrupt:
        # a Ctrl-C before the command set its own handling (while it imports what it needs,
        # in the first half second of serve): quit at once, as a second Ctrl-C does
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (``shopkeep demo | head -n 1``): what it wanted it has; the
        # interpreter's own flush of stdout at exit must not raise it again as a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
