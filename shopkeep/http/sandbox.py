"""The sandbox payment gateway over HTTP: a stand-in third party for trying and load-testing.

With ``serve --sandbox`` the server plays both sides of a payment:

- the user "pays" by ``POST /sandbox/payments/{payment_id}/complete`` with
  ``{"result": "succeeded"}`` (or ``"failed"``), which answers 202 once the first call back
  has an outcome (or after :data:`FIRST_TRY_WAIT_S`): the sandbox's books are memory, so a 202
  after the shop acknowledged is a payment a crash of the process cannot lose; the payment link of
  every payment (``gateway_url``) points at ``/sandbox/payments/{payment_id}`` on this server,
  the sandbox's checkout: the payment as JSON, or for a browser a page whose two buttons send
  that POST;
- the gateway then calls the shop back the way a real one does: a signed JSON body POSTed over
  HTTP to ``/v1/payments/callback`` (this very server by default), retried with back-off by
  :meth:`SandboxGateway.deliver` until the answer is a 200.

So a callback crosses the same parser, signature check and error mapping as a real gateway's,
and a load test sees callbacks that come late and twice, as they do in production. The route
is mounted only in sandbox mode: anyone who can reach it can mark a payment paid.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import aiohttp
import structlog
from aiohttp import web

from shopkeep.actors.order_messages import PaymentView
from shopkeep.http.conversion import payment_out
from shopkeep.http.html_pages import html_page
from shopkeep.http.inputs import body_of, path_id, reply
from shopkeep.http.schemas import SandboxCompleteRequest
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.money import with_currency
from shopkeep.payments.names import CALLBACK_PATHS, FAILED, SANDBOX
from shopkeep.payments.signature import HEADER as SIGNATURE_HEADER
from shopkeep.runtime import Clock

if TYPE_CHECKING:
    from shopkeep.shop import Shop

log = structlog.get_logger("shopkeep.sandbox")

CALLBACK_PATH: Final = CALLBACK_PATHS[SANDBOX]
PAYMENTS_PATH: Final = "/sandbox/payments"
CALLBACK_TIMEOUT_S: Final = 30.0
"""How long one callback POST may take before the gateway counts it as failed and retries."""
FIRST_TRY_WAIT_S: Final = 5.0
"""How long a complete waits for its first call back before it answers 202 anyway (the
callback then goes on being retried, in memory): a shop that takes longer to acknowledge is
not kept waiting on by the person paying."""


class HttpSandboxGateway(SandboxGateway):
    """The sandbox gateway of a serving shop: payment links point at its own sandbox route.

    ``public_url`` (``http://host:port``) is set once the server listens, since a server started
    on port 0 learns its port only then; payments are started only after that.
    """

    def __init__(self, secret: bytes | str, clock: Clock, *, retry_s: float = 1.0) -> None:
        super().__init__(secret, clock, retry_s=retry_s)
        self.public_url = ""

    def payment_url(self, payment_id: int) -> str:
        """The sandbox page of ``payment_id`` on this server."""
        return f"{self.public_url}{PAYMENTS_PATH}/{payment_id}"


class HttpCallbackSink:
    """Delivers signed callbacks by POSTing them to ``url``; acknowledged on a 200 only.

    Anything else (a 400 for a refused callback, a 503, a refused connection, a timeout) is not
    an acknowledgement: the gateway tries again later, as a real one does. ``url`` may be set
    after construction (see :class:`HttpSandboxGateway`). One client session, opened on first
    use and closed by :meth:`close`.
    """

    def __init__(self, url: str = "", *, timeout_s: float = CALLBACK_TIMEOUT_S) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, raw_body: bytes, signature: str) -> bool:
        """POST one callback; True when the shop answered 200."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        async with self._session.post(self.url, data=raw_body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                log.info("sandbox_callback_not_acknowledged", status=response.status)
            return response.status == 200

    async def close(self) -> None:
        """Close the client session (callbacks still retrying then fail and retry, until the
        gateway itself is closed)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def sandbox_routes(shop: Shop, gateway: SandboxGateway) -> Iterable[web.RouteDef]:
    """``GET /sandbox/payments/{payment_id}``, the checkout a payment's ``gateway_url`` links
    to, and ``POST /sandbox/payments/{payment_id}/complete``: complete a payment through
    ``gateway``."""

    async def checkout(request: web.Request) -> web.Response:
        """The payment (404 for one this shop never started): a page with its two buttons for
        a browser (``Accept`` naming ``text/html``), else the payment's JSON."""
        payment = await shop.get_payment(path_id(request, "payment_id"))
        if "text/html" in request.headers.get("Accept", ""):
            return html_page(checkout_page(payment), script=True)
        return reply(payment_out(payment))

    async def complete(request: web.Request) -> web.Response:
        """Answer 202 (no body) once the first call back has an outcome, at most
        :data:`FIRST_TRY_WAIT_S` later; 404 for a payment this shop never started; 409 for
        one paid already; 422 for a body that is not ``{"result": "succeeded" | "failed"}``."""
        payment_id = path_id(request, "payment_id")
        # refused 422 listing every problem, as every route's body is
        body = await body_of(request, SandboxCompleteRequest)
        payment = await shop.get_payment(payment_id)  # ShopError not_found: 404
        gateway.check_payable(payment_id, payment.status)  # paid already: 409 invalid_state
        order_id, amount = payment.order_id, payment.amount
        first_try = gateway.complete_soon(payment_id, order_id, amount, body.result)
        # asyncio.wait cancels nothing: a client that hangs up ends this wait, not the callback
        await asyncio.wait([first_try], timeout=FIRST_TRY_WAIT_S)
        log.info(
            "sandbox_payment_completed",
            payment_id=payment_id,
            order_id=order_id,
            result=body.result,
        )
        # no body, as the OpenAPI catalog documents it: the outcome shows on the order
        return web.Response(status=202)

    return [
        web.get(PAYMENTS_PATH + "/{payment_id}", checkout, name="sandbox_checkout"),
        web.post(PAYMENTS_PATH + "/{payment_id}/complete", complete, name="sandbox_complete"),
    ]


def checkout_page(payment: PaymentView) -> str:
    """The sandbox's checkout page of ``payment``: what it collects, and a button to pay and
    one to fail, each POSTing ``/complete`` (the gateway then calls the shop back, signed)."""
    amount = html.escape(with_currency(payment.amount, payment.currency))
    opened = payment.status == "created"
    payable = opened or payment.status == FAILED  # a failed payment may still be paid
    state = "" if opened else f"<p>This payment is {html.escape(payment.status)}.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox payment {payment.id}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
<h1>Sandbox payment</h1>
<p>Order {payment.order_id} asks <strong>{amount}</strong>. This is the sandbox: no money moves.</p>
{state}<p><button data-result="succeeded"{"" if payable else " disabled"}>Pay</button>
<button data-result="failed"{"" if opened else " disabled"}>Fail</button></p>
<p id="said" role="status"></p>
<script>
for (const button of document.querySelectorAll("button")) {{
  button.addEventListener("click", async () => {{
    const answer = await fetch(location.pathname + "/complete", {{
      method: "POST", headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{result: button.dataset.result}})}});
    document.getElementById("said").textContent = answer.status === 202
      ? "Done: the gateway now calls the shop back." : "Refused (" + answer.status + ").";
  }});
}}
</script></body></html>
"""


def local_url(host: str, port: int) -> str:
    """``http://host:port`` as this server reaches itself: a wildcard address means loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
