"""Durable timers and the outbox survive SIGKILL at random moments, exactly once in effect.

A child process (``crash_child.py``) runs actors that arm timers and send durable messages on a
real SQLite file. The test kills it with SIGKILL at a random moment, starts it again on the same
file, and repeats; then it lets one last child run until all the work is done. Every effect in
the child is counted, not merely set, so a timer fired twice or a message applied twice (or
never) shows in the final counts. The seed of the random kill times is printed; set
``SHOPKEEP_CRASH_SEED`` to replay a run's schedule (the kills still land on whatever the child
was doing at that moment, so a replay is close, not identical).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.crash_harness import EXIT_TIMEOUT_S, child_failure, child_process, read_line
from tests.runtime.crash_child import ITEMS, SINKS, SOURCES, plan_of

CYCLES = 24
RATE = 150.0
"""Items begun a second by a child that will be killed: slow enough that the items are spread
over all the cycles (ITEMS / RATE is longer than the time the killed children run)."""
EARLY_KILL_CHANCE = 0.2
"""Share of the kills that do not wait for ``ready``: they land in start-up (migrations, the
timer and outbox recovery) or even before the database is opened."""
READY_TIMEOUT_S = 30.0
FINAL_DEADLINE_S = 60.0


@dataclass
class Cycle:
    """One life of the child, for the report printed with the seed."""

    generation: int
    begun_before: int | None  # items begun by earlier lives, as the child saw at start
    killed_after_s: float
    early: bool


def test_timers_and_outbox_survive_sigkill_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHOPKEEP_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed {seed} (replay: SHOPKEEP_CRASH_SEED={seed})")
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    started = time.monotonic()

    cycles = [kill_at_a_random_moment(db, generation, rng) for generation in range(1, CYCLES + 1)]
    done = run_until_all_work_is_done(db, CYCLES + 1)

    report(cycles, done, time.monotonic() - started)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}"
        assert_every_item_was_begun_once(conn)
        assert_every_timer_fired_once_and_not_early(conn)
        assert_every_durable_message_was_applied_once(conn)
        assert_counters_agree_with_the_logs(conn)
        assert_nothing_is_left_over(conn)
        assert_work_crossed_the_kills(conn)


# -- the child's lives ---------------------------------------------------------------------------


@contextmanager
def child(db: Path, generation: int, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a crash child on ``db``; whatever happens, it is dead when the block ends."""
    with child_process(
        "tests.runtime.crash_child", db, generation, "--generation", str(generation), *flags
    ) as proc:
        yield proc


def kill_at_a_random_moment(db: Path, generation: int, rng: random.Random) -> Cycle:
    """Run a child and SIGKILL it: usually a random 0.1-1 s after ``ready``, sometimes during
    start-up."""
    early = rng.random() < EARLY_KILL_CHANCE
    delay = rng.uniform(0.0, 0.5) if early else rng.uniform(0.1, 1.0)
    begun_before: int | None = None
    with child(db, generation, "--rate", str(RATE)) as proc:
        if not early:
            line = read_line(proc, READY_TIMEOUT_S)
            assert line.startswith("ready "), child_failure(db, generation, proc, line)
            begun_before = int(line.split()[1])
        time.sleep(delay)
        assert proc.poll() is None, child_failure(db, generation, proc, "exited before the kill")
        proc.kill()
        assert proc.wait(timeout=EXIT_TIMEOUT_S) == -signal.SIGKILL
    return Cycle(generation, begun_before, delay, early)


