"""The actor runtime. Knows nothing of shops.

Virtual actors addressed by (kind, id), activated on their first message and passivated when
idle; bounded mailboxes; asks that always get an answer; supervision as data; durable timers and
durable messages written in the same unit of work as the state change that causes them; an
injected clock; a seeded deterministic mode; a graceful stop that loses nothing acknowledged.
"""

from shopkeep.runtime.actor import ActivationContext, Actor, Context
from shopkeep.runtime.clock import Clock, RealClock, VirtualClock
from shopkeep.runtime.config import RuntimeConfig
from shopkeep.runtime.determinism import SeededEventLoop, run_seeded
from shopkeep.runtime.envelope import Address, current_trace, message_context
from shopkeep.runtime.errors import (
    ActivationFailed,
    ActorStopped,
    ActorSystemError,
    AskCycle,
    AskTimeout,
    MessageFailed,
    Overloaded,
    ShuttingDown,
    UnknownActorKind,
    WrongLoop,
)
from shopkeep.runtime.ids import IdGenerator
from shopkeep.runtime.supervision import Directive, SupervisionPolicy
from shopkeep.runtime.system import ActorSystem

__all__ = [
    "ActivationContext",
    "ActivationFailed",
    "Actor",
    "ActorStopped",
    "ActorSystem",
    "ActorSystemError",
    "Address",
    "AskCycle",
    "AskTimeout",
    "Clock",
    "Context",
    "Directive",
    "IdGenerator",
    "MessageFailed",
    "Overloaded",
    "RealClock",
    "RuntimeConfig",
    "SeededEventLoop",
    "ShuttingDown",
    "SupervisionPolicy",
    "UnknownActorKind",
    "VirtualClock",
    "WrongLoop",
    "current_trace",
    "message_context",
    "run_seeded",
]
