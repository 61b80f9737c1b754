"""Loads by key asked in one turn of the event loop are made as one query."""

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shopkeep.store.reader import InlineReader, KeyedLoads, Row

SQL = "SELECT id, name FROM things WHERE id IN (SELECT value FROM json_each(?))"


class CountingReader(InlineReader):
    """An inline reader that counts its queries, and fails them when told to."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.queries = 0
        self.failing = False

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.queries += 1
        if self.failing:
            raise sqlite3.OperationalError("disk I/O error")
        return await super().fetchall(sql, params)


@pytest.fixture
def reader(tmp_path: Path) -> CountingReader:
    conn = sqlite3.connect(tmp_path / "things.db", isolation_level=None)
    conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO things VALUES (?, ?)", [(n, f"thing {n}") for n in range(10)])
    return CountingReader(conn)


async def test_the_loads_of_one_turn_are_one_query(reader: CountingReader) -> None:
    loads = KeyedLoads(reader)

    rows = await asyncio.gather(*(loads.load(SQL, key) for key in (3, 1, 4, 1, 5)))

    assert rows == [("thing 3",), ("thing 1",), ("thing 4",), ("thing 1",), ("thing 5",)]
    assert reader.queries == 1


async def test_a_key_without_a_row_answers_none(reader: CountingReader) -> None:
    loads = KeyedLoads(reader)

    found, missing = await asyncio.gather(loads.load(SQL, 2), loads.load(SQL, 99))

    assert (found, missing) == (("thing 2",), None)


async def test_loads_of_later_turns_are_queries_of_their_own(reader: CountingReader) -> None:
    loads = KeyedLoads(reader)

    assert await loads.load(SQL, 1) == ("thing 1",)
    assert await loads.load(SQL, 2) == ("thing 2",)
    assert reader.queries == 2


async def test_a_failed_query_fails_every_load_of_its_turn(reader: CountingReader) -> None:
    loads = KeyedLoads(reader)
    reader.failing = True

    answers = await asyncio.gather(loads.load(SQL, 1), loads.load(SQL, 2), return_exceptions=True)

    assert [type(answer) for answer in answers] == [sqlite3.OperationalError] * 2
    reader.failing = False
    assert await loads.load(SQL, 1) == ("thing 1",)  # and the next turn's loads go on


async def test_a_cancelled_load_leaves_the_others_of_its_turn_answered(
    reader: CountingReader,
) -> None:
    loads = KeyedLoads(reader)
    first = asyncio.ensure_future(loads.load(SQL, 1))
    second = asyncio.ensure_future(loads.load(SQL, 2))
    await asyncio.sleep(0)  # one yield: both tasks run up to their wait, in this turn
    first.cancel()

    assert await second == ("thing 2",)
    assert first.cancelled()
