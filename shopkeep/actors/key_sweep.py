"""The ``key_sweep`` kind: one actor (id 0) that prunes Idempotency-Keys older than 24 hours.

Told :class:`SweepKeys` when the shop opens, it deletes the keys older than
``KEY_RETENTION_S`` (a batch per unit of work) and arms its durable timer for the next sweep,
``KEY_SWEEP_S`` later, or at once while batches come back full. Memory stays consistent with
it: the user actors, which keep their recent keys in memory, take a key older than the
retention to be possibly pruned and read the table instead (``user.py``).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any, Final

import msgspec

from shopkeep.actors import key_store
from shopkeep.actors.key_rules import KEY_RETENTION_S, KEY_SWEEP_S
from shopkeep.runtime import Actor, ActorSystem, Address, Context, Overloaded

SWEEPER: Final = Address("key_sweep", 0)
"""The one sweeper."""
TIMER: Final = "sweep"
AGAIN_S: Final = 1.0
"""The pause before the next batch when a batch came back full."""


class SweepKeys(msgspec.Struct, frozen=True, tag=True, gc=False):
    """Prune the keys older than the retention now, and arm the next sweep."""


class KeySweepActor(Actor):
    """Prunes ``idempotency_keys``; holds no state."""

    __slots__ = ()
    kind = "key_sweep"
    messages = SweepKeys

    async def receive(self, ctx: Context, message: Any) -> Any:
        """One batch; the timer brings the next sweep."""
        if not isinstance(message, SweepKeys):
            raise TypeError(f"key sweepers do not handle {type(message).__name__}")
        now = ctx.now()
        full = await key_store.prune(ctx, now, KEY_RETENTION_S)
        ctx.arm_timer(TIMER, now + (AGAIN_S if full else KEY_SWEEP_S), SweepKeys())
        return None


def start_key_sweep(system: ActorSystem) -> None:
    """Sweep now; the sweeper's durable timer brings every later sweep, across restarts too.
    A system too full to take the message leaves it to that timer (or to the next start)."""
    with suppress(Overloaded):
        system.tell(SWEEPER, SweepKeys(), internal=True)
