"""Requests under one Idempotency-Key of one principal run one at a time (idempotency.InFlight),
and the bookkeeping of keys in flight is gone once none holds or waits."""

from __future__ import annotations

import asyncio

from shopkeep.idempotency import InFlight


async def test_a_second_request_under_the_same_key_waits_for_the_first_to_finish() -> None:
    in_flight = InFlight()
    first_inside, release_first = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with in_flight.hold(7, "key"):
            order.append("first in")
            first_inside.set()
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        async with in_flight.hold(7, "key"):
            order.append("second in")

    running = asyncio.gather(first(), second())
    await first_inside.wait()
    await asyncio.sleep(0)  # let the second reach the key and wait there
    assert order == ["first in"]
    release_first.set()
    await running

    assert order == ["first in", "first out", "second in"]
    assert len(in_flight) == 0


async def test_other_keys_and_other_principals_do_not_wait() -> None:
    in_flight = InFlight()
    async with in_flight.hold(7, "key"), in_flight.hold(7, "other key"), in_flight.hold(8, "key"):
        assert len(in_flight) == 3
    assert len(in_flight) == 0


async def test_a_request_cancelled_while_waiting_leaves_nothing_behind() -> None:
    in_flight = InFlight()
    waiting = asyncio.Event()

    async def waiter() -> None:
        waiting.set()
        async with in_flight.hold(7, "key"):
            raise AssertionError("it never gets the key: it is cancelled first")

    async with in_flight.hold(7, "key"):
        task = asyncio.create_task(waiter())
        await waiting.wait()
        await asyncio.sleep(0)  # now blocked on the key
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert len(in_flight) == 1  # the holder's own entry

    assert len(in_flight) == 0


async def test_a_request_that_fails_inside_frees_the_key() -> None:
    in_flight = InFlight()
    try:
        async with in_flight.hold(7, "key"):
            raise RuntimeError("the operation failed")
    except RuntimeError:
        pass
    async with in_flight.hold(7, "key"):
        assert len(in_flight) == 1
    assert len(in_flight) == 0
