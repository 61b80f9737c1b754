"""Copying a live database: SQLite's online backup, then the copy checked.

``shopkeep backup --db PATH --to FILE`` runs :func:`backup` while the server keeps serving. The
copy is taken in steps of :data:`PAGES_PER_STEP` pages with a pause between them, so the backup
never holds the disk for long; all the steps read one snapshot, the one a read transaction on
the source sees when the backup begins. Without it, SQLite restarts a stepped backup whenever
another connection writes the source, and a shop under load writes every few milliseconds: the
backup would never end. In WAL mode a reader blocks no writer, so the server commits on as
usual (its WAL grows until the backup ends, as behind any long reader).

The copy is written to ``FILE.partial`` (created readable by its owner only, as the database
is; one there already is left alone, and the backup refused) and renamed to ``FILE`` only once
it is whole and has passed SQLite's ``integrity_check`` and the shop's audit: a file named
``FILE`` is always a checked backup. The copy is one file, in SQLite's rollback-journal mode
(the source's WAL mode would leave ``-wal`` and ``-shm`` files beside it, made by the checks'
read-only connections and never removed); a server that opens it puts it back in WAL mode.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shopkeep.actors.audit import AuditReport, audit_file
from shopkeep.store.database import (
    WalNotItsOwn,
    read_only_uri,
    unreadable_at,
    wal_beside_refused,
    wal_misfit,
)
from shopkeep.store.errors import UNREADABLE, SchemaMismatch, names_no_shop
from shopkeep.store.migrations import MIGRATIONS, refuse_newer
from shopkeep.store.private_files import create_private, remove_database
from shopkeep.store.writer_process import database_uri

PAGES_PER_STEP: Final = 1024
"""Pages copied per step (4 MiB at SQLite's default page size)."""
PAUSE_S: Final = 0.005
"""The pause between two steps, in which the disk is the server's alone."""
FAILED_CHECKS: Final = ".failed-checks"
"""Added to the target's name for a copy that failed its checks: kept for a person to look
into (a backup taken when an invariant broke is the one that shows how), never under the
target's own name, which only a checked backup takes."""

Progress = Callable[[int, int], None]
"""Called after each step with (pages copied so far, pages in all)."""


class BackupError(Exception):
    """The backup could not be made or the copy failed its checks (the user's to act on: the
    message says which file and why); nothing is left at the target path."""


class SourceRefused(BackupError):
    """The file to back up is no shop's database (not SQLite, damaged past its header, of no
    tables): the operator's to name another; nothing was kept."""


class TargetTaken(BackupError):
    """The target, or the copy's ``.partial`` beside it, exists: another backup's, or one a
    kill cut short (the operator's to choose another or remove it); nothing was copied, or
    the copy was removed."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup made and how its copy was checked."""

    path: str
    pages: int
    seconds: float
    integrity: str
    """SQLite's ``integrity_check`` of the copy: "ok", or its first complaint."""
    audit: AuditReport

    @property
    def ok(self) -> bool:
        """Whether the copy is sound: SQLite's check and every invariant of the audit hold."""
        return failed_checks(self.integrity, self.audit) is None


def failed_checks(integrity: str, audit: AuditReport) -> str | None:
    """Why a copy of a database fails its checks, SQLite's ``integrity_check`` (its answer,
    ``integrity``) then the shop's ``audit``; None when it passes them."""
    if integrity != "ok":
        return f"integrity_check: {integrity}"
    failed = [check.name for check in audit.checks if not check.ok]
    return f"its audit fails: {failed}" if failed else None


def backup(
    source: str,
    target: str,
    *,
    pages_per_step: int = PAGES_PER_STEP,
    pause_s: float = PAUSE_S,
    progress: Progress | None = None,
    keeping: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> BackupReport:
    """Copy the database at ``source`` to ``target`` consistently, while others write it.

    Raises :class:`BackupError` when ``source`` is not a database file, or one a newer
    shopkeep wrote (:class:`SourceRefused`), ``target`` exists already, or the copy fails a
    check (the copy is then kept as ``target`` + :data:`FAILED_CHECKS`, if that name is free).
    The checked copy is kept at ``target`` within ``keeping()``: a caller that stops on a
    signal holds it off there, since a copy kept is not to be reported as not kept.
    """
    if not Path(source).is_file():
        raise BackupError(f"cannot back up {source}: no such database file")
    if os.path.lexists(target):
        raise TargetTaken(f"cannot back up to {target}: it exists already")
    newer = written_by_a_newer_shopkeep(source)
    if newer is not None:  # its every page would be copied before the audit said so
        raise SourceRefused(f"cannot back up {source}: {newer}")
    partial = target + ".partial"
    started = time.perf_counter()
    try:
        # never someone else's file: another backup's under way, or one a kill cut short
        create_private(partial, exclusive=True)
    except FileExistsError as exc:
        raise TargetTaken(
            f"cannot back up to {target}: {partial} exists (another backup is writing it, "
            "or one was cut short: remove it)"
        ) from exc
    except OSError as exc:  # named for the target: the .partial is not the user's name
        raise BackupError(f"cannot back up to {target}: {exc.strerror}") from exc
    try:
        pages = copy_database(source, partial, pages_per_step, pause_s, progress)
        found = integrity(partial)
        report = BackupReport(
            target, pages, time.perf_counter() - started, found, audit_file(partial)
        )
    except (OSError, *UNREADABLE) as exc:
        remove_database(partial)
        said = unreadable_source(source, exc)
        if names_no_shop(exc):  # a file named by mistake: as audit says it
            raise SourceRefused(f"cannot back up {source}: {said}") from exc
        raise BackupError(f"cannot back up {source} to {target}: {said}") from exc
    except BaseException:
        remove_database(partial)
        raise
    why = why_the_copy_fails(source, found, report.audit)
    if why is not None:
        kept = _keep_failed(partial, target)
        raise BackupError(f"the copy of {source} failed its checks ({why}); {kept}")
    with keeping():
        try:
            # a link, not a rename: a file made at ``target`` while the copy ran stays untouched
            os.link(partial, target)
        except FileExistsError:
            remove_database(partial)
            raise TargetTaken(
                f"cannot back up to {target}: it was made while the copy ran"
            ) from None
        remove_database(partial)
    return report


def written_by_a_newer_shopkeep(path: str) -> str | None:
    """Why the database at ``path`` is not this shopkeep's to copy, when a newer one wrote it
    (its schema's version past the last migration here), in words; None otherwise, or when
    it cannot be read (the copy and its checks say why)."""
    try:
        conn = sqlite3.connect(read_only_uri(os.path.realpath(path)), uri=True)
    except UNREADABLE:
        return None
    try:
        refuse_newer(conn, MIGRATIONS)
    except SchemaMismatch as newer:
        return str(newer)
    except UNREADABLE:  # damaged, or no database: SQLite's message may quote its bytes
        return None
    finally:
        conn.close()
    return None


def unreadable_source(source: str, error: BaseException) -> str:
    """What reading the database at ``source`` failed with (one of ``UNREADABLE``), in words;
    a damage led by what to do when the file alone is whole (:func:`said_with_misfit`)."""
    said = unreadable_at(source, error)
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(
        error, sqlite3.OperationalError | WalNotItsOwn  # busy, locked: no word on the pages
    ):
        return said_with_misfit(source, said)
    return said


def _keep_failed(partial: str, target: str) -> str:
    """Keep the copy at ``partial``, which failed its checks, as ``target`` +
    :data:`FAILED_CHECKS`; say where (or that nothing was kept: that name is taken)."""
    failed = target + FAILED_CHECKS
    try:
        os.link(partial, failed)
        said = f"kept as {failed} to look into, not as {target}"
    except FileExistsError:
        said = f"nothing was kept ({failed} exists)"
    remove_database(partial)
    return said


def why_the_copy_fails(source: str, integrity: str, audit: AuditReport) -> str | None:
    """Why the copy of the database at ``source`` fails its checks (:func:`failed_checks`),
    a damage led by what to do when the file alone is whole; None when it passes them."""
    why = failed_checks(integrity, audit)
    return said_with_misfit(source, why) if why is not None and integrity != "ok" else why


def said_with_misfit(source: str, damage: str) -> str:
    """``damage``, what was said of a database read through its ``-wal``, led by what to do
    when the file alone is whole (:func:`~shopkeep.store.database.wal_misfit`)."""
    return wal_misfit(os.path.realpath(source), damage) or damage


def copy_database(
    source: str,
    partial: str,
    pages_per_step: int = PAGES_PER_STEP,
    pause_s: float = PAUSE_S,
    progress: Progress | None = None,
) -> int:
    """Copy the database at ``source`` into the empty file ``partial`` through SQLite (one
    snapshot, what its ``-wal`` holds included), as one file in rollback-journal mode; the
    pages copied."""
    # a -wal that is not the file's (serve refuses it) would be copied as the file's pages
    not_its_own = wal_beside_refused(os.path.realpath(source))
    if not_its_own is not None:
        raise WalNotItsOwn(not_its_own)
    # read-only: the last read-write connection to close copies the -wal into the file and
    # removes it, and a -wal an older copy of the file left beside it would overwrite the
    # newer pages with its older ones, before the copy's checks refused it
    src = sqlite3.connect(read_only_uri(str(Path(source).resolve())), uri=True,
                          isolation_level=None)  # fmt: skip
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        # One snapshot for every step (see the module's docstring).
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        dest = sqlite3.connect(partial)
        copied = 0
        try:

            def step(status: int, remaining: int, total: int) -> None:
                nonlocal copied
                copied = total
                if progress is not None:
                    progress(total - remaining, total)
                if remaining and pause_s:
                    # the disk the server's alone for a moment; the sqlite3 module's own
                    # ``sleep`` is taken only when a step finds the database busy
                    time.sleep(pause_s)

            src.backup(dest, pages=pages_per_step, progress=step)
            dest.execute("PRAGMA journal_mode = DELETE")  # one file (see the module)
        finally:
            dest.close()
        src.execute("COMMIT")
        return copied
    finally:
        src.close()


def integrity(path: str) -> str:
    """SQLite's ``integrity_check`` of the database at ``path`` (read only): "ok", or its
    first complaints."""
    conn = sqlite3.connect(database_uri(Path(path).resolve(), "mode=ro"), uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows[:3])
