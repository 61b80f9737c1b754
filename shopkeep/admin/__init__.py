"""The admin console: a shop's back office in the browser, at ``/admin`` of ``shopkeep serve``.

Server-rendered pages (Jinja2 through aiohttp-jinja2) over the shop's embedded API
(:class:`~shopkeep.shop.Shop`, never SQL), with a little htmx for the dashboard's live part;
every asset is served from the package. Sign-in with the admin token opens a server-side
session (:mod:`shopkeep.admin.sessions`); :func:`mount` adds the console to an app
(:mod:`shopkeep.admin.app`). docs/admin.md describes it.
"""

from shopkeep.admin.app import mount

__all__ = ["mount"]
