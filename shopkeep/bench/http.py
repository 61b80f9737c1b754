"""The HTTP benchmark: placing orders through the server, beside a bare aiohttp handler.

``python -m shopkeep.bench.http --json PATH [--seconds S] [--quick]`` first measures the HTTP
layer alone, in this process (:mod:`shopkeep.bench.http_overhead`: shopkeep's front door,
handler and conversions around a stand-in shop, against a bare aiohttp handler doing the same
decode and encode), then starts, each in a process of its own on 127.0.0.1 and a free port:

- shopkeep itself (``shopkeep serve``, ``synchronous=FULL``, uvloop when installed) on a fresh
  database in a temporary folder, the admin token given by environment and the unpaid-orders
  cap lifted (``--max-unpaid-orders``: these customers never pay, and the cap of 10 would
  refuse nearly every order after the first ten thousand);
- the baseline: a bare aiohttp app, on the same event loop, whose one POST handler decodes a
  body of the same shape with msgspec and answers 201 with an order-sized JSON body;
- the same bare app waiting 3 ms before it answers (:data:`WAITING_BARE_WAIT_S`), as a
  placement waits for its commits: what the waiting itself costs aiohttp and the kernel an
  answer (each wake-up answers fewer requests at a time), apart from what shopkeep does.

It creates 1,000 users and 1,000 goods through the API, then drives all three with the same load
generator, 64 connections, for the same time (after the same warm-up): every request places a
one-item order for a random user (their own bearer token) and goods, with an ``Idempotency-Key``
of its own. The load generator is ``wrk`` when installed (Debian's package), else a built-in
aiohttp client; the JSON says which (``load_generator``). The built-in one is a single Python
process competing with the servers for the same cores, so its figures are lower bounds, the
baselines' more than shopkeep's. All are closed loops: each connection sends its next request
when the last is answered. Then shopkeep alone is offered, for the same time, half the
placements per second it just answered, on a schedule (an open loop over raw sockets, light
enough not to add a tail of its own: :func:`shopkeep.bench.generators.run_open_loop`), each
latency counted from when its request was due. At the end ``GET /v1/audit`` must answer ok.

Before the placements, the same connections and tokens ask shopkeep ``GET /v1/me`` (each
user reading who they are: the whole HTTP layer, authentication included, and an answer from
the user's memory, no write): what any authenticated request costs this server before a
placement adds its own work (``get_me_per_s``, ``ratio_get_me`` over ``bare_post_per_s``, and
its loop's CPU an answer, ``get_me_loop_cpu_us``). A placement cannot answer faster than that.

The figures: ``bare_post_per_s``, ``place_order_per_s``, ``place_order_p50_ms``,
``place_order_p99_ms`` (closed loop, 64 connections), ``ratio`` (place_order_per_s /
bare_post_per_s), ``place_order_p99_ms_half_load`` (open loop at half that capacity),
``loop_stall_max_ms`` (the server's longest event-loop stall from its start to the end of the
run, read from its loop monitor on ``/metrics``), ``http_overhead_shopkeep_us``,
``http_overhead_bare_us`` and ``http_overhead_ratio`` (the micro-benchmark), ``audit_ok``,
``load_generator``, ``machine``; and beside them the statuses answered, the baseline's
latencies, the open loop's offered and answered rates, the waiting baseline's rate and its
loop's CPU an answer (``waiting_bare_post_per_s``, ``waiting_bare_post_loop_cpu_us``,
``waiting_bare_wait_ms``), the server's group commits during the open loop
(``commit_p50_ms_half_load``, ``commit_p99_ms_half_load``, from its
``shopkeep_commit_seconds`` histogram: how much of the tail a commit is; and
``commits_over_50ms_half_load``, how many took longer: one commit of hundreds of milliseconds is
below the commits' p99 but holds every placement in flight), the share of the placements the
server itself timed at over 10 ms in the open loop (``server_over_10ms_share_half_load``, from
its ``shopkeep_http_request_duration_seconds`` histogram, arrival to answer: above 0.01 the
server misses the half-load target by itself, whatever the load generator and the kernel add
around it), the longest stall before the
measured load began (``loop_stall_max_ms_before_load``: start, populating, warm-ups), the loop
thread's CPU time over the interval that ended in the longest stall (``loop_stall_max_cpu_ms``:
far below the stall, the loop was waiting for the GIL or a core, not working), the server's
longest garbage collection of each generation (``gc_pause_max_ms``), the server's resident
memory read from its ``/metrics``, the disk's fsync latency measured just before
(``fsync_before``: shopkeep's commits wait for it, the baseline never), and what each answer
cost the servers' CPU, read from ``/proc`` around each run (None elsewhere): the event loop's
thread of each (``bare_post_loop_cpu_us``, ``place_order_loop_cpu_us``, and at half load
``place_order_loop_cpu_us_half_load``, with the share of the loop's time it kept busy,
``place_order_loop_busy_half_load``: a placement costs the loop more the fewer share a turn, so
"half" the capacity keeps the loop more than half busy, and the tail is its queueing), each
server's whole process, shopkeep's writer thread
included (``bare_post_process_cpu_us``, ``place_order_process_cpu_us``), shopkeep's writer
process (``place_order_writer_process_cpu_us``: SQLite's writes and fsyncs), the load
generator's side (``bare_post_generator_cpu_us``, ``place_order_generator_cpu_us``: wrk, or
this process with the built-in one) and all of these together (``bare_post_cores_cpu_us``,
``place_order_cores_cpu_us``). A loop that needs N microseconds an answer answers at most a
million over N a second, whatever the load generator does; and the cores, which the server,
its writer process and the generator share, answer at most their number times a million over
``place_order_cores_cpu_us`` a second (``place_order_cores_bound_per_s``; over
``bare_post_per_s``, ``ratio_cores_bound``: the highest ``ratio`` this machine's cores allow
shopkeep as it costs them now, however fast its loop). Of the process's time, the time spent in
garbage collections, per placement (``place_order_gc_us``, ``place_order_gc_us_half_load``, from its
``shopkeep_gc_seconds_total``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Final, NamedTuple

import aiohttp

from shopkeep.bench.common import install_uvloop, machine, percentile, publish
from shopkeep.bench.generators import CONNECTIONS, Generator, Load
from shopkeep.bench.http_overhead import PRICE, run_bare, run_overhead
from shopkeep.bench.processes import (
    Server,
    children_cpu_s,
    cpu_s,
    free_port,
    own_side_cpu_s,
    serve_argv,
    start,
    wait_ready,
)

USERS = 1_000
GOODS = 1_000
STOCK = 10_000_000
HALF: Final = 0.5
"""The share of the capacity measured (closed loop) that the open-loop run offers."""
WAITING_BARE_WAIT_S: Final = 0.003
"""How long the waiting baseline's handler waits before it answers: about what a placement
waits for its group commits under this load (the commit in flight, then its own)."""
COMMIT_HISTOGRAM: Final = "shopkeep_commit_seconds"
"""The server's histogram of its group commits, each from the batch's hand-over to the writer
to its outcome (SQLite's commit and its fsync included): beside the placements' tail at half
load, how much of it a commit is."""
REQUEST_HISTOGRAM: Final = "shopkeep_http_request_duration_seconds"
PLACED_SERIES: Final = 'method="POST",route="/v1/orders",status="201"'
"""The labels of the placements answered 201 in :data:`REQUEST_HISTOGRAM`."""
SERVER_BOUND_S: Final = 0.010
"""The half-load latency target, seconds: a bucket bound of :data:`REQUEST_HISTOGRAM`."""


# ---------------------------------------------------------------- the shop's data


async def create(
    session: aiohttp.ClientSession, url: str, admin: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST ``body`` to ``url + path`` as the admin; what it created (a 201 is expected: any
    other answer is a broken fixture, raised as RuntimeError)."""
    headers = {"Authorization": f"Bearer {admin}"}
    async with session.post(url + path, json=body, headers=headers) as response:
        made: dict[str, Any] = await response.json(content_type=None)
        if response.status != 201:
            raise RuntimeError(f"POST {path}: {response.status} {made}")
        return made


async def populate(
    session: aiohttp.ClientSession, url: str, admin: str, users: int, goods: int
) -> tuple[list[str], list[str]]:
    """Create the users and goods through the API, 64 at a time: user tokens, goods ids."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await create(session, url, admin, path, body)

    tokens: list[str] = []
    for start_at in range(0, users, CONNECTIONS):
        batch = range(start_at, min(users, start_at + CONNECTIONS))
        made = await asyncio.gather(*(post("/v1/users", {"name": f"customer {n}"}) for n in batch))
        tokens += [user["token"] for user in made]
    goods_ids: list[str] = []
    for start_at in range(0, goods, CONNECTIONS):
        batch = range(start_at, min(goods, start_at + CONNECTIONS))
        body = {"price": PRICE, "stock": STOCK}
        made = await asyncio.gather(
            *(post("/v1/goods", {"name": f"goods {n}", **body}) for n in batch)
        )
        goods_ids += [g["id"] for g in made]
    return tokens, goods_ids


# ---------------------------------------------------------------- the run


def fsync_latency(folder: Path, count: int = 100) -> dict[str, float]:
    """How long an fsync of a small write takes in ``folder`` now (milliseconds): with
    ``synchronous=FULL`` every group commit waits for one, so a slow or erratic disk (a shared
    virtual machine's) moves every figure of shopkeep's, and none of the baseline's."""
    samples: list[float] = []
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return {
        "p50_ms": percentile(samples, 0.50) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
    }


async def metrics_lines(session: aiohttp.ClientSession, url: str) -> list[str]:
    """The lines of the server's ``/metrics`` now."""
    async with session.get(url + "/metrics") as response:
        return (await response.text()).splitlines()


async def scrape(session: aiohttp.ClientSession, url: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` on the server's ``/metrics``, or None."""
    for line in await metrics_lines(session, url):
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def scrape_labelled(
    session: aiohttp.ClientSession, url: str, name: str, label: str
) -> list[tuple[str, float]]:
    """The samples of ``name`` whose one label is ``label``, on the server's ``/metrics``:
    (the label's value, the sample's value) pairs, in the order the page gives them."""
    return labelled_in(await metrics_lines(session, url), name, label)


def labelled_in(
    lines: list[str], name: str, label: str, series: str = ""
) -> list[tuple[str, float]]:
    """The samples of ``name`` in a ``/metrics`` page's ``lines`` whose first label is
    ``label`` and whose others are ``series`` (``'a="x",b="y"'``, sorted as the page writes
    them; none: ``label`` alone): (``label``'s value, the sample's value) pairs, in order."""
    prefix = f'{name}{{{label}="'
    closing = f'",{series}}} ' if series else '"} '
    found = []
    for line in lines:
        if line.startswith(prefix):
            labelled, matched, value = line[len(prefix):].partition(closing)
            if matched and '"' not in labelled:  # not a series with other labels
                found.append((labelled, float(value)))
    return found


async def scrape_buckets(
    session: aiohttp.ClientSession, url: str, name: str, series: str = ""
) -> list[tuple[float, float]]:
    """The cumulative buckets of the histogram ``name`` on ``/metrics``, of its series whose
    labels besides ``le`` are ``series`` (as :func:`labelled_in` takes them; the page writes
    ``le`` first): (upper bound, count) pairs, in order."""
    return buckets_in(await metrics_lines(session, url), name, series)


def buckets_in(lines: list[str], name: str, series: str = "") -> list[tuple[float, float]]:
    """:func:`scrape_buckets` of the page's ``lines``."""
    buckets = labelled_in(lines, f"{name}_bucket", "le", series)
    return [(float(bound), count) for bound, count in buckets]


def histogram_quantile(
    q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> float | None:
    """The ``q`` quantile of what a histogram counted between two scrapes, interpolated
    linearly within its bucket as Prometheus' ``histogram_quantile`` does; None when nothing
    was counted (or it fell in the last, unbounded bucket)."""
    counted = counted_between(before, after)
    if not counted or counted[-1][1] <= 0:
        return None
    rank = q * counted[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in counted:
        if cumulative >= rank:
            if bound == math.inf:
                return None
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return None


def counted_over(
    bound: float, before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> float:
    """How many observations a histogram counted above ``bound`` (one of its bucket bounds)
    between two scrapes."""
    counted = dict(counted_between(before, after))
    return counted[math.inf] - counted[bound]


def share_over(
    bound: float, before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> float | None:
    """The share of what a histogram counted between two scrapes that was above ``bound`` (one
    of its bucket bounds); None when it counted nothing."""
    counted = counted_between(before, after)
    total = counted[-1][1] if counted else 0.0
    return counted_over(bound, before, after) / total if total > 0 else None


async def placed_buckets(session: aiohttp.ClientSession, url: str) -> list[tuple[float, float]]:
    """The buckets of the server's own timing of the placements it answered 201 so far."""
    return await scrape_buckets(session, url, REQUEST_HISTOGRAM, PLACED_SERIES)


def counted_between(
    before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """A histogram's cumulative bucket counts between two scrapes: (bound, counted since)."""
    return [(bound, now - then) for (bound, now), (_, then) in zip(after, before, strict=True)]


async def scrape_rss(session: aiohttp.ClientSession, url: str) -> float | None:
    """The server's resident memory in bytes, from its ``/metrics``."""
    return await scrape(session, url, "process_resident_memory_bytes")


async def scrape_by_generation(
    session: aiohttp.ClientSession, url: str, name: str
) -> dict[str, float]:
    """The samples of ``name`` on the server's ``/metrics``, by their ``generation`` label (the
    collector's figures), from one reading."""
    return dict(await scrape_labelled(session, url, name, "generation"))


async def scrape_gc_pauses_ms(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's longest garbage collection of each generation since it started,
    milliseconds (``shopkeep_gc_pause_max_seconds``): what its longest stalls often are."""
    pauses = await scrape_by_generation(session, url, "shopkeep_gc_pause_max_seconds")
    return {generation: seconds * 1000 for generation, seconds in pauses.items()}


async def scrape_gc_seconds(session: aiohttp.ClientSession, url: str) -> float | None:
    """The server's time in garbage collections since it started, every generation
    (``shopkeep_gc_seconds_total``), seconds; None when its ``/metrics`` has none."""
    spent = await scrape_by_generation(session, url, "shopkeep_gc_seconds_total")
    return sum(spent.values()) if spent else None


async def scrape_stall_cpu_ms(session: aiohttp.ClientSession, url: str) -> float | None:
    """The server loop thread's CPU time over the interval that ended in its longest stall,
    milliseconds (``shopkeep_loop_stall_max_cpu_seconds``)."""
    seconds = await scrape(session, url, "shopkeep_loop_stall_max_cpu_seconds")
    return None if seconds is None else seconds * 1000


async def scrape_stall_ms(session: aiohttp.ClientSession, url: str) -> float:
    """The server's longest event-loop stall since it started, milliseconds (its loop
    monitor's ``shopkeep_loop_stall_max_seconds``)."""
    seconds = await scrape(session, url, "shopkeep_loop_stall_max_seconds")
    if seconds is None:
        raise RuntimeError(f"{url}/metrics has no shopkeep_loop_stall_max_seconds")
    return seconds * 1000


def start_bare(name: str, folder: Path, wait_s: float = 0.0) -> Server:
    """The bare baseline (:func:`~shopkeep.bench.http_overhead.bare_app`, waiting ``wait_s``
    before each answer) in a process of its own, on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "shopkeep.bench.http", "--bare-server", str(port)]
    return start(name, [*argv, "--bare-wait-s", str(wait_s)], port, folder, {})


async def measure(
    folder: Path, seconds: float, warmup: float, users: int, goods: int, use_wrk: bool
) -> dict[str, Any]:
    """Start both servers, populate, measure each, audit, stop; the figures."""
    fsync = fsync_latency(folder)
    admin = secrets.token_urlsafe(32)
    shop_port = free_port()
    shop = start(
        "shopkeep",
        serve_argv(shop_port, folder / "shop.db", "--sandbox", "--synchronous", "FULL",
                   "--max-unpaid-orders", str(10**9)),
        shop_port, folder, {"SHOPKEEP_ADMIN_TOKEN": admin},
    )  # fmt: skip
    bare = start_bare("bare", folder)
    waiting = start_bare("bare-waiting", folder, WAITING_BARE_WAIT_S)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await wait_ready(session, shop)
            await wait_ready(session, bare)
            await wait_ready(session, waiting)
            tokens, goods_ids = await populate(session, shop.url, admin, users, goods)
            generator = Generator(tokens, goods_ids, folder, seconds, use_wrk)
            await generator.drive(bare.url, warmup)
            bare_load, bare_cpu = await with_cpu(bare.process.pid, generator.drive(bare.url))
            await generator.drive(waiting.url, warmup)
            waiting_load, waiting_cpu = await with_cpu(
                waiting.process.pid, generator.drive(waiting.url)
            )
            await generator.drive(shop.url, warmup, read=True)
            read_load, read_cpu = await with_cpu(
                shop.process.pid, generator.drive(shop.url, read=True)
            )
            await generator.drive(shop.url, warmup)
            stall_before_ms = await scrape_stall_ms(session, shop.url)
            gc_before = await scrape_gc_seconds(session, shop.url)
            shop_load, shop_cpu = await with_cpu(shop.process.pid, generator.drive(shop.url))
            gc_between = await scrape_gc_seconds(session, shop.url)
            commits_before = await scrape_buckets(session, shop.url, COMMIT_HISTOGRAM)
            placed_before = await placed_buckets(session, shop.url)
            half_load, half_cpu = await with_cpu(
                shop.process.pid, generator.offer(shop.url, HALF * shop_load.per_s)
            )
            commits_after = await scrape_buckets(session, shop.url, COMMIT_HISTOGRAM)
            placed_after = await placed_buckets(session, shop.url)
            gc_after = await scrape_gc_seconds(session, shop.url)
            stall_ms = await scrape_stall_ms(session, shop.url)
            stall_cpu_ms = await scrape_stall_cpu_ms(session, shop.url)
            gc_pauses_ms = await scrape_gc_pauses_ms(session, shop.url)
            rss = await scrape_rss(session, shop.url)
            async with session.get(
                shop.url + "/v1/audit", headers={"Authorization": f"Bearer {admin}"}
            ) as response:
                report = await response.json()
    finally:
        bare.stop()
        waiting.stop()
        status = shop.stop()
    if status != 0:
        raise RuntimeError(f"shopkeep stopped with status {status}:\n{shop.tail()}")
    place_bound = cores_bound_per_s(shop_cpu)
    return {
        "bare_post_per_s": bare_load.per_s,
        "place_order_per_s": shop_load.per_s,
        "place_order_p50_ms": shop_load.p50_ms,
        "place_order_p99_ms": shop_load.p99_ms,
        "ratio": _over_bare(shop_load, bare_load),
        "place_order_p99_ms_half_load": half_load.p99_ms,
        "loop_stall_max_ms": stall_ms,
        "bare_post_loop_cpu_us": bare_cpu.loop_us,
        "waiting_bare_post_per_s": waiting_load.per_s,
        "waiting_bare_post_loop_cpu_us": waiting_cpu.loop_us,
        "waiting_bare_wait_ms": WAITING_BARE_WAIT_S * 1000,
        "place_order_loop_cpu_us": shop_cpu.loop_us,
        "get_me_per_s": read_load.per_s,
        "get_me_loop_cpu_us": read_cpu.loop_us,
        "ratio_get_me": _over_bare(read_load, bare_load),
        "get_me_statuses": read_load.statuses,
        "place_order_process_cpu_us": shop_cpu.process_us,
        "place_order_writer_process_cpu_us": shop_cpu.children_us,
        "place_order_generator_cpu_us": shop_cpu.generator_us,
        "place_order_cores_cpu_us": shop_cpu.cores_us,
        "bare_post_process_cpu_us": bare_cpu.process_us,
        "bare_post_generator_cpu_us": bare_cpu.generator_us,
        "bare_post_cores_cpu_us": bare_cpu.cores_us,
        "place_order_cores_bound_per_s": place_bound,
        "ratio_cores_bound": (
            None if place_bound is None or not bare_load.per_s else place_bound / bare_load.per_s
        ),
        "place_order_loop_cpu_us_half_load": half_cpu.loop_us,
        "place_order_loop_busy_half_load": busy_share(half_cpu.loop_us, half_load),
        "place_order_gc_us": _per_answer_us(gc_before, gc_between, shop_load),
        "place_order_gc_us_half_load": _per_answer_us(gc_between, gc_after, half_load),
        "audit_ok": bool(report["ok"]),
        "load_generator": generator.name,
        "place_order_max_ms": shop_load.max_ms,
        "place_order_statuses": shop_load.statuses,
        "place_order_socket_errors": shop_load.socket_errors,
        "bare_post_p50_ms": bare_load.p50_ms,
        "bare_post_p99_ms": bare_load.p99_ms,
        "bare_post_statuses": bare_load.statuses,
        "half_load_offered_per_s": HALF * shop_load.per_s,
        "half_load_answered_per_s": half_load.per_s,
        "commit_p99_ms_half_load": _ms(histogram_quantile(0.99, commits_before, commits_after)),
        "commit_p50_ms_half_load": _ms(histogram_quantile(0.50, commits_before, commits_after)),
        "commits_over_50ms_half_load": counted_over(0.05, commits_before, commits_after),
        "server_over_10ms_share_half_load": share_over(SERVER_BOUND_S, placed_before, placed_after),
        "place_order_p50_ms_half_load": half_load.p50_ms,
        "place_order_max_ms_half_load": half_load.max_ms,
        "place_order_statuses_half_load": half_load.statuses,
        "place_order_socket_errors_half_load": half_load.socket_errors,
        "loop_stall_max_ms_before_load": stall_before_ms,
        "loop_stall_max_cpu_ms": stall_cpu_ms,
        "gc_pause_max_ms": gc_pauses_ms,
        "server_rss_mb": None if rss is None else rss / 2**20,
        "fsync_before": fsync,
        "audit": report["checks"],
        "seconds": seconds,
        "warmup_seconds": warmup,
        "connections": CONNECTIONS,
        "users": users,
        "goods": goods,
    }


def render(figures: dict[str, Any]) -> str:
    """The table printed for people."""
    pauses = figures["gc_pause_max_ms"]
    rows = [
        ("bare_post_per_s", f"{figures['bare_post_per_s']:,.0f}"),
        ("place_order_per_s", f"{figures['place_order_per_s']:,.0f}"),
        ("ratio", f"{figures['ratio']:.3f}"),
        ("place_order_p50_ms", f"{figures['place_order_p50_ms']:.2f}"),
        ("place_order_p99_ms", f"{figures['place_order_p99_ms']:.2f}"),
        ("half_load_offered_per_s", f"{figures['half_load_offered_per_s']:,.0f}"),
        ("place_order_p99_ms_half_load", f"{figures['place_order_p99_ms_half_load']:.2f}"),
        ("commit_p50_ms_half_load", _shown(figures["commit_p50_ms_half_load"])),
        ("commit_p99_ms_half_load", _shown(figures["commit_p99_ms_half_load"])),
        ("commits_over_50ms_half_load", f"{figures['commits_over_50ms_half_load']:,.0f}"),
        ("server_over_10ms_share_half_load",
         _shown(figures["server_over_10ms_share_half_load"], 3)),
        ("loop_stall_max_ms", f"{figures['loop_stall_max_ms']:.1f}"),
        ("loop_stall_max_cpu_ms", _shown(figures["loop_stall_max_cpu_ms"])),
        ("gc_pause_max_ms", json.dumps({g: round(ms, 1) for g, ms in pauses.items()})),
        ("bare_post_loop_cpu_us", _shown(figures["bare_post_loop_cpu_us"], 1)),
        ("waiting_bare_post_per_s", f"{figures['waiting_bare_post_per_s']:,.0f}"),
        ("waiting_bare_post_loop_cpu_us", _shown(figures["waiting_bare_post_loop_cpu_us"], 1)),
        ("place_order_loop_cpu_us", _shown(figures["place_order_loop_cpu_us"], 1)),
        ("get_me_per_s", f"{figures['get_me_per_s']:,.0f}"),
        ("ratio_get_me", f"{figures['ratio_get_me']:.3f}"),
        ("get_me_loop_cpu_us", _shown(figures["get_me_loop_cpu_us"], 1)),
        ("place_order_process_cpu_us", _shown(figures["place_order_process_cpu_us"], 1)),
        ("place_order_writer_process_cpu_us",
         _shown(figures["place_order_writer_process_cpu_us"], 1)),
        ("place_order_cores_cpu_us", _shown(figures["place_order_cores_cpu_us"], 1)),
        ("bare_post_cores_cpu_us", _shown(figures["bare_post_cores_cpu_us"], 1)),
        ("place_order_cores_bound_per_s", _shown(figures["place_order_cores_bound_per_s"], 0)),
        ("ratio_cores_bound", _shown(figures["ratio_cores_bound"], 3)),
        (
            "place_order_loop_cpu_us_half_load",
            _shown(figures["place_order_loop_cpu_us_half_load"], 1),
        ),
        ("place_order_loop_busy_half_load", _shown(figures["place_order_loop_busy_half_load"], 3)),
        ("place_order_gc_us", _shown(figures["place_order_gc_us"], 1)),
        ("place_order_gc_us_half_load", _shown(figures["place_order_gc_us_half_load"], 1)),
        ("http_overhead_shopkeep_us", f"{figures['http_overhead_shopkeep_us']:.1f}"),
        ("http_overhead_bare_us", f"{figures['http_overhead_bare_us']:.1f}"),
        ("http_overhead_ratio", f"{figures['http_overhead_ratio']:.2f}"),
        ("bare_post_p50_ms", f"{figures['bare_post_p50_ms']:.2f}"),
        ("bare_post_p99_ms", f"{figures['bare_post_p99_ms']:.2f}"),
        ("place_order_statuses", json.dumps(figures["place_order_statuses"])),
        ("server_rss_mb", f"{figures['server_rss_mb'] or 0:.1f}"),
        ("fsync_p50_p99_ms", "{p50_ms:.2f} / {p99_ms:.2f}".format(**figures["fsync_before"])),
        ("audit_ok", str(figures["audit_ok"])),
        ("load_generator", figures["load_generator"]),
    ]
    return "\n".join(f"{name:<34}  {value}" for name, value in rows)


def _over_bare(load: Load, bare: Load) -> float:
    """``load``'s answers a second over the bare POST's (0 when the bare one answered none)."""
    return load.per_s / bare.per_s if bare.per_s else 0.0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _shown(value: float | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:.{places}f}"


class CpuPerAnswer(NamedTuple):
    """What one load run cost the machine's CPU an answer, in microseconds; None where the
    system does not say (no ``/proc``)."""

    loop_us: float | None
    """The server's event loop's thread."""
    process_us: float | None
    """The server's whole process, every thread."""
    children_us: float | None
    """The server's child processes (shopkeep's writer process; none for the baselines)."""
    generator_us: float | None
    """The load generator's side: this process and the generator's command (wrk)."""

    @property
    def cores_us(self) -> float | None:
        """All of it: what an answer takes of the cores the server, its writer process and
        the load generator share."""
        if self.process_us is None or self.generator_us is None:
            return None
        return self.process_us + (self.children_us or 0.0) + self.generator_us


async def with_cpu(pid: int, run: Awaitable[Load]) -> tuple[Load, CpuPerAnswer]:
    """``run``'s load, and what the server ``pid``, its children and the load generator spent
    on each of its answers.

    The CPU read before and after the run includes the few moments around it in which the
    load generator starts and stops, when the server is idle.
    """
    loop_before, process_before = cpu_s(pid, main_thread=True), cpu_s(pid)
    children_before, generator_before = children_cpu_s(pid), own_side_cpu_s()
    load = await run
    loop_after, process_after = cpu_s(pid, main_thread=True), cpu_s(pid)
    children_after, generator_after = children_cpu_s(pid), own_side_cpu_s()
    return load, CpuPerAnswer(
        _per_answer_us(loop_before, loop_after, load),
        _per_answer_us(process_before, process_after, load),
        _per_answer_us(children_before, children_after, load),
        _per_answer_us(generator_before, generator_after, load),
    )


def cores_bound_per_s(cpu: CpuPerAnswer) -> float | None:
    """The answers a second this machine's cores could give at most, each costing
    ``cpu.cores_us``, were every core busy with them."""
    cores_us = cpu.cores_us
    if not cores_us:
        return None
    return (os.cpu_count() or 1) * 1e6 / cores_us


def busy_share(cpu_us: float | None, load: Load) -> float | None:
    """The share of a thread's time that ``cpu_us`` of its CPU an answer kept it busy at
    ``load``'s rate of answers (an estimate: the CPU is read in clock ticks)."""
    return None if cpu_us is None else cpu_us * load.per_s / 1e6


def _per_answer_us(before: float | None, after: float | None, load: Load) -> float | None:
    if before is None or after is None or not load.requests:
        return None
    return (after - before) / load.requests * 1e6


FALLBACK_WARNING = (
    "WARNING: wrk is not installed: the load generator is the built-in aiohttp client, a "
    "Python process on the same cores, whose own speed bounds these figures (install wrk: "
    "make wrk, or apt-get install wrk)"
)


def fallback_warning(requested: str, has_wrk: bool) -> str | None:
    """The line to say loudly when ``auto`` had to fall back to the built-in client."""
    return FALLBACK_WARNING if requested == "auto" and not has_wrk else None


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m shopkeep.bench.http",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", metavar="PATH", help="write the figures here as JSON")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time (default 10)")
    parser.add_argument("--quick", action="store_true", help="a short, small run (for tests)")
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "aiohttp-client"),
        default="auto",
        help="wrk when installed (auto, the default), or the built-in aiohttp client",
    )
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-wait-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server is not None:
        return run_bare(args.bare_server, args.bare_wait_s)
    has_wrk = shutil.which("wrk") is not None
    if args.load_generator == "wrk" and not has_wrk:
        parser.error("wrk is not installed (apt-get install wrk)")
    use_wrk = has_wrk and args.load_generator != "aiohttp-client"
    warning = fallback_warning(args.load_generator, has_wrk)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    seconds, warmup, users, goods = (
        (2.0, 1.0, 100, 100) if args.quick else (args.seconds, 2.0, USERS, GOODS)
    )
    load_before = os.getloadavg()[0]
    # first, while no server runs: the micro-benchmark of the HTTP layer alone, in-process
    overhead = run_overhead(quick=args.quick)
    # the servers run on uvloop when it is installed (serve picks it); so does the built-in
    # load generator here, which needs every bit of speed it can get
    uvloop_version = install_uvloop()
    with tempfile.TemporaryDirectory(prefix="shopkeep-bench-http-") as folder:
        figures = asyncio.run(measure(Path(folder), seconds, warmup, users, goods, use_wrk))
    figures.update(overhead)
    figures["machine"] = machine(
        {"uvloop" if uvloop_version else "asyncio"}, uvloop_version, load_before
    )
    return publish(figures, render(figures), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
