"""A local fake of Stripe's API (the part the shop uses), for tests and the proof harness.

It answers the ``stripe`` SDK as Stripe does: form-encoded requests with a bearer secret key,
JSON objects, and Idempotency-Key replays (the same key and parameters answer the first answer
again, other parameters are an ``idempotency_error``). Webhook events are signed with the
endpoint secret the way the SDK verifies them: ``Stripe-Signature: t=<unix>,v1=<hex>``, hex an
HMAC-SHA256 over ``<t>.<payload>``. A canceled PaymentIntent cannot be paid (:class:`Unpayable`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

from aiohttp import web

from shopkeep.payments.fakes.common import Delivery, FakeRefund, FakeServer, Unpayable
from shopkeep.payments.stripe_provider import RESOURCE_MISSING

_CANCELABLE = frozenset({
    "requires_payment_method", "requires_confirmation", "requires_action", "processing",
    "requires_capture",
})
"""The statuses Stripe cancels a PaymentIntent in."""


def stripe_signature(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header of ``payload``, signed now by default."""
    when = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{when}.".encode() + payload, hashlib.sha256)
    return f"t={when},v1={digest.hexdigest()}"


class FakeStripe(FakeServer):
    """Stripe for secret key ``api_key``, sending webhooks to ``webhook_url`` signed with
    ``webhook_secret`` (both may be set after construction)."""

    name = "stripe"
    # test mode: the first try and 3 more over a few hours (live mode backs off for 3 days)
    schedule = (0.0, 3600.0, 7200.0, 10800.0)

    def __init__(self, *, api_key: str, webhook_secret: str, webhook_url: str = "",
                 **options: Any) -> None:
        super().__init__(**options)
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.intents: dict[str, dict[str, Any]] = {}
        self.stripe_refunds: dict[str, dict[str, Any]] = {}
        self._replays: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = {}
        self._failing_intents = (0, False)
        self._odd_intent: dict[str, Any] | None = None
        self._odd_cancel: dict[str, Any] | None = None
        routes = self.app.router
        routes.add_post("/v1/payment_intents", self._create_intent)
        routes.add_get("/v1/payment_intents/search", self._search_intents)
        routes.add_get("/v1/payment_intents/{id}", self._get_intent)
        routes.add_post("/v1/payment_intents/{id}/cancel", self._cancel_intent)
        routes.add_post("/v1/refunds", self._create_refund)
        routes.add_get("/v1/refunds", self._list_refunds)

    # -- what the customer and the provider do --------------------------------------------------

    def intent_of(self, payment_id: int | str) -> dict[str, Any]:
        """The PaymentIntent created for a shop payment."""
        for intent in self.intents.values():
            if intent["metadata"].get("payment_id") == str(payment_id):
                return intent
        raise KeyError(f"no PaymentIntent for payment {payment_id}")

    async def pay(self, intent_id: str, *, notify: bool = True) -> Delivery | None:
        """The customer confirms and pays the intent; Stripe sends ``payment_intent.succeeded``
        to the webhook (unless ``notify`` is False)."""
        intent = self.intents[intent_id]
        if intent["status"] == "canceled":
            raise Unpayable(f"PaymentIntent {intent_id} is canceled")
        intent.update(status="succeeded", amount_received=intent["amount"],
                      latest_charge=self.next_id("ch_"))
        if not notify:
            return None
        return await self.send(self.event("payment_intent.succeeded", intent))

    async def fail(self, intent_id: str) -> Delivery:
        """The customer's payment failed: ``payment_intent.payment_failed``."""
        intent = self.intents[intent_id]
        intent.update(status="requires_payment_method")
        return await self.send(self.event("payment_intent.payment_failed", intent))

    def event(self, kind: str, obj: dict[str, Any]) -> bytes:
        """The raw payload of an event of type ``kind`` about ``obj``."""
        payload = {
            "id": self.next_id("evt_"), "object": "event", "api_version": "2024-06-20",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
            "type": kind, "data": {"object": obj},
        }
        return json.dumps(payload).encode()

    async def send(self, payload: bytes) -> Delivery:
        """Deliver an event to the webhook, signed afresh on each try, until a 2xx."""
        return await self.deliver(
            self.webhook_url, payload,
            lambda: {"Content-Type": "application/json",
                     "Stripe-Signature": stripe_signature(self.webhook_secret, payload)},
            lambda status, body: 200 <= status < 300,
        )

    # -- the API --------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's parameters (``metadata[k]`` folded into a dict), or a 401."""
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        pairs = urllib.parse.parse_qsl((await request.read()).decode() or request.query_string)
        params: dict[str, Any] = {}
        for key, value in pairs:
            if key.endswith("]") and "[" in key:
                outer, inner = key[:-1].split("[", 1)
                params.setdefault(outer, {})[inner] = value
            else:
                params[key] = value
        return params

    def _replayed(self, request: web.Request, params: dict[str, Any]) -> web.Response | None:
        key = request.headers.get("Idempotency-Key")
        saved = self._replays.get(key) if key else None
        if saved is None:
            return None
        path, first, status, body = saved
        if (path, first) != (request.path, params):
            return _error(400, "idempotency_error", "Keys for idempotent requests can only be "
                          "used with the same parameters they were first used with.")
        return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})

    def _save(
        self, request: web.Request, params: dict[str, Any], body: dict[str, Any],
        status: int = 200,
    ) -> None:
        key = request.headers.get("Idempotency-Key")
        if key:
            self._replays[key] = (request.path, params, status, body)

    def _refused(
        self, request: web.Request, params: dict[str, Any], message: str
    ) -> web.Response:
        """A 400 ``invalid_request_error`` saying ``message``, kept under the request's key."""
        body = {"error": {"type": "invalid_request_error", "message": message}}
        self._save(request, params, body, status=400)
        return web.json_response(body, status=400)

    def fail_intents(self, times: int = 1, *, made: bool = False) -> None:
        """The next ``times`` PaymentIntent creations answer 500, kept under their
        Idempotency-Key as Stripe keeps a failure whose execution began: the same key is
        answered the same 500 again (``Idempotent-Replayed``). ``made``: the intent was
        created before the failure."""
        self._failing_intents = (times, made)

    def answer_next_intent(self, body: dict[str, Any]) -> None:
        """The next PaymentIntent creation answers 200 with ``body`` as it is (malformed: no
        ``client_secret``, say), creating nothing."""
        self._odd_intent = body

    def answer_next_cancel(self, body: dict[str, Any]) -> None:
        """The next cancel of a PaymentIntent answers 200 with ``body`` as it is (``{}``, say),
        canceling nothing."""
        self._odd_cancel = body

    async def _create_intent(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        replay = self._replayed(request, params)
        if replay is not None:
            return replay
        odd, self._odd_intent = self._odd_intent, None
        if odd is not None:
            return web.json_response(odd)
        refused = _unit_refused(str(params["currency"]), int(params["amount"]))
        if refused is not None:
            return refused
        intent_id = self.next_id("pi_")
        intent = {
            "id": intent_id, "object": "payment_intent", "amount": int(params["amount"]),
            "amount_received": 0, "currency": params["currency"], "status":
            "requires_payment_method", "client_secret": f"{intent_id}_secret_fake",
            "description": params.get("description"), "metadata": params.get("metadata", {}),
            "latest_charge": None, "livemode": False,
        }
        failing, made = self._failing_intents
        if failing:
            self._failing_intents = (failing - 1, made)
            if not made:
                return self._fail(request, params)
        self.intents[intent_id] = intent
        if failing:
            return self._fail(request, params)
        self._save(request, params, intent)
        return web.json_response(intent)

    def _fail(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        body = {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        self._save(request, params, body, 500)
        return web.json_response(body, status=500)

    async def _intent_asked(
        self, request: web.Request
    ) -> tuple[dict[str, Any], dict[str, Any]] | web.Response:
        """The request's parameters and the PaymentIntent its path names, or the answer that
        refuses it (401, 404)."""
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _error(
                404, "invalid_request_error", "No such payment_intent", RESOURCE_MISSING
            )
        return params, intent

    async def _get_intent(self, request: web.Request) -> web.Response:
        asked = await self._intent_asked(request)
        return asked if isinstance(asked, web.Response) else web.json_response(asked[1])

    async def _cancel_intent(self, request: web.Request) -> web.Response:
        asked = await self._intent_asked(request)
        if isinstance(asked, web.Response):
            return asked
        params, intent = asked
        odd, self._odd_cancel = self._odd_cancel, None
        if odd is not None:
            return web.json_response(odd)
        if intent["status"] not in _CANCELABLE:
            return _error(400, "invalid_request_error", "You cannot cancel this PaymentIntent "
                          f"because it has a status of {intent['status']}.",
                          "payment_intent_unexpected_state")
        intent.update(status="canceled", cancellation_reason=params.get("cancellation_reason"))
        return web.json_response(intent)

    async def _search_intents(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        # only the one query form the shop sends: metadata['payment_id']:'<id>'
        wanted = str(params.get("query", "")).rsplit(":", 1)[-1].strip("'")
        found = [i for i in self.intents.values() if i["metadata"].get("payment_id") == wanted]
        return web.json_response({"object": "search_result", "data": found, "has_more": False,
                                  "next_page": None, "url": "/v1/payment_intents/search"})

    async def _create_refund(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        key = request.headers.get("Idempotency-Key", "")
        gated = await self.refund_gate(key)
        if gated is not None:
            return gated
        replay = self._replayed(request, params)
        if replay is not None:
            return replay
        intent = self.intents.get(str(params.get("payment_intent")))
        # a refusal once the refund's execution began is kept under its key, as Stripe keeps
        # it, and answered again (Idempotent-Replayed) to the same key for a day
        if intent is None or intent["status"] != "succeeded":
            return self._refused(request, params, "This PaymentIntent has no charge")
        amount = int(params.get("amount", intent["amount_received"]))
        if amount > intent["amount_received"] - self.refunded(intent["id"]):
            return self._refused(request, params, "Refund amount exceeds the charge")
        made = self.record_refund(key, intent["id"], amount, "re_")
        refund = {"id": made.provider_id, "object": "refund", "amount": amount,
                  "currency": intent["currency"], "payment_intent": intent["id"],
                  "status": "succeeded", "metadata": params.get("metadata", {})}
        self.stripe_refunds[made.provider_id] = refund
        self._save(request, params, refund)
        return web.json_response(refund)

    def closed(self, refund: FakeRefund) -> None:
        """Stripe's word for a refund closed unpaid (a replay of its creation says it too)."""
        self.stripe_refunds[refund.provider_id]["status"] = "canceled"

    def fail_refund(self, key: str, reason: str = "expired_or_canceled_card") -> None:
        """The refund made under ``key`` failed after Stripe took it (the card is gone): its
        ``failure_reason`` says why."""
        made = self.refunds[key]
        self.stripe_refunds[made.provider_id].update(status="failed", failure_reason=reason)

    async def refund_failed(self, key: str, reason: str = "expired_or_canceled_card") -> Delivery:
        """The refund made under ``key`` failed after it succeeded, and Stripe says so:
        ``refund.failed`` (every refund's from API version 2024-10-28)."""
        self.fail_refund(key, reason)
        made = self.refunds[key]
        return await self.send(self.event("refund.failed", self.stripe_refunds[made.provider_id]))

    async def _list_refunds(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        wanted = params.get("payment_intent")
        data = [r for r in self.stripe_refunds.values() if r["payment_intent"] == wanted]
        return web.json_response({"object": "list", "data": data[::-1], "has_more": False,
                                  "url": "/v1/refunds"})


def _unit_refused(currency: str, amount: int) -> web.Response | None:
    """Stripe's refusal of an amount its currency's unit rules do not allow (its "special
    cases"): ISK in hundredths of whole krónur; the three-decimal currencies in tens."""
    step = {"isk": 100, "bhd": 10, "jod": 10, "kwd": 10, "omr": 10, "tnd": 10}.get(currency, 1)
    if amount % step:
        return _error(400, "invalid_request_error",
                      f"Invalid {currency} amount: it must be divisible by {step}",
                      "amount_invalid")
    return None


def _error(status: int, kind: str, message: str, code: str | None = None) -> web.Response:
    error = {"type": kind, "message": message} | ({} if code is None else {"code": code})
    return web.json_response({"error": error}, status=status)
