"""Graceful stop: intake closes, mailboxes drain, the writer flushes; nothing acked is lost."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.runtime import ShuttingDown, VirtualClock
from tests.runtime.probe import PROBE_MIGRATIONS, Add, Get, Probe, Wait, arrival, gate, probe


async def test_stop_drains_every_mailbox_and_commits_every_unit(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = str(tmp_path / "stop.db")
    Probe.reset()
    async with open_runtime(path, kinds=[Probe], migrations=PROBE_MIGRATIONS, clock=clock) as rt:
        system = rt.system
        waiting = asyncio.ensure_future(system.ask(probe(0), Wait("slow")))
        await arrival("slow")
        for actor in range(20):
            for _ in range(10):
                system.tell(probe(actor), Add(1))
        stopping = asyncio.ensure_future(system.stop())
        await asyncio.sleep(0)
        with pytest.raises(ShuttingDown):
            system.tell(probe(1), Add(1))  # intake is closed at once
        with pytest.raises(ShuttingDown):
            await system.ask(probe(1), Get())
        gate("slow").set()
        await stopping
        assert await waiting == "slow"
    rows = sqlite3.connect(path).execute("SELECT id, value FROM probe ORDER BY id").fetchall()
    assert rows == [(actor, 10) for actor in range(20)]


async def test_messages_sent_by_handlers_while_draining_are_still_handled(
    tmp_path: Path, clock: VirtualClock
) -> None:
    from tests.runtime.probe import AskOther

    path = str(tmp_path / "chain.db")
    Probe.reset()
    async with open_runtime(path, kinds=[Probe], migrations=PROBE_MIGRATIONS, clock=clock) as rt:
        asking = asyncio.ensure_future(rt.system.ask(probe(1), AskOther(2, Add(7))))
        await asyncio.sleep(0)  # the ask's task takes its first step
        await rt.system.stop()
        assert await asking == 7
    assert sqlite3.connect(path).execute("SELECT value FROM probe WHERE id = 2").fetchone() == (7,)


async def test_page_reads_under_way_when_the_system_stops_are_dropped_and_none_follow(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, writer = runtime.system, runtime.store.writer
    reads: list[asyncio.Future[None]] = []

    async def read_held_until_released(fn: object) -> list[object]:
        reads.append(asyncio.get_running_loop().create_future())
        await reads[-1]
        return []

    monkeypatch.setattr(writer, "call", read_held_until_released)
    system.timers.resync()  # the timers' window read again, as after a failed commit
    system.outbox.rescan()  # the outbox's table scanned again, likewise
    await asyncio.sleep(0)
    assert len(reads) == 2 and not any(read.done() for read in reads)
    await system.stop()
    await asyncio.wait(reads, timeout=5)
    assert all(read.cancelled() for read in reads)
    system.timers.resync()  # a commit failing in the stop's last flush asks for these again
    system.outbox.rescan()
    await asyncio.sleep(0)
    assert len(reads) == 2
