"""Who may call what: bearer tokens in, the caller's :class:`Principal`, roles per route.

``Authorization: Bearer <token>``: a token whose SHA-256 is the admin's (from
:class:`HttpConfig`, compared in constant time) makes the admin; any other token is looked up
by the same hash (``Shop.known_user_for_token_hash``, else ``Shop.user_for_token_hash``, which
reads) and makes that user: a token is hashed once. A route that needs a token and
gets none, or one nobody holds, answers 401 unauthorized.

Public paths need no token: ``/healthz``, ``/metrics``, ``/openapi.json``, ``/docs``,
``/v1/payments/callback`` (authenticated by its signature instead), ``/sandbox/...``, and the
admin console ``/admin`` (``shopkeep.admin``: it signs the admin in with a session of its own;
served only when ``shopkeep serve`` mounts it, else 404 as any unknown path).

Roles: a valid token on a route of the other role answers 403 forbidden, saying whose route
it is: a user's token on a route of the admin's, the admin's on one of the routes SPEC 7 gives
the user alone, which act as "me" (``/v1/me``, ``/v1/coupons``, placing an order, starting its
payment, asking to return it), the admin having no wallet, coupons or orders of its own. The
routes are no secret (``/openapi.json`` lists them); what a user must not learn, whether
another user's order exists, stays a 404 like an order nobody has.
"""

from __future__ import annotations

import enum
import functools
import hmac
from typing import Final

from shopkeep.errors import ShopError
from shopkeep.http.codes import FORBIDDEN, UNAUTHORIZED
from shopkeep.http.state import ADMIN, Principal
from shopkeep.payments.names import CALLBACK_PATHS as GATEWAY_CALLBACK_PATHS
from shopkeep.shop import Shop
from shopkeep.shop_accounts import TOKEN_CACHE_SIZE, hash_token

CALLBACK_PATHS: Final = frozenset(GATEWAY_CALLBACK_PATHS.values())
"""The payment providers' callbacks: public, and still taken while the server stops."""
PUBLIC_PATHS: Final = CALLBACK_PATHS | {"/healthz", "/metrics", "/openapi.json", "/docs", "/admin"}
PUBLIC_PREFIXES: Final = ("/sandbox/", "/admin/")
NO_SUCH_ROUTE: Final = "there is no such route"
"""The detail of a 404 for a path no route has."""
ADMINS_ROUTE: Final = "this route is the admin's: a user's token may not call it"
"""The detail of a user's 403 on a route of the admin's."""
NOT_A_USER: Final = "this route acts as a user (their orders, their coupons): the admin is none"
"""The detail of the admin's 403 on a route that acts as the calling user."""
MAX_TOKEN: Final = 512
"""A longer bearer token is nobody's (and is not worth hashing)."""


class Access(enum.Enum):
    """Who may call a route."""

    PUBLIC = "no token"
    ANY = "any token (admin or user)"
    ADMIN = "admin"
    USER = "user (acting as themselves)"
    OWNER = "user (their own orders) or admin (all)"

    def admits(self, principal: Principal) -> bool:
        """True when ``principal`` may call a route with this access."""
        if self is Access.ADMIN:
            return principal.is_admin
        if self is Access.USER:
            return not principal.is_admin
        return True


def is_public(path: str) -> bool:
    """True for the paths that need no token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None (nobody's: 401).

    Tokens are printable ASCII (SPEC 7). A header of other bytes is nobody's token: aiohttp
    hands them over as lone surrogates (``\\xff`` is ``\\udcff``), which cannot even be
    encoded to be hashed.
    """
    if header is None:
        return None
    # HTTP's own blanks only: str.strip() would take a no-break or ideographic space off a
    # token and pass what SPEC 7 refuses (a token that is not printable ASCII)
    scheme, _, token = header.strip(" \t").partition(" ")
    token = token.strip(" \t")
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
        return None
    if not (token.isascii() and token.isprintable()):
        return None
    return token


