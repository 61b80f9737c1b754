"""Bearer tokens name their users; known ones are remembered, unknown ones are not."""

from __future__ import annotations

import pytest

from shopkeep import shop as shop_module
from shopkeep.shop import Shop


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
    monkeypatch.setattr(shop_module, "TOKEN_CACHE_SIZE", 2)
    users = [await shop.create_user(name) for name in ("ann", "bob", "cid")]
    for created in users:
        assert await shop.user_for_token(created.token) == created.user.id
    assert len(shop._token_users) == 2
    first = users[0]
    assert await shop.user_for_token(first.token) == first.user.id  # read again from the store
