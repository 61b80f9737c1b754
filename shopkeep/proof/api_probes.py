"""Group 5's probes of who may do what (OWASP API1 and API5), of what a body may set (API3),
and of what a lookup may cost (API4).

- The BOLA matrix: every route with an id, tried as another user, with no token and with a
  wrong token; every admin route tried as a user and every "me" route tried as the admin
  (403 forbidden: a route of the other role); another user's order answers 404, as one nobody
  has, so probing ids teaches a caller nothing.
- Mass assignment: every write body of SPEC 7, valid plus one server-owned field (an id, a
  status, an amount, an owner, a token...), must be refused 422 validation_error.
- Random ids: GETs by ids that exist nowhere answer 404 and leave nothing behind (no live
  actor, no memory beyond noise): each used to keep an actor in memory.

They run over any :data:`Call` (the tests' in-process client, or a real server over HTTP); the
first two check at the end that nothing the probes were refused changed anything the admin can
see, the third reads the server's gauges before and after (:data:`Gauges`).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from shopkeep.payments.signature import HEADER, sign
from shopkeep.store.writer_process import database_uri


class Answer(Protocol):
    """What a probe needs of an HTTP answer."""

    @property
    def status(self) -> int:
        """The HTTP status."""

    @property
    def body(self) -> Any:
        """The decoded JSON body (None when there is none)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers."""


Call = Callable[[str, str, dict[str, str], Any], Awaitable[Answer]]
"""``call(method, path, headers, json_body)``: send one request, answer its :class:`Answer`."""


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


NONE: dict[str, str] = {}
WRONG = bearer("nobody-holds-this-token")


@dataclass(frozen=True)
class Customer:
    """A user as the probes hold them: their id and their Authorization header."""

    id: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Scene:
    """Alice with an order awaiting payment and a delivered one with a return asked; Bob, who
    is not Alice; and the ids the routes' templates need."""

    admin: dict[str, str]
    alice: Customer
    bob: Customer
    ids: dict[str, str]


async def build_scene(
    call: Call, admin: dict[str, str], secret: str, now: Callable[[], float] = time.time
) -> Scene:
    """Make the scene through the API (the gateway's callback signed with ``secret``)."""

    async def made(method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        answer = await call(method, path, headers, body)
        if answer.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {answer.status} {answer.body}")
        return answer.body

    people = []
    for name in ("alice", "bob"):
        user = await made("POST", "/v1/users", admin, {"name": name, "balance": 100})
        people.append(Customer(str(user["id"]), bearer(user["token"])))
    alice, bob = people
    goods = await made("POST", "/v1/goods", admin, {"name": "tea", "price": 1_000, "stock": 10})
    item = {"items": [{"goods_id": goods["id"], "quantity": 1}]}
    delivered = await made("POST", "/v1/orders", alice.headers, item)
    payment = await made("POST", f"/v1/orders/{delivered['id']}/payment", alice.headers)
    raw = msgspec.json.encode({
        "payment_id": payment["id"], "order_id": payment["order_id"],
        "amount": payment["amount"], "status": "succeeded", "gateway_txn_id": "txn-scene",
    })  # fmt: skip
    signature = {HEADER: sign(secret, int(now()), raw), "Content-Type": "application/json"}
    await made("POST", "/v1/payments/callback", signature, msgspec.json.decode(raw))
    for step in ("ship", "deliver"):
        await made("POST", f"/v1/orders/{delivered['id']}/{step}", admin)
    asked = await made("POST", f"/v1/orders/{delivered['id']}/returns", alice.headers)
    order = await made("POST", "/v1/orders", alice.headers, item)
    ids = {
        "user": alice.id, "other": bob.id, "goods": str(goods["id"]), "order": str(order["id"]),
        "delivered": str(delivered["id"]), "return": str(asked["id"]),
    }  # fmt: skip
    return Scene(admin, alice, bob, ids)


ORDER_ROUTES: list[tuple[str, str, bool]] = [
    ("GET", "/v1/orders/{id}", False),
    ("GET", "/v1/orders/{id}/history", False),
    ("GET", "/v1/orders/{id}/refunds", False),
    ("POST", "/v1/orders/{id}/payment", False),
    ("POST", "/v1/orders/{id}/cancel", False),
    ("POST", "/v1/orders/{id}/returns", True),
]
"""(method, path template, needs a delivered order): the routes of one user's order."""

ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/users", {"name": "eve"}),
    ("GET", "/v1/users/{user}", None),
    ("POST", "/v1/users/{user}/wallet/credit", {"amount": 1}),
    ("POST", "/v1/goods", {"name": "tea", "price": 1, "stock": 1}),
    ("PATCH", "/v1/goods/{goods}", {"restock": 1}),
    ("POST", "/v1/coupons", {"user_id": "{user}", "value": 1}),
    ("POST", "/v1/orders/{order}/ship", None),
    ("POST", "/v1/orders/{order}/deliver", None),
    ("POST", "/v1/returns/{return}/approve", None),
    ("GET", "/v1/audit", None),
]
"""(method, path template, body): the admin's routes."""

