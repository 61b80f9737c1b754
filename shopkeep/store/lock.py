"""One process per database file, enforced with an advisory lock beside it.

SQLite itself would let two processes write the same WAL file; each would then run its own
group-commit writer and its own in-memory actors, and the actors' state would silently diverge
from the disk. ``flock`` is released by the kernel when the holder dies (even by SIGKILL), so a
crashed server never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os

from shopkeep.store.errors import DatabaseInUse, StoreError


class ProcessLock:
    """An exclusive, non-blocking lock on ``<database>.lock`` held for the life of the store."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DatabaseInUse` naming the holder's process id."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(
                f"database {self._database} is in use by another shopkeep process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    @property
    def _database(self) -> str:
        return self.path.removesuffix(".lock")

    def release(self) -> None:
        """Let go of the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
