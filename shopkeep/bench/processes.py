"""Server processes for the benchmarks and the proofs: start on a free port, wait until ready,
stop gracefully (by pid), and read their output when they fail.

One way to run a server from Python, so the HTTP bench, the load harness's tests and the
proofs (:mod:`shopkeep.proof.serving`) start and stop servers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TRIES = 300
READY_PAUSE_S = 0.05
STOP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port free on ``HOST`` now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process started by the benchmark, its output kept in files."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        """The end of its output, for an error message."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM (a graceful stop), then SIGKILL if it does not end in time; its status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def cpu_s(pid: int, *, main_thread: bool = False) -> float | None:
    """CPU seconds (user and system) used so far by process ``pid``, all its threads, or with
    ``main_thread`` its main thread alone (a server's event loop); None where ``/proc`` does
    not say (not Linux, or the process is gone)."""
    fields = _stat_of(f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat")
    return None if fields is None else _cpu_of(fields)


def children_cpu_s(pid: int) -> float | None:
    """CPU seconds used so far by the live child processes of ``pid`` together (a server's
    writer process); None where ``/proc`` does not say. A child that has ended is not
    counted: read it while the children run."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    total = 0.0
    for entry in entries:
        fields = _stat_of(f"/proc/{entry}/stat") if entry.isdigit() else None
        if fields is not None and int(fields[1]) == pid:  # ppid, field 4 of proc(5)
            total += _cpu_of(fields)
    return total


def _stat_of(path: str) -> list[str] | None:
    """The fields of a ``stat`` file after the command's closing parenthesis (field 3, the
    state, first; proc(5)); None when it cannot be read (no ``/proc``, or the process is
    gone)."""
    try:
        with open(path) as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def _cpu_of(fields: list[str]) -> float:
    """utime and stime (fields 14 and 15), in seconds."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_side_cpu_s() -> float:
    """CPU seconds used so far by this process and its ended, reaped children (a load
    generator run as a command, or run in this process)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def start(name: str, argv: list[str], port: int, folder: Path, env: dict[str, str]) -> Server:
    """Start ``argv`` from the repository root, its output to a file in ``folder``.

    The root is also put first on ``PYTHONPATH``: the server imports the ``shopkeep`` this
    module belongs to (a checkout's own, say) rather than whichever one the interpreter has
    installed, however ``argv`` starts it.
    """
    log = folder / f"{name}.log"
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    return Server(name, f"http://{HOST}:{port}", process, log)


async def wait_ready(session: aiohttp.ClientSession, server: Server) -> None:
    """Poll ``/healthz`` until it answers (bounded), failing fast if the process ended."""
    for _ in range(READY_TRIES):
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start:\n{server.tail()}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(server.url + "/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(READY_PAUSE_S)
    raise RuntimeError(f"{server.name} did not answer /healthz:\n{server.tail()}")


def serve_argv(port: int, db: Path, *flags: str) -> list[str]:
    """The command line of ``shopkeep serve`` on ``HOST:port`` over ``db``, plus ``flags``."""
    return [
        sys.executable, "-m", "shopkeep", "serve", "--host", HOST, "--port", str(port),
        "--db", str(db), *flags,
    ]  # fmt: skip


@asynccontextmanager
async def serving(folder: Path, *flags: str, env: dict[str, str]) -> AsyncIterator[Server]:
    """``shopkeep serve`` over ``folder/shop.db`` with ``flags`` and ``env``, on a free port,
    once it answers ``/healthz``; stopped (SIGTERM, by its pid) when the block ends."""
    port = free_port()
    server = start("shopkeep", serve_argv(port, folder / "shop.db", *flags), port, folder, env)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, server)
        yield server
    finally:
        server.stop()
