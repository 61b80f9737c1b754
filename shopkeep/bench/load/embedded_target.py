"""The embedded target: a :class:`~shopkeep.shop.Shop` in this process, no HTTP.

Each operation is the Shop method the HTTP route would call, so the mix and its expected
refusals are the same in both modes. Completing a payment goes through the shop's own
in-process :class:`~shopkeep.payments.gateway.SandboxGateway` the way the sandbox route does it
(:meth:`~shopkeep.payments.gateway.SandboxGateway.complete_soon`: answered at once, the signed
callback follows), so a journey waits for the order to be paid in both modes alike.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec

from shopkeep.actors.order_messages import OrderView
from shopkeep.bench.common import rss_bytes
from shopkeep.bench.load.target import Customer, Order, Payment, Refused, failure_in
from shopkeep.errors import CallbackRejected, ShopError
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.signature import sign
from shopkeep.runtime import AskTimeout, Overloaded
from shopkeep.shop import Shop

T = TypeVar("T")


def order_of(view: OrderView) -> Order:
    """The harness's view of an order."""
    return Order(
        str(view.id),
        view.status,
        view.pay_amount,
        None if view.coupon_id is None else str(view.coupon_id),
        view.cancel_reason,
        view.confirmed_at,
        view.expires_at,
    )


async def refusing(call: Awaitable[T]) -> T:
    """The answer of ``call``, its refusal raised as :class:`Refused` with the same code the
    HTTP API would answer."""
    try:
        return await call
    except ShopError as error:
        raise Refused(error.code, error.detail) from None
    except CallbackRejected as error:
        raise Refused("invalid_callback", str(error)) from None
    except Overloaded as error:
        raise Refused("overloaded", str(error)) from None
    except AskTimeout as error:
        raise Refused("timeout", str(error)) from None


class EmbeddedTarget:
    """``shop``, opened by the caller with ``gateway_secret`` (to sign callbacks with)."""

    def __init__(self, shop: Shop, gateway_secret: str) -> None:
        if not isinstance(shop.gateway, SandboxGateway):
            raise TypeError("the embedded bench needs the shop's in-process sandbox gateway")
        self._shop = shop
        self._gateway = shop.gateway
        self._secret = gateway_secret

    async def ready(self) -> None:
        """Always: the embedded shop is opened with the sandbox gateway."""

    async def create_user(self, name: str, balance: int) -> Customer:
        """:meth:`Shop.create_user`."""
        made = await refusing(self._shop.create_user(name, balance))
        return Customer(str(made.user.id), made.token)

    async def create_goods(self, name: str, price: int, stock: int) -> str:
        """:meth:`Shop.create_goods`."""
        return str((await refusing(self._shop.create_goods(name, price, stock))).id)

    async def create_coupon(self, user_id: str, value: int) -> str:
        """:meth:`Shop.create_coupon`."""
        return str((await refusing(self._shop.create_coupon(int(user_id), value))).id)

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
        """:meth:`Shop.place_order`."""
        view = await refusing(
            self._shop.place_order(
                int(customer.id),
                [(int(goods), quantity) for goods, quantity in items],
                coupon_id=None if coupon_id is None else int(coupon_id),
                use_balance=use_balance,
                idempotency_key=key,
                wait=wait,
            )
        )
        return order_of(view)

    async def get_order(self, customer: Customer, order_id: str) -> Order:
        """:meth:`Shop.get_order`, as the user."""
        return order_of(
            await refusing(self._shop.get_order(int(order_id), user_id=int(customer.id)))
        )

    async def placement_failure(self, customer: Customer, order_id: str) -> str:
        """:meth:`Shop.order_history`, as the user: the code its failed placement was
        refused with."""
        history = await refusing(
            self._shop.order_history(int(order_id), user_id=int(customer.id))
        )
        return failure_in((entry.operation, entry.remark or "") for entry in history.items)

    async def start_payment(self, customer: Customer, order_id: str) -> Payment:
        """:meth:`Shop.start_payment`, as the user."""
        started = await refusing(self._shop.start_payment(int(order_id), user_id=int(customer.id)))
        payment = started.payment
        return Payment(str(payment.id), str(payment.order_id), payment.amount)

    async def complete_payment(self, payment_id: str, result: str) -> None:
        """What ``POST /sandbox/payments/{id}/complete`` does, without HTTP."""
        payment = await refusing(self._shop.get_payment(int(payment_id)))
        try:
            self._gateway.check_payable(payment.id, payment.status)
        except ShopError as error:  # paid already, as the route answers 409
            raise Refused(error.code, error.detail) from None
        self._gateway.complete_soon(payment.id, payment.order_id, payment.amount, result)

    async def send_callback(self, raw_body: bytes, signature: str) -> None:
        """:meth:`Shop.handle_callback`."""
        await refusing(self._shop.handle_callback(raw_body, signature))

    def sign(self, raw_body: bytes, timestamp: int) -> str:
        """Sign with the secret the shop was opened with."""
        return sign(self._secret, timestamp, raw_body)

    @property
    def signs(self) -> bool:
        """Always: the shop was opened with the secret."""
        return True

    async def cancel_order(self, customer: Customer, order_id: str) -> Order:
        """:meth:`Shop.cancel_order`, as the user."""
        return order_of(
            await refusing(self._shop.cancel_order(int(order_id), user_id=int(customer.id)))
        )

    async def ship(self, order_id: str) -> Order:
        """:meth:`Shop.ship`."""
        return order_of(await refusing(self._shop.ship(int(order_id))))

    async def deliver(self, order_id: str) -> Order:
        """:meth:`Shop.deliver`."""
        return order_of(await refusing(self._shop.deliver(int(order_id))))

    async def request_return(self, customer: Customer, order_id: str) -> str:
        """:meth:`Shop.request_return`, as the user."""
        made = await refusing(
            self._shop.request_return(int(order_id), "load test", user_id=int(customer.id))
        )
        return str(made.id)

    async def approve_return(self, return_id: str) -> None:
        """:meth:`Shop.approve_return`."""
        await refusing(self._shop.approve_return(int(return_id)))

    async def refund_kinds(self, customer: Customer, order_id: str) -> list[str]:
        """:meth:`Shop.refunds`, as the user."""
        refunds = await refusing(self._shop.refunds(int(order_id), user_id=int(customer.id)))
        return [refund.kind for refund in refunds.items]

    async def audit(self) -> dict[str, Any]:
        """:meth:`Shop.audit`."""
        return msgspec.to_builtins(await self._shop.audit())  # type: ignore[no-any-return]

    async def resident_memory(self) -> float | None:
        """This process's resident memory: the shop lives in it (beside the harness)."""
        return float(rss_bytes())

    async def close(self) -> None:
        """Nothing to release: the shop is closed by whoever opened it."""
