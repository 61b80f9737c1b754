"""Virtual actors: activation on first message, passivation, the LRU cap, one activation."""

from __future__ import annotations

import asyncio

import pytest

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import ActivationFailed, RuntimeConfig, VirtualClock
from shopkeep.runtime import system as system_module
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import Add, Get, Probe, Wait, arrival, gate, probe


async def test_an_actor_is_activated_by_its_first_message_with_its_state_from_the_store(
    runtime: Runtime,
) -> None:
    assert not runtime.system.is_live(probe(1))
    await runtime.system.ask(probe(1), Add(5))
    assert runtime.system.is_live(probe(1))
    assert Probe.activations == [1]


async def test_concurrent_first_messages_make_one_activation(runtime: Runtime) -> None:
    answers = await asyncio.gather(*(runtime.system.ask(probe(1), Add(1)) for _ in range(50)))
    assert sorted(answers) == list(range(1, 51))
    assert Probe.activations == [1]


async def test_an_idle_actor_holds_no_task_and_no_mailbox(runtime: Runtime) -> None:
    system = runtime.system
    for _ in range(3):
        system.tell(probe(1), Add(1))
    assert await system.ask(probe(1), Get()) == 3
    cell = system._registry.get(probe(1))
    assert cell is not None
    assert cell.task is None
    assert cell.mailbox is None


async def test_an_idle_actor_is_passivated_and_reloads_its_state_on_its_next_message(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(idle_timeout_s=60))
    system = runtime.system
    await system.ask(probe(1), Add(9))
    await clock.advance(59)
    assert system.is_live(probe(1))
    await clock.advance(61)
    assert not system.is_live(probe(1))
    assert await system.ask(probe(1), Get()) == 9
    assert Probe.activations == [1, 1]


async def test_the_idle_sweep_drops_a_slice_a_turn_until_every_idle_actor_is_gone(
    open_probe_runtime: OpenRuntime, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system_module, "PASSIVATION_SLICE", 3)
    runtime = await open_probe_runtime(RuntimeConfig(idle_timeout_s=60))
    system = runtime.system
    for actor in range(8):
        await system.ask(probe(actor), Add(actor))
    await clock.advance(50)
    await system.ask(probe(8), Add(8))  # used since: not idle at the sweep

    turns: list[int] = []
    advanced = asyncio.ensure_future(clock.advance(40))  # the sweep at 90 s, cutoff 30 s
    while not advanced.done():
        turns.append(system.live_actors)
        await asyncio.sleep(0)

    assert [probe(n) for n in range(9) if system.is_live(probe(n))] == [probe(8)]
    assert system.stats.passivations == 8
    assert {9, 6, 3, 1} <= set(turns)  # 3, 3, then 2 in three turns
    assert await system.ask(probe(5), Get()) == 5


async def test_the_live_actor_cap_passivates_the_least_recently_used_first(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(max_live_actors=10))
    system = runtime.system
    for actor in range(10):
        await system.ask(probe(actor), Add(actor))
        await clock.advance(2)
    await system.ask(probe(0), Get())  # 0 is now the most recently used
    await clock.advance(2)
    await system.ask(probe(10), Get())
    assert system.live_actors == 10
    assert not system.is_live(probe(1))
    assert system.is_live(probe(0))
    assert await system.ask(probe(1), Get()) == 1


async def test_an_actor_holding_what_it_could_not_load_again_outlives_the_idle_sweep_alone(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(idle_timeout_s=60, max_live_actors=3))
    system = runtime.system
    Probe.holding.add(1)
    for actor in (1, 2):
        await system.ask(probe(actor), Add(actor))

    await clock.advance(121)  # both idle past the timeout: the sweep leaves the pinned one
    assert system.is_live(probe(1)) and not system.is_live(probe(2))

    Probe.holding.discard(1)  # let go: idle, it goes at the next sweep
    await clock.advance(121)
    assert not system.is_live(probe(1))
    assert Probe.activations.count(1) == 1


async def test_the_live_actor_cap_passivates_a_pinned_actor_too(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    # pinned actors filling the cap would leave no room for the actors that answer them
    runtime = await open_probe_runtime(RuntimeConfig(max_live_actors=2))
    system = runtime.system
    Probe.holding.update({1, 2})
    for actor in (1, 2, 3):
        await system.ask(probe(actor), Add(actor))
        await clock.advance(2)

    assert not system.is_live(probe(1)) and system.is_live(probe(3))
    assert await system.ask(probe(1), Get()) == 1


async def test_an_actor_that_cannot_load_answers_activation_failed_and_loads_later(
    runtime: Runtime,
) -> None:
    Probe.fail_activation.add(1)
    with pytest.raises(ActivationFailed, match="probe:1 could not load"):
        await runtime.system.ask(probe(1), Get())
    Probe.fail_activation.clear()
    assert await runtime.system.ask(probe(1), Add(1)) == 1


async def test_mailbox_depths_are_read_from_the_cells_with_mail_not_from_every_live_one(
    runtime: Runtime,
) -> None:
    system = runtime.system
    for actor_id in range(1, 101):
        await system.ask(probe(actor_id), Add(1))  # a hundred live, idle actors
    held = asyncio.create_task(system.ask(probe(7), Wait("held")))
    await arrival("held")
    queued = [asyncio.create_task(system.ask(probe(7), Add(1))) for _ in range(2)]
    await asyncio.sleep(0)

    assert list(system.mailbox_depths()) == [2]
    assert len(system._mailed) == 1  # what a scrape walks

    gate("held").set()
    await asyncio.gather(held, *queued)
    assert list(system.mailbox_depths()) == []
    assert not system._mailed
