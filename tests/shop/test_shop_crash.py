"""No saga is left half-done when the shop is killed with SIGKILL at random moments.

A child process (``crash_child.py``) runs the whole shop on a real SQLite file with 16 clients
placing, paying, canceling and returning orders as fast as they can. The test kills it with
SIGKILL at a random moment, audits the dead database file (work cut by the kill may be in
flight: pending placements and outbox messages, never a violation), and starts the next child,
which must undo every placement the kill left pending before it does anything else, and pass the
audit once its outbox has drained. A last child runs without a kill, stops its clients, lets the
shop go quiet and audits it with nothing in flight.

The seed of the kill schedule and of the clients' choices is printed; set
``SHOPKEEP_SHOP_CRASH_SEED`` to replay a run's schedule (the kills land on whatever the child
was doing at that moment, so a replay is close, not identical).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopkeep.actors.audit import AuditReport, audit_file
from tests.crash_harness import EXIT_TIMEOUT_S, child_failure, child_process, log_of, read_line

CYCLES = 22
EARLY_KILL_CHANCE = 0.15
"""Share of the kills that do not wait for ``ready``: they land in start-up (migrations, the
recovery of cut placements, the first audit) or before the database is even opened."""
KILL_AFTER_S = (0.2, 3.0)
"""When the other kills land, after ``ready``: some lives outlast the 2 s payment deadline."""
FINAL_RUN_S = 4.0
READY_TIMEOUT_S = 30.0
FINAL_TIMEOUT_S = 60.0
CHILD_DEADLINE_S = 60.0
"""A child nobody kills stops on its own after this."""


@dataclass
class Cycle:
    """One life of the child, for the report printed with the seed."""

    generation: int
    killed_after_s: float
    early: bool
    ready: dict[str, Any] | None
    pending_at_kill: int
    outbox_at_kill: int


def test_no_saga_is_left_half_done_after_sigkill(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHOPKEEP_SHOP_CRASH_SEED", random.randrange(2**32)))
    print(f"shop crash test seed {seed} (replay: SHOPKEEP_SHOP_CRASH_SEED={seed})")
    rng = random.Random(seed)
    db = tmp_path / "shop.db"
    started = time.monotonic()

    cycles: list[Cycle] = []
    pending_before: list[int] = []
    # CYCLES kills, and more (up to twice as many) until one has cut a placement: a saga's
    # pending order lives milliseconds, and some runs of CYCLES kills missed every one
    while len(cycles) < CYCLES or (
        len(cycles) < 2 * CYCLES and not any(cycle.pending_at_kill for cycle in cycles)
    ):
        cycle = kill_at_a_random_moment(db, len(cycles) + 1, rng, pending_before)
        cycles.append(cycle)
        pending_before = pending_orders(db)
    last = len(cycles) + 1
    done = run_to_a_quiet_end(db, last, rng)

    report(cycles, done, time.monotonic() - started)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"seed {seed}"
        assert_nothing_is_in_flight(conn)
        assert_the_kills_cut_work_that_recovery_undid(conn)
    assert_audit_ok(audit_file(str(db)), "the final database", in_flight_allowed=False)
    assert_no_child_saw_anything_unexpected(db, last)


# -- the child's lives ---------------------------------------------------------------------------


@contextmanager
def child(db: Path, generation: int, seed: int, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a crash child on ``db``; whatever happens, it is dead when the block ends."""
    with child_process(
        "tests.shop.crash_child",
        db,
        generation,
        "--seed",
        str(seed),
        "--generation",
        str(generation),
        "--deadline",
        str(CHILD_DEADLINE_S),
        *flags,
    ) as proc:
        yield proc


def kill_at_a_random_moment(
    db: Path, generation: int, rng: random.Random, pending_before: list[int]
) -> Cycle:
    """Run a child and SIGKILL it: usually a random moment after ``ready`` (having checked
    what it says of its restart), sometimes during start-up. Then audit the dead file."""
    early = generation > 1 and rng.random() < EARLY_KILL_CHANCE
    delay = rng.uniform(0.0, 0.6) if early else rng.uniform(*KILL_AFTER_S)
    ready: dict[str, Any] | None = None
    with child(db, generation, rng.randrange(2**63)) as proc:
        if not early:
            ready = read_ready(db, generation, proc)
            assert_the_restart_recovered(db, generation, ready, pending_before)
        time.sleep(delay)
        assert proc.poll() is None, child_failure(db, generation, proc, "exited before the kill")
        proc.kill()
        assert proc.wait(timeout=EXIT_TIMEOUT_S) == -signal.SIGKILL
    # the dead database: work cut by the kill is in flight, but nothing is violated
    assert_audit_ok(audit_file(str(db)), f"the database killed in generation {generation}",
                    in_flight_allowed=True)
    pending, outbox = in_flight(db)
    return Cycle(generation, delay, early, ready, pending, outbox)


