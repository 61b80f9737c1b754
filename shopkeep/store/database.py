"""Opening the database: the process lock, pragmas, migrations, the writer and the reader."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Final

import structlog

from shopkeep.store.errors import UNREADABLE, StoreError, unreadable
from shopkeep.store.lock import ProcessLock, held
from shopkeep.store.migrations import (
    MIGRATIONS,
    Migration,
    apply_migrations,
    refuse_another_programs,
    refuse_damaged,
    refuse_newer,
    schema_version,
)
from shopkeep.store.private_files import (
    SQLITE_BESIDE,
    create_private,
    database_name_problem,
    holds_anything,
    make_private,
    open_to_others,
    remove_database,
    remove_made_beside,
)
from shopkeep.store.reader import InlineReader, KeyedLoads, Reader, ThreadedReader
from shopkeep.store.settings import file_id, give_file_id
from shopkeep.store.writer import GroupCommitWriter
from shopkeep.store.writer_process import (
    STATEMENT_CACHE,
    Checkpointer,
    WriterProcess,
    checkpoint_aside,
    database_uri,
    file_identity,
)

SYNCHRONOUS_MODES = ("FULL", "NORMAL")
WRITER_MODES = ("thread", "process")

log = structlog.get_logger("shopkeep.store")
_SAID_NOT_PRIVATE: set[str] = set()
"""The databases whose loose mode this process has warned of already."""


@dataclass(frozen=True)
class StoreConfig:
    """How to open the store.

    ``synchronous``: FULL (the default) fsyncs the WAL at every commit, so a commit survives a
    power cut; NORMAL only at checkpoints (a commit survives a crash of the process, not of the
    machine). ``inline``: no threads at all, for the seeded deterministic mode. ``writer``:
    "thread" commits on a thread of this process, "process" on a process of its own (see
    :mod:`shopkeep.store.writer_process`; ignored when inline). The process is the default:
    measured back to back with the thread, it commits as fast on the runtime bench's commit
    section (on two cores and on one) and on the embedded shop bench, uses a third less of
    this process's CPU a unit, and gives the server a higher capacity under the soak's mix.
    ``lock_wait_s``: how long to wait for another process's lock before refusing (see
    :meth:`ProcessLock.acquire`). ``check_pages``: read every page of a shop's file first
    (:func:`~shopkeep.store.migrations.refuse_damaged`) and refuse a damaged one before
    anything of it changes (the server's first open: what would fail later, a page at a
    time, once it had written to it). ``agree``: a check of a file being migrated, run in the
    migrations' transaction (see :func:`~shopkeep.store.migrations.apply_migrations`): what it
    raises refuses the open and leaves the file unmigrated. Either writer leaves the WAL's
    checkpoints to a thread of its own (:class:`~shopkeep.store.writer_process.Checkpointer`),
    out of the commits.
    """

    path: str
    synchronous: str = "FULL"
    migrations: Sequence[Migration] = field(default=MIGRATIONS)
    inline: bool = False
    max_batch: int = 1024
    writer: str = "process"
    lock_wait_s: float = 2.0
    check_pages: bool = False
    agree: Callable[[sqlite3.Connection], None] | None = None


class Store:
    """One SQLite file: a group-commit writer, three read connections, and the lock that owns
    them.

    ``reader`` runs each query on a thread of its own (aiosqlite): for lists, history,
    whatever may read many rows; ``audit_reader`` likewise, for the audit alone.
    ``point_reader`` runs each query on the caller's thread: for the small reads by key that
    load an actor's state or check its ledger, where a thread hop costs tens of microseconds
    of the event loop's time and waits for the GIL (under load, about a millisecond a read),
    and the read itself, from SQLite's cache, a few microseconds.
    """

    def __init__(
        self,
        config: StoreConfig,
        lock: ProcessLock,
        conn: sqlite3.Connection,
        writer: GroupCommitWriter,
        reader: Reader,
        schema_version: int,
        point_reader: Reader | None = None,
        checkpointer: Checkpointer | None = None,
        audit_reader: Reader | None = None,
    ) -> None:
        self.config = config
        self.writer = writer
        self.reader = reader
        self.point_reader = reader if point_reader is None else point_reader
        self.audit_reader = reader if audit_reader is None else audit_reader
        """A read connection of the audit's own: it reads every order (seconds on a shop of a
        few hundred thousand), and on :attr:`reader` the lists, the logins and the actors'
        loads queued behind it for as long. Opened with the others, never later by the
        database's name, which may by then name another file (a connection of this process
        to another file there took the live database's -wal and -shm for its own, and removed
        them as it closed)."""
        self.keyed_loads = KeyedLoads(reader)
        """``reader``'s loads by key, those of one loop turn made as one query."""
        self.schema_version = schema_version
        self._lock = lock
        self._conn = conn
        self._checkpointer = checkpointer

    def wal_bytes(self) -> int:
        """The size of the database's WAL file now (0 with none). Under load it cycles up to
        about 41 MB; past that, a reader holds an old snapshot (a backup under load, a sqlite3
        shell left in a transaction) and the WAL grows until it ends, then is cut back to
        ``writer_process.WAL_KEPT_BYTES`` when it starts over."""
        try:
            return os.stat(f"{self.config.path}-wal").st_size
        except OSError:
            return 0

    @classmethod
    async def open(cls, config: StoreConfig) -> Store:
        """Lock the file, apply migrations, start the writer. Raises :class:`StoreError`."""
        if config.synchronous not in SYNCHRONOUS_MODES:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if config.writer not in WRITER_MODES:
            raise StoreError(f"writer must be one of {', '.join(WRITER_MODES)}")
        path = config.path
        misnamed = database_name_problem(path)
        if misnamed is not None:
            raise StoreError(f"cannot open database {path!r}: {misnamed}")
        if os.path.isdir(path):
            raise StoreError(f"cannot open database {path}: it is a directory")
        if os.path.exists(path) and not os.path.isfile(path):
            # a device or a pipe: SQLite would fail on it only once it made its journal
            # beside it (in /dev, for /dev/null), and the lock file too
            raise StoreError(f"cannot open database {path}: not a regular file")
        lock = ProcessLock(path)
        await lock.acquire_soon(config.lock_wait_s)
        # where a symbolic link points, since SQLite creates the files there
        real_path = os.path.realpath(path)
        made = False

        # what SQLite keeps beside the file when it is there already: the first look may
        # make the others, which a refusal takes away again
        beside = {suffix for suffix in SQLITE_BESIDE if os.path.exists(real_path + suffix)}

        def give_up() -> None:
            # refused or failed: nothing this opening made is left, the lock file included;
            # a database it made half (a full disk cut its migrations) would be taken for
            # a shop's by the next command
            if made:
                remove_database(real_path)
            else:
                remove_made_beside(real_path, beside)
            lock.release(undo=True)

        try:
            try:
                # before SQLite creates it (and its -wal, -shm) 0644
                made = create_private(real_path)
            except OSError as exc:
                raise StoreError(f"cannot open database {path}: {exc.strerror}") from exc
            # the version found, as the lock keeps it until the migrations below
            found = look_at(real_path, path, config.migrations, config.check_pages)
            mine = functools.partial(adopt, real_path=real_path, named=path)
            conn = connect(path, config.synchronous, mine)
            readers: list[InlineReader | ThreadedReader] = []
            try:
                version = apply_migrations(conn, config.migrations, config.agree)
                give_file_id(conn)
                if 0 < found < version:  # an upgrade: once, said (a new file is made, not one)
                    log.info("database_migrated", path=path, from_version=found, to_version=version)
                reader: Reader
                point_reader: Reader | None = None
                audit_reader: Reader | None = None
                if config.inline:
                    reader = InlineReader.open(path)
                    readers.append(reader)
                else:
                    reader = await ThreadedReader.open(path)
                    readers.append(reader)
                    point_reader = InlineReader.open(path)
                    readers.append(point_reader)
                    audit_reader = await ThreadedReader.open(path)
            except BaseException:
                # an open cut short (cancelled, a Ctrl-C) closes what it opened: a reader's
                # thread left running kept the program from ever exiting
                for cut in readers:
                    cut.abandon()
                conn.close()
                raise
        except UNREADABLE as exc:
            give_up()
            raise StoreError(f"cannot open database {path}: {unreadable_at(path, exc)}") from exc
        except BaseException:
            give_up()
            raise
        # the file the store opened: while the path names another, or none, nothing is
        # written (see check_still_named)
        identity = file_identity(real_path)
        assert identity is not None  # open, and made if it was missing
        process = None
        if config.writer == "process" and not config.inline:
            assert lock.fd is not None
            process = WriterProcess(
                path, config.synchronous, keep_fds=(lock.fd,), identity=identity
            )
            try:
                process.start()
            except OSError as exc:
                for opened in {reader, point_reader or reader, audit_reader or reader}:
                    await opened.close()
                conn.close()
                give_up()
                raise StoreError(f"cannot start the writer process: {exc}") from exc
        checkpointer = None
        if config.writer == "thread" and not config.inline:
            # the writer process runs its own; inline, SQLite's automatic one (no threads)
            checkpointer = checkpoint_aside(conn, path, config.synchronous)
        writer = GroupCommitWriter(
            conn, inline=config.inline, max_batch=config.max_batch, process=process,
            named=(real_path, identity),
        )
        writer.start()
        return cls(
            config, lock, conn, writer, reader, version, point_reader, checkpointer, audit_reader
        )

    async def close(self) -> None:
        """Flush the writer, close the connections, release the lock."""
        try:
            await self.writer.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
            for opened in {self.reader, self.point_reader, self.audit_reader}:
                await opened.close()
            self._conn.close()
        finally:
            self._lock.release()


