"""Every operation that moves money or stock takes an Idempotency-Key (SPEC 7), embedded.

Each scenario is one operation on a shop made ready for it: ``call`` does it under a key,
``other`` is another request under the same key of the same principal, ``observe`` reads what
the operation changes. A lost answer is a first call whose answer nobody reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from shopkeep.actors.key_rules import encode_answer
from shopkeep.actors.order_messages import KeepStartAnswer, OrderView, PaymentStarted
from shopkeep.errors import ShopError
from shopkeep.idempotency import IdempotencyKey, Key
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import Checkout, GatewayError, GatewayRefused, PaymentRequest
from shopkeep.payments.sandbox import SandboxProvider
from shopkeep.runtime import ShuttingDown, VirtualClock
from shopkeep.shop import Shop
from tests.shop.conftest import SECRET, assert_audit_ok, sandbox, settle


@dataclass(frozen=True)
class Scenario:
    """One operation, its other request under the same key, and what it changes."""

    call: Callable[[Key], Awaitable[Any]]
    other: Callable[[Key], Awaitable[Any]]
    observe: Callable[[], Awaitable[Any]]


async def paid_order(shop: Shop, stock: int = 5) -> tuple[int, int, int]:
    """(user id, goods id, order id) of an order of 2 units, paid."""
    tea = await shop.create_goods("tea", price=1_000, stock=stock)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 2)])
    payment = (await shop.start_payment(order.id, user_id=user)).payment
    assert await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")
    return user, tea.id, order.id


async def credit(shop: Shop) -> Scenario:
    user = (await shop.create_user("ann", balance=100)).user.id

    async def balance() -> int:
        return (await shop.get_user(user)).balance

    return Scenario(
        lambda key: shop.credit_wallet(user, 500, idempotency_key=key),
        lambda key: shop.credit_wallet(user, 700, idempotency_key=key),
        balance,
    )


async def restock(shop: Shop) -> Scenario:
    tea = await shop.create_goods("tea", price=1_000, stock=5)

    async def goods() -> Any:
        return await shop.get_goods(tea.id)

    return Scenario(
        lambda key: shop.update_goods(tea.id, restock=10, idempotency_key=key),
        lambda key: shop.update_goods(tea.id, restock=11, idempotency_key=key),
        goods,
    )


async def place(shop: Shop) -> Scenario:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id

    async def state() -> tuple[int, int]:
        orders = await shop.list_orders(user_id=user)
        return len(orders.items), (await shop.get_goods(tea.id)).stock

    return Scenario(
        lambda key: shop.place_order(user, [(tea.id, 1)], idempotency_key=key),
        lambda key: shop.place_order(user, [(tea.id, 2)], idempotency_key=key),
        state,
    )


async def start_payment(shop: Shop) -> Scenario:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 1)])

    async def payments() -> Any:
        return await shop.payments(order.id, user_id=user)

    return Scenario(
        lambda key: shop.start_payment(order.id, user_id=user, idempotency_key=key),
        lambda key: shop.cancel_order(order.id, user_id=user, idempotency_key=key),
        payments,
    )


async def cancel(shop: Shop) -> Scenario:
    user, tea, order = await paid_order(shop)

    async def state() -> tuple[Any, ...]:
        await settle(shop)
        refunds = await shop.refunds(order, user_id=user)
        return (await shop.get_order(order)), (await shop.get_goods(tea)).stock, refunds

    return Scenario(
        lambda key: shop.cancel_order(order, user_id=user, idempotency_key=key),
        lambda key: shop.start_payment(order, user_id=user, idempotency_key=key),
        state,
    )


async def ship(shop: Shop) -> Scenario:
    _, _, order = await paid_order(shop)
    return Scenario(
        lambda key: shop.ship(order, idempotency_key=key),
        lambda key: shop.deliver(order, idempotency_key=key),
        lambda: shop.order_history(order),
    )


async def deliver(shop: Shop) -> Scenario:
    _, _, order = await paid_order(shop)
    await shop.ship(order)
    return Scenario(
        lambda key: shop.deliver(order, idempotency_key=key),
        lambda key: shop.ship(order, idempotency_key=key),
        lambda: shop.order_history(order),
    )


async def request_return(shop: Shop) -> Scenario:
    user, _, order = await paid_order(shop)
    await shop.ship(order)
    await shop.deliver(order)
    return Scenario(
        lambda key: shop.request_return(order, "too strong", user_id=user, idempotency_key=key),
        lambda key: shop.request_return(order, "too weak", user_id=user, idempotency_key=key),
        lambda: shop.order_history(order),
    )


async def approve_return(shop: Shop) -> Scenario:
    user, tea, order = await paid_order(shop)
    await shop.ship(order)
    await shop.deliver(order)
    asked = await shop.request_return(order, user_id=user)

    async def state() -> tuple[Any, ...]:
        await settle(shop)
        refunds = await shop.refunds(order)
        return (await shop.order_history(order)), (await shop.get_goods(tea)).stock, refunds

    return Scenario(
        lambda key: shop.approve_return(asked.id, idempotency_key=key),
        lambda key: shop.ship(order, idempotency_key=key),
        state,
    )


SCENARIOS = [credit, restock, place, start_payment, cancel, ship, deliver, request_return,
             approve_return]
ROUTES = pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)


@ROUTES
async def test_a_retry_after_a_lost_answer_changes_nothing_and_answers_the_first_answer(
    shop: Shop, scenario: Callable[[Shop], Awaitable[Scenario]]
) -> None:
    does = await scenario(shop)
    first = IdempotencyKey("retry-1")
    answered = await does.call(first)  # the answer is lost on its way
    after_first = await does.observe()

    retry = IdempotencyKey("retry-1")
    again = await does.call(retry)

    assert again == answered
    assert (first.replayed, retry.replayed) == (False, True)
    assert await does.observe() == after_first
    await assert_audit_ok(shop)


@ROUTES
async def test_the_same_key_with_another_request_is_an_idempotency_conflict(
    shop: Shop, scenario: Callable[[Shop], Awaitable[Scenario]]
) -> None:
    does = await scenario(shop)
    await does.call("k-1")
    before = await does.observe()

    with pytest.raises(ShopError) as refused:
        await does.other("k-1")

    assert refused.value.code == "idempotency_conflict"
    assert await does.observe() == before


async def test_a_replay_answers_the_first_answer_as_it_was_then(shop: Shop) -> None:
    user = (await shop.create_user("ann", balance=100)).user.id
    first = await shop.credit_wallet(user, 500, idempotency_key="credit-1")
    await shop.credit_wallet(user, 50)

    again = await shop.credit_wallet(user, 500, idempotency_key="credit-1")

    assert again.balance == first.balance == 600
    assert (await shop.get_user(user)).balance == 650


async def test_a_payment_replayed_is_answered_created_as_the_first_time(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 1)])
    await shop.start_payment(order.id, user_id=user, idempotency_key="pay-1")

    again = await shop.start_payment(order.id, user_id=user, idempotency_key="pay-1")
    unkeyed = await shop.start_payment(order.id, user_id=user)

    assert again.created  # HTTP answers it 201 again
    assert not unkeyed.created and unkeyed.payment == again.payment


async def test_a_payment_replayed_after_it_was_paid_is_answered_as_it_was_started(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 1)])
    first = await shop.start_payment(order.id, user_id=user, idempotency_key="pay-1")
    paid = first.payment
    assert await sandbox(shop).complete(paid.id, order.id, paid.amount, "succeeded")

    again = await shop.start_payment(order.id, user_id=user, idempotency_key="pay-1")

    assert again.payment == first.payment and again.payment.status == "created"
    assert again.created
    assert (await shop.get_payment(paid.id)).status == "succeeded"


async def test_each_principal_has_keys_of_its_own(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    ann = (await shop.create_user("ann")).user.id
    bob = (await shop.create_user("bob")).user.id

    for_ann = await shop.place_order(ann, [(tea.id, 1)], idempotency_key="mine")
    for_bob = await shop.place_order(bob, [(tea.id, 2)], idempotency_key="mine")
    credited = await shop.credit_wallet(ann, 300, idempotency_key="mine")  # the admin's

    assert for_ann.id != for_bob.id
    assert credited.balance == 300
    assert (await shop.get_goods(tea.id)).stock == 2


async def test_a_refusal_binds_the_key_and_is_answered_again_after_the_obstacle_is_gone(
    shop: Shop,
) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 1)])
    with pytest.raises(ShopError) as refused:
        await shop.ship(order.id, idempotency_key="ship-1")  # not paid yet
    payment = (await shop.start_payment(order.id)).payment
    await sandbox(shop).complete(payment.id, order.id, payment.amount, "succeeded")

    with pytest.raises(ShopError) as again:
        await shop.ship(order.id, idempotency_key="ship-1")

    assert refused.value.code == again.value.code == "invalid_state"
    assert again.value.detail == refused.value.detail
    assert again.value.replayed and not refused.value.replayed
    assert (await shop.get_order(order.id)).status == "paid"
    assert (await shop.ship(order.id, idempotency_key="ship-2")).status == "shipped"


async def test_a_key_a_users_cancel_bound_refuses_their_placement_under_it(shop: Shop) -> None:
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    order = await shop.place_order(user, [(tea.id, 1)])
    await shop.get_goods(tea.id)  # every participant live: the placement could take one turn
    await shop.cancel_order(order.id, user_id=user, idempotency_key="k-1")
    await settle(shop)

    with pytest.raises(ShopError) as refused:
        await shop.place_order(user, [(tea.id, 1)], idempotency_key="k-1")

    assert refused.value.code == "idempotency_conflict"
    assert (await shop.get_goods(tea.id)).stock == 5


async def test_a_key_is_kept_with_its_effect_across_a_restart(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = str(tmp_path / "shop.db")
    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        tea = await shop.create_goods("tea", price=1_000, stock=5)
        await shop.update_goods(tea.id, restock=3, idempotency_key="restock-1")
    with closing(sqlite3.connect(path)) as conn:
        kept = conn.execute("SELECT principal, key FROM idempotency_keys").fetchall()

    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        retry = IdempotencyKey("restock-1")
        again = await shop.update_goods(tea.id, restock=3, idempotency_key=retry)
        assert retry.replayed and again.stock == 8
        assert (await shop.get_goods(tea.id)).stock == 8
    assert kept == [(0, "restock-1")]


@pytest.mark.parametrize("key", ["", " lead", "trail ", "k\udcff", "caf\u00e9", "x" * 256, "a\n"])
async def test_a_key_that_is_not_printable_ascii_is_refused_and_changes_nothing(
    shop: Shop, key: str
) -> None:
    user = (await shop.create_user("ann", balance=100)).user.id
    with pytest.raises(ShopError) as refused:
        await shop.credit_wallet(user, 500, idempotency_key=key)
    assert refused.value.code == "validation_error"
    assert (await shop.get_user(user)).balance == 100


async def test_a_key_of_255_printable_characters_is_taken(shop: Shop) -> None:
    user = (await shop.create_user("ann")).user.id
    key = "~ !" * 85
    await shop.credit_wallet(user, 500, idempotency_key=key)
    assert (await shop.credit_wallet(user, 500, idempotency_key=key)).balance == 500


async def an_order(shop: Shop) -> OrderView:
    """Ann's order of one tea (10.00), awaiting payment."""
    tea = await shop.create_goods("tea", price=1_000, stock=5)
    user = (await shop.create_user("ann")).user.id
    return await shop.place_order(user, [(tea.id, 1)])


