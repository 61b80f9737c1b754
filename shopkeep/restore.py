"""Putting a backup back in a database's place, with nothing of the database it replaces
mixed into it.

A database in WAL mode is up to three files: ``shop.db``, ``shop.db-wal`` and ``shop.db-shm``.
After a server that stopped uncleanly (a second SIGTERM, a kill, a power cut) the ``-wal``
file holds commits the main file has not taken yet, and SQLite applies it to whatever file
next opens under that name. A backup copied over ``shop.db`` beside such a ``-wal`` is a
corrupt database: pages of the old one written over pages of the backup. So :func:`restore`:

1. holds the database's lock (:class:`~shopkeep.store.lock.ProcessLock`) throughout: no
   server may open it meanwhile, and a server that holds it refuses the restore;
2. copies the backup to ``shop.db.partial`` (readable by its owner only) through SQLite, so
   that a backup with a ``-wal`` of its own (a database a server left uncleanly, one moved
   aside by an earlier restore) is copied with the commits its ``-wal`` holds, and one a
   server is writing is copied as one snapshot;
3. checks the copy (SQLite's ``integrity_check`` and the shop's audit): a backup that fails
   them changes nothing;
4. moves the database it replaces aside whole, its ``-wal`` and ``-shm`` files with it under
   the same new name (``shop.db.replaced-<UTC time>``, with ``-wal`` and ``-shm``), where
   SQLite still finds them together: nothing of it is lost, and nothing of it stays beside
   the restored file (a rename the system refuses, of a file this user may not move, puts
   back what moved and removes the copy: the database is left as it was);
5. renames the copy ``shop.db``: a crash midway leaves the database as it was, or none (moved
   aside), beside ``shop.db.partial`` (remove it, and run the restore again), or the whole
   backup.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shopkeep.actors.audit import audit_file
from shopkeep.backup import (
    BackupError,
    copy_database,
    integrity,
    unreadable_source,
    why_the_copy_fails,
    written_by_a_newer_shopkeep,
)
from shopkeep.store.database import not_sqlite
from shopkeep.store.errors import UNREADABLE, names_no_shop, unreadable
from shopkeep.store.lock import ProcessLock
from shopkeep.store.private_files import create_private, remove_database

COMPANIONS: Final = ("-wal", "-shm")
"""The files SQLite keeps beside a database in WAL mode, named after it."""


class RestoreError(BackupError):
    """The restore could not be done (the message says which file and why); the database is
    as it was."""


class RestoreRefused(RestoreError):
    """The restore asked for cannot be: no such backup, a backup that is no shop's database, a
    backup restored over itself, a database in a folder that does not exist. ``about`` names
    the part at fault, ``backup`` or ``database``."""

    def __init__(self, message: str, about: str) -> None:
        super().__init__(message)
        self.about = about


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did."""

    path: str
    replaced: str | None
    """Where the database it replaced went (its ``-wal`` and ``-shm`` beside it), or None when
    there was none."""


