"""The HTTP target: a running server, driven through one aiohttp session.

The session's connection pool is capped at the run's concurrency, so the harness never holds
more connections than it has workers (a journey that races two requests waits for a free
connection rather than opening one more). Answers are decoded with the server's own msgspec
schemas (:mod:`shopkeep.http.schemas`), so a change of the API breaks the harness loudly.
A problem+json answer raises :class:`Refused` with its ``code``; an answer that is not one,
``http_<status>``; a failed connection or a timeout, ``connection_error`` or ``timeout`` (a
host no resolver knows, or TLS asked of a server without it, ``bad_address``: the setup does
not wait for it to listen); an answer that does not match its schema, ``bad_answer``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, TypeVar

import aiohttp
import msgspec

from shopkeep.bench.http import scrape_rss
from shopkeep.bench.load.target import Customer, Order, Payment, Refused, failure_in
from shopkeep.http import schemas
from shopkeep.http.catalog import SANDBOX_COMPLETE
from shopkeep.http.codes import FORBIDDEN
from shopkeep.payments.signature import HEADER as SIGNATURE_HEADER
from shopkeep.payments.signature import sign

T = TypeVar("T")

REQUEST_TIMEOUT_S = 60.0
STARTING_S: Final = 10.0
"""How long the setup waits for a server that does not listen yet: one started just before
the bench, beside it, takes a second or two to listen."""
STARTING_STEP_S: Final = 0.2
ADMIN_TOKEN_FLAGS: Final = (
    "--admin-token or --admin-token-file, SHOPKEEP_ADMIN_TOKEN or SHOPKEEP_ADMIN_TOKEN_FILE"
)
"""Where the bench's admin token comes from, named in the setup's refusals of it."""


class Problem(msgspec.Struct):
    """The part of a problem+json answer the harness reads."""

    code: str = ""
    detail: str = ""


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def order_of(out: schemas.OrderOut) -> Order:
    """The harness's view of an order answer."""
    return Order(
        out.id,
        out.status,
        out.pay_amount,
        out.coupon_id,
        out.cancel_reason,
        _seconds(out.confirmed_at),
        _seconds(out.expires_at),
    )


SANDBOX_COMPLETE_PATH: Final = SANDBOX_COMPLETE[1]


