"""The read connection: queries (lists, history, audit, state loads) never use the writer's.

In WAL mode a reader sees the last committed snapshot and never blocks the writer. Normally it is
an aiosqlite connection (its own thread); in the deterministic mode it is a plain connection used
inline on the loop thread, so that a seeded run has no thread whose timing could vary.
"""

from __future__ import annotations

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


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA busy_timeout = 5000")


class ThreadedReader:
    """A reader on aiosqlite: one thread hop per query."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str) -> ThreadedReader:
        """Open a read connection to the database at ``path``."""
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA query_only = 1")
        await conn.execute("PRAGMA busy_timeout = 5000")
        return cls(conn)

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
