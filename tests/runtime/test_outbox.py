"""Durable messages: written with the sender's change, applied once by the receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeep.bootstrap import Runtime, open_runtime
from shopkeep.runtime import RuntimeConfig, VirtualClock
from shopkeep.store import UnitOfWork
from shopkeep.store.writer_process import WriterProcessDied
from tests.runtime.conftest import OpenRuntime
from tests.runtime.probe import PROBE_MIGRATIONS, Add, Boom, Get, Probe, Send, count_rows, probe


async def outbox_rows(runtime: Runtime) -> int:
    return await count_rows(runtime, "outbox")


async def test_a_durable_message_is_applied_once_and_its_row_removed_with_the_change(
    runtime: Runtime,
) -> None:
    await runtime.system.ask(probe(1), Send(2, 5))
    assert await runtime.system.ask(probe(2), Get()) in (0, 5)
    await runtime.store.writer.flush()
    assert await runtime.system.ask(probe(2), Get()) == 5
    assert await outbox_rows(runtime) == 0
    assert runtime.system.outbox.delivered == 1


async def test_a_message_to_an_actor_that_fails_is_retried_until_applied(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(RuntimeConfig(outbox_retry_s=1), inline=True)
    Probe.fail_activation.add(2)
    await runtime.system.ask(probe(1), Send(2, 5))
    await clock.advance(0)
    assert runtime.system.outbox.redeliveries == 1
    Probe.fail_activation.clear()
    await clock.advance(1)
    assert await runtime.system.ask(probe(2), Get()) == 5
    assert await outbox_rows(runtime) == 0


async def test_messages_left_in_the_outbox_by_a_stopped_server_are_applied_at_next_start(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = str(tmp_path / "o.db")
    Probe.reset()
    async with open_runtime(path, kinds=[Probe], migrations=PROBE_MIGRATIONS, clock=clock) as rt:
        Probe.fail_activation.add(2)  # nothing can be applied before the stop
        for n in range(1, 4):
            await rt.system.ask(probe(1), Send(2, n))
        assert await outbox_rows(rt) == 3
    Probe.fail_activation.clear()
    async with open_runtime(path, kinds=[Probe], migrations=PROBE_MIGRATIONS, clock=clock) as rt:
        await rt.system.ask(probe(9), Add(0))
        for _ in range(100):
            if await outbox_rows(rt) == 0:
                break
            await rt.system.ask(probe(2), Get())
        assert await rt.system.ask(probe(2), Get()) == 6
        assert await outbox_rows(rt) == 0


async def test_a_poison_durable_message_is_parked_and_not_delivered_again(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    runtime = await open_probe_runtime(inline=True)  # reloads take no real time: exact back-offs
    await runtime.system.ask(probe(1), Send(3, -1))
    await clock.advance(1)
    assert await outbox_rows(runtime) == 0
    row = await runtime.store.reader.fetchone(
        "SELECT actor_id, message, attempts FROM dead_letters"
    )
    assert row == (3, "Boom(error='runtime')", 3)
    await clock.advance(60)
    assert [m for a, m in Probe.journal if a == 3] == [Boom()] * 3


async def test_a_message_whose_commit_sqlite_keeps_refusing_is_parked_after_its_tries(
    open_probe_runtime: OpenRuntime, clock: VirtualClock
) -> None:
    # its commit failed the same way at every try (an int past 64 bits cannot be bound), and
    # it was delivered again for ever, the audit counting it in flight, no person told
    config = RuntimeConfig(outbox_retry_s=1, outbox_retry_max_s=1, outbox_fault_attempts=3)
    runtime = await open_probe_runtime(config, inline=True)
    await runtime.system.ask(probe(1), Send(2, 2**63))

    for _ in range(6):
        await clock.advance(1)
        await runtime.system.quiet()

    assert await outbox_rows(runtime) == 0
    row = await runtime.store.reader.fetchone(
        "SELECT actor_id, message, error, attempts FROM dead_letters"
    )
    assert row is not None
    assert (row[0], row[1], row[3]) == (2, f"Add(n={2**63})", 3)
    assert row[2].startswith("CommitFailed: ") and "too large" in row[2]
    assert [m for a, m in Probe.journal if a == 2] == [Add(2**63)] * 3
    assert await runtime.system.ask(probe(2), Get()) == 0  # its state as the disk has it


async def test_a_message_whose_unit_failed_after_committing_is_delivered_without_a_restart(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    committer = runtime.store.writer._committer
    really_commit = committer.commit

    def committed_then_lost(units: list[UnitOfWork]) -> list[BaseException | None] | None:
        # What a writer process that dies after its COMMIT looks like from here: the batch
        # is on disk, and every unit of it is reported failed (its outcome is unknown).
        monkeypatch.setattr(committer, "commit", really_commit)
        assert really_commit(units) is None
        return [WriterProcessDied("the writer process is gone")] * len(units)

    monkeypatch.setattr(committer, "commit", committed_then_lost)
    with pytest.raises(Exception, match="writer process is gone"):
        await runtime.system.ask(probe(1), Send(2, 5))

    await runtime.system.quiet()
    assert await runtime.system.ask(probe(2), Get()) == 5
    assert await outbox_rows(runtime) == 0
    assert runtime.system.outbox.delivered == 1
