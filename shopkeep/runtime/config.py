"""The runtime's settings, one frozen value passed to the ActorSystem."""

from __future__ import annotations

from dataclasses import dataclass, field

from shopkeep.runtime.supervision import SupervisionPolicy


@dataclass(frozen=True)
class RuntimeConfig:
    """Limits and delays of the actor runtime. The defaults suit one server process of a
    small service."""

    mailbox_size: int = 1024
    """Messages one actor may have queued; one more raises Overloaded."""
    max_in_flight: int = 100_000
    """Messages queued or running in the whole system; one more raises Overloaded."""
    max_live_actors: int = 200_000
    """Live activations; beyond it the least recently used idle ones are passivated."""
    idle_timeout_s: float = 300.0
    """An actor idle this long is passivated (dropped from memory; its state is on disk)."""
    ask_timeout_s: float = 30.0
    """Default timeout of an ask."""
    overload_retry_after_s: float = 1.0
    """The Retry-After given with Overloaded."""
    supervision: SupervisionPolicy = field(default_factory=SupervisionPolicy)
    """Policy of actor kinds that do not set their own."""
    timer_page_size: int = 1024
    """Durable timers kept in memory at once (this many to twice as many); the rest wait in
    the database by due time. When the window doubles it is cut back to a page on the loop,
    in the turn of the arm that doubled it: a page of 1024 takes 1-2 ms, one of 4096 about 10."""
    timer_max_fire_rate: float = 5000.0
    """Timer fires per second at most, so a backlog of overdue timers after a restart is
    delivered at a bounded rate instead of all at once."""
    outbox_max_in_flight: int = 1024
    """Durable messages being delivered at once."""
    outbox_max_backlog: int = 50_000
    """Durable messages waiting in memory; beyond it they wait in the database only."""
    outbox_retry_s: float = 0.1
    """First delay before redelivering a durable message that failed (doubles, capped)."""
    outbox_retry_max_s: float = 30.0
    """Longest delay between two deliveries of a durable message."""
    outbox_fault_attempts: int = 5
    """Tries of a durable message whose receiver's commit SQLite refuses for what it writes
    (a constraint, a value it cannot bind: ``store.errors.DATA_FAULTS``), after which it is parked
    as a dead letter: tried again, it would fail the same way for ever. A disk's failures
    (full, I/O, locked) are tried for as long as they last."""
    drain_timeout_s: float = 30.0
    """How long a graceful stop waits for mailboxes to drain."""
    eager: bool = True
    """Run an ask to an idle actor in the asker's task until the handler first waits."""
