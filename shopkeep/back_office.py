"""What a shop's back office reads and does beyond SPEC 7's API: the admin console's needs.

:class:`BackOffice` is a part of :class:`shopkeep.shop.Shop` (its base class), kept apart so
the storefront's operations and the operator's read as two lists. Each method reads through
the one module that owns its table (``actors/user.py`` the users and their ledgers,
``actors/goods.py`` the stock ledger, ``actors/order_store.py`` orders, refunds and returns,
``runtime/dead_letters.py`` the dead letters); none writes shop state except
:meth:`BackOffice.retry_dead_letter` and :meth:`BackOffice.discard_dead_letter`, which act on
the runtime's own table.
"""

from __future__ import annotations

from typing import Final

from shopkeep.actors.config import ShopConfig
from shopkeep.actors.goods import StockEntry, stock_ledger
from shopkeep.actors.order import order_view
from shopkeep.actors.order_messages import OrderView
from shopkeep.actors.order_state import STATUSES
from shopkeep.actors.order_store import (
    MinuteFigures,
    ReturnRow,
    due_soonest,
    load_page,
    minute_figures,
    returns_of,
    returns_waiting,
    returns_waiting_count,
)
from shopkeep.actors.protocol import UserView
from shopkeep.actors.refund_store import (
    RefundInFlight,
    refunds_in_flight,
    refunds_in_flight_count,
)
from shopkeep.actors.user import BalanceEntry, balance_ledger, list_users
from shopkeep.errors import ShopError
from shopkeep.idempotency import InFlight
from shopkeep.paging import MAX_LIMIT, Page, page_bounds, paged
from shopkeep.refusals import INVALID_STATE, NOT_FOUND
from shopkeep.requests import check_count, check_id, check_time, refused_parameter
from shopkeep.runtime import ActorSystem
from shopkeep.runtime import dead_letters as letters
from shopkeep.runtime.dead_letters import DeadLetter
from shopkeep.runtime.ids import EPOCH_MS, SEQUENCE_BITS
from shopkeep.store.reader import Reader

MINUTES_A_DAY = 1_440
"""The most minutes :meth:`BackOffice.minute_figures` counts (a row of figures each)."""
SHORT_LIST = 50
"""How many in-flight refunds or waiting returns one look shows at most."""


def first_id_after(at: float) -> int:
    """The smallest id the generator hands out after the time ``at`` (Unix seconds): ids are
    time-ordered (``runtime/ids.py``), so every id made at or before ``at`` is below it."""
    return max(0, (int(at * 1000) + 1 - EPOCH_MS) << SEQUENCE_BITS)


def shown_time(at: float) -> float:
    """An order's time of creation as its answer shows it, to the microsecond: the filters
    compare that (the time an answer gives, typed back as ``since``, is a float above the one
    kept: …0.641982 for …0.6419816)."""
    return round(at, 6)


def check_status(status: str | None) -> None:
    """Refuse a status filter that is no order's status (validation_error, ``status``)."""
    if status is not None and status not in STATUSES:
        raise refused_parameter("status", f"status must be one of {', '.join(STATUSES)}")


DEAD_LETTER: Final = "dead_letter"
"""The kind of what :attr:`BackOffice._letters_in_hand` holds, by id."""


