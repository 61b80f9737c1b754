"""The console's aiohttp application, mounted at ``/admin`` of the server's app.

:func:`mount` adds it as a sub-application: its own routes, templates (Jinja2 through
aiohttp-jinja2, autoescaped: every value a page shows is text, whatever it holds) and static
files (``/admin/static``, vendored: nothing comes from another host). Each page and action
is behind the console's :func:`door`, itself behind the API's front door
(``shopkeep.http.front_door``: request ids, metrics, the access log): a page without a session
redirects to the sign-in page; a POST must come from this origin and carry the session's CSRF
token, or it is refused with a 403 page and nothing done. The API's front door lets
``/admin`` through without a bearer token (``shopkeep.http.auth.PUBLIC_PREFIXES``): the
console authenticates by its session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from shopkeep.actors.audit import AuditReport
from shopkeep.admin import formatting
from shopkeep.admin.sessions import COOKIE, Session, SessionStore, new_nonce
from shopkeep.errors import ShopError
from shopkeep.http.codes import METHOD_NOT_ALLOWED
from shopkeep.http.errors import PROBLEMS, REFUSED
from shopkeep.http.front_door import DOOR
from shopkeep.http.inputs import undecoded_coding
from shopkeep.http.metrics import Metrics
from shopkeep.http.rate_limit import RateLimiter
from shopkeep.idempotency import InFlight
from shopkeep.refusals import NOT_FOUND, UNAVAILABLE
from shopkeep.runtime import Clock
from shopkeep.shop import Shop

PREFIX: Final = "/admin"
HERE: Final = Path(__file__).parent
SIGN_IN: Final = f"{PREFIX}/sign-in"
LIVE: Final = f"{PREFIX}/live"
"""The dashboard's live part, which its page polls."""
OPEN_PATHS: Final = frozenset({SIGN_IN})
"""Paths of the console a browser without a session may ask for (with ``/admin/static/``)."""


@dataclass
class Console:
    """What the console's handlers work with."""

    shop: Shop
    admin_hash: str | None
    """The SHA-256 (hex) the admin token must hash to; None: nobody can sign in."""
    sessions: SessionStore
    metrics: Metrics
    public_url: str
    """Where browsers reach the server (``--public-url``; "" when they reach it directly): an
    https one makes the session cookie Secure, and a form posted from a page of its origin
    is from here too (behind a proxy that does not pass the Host on)."""

    wrong_sign_ins: RateLimiter
    """Wrong tokens by the address they came from: past the burst, sign-in answers 429."""

    @property
    def secure(self) -> bool:
        """Whether the session cookie is Secure: browsers reach the server over HTTPS."""
        return self.public_url.startswith("https://")
    audit: tuple[float, AuditReport] | None = field(default=None)
    """The last audit and when it ran (the dashboard shows it; the audit page runs it)."""
    acting: InFlight = field(default_factory=InFlight)
    """The orders and returns a form is acting on (by id and kind): two staff's forms on one
    take turns, so that the second reads what the first did and says it was done already."""


WRONG_SIGN_INS_BURST: Final = 10
"""Wrong tokens one address may send in a row before it is made to wait."""
WRONG_SIGN_INS_PER_S: Final = 0.2
"""Then one more wrong token every five seconds: guessing a token of 16 characters or more is
hopeless anyway; this keeps a script from trying millions. Behind a reverse proxy every
browser comes from the proxy's address, so a flood of wrong tokens makes everyone wait; the
JSON API still takes the token meanwhile."""


CONSOLE: Final = web.AppKey("admin_console", Console)
SESSION: Final = web.RequestKey("admin_session", Session)


def console_of(request: web.Request) -> Console:
    """The console serving ``request``."""
    return request.config_dict[CONSOLE]


