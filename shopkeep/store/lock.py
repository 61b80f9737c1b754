"""One process per database file, enforced with an advisory lock beside it.

SQLite itself would let two processes write the same WAL file; each would then run its own
group-commit writer and its own in-memory actors, and the actors' state would silently diverge
from the disk. ``flock`` is released by the kernel when the holder dies (even by SIGKILL), so a
crashed server never leaves a stale lock behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Final

from shopkeep.store.errors import DatabaseInUse, StoreError
from shopkeep.store.private_files import open_private

RETRY_S: Final = 0.02
"""How long a lock held by another waits before it is tried again."""

_OPEN_HERE: Final = "a shop already open in this process"

_HELD_HERE: set[str] = set()
"""The lock files this process holds: a second shop of the process on the same file is
refused at once (the first will not let go while the second waits)."""


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
        """Take the lock or raise :class:`DatabaseInUse` naming the holder's process id,
        trying for ``wait_s`` seconds, the thread asleep between tries (a command's, a proof's
        harness): :meth:`acquire_soon` waits without holding an event loop.

        The writer's own process holds the lock with its parent and ends on its own once the
        parent is gone, at most a batch later: a server restarted at once after a SIGKILL
        waits for that instead of refusing.
        """
        for _ in self._tries(wait_s):
            time.sleep(RETRY_S)

    async def acquire_soon(self, wait_s: float = 0.0) -> None:
        """:meth:`acquire`, the event loop running on between tries: a shop that waits for
        another's writer process to let go (a shop closed and opened again at once) stalls
        no other shop of the loop, nor its own timers."""
        for _ in self._tries(wait_s):
            await asyncio.sleep(RETRY_S)

    def _tries(self, wait_s: float) -> Iterator[None]:
        """Try to take the lock until it is taken (the iteration ends) or ``wait_s`` has
        passed (DatabaseInUse); between tries, yield for the caller to pause."""
        self._refuse_at_once()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self._try()
            except DatabaseInUse:
                if time.monotonic() >= deadline:
                    raise
            yield

    def _refuse_at_once(self) -> None:
        """Refuse what no wait would change: a file of several names, or one this process
        holds."""
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
        if self.path in _HELD_HERE:  # the shop that holds it will not let go meanwhile
            raise DatabaseInUse(f"database {self._database} is in use by {_OPEN_HERE}")

    def _try(self) -> None:
        """Take the lock now, or raise DatabaseInUse (StoreError: the file cannot be)."""
        while True:
            try:
                fd, made = open_private(self.path)
            except OSError as exc:
                raise StoreError(self._cannot_create(exc)) from exc
            self._take(fd)
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
        _HELD_HERE.add(self.path)

    def _cannot_create(self, exc: OSError) -> str:
        """Why the lock file could not be made, in the words of the database's path where
        the fault is its folder's (the lock file is no name its user gave)."""
        folder = os.path.dirname(self.path)
        if exc.errno == errno.ENOENT and not os.path.isdir(folder):
            return f"cannot open database {self._database}: no folder {folder}"
        if exc.errno == errno.ENOTDIR:
            return f"cannot open database {self._database}: {folder} is not a folder"
        return f"cannot create lock file {self.path}: {exc.strerror}"

    def _take(self, fd: int) -> None:
        """Lock ``fd`` now; else close it and raise DatabaseInUse."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            by = (
                # this process's last shop on the file, closed, whose writer process has
                # not quite ended
                _OPEN_HERE
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
            _HELD_HERE.discard(self.path)
