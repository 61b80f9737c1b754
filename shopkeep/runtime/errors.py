"""The runtime's errors. Each docstring says whose fault it is and what the caller may do."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


class ActorSystemError(Exception):
    """Base class of the runtime's errors."""


class Overloaded(ActorSystemError):
    """A mailbox or the whole system is full; nothing was enqueued.

    Nobody's fault: load is above capacity. Try again after ``retry_after`` seconds (HTTP maps
    this to 503 with Retry-After). Raised at once, so memory stays bounded under any burst.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(Overloaded):
    """The system is stopping and takes no new work; a restarted server will."""


class WrongLoop(ActorSystemError, RuntimeError):
    """Called on another running event loop than the system's (another thread's): nothing was
    done. A call with no loop running at all is not seen (a program's own thread between two
    runs of its loop may call the system's sync methods).

    A bug in the caller: the actors and their futures belong to the loop that started the
    system, and a message sent from elsewhere was handled there while its answer failed here
    (an effect the caller was told had failed). From another thread, submit the call to the
    system's loop (``asyncio.run_coroutine_threadsafe``).
    """

    @classmethod
    def unless_on(cls, loop: asyncio.AbstractEventLoop | None) -> None:
        """Raise when called on another running loop than ``loop`` (None, or closed: bound to
        none). A call with no loop running is let through: a program's own thread between two
        runs of the loop, as a test steps it."""
        running = asyncio._get_running_loop()
        if loop is not None and running is not None and running is not loop and (
            not loop.is_closed()
        ):
            raise cls(
                "this runs on the event loop it was started on: call it there (from another "
                "thread, asyncio.run_coroutine_threadsafe)"
            )


class ActorStopped(ActorSystemError):
    """The actor stopped (supervision or shutdown) before it handled the message.

    The message had no effect. The caller may ask again: a stopped virtual actor is activated
    afresh, from the store, by its next message.
    """


class AskTimeout(ActorSystemError, TimeoutError):
    """No answer within the ask's timeout. The message may still be handled later."""


class AskCycle(ActorSystemError):
    """An ask would wait for an actor that is itself waiting for the asker: a deadlock.

    A bug in the caller's protocol; raised at once, naming the cycle, instead of hanging.
    """

    def __init__(self, cycle: Sequence[Any]) -> None:
        path = " -> ".join(f"{a[0]}:{a[1]}" for a in cycle)
        super().__init__(f"ask cycle: {path}")
        self.cycle = tuple(cycle)


class ActivationFailed(ActorSystemError):
    """The actor's state could not be loaded from the store; the message was not handled."""


class MessageFailed(ActorSystemError):
    """The actor raised while handling the message (the original is ``__cause__``).

    When ``dead_lettered`` is true, the message was retried as the supervision policy says and
    then parked in the dead-letter table with its traceback.
    """

    def __init__(self, message: str, *, dead_lettered: bool) -> None:
        super().__init__(message)
        self.dead_lettered = dead_lettered


class UnknownActorKind(ActorSystemError):
    """A message was addressed to a kind nobody registered: a bug in the caller."""