class HttpTarget:
    """A shopkeep server at ``url``; see the module docstring."""

    def __init__(
        self,
        url: str,
        admin_token: str,
        gateway_secret: str | None,
        connections: int,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._say = say
        self._admin = {"Authorization": f"Bearer {admin_token}"}
        self._secret = gateway_secret
        self._session = aiohttp.ClientSession(
            # as many connections again as there are workers, for the orders parked for their
            # deadline (their polls, their late callbacks): aiohttp's pool is not fair (a
            # worker that frees a connection takes it back at once), and one pool for both
            # held a parked order's poll for seconds, timed as the server's
            connector=aiohttp.TCPConnector(limit=2 * connections),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )

    async def _call(
        self,
        method: str,
        path: str,
        kind: type[T] | None,
        *,
        headers: dict[str, str],
        body: Any = None,
        data: bytes | None = None,
    ) -> T | None:
        if body is not None:
            data = msgspec.json.encode(body)
        sent = {**headers, "Content-Type": "application/json"} if data is not None else headers
        try:
            async with self._session.request(
                method, self._url + path, data=data, headers=sent
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise Refused("timeout", f"{method} {path}") from None
        except (aiohttp.ClientConnectorDNSError, aiohttp.ClientSSLError) as error:
            # a name no resolver knows, TLS to a server without it: no wait would help
            raise Refused("bad_address", f"{method} {path}: {error}") from None
        except aiohttp.ClientError as error:
            raise Refused("connection_error", f"{method} {path}: {error}") from None
        if status >= 400:
            try:
                problem = msgspec.json.decode(raw, type=Problem)
            except msgspec.DecodeError:
                problem = Problem()
            raise Refused(problem.code or f"http_{status}", problem.detail)
        if kind is None:
            return None
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise Refused("bad_answer", f"{method} {path}: {error}") from None

    async def _get(self, path: str, kind: type[T], headers: dict[str, str]) -> T:
        answer = await self._call("GET", path, kind, headers=headers)
        assert answer is not None
        return answer

    async def _post(self, path: str, kind: type[T], headers: dict[str, str], body: Any = None) -> T:
        answer = await self._call("POST", path, kind, headers=headers, body=body)
        assert answer is not None
        return answer

    @staticmethod
    def _as(customer: Customer) -> dict[str, str]:
        return {"Authorization": f"Bearer {customer.token}"}

    async def ready(self) -> None:
        """The server is shopkeep (its OpenAPI document says so), the admin token is taken
        (asked for a user no id names: 404, not 401), and the server is in sandbox mode (its
        document lists the sandbox's route only then)."""
        try:
            document = await self._document()
        except Refused as refused:
            if refused.code.startswith("http_") or refused.code == "bad_answer":
                raise Refused("not_shopkeep", "the server is not shopkeep: it has no "
                              f"/openapi.json of JSON ({refused.code})") from None
            raise
        info, paths = document.get("info"), document.get("paths")
        if not isinstance(info, dict) or info.get("title") != "shopkeep" or not isinstance(
            paths, dict
        ):
            raise Refused("not_shopkeep", "the server is not shopkeep: its /openapi.json is "
                          "not shopkeep's document")
        try:
            await self._call("GET", "/v1/users/0", None, headers=self._admin)
        except Refused as refused:
            if refused.code == FORBIDDEN:  # the route is the admin's: a user's token
                raise Refused(
                    "unauthorized", f"the admin token is a user's token ({ADMIN_TOKEN_FLAGS})"
                ) from None
            if refused.code == "unauthorized":
                raise Refused("unauthorized", f"the server refuses the admin token "
                              f"({ADMIN_TOKEN_FLAGS}): it is not this server's") from None
            if refused.code != "not_found":
                raise
        if SANDBOX_COMPLETE_PATH not in paths:
            raise Refused(
                "not_sandbox",
                "the server is not in sandbox mode (serve --sandbox): the journeys pay through "
                "its sandbox gateway",
            )

    async def _document(self) -> dict[str, Any]:
        """The server's ``/openapi.json``, waited for up to :data:`STARTING_S` while the
        server does not listen yet (said once, through ``say``)."""
        until = time.monotonic() + STARTING_S
        said = False
        while True:
            try:
                return await self._get("/openapi.json", dict[str, Any], {})
            except Refused as refused:
                if refused.code != "connection_error" or time.monotonic() >= until:
                    raise
            if not said and self._say is not None:
                self._say(f"bench: {self._url} does not answer yet: waiting up to "
                          f"{STARTING_S:g} s for it to listen")
                said = True
            await asyncio.sleep(STARTING_STEP_S)

    async def create_user(self, name: str, balance: int) -> Customer:
        """POST /v1/users."""
        made = await self._post(
            "/v1/users", schemas.CreatedUserOut, self._admin, {"name": name, "balance": balance}
        )
        return Customer(made.id, made.token)

    async def create_goods(self, name: str, price: int, stock: int) -> str:
        """POST /v1/goods."""
        body = {"name": name, "price": price, "stock": stock}
        return (await self._post("/v1/goods", schemas.GoodsOut, self._admin, body)).id

    async def create_coupon(self, user_id: str, value: int) -> str:
        """POST /v1/coupons."""
        body = {"user_id": user_id, "value": value}
        return (await self._post("/v1/coupons", schemas.CouponOut, self._admin, body)).id

    async def place_order(
        self,
        customer: Customer,
        items: list[tuple[str, int]],
        *,
        coupon_id: str | None,
        use_balance: int,
        key: str,
        wait: bool,
    ) -> Order:
        """POST /v1/orders (``?wait=false`` when not waiting)."""
        body: dict[str, Any] = {
            "items": [{"goods_id": goods, "quantity": quantity} for goods, quantity in items],
            "use_balance": use_balance,
        }
        if coupon_id is not None:
            body["coupon_id"] = coupon_id
        path = "/v1/orders" if wait else "/v1/orders?wait=false"
        headers = {**self._as(customer), "Idempotency-Key": key}
        return order_of(await self._post(path, schemas.OrderOut, headers, body))

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        """GET /v1/orders/{id}."""
        path = f"/v1/orders/{order_id}"
        return order_of(await self._get(path, schemas.OrderOut, self._as(customer)))

    async def placement_failure(self, customer: Customer, order_id: str) -> str:
        """GET /v1/orders/{id}/history: the code its failed placement was refused with."""
        path = f"/v1/orders/{order_id}/history"
        page = await self._get(path, schemas.HistoryList, self._as(customer))
        return failure_in((entry.operation, entry.remark) for entry in page.items)

    async def start_payment(self, customer: Customer, order_id: str) -> Payment:
        """POST /v1/orders/{id}/payment."""
        path = f"/v1/orders/{order_id}/payment"
        out = await self._post(path, schemas.PaymentOut, self._as(customer))
        return Payment(out.id, out.order_id, out.amount)

    async def complete_payment(self, payment_id: str, result: str) -> None:
        """POST /sandbox/payments/{id}/complete (answered 202; the callback follows)."""
        path = f"/sandbox/payments/{payment_id}/complete"
        await self._call("POST", path, None, headers={}, body={"result": result})

    async def send_callback(self, raw_body: bytes, signature: str) -> None:
        """POST /v1/payments/callback with the raw bytes that were signed."""
        headers = {SIGNATURE_HEADER: signature}
        await self._call("POST", "/v1/payments/callback", None, headers=headers, data=raw_body)

    def sign(self, raw_body: bytes, timestamp: int) -> str:
        """Sign with the gateway secret given on the command line."""
        if self._secret is None:
            raise RuntimeError("no gateway secret: signed callbacks are not possible")
        return sign(self._secret, timestamp, raw_body)

    @property
    def signs(self) -> bool:
        """Whether the gateway secret was given."""
        return self._secret is not None

    async def cancel_order(self, customer: Customer, order_id: str) -> Order:
        """POST /v1/orders/{id}/cancel as the user."""
        path = f"/v1/orders/{order_id}/cancel"
        return order_of(await self._post(path, schemas.OrderOut, self._as(customer)))

    async def ship(self, order_id: str) -> Order:
        """POST /v1/orders/{id}/ship."""
        path = f"/v1/orders/{order_id}/ship"
        return order_of(await self._post(path, schemas.OrderOut, self._admin))

    async def deliver(self, order_id: str) -> Order:
        """POST /v1/orders/{id}/deliver."""
        path = f"/v1/orders/{order_id}/deliver"
        return order_of(await self._post(path, schemas.OrderOut, self._admin))

    async def request_return(self, customer: Customer, order_id: str) -> str:
        """POST /v1/orders/{id}/returns."""
        path = f"/v1/orders/{order_id}/returns"
        body = {"reason": "load test"}
        return (await self._post(path, schemas.ReturnOut, self._as(customer), body)).id

    async def approve_return(self, return_id: str) -> None:
        """POST /v1/returns/{id}/approve."""
        await self._post(f"/v1/returns/{return_id}/approve", schemas.ReturnOut, self._admin)

    async def refund_kinds(self, customer: Customer, order_id: str) -> list[str]:
        """GET /v1/orders/{id}/refunds."""
        path = f"/v1/orders/{order_id}/refunds"
        return [
            r.kind for r in (await self._get(path, schemas.RefundList, self._as(customer))).items
        ]

    async def audit(self) -> dict[str, Any]:
        """GET /v1/audit."""
        report = await self._get("/v1/audit", schemas.AuditOut, self._admin)
        return msgspec.to_builtins(report)  # type: ignore[no-any-return]

    async def resident_memory(self) -> float | None:
        """``process_resident_memory_bytes`` from GET /metrics, or None when it is missing."""
        try:
            return await scrape_rss(self._session, self._url)
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def close(self) -> None:
        """Close the session."""
        await self._session.close()