class ProviderFailsOnce(SandboxProvider):
    """The sandbox, whose first payment start fails with ``error`` (by default, it does not
    answer)."""

    def __init__(self, clock: VirtualClock, error: GatewayError | None = None) -> None:
        super().__init__(SandboxGateway(SECRET, clock), SECRET)
        self.error: GatewayError | None = error or GatewayError("the provider did not answer")

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return await super().start_payment(request)


@pytest.mark.parametrize("key", ["pay-1", None])
async def test_a_payment_start_answered_503_is_created_by_its_retry_not_replayed(
    tmp_path: Path, clock: VirtualClock, key: str | None
) -> None:
    provider = ProviderFailsOnce(clock)
    async with Shop.open(str(tmp_path / "shop.db"), gateway=provider, clock=clock) as shop:
        order = await an_order(shop)
        with pytest.raises(ShopError) as down:
            await shop.start_payment(order.id, idempotency_key=key)

        retry, again = (IdempotencyKey(key), IdempotencyKey(key)) if key else (None, None)
        first = await shop.start_payment(order.id, idempotency_key=retry)
        second = await shop.start_payment(order.id, idempotency_key=again)

    assert down.value.code == "unavailable"
    # the 503 gave the caller nothing: the retry's answer is the payment's creation (201)
    assert first.created and first.payment.gateway_url is not None
    if retry is not None and again is not None:  # under the key: the first answer, again
        assert not retry.replayed and again.replayed and second == first
    else:  # the same open payment, asked again
        assert (second.created, second.payment) == (False, first.payment)


