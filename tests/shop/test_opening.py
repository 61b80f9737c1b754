"""A database opens only as the shop it was: in its currency (test_embedding.py) and on the
provider its payments went through. Otherwise a database of Stripe payments served on the
sandbox would mark a refund Stripe never paid "refunded" (the sandbox refunds on trust what it
has no record of), and served on Alipay would send Stripe's refunds and deadline queries to
Alipay, refused and retried for ever, or found "open" and lost."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from shopkeep.actors.config import ShopConfig
from shopkeep.opening import CurrencyMismatch, GatewayMismatch
from shopkeep.payments.provider import PaymentProvider
from shopkeep.payments.settings import ProviderSettings, build_provider
from shopkeep.proof.provider_world import provider_world
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from shopkeep.store.migrations import MIGRATIONS
from tests.shop.conftest import as_written_before_the_last_migration, schema_of

NOWHERE = "http://127.0.0.1:9"
"""A Stripe no request reaches (the discard port): a shop refused before it runs asks none."""


def stripe_at(folder: Path, base: str = NOWHERE) -> PaymentProvider:
    """A Stripe provider, its key files in ``folder``."""
    (folder / "stripe.key").write_text("sk_test_opening\n")
    (folder / "stripe.whsec").write_text("whsec_opening\n")
    settings = ProviderSettings(
        gateway="stripe", currency="CNY", stripe_api_key_file=str(folder / "stripe.key"),
        stripe_webhook_secret_file=str(folder / "stripe.whsec"), stripe_api_base=base,
    )  # fmt: skip
    return build_provider(settings, lambda: None, timeout_s=1.0)  # type: ignore[arg-type,return-value]


def payment_statuses(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [str(row[0]) for row in conn.execute("SELECT status FROM payments ORDER BY id")]


def refund_statuses(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [str(row[0]) for row in conn.execute("SELECT status FROM refunds ORDER BY id")]


async def paid_order(shop: Shop, user_id: int, goods_id: int) -> int:
    """An order placed and paid through the sandbox: its id."""
    order = await shop.place_order(user_id, [(goods_id, 1)])
    payment = (await shop.start_payment(order.id)).payment
    assert shop.gateway is not None
    assert await shop.gateway.complete(payment.id, order.id, payment.amount, "succeeded")
    return order.id


async def test_a_database_of_sandbox_orders_that_may_be_refunded_refuses_stripe(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.db"
    async with Shop.open(path, gateway="sandbox") as shop:
        ann = await shop.create_user("ann", balance=0)
        tea = await shop.create_goods("tea", price=5_000, stock=5)
        shipped = await paid_order(shop, ann.user.id, tea.id)
        await paid_order(shop, ann.user.id, tea.id)  # paid: may be canceled, and refunded
        await shop.ship(shipped)  # may be delivered and returned, and refunded

    with pytest.raises(GatewayMismatch, match=r"\(2 through sandbox\).* paid through stripe"):
        async with Shop.open(path, gateway=stripe_at(tmp_path)):
            pass  # never reached

    async with Shop.open(path, gateway="sandbox") as shop:  # and opens again as it was
        assert len((await shop.list_orders(user_id=ann.user.id)).items) == 2


async def test_a_database_whose_sandbox_payments_need_it_no_more_opens_on_stripe(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.db"
    async with Shop.open(path, gateway="sandbox") as shop:  # a shop tried out on the sandbox
        ann = await shop.create_user("ann", balance=10_000)
        tea = await shop.create_goods("tea", price=5_000, stock=5)
        open_one = await shop.place_order(ann.user.id, [(tea.id, 1)])
        await shop.start_payment(open_one.id)  # open: the restarted sandbox cannot take it
        await shop.cancel_order(await paid_order(shop, ann.user.id, tea.id))  # refunded
        await shop.runtime.system.quiet()
        assert await shop.refunds_in_flight() == []

    async with Shop.open(path, gateway=stripe_at(tmp_path)) as shop:
        assert shop.provider.name == "stripe"
        assert (await shop.get_goods(tea.id)).stock == 4


async def test_a_database_without_payments_opens_on_any_provider(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    async with Shop.open(path, gateway="sandbox") as shop:  # a shop set up on the sandbox
        ann = await shop.create_user("ann", balance=10_000)
        tea = await shop.create_goods("tea", price=5_000, stock=5)
        await shop.place_order(ann.user.id, [(tea.id, 1)])  # not paid: no payment

    async with Shop.open(path, gateway=stripe_at(tmp_path)) as shop:
        assert shop.provider.name == "stripe"
        assert (await shop.get_goods(tea.id)).stock == 4


@pytest.mark.parametrize(
    ("opened_as", "refusal"),
    [
        ({"config": ShopConfig(currency="USD")}, CurrencyMismatch),
        ({"gateway": "stripe"}, GatewayMismatch),
    ],
)
async def test_an_upgrade_refused_leaves_the_database_as_the_older_shopkeep_wrote_it(
    tmp_path: Path, opened_as: dict[str, Any], refusal: type[Exception]
) -> None:
    path = tmp_path / "shop.db"
    async with Shop.open(path, gateway="sandbox") as shop:
        ann = await shop.create_user("ann", balance=0)
        tea = await shop.create_goods("tea", price=5_000, stock=5)
        await paid_order(shop, ann.user.id, tea.id)  # in CNY, and may be refunded
    as_written_before_the_last_migration(path)

    options = {"gateway": "sandbox", **opened_as}
    if options["gateway"] == "stripe":
        options["gateway"] = stripe_at(tmp_path)
    with pytest.raises(refusal):
        async with Shop.open(path, **options):
            pass  # never reached

    assert schema_of(path) == (MIGRATIONS[-1].version - 1, False)  # the older one still serves it
    async with Shop.open(path, gateway="sandbox") as shop:  # upgraded as it should have been
        assert (await shop.get_goods(tea.id)).stock == 4
    assert schema_of(path) == (MIGRATIONS[-1].version, True)


async def refused_on_the_sandbox(db: Path, said: str) -> None:
    """Opening ``db``, a shop of Stripe's fake (in dollars), on the sandbox is refused,
    saying ``said``."""
    with pytest.raises(GatewayMismatch, match=said):
        async with Shop.open(db, gateway="sandbox", config=ShopConfig(currency="USD")):
            pass  # never reached


async def test_a_stripe_refund_in_flight_is_not_settled_by_the_sandbox(tmp_path: Path) -> None:
    clock = VirtualClock(start=time.time())
    async with provider_world("stripe", tmp_path, clock=clock) as world:
        alice, order, _ = await world.paid_order()
        world.fake.fail_refunds(1_000)
        status, _ = await world.call("POST", f"/v1/orders/{order['id']}/cancel", alice)
        assert status == 200
        await world.shop.runtime.system.quiet()
    db = tmp_path / "shop.db"
    assert refund_statuses(db) == ["refunding"]

    await refused_on_the_sandbox(db, r"\(1 through stripe\)")

    assert refund_statuses(db) == ["refunding"]  # Stripe still owes it; nothing said otherwise


async def test_a_database_that_ever_took_a_real_providers_payment_keeps_it(
    tmp_path: Path,
) -> None:
    # a Stripe payment whose order timed out is closed there, but not written back; a failed
    # one may still be paid with another card: either, opened on Alipay, was asked of Alipay
    # at its deadline and lost when paid at Stripe
    clock = VirtualClock(start=time.time())
    async with provider_world("stripe", tmp_path, clock=clock) as world:
        _, _, payment = await world.payment_started()
        fake: Any = world.fake
        await fake.fail(world.key_of(payment))  # a card declined: notified as failed
        await world.shop.runtime.system.quiet()
    db = tmp_path / "shop.db"
    assert payment_statuses(db) == ["failed"]

    await refused_on_the_sandbox(db, r"\(1 through stripe\).*keep serving it")


async def test_the_sandbox_of_a_shop_of_a_real_provider_is_a_clear_type_error(
    tmp_path: Path,
) -> None:
    async with Shop.open(str(tmp_path / "shop.db"), gateway=stripe_at(tmp_path)) as shop:
        assert shop.gateway is None
        with pytest.raises(AttributeError, match="go through stripe, not the sandbox gateway"):
            shop.sandbox  # noqa: B018
        assert not hasattr(shop, "sandbox")
