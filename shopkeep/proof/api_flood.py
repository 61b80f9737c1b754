"""Group 5's flood (OWASP API4, unrestricted resource consumption): ten times the capacity.

A real server process is the target: the same assembly as ``shopkeep serve``
(:func:`shopkeep.http.server.serve`), started by ``python -m shopkeep.proof.api_flood --serve``
so that its actor runtime can be given small in-flight and live-actor caps (no flag of ``serve``
sets them) and the unpaid-orders cap lifted (these customers never pay). Then:

1. its capacity is measured: one-item placements placed per second (201s) under the
   benchmark's load (64 connections, ``wrk`` when installed), for two seconds;
2. the flood: placements sent at ten times that rate, pipelined over 256 connections without
   waiting for answers (open loop: a generator that waits for answers offers only what the
   server answers), the offered rate measured, not assumed; meanwhile the server's resident
   memory is sampled from ``/proc/<pid>/status``;
3. after it: every answer was 201 or 409 (business refusals) or 503 with ``Retry-After``, no
   other 5xx, every request answered; the memory stayed within a bound; up to
   :data:`RETRIED_AT_MOST` placements answered 503 are retried under their own
   Idempotency-Keys and each is placed as a first attempt (a 503 binds no key), then replayed
   on a second retry; the server still answers, and its audit is ok once it is quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from shopkeep.bench.generators import ORDERS_PATH, Generator, order_body
from shopkeep.bench.http import populate
from shopkeep.bench.processes import HOST
from shopkeep.proof.serving import ServeProcess

SMALL_IN_FLIGHT = 64
"""The flood server's cap on messages in flight: a placement holds a few at once."""
SMALL_LIVE_ACTORS = 2_048
"""The flood server's cap on live actors. What a flood leaves in memory is the orders it
placed, each a live actor until passivated; the default cap (200,000, about 2.5 KiB an order)
bounds a server too, but only after minutes of flood: a small one shows the bound within it."""
CAPACITY_SECONDS = 2.0
ANSWER_TIMEOUT_S = 60.0
"""How long the flood waits for the answers to everything it sent."""
MEMORY_BOUND_MB = 64.0
"""How much the server's resident memory may grow over its level before the flood."""
ALLOWED = frozenset({201, 409, 503})
RETRIED_AT_MOST = 100
"""How many of the flood's 503 answers are retried under their keys afterwards."""


Placement = tuple[str, str, str]
"""One placement of the flood: (the user's token, the goods id, its Idempotency-Key)."""


@dataclass
class Retried:
    """The 503 answers retried under the same Idempotency-Key once the flood is over (SPEC 7:
    a first attempt that did nothing binds no key, so the retry runs afresh)."""

    retried: int = 0
    placed: int = 0
    """Answered 201, as a first attempt: not marked ``Idempotent-Replayed``."""
    replayed_again: int = 0
    """A second retry of a placed one answered the same order, marked replayed."""
    wrong: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """What a retry after a 503 should not have seen."""
        return [f"retry after 503: {w}" for w in self.wrong]

    def text(self) -> str:
        """The figure."""
        return (
            f"{self.retried} placements answered 503 retried under their keys: {self.placed} "
            f"placed afresh, {self.replayed_again} replayed on a second retry"
        )


@dataclass
class Load:
    """What the flood sent and what came back."""

    requests: int
    seconds: float
    statuses: dict[int, int]
    answered: int = 0
    socket_errors: int = 0
    """Requests never answered (a connection cut, or no answer within the bound)."""
    missing_retry_after: int = 0
    overloaded: list[Placement] = field(default_factory=list)
    """The placements answered 503, to be retried under their keys after the flood."""

    @property
    def per_s(self) -> float:
        """Requests sent per second."""
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Flooded:
    """The flood's figures."""

    capacity_per_s: float
    load: Load
    rss_before_mb: float
    rss_peak_mb: float
    audit_ok: bool
    alive: bool
    retried: Retried = field(default_factory=Retried)
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Offered requests per second over the capacity."""
        return self.load.per_s / self.capacity_per_s if self.capacity_per_s else 0.0


async def capacity_of(url: str, folder: Path, tokens: list[str], goods: list[str]) -> float:
    """Placements per second the server completes from a few connections (the benchmark's
    load generator: wrk when installed)."""
    generator = Generator(tokens, goods, folder, CAPACITY_SECONDS, shutil.which("wrk") is not None)
    load = await generator.drive(url)
    return int(load.statuses.get("201", 0)) / load.seconds


def request_bytes(port: int, token: str, goods_id: str, key: str) -> bytes:
    """One placement as raw HTTP/1.1 (pipelined: written without waiting for answers)."""
    body = order_body(goods_id)
    head = (
        f"POST {ORDERS_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_answers(
    reader: asyncio.StreamReader, load: Load, sent: collections.deque[Placement]
) -> None:
    """Count the answers arriving on one connection until it closes (in the order of ``sent``,
    the placements written to it: HTTP/1.1 answers pipelined requests in order)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        status = int(head[9:12])
        headers = head.lower()
        start = headers.find(b"content-length:")
        length = int(headers[start + 15 : headers.index(b"\r\n", start)]) if start >= 0 else 0
        await reader.readexactly(length)
        load.statuses[status] = load.statuses.get(status, 0) + 1
        placement = sent.popleft()
        if status == 503:
            load.overloaded.append(placement)
            if b"\r\nretry-after:" not in headers:
                load.missing_retry_after += 1
        load.answered += 1


