"""Group 5: API abuse, the OWASP API Security Top 10 as it applies to shopkeep.

``python -m shopkeep.proof api-abuse --examples 100 --flood-seconds 10`` starts a real
``shopkeep serve`` (unpaid-orders cap 5) and runs, against it:

- schemathesis with every check, as the admin and as a user (:mod:`shopkeep.proof.api_fuzz`);
- the BOLA matrix and mass assignment (:mod:`shopkeep.proof.api_probes`);
- half-open connections and header bytes that are not ASCII, on raw sockets
  (:mod:`shopkeep.proof.api_sockets`; the server's read timeout is made short for them);
- the unpaid-orders cap: one user places cap + 15 orders at once; exactly cap are placed, the
  rest refused 409 too_many_unpaid_orders, and the audit stays ok;
- random-id GETs: 10,000 lookups of ids that exist nowhere, each 404, with the live actors and
  the resident memory read from ``/metrics`` before and after (nothing may stay behind);
- unsigned callbacks: 400 callbacks of 60 KB with a signature that cannot verify, each refused
  400, with ``payment_log`` and the database's size read before and after (none is stored);

then the flood of :mod:`shopkeep.proof.api_flood`, ten times the capacity, on a server of its
own. The last line printed is the figure; the exit status is 1 if anything was found.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from shopkeep.bench.processes import HOST
from shopkeep.proof.api_flood import Flooded, flood
from shopkeep.proof.api_fuzz import Fuzzed, fuzz
from shopkeep.proof.api_probes import (
    RANDOM_LOOKUPS,
    Call,
    Gauges,
    Lookups,
    Probed,
    Scene,
    Unsigned,
    bearer,
    bola_matrix,
    build_scene,
    mass_assignment,
    random_id_lookups,
    unsigned_callbacks,
)
from shopkeep.proof.api_sockets import HalfOpen, HeaderBytes, half_open, header_bytes
from shopkeep.proof.serving import ServeProcess

UNPAID_CAP = 5
OVER_THE_CAP = 15
READ_TIMEOUT_S = 2.0
"""The server's ``--read-timeout``: the half-open connections are closed after it."""


@dataclass(frozen=True)
class HttpAnswer:
    """An answer from the real server."""

    status: int
    body: Any
    headers: dict[str, str]


def http_call(session: aiohttp.ClientSession, url: str) -> Call:
    """A :data:`~shopkeep.proof.api_probes.Call` over HTTP to ``url``."""

    async def call(method: str, path: str, headers: dict[str, str], body: Any) -> HttpAnswer:
        data = None if body is None else msgspec.json.encode(body)
        sent = {**headers, "Content-Type": "application/json"} if data else headers
        async with session.request(method, url + path, headers=sent, data=data) as response:
            raw = await response.read()
            decoded = msgspec.json.decode(raw) if raw and "json" in response.content_type else None
            return HttpAnswer(response.status, decoded, dict(response.headers))

    return call


def http_gauges(session: aiohttp.ClientSession, url: str) -> Gauges:
    """:data:`~shopkeep.proof.api_probes.Gauges` read from the server's ``/metrics``."""

    async def read() -> dict[str, float]:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    return read


@dataclass
class Capped:
    """The unpaid-orders cap under a burst of one user's placements."""

    placed: int = 0
    refused: int = 0
    other: list[str] = field(default_factory=list)


async def unpaid_cap(call: Call, admin: dict[str, str], goods_id: str) -> Capped:
    """One new user places ``UNPAID_CAP + OVER_THE_CAP`` orders at once."""
    user = await call("POST", "/v1/users", admin, {"name": "hoarder"})
    headers = bearer(user.body["token"])
    body = {"items": [{"goods_id": goods_id, "quantity": 1}]}
    answers = await asyncio.gather(
        *(call("POST", "/v1/orders", headers, body) for _ in range(UNPAID_CAP + OVER_THE_CAP))
    )
    capped = Capped()
    for answer in answers:
        code = answer.body.get("code") if isinstance(answer.body, dict) else None
        if answer.status == 201:
            capped.placed += 1
        elif (answer.status, code) == (409, "too_many_unpaid_orders"):
            capped.refused += 1
        else:
            capped.other.append(f"{answer.status} {answer.body}")
    return capped


