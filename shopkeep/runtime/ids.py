"""Time-ordered 64-bit ids (snowflake style): milliseconds since 2024 in the high bits.

One process writes a database, so there are no node bits: the low 22 bits are a sequence, and
an id is never smaller than one handed out before, even across restarts (``floor``) or when the
clock steps back (the sequence borrows from the next millisecond).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from shopkeep.runtime.clock import Clock

EPOCH_MS = 1_704_067_200_000
SEQUENCE_BITS = 22


class IdGenerator:
    """Unique, increasing ids derived from ``clock``."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Clock, floor: int = 0) -> None:
        self._clock = clock
        self._last = floor

    def next(self) -> int:
        """A new id, larger than every id this generator (or its floor) has seen."""
        candidate = (int(self._clock.now() * 1000) - EPOCH_MS) << SEQUENCE_BITS
        last = self._last + 1
        self._last = candidate if candidate > last else last
        return self._last

    def advance_to(self, floor: int) -> None:
        """Never hand out an id at or below ``floor`` (the largest id already stored)."""
        if floor > self._last:
            self._last = floor


def largest_stored_id(conn: sqlite3.Connection, also: Sequence[str] = ()) -> int:
    """The largest id already stored anywhere: ids must never be handed out twice, even when
    the clock stands still or steps back across a restart. Every table with an ``id`` column
    counts (the runtime does not know the application's tables, and need not), the timers'
    ``seq`` (each a primary-key lookup), and what each query of ``also`` answers: the
    application's ids kept in no ``id`` column (say, one reserved for a row never written)."""
    largest = int(conn.execute("SELECT coalesce(max(seq), 0) FROM timers").fetchone()[0])
    for sql in also:
        found = conn.execute(sql).fetchone()
        if found is not None and isinstance(found[0], int):
            largest = max(largest, found[0])
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        if "id" in columns:
            row = conn.execute(f'SELECT max(id) FROM "{table}"').fetchone()
            if row[0] is not None and isinstance(row[0], int):
                largest = max(largest, row[0])
    return largest
