"""The runtime's counters, for metrics and tests."""

from __future__ import annotations


class RuntimeStats:
    """Counters for metrics and tests."""

    __slots__ = (
        "activations",
        "dead_letters",
        "dropped",
        "messages",
        "overloaded",
        "passivations",
        "restarts",
    )

    def __init__(self) -> None:
        self.activations = 0
        self.passivations = 0
        self.messages = 0
        self.restarts = 0
        self.dead_letters = 0
        self.overloaded = 0
        self.dropped = 0
