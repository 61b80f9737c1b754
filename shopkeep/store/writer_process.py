"""The writer's own process: commits batches on a connection of its own, away from the GIL.

Why a process: the group-commit writer thread binds every statement's parameters while holding
the GIL and drops and retakes it around every SQLite step, and the event loop wants the GIL for
the same microseconds (``python -m shopkeep.bench.shop`` measures the writer in the run and
alone). A process of its own has its own interpreter: the writer thread only pickles a batch and
waits on a pipe. What it costs instead is a pipe round trip and a process switch a batch; with
the writer thread taking everything queued at once, batches are large enough for that to be
paid back: the commit section of ``python -m shopkeep.bench.runtime --writer process`` is as
fast as with the thread, and the server's capacity under the load harness's mix (``python -m
shopkeep.proof soak --writer process``) is higher. It is the store's default
(:class:`~shopkeep.store.database.StoreConfig`).

The protocol is one frame each way per batch on the child's stdin and stdout: a 4-byte length
then a pickle. The parent sends the batch's statements as its units wrote them, with a flag
that says the schema may have changed since the last batch; the child plans them
(:mod:`shopkeep.store.batch_plan`, with the schema it read, read again after the flag or a
statement that may change it), runs them in one transaction and answers ``None`` (committed)
or ``(error class name, message)`` (rolled back, nothing written). Planning here rather than
on the parent's writer thread keeps a few microseconds a statement off the event loop's GIL
(9 us a plain placement, timed on that thread). Sorting out which unit failed is the parent's
business (it retries the batch unit by unit on its own connection, see
:mod:`shopkeep.store.writer`), so the child stays this small.

Lifetime: the parent starts the child with the database's lock file descriptor (so the lock is
held until both are gone: a server restarted after a SIGKILL cannot open the file while the old
child may still be committing its last batch), and ends it by closing its stdin. The child
exits at end of input, between two transactions; a parent that dies mid-frame leaves a partial
frame, which is never run.

A child that dies (killed, out of memory) is replaced by the next batch, with a warning on
the standard library's ``shopkeep.store`` logger (which ``shopkeep serve`` writes as its other
lines): the batch it was writing fails, and its actors reload what the disk holds.

This module imports only the standard library: the child runs it as a script with ``-I -S``
(no site-packages, no environment), which starts in a few tens of milliseconds; it loads
``batch_plan.py``, standard library only too, from its file beside this one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Final

HEADER = struct.Struct("!I")
CHECKPOINT_EVERY_S = 0.05
"""How often the :class:`Checkpointer` copies what the WAL gained into the database file."""
BACKSTOP_PAGES = 10_000
"""WAL pages past which a writer's commit still checkpoints by itself (SQLite's own automatic
checkpoint, 1000 pages by default): only when the checkpointer fell behind or is gone."""
WAL_KEPT_BYTES = 48 * 1024 * 1024
"""The size the WAL file is cut back to when it starts over (SQLite's ``journal_size_limit``):
above the 41 MB that :data:`BACKSTOP_PAGES` of 4 KiB pages take, so that the WAL's usual
cycle reuses its file as it is (a file that grows makes each sync write its size too), but a
WAL that a long reader let grow past it (a backup under load: 74 MB) is cut at its next
start, not kept at that size until the server restarts."""
STATEMENT_CACHE = 512
"""Prepared statements a writer's connection keeps (the driver's default is 128): a batch plan
turns each INSERT text into multi-row INSERTs of up to seven sizes (see
:mod:`shopkeep.store.batch_plan`), and a statement prepared again costs more than it saves."""

OPEN_FAILED = 3
"""The child's exit status when it cannot open the database for writing."""
CANNOT_OPEN = "CannotOpen"
"""The error the child answers the batch it was started for when it cannot open the database
for writing (then it exits): an OperationalError of the store's, not of the batch's."""
REOPEN_AFTER_S = 1.0
"""How long after a child that could not open the database the next is started: meanwhile
batches fail at once (503) rather than each starting a process."""

Outcome = tuple[str, str] | None
"""What the child answers for a batch: None when committed, else (error class, message)."""
log = logging.getLogger("shopkeep.store")


class WriterProcessDied(sqlite3.OperationalError):
    """The writer process ended or broke its pipe: the batch in flight may or may not have
    committed (the store's fault, not the caller's; reload state from the store). Not
    ``batch_sent``: no process took the batch (none could be started, or the last could not
    open the database), so it did not commit."""

    def __init__(self, message: str, *, batch_sent: bool = True) -> None:
        super().__init__(message)
        self.batch_sent = batch_sent


class BatchNotSent(Exception):
    """A batch could not be encoded for the writer process (a parameter that does not pickle):
    nothing was sent, so the batch may be run elsewhere to find the unit at fault."""


