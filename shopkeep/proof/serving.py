"""A real ``shopkeep serve`` process for the proofs: started, killed, restarted.

Built on the benchmarks' process handling (:mod:`shopkeep.bench.processes`: a free port,
output to a log file, readiness by polling ``/healthz``), so there is one way to run a server
from Python.
The port is chosen once and kept across restarts, so clients keep one URL; the process is
always reaped, even when the caller fails, by using :class:`ServeProcess` as a context manager.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import TracebackType

import aiohttp

from shopkeep.bench.processes import HOST, ROOT, Server, free_port, start, wait_ready
from shopkeep.store.lock import ProcessLock

LOCK_WAIT_S = 30.0
"""How long a killed server's writer process may take to end (one batch, at most)."""

__all__ = ["ROOT", "ServeProcess"]


class ServeProcess:
    """``shopkeep serve`` on ``db``, on one port of 127.0.0.1 for its whole life."""

    def __init__(
        self, db: Path, folder: Path, flags: list[str], command: list[str] | None = None
    ) -> None:
        self.db = db
        self.folder = folder
        self.flags = flags
        self.command = command or [sys.executable, "-m", "shopkeep", "serve"]
        """What to run: ``shopkeep serve``, or another entry point taking its flags."""
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.server: Server | None = None
        self.last: Server | None = None
        self.starts = 0

    @staticmethod
    def python_m(module: str) -> list[str]:
        """The command that runs ``module`` of this checkout with this Python."""
        return [sys.executable, "-m", module]

    @property
    def pid(self) -> int | None:
        """The running process's id, if one runs."""
        return None if self.server is None else self.server.process.pid

    async def start(self, session: aiohttp.ClientSession) -> float:
        """Start the server and wait until it answers ``/healthz``; the seconds that took."""
        began = time.perf_counter()
        self.starts += 1
        argv = [*self.command, "--db", str(self.db), "--host", HOST, "--port", str(self.port),
                *self.flags]  # fmt: skip
        self.server = self.last = start(f"serve-{self.starts}", argv, self.port, self.folder, {})
        await wait_ready(session, self.server)
        return time.perf_counter() - began

    def kill(self) -> None:
        """SIGKILL, no warning, and reap it; return once the server is wholly gone."""
        if self.server is not None:
            if self.server.process.poll() is None:
                self.server.process.kill()
            self.server.process.wait()
            self.server = None
            # A writer in its own process ends by itself after its batch in flight, still
            # holding the database's lock: the server is down once the lock is free.
            lock = ProcessLock(str(self.db))
            lock.acquire(wait_s=LOCK_WAIT_S)
            lock.release()

    def stop(self) -> int:
        """A graceful stop (SIGTERM); its exit status (0 when none ran)."""
        if self.server is None:
            return 0
        status = self.server.stop()
        self.server = None
        return status

    def tail(self) -> str:
        """The end of the current (or last) server's log."""
        return "" if self.last is None else self.last.tail(40)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.kill()