def look_at(
    real_path: str, named: str, migrations: Sequence[Migration], check_pages: bool
) -> int:
    """The schema version of the database at ``real_path`` (``named`` so by the user), looked
    at on a read-only connection before anything of it changes: another program's is refused
    (:func:`refuse_another_programs`), one beside another file's ``-wal``
    (:func:`refuse_another_files_wal`), a newer shopkeep's, and with ``check_pages`` a damaged
    one (:func:`refuse_damaged`). Read only, so that closing it writes nothing: a read-write
    connection, the last to close, copies what the ``-wal`` holds into the file and removes
    the ``-wal``, which for a ``-wal`` left from an older copy of the file (the damage
    refused) overwrote the newer pages with the older ones, for good."""
    conn = sqlite3.connect(database_uri(real_path, "mode=ro"), uri=True)
    try:
        refuse_another_programs(conn, migrations)
        refuse_another_files_wal(conn, real_path, named)
        if check_pages:
            refuse_damaged(conn)
        return refuse_newer(conn, migrations)
    except sqlite3.OperationalError:  # busy, locked: no word on the pages
        raise
    except sqlite3.DatabaseError as damaged:
        refuse_a_wal_that_does_not_fit(real_path, named, damaged)
        raise
    finally:
        conn.close()


def read_only_uri(real_path: str) -> str:
    """How to read the database at ``real_path`` (a closed one, for the audit or a backup)
    without writing anything of it: ``mode=ro``; in a folder this process cannot write, where
    SQLite cannot make the ``-shm`` a database in WAL mode needs even to be read, as a file
    nothing changes (``immutable``), unless commits wait in its ``-wal`` (which that reading
    would not see) or a write cut short left its journal (whose half-done pages only a
    connection that may write rolls back): then sqlite3.OperationalError, saying which."""
    uri = database_uri(real_path, "mode=ro")
    try:
        with closing(sqlite3.connect(uri, uri=True)) as probe:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        journal = real_path + "-journal"
        if holds_anything(journal):
            raise sqlite3.OperationalError(
                f"a write cut short left {os.path.basename(journal)} beside it, which only "
                "opening the file for writing rolls back (a restore from it, or a server on it)"
            ) from None
        if os.access(os.path.dirname(real_path), os.W_OK) or holds_anything(real_path + "-wal"):
            raise  # busy, or a -wal's commits that an immutable reading would not see
        if held(real_path):  # a server on it (starting, say): it changes under the reading
            raise sqlite3.OperationalError(
                "a server holds it, and this folder cannot be written, as reading a database "
                "in WAL mode beside its server needs: read it where the server does"
            ) from None
        return database_uri(real_path, "immutable=1")
    except sqlite3.DatabaseError:
        pass  # the file's own trouble: the reading that follows says it, and what to do
    return uri