def read_ready(db: Path, generation: int, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The child's ``ready`` report (it comes after recovery, a quiet outbox and an audit)."""
    line = read_line(proc, READY_TIMEOUT_S)
    assert line.startswith("ready "), child_failure(db, generation, proc, line)
    ready: dict[str, Any] = json.loads(line.removeprefix("ready "))
    return ready


def assert_the_restart_recovered(
    db: Path, generation: int, ready: dict[str, Any], pending_before: list[int]
) -> None:
    """No order pending before the restart is still pending after it, and once the outbox
    drained the audit was ok."""
    life = f"generation {generation}"
    assert ready["stale_pending"] == [], f"{life}: orders still pending after recovery"
    still = [order for order, status in statuses(db, pending_before) if status == "pending"]
    assert still == [], f"{life}: orders pending at the kill are still pending after recovery"
    assert ready["quiet"], f"{life}: the outbox did not drain within 10 s: {ready}"
    assert ready["audit_ok"], f"{life}: the audit after recovery failed: {ready['failed']}"


def run_to_a_quiet_end(db: Path, generation: int, rng: random.Random) -> dict[str, Any]:
    """The last life: no kill; the clients stop, the shop goes quiet, the child audits."""
    seed = rng.randrange(2**63)
    with child(db, generation, seed, "--finish", "--run-s", str(FINAL_RUN_S)) as proc:
        try:
            status = proc.wait(timeout=FINAL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        assert status == 0, child_failure(db, generation, proc, output)
    lines = output.splitlines()
    ready = json.loads(next(line for line in lines if line.startswith("ready "))[6:])
    assert ready["stale_pending"] == [] and ready["quiet"] and ready["audit_ok"], ready
    done: dict[str, Any] = json.loads(next(line for line in lines if line.startswith("done "))[5:])
    assert done["quiet"], f"the shop did not go quiet: {done}"
    assert done["audit_ok"], f"the final audit failed: {done['failed']}"
    return done


# -- reading the database and the child ---------------------------------------------------------


def read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection (the child may be running)."""
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)


def pending_orders(db: Path) -> list[int]:
    """Orders pending in the (dead) database."""
    with closing(read_only(db)) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM orders WHERE status = 'pending'")]


def statuses(db: Path, orders: list[int]) -> list[tuple[int, str]]:
    """(order, status) of ``orders``, now."""
    if not orders:
        return []
    marks = ", ".join("?" * len(orders))
    query = f"SELECT id, status FROM orders WHERE id IN ({marks})"
    with closing(read_only(db)) as conn:
        return conn.execute(query, orders).fetchall()


def in_flight(db: Path) -> tuple[int, int]:
    """(pending orders, outbox rows) in the (dead) database."""
    with closing(read_only(db)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM orders WHERE status = 'pending'), "
            "(SELECT count(*) FROM outbox)"
        ).fetchone()
    return int(row[0]), int(row[1])


def report(cycles: list[Cycle], done: dict[str, Any], elapsed_s: float) -> None:
    """Print how the run went (pytest shows it with -s, or when the test fails)."""
    for cycle in cycles:
        when = "after start" if cycle.early else "after ready"
        orders = "" if cycle.ready is None else f", {cycle.ready['orders']} orders at ready"
        print(
            f"  generation {cycle.generation:2}: killed {cycle.killed_after_s:.2f} s {when}"
            f"{orders}; {cycle.pending_at_kill} pending, {cycle.outbox_at_kill} outbox rows left"
        )
    print(f"  final generation: {done['orders']} orders; {elapsed_s:.1f} s in all")
    print(f"  final clients: {json.dumps(done['stats'])}")


# -- the checks ----------------------------------------------------------------------------------


def assert_audit_ok(report: AuditReport, what: str, *, in_flight_allowed: bool) -> None:
    failed = [f"{check.name}: {check.detail}" for check in report.checks if not check.ok]
    assert report.ok, f"{what}: the audit failed: {failed}"
    if not in_flight_allowed:
        moving = [f"{check.name}: {check.detail}" for check in report.checks
                  if "in flight" in check.detail]
        assert moving == [], f"{what}: work still in flight: {moving}"


def assert_nothing_is_in_flight(conn: sqlite3.Connection) -> None:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM orders WHERE status IN ('pending', 'awaiting_payment')), "
        "(SELECT count(*) FROM outbox), "
        "(SELECT count(*) FROM refunds WHERE status != 'refunded'), "
        "(SELECT count(*) FROM dead_letters)"
    ).fetchone()
    dead = conn.execute("SELECT kind, actor_id, message, error FROM dead_letters LIMIT 5")
    assert row == (0, 0, 0, 0), (
        f"unpaid orders, outbox rows, unfinished refunds, dead letters left: {row}; "
        f"{dead.fetchall()}"
    )


def assert_the_kills_cut_work_that_recovery_undid(conn: sqlite3.Connection) -> None:
    """The kills did cut placements and deadlines: else the checks above would prove little."""
    outcomes = dict(
        conn.execute(
            "SELECT coalesce(cancel_reason || '/' || coalesce(failure_code, '-'), status), "
            "count(*) FROM orders GROUP BY 1"
        ).fetchall()
    )
    refunds = dict(conn.execute("SELECT kind, count(*) FROM refunds GROUP BY kind").fetchall())
    print(f"  orders by outcome: {outcomes}; refunds by kind: {refunds}")
    assert outcomes.get("placement_failed/interrupted", 0) > 0, "no kill cut a placement"
    assert outcomes.get("timeout/-", 0) > 0, "no order timed out"
    assert {"cancel", "late_payment", "return"} <= set(refunds), refunds


def assert_no_child_saw_anything_unexpected(db: Path, generations: int) -> None:
    """No client met an error it should not have, and no actor failed, in any life."""
    findings = []
    for generation in range(1, generations + 1):
        for line in log_of(db, generation).read_text(errors="replace").splitlines():
            if "UNEXPECTED" in line or '"actor_failed"' in line or '"level": "error"' in line:
                findings.append(f"generation {generation}: {line[:500]}")
    assert findings == [], "\n".join(findings[:20])
