"""``shopkeep demo``: a fresh database filled with a small shop to try things on.

Three users with their API tokens, a few goods and a coupon each, created through the embedded
API (so every ledger starts as the audit expects), then printed: ids, tokens, prices. Tokens are
shown only here: the database keeps their hashes. When no admin token is configured, the admin
token is settled the way ``serve`` settles it at first start (generated, its hash kept) and
printed too, so that ``demo`` then ``serve`` gives a person everything to start with.

A database that already holds shop data is refused: the demo would mix with real data, and
printing new tokens beside old ones would mislead.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Final

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.protocol import CouponView, GoodsView
from shopkeep.credentials import put_in_force, settle_credentials
from shopkeep.payments.money import to_decimal_string
from shopkeep.payments.names import DEFAULT_CURRENCY
from shopkeep.shop import Shop
from shopkeep.shop_accounts import CreatedUser
from shopkeep.store.errors import UNREADABLE
from shopkeep.store.private_files import create_private, remove_database

USERS: Final = (("alice", 5_000), ("bob", 0), ("carol", 20_000))
"""Name and opening wallet balance (minor units)."""
GOODS: Final = (
    ("green tea", 1_200, 40),
    ("teapot", 3_500, 10),
    ("mug", 850, 100),
    ("limited tea set", 15_000, 1),
)
"""Name, price (minor units) and opening stock."""
COUPONS: Final = (
    ("alice", 500, 3_000, None),
    ("bob", 1_000, 0, None),
    ("carol", 2_000, 10_000, 30 * 86_400.0),
)
"""Owner, value, minimum order amount, and validity from now in seconds (None: no expiry)."""
SHOP_DATA_SQL: Final = (
    "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM goods) "
    "OR EXISTS (SELECT 1 FROM coupons) OR EXISTS (SELECT 1 FROM orders)"
)


class DemoRefused(Exception):
    """The database already holds shop data; ``str()`` is one line. The operator's choice of
    file, not a bug."""


@dataclass
class DemoShop:
    """What the demo created."""

    admin_token: str | None
    users: list[CreatedUser] = field(default_factory=list)
    goods: list[GoodsView] = field(default_factory=list)
    coupons: list[tuple[str, CouponView]] = field(default_factory=list)


async def fill(
    db: str, *, admin_token: str | None = None, currency: str = DEFAULT_CURRENCY
) -> str:
    """Fill the fresh database at ``db``, a shop in ``currency``, and return what to print."""
    if _holds_shop_data(db):
        raise DemoRefused(f"{db} already holds shop data; demo fills only a fresh database")
    given_empty = os.path.isfile(db) and os.path.getsize(db) == 0  # touch, a deploy tool
    fresh = given_empty or not os.path.exists(db)
    opened = False
    try:
        config = ShopConfig(currency=currency)
        async with Shop.open(db, gateway="sandbox", config=config) as shop:
            opened = True  # (an opening refused or failed leaves nothing it made itself)
            credentials = await settle_credentials(
                shop.runtime.store.writer, admin_token=admin_token, gateway_secret=None
            )
            await put_in_force(shop.runtime.store.writer, credentials)
            made = await populate(shop, credentials.new_admin_token)
    except BaseException:
        if fresh and opened:  # half filled (a full disk), its tokens never shown: it would
            real_path = os.path.realpath(db)  # only refuse the next demo
            remove_database(real_path)
            if given_empty:
                create_private(real_path)  # as it was given, its owner's alone
        raise
    return render(db, made, configured=admin_token is not None, currency=currency)


def _holds_shop_data(db: str) -> bool:
    """Whether ``db`` holds shop data, read before a shop opens it (an opening writes its
    timers), so that a refused demo changes nothing; the connection's close takes away the
    ``-wal`` and ``-shm`` files its reading made."""
    if not os.path.isfile(db):
        return False
    try:
        with closing(sqlite3.connect(db)) as conn:
            found = conn.execute(SHOP_DATA_SQL).fetchone()
    except UNREADABLE:
        return False  # no shop schema yet, or no database at all: the opening says which
    return bool(found[0])


async def populate(shop: Shop, admin_token: str | None) -> DemoShop:
    """Create the demo's users, goods and coupons in ``shop``."""
    made = DemoShop(admin_token)
    for name, balance in USERS:
        made.users.append(await shop.create_user(name, balance=balance))
    for name, price, stock in GOODS:
        made.goods.append(await shop.create_goods(name, price=price, stock=stock))
    owners = {created.user.name: created.user.id for created in made.users}
    now = time.time()
    for owner, value, minimum, valid_s in COUPONS:
        expires_at = None if valid_s is None else now + valid_s
        coupon = await shop.create_coupon(
            owners[owner], value, min_order_amount=minimum, expires_at=expires_at
        )
        made.coupons.append((owner, coupon))
    return made


def render(db: str, made: DemoShop, *, configured: bool, currency: str = DEFAULT_CURRENCY) -> str:
    """The text printed for a person: every id and token, amounts in currency units."""

    def money(minor: int) -> str:  # 1250 fen as 12.50, 1250 yen as 1250
        return to_decimal_string(minor, currency)

    lines = [f"demo shop in {db} ({currency})", ""]
    if made.admin_token is not None:
        lines.append(f"admin token: {made.admin_token}")
        lines.append("  (shown this once: only its hash is kept; serve accepts it)")
    elif configured:
        lines.append("admin token: the one you configured (--admin-token, its file or variable)")
    else:
        lines.append("admin token: generated earlier, at the first start (only its hash is kept)")
    lines += ["", "users (send: Authorization: Bearer <token>)"]
    for created in made.users:
        user = created.user
        lines.append(
            f"  {user.name:<6} id {user.id}  balance {money(user.balance):>7}  "
            f"token {created.token}"
        )
    lines += ["", "goods"]
    for goods in made.goods:
        lines.append(
            f"  {goods.name:<16} id {goods.id}  price {money(goods.price):>7}  stock {goods.stock}"
        )
    lines += ["", "coupons"]
    for owner, coupon in made.coupons:
        minimum = (
            f"  minimum order {money(coupon.min_order_amount)}" if coupon.min_order_amount else ""
        )
        expiry = "" if coupon.expires_at is None else "  expires in 30 days"
        lines.append(
            f"  {owner:<6} id {coupon.id}  value {money(coupon.value):>6}{minimum}{expiry}"
        )
    return "\n".join(lines)