FULL_BELOW_BYTES: Final = 1 << 20
"""Less free space than this on a database's disk is said beside an error opening it."""


def unreadable_at(path: str, error: BaseException) -> str:
    """What opening or reading the database at ``path`` failed with (:func:`unreadable`), and
    that its disk is full when it is (:func:`disk_full_beside`)."""
    said = unreadable(error)
    if "full" in said:  # SQLite's "database or disk is full" says it already
        return said
    return said + disk_full_beside(path)


def disk_full_beside(path: str) -> str:
    """``" (its disk is full: ...)"`` when the disk holding ``path`` (where its links lead)
    has next to no room left (SQLite says "disk I/O error" when it cannot grow the -wal or
    -shm of a database already there), else ``""``."""
    try:
        disk = os.statvfs(os.path.dirname(os.path.realpath(path)))
    except OSError:
        return ""
    if disk.f_blocks == 0:  # no disk at all (/proc, /sys): nothing there is ever free
        return ""
    free = disk.f_bavail * disk.f_frsize
    return f" (its disk is full: {free:,} bytes free)" if free < FULL_BELOW_BYTES else ""


def refuse_a_wal_that_does_not_fit(
    real_path: str, named: str, damaged: sqlite3.DatabaseError
) -> None:
    """StoreError saying what to do (:func:`wal_misfit`) when the database read through its
    ``-wal`` is ``damaged`` but the file alone is whole. Else nothing: the damage is the
    file's."""
    misfit = wal_misfit(real_path, str(damaged))
    if misfit is not None:
        raise StoreError(f"cannot open database {named}: {misfit}") from damaged


