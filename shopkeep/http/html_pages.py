"""The API's own HTML pages (``/docs``, the sandbox's checkout): answered with the headers a
page needs against being framed, sniffed or fed another origin's script."""

from __future__ import annotations

from typing import Final

from aiohttp import web

PAGE_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""What a page may load: its own inline style, and fetches to this server (the checkout's
buttons); its inline script only where :func:`html_page` is told it has one."""


def html_page(text: str, *, script: bool = False) -> web.Response:
    """``text``, an HTML page written whole by the server (every value in it escaped), with
    the headers that keep it from being framed (a checkout's Pay button clicked through
    another site), sniffed, or sent on as a referrer; ``script``: it runs an inline script."""
    policy = PAGE_POLICY + ("; script-src 'unsafe-inline'" if script else "")
    return web.Response(
        text=text,
        content_type="text/html",
        headers={
            "Content-Security-Policy": policy,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )
