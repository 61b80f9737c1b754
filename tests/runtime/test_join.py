"""Joined turns: another actor's handler run inside a turn, its writes in the turn's one unit."""

from __future__ import annotations

import asyncio

import pytest

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import (
    ActivationFailed,
    Directive,
    MessageFailed,
    RuntimeConfig,
    SupervisionPolicy,
)
from shopkeep.runtime.join import JoinWaited, NotJoinable, activate, joinable
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import Add, Get, Join, Probe, Wait, arrival, count_rows, gate, probe


async def rows(runtime: Runtime) -> list[tuple[int, int]]:
    await runtime.store.writer.flush()
    found = await runtime.store.reader.fetchall("SELECT id, value FROM probe ORDER BY id")
    return [(int(a), int(b)) for a, b in found]


async def resuming_runtime(open_probe_runtime: OpenRuntime) -> Runtime:
    """A runtime whose failed handlers are not retried (the failure reaches the asker)."""
    policy = SupervisionPolicy(decider=lambda exc: Directive.RESUME)
    return await open_probe_runtime(RuntimeConfig(supervision=policy))


async def test_a_joined_turn_commits_both_actors_changes_as_one_unit(runtime: Runtime) -> None:
    await runtime.system.ask(probe(2), Add(1))
    units_before = runtime.store.writer.stats.units
    assert await runtime.system.ask(probe(1), Join(2, 5, Add(7))) == 8
    assert runtime.store.writer.stats.units - units_before == 1
    assert await rows(runtime) == [(1, 5), (2, 8)]
    assert await runtime.system.ask(probe(2), Get()) == 8


async def test_a_check_join_answers_from_memory_and_changes_nothing(runtime: Runtime) -> None:
    await runtime.system.ask(probe(2), Add(3))
    assert await runtime.system.ask(probe(1), Join(2, 1, Get(), check=True)) == 3
    assert await rows(runtime) == [(1, 1), (2, 3)]


async def test_a_check_the_participant_cannot_answer_is_not_joinable(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await resuming_runtime(open_probe_runtime)
    await runtime.system.ask(probe(2), Add(3))
    with pytest.raises(MessageFailed) as failed:
        await runtime.system.ask(probe(1), Join(2, 1, Add(1), check=True))
    assert isinstance(failed.value.__cause__, NotJoinable)
    assert await rows(runtime) == [(2, 3)]


async def test_an_actor_that_is_not_live_cannot_join_and_nothing_happens(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await resuming_runtime(open_probe_runtime)
    with pytest.raises(MessageFailed) as failed:
        await runtime.system.ask(probe(1), Join(2, 5, Add(7)))
    assert isinstance(failed.value.__cause__, NotJoinable)
    assert await count_rows(runtime, "probe") == 0
    assert not runtime.system.is_live(probe(2))


async def test_a_joined_handler_that_waits_fails_the_turn_and_restarts_the_participant(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await resuming_runtime(open_probe_runtime)
    await runtime.system.ask(probe(2), Add(4))
    with pytest.raises(MessageFailed) as failed:
        await runtime.system.ask(probe(1), Join(2, 5, Wait("never")))
    assert isinstance(failed.value.__cause__, JoinWaited)
    assert await rows(runtime) == [(2, 4)]
    activations = Probe.activations.count(2)
    assert await runtime.system.ask(probe(2), Get()) == 4
    assert Probe.activations.count(2) == activations + 1  # reloaded from the store


async def test_a_turn_that_fails_after_joining_forgets_the_participants_change(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await resuming_runtime(open_probe_runtime)
    await runtime.system.ask(probe(2), Add(4))
    with pytest.raises(MessageFailed, match="failed after its join"):
        await runtime.system.ask(probe(1), Join(2, 5, Add(100), fail=True))
    assert await runtime.system.ask(probe(2), Get()) == 4
    assert await rows(runtime) == [(2, 4)]


async def test_a_joined_unit_that_fails_to_commit_restarts_every_participant(
    runtime: Runtime,
) -> None:
    await runtime.system.ask(probe(1), Add(1))
    await runtime.system.ask(probe(2), Add(2))

    def fail_statements(operation: str) -> None:
        if operation == "statement":
            raise OSError("disk I/O error")

    runtime.store.writer.fault = fail_statements
    with pytest.raises(Exception, match="disk I/O error"):
        await runtime.system.ask(probe(1), Join(2, 10, Add(20)))
    runtime.store.writer.fault = None
    assert await runtime.system.ask(probe(1), Get()) == 1
    assert await runtime.system.ask(probe(2), Get()) == 2
    assert await rows(runtime) == [(1, 1), (2, 2)]


async def test_a_participants_answer_to_others_waits_for_the_joined_commit(
    runtime: Runtime,
) -> None:
    await runtime.system.ask(probe(1), Add(0))
    await runtime.system.ask(probe(2), Add(1))
    committed: list[list[tuple[int, int]]] = []

    async def read_after_the_answer() -> int:
        answer = await runtime.system.ask(probe(2), Get())
        found = await runtime.store.reader.fetchall("SELECT id, value FROM probe ORDER BY id")
        committed.append([(int(a), int(b)) for a, b in found])
        return int(answer)

    joined = asyncio.create_task(runtime.system.ask(probe(1), Join(2, 5, Add(7))))
    seen = asyncio.create_task(read_after_the_answer())
    assert list(await asyncio.gather(joined, seen)) == [8, 8]
    assert committed == [[(1, 5), (2, 8)]]  # what it answered was on disk by then


async def test_activate_loads_an_actor_so_that_it_can_join(runtime: Runtime) -> None:
    await runtime.system.ask(probe(2), Add(6))
    runtime.system.passivate_idle()
    await activate(runtime.system, [probe(2), probe(3)])
    assert runtime.system.is_live(probe(3))
    assert await runtime.system.ask(probe(1), Join(3, 1, Add(2))) == 2


async def test_an_id_that_names_nothing_stays_for_the_activating_turn_then_is_dropped(
    runtime: Runtime,
) -> None:
    Probe.nothing.add(3)
    await activate(runtime.system, [probe(3), probe(4)])  # 4 loads after 3, awaiting a read
    # still there for the rest of this turn, so that its check can say it names nothing
    assert joinable(runtime.system.registry.get(probe(3)))
    await asyncio.sleep(0)  # the turn is over
    assert not runtime.system.is_live(probe(3))
    assert runtime.system.is_live(probe(4))


async def test_activate_waits_for_a_busy_actors_turn_in_its_mailbox(runtime: Runtime) -> None:
    await runtime.system.ask(probe(2), Add(6))
    held = asyncio.create_task(runtime.system.ask(probe(2), Wait("held")))
    await arrival("held")
    queued = asyncio.create_task(runtime.system.ask(probe(2), Add(1)))
    await asyncio.sleep(0)
    assert not joinable(runtime.system.registry.get(probe(2)))
    waiting = asyncio.create_task(activate(runtime.system, [probe(2)]))
    await asyncio.sleep(0)
    assert not waiting.done()  # behind the held message and the one queued before it
    gate("held").set()
    await waiting
    assert held.done()
    assert joinable(runtime.system.registry.get(probe(2)))
    assert await runtime.system.ask(probe(1), Join(2, 1, Add(2))) == 9  # after the Add(1)
    assert await queued == 7


async def test_activate_loads_a_cold_actor_in_the_callers_task_and_its_mail_waits_for_the_load(
    runtime: Runtime,
) -> None:
    handled = runtime.system.stats.messages
    Probe.held_activation.add(2)
    loading = asyncio.create_task(activate(runtime.system, [probe(2)]))
    await arrival("load 2")
    cell = runtime.system.registry.get(probe(2))
    assert cell is not None and cell.task is None  # no message, no task: the activating task's
    sent = asyncio.create_task(runtime.system.ask(probe(2), Add(1)))
    second = asyncio.create_task(activate(runtime.system, [probe(2)]))
    await asyncio.sleep(0)
    assert not sent.done() and not second.done()  # queued behind the load
    gate("load 2").set()
    await loading
    assert await sent == 1
    await second
    assert runtime.system.stats.messages == handled + 2  # those two; the load was no message
    assert joinable(runtime.system.registry.get(probe(2)))
    assert Probe.activations == [2]  # one load for all three


async def test_a_load_that_fails_under_activate_raises_and_the_next_message_loads_again(
    runtime: Runtime,
) -> None:
    Probe.fail_activation.add(3)
    with pytest.raises(ActivationFailed):
        await activate(runtime.system, [probe(3)])
    assert not joinable(runtime.system.registry.get(probe(3)))
    Probe.fail_activation.clear()
    assert await runtime.system.ask(probe(3), Add(2)) == 2
