"""How long a connection may sit idle or take to send a request, and how many may be open.

SPEC 7: idle keep-alive connections are closed after a configurable time, a request must arrive
within a bounded time, and the number of open connections is capped. Without these, aiohttp
keeps an idle connection for an hour and waits for a half-sent request for ever: fifty
connections that sent half a request each held a socket and a task apiece indefinitely.

The values live here, apart from the code that enforces them (:mod:`shopkeep.http.connections`),
so that the command line can show the defaults in ``--help`` without importing aiohttp.
"""

from __future__ import annotations

import resource
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


FILES_BESIDE_CONNECTIONS: Final = 64
"""Open files a server needs besides its connections: its database, WAL and lock, the
writer's pipes, the listening socket, logs."""


def files_for_connections(max_connections: int) -> int | None:
    """Raise this process's soft limit on open files (``ulimit -n``, often 1,024) towards what
    ``max_connections`` open at once need, as far as the hard limit lets it; None when they fit
    now, else the connections the limit still allows. Past it, the system refuses a connection
    before the cap sees it (no log, no metric): a cap of 1,024 under 1,024 files never held."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FILES_BESIDE_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    return max(soft - FILES_BESIDE_CONNECTIONS, 0)
