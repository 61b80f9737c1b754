"""Durable timers: armed with the state change, delivered as messages, exactly once in effect."""

from __future__ import annotations

import sqlite3

import pytest

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import RuntimeConfig, VirtualClock
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import (
    Arm,
    Disarm,
    Fired,
    Get,
    Probe,
    Wait,
    arrival,
    count_rows,
    gate,
    probe,
)


def fires() -> list[tuple[int, str]]:
    return [(actor, m.name) for actor, m in Probe.journal if isinstance(m, Fired)]


async def pending_rows(runtime: Runtime) -> int:
    return await count_rows(runtime, "timers")


async def test_a_timer_delivers_its_message_into_the_mailbox_at_its_due_time(
    runtime: Runtime, clock: VirtualClock
) -> None:
    await runtime.system.ask(probe(1), Arm("remind", 30 * 60, 7))
    assert await pending_rows(runtime) == 1
    await clock.advance(30 * 60 - 1)
    assert fires() == []
    await clock.advance(1)
    assert await runtime.system.ask(probe(1), Get()) == 7  # queued behind the fire
    assert fires() == [(1, "remind")]
    assert await pending_rows(runtime) == 0  # the fire's unit deleted the row
    assert list(runtime.system.timers.lateness) == [0.0]


async def test_timers_fire_in_due_order_across_actors(
    runtime: Runtime, clock: VirtualClock
) -> None:
    for actor, delay in [(1, 30), (2, 10), (3, 20), (1, 5)]:
        await runtime.system.ask(probe(actor), Arm(f"t{delay}", delay, 1))
    await clock.advance(60)
    assert fires() == [(1, "t5"), (2, "t10"), (3, "t20"), (1, "t30")]


async def test_a_canceled_timer_never_fires(runtime: Runtime, clock: VirtualClock) -> None:
    await runtime.system.ask(probe(1), Arm("deadline", 60, 1))
    await runtime.system.ask(probe(1), Disarm("deadline"))
    await clock.advance(120)
    assert fires() == []
    assert await pending_rows(runtime) == 0


async def test_arming_again_replaces_the_timer(runtime: Runtime, clock: VirtualClock) -> None:
    await runtime.system.ask(probe(1), Arm("deadline", 60, 1))
    await runtime.system.ask(probe(1), Arm("deadline", 120, 2))
    await clock.advance(90)
    assert fires() == []
    await clock.advance(30)
    assert [m for _, m in Probe.journal if isinstance(m, Fired)] == [Fired("deadline", 2)]


async def test_a_cancel_queued_after_its_timers_fire_comes_too_late(
    runtime: Runtime, clock: VirtualClock
) -> None:
    system = runtime.system
    await system.ask(probe(1), Arm("deadline", 10, 1))
    system.tell(probe(1), Wait("busy"))
    await arrival("busy")
    await clock.advance(10)  # the fire is queued behind Wait
    system.tell(probe(1), Disarm("deadline"))  # the cancel is queued after the fire
    gate("busy").set()
    assert await system.ask(probe(1), Get()) == 1  # whichever comes first wins: the fire


async def test_a_fire_queued_behind_the_cancel_of_its_timer_is_stale_and_dropped(
    runtime: Runtime, clock: VirtualClock
) -> None:
    system = runtime.system
    await system.ask(probe(1), Arm("deadline", 10, 1))
    system.tell(probe(1), Wait("busy"))
    await arrival("busy")
    system.tell(probe(1), Disarm("deadline"))  # queued first
    await clock.advance(10)  # the fire is queued after the cancel
    gate("busy").set()
    assert await system.ask(probe(1), Get()) == 0
    assert fires() == []


async def test_timers_survive_passivation(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(idle_timeout_s=60))
    await runtime.system.ask(probe(1), Arm("later", 600, 3))
    await clock.advance(300)
    assert not runtime.system.is_live(probe(1))
    await clock.advance(300)
    assert await runtime.system.ask(probe(1), Get()) == 3  # queued behind the fire
    assert fires() == [(1, "later")]