def encode(payload: Any) -> bytes:
    """A frame's body: the pickled payload."""
    return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def send(stream: IO[bytes], data: bytes) -> None:
    """Send one frame whose body is ``data``."""
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def write_frame(stream: IO[bytes], payload: Any) -> None:
    """Send one pickled frame."""
    send(stream, encode(payload))


def read_frame(stream: IO[bytes]) -> tuple[bool, Any]:
    """Receive one frame: (True, payload), or (False, None) at the end of the input."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return False, None
    (size,) = HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return False, None
    return True, pickle.loads(data)


def commit_statements(conn: sqlite3.Connection, statements: list[tuple[str, Any, bool]]) -> Outcome:
    """Run ``statements`` in one transaction; on any error roll back and name the error."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params, many in statements:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
        conn.execute("COMMIT")
        return None
    except Exception as exc:
        if conn.in_transaction:
            # SQLite may have rolled back by itself (e.g. after SQLITE_FULL)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        return type(exc).__name__, str(exc)


def error_of(outcome: tuple[str, str]) -> Exception:
    """The child's error as an exception of the same sqlite3 class, or an OverflowError (a
    value SQLite cannot bind: the data's fault, as it would be in this process); sqlite3.Error
    otherwise."""
    name, message = outcome
    if name == "OverflowError":
        return OverflowError(message)
    if name == CANNOT_OPEN:
        return sqlite3.OperationalError(message)
    kind = getattr(sqlite3, name, None)
    if isinstance(kind, type) and issubclass(kind, sqlite3.Error):
        return kind(message)
    return sqlite3.Error(f"{name}: {message}")


FileIdentity = tuple[int, ...]
"""The database's files as the system knows them, whatever their names: (device, inode) of
the database, then of its ``-wal`` and its ``-shm`` (each (0, 0) when it was not there: a
database not in WAL mode has neither)."""

WAL_FILES: Final = ("-wal", "-shm")
"""The endings of the files SQLite keeps beside a database in WAL mode (its own
``-journal`` belongs to the other modes)."""

_ABSENT: Final = (0, 0)


