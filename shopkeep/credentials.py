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
    """The hash of the generated admin token a configured one retires
    (:func:`put_in_force`)."""


async def settle_credentials(
    writer: GroupCommitWriter, *, admin_token: str | None, gateway_secret: str | None
) -> Credentials:
    """The credentials to run with, generating what is missing; nothing of the admin token is
    written here, but by :func:`put_in_force` once the server listens: a start that never
    listens (refused, failed, or killed with no chance to undo anything) changes nothing, and
    the next start announces the token it generates.

    A configured value is used as given and not stored (configuration stays the operator's).
    A configured admin token retires the generated one for good (the operator's way out when
    it leaked or was lost): a later start without one generates and announces another.

    A generated gateway secret is kept in memory only, new at every start: HMAC needs it in
    clear, so stored it would be readable in every copy of the database, and nobody else can
    use it anyway (it is never shown: a real gateway needs a configured secret, and the
    sandbox gateway signs with this process's). One stored by an earlier version is deleted.
    """
    stored = await writer.call(
        partial(settings.keep, {}, read=[ADMIN_TOKEN_HASH], forget=[GATEWAY_SECRET])
    )
    generated_hash = stored.get(ADMIN_TOKEN_HASH)
    secret = gateway_secret or secrets.token_hex(32)
    if admin_token:
        return Credentials(hash_token(admin_token), secret, retired_admin_hash=generated_hash)
    if generated_hash is not None:
        return Credentials(generated_hash, secret)
    token = new_token()
    return Credentials(hash_token(token), secret, new_admin_token=token)


async def put_in_force(writer: GroupCommitWriter, credentials: Credentials) -> bool:
    """Keep what :func:`settle_credentials` decided: the hash of the admin token it generated
    (announced first: killed in between, the next start generates and announces another),
    and the retirement of the generated one by a configured one. True when the token kept
    replaces another's: a start that ran meanwhile, while this one was between settling and
    listening, generated and announced its own (the last announced is the one that works)."""
    if credentials.new_admin_token is not None:
        before = await writer.call(
            partial(settings.put, ADMIN_TOKEN_HASH, credentials.admin_token_hash)
        )
        return before is not None and before != credentials.admin_token_hash
    if credentials.retired_admin_hash is not None:
        await writer.call(
            partial(settings.forget, ADMIN_TOKEN_HASH, credentials.retired_admin_hash)
        )
    return False
