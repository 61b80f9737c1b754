"""Properties of the ordering guarantees, over random schedules (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shopkeep.bootstrap import Runtime
from shopkeep.runtime import RuntimeConfig, VirtualClock
from tests.runtime.probe import Add, Arm, Fired, Get, journal_of_seeded_run, probe

sends = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 1000)), min_size=1, max_size=60)


@settings(max_examples=30, deadline=None)
@given(sends=sends, seed=st.integers(0, 2**32))
def test_each_actor_handles_the_tells_sent_to_it_in_the_order_they_were_sent(
    sends: list[tuple[int, int]], seed: int
) -> None:
    async def work(rt: Runtime, clock: VirtualClock) -> None:
        for actor, n in sends:
            rt.system.tell(probe(actor), Add(n))
        for actor in range(4):
            await rt.system.ask(probe(actor), Get())

    journal = journal_of_seeded_run(seed, work)
    for actor in range(4):
        seen = [m.n for a, m in journal if a == actor and isinstance(m, Add)]
        assert seen == [n for a, n in sends if a == actor]


timers = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 600)), min_size=1, max_size=40)


@settings(max_examples=30, deadline=None)
@given(timers=timers, seed=st.integers(0, 2**32))
def test_each_actor_gets_its_timer_fires_in_due_order_each_exactly_once(
    timers: list[tuple[int, int]], seed: int
) -> None:
    async def work(rt: Runtime, clock: VirtualClock) -> None:
        for index, (actor, delay) in enumerate(timers):
            await rt.system.ask(probe(actor), Arm(f"t{index}", delay, index))
        await clock.advance(601)
        for actor in range(4):
            await rt.system.ask(probe(actor), Get())

    journal = journal_of_seeded_run(seed, work)
    fired = [m.n for _, m in journal if isinstance(m, Fired)]
    assert sorted(fired) == list(range(len(timers)))
    # all were armed at one virtual instant: each actor gets its fires in due order, ties in
    # the order they were armed (different actors' mailboxes are not ordered among themselves)
    for actor in range(4):
        mine = [index for a, m in journal if a == actor and isinstance(m, Fired) for index in [m.n]]
        expected = sorted(
            (index for index, (owner, _) in enumerate(timers) if owner == actor),
            key=lambda index: (timers[index][1], index),
        )
        assert mine == expected


@settings(max_examples=40, deadline=None)
@given(
    delays=st.lists(st.integers(1, 60), min_size=5, max_size=40),
    seed=st.integers(0, 2**32),
)
def test_timers_paged_through_a_tiny_window_each_fire_exactly_once(
    delays: list[int], seed: int
) -> None:
    # A window of 4 makes page reads frequent and interleaves them with fires: a fire handled
    # while a page is being read must not come back from that page and fire again.
    async def work(rt: Runtime, clock: VirtualClock) -> None:
        for index, delay in enumerate(delays):
            await rt.system.ask(probe(index % 3), Arm(f"t{index}", delay, index))
        for _ in range(62):
            await clock.advance(1)
        for actor in range(3):
            await rt.system.ask(probe(actor), Get())

    journal = journal_of_seeded_run(seed, work, RuntimeConfig(timer_page_size=4))
    fired = [m.n for _, m in journal if isinstance(m, Fired)]
    assert sorted(fired) == list(range(len(delays)))

