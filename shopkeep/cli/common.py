"""What several commands share: the database flag and its check, the logging flags, secrets."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Final

from shopkeep.cli.flags import (
    PROG,
    flag,
    flag_over_variable,
    given_as,
    usage_error,
    variable_of,
)
from shopkeep.cli.values import LOG_FORMATS, LOG_LEVELS, choice, metavar_of
from shopkeep.secret_files import TooLarge, read_secret_file

MIN_SECRET_LENGTH: Final = 16


class Stopped(BaseException):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) while a command that writes files runs:
    unwinds it, so that what it made is removed (a backup's ``.partial``, a restore's)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stops:
    """The stop signals a command that writes files takes (:func:`stopped_by_signals`): each
    raises :class:`Stopped`, but from :meth:`past_undoing` on, where it is kept in ``held``."""

    def __init__(self) -> None:
        self.held: int | None = None
        self._holding = False

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """The signals' handler."""
        if not self._holding:
            raise Stopped(signum)
        if self.held is None:
            self.held = signum

    @property
    def holding(self) -> bool:
        """Whether a stop is kept rather than taken: from :meth:`past_undoing` on."""
        return self._holding

    @contextlib.contextmanager
    def past_undoing(self) -> Iterator[None]:
        """From here to the process's end a stop is kept, for the command to say once it is
        done, not taken: what follows (a database moved aside, its copy put at its name) is
        not to be cut, and once done, not to be reported as not done (by a status of 128 +
        the signal's number, were it taken as the command prints its result and exits)."""
        self._holding = True
        yield


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[Stops]:
    """Within the block, SIGINT, SIGTERM and SIGHUP (a Ctrl-C, a service manager's stop, a
    terminal closing, ``timeout``) raise :class:`Stopped` instead of ending the process where
    it stands, but past the :class:`Stops`' ``past_undoing``, from where they are kept to the
    process's end (the handlers are left as they are then); one ignored (``nohup``) stays
    ignored."""
    stops = Stops()
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    for which in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(which) is not signal.SIG_IGN:
            previous[which] = signal.signal(which, stops.stop)
    try:
        yield stops
    finally:
        if not stops.holding:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def stopped_status(command: str, stop: BaseException) -> int:
    """Say on stderr that ``command`` was stopped by ``stop`` (a Ctrl-C or :class:`Stopped`)
    with nothing kept; its exit status, 128 + the signal's number, as a shell reports it."""
    signum = stop.signum if isinstance(stop, Stopped) else int(signal.SIGINT)
    print(f"{PROG} {command}: stopped by {signal.Signals(signum).name}: nothing was kept",
          file=sys.stderr)
    return 128 + signum


def add_db_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--db PATH``: the shop's SQLite file, ``shopkeep.db`` in the working folder by default."""
    flag(parser, "--db", metavar="PATH", default="shopkeep.db",
         help=f"SQLite database file, {what}")  # fmt: skip


def add_file_flag(
    parser: argparse.ArgumentParser, command: str, option: str, help: str
) -> None:
    """``option FILE``, which ``command`` needs and has no default for: its ``check`` refuses
    a command line without it in one line."""
    flag(parser, option, metavar="FILE", help=help)
    dest, variable = option.removeprefix("--").replace("-", "_"), variable_of(option)

    def check(args: argparse.Namespace) -> None:
        if getattr(args, dest) is None:
            parser.error(f"{command} needs {option} FILE (or {variable})")

    parser.set_defaults(check=check)


def add_log_flags(parser: argparse.ArgumentParser, level: str) -> None:
    """``--log-level`` (default ``level``) and ``--log-format``."""
    flag(
        parser, "--log-level", convert=choice(*LOG_LEVELS), metavar=metavar_of(*LOG_LEVELS),
        default=level, help="the least severe log lines written (to stderr)",
    )  # fmt: skip
    flag(
        parser, "--log-format", convert=choice(*LOG_FORMATS), metavar=metavar_of(*LOG_FORMATS),
        shown_default="console on a terminal, json otherwise",
        help="log lines as JSON objects, one a line, or as coloured text for a person",
    )  # fmt: skip


def configure_logs(args: argparse.Namespace) -> None:
    """Set up structlog as ``--log-level`` and ``--log-format`` say."""
    from shopkeep.logs import configure_logging

    configure_logging(args.log_level, fmt=args.log_format)


def names_no_file(path: str) -> str | None:
    """Why ``path`` names no file whatever is there ("", blanks, a folder's trailing slash,
    which the system would drop or take as the working folder), or None."""
    if not path.strip() or path.endswith(("/", os.sep)):
        return "it names no file"
    return None


