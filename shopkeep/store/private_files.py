"""The files the store creates are its owner's alone: mode 0600, whatever the umask.

The database holds every order, wallet and token hash; with the usual umask (022) SQLite and
``os.open`` would create it, its ``-wal`` and ``-shm`` files and its lock file readable by every
local user. SQLite creates ``-wal`` and ``-shm`` with the database file's own mode, so creating
the database file 0600 before SQLite opens it is enough for all three.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Final

from shopkeep.store.writer_process import WAL_FILES

PRIVATE: Final = 0o600


def open_private(path: str) -> tuple[int, bool]:
    """Open ``path`` for reading and writing: (a descriptor, whether it was made now, ``0600``).

    A file that exists is opened as it is: its mode is its owner's choice. Raises OSError.
    """
    fd = _create(path)
    return (os.open(path, os.O_RDWR), False) if fd is None else (fd, True)


def create_private(path: str, *, exclusive: bool = False) -> bool:
    """Create ``path`` empty and ``0600`` unless it exists (SQLite takes an empty file for a
    new database); whether it was made now. With ``exclusive``, a file there already is a
    FileExistsError (it is someone else's). Raises OSError."""
    try:
        fd = _create(path)
        if fd is not None:
            os.close(fd)
    except BaseException:
        if exclusive:  # made by this call or by none (O_EXCL): a stop taken meanwhile (a
            # signal's handler runs as a call returns) leaves no file that would refuse the next
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise
    if fd is None:
        if exclusive:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        return False
    return True


def make_private(path: str) -> None:
    """Make the database ``path`` and its ``-wal`` and ``-shm``, where they are, ``0600``:
    for a file the store adopts as new though it was there already (an empty file from
    ``touch`` or a deploy tool, an empty SQLite database), whose mode SQLite gives the
    ``-wal`` and ``-shm`` it makes. Raises OSError."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            found = os.stat(name)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(found.st_mode) and found.st_mode & 0o077:
            os.chmod(name, PRIVATE)


def open_to_others(path: str) -> int | None:
    """The mode of the file at ``path`` when others than its owner may read or write it (the
    ``-wal`` and ``-shm`` SQLite makes beside it will be so too); None when it is private, or
    not there."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


SQLITE_BESIDE: Final = WAL_FILES
"""The files SQLite keeps beside a database in WAL mode."""
SQLITE_OWN: Final = (*SQLITE_BESIDE, "-journal")
"""The endings of the names SQLite gives the files it keeps beside a database (a copy in
rollback mode has a ``-journal``): a database of such a name would be taken for one of them."""


def database_name_problem(path: str) -> str | None:
    """Why ``path`` can name no shop's database, whatever is there, or None: SQLite's own names
    for a private in-memory or temporary database and its URIs (no file the reader, the writer
    and the lock could share), and the names of the files SQLite keeps beside a database (the
    shop's own database, opened later, would take one for its own ``-wal``, say, find it no log
    of its and delete it: every order of this shop gone)."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return "a shop needs a database file"
    if path.endswith(SQLITE_OWN):
        return (
            "SQLite keeps a file of that name beside a database for its own; name the shop's "
            "file otherwise"
        )
    return None


def remove_database(path: str) -> None:
    """Remove a database file one made and no connection has open, with what SQLite may have
    made beside it (``-wal`` and ``-shm``, a copy's ``-journal``): a store's opening that
    failed, a demo cut short, a backup's or a restore's copy that failed its checks."""
    for suffix in ("", *SQLITE_OWN):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:  # a name too long is one nothing was made at
                raise


def remove_made_beside(path: str, found: set[str]) -> None:
    """Remove what of :data:`SQLITE_BESIDE` is beside the database at ``path`` but was not
    when ``found`` was taken (the suffixes there then): a refused opening's look at the file
    made them. Only with the database's lock held and no connection to it open: a ``-shm``
    is an index SQLite makes again from the ``-wal``, but a connection still using it would
    go on with one its others no longer share. A ``-wal`` that holds commits is part of the
    database, never removed."""
    for suffix in SQLITE_BESIDE:
        beside = path + suffix
        if suffix in found or (suffix == "-wal" and holds_anything(beside)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(beside)


def holds_anything(path: str) -> bool:
    """Whether the file at ``path`` is there and not empty."""
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False


def _create(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return None
    try:
        os.fchmod(fd, PRIVATE)  # a umask such as 0277 would have taken the owner's bits too
    except BaseException:
        os.close(fd)
        raise
    return fd
