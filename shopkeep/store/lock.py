"""One process per database file, enforced with an advisory lock beside it.

SQLite itself would let two processes write the same WAL file; each would then run its own
group-commit writer and its own in-memory actors, and the actors' state would silently diverge
from the disk. ``flock`` is released by the kernel when the holder dies (even by SIGKILL), so a
crashed server never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from shopkeep.store.errors import DatabaseInUse, StoreError
from shopkeep.store.private_files import open_private


def _names_of(database: str) -> int:
    """How many names (hard links) the file at ``database`` has; 1 when there is none yet."""
    try:
        return os.stat(database).st_nlink
    except OSError:  # none yet (SQLite makes it), or not for us to look at: the open says so
        return 1


def _still_named(fd: int, path: str) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one removed meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def held(database_path: str) -> bool:
    """Whether a process holds the lock of the database at ``database_path`` (a server on
    it), looked at without taking it: its lock file opened read-only, a shared lock tried."""
    try:
        fd = os.open(os.path.realpath(database_path) + ".lock", os.O_RDONLY)
    except OSError:  # no lock file: nobody ever served it here, or it is gone with its holder
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # a shared lock taken is let go with the descriptor
    return False


class ProcessLock:
    """An exclusive, non-blocking lock on ``<database>.lock`` held for the life of the store.

    ``<database>`` is the file's real path, its symbolic links resolved: opened through a link,
    the database must meet the lock of the server that opened it by its own name. A file with
    more than one name (a hard link, which no resolving can tell from the original) is
    refused: each name would have a lock of its own."""

    def __init__(self, database_path: str) -> None:
        self.path = os.path.realpath(database_path) + ".lock"
        self._database = database_path
        self._fd: int | None = None
        self._made = False  # whether this lock made the lock file

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock or raise :class:`DatabaseInUse` naming the holder's process id.

        ``wait_s``: how long to keep trying. The writer's own process holds the lock with its
        parent and ends on its own once the parent is gone, at most a batch later: a server
        restarted at once after a SIGKILL waits for that instead of refusing.
        """
        links = _names_of(self._database)
        if links > 1:
            # The lock is the name's: through another name (a hard link) a second server
            # would take a lock of its own, and SQLite a -wal of its own, each answering
            # writes the other never sees (and the last to close keeping only its own).
            # Refused before the lock file is made: nothing is left beside it
            raise StoreError(
                f"database {self._database} has {links} names (hard links): a shop's file must "
                "have one, or two servers could each open it by another name; remove the others"
            )
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fd, made = open_private(self.path)
            except OSError as exc:
                raise StoreError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
            self._take(fd, deadline)
            if _still_named(fd, self.path):
                break
            # its holder was refused and removed the file it made as it let go (release's
            # undo): this one locks no name now; the next command makes the file again
            os.close(fd)
        self._fd = fd
        self._made = made
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())  # whose it is, for DatabaseInUse's words
        except OSError as exc:  # a full disk: one line, and no lock file left
            self.release(undo=True)
            raise StoreError(f"cannot write lock file {self.path}: {exc.strerror}") from exc

    def _take(self, fd: int, deadline: float) -> None:
        """Lock ``fd``, trying until ``deadline``; else close it and raise DatabaseInUse."""
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                by = (
                    "a shop already open in this process"
                    if holder == str(os.getpid())
                    # the writer process a server started holds the lock too, and outlives
                    # it a moment (or longer, stopped): the pid alone named a process gone
                    else f"another shopkeep process (pid {holder}, or the writer process it "
                    "started)"
                )
                raise DatabaseInUse(f"database {self._database} is in use by {by}") from None

    @property
    def fd(self) -> int | None:
        """The locked file's descriptor while held: a child given it holds the lock too."""
        return self._fd

    def release(self, *, undo: bool = False) -> None:
        """Let go of the lock (idempotent). With ``undo`` (the command was refused, or failed
        to open the store), the lock file goes too if this lock made it: a refusal leaves
        nothing beside the database. Safe while others wait for it: a lock taken on the
        removed file is let go and taken again on the file by that name (``acquire``)."""
        if self._fd is not None:
            if undo and self._made:
                with contextlib.suppress(OSError):  # gone already: nothing to undo
                    os.unlink(self.path)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