ME_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/me", None),
    ("GET", "/v1/coupons", None),
    ("POST", "/v1/orders", {"items": []}),
    ("POST", "/v1/orders/{order}/payment", None),
    ("POST", "/v1/orders/{delivered}/returns", None),
]
"""(method, path template, body): the routes that act as the calling user (SPEC 7: "user"),
forbidden to the admin."""

WRITES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("POST", "/v1/users", {"name": "eve"}, {"id": "1"}),
    ("POST", "/v1/users", {"name": "eve"}, {"points": 1_000}),
    ("POST", "/v1/users", {"name": "eve"}, {"token": "chosen"}),
    ("POST", "/v1/users/{user}/wallet/credit", {"amount": 1}, {"balance": 10**9}),
    ("POST", "/v1/goods", {"name": "tea", "price": 1, "stock": 1}, {"id": "7"}),
    ("PATCH", "/v1/goods/{goods}", {"price": 1}, {"stock": 10**6}),
    ("PATCH", "/v1/goods/{goods}", {"price": 1}, {"name": "renamed"}),
    ("POST", "/v1/coupons", {"user_id": "{user}", "value": 1}, {"state": "used"}),
    ("POST", "/v1/coupons", {"user_id": "{user}", "value": 1}, {"order_id": "{order}"}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1}]},
     {"status": "paid"}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1}]},
     {"pay_amount": 0}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1}]},
     {"user_id": "{other}"}),
    ("POST", "/v1/orders", {"items": [{"goods_id": "{goods}", "quantity": 1, "unit_price": 1}]},
     {}),
    ("POST", "/v1/orders/{order}/payment", {}, {"amount": 1}),
    ("POST", "/v1/orders/{order}/cancel", {}, {"cancel_reason": "timeout"}),
    ("POST", "/v1/orders/{order}/returns", {"reason": "broken"}, {"status": "approved"}),
]  # fmt: skip
"""(method, path template, valid body, server-owned fields added): the mass-assignment writes."""


