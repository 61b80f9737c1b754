"""The batch plan: fewer driver calls, and never a different outcome than submission order."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopkeep.store import batch_plan
from shopkeep.store.batch_plan import Schema, Statement, plan, shape_of

SCHEMA = """
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL);
CREATE TABLE stock (id INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0), note TEXT);
CREATE TABLE timers (kind TEXT, id INTEGER, due REAL NOT NULL, PRIMARY KEY (kind, id))
    WITHOUT ROWID;
CREATE TABLE log (id INTEGER PRIMARY KEY, what TEXT NOT NULL);
"""
INSERT_ITEM = "INSERT INTO items (id, name, n) VALUES (?, ?, ?)"
IGNORE_ITEM = "INSERT OR IGNORE INTO items (id, name, n) VALUES (?, ?, ?)"
UPDATE_ITEM = "UPDATE items SET n = ? WHERE id = ?"
BUMP_ITEM = "UPDATE items SET n = n + ? WHERE id = ?"
RENAME_ITEM = "UPDATE items SET name = ? WHERE id = ?"
DELETE_ITEM = "DELETE FROM items WHERE id = ?"
INSERT_STOCK = "INSERT INTO stock (id, n) VALUES (?, ?)"
SET_STOCK = "UPDATE stock SET n = ?, note = ? WHERE id = ?"
ARM = "INSERT OR REPLACE INTO timers (kind, id, due) VALUES ('t', ?, ?)"
DISARM = "DELETE FROM timers WHERE kind = 't' AND id = ?"
LOG = "INSERT INTO log (what) VALUES (?)"
LOG_COUNT = "INSERT INTO log (what) VALUES ((SELECT count(*) FROM items))"


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    conn.executemany(INSERT_STOCK, [(i, 5) for i in range(4)])
    return conn


def run(conn: sqlite3.Connection, statements: list[Statement]) -> bool:
    """Run ``statements`` in one transaction; whether it committed."""
    conn.execute("BEGIN")
    try:
        for sql, params, many in statements:
            (conn.executemany if many else conn.execute)(sql, params)
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        return False
    conn.execute("COMMIT")
    return True


def dump(conn: sqlite3.Connection) -> dict[str, list[Any]]:
    return {
        table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("items", "stock", "timers", "log")
    }


def planned(statements: list[Statement], conn: sqlite3.Connection) -> list[Statement]:
    return plan(statements, Schema.read(conn), conn)[0]


def one(sql: str, *params: Any) -> Statement:
    return (sql, params, False)


def texts(calls: list[Statement]) -> list[str]:
    """The SQL of each call, a multi-row INSERT written as its one-row statement."""
    return [sql.partition("), (")[0] + (")" if "), (" in sql else "") for sql, _, _ in calls]


def test_statements_of_many_units_are_grouped_per_table_into_few_calls() -> None:
    conn = connect()
    statements = []
    for i in range(40):  # 40 units, each writing three tables
        statements += [one(INSERT_ITEM, i, f"i{i}", 1), one(LOG, f"u{i}"), one(ARM, i, 1.0)]
    calls = planned(statements, conn)
    assert len(calls) == 3 * 2  # each INSERT run: one 32-row and one 8-row statement
    assert run(conn, calls)
    reference = connect()
    assert run(reference, statements)
    assert dump(conn) == dump(reference)


def test_an_insert_then_update_of_one_row_keeps_its_order() -> None:
    conn = connect()
    statements = [
        one(INSERT_ITEM, 1, "a", 1),
        one(LOG, "x"),
        one(UPDATE_ITEM, 7, 1),
        one(INSERT_ITEM, 2, "b", 1),  # may not move before the UPDATE of its table
    ]
    calls = planned(statements, conn)
    assert texts(calls) == [INSERT_ITEM, LOG, UPDATE_ITEM, INSERT_ITEM]
    assert run(conn, calls)
    assert dump(conn)["items"] == [(1, "a", 7), (2, "b", 1)]


def test_a_timer_deleted_then_armed_again_stays_armed() -> None:
    conn = connect()
    statements = [one(ARM, 1, 1.0), one(LOG, "a"), one(DISARM, 1), one(LOG, "b"), one(ARM, 1, 2.0)]
    calls = planned(statements, conn)
    assert texts(calls) == [ARM, LOG, DISARM, ARM]
    assert run(conn, calls)
    assert dump(conn)["timers"] == [("t", 1, 2.0)]


def test_a_statement_that_reads_another_table_is_a_barrier() -> None:
    conn = connect()
    statements = [one(LOG, "a"), one(INSERT_ITEM, 1, "a", 1), one(LOG_COUNT), one(LOG, "b")]
    assert shape_of(LOG_COUNT) is None
    calls = planned(statements, conn)
    assert texts(calls) == [LOG, INSERT_ITEM, LOG_COUNT, LOG]


def test_a_table_with_a_trigger_is_never_reordered() -> None:
    conn = connect()
    conn.execute(
        "CREATE TRIGGER audit AFTER INSERT ON items BEGIN INSERT INTO log (what) "
        "VALUES ('item'); END"
    )
    statements = [one(INSERT_ITEM, 1, "a", 1), one(LOG, "x"), one(INSERT_ITEM, 2, "b", 1)]
    calls = planned(statements, conn)
    assert texts(calls) == [INSERT_ITEM, LOG, INSERT_ITEM]


def test_a_temp_trigger_counts_too() -> None:
    conn = connect()
    conn.execute(
        "CREATE TEMP TRIGGER audit AFTER INSERT ON main.items BEGIN INSERT INTO log (what) "
        "VALUES ('item'); END"
    )
    statements = [one(INSERT_ITEM, 1, "a", 1), one(LOG, "x"), one(INSERT_ITEM, 2, "b", 1)]
    assert texts(planned(statements, conn)) == [INSERT_ITEM, LOG, INSERT_ITEM]


def test_after_a_schema_change_runs_only_join_their_neighbours() -> None:
    conn = connect()
    ddl = one("CREATE TABLE later (n INTEGER)")
    statements = [ddl, one(LOG, "a"), one(LOG, "b"), one(INSERT_ITEM, 1, "a", 1), one(LOG, "c")]
    calls, schema_may_change = plan(statements, Schema.read(conn), conn)
    assert schema_may_change
    assert texts(calls) == [ddl[0], LOG, INSERT_ITEM, LOG]


def test_repeated_updates_of_one_row_are_coalesced_to_the_last() -> None:
    conn = connect()
    statements = [one(SET_STOCK, n, f"n{n}", 1) for n in (4, 3, 2)] + [one(SET_STOCK, 9, "x", 2)]
    calls = planned(statements, conn)
    assert calls == [(SET_STOCK, [(2, "n2", 1), (9, "x", 2)], True)]
    assert run(conn, calls)
    assert dump(conn)["stock"][1:3] == [(1, 2, "n2"), (2, 9, "x")]


def test_an_update_that_would_fail_is_not_coalesced_away() -> None:
    conn = connect()
    statements = [one(SET_STOCK, -1, "bad", 1), one(SET_STOCK, 3, "fine", 1)]
    calls = planned(statements, conn)
    assert calls == [(SET_STOCK, [(-1, "bad", 1), (3, "fine", 1)], True)]
    assert not run(conn, calls)  # as in submission order: the CHECK fails the batch


@pytest.mark.parametrize(
    "sql",
    [
        BUMP_ITEM,  # reads the column it sets
        RENAME_ITEM,  # sets a UNIQUE column: an intermediate value may conflict
    ],
)
def test_updates_that_are_not_plain_overwrites_are_never_coalesced(sql: str) -> None:
    conn = connect()
    statements = [one(sql, "1", 1), one(sql, "2", 1)]
    assert planned(statements, conn) == [(sql, [("1", 1), ("2", 1)], True)]


def test_keys_equal_in_python_but_of_other_types_are_not_coalesced() -> None:
    conn = connect()
    statements = [one(SET_STOCK, 1, "a", 1), one(SET_STOCK, 2, "b", 1.0)]
    assert len(planned(statements, conn)[0][1]) == 2


def test_joined_inserts_keep_per_row_conflict_handling() -> None:
    conn = connect()
    statements = [one(IGNORE_ITEM, i % 3, f"n{i % 3}", i) for i in range(9)]
    calls = planned(statements, conn)
    assert len(calls) == 2 and "), (" in calls[0][0]
    assert run(conn, calls)
    assert dump(conn)["items"] == [(0, "n0", 0), (1, "n1", 1), (2, "n2", 2)]


# -- the invariant, on random batches ---------------------------------------------------------

TEMPLATES: list[tuple[str, Any]] = [
    (INSERT_ITEM, st.tuples(st.integers(0, 5), st.sampled_from("abcd"), st.integers(0, 3))),
    (IGNORE_ITEM, st.tuples(st.integers(0, 5), st.sampled_from("abcd"), st.integers(0, 3))),
    (UPDATE_ITEM, st.tuples(st.integers(0, 3), st.integers(0, 5))),
    (BUMP_ITEM, st.tuples(st.integers(-1, 1), st.integers(0, 5))),
    (RENAME_ITEM, st.tuples(st.sampled_from("abcd"), st.integers(0, 5))),
    (DELETE_ITEM, st.tuples(st.integers(0, 5))),
    (SET_STOCK, st.tuples(st.integers(-1, 3), st.sampled_from(["x", None]), st.integers(0, 1))),
    (ARM, st.tuples(st.integers(0, 3), st.floats(0, 2))),
    (DISARM, st.tuples(st.integers(0, 3))),
    (LOG, st.tuples(st.sampled_from("ab"))),
    (LOG_COUNT, st.just(())),
]
statement = st.one_of([params.map(lambda p, sql=sql: (sql, p, False)) for sql, params in TEMPLATES])


@settings(max_examples=300, deadline=None)
@given(st.lists(statement, max_size=40))
def test_a_planned_batch_commits_only_what_submission_order_commits(
    statements: list[Statement],
) -> None:
    reference, conn = connect(), connect()
    in_order = run(reference, statements)
    as_planned = run(conn, planned(statements, conn))
    assert as_planned == in_order
    assert dump(conn) == dump(reference)


def test_a_fault_of_the_plans_runs_the_batch_as_submitted_and_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> object:
        raise TypeError("a bug of the plan's")

    monkeypatch.setattr(batch_plan, "plan", broken)
    monkeypatch.setattr(batch_plan, "_fault_logged", False)
    conn = connect()
    statements = [one(INSERT_ITEM, 1, "i1", 1), one(INSERT_ITEM, 2, "i2", 1)]
    with caplog.at_level(logging.ERROR, logger="shopkeep.store"):
        for _ in range(3):
            assert batch_plan.planned(conn, statements, None) == (statements, None)
    assert [r.getMessage() for r in caplog.records] == [
        "batch_plan_failed: batches run as submitted"
    ]
    assert "a bug of the plan's" in caplog.text


def test_a_schema_sqlite_cannot_read_runs_the_batch_as_submitted_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = connect()
    conn.close()  # every read of it is refused
    statements = [one(INSERT_ITEM, 1, "i1", 1)]
    with caplog.at_level(logging.ERROR, logger="shopkeep.store"):
        assert batch_plan.planned(conn, statements, None) == (statements, None)
    assert caplog.records == []
