"""What a route is, as data: the one description both the router and the OpenAPI use.

An :class:`Operation` names its method, path, who may call it, the msgspec type of its body
and of each answer, its parameters and the business refusals it may answer with. ``routes.py``
registers each operation's handler behind its access check; ``openapi.py`` documents the very
same list, so the document cannot drift from what is served. The problem statuses an operation
may answer follow from its description (:meth:`Operation.problem_statuses`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp.typedefs import Handler

from shopkeep.http.auth import Access

Location = Literal["query", "header"]

_PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Param:
    """A query parameter or request header (path parameters come from the path)."""

    name: str
    location: Location
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class NativeRefusal:
    """The 400 of a payment provider's own route, in the format that provider reads (not
    problem+json): its media type, the JSON Schema of its body, and what it says."""

    content_type: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Operation:
    """One route. ``answers`` maps each success status to the type of its body (anything
    msgspec can describe: a Struct, ``str``, ``dict[str, Any]``), or None for no body."""

    method: str
    path: str
    name: str
    summary: str
    access: Access
    handler: Handler | None
    """None when another module provides it (the sandbox route, ``/metrics``)."""
    answers: dict[int, Any]
    body: type | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()
    refusals: tuple[str, ...] = ()
    """Business refusal codes (409) besides the generic problems."""
    touches_shop: bool = True
    """False for routes that answer without the shop (so never 503)."""
    content_type: str = "application/json"
    """The media type of the success answers."""
    page_for_browsers: bool = False
    """Whether a request whose ``Accept`` names ``text/html`` is answered a page in its place
    (the sandbox's checkout): the document says both."""
    extra_problems: tuple[int, ...] = field(default=())
    native_refusal: NativeRefusal | None = None
    """A provider's route: its 400 in that provider's format, in place of a problem."""

    @property
    def path_params(self) -> list[str]:
        """The names of the path's ``{parameters}`` (ids, all of them)."""
        return _PATH_PARAM.findall(self.path)

    def problem_statuses(self) -> list[int]:
        """Every problem+json status this operation may answer."""
        statuses = set(self.extra_problems)
        if self.access is not Access.PUBLIC:
            statuses.update((401, 429))
        if self.access in (Access.ADMIN, Access.USER):
            statuses.add(403)
        if self.path_params:
            statuses.add(404)
        statuses.add(422)  # an unknown query parameter, on any operation
        # a request aiohttp's parser could not read (a header past its limit, a body that does
        # not decode as its Content-Encoding says, or that did not arrive whole), any route
        statuses.add(400)
        # a body announced larger than the server takes, whatever the method: the door refuses
        # it before the route's handler (or anything) reads it
        statuses.add(413)
        if self.refusals:
            statuses.add(409)
        if self.touches_shop:
            statuses.add(503)
        if self.native_refusal is not None:
            statuses.discard(400)
        return sorted(statuses)