def mount(
    app: web.Application,
    shop: Shop,
    admin_hash: str | None,
    *,
    metrics: Metrics | None = None,
    public_url: str = "",
    clock: Clock | None = None,
) -> Console:
    """Serve the console at ``/admin`` of ``app``, over ``shop``; sign-in takes the token
    whose SHA-256 is ``admin_hash``. ``metrics`` are the server's (the dashboard's live
    figures are theirs; a registry of the console's own when None). ``public_url``: where
    browsers reach the server (:attr:`Console.public_url`). ``clock``: what sessions expire
    by (the shop's when None)."""
    from shopkeep.admin import actions, pages  # the handlers import this module's state

    time = clock or shop.system.clock
    console = Console(
        shop,
        admin_hash,
        SessionStore(time),
        metrics if metrics is not None else Metrics(shop, process=False),
        public_url.rstrip("/"),
        RateLimiter(WRONG_SIGN_INS_PER_S, WRONG_SIGN_INS_BURST, time.now),
    )
    admin = web.Application()
    admin[CONSOLE] = console
    environment = aiohttp_jinja2.setup(
        admin,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=formatting.shown,
    )
    environment.globals["nonce"] = new_nonce
    environment.filters.update(formatting.filters_for(shop.config.currency))
    # every answer of the console carries the page headers: its pages', its refusals and
    # redirects, its assets', and the front door's own (a 413 of a form too large, a 500)
    admin.on_response_prepare.append(_with_page_headers)
    front = app[DOOR]
    static = static_files(HERE / "static")  # the assets need no session
    front.add_routes(admin.router, [static], public=True)
    pages_and_actions = [_route_behind_door(route) for route in (*pages.routes, *actions.routes)]
    # a form sent while the server stops is refused on a page of the console, not in JSON
    front.add_routes(
        admin.router, pages_and_actions, public=True, stops_itself=True, too_large=form_too_large
    )
    front.add_unmatched(admin.router, around=behind_door)
    app.add_subapp(PREFIX, admin)
    return console


def static_files(directory: Path) -> web.RouteDef:
    """``GET /static/{name}``: the files of ``directory`` (vendored, read at start: a name
    that is not one of them is 404, whatever it holds)."""
    files = {path.name: path for path in directory.iterdir() if path.is_file()}

    async def static(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:  # a page saying so, as any address of the console that is none
            missing = ShopError(NOT_FOUND, f"no page of the console is at {request.path[:200]}")
            return error_page(request, missing)
        return web.FileResponse(path)

    return web.get("/static/{name}", static)


def _route_behind_door(route: web.AbstractRouteDef) -> web.RouteDef:
    if not isinstance(route, web.RouteDef):  # a table's static files, say: served past it
        raise TypeError(f"the console's routes are handlers, not {route!r}")
    return web.RouteDef(route.method, route.path, behind_door(route.handler), route.kwargs)


def behind_door(handler: Handler) -> Handler:
    """``handler`` behind the console's :func:`door`."""

    async def entered(request: web.Request) -> web.StreamResponse:
        return await door(request, handler)

    return entered


def set_cookie(response: web.StreamResponse, console: Console, session: Session) -> None:
    """Give the browser the session's id (and nothing else)."""
    response.set_cookie(COOKIE, session.id, **_cookie_flags(console))


def forget_cookie(response: web.StreamResponse, console: Console) -> None:
    """Have the browser drop the session's cookie (sent with the flags it was set with)."""
    response.del_cookie(COOKIE, **_cookie_flags(console))


def _cookie_flags(console: Console) -> dict[str, Any]:
    return {"path": PREFIX, "httponly": True, "samesite": "Strict", "secure": console.secure}


def to(location: str) -> web.HTTPSeeOther:
    """A redirect after a form (the browser asks for ``location`` with a GET)."""
    return web.HTTPSeeOther(location)


def refused_page(request: web.Request, reason: str, status: int = 403) -> web.Response:
    """The page of a POST refused before anything is done: 403 without its session's CSRF
    token or from another origin, 400 for a form that is not text."""
    values: dict[str, object] = {
        "reason": reason, "session": None, "csrf": "", "notices": [], "path": ""
    }
    return aiohttp_jinja2.render_template("refused.html", request, values, status=status)


def form_too_large(request: web.Request) -> web.Response:
    """The page of a form larger than the server takes (413), refused unread."""
    return refused_page(request, "the form is larger than the server takes", 413)


def same_origin(request: web.Request, public_url: str) -> bool:
    """False when the browser says the POST comes from a page of another origin than this
    server's (as the request names it, or its public URL): by ``Origin``; without it (an
    older browser), by ``Sec-Fetch-Site`` or the ``Referer``'s origin. A request that says
    none of them (a client that is not a browser) is taken: its CSRF token still decides; a
    ``Referer`` that is no URL (``http://[::1``) names no origin of ours."""
    ours = {f"http://{request.host}", f"https://{request.host}"}
    if public_url:
        parts = urlsplit(public_url)
        ours.add(f"{parts.scheme}://{parts.netloc}")
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in ours
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    referer = request.headers.get("Referer")
    if referer is not None:
        try:
            parts = urlsplit(referer)
        except ValueError:  # an IPv6 host without its bracket's end
            return False
        return f"{parts.scheme}://{parts.netloc}" in ours
    return True


def error_page(request: web.Request, error: ShopError) -> web.Response:
    """A page the shop refused to show (no such order, a filter that is not one), with the
    status the API would answer."""
    status, _ = PROBLEMS.get(error.code, REFUSED)
    session, message = request.get(SESSION), formatting.explain(error)
    # what a form said on its way here (the refusal of an action on what is not there), once
    said = [] if session is None else session.take_notices(request.path)
    if session is not None:
        session.take_typed(request.path)  # no form here to fill: not kept for a later page
    values: dict[str, object] = {
        "message": message, "session": session, "csrf": "", "path": request.path,
        "notices": [(kind, text) for kind, text in said if text != message],
    }
    return aiohttp_jinja2.render_template("error.html", request, values, status=status)


PAGE_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
}
"""What every answer of the console carries (a page's own may be stricter), with
``Cache-Control: no-store``."""