class ProviderHeld(SandboxProvider):
    """The sandbox, whose payment starts answer once ``release`` is set."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(SandboxGateway(SECRET, clock), SECRET)
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def start_payment(self, request: PaymentRequest) -> Checkout:
        self.asked.set()
        await self.release.wait()
        return await super().start_payment(request)


async def test_a_keyed_payment_start_whose_caller_stopped_waiting_is_replayed_as_created(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # the start went on without its caller, the payment's checkout kept but not the key's
    # answer: the retry found the payment open and answered "not created", not replayed, and
    # no answer ever said the payment was created
    provider = ProviderHeld(clock)
    async with Shop.open(str(tmp_path / "shop.db"), gateway=provider, clock=clock) as shop:
        order = await an_order(shop)
        cut = asyncio.create_task(shop.start_payment(order.id, idempotency_key="pay-1"))
        await provider.asked.wait()
        cut.cancel()
        provider.release.set()
        retry = IdempotencyKey("pay-1")
        again = await shop.start_payment(order.id, idempotency_key=retry)

    assert cut.cancelled()
    assert again.created and retry.replayed
    assert again.payment.gateway_url is not None


async def test_a_payment_start_replays_what_its_key_was_given_after_another_keys_503(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # the key kept the order's answer, made before the checkout: after a start answered 503,
    # a second key's 201 replayed as 200, and the first key, answered only the 503, replayed
    # the second's 201 marked replayed
    provider = ProviderFailsOnce(clock)
    async with Shop.open(str(tmp_path / "shop.db"), gateway=provider, clock=clock) as shop:
        order = await an_order(shop)
        with pytest.raises(ShopError):
            await shop.start_payment(order.id, idempotency_key="a")
        keys = [IdempotencyKey(k) for k in ("b", "b", "a")]
        b_first, b_again, a_again = [
            await shop.start_payment(order.id, idempotency_key=key) for key in keys
        ]

    assert b_first.created and not keys[0].replayed
    assert b_again == b_first and keys[1].replayed  # 201 again, with its checkout
    # the 503 was all "a" was given: its retry is a first answer, the payment open already
    assert (a_again.created, a_again.payment, keys[2].replayed) == (False, b_first.payment, False)


async def test_a_key_answered_503_retried_after_its_order_ended_is_refused_asking_no_one(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # the retry went to the provider with what its 503'd attempt had kept, which opened a
    # trade for a canceled order before the order refused it
    provider = ProviderFailsOnce(clock)
    asked: list[int] = []
    start = provider.start_payment

    async def counted(request: PaymentRequest) -> Checkout:
        asked.append(request.payment_id)
        return await start(request)

    provider.start_payment = counted  # type: ignore[method-assign]
    async with Shop.open(str(tmp_path / "shop.db"), gateway=provider, clock=clock) as shop:
        order = await an_order(shop)
        with pytest.raises(ShopError):
            await shop.start_payment(order.id, idempotency_key="k")
        await shop.cancel_order(order.id)
        with pytest.raises(ShopError) as refused:
            await shop.start_payment(order.id, idempotency_key="k")

    assert refused.value.code == "invalid_state" and "cannot start a payment" in (
        refused.value.detail
    )
    assert len(asked) == 1  # the first, failed attempt only


async def test_a_key_answered_503_binds_nothing_and_serves_another_request_after(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # the order had bound the key before the provider failed: the same key for another
    # order's start was refused idempotency_conflict, though its caller had been given nothing
    provider = ProviderFailsOnce(clock)
    async with Shop.open(str(tmp_path / "shop.db"), gateway=provider, clock=clock) as shop:
        first, other = await an_order(shop), await an_order(shop)
        with pytest.raises(ShopError) as down:
            await shop.start_payment(first.id, idempotency_key="k")
        key = IdempotencyKey("k")
        started = await shop.start_payment(other.id, idempotency_key=key)

    assert down.value.code == "unavailable"
    assert (started.payment.order_id, started.created, key.replayed) == (other.id, True, False)


@pytest.mark.parametrize(
    ("error", "code", "detail"),
    [
        (GatewayRefused("stripe: 400 Amount must be at least $0.50 usd"), "provider_refused",
         "the payment provider refused to start this payment"),
        (GatewayError("wechatpay: POST http://10.0.0.7/v3/pay answered 500: SYSTEM_ERROR"),
         "unavailable", "the payment provider did not answer; try again"),
    ],
    ids=["refused", "down"],
)
async def test_a_payment_start_the_provider_failed_says_which_and_keeps_its_words_in_the_log(
    tmp_path: Path, clock: VirtualClock, error: GatewayError, code: str, detail: str
) -> None:
    provider = ProviderFailsOnce(clock, error)
    async with Shop.open(str(tmp_path / "shop.db"), gateway=provider, clock=clock) as shop:
        order = await an_order(shop)
        with capture_logs() as logged, pytest.raises(ShopError) as failed:
            await shop.start_payment(order.id, user_id=order.user_id)
        retried = await shop.start_payment(order.id, user_id=order.user_id)

    assert (failed.value.code, failed.value.detail) == (code, detail)
    [warning] = [line for line in logged if line["event"] == "payment_start_failed"]
    assert warning["error"] == str(error) and warning["log_level"] == "warning"
    assert retried.created and retried.payment.gateway_url is not None


async def test_a_payment_key_kept_before_its_provider_answered_replays_the_first_answer(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # a shopkeep of before KeepStartAnswer kept the payment as its actor answered, with no
    # checkout (a first attempt cut before its answer was kept leaves the same): after an
    # upgrade, the retry of a start answered 201 was answered 200 unreplayed, and once the
    # order was paid, 409 invalid_state
    path = str(tmp_path / "shop.db")
    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        order = await an_order(shop)
        first = await shop.start_payment(order.id, idempotency_key="pay-1")
        paid = first.payment
        assert await sandbox(shop).complete(paid.id, order.id, paid.amount, "succeeded")
    bare = msgspec.structs.replace(paid, gateway_url=None)
    kept_before = encode_answer(PaymentStarted(bare, True, first.deadline))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE idempotency_keys SET answer = ? WHERE key = 'pay-1'", (kept_before,))

    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        retry = IdempotencyKey("pay-1")
        again = await shop.start_payment(order.id, idempotency_key=retry)

    assert retry.replayed and again.created
    assert again.payment == first.payment


async def test_a_keyed_payment_start_whose_answer_the_stopping_shop_cannot_keep_is_answered(
    tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the payment and its checkout were committed, then the keeping of the answer met the
    # stop: the caller got ShuttingDown ("nothing was done") and the retry a "replay"
    path = str(tmp_path / "shop.db")
    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        order = await an_order(shop)
        ask = shop.system.ask

        async def stopping(to: Any, message: Any, **options: Any) -> Any:
            if isinstance(message, KeepStartAnswer):
                raise ShuttingDown("the actor system is not taking messages")
            return await ask(to, message, **options)

        monkeypatch.setattr(shop.system, "ask", stopping)
        first = await shop.start_payment(order.id, idempotency_key="pay-1")
        monkeypatch.undo()

    async with Shop.open(path, gateway="sandbox", clock=clock, gateway_secret=SECRET) as shop:
        retry = IdempotencyKey("pay-1")
        again = await shop.start_payment(order.id, idempotency_key=retry)

    assert first.created and first.payment.gateway_url is not None
    assert retry.replayed and again == first


async def test_a_coupon_for_a_user_that_does_not_exist_binds_nothing_and_may_be_sent_corrected(
    shop: Shop,
) -> None:
    ann = (await shop.create_user("ann")).user.id
    with pytest.raises(ShopError) as mistyped:
        await shop.create_coupon(10**15, 500, idempotency_key="cp-1")

    corrected = await shop.create_coupon(ann, 500, idempotency_key="cp-1")

    assert mistyped.value.code == "not_found"
    assert (await shop.list_coupons(ann)).items == [corrected]
