"""The users' part of the embedded API: users made, read and credited, and their API tokens
(SPEC 1, 7).

:class:`Accounts` is a part of :class:`shopkeep.shop.Shop` (one of its base classes, as
:class:`~shopkeep.shop_payments.Payments` is), kept apart so that a token's life reads in one
place: made here and shown once, kept only as its hash, looked up by it (remembered while it
names the same user), and replaced by the admin.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from shopkeep.actors import user as users
from shopkeep.actors.protocol import CreateUser, CreditWallet, GetUser, ReplaceToken, UserView
from shopkeep.errors import answer
from shopkeep.idempotency import Key, Once, key_of
from shopkeep.requests import (
    Problems,
    actor_of,
    check_amount,
    check_id,
    check_instance,
    check_name,
)
from shopkeep.runtime import ActorSystem, Address
from shopkeep.store.reader import Reader

log = structlog.get_logger("shopkeep.shop")  # the Shop's log, whose part this is

TOKEN_CACHE_SIZE = 65_536
"""How many token hashes a Shop remembers the user of (least recently used first out)."""


class CreatedUser(msgspec.Struct, frozen=True):
    """A new user and their API token (shown once: only its hash is kept)."""

    user: UserView
    token: str


def hash_token(token: str) -> str:
    """How tokens are kept: their SHA-256, so a copy of the database reveals none."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new bearer token: 256 random bits, URL-safe, never beginning with ``-`` (one in 64
    would, and a command line such as ``bench --admin-token`` takes it for an option)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


class Accounts:
    """Users made, read and credited, and their tokens, on a shop's system and reader."""

    system: ActorSystem
    reader: Reader
    _once: Once
    _token_users: OrderedDict[str, int]
    """A token names the same user until the admin replaces it (:meth:`replace_token` forgets
    the user's), so a known token needs no read per request; unknown ones are not remembered,
    so junk tokens cannot grow this."""
    _token_epoch: int
    """Counts replacements: a lookup that read the table before one was answered must not
    remember what it read (it could be the old token, read just before the commit)."""

    if TYPE_CHECKING:  # the Shop's own

        async def _ask(self, address: Address, message: Any) -> Any: ...


    async def create_user(
        self, name: str, balance: int | None = 0, *, idempotency_key: Key = None
    ) -> CreatedUser:
        """A new user with an opening wallet balance (None: 0, the HTTP API's ``null``), and
        their token (shown only here).

        Under a key, one user: the same request again answers the user the first answer made,
        with a new token, since only a token's hash is kept (the first answer's token, which
        only that answer showed, stops working): the retry of a caller who lost the answer."""
        balance = 0 if balance is None else balance
        with Problems() as each:
            each(check_name, name)
            each(check_amount, "balance", balance)
            key = each(key_of, idempotency_key)
        token = new_token()
        request = ("create_user", name, balance)
        message = CreateUser(name, balance, hash_token(token))
        view = await self._once.ask(
            Address("user", self.system.ids.next()), message, UserView, key, request
        )
        if key is not None and key.replayed:
            token = await self.replace_token(view.id)
        return CreatedUser(view, token)

    async def get_user(self, user_id: int) -> UserView:
        """The user, or ShopError not_found."""
        return answer(await self._ask(actor_of("user", user_id), GetUser()), UserView)

    async def user_for_token(self, token: str) -> int | None:
        """The id of the user whose token this is, or None."""
        check_instance("token", token, str)
        return await self.user_for_token_hash(hash_token(token))

    def known_user_for_token_hash(self, token_hash: str) -> int | None:
        """The user of ``token_hash`` when this shop remembers it, else None (unknown here, not
        necessarily to the database): :meth:`user_for_token_hash` without its read, nor its
        coroutine, for the common case of a token seen before."""
        known = self._token_users
        user_id = known.get(token_hash)
        if user_id is not None:
            known.move_to_end(token_hash)
        return user_id

    async def user_for_token_hash(self, token_hash: str) -> int | None:
        """The id of the user whose token hashes (:func:`hash_token`) to ``token_hash``, or
        None: for a caller that hashed the token already (the HTTP layer compares the hash
        with the admin's first), so a request hashes its token once."""
        check_instance("token_hash", token_hash, str)
        user_id = self.known_user_for_token_hash(token_hash)
        if user_id is not None:
            return user_id
        epoch = self._token_epoch
        user_id = await users.user_of_token_hash(self.reader, token_hash)
        if user_id is not None and epoch == self._token_epoch:
            known = self._token_users
            known[token_hash] = user_id
            if len(known) > TOKEN_CACHE_SIZE:
                known.popitem(last=False)
        return user_id

    async def replace_token(self, user_id: int) -> str:
        """A new API token for the user (an admin operation), shown only here; the old one
        names nobody from the answer on."""
        token = new_token()
        answer(
            await self._ask(actor_of("user", user_id), ReplaceToken(hash_token(token))), UserView
        )
        self._token_epoch += 1
        known = self._token_users
        for token_hash in [h for h, owner in known.items() if owner == user_id]:
            del known[token_hash]
        # a credential replaced leaves a trail (never the token): whose, and when
        log.info("user_token_replaced", user_id=user_id)
        return token

    async def credit_wallet(
        self, user_id: int, amount: int, *, idempotency_key: Key = None
    ) -> UserView:
        """Add ``amount`` to the user's wallet (an admin operation); under a key, once."""
        with Problems() as each:
            each(check_id, "user_id", user_id)
            each(check_amount, "amount", amount, minimum=1)
            key = each(key_of, idempotency_key)
        request = ("credit_wallet", user_id, amount)
        return await self._once.ask(
            actor_of("user", user_id), CreditWallet(amount), UserView, key, request
        )