def writable_path_problem(path: str) -> str | None:
    """Why a file cannot be created or written at ``path`` (a database, a report), or None
    when it looks writable.

    A database's folder must be writable even when the file exists already: SQLite in WAL
    mode creates ``-wal`` and ``-shm`` files beside it.
    """
    unnamed = names_no_file(path)
    if unnamed is not None:
        return unnamed
    try:
        return _writable_path_problem(Path(path))
    except OSError as error:  # a name the system cannot even look up (too long, say)
        return error.strerror or str(error)


def _writable_path_problem(file: Path) -> str | None:
    if file.is_dir():
        return "it is a directory"
    folder = file.parent
    if not folder.exists():
        return f"directory {str(folder)!r} does not exist"
    if not folder.is_dir():
        return f"{str(folder)!r} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"directory {str(folder)!r} is not writable"
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        return "the file is not readable and writable"
    return None


def check_secret(
    parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str, value: str | None
) -> None:
    """Refuse a configured token or secret too short to resist guessing."""
    if value is not None and len(value) < MIN_SECRET_LENGTH:
        usage_error(parser, args, dest, f"shorter than {MIN_SECRET_LENGTH} characters")


def check_token_characters(
    parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str, value: str | None
) -> None:
    """Refuse a bearer token no request could carry: the server takes printable ASCII, of at
    most ``MAX_TOKEN`` characters (a longer admin token was taken at start, then refused 401
    on every request while the console, which reads no header, let its holder in)."""
    if value is None:
        return
    if not (value.isascii() and value.isprintable()):
        usage_error(parser, args, dest, "not printable ASCII")
    if value != value.strip():
        # taken, it retired the generated token and locked the admin out: HTTP drops the
        # spaces at a header's ends, so no request's token could ever match it
        usage_error(parser, args, dest, "begins or ends with a space, which no request's "
                    "Authorization header can carry: remove it")
    from shopkeep.http.auth import MAX_TOKEN  # here: --help imports this module, not the server

    if len(value) > MAX_TOKEN:
        usage_error(parser, args, dest, f"longer than {MAX_TOKEN} characters")


def check_admin_token(
    parser: argparse.ArgumentParser, args: argparse.Namespace, value: str | None
) -> None:
    """Refuse an admin token too short to resist guessing, or one no request could carry."""
    check_secret(parser, args, "admin_token", value)
    check_token_characters(parser, args, "admin_token", value)


def secret_flags(parser: argparse.ArgumentParser, option: str, *, metavar: str, help: str) -> None:
    """Declare the secret ``option`` (``--admin-token``) and ``option``-file, which reads it
    from a file, kept out of ``ps``; :func:`secret_of` reads whichever was given."""
    flag(
        parser, option, metavar=metavar,
        help=f"{help}. On the command line it is visible to every local user (ps): prefer "
        f"the environment variable or {option}-file",
    )  # fmt: skip
    flag(
        parser, f"{option}-file", metavar="PATH",
        help=f"read the {option.removeprefix('--').replace('-', ' ')} from this file instead, "
        "surrounding whitespace ignored",
    )  # fmt: skip


def secret_of(parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str) -> str | None:
    """The secret given as ``dest``, or read from the file given as ``dest``-file (not both):
    a file keeps it out of ``ps``. Surrounding whitespace in the file is ignored."""
    value: str | None = getattr(args, dest)
    path: str | None = getattr(args, dest + "_file")
    if path is not None and value is not None:
        # an exported SHOPKEEP_ADMIN_TOKEN, say, and --admin-token-file given
        wins = flag_over_variable(args, dest, dest + "_file")
        if wins is None:
            option = "--" + dest.replace("_", "-")
            usage_error(parser, args, dest + "_file", f"give {option} or {option}-file, not both")
        if wins == dest:
            path = None
        else:
            value = None
    if path is None:
        return value
    reason = None
    try:
        secret = read_secret_file(path).decode("utf-8").strip()
    except OSError as error:
        reason = error.strerror or str(error)
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except TooLarge as error:  # /dev/zero, say: read no further
        reason = str(error)
    if reason is not None:
        usage_error(parser, args, dest + "_file", f"cannot read {path}: {reason}")
    if not secret:
        usage_error(parser, args, dest + "_file", f"{path} is empty")
    args.sources[dest] = given_as(args, dest + "_file")  # later checks name the file's flag
    return secret