def wal_misfit(real_path: str, damage: str) -> str | None:
    """For a database found damaged read through its ``-wal`` (``damage``: what was said of
    it): when the file alone is whole, what is most likely wrong and what to do, ``damage``
    after it (a ``-wal`` the file that was there before left, beside a copy put over it: one
    in WAL mode, since :func:`wal_not_its_own` knows a backup's); else None, the damage being
    the file's."""
    if not holds_anything(real_path + "-wal"):
        return None
    try:
        with closing(sqlite3.connect(database_uri(real_path, "immutable=1"), uri=True)) as alone:
            refuse_damaged(alone)
    except sqlite3.DatabaseError:
        return None
    return (
        "the file alone is whole, but read with the -wal beside it, it is damaged: a -wal "
        f"of the file that was there before a copy was put over it? Then {WAL_REMEDY}; if no "
        f"copy was, keep both, the -wal holds commits ({damage[:120]})"
    )


def refuse_another_files_wal(conn: sqlite3.Connection, real_path: str, named: str) -> None:
    """StoreError when the ``-wal`` beside the database was written for another file
    (:func:`wal_not_its_own`)."""
    mismatch = wal_not_its_own(conn, real_path)
    if mismatch is not None:
        raise StoreError(f"cannot open database {named}: {mismatch}")


class WalNotItsOwn(sqlite3.DatabaseError):
    """What reads a database refuses it with when the ``-wal`` beside it was written for
    another file (:func:`wal_beside_refused`): its message says which and what to do."""


def wal_beside_refused(real_path: str) -> str | None:
    """Why the ``-wal`` beside the database at ``real_path`` was written for another file
    (:func:`wal_not_its_own`, looked at read-only), or None: for what reads a file without
    serving it (the audit, a backup, a restore), which would read another file's pages.
    SQLite reads any ``-wal`` it finds beside a file, a file in rollback mode's too (a
    backup's copy put over the file by hand), whatever its header says."""
    if not holds_anything(real_path + "-wal"):
        return None
    with closing(sqlite3.connect(database_uri(real_path, "mode=ro"), uri=True)) as conn:
        return wal_not_its_own(conn, real_path)


def wal_not_its_own(conn: sqlite3.Connection, real_path: str) -> str | None:
    """Why the ``-wal`` beside the database was written for another file, or None: the file
    is in rollback mode (a backup's copy put over the file by hand: no -wal is its), or the
    ``-wal`` is another database's (:func:`another_databases_wal`)."""
    if not holds_anything(real_path + "-wal"):
        return None
    if journal_of(real_path) == ROLLBACK:
        # a file in WAL mode says so in its header for good (SQLite writes it there, through
        # the rollback journal, before the first -wal), so a -wal beside a file that says
        # rollback was written for the file that was there before this one: a backup's copy
        # (one file in rollback mode) put over it by hand. Its own id is the shop's, so the
        # id's check below cannot tell; read through it, the shop was half each, or lost
        # what was committed after the backup for good at the checkpoint
        return (
            "the -wal beside it was written for the file that was there before it, a copy "
            f"put over it: {WAL_REMEDY}"
        )
    return another_databases_wal(conn, real_path)


