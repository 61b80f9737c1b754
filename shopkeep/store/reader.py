"""The read connection: queries (lists, history, audit, state loads) never use the writer's.

In WAL mode a reader sees the last committed snapshot and never blocks the writer. Normally it is
an aiosqlite connection (its own thread); in the deterministic mode it is a plain connection used
inline on the loop thread, so that a seeded run has no thread whose timing could vary.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol, cast

import aiosqlite

Row = tuple[Any, ...]


class Reader(Protocol):
    """A read-only query interface over the committed state of the database."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of ``sql``."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of ``sql``, or ``None``."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


SETTINGS = ("PRAGMA query_only = 1", "PRAGMA busy_timeout = 5000", "SELECT 1 FROM sqlite_master")
"""A read connection's settings, then a first read: SQLite opens the database's -wal and -shm
at a connection's first read, by the database's name, and one whose file was renamed by then
refuses every read (disk I/O error)."""


def _configure(conn: sqlite3.Connection) -> None:
    for sql in SETTINGS:
        conn.execute(sql).fetchall()


class ThreadedReader:
    """A reader on aiosqlite: one thread hop per query."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str) -> ThreadedReader:
        """Open a read connection to the database at ``path``. Cut short (its caller
        cancelled), it leaves no thread: aiosqlite's is no daemon, and one left running kept
        the program from ever exiting (aiosqlite ends it when the connect itself is cut)."""
        conn = await aiosqlite.connect(path, isolation_level=None)
        opened = cls(conn)
        try:
            for sql in SETTINGS:
                await conn.execute_fetchall(sql)
        except BaseException:
            opened.abandon()
            raise
        return opened

    @property
    def connection(self) -> aiosqlite.Connection:
        """The aiosqlite connection (to register a function on it, say)."""
        return self._conn

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of ``sql``, in one hop."""
        rows = await self._conn.execute_fetchall(sql, params)
        return cast(list[Row], list(rows))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of ``sql``, or ``None``."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close the connection and its thread."""
        await self._conn.close()

    def abandon(self) -> None:
        """Close the connection and end its thread without waiting for them (an open cut
        short: there is no awaiting once cancelled)."""
        self._conn.stop()


class InlineReader:
    """A reader that runs each query on the calling thread (deterministic mode, tools)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str) -> InlineReader:
        """Open a read connection to the database at ``path``."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _configure(conn)
        return cls(conn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """All rows of ``sql``."""
        return list(self._conn.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of ``sql``, or ``None``."""
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    async def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def abandon(self) -> None:
        """Close the connection (as :meth:`close`, without awaiting)."""
        self._conn.close()


class KeyedLoads:
    """Loads of one row by its key, those asked in the same turn of the event loop made as one
    query: ``SELECT key, ... WHERE key IN (SELECT value FROM json_each(?))``.

    Why: an actor loaded once, cold, reads on the threaded reader so that SQLite's back-off
    sleeps cannot stall the loop; one thread hop per load cost the loop tens of microseconds
    and the load itself ~10 ms of queueing behind the others under load (64 customers each
    loading a coupon: p50 10 ms, against 2 ms with the loads of a turn made together).

    ``sql`` takes the keys as one JSON array and answers rows whose first column is the key;
    :meth:`load` answers the rest of the row, or None when no row has that key. A failed query
    fails every load of its turn.
    """

    __slots__ = ("_pending", "_reader")

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._pending: dict[str, dict[int, list[asyncio.Future[Row | None]]]] = {}

    async def load(self, sql: str, key: int) -> Row | None:
        """The row of ``key`` by ``sql`` (without the key column), or None."""
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[Row | None] = loop.create_future()
        batch = self._pending.get(sql)
        if batch is None:
            batch = self._pending[sql] = {}
            loop.call_soon(self._start, sql)
        batch.setdefault(key, []).append(waiting)
        return await waiting

    def _start(self, sql: str) -> None:
        batch = self._pending.pop(sql)
        task = asyncio.get_running_loop().create_task(self._query(sql, batch))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _query(self, sql: str, batch: dict[int, list[asyncio.Future[Row | None]]]) -> None:
        try:
            rows = await self._reader.fetchall(sql, (json.dumps(list(batch)),))
        except asyncio.CancelledError:  # the store is closing: so are the loads
            for waiting in itertools.chain.from_iterable(batch.values()):
                waiting.cancel()
            raise
        except Exception as error:
            for waiting in itertools.chain.from_iterable(batch.values()):
                if not waiting.done():
                    waiting.set_exception(error)
            return
        found = {int(row[0]): tuple(row[1:]) for row in rows}
        for key, waiters in batch.items():
            row = found.get(key)
            for waiting in waiters:
                if not waiting.done():  # its activation may have been cancelled
                    waiting.set_result(row)


_RUNNING: set[asyncio.Task[None]] = set()
"""The queries in flight (the loop keeps only weak references to tasks)."""
