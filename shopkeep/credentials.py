"""The credentials a server runs with, generated at its first start if need be and kept in
the ``settings`` table (:mod:`shopkeep.store.settings`).

The admin token is kept as its hash only; a generated gateway secret is never stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import partial
from typing import Final

from shopkeep.shop_accounts import hash_token, new_token
from shopkeep.store import settings
from shopkeep.store.writer import GroupCommitWriter

ADMIN_TOKEN_HASH: Final = "admin_token_hash"
"""``settings`` key: the SHA-256 (hex) of the admin token generated at first start."""
GATEWAY_SECRET: Final = "gateway_secret"
"""``settings`` key under which earlier versions kept a generated gateway secret, in clear;
deleted at every start (see :func:`settle_credentials`)."""


@dataclass(frozen=True)
class Credentials:
    """The admin token's hash and the gateway secret, as the server will use them."""

    admin_token_hash: str
    gateway_secret: str
    new_admin_token: str | None = None
    """The admin token generated just now, in clear: announce it, it is never known again."""
    retired_admin_hash: str | None = None
    """The hash of the generated admin token a configured one retired just now: put back
    (:func:`reinstate_admin_token`) if the start fails, since a refused start changes
    nothing."""


async def settle_credentials(
    writer: GroupCommitWriter, *, admin_token: str | None, gateway_secret: str | None
) -> Credentials:
    """The credentials to run with, generating what is missing.

    A configured value is used as given and not stored (configuration stays the operator's).
    A generated admin token's hash is written with ``INSERT OR IGNORE``, then read back: the
    row that won is the one in force, and the new token is announced only if it is that one.
    A configured admin token retires the generated one for good (the operator's way out when
    it leaked or was lost): a later start without one generates and announces another.

    A generated gateway secret is kept in memory only, new at every start: HMAC needs it in
    clear, so stored it would be readable in every copy of the database, and nobody else can
    use it anyway (it is never shown: a real gateway needs a configured secret, and the
    sandbox gateway signs with this process's). One stored by an earlier version is deleted.
    """
    token = None if admin_token else new_token()
    generated: dict[str, str] = {}
    if token is not None:
        generated[ADMIN_TOKEN_HASH] = hash_token(token)
    # a secret stored by an earlier version is forgotten, and a generated token once another
    # is configured
    retired = [ADMIN_TOKEN_HASH] if admin_token else []
    stored = await writer.call(
        partial(settings.keep, generated, read=retired, forget=[GATEWAY_SECRET, *retired])
    )
    admin_hash = hash_token(admin_token) if admin_token else stored[ADMIN_TOKEN_HASH]
    announced = token if token is not None and hash_token(token) == admin_hash else None
    return Credentials(
        admin_hash, gateway_secret or secrets.token_hex(32), announced,
        stored.get(ADMIN_TOKEN_HASH) if admin_token else None,
    )


async def forget_admin_token(writer: GroupCommitWriter, admin_hash: str) -> None:
    """Forget the generated admin token of hash ``admin_hash`` (a start that failed before it
    announced it): the next start generates and announces another."""
    await writer.call(partial(settings.forget, ADMIN_TOKEN_HASH, admin_hash))


async def reinstate_admin_token(writer: GroupCommitWriter, admin_hash: str) -> None:
    """Put back the generated admin token of hash ``admin_hash`` that a start which failed
    retired (unless another was generated meanwhile)."""
    await writer.call(partial(settings.keep, {ADMIN_TOKEN_HASH: admin_hash}))