class BackOffice:
    """The operator's reads and the dead letters' handling, on a shop's reader and system."""

    reader: Reader
    system: ActorSystem
    config: ShopConfig
    _letters_in_hand: InFlight
    """The dead letters being sent again or discarded: one request at a time each, so that
    a second finds the letter gone (two sends would deliver its message twice, under two
    outbox ids, and a discard beside a send would not stop it)."""

    async def list_users(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[UserView]:
        """Users, newest first."""
        size, below = page_bounds(limit, cursor)
        users = await list_users(self.reader, below, size + 1)
        return paged(users, [user.id for user in users], size)

    async def stock_ledger(
        self, goods_id: int, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[StockEntry]:
        """The goods' stock movements caused by orders, newest first."""
        check_id("goods_id", goods_id)
        size, below = page_bounds(limit, cursor)
        rows = await stock_ledger(self.reader, goods_id, below, size + 1)
        return paged(rows, [row.id for row in rows], size)

    async def wallet_ledger(
        self, user_id: int, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[BalanceEntry]:
        """The user's wallet movements (minor units), newest first: they add up to the
        balance (SPEC 6)."""
        return await self._balance_ledger("wallet_ledger", user_id, limit, cursor)

    async def points_ledger(
        self, user_id: int, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[BalanceEntry]:
        """The user's points movements, newest first: they add up to the points balance."""
        return await self._balance_ledger("points_ledger", user_id, limit, cursor)

    async def _balance_ledger(
        self, ledger: str, user_id: int, limit: int | None, cursor: str | None
    ) -> Page[BalanceEntry]:
        check_id("user_id", user_id)
        size, below = page_bounds(limit, cursor)
        rows = await balance_ledger(self.reader, ledger, user_id, below, size + 1)
        return paged(rows, [row.id for row in rows], size)

    async def find_orders(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[OrderView]:
        """Orders newest first, as ``Shop.list_orders``, also between two times of creation
        (``since`` included, ``until`` included; Unix seconds). The ids say when each order
        was made, so ``until`` is where the list starts and ``since`` where it stops."""
        if user_id is not None:
            check_id("user_id", user_id)
        for name, time in (("since", since), ("until", until)):
            if time is not None:
                check_time(name, time, in_body=False)
        check_status(status)
        size, below = page_bounds(limit, cursor)
        high = float("inf") if until is None else until
        if until is not None:
            below = min(below, first_id_after(until))
        views: list[OrderView] = []
        # an id is taken in the millisecond before its order's time is: the newest orders
        # fetched may be of ``until``'s own millisecond and created after it, so they are left
        # out and as many fetched again, and ``paged`` still sees one more than a page when
        # more follow (a page short of its limit with no cursor would end the list early)
        while len(views) <= size:
            wanted = size + 1 - len(views)
            states = await load_page(self.reader, below, wanted, user_id=user_id, status=status)
            views += [v for v in map(order_view, states) if shown_time(v.created_at) <= high]
            if len(states) < wanted:
                break
            below = states[-1].id
        if since is not None:
            # newest first: once one is older than ``since``, every later one is too
            kept = [view for view in views if shown_time(view.created_at) >= since]
            if len(kept) < len(views):
                return Page(kept[:size], None)
        return paged(views, [view.id for view in views], size)

    async def minute_figures(self, minutes: int = 60) -> MinuteFigures:
        """Orders placed and money paid per minute, the last ``minutes`` minutes (the current
        one last), up to a day's. The money is that of the orders placed at most the order
        timeout and a minute before the first minute, read through the ids (no index on the
        times): an order placed under a longer timeout than today's, or found paid at a start
        after a longer stop, is left out of the figure (docs/admin.md)."""
        check_count("minutes", minutes, MINUTES_A_DAY)
        now = self.system.clock.now()
        since = (now // 60 - (minutes - 1)) * 60
        # an order paid since then was placed at most its payment deadline before
        oldest_payable = since - self.config.order_timeout_s - 60
        return await minute_figures(
            self.reader, since, minutes,
            placed_from=first_id_after(since - 1), paid_from=first_id_after(oldest_payable),
        )  # fmt: skip

    async def due_soonest(self, count: int) -> list[OrderView]:
        """Up to ``count`` orders awaiting payment (at most a page's), the nearest deadline
        first."""
        check_count("count", count, MAX_LIMIT)
        return [order_view(state) for state in await due_soonest(self.reader, count)]

    async def refunds_in_flight(self, order_id: int | None = None) -> list[RefundInFlight]:
        """Refunds recorded and not yet paid back (``refunding``), oldest first: the
        oldest :data:`SHORT_LIST`, or every one of order ``order_id``."""
        if order_id is not None:
            check_id("order_id", order_id)
        return await refunds_in_flight(self.reader, SHORT_LIST, order_id=order_id)

    async def returns_waiting(self) -> list[ReturnRow]:
        """Return requests waiting for the admin's approval, oldest first."""
        return await returns_waiting(self.reader, SHORT_LIST)

    async def refunds_in_flight_count(self) -> int:
        """How many refunds are in flight in all (the list above shows the oldest
        :data:`SHORT_LIST`)."""
        return await refunds_in_flight_count(self.reader)

    async def returns_waiting_count(self) -> int:
        """How many returns wait for approval in all (the list above shows the oldest
        :data:`SHORT_LIST`)."""
        return await returns_waiting_count(self.reader)

    async def order_returns(self, order_id: int) -> list[ReturnRow]:
        """The order's return requests (their ids are what ``approve_return`` takes)."""
        return await returns_of(self.reader, check_id("order_id", order_id))

    async def dead_letters(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[DeadLetter]:
        """Messages that failed every try, newest first (their tracebacks in
        :meth:`dead_letter`)."""
        size, below = page_bounds(limit, cursor)
        found = await letters.list_dead_letters(self.system, below, size + 1)
        return paged(found, [letter.id for letter in found], size)

    async def dead_letter(self, letter_id: int) -> DeadLetter:
        """One dead letter with its traceback, or ShopError not_found."""
        letter = await letters.get_dead_letter(self.system, check_id("letter_id", letter_id))
        if letter is None:
            raise ShopError(NOT_FOUND, f"dead letter {letter_id} does not exist")
        return letter

    async def dead_letter_count(self) -> int:
        """How many dead letters wait for a person now."""
        return await letters.count_dead_letters(self.system)

    async def retry_dead_letter(self, letter_id: int) -> None:
        """Send the dead letter's message again (durably, through the outbox) and remove it
        from the dead letters; ShopError not_found, or invalid_state when its message was
        not stored whole and cannot be sent again."""
        async with self._letters_in_hand.hold(check_id("letter_id", letter_id), DEAD_LETTER):
            letter = await self.dead_letter(letter_id)
            if not letter.retryable or not await letters.retry(self.system, letter_id):
                raise ShopError(
                    INVALID_STATE, f"dead letter {letter_id} cannot be sent again: discard it"
                )

    async def discard_dead_letter(self, letter_id: int) -> None:
        """Remove the dead letter, its message not applied; ShopError not_found."""
        async with self._letters_in_hand.hold(check_id("letter_id", letter_id), DEAD_LETTER):
            if not await letters.discard(self.system, letter_id):
                raise ShopError(NOT_FOUND, f"dead letter {letter_id} does not exist")
