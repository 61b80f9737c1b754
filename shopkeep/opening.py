"""What a database must agree with before a shop opens on it: the money it counts in, and the
provider its payments went through.

Both are checked before any actor runs (``open_runtime``'s ``prepare``): a refund due, an open
payment's query at its deadline or a release in the outbox would otherwise be sent on at once,
to a provider that never took the payment (Stripe's refund sent to Alipay, refused and retried
for ever; a Stripe refund "refunded" by the sandbox, which trusts what it has no record of; a
payment still open at Stripe asked of Alipay, found open, and lost when paid) or in the wrong
money. A shop that changes provider starts on a new database: the one of the old provider keeps
its refunds and queries, which only that provider answers. A database of the sandbox whose
payments need it no more (none paid for an order that may still be canceled or returned, none
being refunded: its open ones died with the process that kept its books) opens on any. A
database an older shopkeep wrote is checked before its migrations commit too (``agree``):
refused, it stays as that shopkeep wrote it, which still serves it.
"""

from __future__ import annotations

import functools
import sqlite3

from shopkeep.actors import order_store
from shopkeep.store import Store
from shopkeep.store.settings import keep as keep_settings
from shopkeep.store.settings import stored as stored_setting

CURRENCY_SETTING = "currency"
"""``settings`` key: the currency the database keeps its amounts in, decided at its first
start (or by its orders, in a database from before it was kept)."""


class CurrencyMismatch(ValueError):
    """The database keeps its amounts in another currency than the shop was opened with: its
    balances, prices and orders would be read as amounts of the wrong money."""


class GatewayMismatch(ValueError):
    """The database holds payments of another provider than the shop was opened with that may
    still need theirs (order_store.still_owed_elsewhere): their refunds and queries would go to
    a provider that never took them."""


def _facts(currency: str, gateway: str, conn: sqlite3.Connection) -> tuple[str, dict[str, int]]:
    """The database's currency (kept at its first start) and, by provider other than
    ``gateway``, its payments that may still need it. Runs on the writer (its process, maybe:
    plain values)."""
    first = order_store.latest_currency(conn) or currency
    kept = keep_settings({CURRENCY_SETTING: first}, conn)[CURRENCY_SETTING]
    return kept, order_store.still_owed_elsewhere(conn, gateway)


async def check_database(store: Store, *, path: str, currency: str, gateway: str) -> None:
    """Refuse a database that counts in another currency than ``currency``, or holds payments
    of another provider than ``gateway`` that may still need it: CurrencyMismatch,
    GatewayMismatch."""
    kept, elsewhere = await store.writer.call(functools.partial(_facts, currency, gateway))
    _refuse_mismatch(kept, elsewhere, path=path, currency=currency, gateway=gateway)


def check_upgrade(conn: sqlite3.Connection, *, path: str, currency: str, gateway: str) -> None:
    """:func:`check_database`'s refusals of a database being migrated, on ``conn`` in the
    migrations' transaction (``StoreConfig.agree``), storing nothing: an upgrade started
    with another ``--currency`` or ``--gateway`` leaves the file as the older shopkeep wrote
    it, which that shopkeep still serves."""
    kept = (
        stored_setting(CURRENCY_SETTING, conn) or order_store.latest_currency(conn) or currency
    )
    elsewhere = order_store.still_owed_elsewhere(conn, gateway)
    _refuse_mismatch(kept, elsewhere, path=path, currency=currency, gateway=gateway)


def _refuse_mismatch(
    kept: str, elsewhere: dict[str, int], *, path: str, currency: str, gateway: str
) -> None:
    if kept != currency:
        raise CurrencyMismatch(
            f"{path} keeps its amounts in {kept}; it cannot be opened as a shop in {currency}"
        )
    if elsewhere:
        owed = ", ".join(f"{count:,} through {name}" for name, count in sorted(elsewhere.items()))
        raise GatewayMismatch(
            f"{path} holds payments of another provider ({owed}), whose notifications, "
            f"queries and refunds only that provider answers; it cannot be opened as a shop "
            f"paid through {gateway}: keep serving it with that provider, and start a shop of "
            f"{gateway} on a new database"
        )
