"""Supervision: restart from the store, poison messages, resume, stop, escalate, the budget."""

from __future__ import annotations

import asyncio

import pytest

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import (
    ActorStopped,
    Address,
    Directive,
    MessageFailed,
    RuntimeConfig,
    SupervisionPolicy,
    VirtualClock,
)
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import Add, Boom, Get, Probe, Wait, arrival, gate, probe


def policy(directive: Directive, **limits: float) -> RuntimeConfig:
    return RuntimeConfig(
        supervision=SupervisionPolicy(decider=lambda exc: directive, **limits)  # type: ignore[arg-type]
    )


async def dead_letters(runtime: Runtime) -> list[tuple[str, str, int]]:
    await runtime.store.writer.flush()
    return [
        (row[0], row[1], row[2])
        for row in await runtime.store.reader.fetchall(
            "SELECT message, error, attempts FROM dead_letters ORDER BY id"
        )
    ]


async def test_a_poison_message_is_retried_with_backoff_then_parked_and_the_actor_goes_on(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(inline=True)  # reloads take no real time: exact back-offs
    system = runtime.system
    await system.ask(probe(1), Add(1))
    failing = asyncio.ensure_future(system.ask(probe(1), Boom(), timeout=60))
    await asyncio.sleep(0)  # the ask's task takes its first step: Boom is handled and fails
    system.tell(probe(1), Add(2))
    await clock.advance(0.049)
    assert [m for _, m in Probe.journal].count(Boom()) == 1
    await clock.advance(0.001)  # first back-off: 50 ms
    assert [m for _, m in Probe.journal].count(Boom()) == 2
    await clock.advance(0.1)  # second back-off: 100 ms
    assert [m for _, m in Probe.journal].count(Boom()) == 3
    with pytest.raises(MessageFailed, match="RuntimeError: boom") as failed:
        await failing
    assert failed.value.dead_lettered
    assert await system.ask(probe(1), Get()) == 3  # the 1000s added in memory were dropped
    [(message, error, attempts)] = await dead_letters(runtime)
    assert (message, error, attempts) == ("Boom(error='runtime')", "RuntimeError: boom", 3)
    row = await runtime.store.reader.fetchone(
        "SELECT traceback FROM dead_letters WHERE kind = 'probe' AND actor_id = 1"
    )
    assert row is not None and "raise RuntimeError" in row[0]


async def test_a_restart_reloads_the_state_from_the_store(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(policy(Directive.RESTART, max_attempts=1))
    await runtime.system.ask(probe(1), Add(5))
    with pytest.raises(MessageFailed):
        await runtime.system.ask(probe(1), Boom())
    assert await runtime.system.ask(probe(1), Get()) == 5
    assert Probe.activations == [1, 1]
    assert runtime.system.stats.restarts == 1


async def test_resume_keeps_the_state_and_parks_the_message(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(policy(Directive.RESUME))
    await runtime.system.ask(probe(1), Add(5))
    with pytest.raises(MessageFailed, match="boom"):
        await runtime.system.ask(probe(1), Boom())
    assert await runtime.system.ask(probe(1), Get()) == 1005
    assert Probe.activations == [1]
    assert len(await dead_letters(runtime)) == 1


async def test_a_message_that_cannot_be_encoded_is_parked_all_the_same(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(policy(Directive.RESUME))
    lone = "key \udcff"  # what header bytes that are not UTF-8 become in aiohttp

    with pytest.raises(MessageFailed, match="RuntimeError: key") as failed:
        await runtime.system.ask(probe(1), Boom(lone))

    assert failed.value.dead_lettered
    [(message, error, attempts)] = await dead_letters(runtime)
    assert (message, error, attempts) == (
        "Boom(error='key \\udcff')",
        "RuntimeError: key \\udcff",
        1,
    )
    row = await runtime.store.reader.fetchone("SELECT payload, traceback FROM dead_letters")
    assert row is not None and row[0] is None and "key \\udcff" in row[1]
    assert await runtime.system.ask(probe(1), Get()) == 1000  # resumed, and goes on


async def test_stop_answers_every_queued_ask_with_actor_stopped(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(policy(Directive.STOP))
    system = runtime.system
    first = asyncio.ensure_future(system.ask(probe(1), Wait("w")))
    await arrival("w")
    boom = asyncio.ensure_future(system.ask(probe(1), Boom()))
    queued = [asyncio.ensure_future(system.ask(probe(1), Add(1))) for _ in range(3)]
    await asyncio.sleep(0)
    gate("w").set()
    assert await first == "w"
    with pytest.raises(MessageFailed):
        await boom
    for ask in queued:
        with pytest.raises(ActorStopped, match="probe:1 stopped: stop after RuntimeError"):
            await ask
    assert not system.is_live(probe(1))
    assert await system.ask(probe(1), Get()) == 0  # a later message activates it afresh


async def test_escalate_stops_the_actor_and_tells_the_escalation_hook(
    open_probe_runtime: OpenRuntime,
) -> None:
    runtime = await open_probe_runtime(policy(Directive.ESCALATE))
    escalated: list[tuple[Address, str]] = []
    runtime.system.on_escalate = lambda address, exc: escalated.append((address, str(exc)))
    with pytest.raises(MessageFailed):
        await runtime.system.ask(probe(1), Boom())
    assert escalated == [(probe(1), "boom")]
    assert not runtime.system.is_live(probe(1))


async def test_restarts_beyond_the_budget_stop_the_actor(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(
        policy(Directive.RESTART, max_attempts=1, max_restarts=2, within_s=60)
    )
    system = runtime.system
    for _ in range(2):
        with pytest.raises(MessageFailed):
            await system.ask(probe(1), Boom())
        assert system.is_live(probe(1))
    with pytest.raises(MessageFailed):
        await system.ask(probe(1), Boom())
    assert not system.is_live(probe(1))  # the third restart within 60 s became a stop
    await clock.advance(61)
    with pytest.raises(MessageFailed):
        await system.ask(probe(1), Boom())
    assert system.is_live(probe(1))  # a fresh activation has a fresh budget


async def test_the_decider_sees_the_exception_and_chooses_per_type(
    open_probe_runtime: OpenRuntime,
) -> None:
    def decider(exc: Exception) -> Directive:
        return Directive.RESUME if isinstance(exc, ValueError) else Directive.STOP

    runtime = await open_probe_runtime(
        RuntimeConfig(supervision=SupervisionPolicy(decider=decider))
    )
    with pytest.raises(MessageFailed, match="ValueError"):
        await runtime.system.ask(probe(1), Boom("value"))
    assert runtime.system.is_live(probe(1))
    with pytest.raises(MessageFailed, match="RuntimeError"):
        await runtime.system.ask(probe(1), Boom())
    assert not runtime.system.is_live(probe(1))