async def _with_page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The console's ``on_response_prepare``: :data:`PAGE_HEADERS` (where a page has none of
    its own) and no copy kept in a cache, on every answer as it is sent."""
    headers = response.headers
    headers["Cache-Control"] = "no-store"
    for name, value in PAGE_HEADERS.items():
        headers.setdefault(name, value)


async def door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, the origin of POSTs, CSRF (every answer gets its headers as it is sent:
    :func:`_with_page_headers`)."""
    console = console_of(request)
    path = request.path
    if request.method == "POST":
        if request.config_dict[DOOR].gate.stopping:  # nothing done, as the API's writes then
            return error_page(request, ShopError(
                UNAVAILABLE, "the server is stopping; nothing was done: send the form again "
                "once it is back",
            ))  # fmt: skip
        if not same_origin(request, console.public_url):
            return refused_page(request, "the form was sent from another site")
        if undecoded_coding(request) is not None:  # aiohttp would pass it on as it came
            return refused_page(request, "the form is in a coding the server does not read", 400)
        try:
            await request.post()  # read once here (aiohttp keeps it for the handler's reads)
        except (UnicodeDecodeError, LookupError):  # bytes of no charset, or a charset unknown
            return refused_page(request, "the form is not text in a charset it names", 400)
        except web.RequestPayloadError:  # gzip or deflate that does not inflate
            page = refused_page(request, "the form does not decode as its coding says", 400)
            page.force_close()  # aiohttp closes it after such a body: the client is told
            return page
        except web.HTTPRequestEntityTooLarge:  # sent in chunks, so counted as it came
            return form_too_large(request)
    # the dashboard polls its live part every few seconds, with no one at the screen as well
    session = console.sessions.find(request.cookies.get(COOKIE), used=path != LIVE)
    if session is None and path not in OPEN_PATHS:
        if request.headers.get("HX-Request") == "true":  # htmx: a redirect of the whole page
            return web.Response(status=204, headers={"HX-Redirect": SIGN_IN})
        raise to(SIGN_IN)
    if session is not None:
        request[SESSION] = session
        if request.method == "POST" and path != SIGN_IN:
            form = await request.post()
            given = form.get("csrf")
            if not session.csrf_matches(given if isinstance(given, str) else None):
                return refused_page(request, "the form's CSRF token is missing or wrong")
    try:
        return await handler(request)
    except ShopError as error:
        return error_page(request, error)
    except web.HTTPNotFound:  # no page at this address (``/admin/orders/abc``): a page saying so
        missing = ShopError(NOT_FOUND, f"no page of the console is at {path[:200]}")
        return error_page(request, missing)
    except web.HTTPMethodNotAllowed as refused:  # the page is there, not for this method
        page = error_page(request, ShopError(
            METHOD_NOT_ALLOWED, f"{path[:200]} takes {', '.join(sorted(refused.allowed_methods))}"
        ))  # fmt: skip
        page.headers["Allow"] = refused.headers.get("Allow", "")
        return page