def run_until_all_work_is_done(db: Path, generation: int) -> str:
    """Run a child to the end: it begins what is left and waits for every timer and message."""
    with child(db, generation, "--finish", "--deadline", str(FINAL_DEADLINE_S)) as proc:
        try:
            status = proc.wait(timeout=FINAL_DEADLINE_S + EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        assert status == 0, child_failure(db, generation, proc, output)
    done = [line for line in output.splitlines() if line.startswith("done ")]
    assert done, output
    return done[0]


def report(cycles: list[Cycle], done: str, elapsed_s: float) -> None:
    """Print how the run went (pytest shows it with -s, or when the test fails)."""
    for cycle in cycles:
        if cycle.early:
            killed = f"killed {cycle.killed_after_s:.2f} s after start"
            print(f"  generation {cycle.generation:2}: {killed}")
        else:
            print(
                f"  generation {cycle.generation:2}: killed {cycle.killed_after_s:.2f} s after "
                f"ready, {cycle.begun_before} items begun before it"
            )
    print(f"  final generation: {done}; {elapsed_s:.1f} s in all")


# -- the checks ----------------------------------------------------------------------------------


def assert_every_item_was_begun_once(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT item, source, count(*) FROM crash_begun GROUP BY item").fetchall()
    assert [(item, plan_of(item).source, 1) for item in range(ITEMS)] == rows


def assert_every_timer_fired_once_and_not_early(conn: sqlite3.Connection) -> None:
    fired = dict(conn.execute("SELECT item, count(*) FROM crash_fire_log GROUP BY item"))
    wrong = {item: fired.get(item, 0) for item in range(ITEMS) if fired.get(item, 0) != 1}
    assert not wrong, f"item: times its timer fired, where not once: {sorted(wrong.items())[:20]}"
    early = conn.execute(
        "SELECT count(*) FROM crash_fire_log JOIN crash_begun USING (item) "
        "WHERE fired_at < due_at OR crash_fire_log.source != crash_begun.source"
    ).fetchone()[0]
    assert early == 0, f"{early} timers fired before they were due or at the wrong actor"


def assert_every_durable_message_was_applied_once(conn: sqlite3.Connection) -> None:
    credits = {
        item: (sink, amount, count)
        for item, sink, amount, count in conn.execute(
            "SELECT item, sink, amount, count(*) FROM crash_credit_log GROUP BY item"
        )
    }
    settles = {
        item: (sink, count)
        for item, sink, count in conn.execute(
            "SELECT item, sink, count(*) FROM crash_settle_log GROUP BY item"
        )
    }
    wrong_credits = []
    wrong_settles = []
    for item in range(ITEMS):
        plan = plan_of(item)
        if credits.get(item) != (plan.sink, plan.amount, 1):
            wrong_credits.append((item, credits.get(item)))
        if settles.get(item) != (plan.sink, 1):
            wrong_settles.append((item, settles.get(item)))
    assert not wrong_credits, f"(item, (sink, amount, times applied)): {wrong_credits[:20]}"
    assert not wrong_settles, f"(item, (sink, times applied)): {wrong_settles[:20]}"


def assert_counters_agree_with_the_logs(conn: sqlite3.Connection) -> None:
    sources = conn.execute(
        "SELECT id, fires, (SELECT count(*) FROM crash_fire_log WHERE source = id) "
        "FROM crash_sources ORDER BY id"
    ).fetchall()
    items_of = Counter(plan_of(item).source for item in range(ITEMS))
    assert [(s, items_of[s], items_of[s]) for s in range(1, SOURCES + 1)] == sources
    sinks = conn.execute(
        "SELECT id, balance, credits, settles, "
        "(SELECT coalesce(sum(amount), 0) FROM crash_credit_log WHERE sink = id), "
        "(SELECT count(*) FROM crash_credit_log WHERE sink = id), "
        "(SELECT count(*) FROM crash_settle_log WHERE sink = id) "
        "FROM crash_sinks ORDER BY id"
    ).fetchall()
    assert [row[0] for row in sinks] == list(range(1, SINKS + 1))
    for sink, balance, credits, settles, logged_sum, logged_credits, logged_settles in sinks:
        assert (balance, credits, settles) == (logged_sum, logged_credits, logged_settles), sink
    assert sum(row[1] for row in sinks) == sum(plan_of(i).amount for i in range(ITEMS))


def assert_nothing_is_left_over(conn: sqlite3.Connection) -> None:
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM timers), (SELECT count(*) FROM outbox), "
        "(SELECT count(*) FROM dead_letters)"
    ).fetchone()
    dead = conn.execute("SELECT kind, actor_id, message, error FROM dead_letters LIMIT 5")
    assert counts == (0, 0, 0), f"timers, outbox, dead letters left: {counts}; {dead.fetchall()}"


def assert_work_crossed_the_kills(conn: sqlite3.Connection) -> None:
    """The kills did cut work in flight: else the checks above would prove little."""
    generations = conn.execute("SELECT count(DISTINCT generation) FROM crash_begun").fetchone()[0]
    assert generations >= 5, f"items were begun in only {generations} lives"
    crossed = conn.execute(
        "SELECT count(*) FROM crash_fire_log f JOIN crash_begun b USING (item) "
        "WHERE f.generation > b.generation"
    ).fetchone()[0]
    assert crossed > 0, "no timer armed before a kill fired after it"
    credits, settles = conn.execute(
        "SELECT (SELECT count(*) FROM crash_credit_log c JOIN crash_begun b USING (item) "
        "WHERE c.generation > b.generation), "
        "(SELECT count(*) FROM crash_settle_log s JOIN crash_fire_log f USING (item) "
        "WHERE s.generation > f.generation)"
    ).fetchone()
    print(
        f"  crossed a kill: {crossed} timer fires, {credits} credits, {settles} settlements; "
        f"items begun in {generations} lives"
    )
    assert credits + settles > 0, "no durable message sent before a kill was applied after it"