def filled(value: Any, ids: Mapping[str, str]) -> Any:
    """``value`` with ``{name}`` placeholders in its strings replaced by ``ids``."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: filled(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [filled(item, ids) for item in value]
    return value


def writes_as(scene: Scene, template: str) -> dict[str, str]:
    """Who sends a mass-assignment write: the admin for admin routes, else Alice."""
    as_admin = template.startswith(("/v1/users", "/v1/goods", "/v1/coupons"))
    return scene.admin if as_admin else scene.alice.headers


async def snapshot(call: Call, admin: dict[str, str]) -> list[Any]:
    """Everything a refused request could have changed, as the admin sees it."""
    paths = ("/v1/orders", "/v1/goods", "/v1/audit")
    return [(await call("GET", path, admin, None)).body for path in paths]


@dataclass
class Probed:
    """What a set of probes found: how many were sent and each one answered wrongly."""

    probes: int = 0
    leaks: list[str] = field(default_factory=list)

    async def expect(self, call: Call, method: str, path: str, headers: dict[str, str],
                     body: Any, status: int, code: str) -> None:  # fmt: skip
        """Send one probe; a leak unless it answers ``status`` with problem ``code``."""
        self.probes += 1
        answer = await call(method, path, headers, body)
        got = answer.body.get("code") if isinstance(answer.body, dict) else None
        if (answer.status, got) != (status, code):
            self.leaks.append(f"{method} {path}: {answer.status} {answer.body}")
        elif status == 401 and not answer.headers.get("WWW-Authenticate", "").startswith("Bearer"):
            self.leaks.append(f"{method} {path}: 401 without WWW-Authenticate: Bearer")


async def bola_matrix(call: Call, scene: Scene) -> Probed:
    """Every probe of the matrix (module docstring); and nothing changed."""
    found = Probed()
    before = await snapshot(call, scene.admin)
    for method, template, delivered in ORDER_ROUTES:
        path = template.format(id=scene.ids["delivered" if delivered else "order"])
        await found.expect(call, method, path, scene.bob.headers, None, 404, "not_found")
        for stranger in (NONE, WRONG):
            await found.expect(call, method, path, stranger, None, 401, "unauthorized")
    for method, template, body in ADMIN_ROUTES:
        path, payload = template.format(**scene.ids), filled(body, scene.ids)
        await found.expect(call, method, path, scene.alice.headers, payload, 403, "forbidden")
        for stranger in (NONE, WRONG):
            await found.expect(call, method, path, stranger, payload, 401, "unauthorized")
    for method, template, body in ME_ROUTES:
        path = template.format(**scene.ids)
        await found.expect(call, method, path, scene.admin, body, 403, "forbidden")
    if await snapshot(call, scene.admin) != before:
        found.leaks.append("a refused probe changed what the admin sees")
    return found


async def mass_assignment(call: Call, scene: Scene) -> Probed:
    """Every write with a server-owned field must be refused 422; and nothing changed."""
    found = Probed()
    before = await snapshot(call, scene.admin)
    for method, template, body, owned in WRITES:
        path, payload = filled(template, scene.ids), filled({**body, **owned}, scene.ids)
        headers = writes_as(scene, template)
        await found.expect(call, method, path, headers, payload, 422, "validation_error")
    if await snapshot(call, scene.admin) != before:
        found.leaks.append("a refused write changed what the admin sees")
    return found


# -- random ids: lookups of what exists nowhere leave nothing behind ---------------------------

RANDOM_ID_ROUTES = (
    "/v1/goods/{id}", "/v1/users/{id}", "/v1/orders/{id}", "/v1/orders/{id}/history",
    "/v1/orders/{id}/refunds", "/v1/coupons/{id}", "/v1/payments/{id}", "/v1/returns/{id}",
)  # fmt: skip
"""The GETs by id the random-id probe takes in turn."""
RANDOM_LOOKUPS = 10_000
LOOKUPS_AT_ONCE = 32
RANDOM_ID_RSS_SLACK_MB = 8.0
"""How much the server's resident memory may grow over the lookups (the allocator's own
noise, a few pages of caches). An actor kept per id grew it 4.5 MB over 10,000 lookups."""

Gauges = Callable[[], Awaitable[dict[str, float]]]
"""Read the server's gauges now (``shopkeep_live_actors``, ``process_resident_memory_bytes``)."""


@dataclass
class Lookups:
    """What the random-id GETs did to the server: the live actors and the resident memory
    before and after, and every answer that was not 404."""

    lookups: int = 0
    actors_before: float = 0.0
    actors_after: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    other: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Everything wrong, one line each."""
        found = [f"random-id GET: {answer}" for answer in self.other[:5]]
        if self.actors_after > self.actors_before:
            found.append(
                f"random-id GETs left actors behind: {self.actors_before:.0f} live before, "
                f"{self.actors_after:.0f} after"
            )
        if self.rss_after_mb - self.rss_before_mb > RANDOM_ID_RSS_SLACK_MB:
            found.append(
                f"random-id GETs grew the server from {self.rss_before_mb:.1f} to "
                f"{self.rss_after_mb:.1f} MiB"
            )
        return found

    def line(self) -> str:
        """The probe's figure."""
        return (
            f"random-id GETs {self.lookups} ({self.lookups - len(self.other)} 404): live actors "
            f"{self.actors_before:.0f} -> {self.actors_after:.0f}, RSS {self.rss_before_mb:.1f} "
            f"-> {self.rss_after_mb:.1f} MiB"
        )