async def test_timers_survive_a_restart_and_overdue_ones_fire_right_after_start(
    tmp_path: object, clock: VirtualClock
) -> None:
    from shopkeep.bootstrap import open_runtime
    from tests.runtime.probe import PROBE_MIGRATIONS

    path = str(tmp_path) + "/restart.db"
    Probe.reset()
    async with open_runtime(path, kinds=[Probe], migrations=PROBE_MIGRATIONS, clock=clock) as rt:
        for actor in range(5):
            await rt.system.ask(probe(actor), Arm("deadline", 60, 1))
    await clock.advance(3600)  # the server is down when they fall due
    async with open_runtime(path, kinds=[Probe], migrations=PROBE_MIGRATIONS, clock=clock) as rt:
        await clock.advance(0)  # the fires are queued at once, before these asks
        for actor in range(5):
            assert await rt.system.ask(probe(actor), Get()) == 1
        assert sorted(fires()) == [(actor, "deadline") for actor in range(5)]
        assert min(rt.system.timers.lateness) == pytest.approx(3540)
        assert await pending_rows(rt) == 0


async def test_overdue_timers_fire_at_a_bounded_rate(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(timer_max_fire_rate=100))
    for actor in range(50):
        await runtime.system.ask(probe(actor), Arm("t", 1, 1))
    await clock.advance(1)
    burst = len(fires())
    assert 1 <= burst <= 11  # a tenth of a second's worth at once
    await clock.advance(0.2)
    assert len(fires()) <= burst + 21
    await clock.advance(1)
    assert len(fires()) == 50


