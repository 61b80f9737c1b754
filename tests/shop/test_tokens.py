"""Bearer tokens name their users; known ones are remembered, unknown ones are not; a
replaced one names nobody from the answer on."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from structlog.testing import capture_logs

from shopkeep import shop_accounts
from shopkeep.actors import user as users
from shopkeep.errors import ShopError
from shopkeep.shop import Shop
from shopkeep.shop_accounts import new_token
from shopkeep.store.reader import Reader


async def test_a_users_token_names_them_and_another_token_names_nobody(shop: Shop) -> None:
    created = await shop.create_user("ann")
    assert await shop.user_for_token(created.token) == created.user.id
    assert await shop.user_for_token(created.token) == created.user.id  # remembered
    assert await shop.user_for_token("nobody-holds-this") is None


async def test_junk_tokens_are_not_remembered(shop: Shop) -> None:
    for n in range(50):
        assert await shop.user_for_token(f"junk-{n}") is None
    assert len(shop._token_users) == 0


async def test_a_token_pushed_out_of_memory_still_names_its_user(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shop_accounts, "TOKEN_CACHE_SIZE", 2)
    users = [await shop.create_user(name) for name in ("ann", "bob", "cid")]
    for created in users:
        assert await shop.user_for_token(created.token) == created.user.id
    assert len(shop._token_users) == 2
    first = users[0]
    assert await shop.user_for_token(first.token) == first.user.id  # read again from the store


async def test_a_replaced_token_names_nobody_and_the_new_one_names_the_user(shop: Shop) -> None:
    ann, bob = await shop.create_user("ann"), await shop.create_user("bob")
    assert await shop.user_for_token(ann.token) == ann.user.id  # remembered

    new = await shop.replace_token(ann.user.id)

    assert await shop.user_for_token(ann.token) is None
    assert await shop.user_for_token(new) == ann.user.id
    assert await shop.user_for_token(bob.token) == bob.user.id
    with pytest.raises(ShopError) as refused:
        await shop.replace_token(4242424242)
    assert refused.value.code == "not_found"


async def test_a_replaced_token_leaves_a_trail_of_whose_never_the_token(shop: Shop) -> None:
    ann = await shop.create_user("ann")

    with capture_logs() as logs:
        new = await shop.replace_token(ann.user.id)

    [said] = [e for e in logs if e["event"] == "user_token_replaced"]
    assert said["user_id"] == ann.user.id
    assert new not in repr(logs) and ann.token not in repr(logs)


async def test_a_lookup_that_read_the_old_token_before_the_replacement_does_not_keep_it(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = await shop.create_user("ann")
    read = asyncio.Event()
    replaced = asyncio.Event()
    user_for_token = users.user_of_token_hash

    async def slow_read(reader: Reader, token_hash: str) -> int | None:
        found = await user_for_token(reader, token_hash)  # the old row, before the commit
        read.set()
        await replaced.wait()
        return found

    monkeypatch.setattr(users, "user_of_token_hash", slow_read)
    lookup = asyncio.create_task(shop.user_for_token(ann.token))
    await read.wait()
    monkeypatch.setattr(users, "user_of_token_hash", user_for_token)
    await shop.replace_token(ann.user.id)
    replaced.set()

    assert await lookup == ann.user.id  # a request that began before: it was still valid
    assert await shop.user_for_token(ann.token) is None


def test_a_new_token_never_begins_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # a command line (bench --admin-token) would take such a token for an option
    drawn = iter(["-leading-dash", "-again", "fine_token"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: next(drawn))

    assert new_token() == "fine_token"