def another_databases_wal(conn: sqlite3.Connection, real_path: str) -> str | None:
    """Why the ``-wal`` ``conn`` reads the database at ``real_path`` through is another
    database's, or None: the file's own id (:data:`~shopkeep.store.settings.FILE_ID`, read
    from the file alone) is not the one read through the ``-wal``. Another shop's ``-wal``
    holds a whole database's pages, which no check of pages can tell from the file's own: a
    server served the other shop, and its checkpoint made that for good. A file given no id
    yet (by a shopkeep of before it, until its first start here) is not told apart."""
    alone = database_uri(real_path, "immutable=1")  # the file's pages, its -wal ignored
    try:
        with closing(sqlite3.connect(alone, uri=True)) as main:
            own = file_id(main)
        seen = file_id(conn)
    except sqlite3.DatabaseError:
        # the file alone need not read: a checkpoint cut by a kill -9 leaves it whole only
        # with its -wal (an id never changes, so one that reads is the file's); and what the
        # -wal makes of it may not read either: refuse_damaged says so
        return None
    if own is not None and seen != own:
        return (
            "the -wal beside it was written for another database (move it away: the file is "
            "whole without it)"
        )
    return None


WAL_REMEDY: Final = (
    "put that file back, or move the -wal and -shm away to open the copy as it is (a backup "
    "is restored with shopkeep restore, which keeps the file it replaces with its -wal)"
)
"""What to do with a -wal left beside a copy put over the database file."""
ROLLBACK: Final = 1
"""The file format's version, bytes 18 and 19 of a database's header, in rollback-journal
mode (2: WAL mode)."""
_HEADER: Final = b"SQLite format 3\x00"


def not_sqlite(path: str) -> bool:
    """Whether a file at ``path`` holds something else than an SQLite database: bytes, and
    not SQLite's header first (no file, or an empty one, holds nothing that could be lost)."""
    try:
        with open(path, "rb") as file:
            header = file.read(len(_HEADER))
    except FileNotFoundError:
        return False
    except OSError:  # a folder, say: not a database either
        return True
    return bool(header) and header != _HEADER


def journal_of(path: str) -> int | None:
    """The file format version the header of the database at ``path`` says (:data:`ROLLBACK`
    or 2, WAL), or None when it has no header to read (empty, not SQLite's)."""
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return None
    if len(header) < 20 or not header.startswith(_HEADER) or header[18] != header[19]:
        return None
    return header[18]


def adopt(conn: sqlite3.Connection, real_path: str, named: str) -> None:
    """Make the database ``conn`` opened its owner's, before anything of it changes: a new
    one, or an empty one found there (``touch``, a deploy tool, an empty SQLite file), is the
    shop's now, and made its owner's alone with the files beside it before SQLite makes more;
    a shop's that others may read is said (``named``: the path as the user gave it)."""
    if schema_version(conn) == 0:
        try:
            make_private(real_path)
        except OSError as exc:
            raise StoreError(f"cannot open database {named}: {exc.strerror}") from exc
        return
    mode = open_to_others(real_path)
    if mode is not None and real_path not in _SAID_NOT_PRIVATE:
        # its owner's choice (a group that reads it, say): said, not undone; once a process
        # (a server opens it twice as it starts: for its credentials, then as the shop)
        _SAID_NOT_PRIVATE.add(real_path)
        log.warning(
            "database_not_private", path=named, mode=f"{mode:04o}",
            detail="other users may read the shop's orders, wallets and token hashes, in the "
            "file and in the -wal and -shm SQLite makes with its mode: chmod 600 it unless "
            "that is meant",
        )  # fmt: skip


def connect(
    path: str,
    synchronous: str,
    first: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """A connection to ``path`` as the writer uses it: autocommit, WAL, ``synchronous``;
    ``first`` looks at the file before anything of it changes (and may raise)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=STATEMENT_CACHE
    )
    if first is not None:
        try:
            first(conn)
        except BaseException:
            conn.close()
            raise
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"cannot open database {path}: WAL mode refused (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn
