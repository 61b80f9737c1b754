"""How long a connection may sit idle or take to send a request, and how many may be open.

SPEC 7: idle keep-alive connections are closed after a configurable time, a request must arrive
within a bounded time, and the number of open connections is capped. Without these, aiohttp
keeps an idle connection for an hour and waits for a half-sent request for ever: fifty
connections that sent half a request each held a socket and a task apiece indefinitely.

The values live here, apart from the code that enforces them (:mod:`shopkeep.http.connections`),
so that the command line can show the defaults in ``--help`` without importing aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KEEPALIVE_S: Final = 15.0
"""Default: an idle keep-alive connection is closed after this many seconds (SPEC 7)."""
READ_S: Final = 10.0
"""Default: a request (line, headers and body) must arrive whole within this many seconds of
its first byte, and a new connection's first request within as long of the connection."""
MAX_CONNECTIONS: Final = 1024
"""Default: the most connections open at once; one more is closed as soon as it is accepted."""


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds on the server's connections (defaults above)."""

    keepalive_s: float = KEEPALIVE_S
    """An idle keep-alive connection is closed after this long."""
    read_s: float = READ_S
    """A request must arrive whole within this long of its first byte (else closed, unanswered).
    A new connection's first request must also begin within this long: a client that connects
    and says nothing holds a socket for nothing."""
    max_connections: int = MAX_CONNECTIONS
    """Connections open at once; more are closed at once, the open ones go on being served."""