async def paced_load(port: int, tokens: list[str], goods: list[str], rate: float,
                     seconds: float, connections: int) -> Load:  # fmt: skip
    """Open-loop placements: ``rate`` per second for ``seconds``, pipelined over
    ``connections`` connections whatever the answers, then wait for every answer.

    Closed-loop generators (wrk, a client that waits for each answer) offer only as much as
    the server answers; a flood offers more than it can take, so this one does not wait.
    """
    load = Load(0, 0.0, {})
    streams = [await asyncio.open_connection(HOST, port) for _ in range(connections)]
    sent: list[collections.deque[Placement]] = [collections.deque() for _ in streams]
    readers = [
        asyncio.create_task(read_answers(r, load, placed))
        for (r, _), placed in zip(streams, sent, strict=True)
    ]
    pick = random.Random(7)
    began = time.perf_counter()
    tick = 0.01
    while (elapsed := time.perf_counter() - began) < seconds:
        due = int(rate * (elapsed + tick)) - load.requests
        for n in range(max(0, due)):
            index = (load.requests + n) % connections
            key = f"flood-{began:.0f}-{load.requests + n}"
            placement = (pick.choice(tokens), pick.choice(goods), key)
            sent[index].append(placement)
            streams[index][1].write(request_bytes(port, *placement))
        load.requests += max(0, due)
        load.seconds = elapsed + tick  # the schedule sent so far covers this much time
        await asyncio.gather(*(writer.drain() for _, writer in streams))
        await asyncio.sleep(tick)  # the pace of an open-loop generator, not a wait for a result
    deadline = time.perf_counter() + ANSWER_TIMEOUT_S
    while load.answered < load.requests and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    load.socket_errors = load.requests - load.answered
    for _, writer in streams:
        writer.close()
    await asyncio.gather(*readers)
    return load


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` (MiB), from ``/proc``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def peak_rss(pid: int, stop: asyncio.Event) -> float:
    """The highest resident memory of ``pid`` seen until ``stop`` is set (sampled)."""
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    return max(peak, rss_mb(pid))


async def flood(folder: Path, admin: str, seconds: float, times: float = 10.0,
                connections: int = 256) -> Flooded:  # fmt: skip
    """Run the flood of the module's docstring against a server of its own in ``folder``:
    ``times`` the measured capacity, offered for ``seconds``."""
    command = [*ServeProcess.python_m("shopkeep.proof.api_flood"), "--serve"]
    flags = [f"--admin-token={admin}", "--max-in-flight", str(SMALL_IN_FLIGHT)]
    with ServeProcess(folder / "flood.db", folder, flags, command) as server:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await server.start(session)
            assert server.pid is not None
            tokens, goods = await populate(session, server.url, admin, 200, 20)
            capacity = await capacity_of(server.url, folder, tokens, goods)
            before = rss_mb(server.pid)
            stop = asyncio.Event()
            sampler = asyncio.create_task(peak_rss(server.pid, stop))
            load = await paced_load(server.port, tokens, goods, capacity * times, seconds,
                                    connections)  # fmt: skip
            stop.set()
            peak = await sampler
            flooded = Flooded(capacity, load, before, peak, audit_ok=False, alive=False)
        # a session of its own: the first one's connections lay idle through the capacity's
        # measure and the flood, up to the server's keep-alive timeout, and one closed by the
        # server as it was taken again failed the retry ("Cannot write to closing transport")
        async with aiohttp.ClientSession(timeout=timeout) as session:
            flooded.retried = await retry_overloaded(session, server.url, load.overloaded)
            flooded.alive, flooded.audit_ok = await settled(session, server.url, admin)
        status = server.stop()
    flooded.problems = judge(flooded, status)
    return flooded


async def retry_overloaded(
    session: aiohttp.ClientSession, url: str, overloaded: list[Placement]
) -> Retried:
    """Retry up to :data:`RETRIED_AT_MOST` placements answered 503, each under its own key and
    with its own body, now that the server is quiet: each must be placed as a first attempt
    (the 503 did nothing and bound nothing), and a second retry must replay that placement."""
    seen = Retried()
    for token, goods_id, key in overloaded[:RETRIED_AT_MOST]:
        seen.retried += 1
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Idempotency-Key": key}  # fmt: skip
        answers = []
        for _ in range(2):
            async with session.post(
                url + ORDERS_PATH, data=order_body(goods_id), headers=headers
            ) as response:
                body = await response.json(content_type=None)
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                answers.append((response.status, replayed, body.get("id")))
        (first, first_replayed, order), (again, again_replayed, same) = answers
        if first != 201 or first_replayed:
            seen.wrong.append(f"{key}: {first}{' replayed' if first_replayed else ''}")
            continue
        seen.placed += 1
        if again == 201 and again_replayed and same == order:
            seen.replayed_again += 1
        else:
            seen.wrong.append(f"{key} again: {again}, replayed {again_replayed}, {same}")
    return seen


async def settled(session: aiohttp.ClientSession, url: str, admin: str) -> tuple[bool, bool]:
    """Whether the server answers after the flood, and whether its audit is then ok."""
    async with session.get(url + "/healthz") as response:
        alive = response.status == 200
    async with session.get(url + "/v1/audit", headers={"Authorization": f"Bearer {admin}"}) as r:
        audit: dict[str, Any] = await r.json()
    return alive, bool(audit["ok"])


def judge(flooded: Flooded, status: int) -> list[str]:
    """Everything the flood should not have seen."""
    load = flooded.load
    problems = [f"answered {s} {n} times" for s, n in load.statuses.items() if s not in ALLOWED]
    if load.socket_errors:
        problems.append(f"{load.socket_errors} requests never answered")
    if load.missing_retry_after:
        problems.append(f"{load.missing_retry_after} answers 503 without Retry-After")
    if not load.statuses.get(503):
        problems.append("the flood never reached the in-flight cap (no 503)")
    if flooded.rss_peak_mb - flooded.rss_before_mb > MEMORY_BOUND_MB:
        problems.append(f"memory grew {flooded.rss_peak_mb - flooded.rss_before_mb:.0f} MiB")
    problems += flooded.retried.problems
    if load.overloaded and not flooded.retried.retried:
        problems.append("no placement answered 503 was retried")
    if not (flooded.alive and flooded.audit_ok):
        problems.append(f"after the flood: alive {flooded.alive}, audit ok {flooded.audit_ok}")
    if status != 0:
        problems.append(f"the flood server stopped with status {status}")
    return problems


def serve_main(argv: list[str]) -> int:
    """``--serve``: the flood's server, ``shopkeep serve`` with small in-flight and live-actor
    caps."""
    from dataclasses import replace

    from shopkeep.http.server import SERVER_RUNTIME, ServeOptions, fastest_loop_factory, serve
    from shopkeep.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m shopkeep.proof.api_flood --serve")
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-token", required=True)
    parser.add_argument("--max-in-flight", type=int, default=SMALL_IN_FLIGHT)
    args = parser.parse_args(argv)
    options = ServeOptions(
        db=args.db, host=args.host, port=args.port, admin_token=args.admin_token,
        max_unpaid_orders=10**9, sandbox=True,
        runtime=replace(SERVER_RUNTIME, max_in_flight=args.max_in_flight,
                        max_live_actors=SMALL_LIVE_ACTORS),
    )  # fmt: skip
    configure_logging()
    with asyncio.Runner(loop_factory=fastest_loop_factory()) as runner:
        runner.run(serve(options))
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["--serve"]:
        raise SystemExit("usage: python -m shopkeep.proof.api_flood --serve --db ... --port ...")
    raise SystemExit(serve_main(sys.argv[2:]))
