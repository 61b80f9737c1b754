"""tell and ask: order, answers after commit, timeouts, cycles, back-pressure."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import (
    AskCycle,
    AskTimeout,
    MessageFailed,
    Overloaded,
    RuntimeConfig,
    VirtualClock,
)
from shopkeep.runtime.cell import Cell, start_eager
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import Add, AskOther, Get, Probe, Wait, arrival, gate, probe


async def test_messages_to_one_actor_are_handled_one_at_a_time_in_arrival_order(
    runtime: Runtime,
) -> None:
    system = runtime.system
    system.tell(probe(1), Wait("open"))
    for n in range(1, 6):
        system.tell(probe(1), Add(n))
    await arrival("open")
    assert [m for _, m in Probe.journal] == [Wait("open")]  # the rest wait their turn
    gate("open").set()
    assert await system.ask(probe(1), Get()) == 15
    assert [m for _, m in Probe.journal] == [Wait("open"), *(Add(n) for n in range(1, 6)), Get()]


async def test_an_ask_is_answered_only_after_its_unit_is_committed(runtime: Runtime) -> None:
    assert await runtime.system.ask(probe(1), Add(7)) == 7
    row = await runtime.store.reader.fetchone("SELECT value FROM probe WHERE id = 1")
    assert row == (7,)


async def test_a_read_waits_for_the_commit_of_the_write_before_it(runtime: Runtime) -> None:
    system = runtime.system
    system.tell(probe(1), Add(3))
    assert await system.ask(probe(1), Get()) == 3
    assert await runtime.store.reader.fetchone("SELECT value FROM probe WHERE id = 1") == (3,)


async def test_an_ask_with_no_answer_times_out_on_the_virtual_clock(
    runtime: Runtime, clock: VirtualClock
) -> None:
    asking = asyncio.ensure_future(runtime.system.ask(probe(1), Wait("never"), timeout=5))
    await arrival("never")
    await clock.advance(4.9)
    assert not asking.done()
    await clock.advance(0.2)
    with pytest.raises(AskTimeout, match="probe:1 did not answer within 5 s"):
        await asking


async def test_an_ask_cycle_fails_at_once_naming_the_cycle(runtime: Runtime) -> None:
    with pytest.raises(MessageFailed, match="ask cycle: probe:1 -> probe:2 -> probe:1") as failed:
        await runtime.system.ask(probe(1), AskOther(2, AskOther(1, Get())))
    assert isinstance(failed.value.__cause__, MessageFailed)
    assert isinstance(failed.value.__cause__.__cause__, AskCycle)
    assert runtime.system.stats.dead_letters == 2  # both messages parked, no retries


async def test_an_actor_asking_itself_is_a_cycle(runtime: Runtime) -> None:
    with pytest.raises(MessageFailed, match="ask cycle: probe:1 -> probe:1"):
        await runtime.system.ask(probe(1), AskOther(1, Get()))


async def test_an_ask_through_a_busy_chain_without_a_cycle_is_answered(runtime: Runtime) -> None:
    await runtime.system.ask(probe(3), Add(4))
    assert await runtime.system.ask(probe(1), AskOther(2, AskOther(3, Get()))) == 4


async def test_a_full_mailbox_refuses_at_once_and_keeps_what_it_holds(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(mailbox_size=3))
    system = runtime.system
    system.tell(probe(1), Wait("open"))
    await arrival("open")  # taken out of the mailbox and running
    system.tell(probe(1), Add(1))
    system.tell(probe(1), Add(2))
    last = asyncio.ensure_future(system.ask(probe(1), Get()))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        system.tell(probe(1), Add(100))
    with pytest.raises(Overloaded):
        await system.ask(probe(1), Get())
    gate("open").set()
    assert await last == 3


async def test_the_in_flight_cap_refuses_new_messages_for_any_actor(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(max_in_flight=4))
    system = runtime.system
    waiting = [asyncio.ensure_future(system.ask(probe(a), Wait(f"open{a}"))) for a in range(4)]
    for actor in range(4):
        await arrival(f"open{actor}")
    with pytest.raises(Overloaded) as refused:
        system.tell(probe(99), Get())
    assert refused.value.retry_after > 0
    with pytest.raises(Overloaded):
        await system.ask(probe(100), Get())
    assert system.in_flight == 4
    # refused before activation: no live actor is left behind for an address refused
    assert not system.is_live(probe(99)) and not system.is_live(probe(100))
    assert system.live_actors == 4
    for actor in range(4):
        gate(f"open{actor}").set()
    await asyncio.gather(*waiting)
    assert system.in_flight == 0
    assert await system.ask(probe(99), Get()) == 0


async def test_an_ask_whose_handler_waits_is_answered_when_it_resumes(runtime: Runtime) -> None:
    asking = asyncio.ensure_future(runtime.system.ask(probe(1), Wait("later")))
    await arrival("later")
    assert not asking.done()
    runtime.system.tell(probe(1), Add(2))  # queues behind the waiting handler
    gate("later").set()
    assert await asking == "later"
    assert await runtime.system.ask(probe(1), Get()) == 2


async def test_a_caller_cancelled_mid_ask_does_not_cut_the_actor_short(runtime: Runtime) -> None:
    asking = asyncio.ensure_future(runtime.system.ask(probe(1), Wait("g")))
    await arrival("g")
    asking.cancel()
    runtime.system.tell(probe(1), Add(5))
    gate("g").set()
    assert await runtime.system.ask(probe(1), Get()) == 5
    assert [m for _, m in Probe.journal] == [Wait("g"), Add(5), Get()]


async def test_a_cell_task_cancelled_before_its_first_step_still_stops_its_handler() -> None:
    loop = asyncio.get_running_loop()
    waited_for: asyncio.Future[None] = loop.create_future()  # an answer on its way
    stopped: list[str] = []

    async def handling() -> None:
        try:
            await waited_for
        except asyncio.CancelledError:
            stopped.append("told")
            raise

    cell = Cell(probe(1), Probe, 0.0)
    start_eager(loop, cell, handling())  # runs until it waits
    assert cell.task is not None
    cell.task.cancel()  # before the loop ever stepped the task

    with pytest.raises(asyncio.CancelledError):
        await cell.task
    assert stopped == ["told"]
    assert waited_for.cancelled()  # an answer given later reaches nobody and says nothing


async def test_a_checkpoint_makes_a_sagas_first_step_durable_even_if_the_rest_fails(
    open_probe_runtime: OpenRuntime,
) -> None:
    from shopkeep.runtime import Directive, SupervisionPolicy
    from tests.runtime.probe import Saga

    runtime = await open_probe_runtime(
        RuntimeConfig(supervision=SupervisionPolicy(decider=lambda exc: Directive.RESUME))
    )
    with pytest.raises(MessageFailed, match="next step failed"):
        await runtime.system.ask(probe(1), Saga(2, 5, fail=True))
    await runtime.store.writer.flush()
    rows = await runtime.store.reader.fetchall("SELECT id, value FROM probe ORDER BY id")
    assert rows == [(1, 5), (2, 5)]  # the intent and the step are on disk; nothing after them


async def test_a_query_reads_the_actors_own_latest_writes(runtime: Runtime) -> None:
    from tests.runtime.probe import Audit

    assert await runtime.system.ask(probe(1), Audit(4)) == 4
    assert await runtime.system.ask(probe(1), Audit(3)) == 7


async def test_log_lines_of_a_handler_name_its_actor_and_the_trace_that_caused_it(
    runtime: Runtime,
) -> None:
    from shopkeep.logs import add_message_context
    from shopkeep.runtime import current_trace

    seen: list[object] = []
    current_trace.set("req-7")
    await runtime.system.ask(probe(3), Add(1))
    Probe.on_receive = lambda: seen.append(add_message_context(None, "info", {}))
    try:
        await runtime.system.ask(probe(3), Get())
    finally:
        Probe.on_receive = None
    assert seen == [{"actor": "probe:3", "trace": "req-7"}]


async def test_an_ask_waiting_for_its_commit_stays_in_flight_until_answered(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(max_in_flight=1))
    await runtime.system.ask(probe(1), Add(0))
    disk_is_slow = threading.Event()

    def slow_commit(operation: str) -> None:
        if operation == "commit":
            disk_is_slow.wait(10)

    runtime.store.writer.fault = slow_commit
    first = asyncio.ensure_future(runtime.system.ask(probe(1), Add(1)))
    await asyncio.sleep(0)  # one turn: the handler runs, its answer waits for the commit
    assert not first.done()
    with pytest.raises(Overloaded):
        await runtime.system.ask(probe(2), Get())
    disk_is_slow.set()
    assert await first == 1
    runtime.store.writer.fault = None
    assert await runtime.system.ask(probe(2), Get()) == 0
