"""The sandbox gateway: signed callbacks retried until acknowledged, refunds once per key."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from shopkeep.errors import CallbackRejected, ShopError
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.provider import CallbackBody, GatewayError, GatewayRefused
from shopkeep.payments.signature import verify
from shopkeep.runtime import ShuttingDown, VirtualClock


async def test_a_callback_is_signed_and_retried_with_back_off_until_acknowledged() -> None:
    clock = VirtualClock()
    gateway = SandboxGateway("s", clock, retry_s=1.0, retry_max_s=4.0)
    seen: list[tuple[float, CallbackBody]] = []

    async def shop(raw_body: bytes, header: str) -> bool:
        assert verify("s", header, raw_body, clock.now(), 300) == (True, "ok")
        seen.append((clock.now(), msgspec.json.decode(raw_body, type=CallbackBody)))
        if len(seen) == 2:
            raise RuntimeError("the shop fell over")
        return len(seen) >= 5

    gateway.attach(shop)
    start = clock.now()
    first_try = gateway.complete_soon(7, 8, 1_500, "succeeded", "txn-1")
    await clock.advance(20)

    assert first_try.result() is False  # what the sandbox route waits for: not acknowledged
    assert [t - start for t, _ in seen] == [0, 1, 3, 7, 11]  # 1, 2, 4, then capped at 4
    assert seen[0][1] == CallbackBody("7", "8", 1_500, "succeeded", "txn-1")
    assert gateway.collected == {(7, "txn-1"): 1_500}


async def test_a_completion_says_when_its_first_call_back_was_acknowledged() -> None:
    clock = VirtualClock()
    gateway = SandboxGateway("s", clock)
    answered: list[bool] = []

    async def shop(raw_body: bytes, header: str) -> bool:
        answered.append(True)
        return True

    gateway.attach(shop)
    assert await gateway.complete_soon(7, 8, 1_500, "succeeded") is True
    assert answered == [True]


async def test_a_completion_the_shop_refuses_is_not_acknowledged_and_is_logged() -> None:
    clock = VirtualClock()
    gateway = SandboxGateway("s", clock)

    async def shop(raw_body: bytes, header: str) -> bool:
        raise CallbackRejected("payment 7 is for another amount")

    gateway.attach(shop)
    with capture_logs() as logs:
        assert await gateway.complete_soon(7, 8, 1_500, "succeeded") is False
        await gateway.close()
    (refused,) = [line for line in logs if line["event"] == "sandbox_callback_refused"]
    assert refused["payment_id"] == "7" and "another amount" in refused["error"]
    assert gateway.collected == {}  # taken back: nothing happened, at the shop or here


async def test_a_refund_is_done_once_per_key_and_fails_while_switched_off() -> None:
    clock = VirtualClock()
    gateway = SandboxGateway("s", clock)

    async def shop(raw_body: bytes, header: str) -> bool:
        return True

    gateway.attach(shop)
    assert await gateway.complete(7, 8, 1_500, "succeeded")
    gateway.fail_refunds_until(clock.now() + 5)
    with pytest.raises(GatewayError):
        await gateway.refund(70, 7, 1_500)
    await clock.advance(5)
    await gateway.refund(70, 7, 1_500)
    await gateway.refund(70, 7, 1_500)
    assert gateway.total_refunded == 1_500
    with pytest.raises(GatewayRefused):  # a definite no, not an outage: said as a refusal
        await gateway.refund(71, 7, 1)  # nothing left to refund of payment 7
    gateway.refunds_failing = True
    with pytest.raises(GatewayError):
        await gateway.refund(72, 9, 1)


async def test_the_books_forget_the_oldest_payments_but_keep_exact_totals() -> None:
    clock = VirtualClock()
    gateway = SandboxGateway("s", clock, remember=2)

    async def shop(raw_body: bytes, header: str) -> bool:
        return True

    gateway.attach(shop)
    for payment in (1, 2, 3):
        assert await gateway.complete(payment, 10 + payment, 100, "succeeded", f"t{payment}")
    await gateway.refund(31, 3, 40)

    assert gateway.collected == {(2, "t2"): 100, (3, "t3"): 100}
    assert (gateway.total_collected, gateway.total_refunded) == (300, 40)
    assert gateway.refundable(3) == 60
    with pytest.raises(GatewayError):
        await gateway.refund(32, 3, 61)  # a remembered payment is still checked
    await gateway.refund(11, 1, 100)  # a forgotten one is refunded on trust, as after a restart
    assert gateway.total_refunded == 140
    with pytest.raises(KeyError):
        await gateway.resend(1)
    assert await gateway.resend(3)
    assert gateway.deliveries == 4


async def test_a_complete_of_no_outcome_is_refused_as_the_route_refuses_it() -> None:
    gateway = SandboxGateway("s", VirtualClock())
    with pytest.raises(ShopError) as refused:
        await gateway.complete(7, 8, 1_500, "bogus")
    assert refused.value.code == "validation_error" and "status" in str(refused.value)
    assert gateway.collected == {}


def test_the_books_refuse_a_bound_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SandboxGateway("s", VirtualClock(), remember=0)


async def test_a_settling_gateway_refuses_new_completes_and_waits_for_those_it_took() -> None:
    gateway = SandboxGateway("s", VirtualClock())
    shop_answers = asyncio.Event()

    async def shop(raw_body: bytes, header: str) -> bool:
        await shop_answers.wait()
        return True

    gateway.attach(shop)
    taken = gateway.complete_soon(7, 8, 1_500, "succeeded", "txn-1")
    settling = asyncio.create_task(gateway.settle(within_s=5))
    await asyncio.sleep(0)  # settle has begun

    with pytest.raises(ShuttingDown):
        gateway.complete_soon(9, 10, 700, "succeeded", "txn-2")
    assert not settling.done()
    shop_answers.set()
    await settling

    assert taken.result() is True
    assert gateway.collected == {(7, "txn-1"): 1_500}


async def abandoned_by_a_settle(
    *completes: tuple[int, int, str], known: bool = False
) -> list[MutableMapping[str, Any]]:
    """The ``sandbox_callbacks_abandoned`` lines of a settle that runs out, the callbacks of
    ``completes`` (payment, order, transaction: succeeded, 15.00 each) unreachable; with
    ``known``, the shop says it applied payment 7's transaction txn-1."""
    gateway = SandboxGateway("s", VirtualClock())

    async def unreachable(raw_body: bytes, header: str) -> bool:
        return False  # the callback URL answers nothing the gateway takes

    async def shop_knows(payment_id: int, status: str, txn_id: str | None) -> bool:
        return (payment_id, status, txn_id) == (7, "succeeded", "txn-1")

    gateway.attach(unreachable)
    for payment_id, order_id, txn_id in completes:
        gateway.complete_soon(payment_id, order_id, 1_500, "succeeded", txn_id)
    with capture_logs() as logs:
        await gateway.settle(within_s=0.01, known=shop_knows if known else None)
    await gateway.close()
    return [line for line in logs if line["event"] == "sandbox_callbacks_abandoned"]


async def test_a_settle_that_runs_out_names_the_payments_whose_callbacks_it_abandons() -> None:
    [abandoned] = await abandoned_by_a_settle((7, 8, "txn-1"))
    assert (abandoned["log_level"], abandoned["payments"]) == ("warning", ["7"])


async def test_a_settle_does_not_ask_to_complete_again_what_the_shop_has_the_outcome_of() -> None:
    # the shop's deadline query found payment 7 paid while its callback could not get through:
    # completed again after the restart, it would be collected twice and refunded as a duplicate
    [abandoned] = await abandoned_by_a_settle((7, 8, "txn-1"), (9, 10, "txn-2"), known=True)
    assert abandoned["payments"] == ["9"]


async def test_a_settle_names_a_payment_collected_again_though_the_shop_knows_its_first() -> None:
    # the shop's query applied the first collection; the second, under another transaction,
    # is what the unacknowledged callback says: it is named, to be refunded after the restart
    [abandoned] = await abandoned_by_a_settle((7, 8, "txn-1"), (7, 8, "txn-2"), known=True)
    assert abandoned["payments"] == ["7"]