REMEMBERED_HEADER: Final = 128
"""The longest ``Authorization`` header whose hash is remembered: a token the shop issues is
43 characters. A longer header (an admin token of that length, or made up) is parsed and
hashed again at each request, so that a flood of long made-up headers holds no memory."""


def bearer_hash(header: str) -> str | None:
    """The hash (:func:`~shopkeep.shop_accounts.hash_token`) of the token of an ``Authorization``
    header, or None when it names no bearer token.

    Remembered for the latest :data:`~shopkeep.shop_accounts.TOKEN_CACHE_SIZE` headers of at most
    :data:`REMEMBERED_HEADER` characters: a client sends the same header with each request,
    and parsing and hashing it again cost more than the rest of the authentication (about a
    microsecond). What this keeps is at most a few kilobytes a header of that length; the
    database still holds only hashes.
    """
    if len(header) <= REMEMBERED_HEADER:
        return _remembered_hash(header)
    return _hash_of_bearer(header)


def _hash_of_bearer(header: str) -> str | None:
    token = bearer_token(header)
    return None if token is None else hash_token(token)


_remembered_hash = functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)(_hash_of_bearer)


def recognize(shop: Shop, admin_hash: str | None, header: str | None) -> Principal | str | None:
    """The principal a bearer header names when it is known without a read (the admin, or a
    user whose token the shop remembers); else, for a bearer token, its hash, which
    :func:`user_of_hash` looks up; else None (no header, not bearer).

    Hashes, not tokens, are compared: the same constant-time comparison serves a server that
    was given the admin token and one that keeps only its hash. The token is hashed once
    (:func:`bearer_hash`): the admin's check and the users' lookup share the hash.
    """
    if header is None:
        return None
    token_hash = bearer_hash(header)
    if token_hash is None:
        return None
    if admin_hash is not None and hmac.compare_digest(token_hash, admin_hash):
        return ADMIN
    user_id = shop.known_user_for_token_hash(token_hash)
    return token_hash if user_id is None else user_principal(user_id)


async def user_of_hash(shop: Shop, token_hash: str) -> Principal | None:
    """The user whose token hashes to ``token_hash`` (read if need be), or None: nobody's."""
    user_id = await shop.user_for_token_hash(token_hash)
    return None if user_id is None else user_principal(user_id)


@functools.lru_cache(maxsize=TOKEN_CACHE_SIZE)
def user_principal(user_id: int) -> Principal:
    """The :class:`Principal` of user ``user_id``: one frozen value per known user (as many as
    the shop remembers tokens of), rather than a new one per request."""
    return Principal(user_id)


async def still_holds(shop: Shop, principal: Principal, header: str | None) -> bool:
    """Whether the ``Authorization`` header that admitted ``principal`` still names them: a
    user's token replaced since (``POST /v1/users/{id}/token``) names nobody from the
    replacement's answer on, for a request admitted before it whose body was still coming
    too. The admin's token is the configuration's, for as long as the process runs."""
    if principal.is_admin:
        return True
    token_hash = None if header is None else bearer_hash(header)
    return token_hash is not None and (
        await shop.user_for_token_hash(token_hash) == principal.user_id
    )


TOKEN_REQUIRED: Final = "a valid bearer token is required"
ONE_TOKEN: Final = "send one Authorization header: two may name two callers"
"""Why a request with two ``Authorization`` headers is refused: which one acts is not the
server's to guess (a proxy that adds one, or reads the last, would check one caller and send
another's request)."""


def unauthorized(detail: str = TOKEN_REQUIRED) -> ShopError:
    """The refusal (401) of a request to a route that needs a token and got none, one nobody
    holds, or two."""
    return ShopError(UNAUTHORIZED, detail)


def authorize(principal: Principal | None, access: Access) -> Principal:
    """The caller, if ``access`` admits them (None: nobody was authenticated, 401); else
    ShopError forbidden (403: see the module doc)."""
    if principal is None:
        raise unauthorized()
    if not access.admits(principal):
        raise ShopError(FORBIDDEN, NOT_A_USER if principal.is_admin else ADMINS_ROUTE)
    return principal