@dataclass
class Figures:
    """Everything the group saw."""

    fuzzed: list[Fuzzed] = field(default_factory=list)
    bola: Probed = field(default_factory=Probed)
    mass: Probed = field(default_factory=Probed)
    capped: Capped = field(default_factory=Capped)
    half_open: HalfOpen | None = None
    header_bytes: HeaderBytes = field(default_factory=HeaderBytes)
    lookups: Lookups = field(default_factory=Lookups)
    unsigned: Unsigned = field(default_factory=Unsigned)
    audit_failures: list[str] = field(default_factory=list)
    flooded: Flooded | None = None
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        """Everything found, one line each."""
        found = [f for run in self.fuzzed for f in run.failures]
        found += [f"BOLA: {leak}" for leak in self.bola.leaks]
        found += [f"mass assignment: {leak}" for leak in self.mass.leaks]
        if (self.capped.placed, self.capped.refused) != (UNPAID_CAP, OVER_THE_CAP):
            found.append(f"unpaid cap: {self.capped.placed} placed, {self.capped.refused} refused")
        found += [f"unpaid cap: {other}" for other in self.capped.other]
        found += self.half_open.problems if self.half_open else ["half-open: not run"]
        found += self.header_bytes.problems
        found += self.lookups.problems
        found += self.unsigned.problems
        found += [f"audit: {failure}" for failure in self.audit_failures]
        found += [f"flood: {p}" for p in (self.flooded.problems if self.flooded else [])]
        return found

    def line(self) -> str:
        """The one-line figure."""
        cases = sum(run.cases for run in self.fuzzed)
        errors = sum(run.server_errors for run in self.fuzzed)
        violations = sum(len(run.failures) for run in self.fuzzed)
        f = self.flooded
        flood_text = "flood not run"
        if f is not None:
            answered = ", ".join(f"{n} {s}" for s, n in sorted(f.load.statuses.items()))
            other_5xx = sum(n for s, n in f.load.statuses.items() if s >= 500 and s != 503)
            flood_text = (
                f"flood {f.load.requests} placements at {f.ratio:.1f}x capacity "
                f"({f.load.per_s:.0f}/s offered, {f.capacity_per_s:.0f}/s placed at most): "
                f"answers {answered}, {f.load.missing_retry_after} 503 without Retry-After, "
                f"{other_5xx} other 5xx, {f.load.socket_errors} unanswered, RSS "
                f"{f.rss_before_mb:.0f} -> {f.rss_peak_mb:.0f} MiB, {f.retried.text()}"
            )
        cap = "held" if not any(p.startswith("unpaid cap") for p in self.problems) else "BROKEN"
        return (
            f"api-abuse: schemathesis {cases} cases, every check, {errors} server errors, "
            f"{violations} violations; BOLA {self.bola.probes} probes {len(self.bola.leaks)} "
            f"leaks; mass assignment {self.mass.probes} fields {len(self.mass.leaks)} accepted; "
            f"unpaid cap {UNPAID_CAP} {cap} ({self.capped.placed} placed, "
            f"{self.capped.refused} refused of {UNPAID_CAP + OVER_THE_CAP}); "
            f"{self.half_open.text() if self.half_open else 'half-open not run'}; "
            f"{self.header_bytes.text()}; {self.lookups.line()}; {self.unsigned.line()}; "
            f"{flood_text}; "
            f"{len(self.problems)} problems, {self.seconds:.0f} s"
        )


async def run(
    folder: Path, examples: int, flood_seconds: float, lookups: int = RANDOM_LOOKUPS
) -> Figures:
    """The whole group (module docstring) in ``folder``, with ``lookups`` random-id GETs."""
    began = time.perf_counter()
    figures = Figures()
    admin_token, secret = secrets.token_urlsafe(24), secrets.token_hex(16)
    admin = bearer(admin_token)
    # a token may begin with "-", which a separate argument would read as an option
    flags = ["--gateway", "sandbox", f"--admin-token={admin_token}", "--gateway-secret", secret,
             "--max-unpaid-orders", str(UNPAID_CAP),
             "--read-timeout", str(READ_TIMEOUT_S)]  # fmt: skip
    with ServeProcess(folder / "shop.db", folder, flags) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await server.start(session)
            call = http_call(session, server.url)
            scene = await build_scene(call, admin, secret)
            figures.bola = await bola_matrix(call, scene)
            figures.mass = await mass_assignment(call, scene)
            figures.capped = await unpaid_cap(call, admin, scene.ids["goods"])
            figures.half_open = await half_open(HOST, server.port, READ_TIMEOUT_S)
            bob_token = scene.bob.headers["Authorization"].split()[1]
            figures.header_bytes = await header_bytes(
                HOST, server.port, bob_token, scene.ids["goods"]
            )
            figures.unsigned = await unsigned_callbacks(call, folder / "shop.db")
            gauges = http_gauges(session, server.url)
            figures.lookups = await random_id_lookups(call, admin, gauges, lookups)
            for token in (admin_token, scene.alice.headers["Authorization"].split()[1]):
                known = known_ids(scene)
                figures.fuzzed.append(
                    await asyncio.to_thread(fuzz, server.url, token, known, examples)
                )
            audit = (await call("GET", "/v1/audit", admin, None)).body
            figures.audit_failures = [
                f"{c['name']}: {c['detail']}" for c in audit["checks"] if not c["ok"]
            ]
        server.stop()
    if flood_seconds > 0:
        figures.flooded = await flood(folder, admin_token, flood_seconds)
    figures.seconds = time.perf_counter() - began
    return figures


def known_ids(scene: Scene) -> dict[str, str]:
    """Path parameters that name objects that exist, so fuzzed cases reach past 404."""
    ids = scene.ids
    return {"user_id": ids["user"], "goods_id": ids["goods"], "order_id": ids["order"],
            "return_id": ids["return"]}  # fmt: skip


def main(argv: list[str]) -> int:
    """The command line: run, print each problem and the figure last."""
    parser = argparse.ArgumentParser(
        prog="python -m shopkeep.proof api-abuse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=50,
        help="schemathesis examples per operation and role (default 50)",
    )
    parser.add_argument(
        "--flood-seconds",
        type=float,
        default=5.0,
        help="how long the flood lasts, 0 for none (default 5)",
    )
    parser.add_argument("--folder", type=Path, help="keep the databases and logs here")
    args = parser.parse_args(argv)  # fmt: skip
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        figures = asyncio.run(run(args.folder, args.examples, args.flood_seconds))
    else:
        with tempfile.TemporaryDirectory(prefix="shopkeep-api-abuse-") as folder:
            figures = asyncio.run(run(Path(folder), args.examples, args.flood_seconds))
    for problem in figures.problems:
        print(problem)
    print(figures.line())
    return 1 if figures.problems else 0