async def random_id_lookups(
    call: Call, admin: dict[str, str], gauges: Gauges, count: int = RANDOM_LOOKUPS,
    seed: int = 12,
) -> Lookups:  # fmt: skip
    """``count`` GETs by ids that exist nowhere (random 63-bit ids, :data:`RANDOM_ID_ROUTES`
    in turn, :data:`LOOKUPS_AT_ONCE` at a time, as the admin, whom no rate limit slows):
    each must answer 404, and the live actors must not grow, nor the memory beyond noise."""
    draw = random.Random(seed)
    paths = [
        RANDOM_ID_ROUTES[n % len(RANDOM_ID_ROUTES)].format(id=draw.randrange(1, 2**63))
        for n in range(count)
    ]
    found = Lookups(lookups=count)
    before = await gauges()
    found.actors_before = before["shopkeep_live_actors"]
    found.rss_before_mb = before["process_resident_memory_bytes"] / 2**20

    async def look(batch: list[str]) -> None:
        for path in batch:
            answer = await call("GET", path, admin, None)
            if answer.status != 404:
                found.other.append(f"GET {path}: {answer.status} {answer.body}")

    await asyncio.gather(*(look(paths[n::LOOKUPS_AT_ONCE]) for n in range(LOOKUPS_AT_ONCE)))
    after = await gauges()
    found.actors_after = after["shopkeep_live_actors"]
    found.rss_after_mb = after["process_resident_memory_bytes"] / 2**20
    return found


UNSIGNED_CALLBACKS = 400
UNSIGNED_BODY_BYTES = 60_000
UNSIGNED_GROWTH_SLACK_MB = 1.0
"""How much the database and its WAL may grow over the unsigned callbacks: nothing of them is
stored, but the server's own commits (timers, sweeps) go on meanwhile."""


@dataclass
class Unsigned:
    """What a flood of callbacks nobody signed did to the disk (SPEC 7: one that fails
    verification is counted, never stored: anyone can send one)."""

    sent: int = 0
    refused: int = 0
    logged_before: int = 0
    logged_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def problems(self) -> list[str]:
        """Everything wrong, one line each."""
        found = []
        if self.refused != self.sent:
            found.append(f"unsigned callbacks: {self.sent - self.refused} not refused 400")
        if self.logged_after != self.logged_before:
            found.append(
                f"unsigned callbacks stored: payment_log {self.logged_before} -> "
                f"{self.logged_after} rows"
            )
        if self.bytes_after - self.bytes_before > UNSIGNED_GROWTH_SLACK_MB * 2**20:
            found.append(f"unsigned callbacks grew the database by {self.growth_mb:.1f} MiB")
        return found

    @property
    def growth_mb(self) -> float:
        """How much the database and its WAL grew, MiB."""
        return (self.bytes_after - self.bytes_before) / 2**20

    def line(self) -> str:
        """The probe's figure."""
        return (
            f"unsigned callbacks {self.sent} x {UNSIGNED_BODY_BYTES // 1000} KB: "
            f"{self.refused} refused 400, payment_log {self.logged_before} -> "
            f"{self.logged_after} rows, disk {self.growth_mb:+.2f} MiB"
        )


def _logged_and_size(db: Path) -> tuple[int, int]:
    """Rows in ``payment_log`` (read beside the running server) and the bytes of the database
    and its WAL."""
    conn = sqlite3.connect(database_uri(db.resolve(), "mode=ro"), uri=True)
    try:
        (rows,) = conn.execute("SELECT count(*) FROM payment_log").fetchone()
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    return int(rows), size


async def unsigned_callbacks(call: Call, db: Path, count: int = UNSIGNED_CALLBACKS) -> Unsigned:
    """POST ``count`` callbacks of ~60 KB with a signature that cannot verify; each must be
    refused 400, and neither ``payment_log`` nor the files may grow from them."""
    seen = Unsigned()
    seen.logged_before, seen.bytes_before = _logged_and_size(db)
    body = {"payment_id": "1", "order_id": "1", "amount": 1, "status": "succeeded",
            "gateway_txn_id": "x" * UNSIGNED_BODY_BYTES}  # fmt: skip
    forged = {"Shopkeep-Signature": f"t={int(time.time())},v1={'0' * 64}"}
    for _ in range(count):
        seen.sent += 1
        answer = await call("POST", "/v1/payments/callback", forged, body)
        seen.refused += answer.status == 400
    seen.logged_after, seen.bytes_after = _logged_and_size(db)
    return seen