def _inode(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:  # gone, or its folder closed to this process: not to be written either
        return None
    return found.st_dev, found.st_ino


def file_identity(path: str) -> FileIdentity | None:
    """The files ``path`` and its ``-wal`` and ``-shm`` name now (None: no database there,
    or none this process may look at)."""
    database = _inode(path)
    if database is None:
        return None
    beside = [_inode(path + ending) or _ABSENT for ending in WAL_FILES]
    return tuple(number for pair in (database, *beside) for number in pair)


def check_still_named(path: str, identity: FileIdentity) -> None:
    """Raise sqlite3.OperationalError (the store refusing, nothing written) when ``path`` no
    longer names the database opened as ``identity``: removed, its writes would be lost when
    the server stops (SQLite writes on into the unlinked file, and the next start makes an
    empty shop); renamed or replaced, they would go where no one looks for them.

    Its ``-wal`` or ``-shm`` removed or replaced (an operator "cleaning up"), the same: SQLite
    would commit on into the removed ``-wal``, which no other connection reads and a crash
    takes with it; the writer's connection copies what it holds into the database file
    (:func:`refuse_unless_named`), but goes on with it only once the server starts again."""
    if _inode(path) != identity[:2]:
        raise sqlite3.OperationalError(
            f"the database file {path} is no longer there (removed, renamed or replaced): "
            "nothing is written until it is back"
        )
    beside = zip(identity[2::2], identity[3::2], strict=True)
    for ending, opened in zip(WAL_FILES, beside, strict=True):
        if opened != _ABSENT and _inode(path + ending) != opened:
            raise sqlite3.OperationalError(
                f"the database's {path}{ending} is no longer there (removed or replaced): "
                "nothing more is written (what was is in the database file); restart the "
                "server to go on"
            )


def refuse_unless_named(conn: sqlite3.Connection, path: str, identity: FileIdentity) -> None:
    """:func:`check_still_named`, with what the WAL of the writer's ``conn`` holds copied into
    the database file first when it refuses: a ``-wal`` removed under the server held every
    write since the last checkpoint, which a crash would take with it."""
    try:
        check_still_named(path, identity)
    except sqlite3.OperationalError:
        with contextlib.suppress(sqlite3.Error):
            checkpoint(conn)
        raise


def database_uri(path: str | os.PathLike[str], query: str) -> str:
    """SQLite's URI of the database at the absolute ``path``, opened as ``query`` says
    (``mode=ro``, ``mode=rw``, ``immutable=1``): its name escaped as a URI's, so that a ``?``
    or ``#`` in it is no parameter."""
    return f"{Path(path).as_uri()}?{query}"


def existing_uri(path: str) -> str:
    """SQLite's URI of ``path`` opened read-write only if it is there: a plain name makes an
    empty database where the file was removed (a shop with nothing in it, 0644)."""
    return database_uri(os.path.abspath(path), "mode=rw")


def check_writable(conn: sqlite3.Connection) -> None:
    """Raise sqlite3.OperationalError if ``conn`` cannot write: SQLite opens a file it may not
    write read-only without a word, and every commit then fails until the connection is made
    again, whatever the file's permissions become."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        conn.execute("ROLLBACK")


class Checkpointer:
    """Copies the WAL's new pages into the database file every ``every_s`` seconds, on a
    connection and a thread of its own, so that no commit does it.

    Why: left to SQLite, the commit that takes the WAL past 1000 pages copies them into the
    database file and syncs it before it returns, and under load that is one commit in a
    hundred: 8-19 ms instead of 1 (4-5 ms of it CPU, in the writer process), the tail of every
    placement's latency. A PASSIVE checkpoint waits for no writer or reader and none waits
    for it; run this often, each copies a few hundred pages. The writers keep an automatic
    checkpoint only past :data:`BACKSTOP_PAGES`, in case this one falls behind or is gone.

    Lives here, in a module of the standard library only, as the writer process runs it too.
    """

    def __init__(self, path: str, synchronous: str, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._path = path
        self._synchronous = synchronous
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shopkeep-checkpoint", daemon=True)

    def start(self) -> None:
        """Begin checkpointing, in the background."""
        self._thread.start()

    def close(self) -> None:
        """Stop, after the checkpoint under way if any."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            conn = open_checkpointer(self._path, self._synchronous)
        except sqlite3.Error:
            return  # the file is gone: the writer's backstop checkpoints, if it writes at all
        try:
            while not self._stop.wait(self._every_s):
                with contextlib.suppress(sqlite3.Error):  # tried again in every_s; the backstop
                    checkpoint(conn)  # bounds the WAL meanwhile
        finally:
            conn.close()


def checkpoint_aside(conn: sqlite3.Connection, path: str, synchronous: str) -> Checkpointer:
    """Leave the checkpoints of the writer's ``conn`` to a :class:`Checkpointer`, started now
    (``conn`` checkpoints by itself only past :data:`BACKSTOP_PAGES`); close it before
    ``conn``. The WAL that ``conn`` starts over is cut back to :data:`WAL_KEPT_BYTES`."""
    conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_KEPT_BYTES}")
    checkpointer = Checkpointer(path, synchronous)
    checkpointer.start()
    return checkpointer