def restore(
    backup: str,
    database: str,
    *,
    now: float | None = None,
    swapping: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> RestoreReport:
    """Put the backup at ``backup`` in the place of the database at ``database`` (see the
    module's docstring); through a symbolic link, where it points, as SQLite opens it. Raises
    :class:`RestoreError`, or DatabaseInUse while a server holds the database. The copy, once
    checked, is put in the database's place within ``swapping()``: a caller that stops on a
    signal holds it off there, since a stop between the two renames would leave no database
    at its name."""
    if not Path(backup).is_file():
        raise RestoreRefused(f"cannot restore {backup}: no such backup file", "backup")
    named, database = database, os.path.realpath(database)
    if os.path.realpath(backup) == database:
        raise RestoreRefused(f"cannot restore {backup} over itself", "backup")
    newer = written_by_a_newer_shopkeep(backup)
    if newer is not None:  # it would be copied in whole before its audit said so
        raise RestoreRefused(f"cannot restore {backup}: {newer}", "backup")
    if not os.path.isdir(os.path.dirname(database)):
        raise RestoreRefused(f"cannot restore to {named}: its folder does not exist", "database")
    if not_sqlite(database):
        # a mistyped --db (notes, a config file): it would be moved aside and a database put
        # at its name; one damaged past its header is the operator's to move aside knowingly
        raise RestoreRefused(
            f"cannot restore to {named}: it is not a database (SQLite's header is not at "
            "its start), so nothing was replaced; if it is the shop's, damaged, move it "
            "aside first", "database",
        )
    lock = ProcessLock(database)
    lock.acquire()  # DatabaseInUse: a server has it open
    try:
        partial = _copy_in(backup, database, named)
        with swapping():
            replaced = _swap(partial, database, named, time.time() if now is None else now)
    except BaseException:
        lock.release(undo=True)  # refused: nothing left beside the database, a lock included
        raise
    lock.release()
    return RestoreReport(named, replaced)


def _check(backup: str, copy: str) -> None:
    """Refuse the copy of ``backup`` at ``copy`` unless it passes SQLite's and the shop's
    checks."""
    try:
        why = why_the_copy_fails(backup, integrity(copy), audit_file(copy))
    except (*UNREADABLE, OSError) as exc:  # not a database, or not a shop's
        raise _unreadable_backup(f"cannot restore {backup}: {unreadable(exc)}", exc) from None
    if why is not None:
        raise RestoreError(f"cannot restore {backup}: {why}")


def _unreadable_backup(said: str, error: BaseException) -> RestoreError:
    """The refusal of a backup that could not be read (``error``, in words ``said``): the
    operator's mistake when it is no shop's database at all (a file named by mistake), else
    a backup that fails."""
    if names_no_shop(error):
        return RestoreRefused(said, "backup")
    return RestoreError(said)


def _swap(partial: str, database: str, named: str, now: float) -> str | None:
    """Put the checked copy at ``partial`` in the place of ``database``, moved aside first;
    where it went (see :func:`_move_aside`). A rename the system refuses (a file this user may
    not move, in a sticky folder; an immutable one) puts back what moved and removes the copy:
    the database is left as it was, and :class:`RestoreError` says why."""
    step = "move the database there aside"
    try:
        replaced = _move_aside(database, now)
        step = "put the checked copy in its place"
        try:
            os.replace(partial, database)
        except OSError:
            if replaced is not None:
                _put_back(replaced, database)
            raise
    except OSError as exc:
        remove_database(partial)
        left = "it is left as it was" if os.path.lexists(database) else "none was there"
        raise RestoreError(
            f"cannot restore to {named}: cannot {step} ({exc.strerror}): {left}"
        ) from None
    _sync_folder(database)
    return replaced


def _put_back(aside: str, database: str) -> None:
    """Undo :func:`_move_aside`: the database and its companions at ``aside`` renamed back."""
    for suffix in ("", *COMPANIONS):
        if os.path.lexists(aside + suffix):
            os.rename(aside + suffix, database + suffix)


def _move_aside(database: str, now: float) -> str | None:
    """Rename the database and its companions to one new name; that name, or None when there
    is no database there."""
    present = [suffix for suffix in ("", *COMPANIONS) if os.path.lexists(database + suffix)]
    if not present:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    aside = f"{database}.replaced-{stamp}"
    taken = 1
    while any(os.path.lexists(aside + suffix) for suffix in ("", *COMPANIONS)):
        taken += 1  # restored twice within a second
        aside = f"{database}.replaced-{stamp}-{taken}"
    # the companions first: a crash between two renames leaves no -wal beside the old name
    # that another main file could take (the main file is renamed last)
    try:
        for suffix in (*COMPANIONS, ""):
            if suffix in present:
                os.rename(database + suffix, aside + suffix)
    except OSError:
        _put_back(aside, database)  # what moved before the refusal: none of it may stay aside
        raise
    _sync_folder(database)
    return aside


def _copy_in(backup: str, database: str, named: str) -> str:
    """The backup copied beside the database (``named`` as the user gave it) and checked
    (SQLite syncs it as it commits): where."""
    partial = database + ".partial"
    try:
        create_private(partial, exclusive=True)
    except FileExistsError:
        # the operator's to remove (a restore cut short), as backup's own .partial is
        raise RestoreRefused(
            f"cannot restore to {named}: {named}.partial exists (a restore cut short: remove "
            "it)", "database",
        ) from None
    try:
        copy_database(backup, partial, pause_s=0)
        _check(backup, partial)
    except OSError as exc:
        remove_database(partial)
        raise RestoreError(f"cannot restore to {database}: {exc.strerror}") from None
    except UNREADABLE as exc:  # not a database, or a damaged one
        remove_database(partial)
        said = f"cannot restore {backup}: {unreadable_source(backup, exc)}"
        raise _unreadable_backup(said, exc) from None
    except BaseException:  # refused by its checks, or stopped (a Ctrl-C, a SIGTERM)
        remove_database(partial)
        raise
    return partial


def _sync_folder(path: str) -> None:
    """Make the renames in ``path``'s folder durable."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