async def test_more_timers_than_the_window_holds_all_fire_in_order_exactly_once(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    # inline store: page reads happen within the virtual clock's settle turns, not on a thread
    runtime = await open_probe_runtime(RuntimeConfig(timer_page_size=8), inline=True)
    delays = [(i * 37) % 101 + 1 for i in range(100)]
    for i, delay in enumerate(delays):
        await runtime.system.ask(probe(i % 7), Arm(f"t{i}", delay, 1))
    assert runtime.system.timers.pending_in_memory <= 16
    await clock.advance(200)
    fired = [m.name for _, m in Probe.journal if isinstance(m, Fired)]
    assert sorted(fired) == sorted(f"t{i}" for i in range(100))
    due = {f"t{i}": d for i, d in enumerate(delays)}
    assert [due[name] for name in fired] == sorted(delays)
    assert await pending_rows(runtime) == 0


async def test_deadlines_past_a_full_window_wait_in_the_database_and_fire_in_order(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    # deadlines armed in the order they fall due, as placements arm theirs, some canceled
    runtime = await open_probe_runtime(RuntimeConfig(timer_page_size=8), inline=True)
    for i in range(40):
        await runtime.system.ask(probe(i % 7), Arm(f"t{i}", 10 + i, 1))
        if i % 5 == 4:
            await runtime.system.ask(probe(i % 7), Disarm(f"t{i}"))
    assert runtime.system.timers.pending_in_memory <= 16
    await clock.advance(60)
    fired = [m.name for _, m in Probe.journal if isinstance(m, Fired)]
    assert fired == [f"t{i}" for i in range(40) if i % 5 != 4]
    assert await pending_rows(runtime) == 0


async def test_timers_canceled_as_fast_as_they_are_armed_leave_no_heap_behind(
    open_probe_runtime: OpenRuntime,
) -> None:
    # a shop whose customers pay: each deadline armed is canceled soon after
    runtime = await open_probe_runtime(RuntimeConfig(timer_page_size=8), inline=True)
    for i in range(100):
        await runtime.system.ask(probe(i % 7), Arm(f"t{i}", 10 + i, 1))
        await runtime.system.ask(probe(i % 7), Disarm(f"t{i}"))
    timers = runtime.system.timers
    assert timers.pending_in_memory == 0
    assert len(timers._heap) <= 16  # the canceled ones' entries are dropped as it fills


async def test_a_timer_armed_in_a_unit_that_failed_to_commit_was_never_armed(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    from shopkeep.store import CommitFailed

    # inline: the window's reload after the failure completes before the clock moves
    runtime = await open_probe_runtime(inline=True)

    def fail_commits(operation: str) -> None:
        if operation == "commit":
            raise OSError("disk I/O error")

    await runtime.system.ask(probe(1), Arm("kept", 10, 1))
    runtime.store.writer.fault = fail_commits
    with pytest.raises(CommitFailed):
        await runtime.system.ask(probe(1), Arm("lost", 5, 100))
    runtime.store.writer.fault = None
    await clock.advance(10)
    assert await runtime.system.ask(probe(1), Get()) == 1
    assert fires() == [(1, "kept")]
    assert await pending_rows(runtime) == 0


async def test_a_fire_whose_handler_keeps_failing_is_retried_then_parked_with_its_row(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(inline=True)  # reloads take no real time: exact back-offs
    await runtime.system.ask(probe(1), Arm("poison", 5, -1))
    await clock.advance(5)
    await clock.advance(1)  # the back-offs: 50 ms, then 100 ms
    assert await runtime.system.ask(probe(1), Get()) == 0
    assert fires() == [(1, "poison")] * 3
    assert await pending_rows(runtime) == 0
    row = await runtime.store.reader.fetchone("SELECT message, attempts FROM dead_letters")
    assert row == ("Fired(name='poison', n=-1)", 3)
    await clock.advance(60)
    assert fires() == [(1, "poison")] * 3  # parked: never fired again


async def test_a_fire_consumed_while_a_page_is_read_does_not_come_back_from_that_page(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    from shopkeep.runtime.envelope import TimerFire

    runtime = await open_probe_runtime(RuntimeConfig(timer_page_size=4), inline=True)
    timers = runtime.system.timers
    for index in range(12):
        await runtime.system.ask(probe(1), Arm(f"t{index}", 100 + index, index))
    row = await runtime.store.reader.fetchone(
        "SELECT seq, due_at FROM timers WHERE name = 't0'"
    )
    assert row is not None
    fire = TimerFire(("probe", 1, "t0"), row[0], row[1])
    writer = runtime.store.writer
    real_call = writer.call

    async def page_read_that_the_fire_overtakes(fn):  # type: ignore[no-untyped-def]
        rows = await real_call(fn)  # read before the fire's delete reaches the disk
        timers.consumed(fire)  # ... and the fire is handled before the page is applied
        return rows

    timers.resync()  # read the window again, through the patched writer
    writer.call = page_read_that_the_fire_overtakes  # type: ignore[method-assign]
    try:
        await runtime.system.quiet()
        await timers._load_task  # type: ignore[misc]
    finally:
        writer.call = real_call  # type: ignore[method-assign]
    assert ("probe", 1, "t0") not in timers._armed


async def test_a_wall_clock_stepped_back_does_not_hold_the_next_fires_back(
    runtime: Runtime, clock: VirtualClock
) -> None:
    # the fire rate's bucket was refilled by the stepped time, negative: empty by the step's
    # worth, so the wake came back every 1/rate s, firing nothing, for as long as the step
    await runtime.system.ask(probe(1), Arm("before", 1, 1))
    await clock.advance(1)
    clock.step(-60)
    await runtime.system.ask(probe(1), Arm("after", 1, 1))

    await clock.advance(1)

    assert fires() == [(1, "before"), (1, "after")]


async def test_fires_the_store_refuses_pause_longer_each_time_then_go_on_once_it_writes(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    # each refusal reloaded the window and the overdue timer fired again at once: a full
    # disk saw hundreds of refused commits a second an overdue deadline
    runtime = await open_probe_runtime(inline=True)  # reloads take no real time

    def disk_full(operation: str) -> None:
        if operation == "commit":
            raise sqlite3.OperationalError("database or disk is full")

    await runtime.system.ask(probe(1), Arm("deadline", 5, 1))
    runtime.store.writer.fault = disk_full
    await clock.advance(5)
    await clock.advance(1)  # pauses of 50, 100, 200 and 400 ms between the fires

    assert 3 <= len(fires()) <= 6
    runtime.store.writer.fault = None
    await clock.advance(2)
    assert await runtime.system.ask(probe(1), Get()) == 1  # handled at last
    assert await pending_rows(runtime) == 0
