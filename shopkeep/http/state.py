"""The typed state the app and each request carry (``web.AppKey`` / ``web.RequestKey``).

Kept apart from ``app.py`` so that the front door and routes, which the factory imports, can
read the state without importing the factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from shopkeep.http.config import HttpConfig
from shopkeep.shop import Shop

SHOP: Final = web.AppKey("shop", Shop)
"""The shop the handlers act on; whoever opened it (``shopkeep serve``, a test) closes it."""
CONFIG: Final = web.AppKey("http_config", HttpConfig)
"""The HTTP layer's settings."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: the admin (``user_id`` None) or one user."""

    user_id: int | None
    logged_as: str | None = field(init=False, compare=False)
    """``user_id`` as the access log writes it (as text, as the API writes ids), made once per
    principal rather than once per request."""

    def __post_init__(self) -> None:
        text = None if self.user_id is None else str(self.user_id)
        object.__setattr__(self, "logged_as", text)  # a frozen dataclass's own field

    @property
    def is_admin(self) -> bool:
        """True for the admin token."""
        return self.user_id is None


ADMIN: Final = Principal(None)

PRINCIPAL: Final = web.RequestKey("principal", Principal)
"""Set by the front door on every request that presented a valid token."""
