"""Supervision as data: an exception maps to a directive, within a restart budget.

When an actor raises while handling a message, its kind's :class:`SupervisionPolicy` decides:

- ``RESUME``: keep the state, answer the message with the error, park it as a dead letter;
- ``RESTART``: drop the in-memory state, reload it from the store, and try the message again
  after a back-off; after ``max_attempts`` tries it is parked as a dead letter (a poison message)
  and the actor goes on with the next one;
- ``STOP``: park the message, fail every queued ask with ActorStopped, deactivate the actor;
- ``ESCALATE``: like STOP, and the system's escalation hook is told (a server may fail-stop).

Restarts beyond ``max_restarts`` within ``within_s`` seconds turn into STOP, so an actor that
cannot load cleanly does not spin.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from shopkeep.runtime.errors import AskCycle


class Directive(enum.Enum):
    """What to do with an actor whose handler raised."""

    RESUME = "resume"
    RESTART = "restart"
    STOP = "stop"
    ESCALATE = "escalate"


Decider = Callable[[Exception], Directive]


def restart_on_any_error(exc: Exception) -> Directive:
    """The default decider: state may be inconsistent after any error, so reload it.

    Except an ask cycle, here or in the actor asked: it is a property of the message, and no
    retry can end differently, so the message is parked at once (RESUME).
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, AskCycle):
            return Directive.RESUME
        cause = cause.__cause__
    return Directive.RESTART


@dataclass(frozen=True)
class SupervisionPolicy:
    """How an actor kind is supervised."""

    decider: Decider = restart_on_any_error
    max_attempts: int = 3
    backoff_s: float = 0.05
    backoff_max_s: float = 2.0
    max_restarts: int = 10
    within_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """The pause before try number ``attempt + 1`` (exponential, capped)."""
        return float(min(self.backoff_max_s, self.backoff_s * (2 ** max(0, attempt - 1))))


class RestartBudget:
    """Counts restarts in a sliding window; :meth:`allow` says whether one more fits."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: list[float] = []

    def allow(self, now: float, policy: SupervisionPolicy) -> bool:
        """Record a restart at ``now`` and tell whether the budget still holds it."""
        self._times = [t for t in self._times if now - t < policy.within_s]
        if len(self._times) >= policy.max_restarts:
            return False
        self._times.append(now)
        return True