def open_checkpointer(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection to checkpoint ``path`` with (syncing the database file as ``synchronous``
    says, as the writer's own checkpoints would)."""
    conn = sqlite3.connect(
        existing_uri(path), isolation_level=None, check_same_thread=False, uri=True
    )
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int]:
    """Copy into the database file what the WAL holds that no reader still needs; (pages in
    the WAL, pages copied)."""
    _, pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return pages, copied


class WriterProcess:
    """The parent's handle on the child: send a batch, get its outcome (blocking: call it from
    the writer thread, never from the event loop)."""

    def __init__(
        self,
        path: str,
        synchronous: str,
        keep_fds: tuple[int, ...] = (),
        identity: FileIdentity | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.keep_fds = keep_fds
        self.identity = identity
        """The database file the store opened: a child finding another at ``path`` writes
        nothing (see :func:`check_still_named`)."""
        self._child: subprocess.Popen[bytes] | None = None
        self._not_before = 0.0  # no new child before then: the last could not open the file

    def _started(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is not None and child.poll() is not None:
            self._reap()  # died since its last batch
            child = None
        if child is None:
            if time.monotonic() < self._not_before:
                raise WriterProcessDied(
                    "the writer process could not open the database for writing; another is "
                    f"started {REOPEN_AFTER_S:g} s after", batch_sent=False,
                )
            named = () if self.identity is None else tuple(map(str, self.identity))
            child = self._child = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, self.path, self.synchronous, *named],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=self.keep_fds,
            )
        return child

    def start(self) -> None:
        """Start the child now (otherwise it starts with the first batch)."""
        self._started()

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        return None if self._child is None else self._child.pid

    def commit(
        self, statements: list[tuple[str, Any, bool]], *, fresh_schema: bool = False
    ) -> Outcome:
        """Plan and commit ``statements`` in the child (with ``fresh_schema``, after reading
        the schema again). Raises :class:`WriterProcessDied` when the child is gone or cannot
        be started (the next batch starts a new one), and :class:`BatchNotSent` when
        ``statements`` cannot be pickled."""
        try:
            data = encode((fresh_schema, statements))
        except Exception as exc:  # pickling raises whatever the object's reducer raises
            raise BatchNotSent(f"the batch cannot be sent to the writer process: {exc}") from exc
        try:
            child = self._started()
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            self._child = None
            raise WriterProcessDied(
                f"cannot start the writer process: {exc}", batch_sent=False
            ) from exc
        assert child.stdin is not None and child.stdout is not None
        try:
            send(child.stdin, data)
            answered, outcome = read_frame(child.stdout)
        except (BrokenPipeError, OSError) as exc:
            self._reap()
            raise WriterProcessDied(f"the writer process is gone: {exc}") from exc
        if not answered:
            self._reap()
            raise WriterProcessDied("the writer process ended in the middle of a batch")
        result: Outcome = outcome
        if result is not None and result[0] == CANNOT_OPEN:
            # it leaves now; while that lasts, no new child at every batch
            self._not_before = time.monotonic() + REOPEN_AFTER_S
            self._reap(f"it could not open the database for writing: {result[1]}")
        return result

    def close(self, timeout: float = 30.0) -> None:
        """End the child: close its input and wait for it to exit (killed after ``timeout``)."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def _reap(self, why: str | None = None) -> None:
        """The child died (or was cut off mid-frame, or leaves ``why``): end it for good, and
        say so."""
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            status = child.wait()
            how = why or (f"killed by signal {-status}" if status < 0 else f"exit status {status}")
            # a sentence for a program's own logging; for shopkeep's pipeline an event and its
            # fields, which it takes from ``extra`` (logs.STDLIB_FIELDS)
            log.warning(
                "writer_process_ended: the writer process %d ended (%s); the next batch "
                "starts another", child.pid, how,
                extra={"event": "writer_process_ended", "pid": child.pid, "how": how},
            )
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


def load_batch_plan() -> ModuleType:
    """:mod:`shopkeep.store.batch_plan`, loaded from its file beside this one: the child runs
    this module as a script, where the package cannot be imported."""
    spec = importlib.util.spec_from_file_location(
        "batch_plan", Path(__file__).with_name("batch_plan.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def open_writer(path: str, synchronous: str, identity: FileIdentity | None) -> sqlite3.Connection:
    """The child's connection to the database at ``path``, the file the store opened
    (``identity``), able to write; raises sqlite3.Error or OSError (see the callers)."""
    if identity is not None:
        # before too: a connection of this process to another file there would take the
        # database's -wal and -shm, beside it by name, for its own
        check_still_named(path, identity)
    conn = sqlite3.connect(
        existing_uri(path), isolation_level=None, cached_statements=STATEMENT_CACHE, uri=True
    )
    try:
        conn.execute("PRAGMA busy_timeout = 5000")  # first: a killed predecessor may need recovery
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        if identity is not None:
            check_still_named(path, identity)
        check_writable(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def main(argv: list[str]) -> int:
    """The child: plan and commit each batch from stdin, answer each on stdout, until end of
    input."""
    # The parent ends this process by ending its input, after its last batch. A Ctrl-C at a
    # terminal, a service manager stopping the whole group, or the terminal closing (SIGHUP)
    # signals this process too: left to their defaults, SIGINT would print a
    # KeyboardInterrupt's traceback and SIGTERM and SIGHUP end it at once, failing the batches
    # the parent is still flushing (the server stops gracefully on all three).
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_IGN)
    path, synchronous, *named = argv
    identity = tuple(map(int, named)) if named else None
    batch_plan = load_batch_plan()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    try:
        conn = open_writer(path, synchronous, identity)
    except (sqlite3.Error, OSError) as exc:
        # the batch it was started for is answered why; the parent starts another for a later
        # one (the file's permissions put right, the file back at its name)
        received, _ = read_frame(source)
        if received:
            write_frame(sink, (CANNOT_OPEN, f"cannot write the database: {exc}"))
        return OPEN_FAILED
    checkpointer = checkpoint_aside(conn, path, synchronous)
    schema = None  # what the plan knows of the tables; None: read it
    try:
        while True:
            received, frame = read_frame(source)
            if not received:
                return 0
            fresh_schema, statements = frame
            if identity is not None:
                try:
                    refuse_unless_named(conn, path, identity)
                except sqlite3.OperationalError as exc:
                    write_frame(sink, (type(exc).__name__, str(exc)))
                    continue
            calls, schema = batch_plan.planned(conn, statements, None if fresh_schema else schema)
            write_frame(sink, commit_statements(conn, calls))
    except BrokenPipeError:
        return 0  # the parent is gone; whatever was committed is durable, the rest never began
    finally:
        checkpointer.close()
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
