"""What a route checks before its handler runs (step 5 of the front door,
:mod:`shopkeep.http.front_door`): who may call it, and what its query may name; and, for a
request refused 422, the problems of the parts its handler had not checked yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shopkeep.errors import MAX_PROBLEMS, FieldError, ShopError
from shopkeep.http.auth import CALLBACK_PATHS, Access, authorize, is_public
from shopkeep.http.errors import cut_short
from shopkeep.http.inputs import IDEMPOTENCY_HEADER, body_of, idempotency_key_of
from shopkeep.http.operations import Operation
from shopkeep.http.schemas import EmptyRequest
from shopkeep.http.state import ADMIN, Principal
from shopkeep.http.validation import query_problem


@dataclass(frozen=True)
class Guard:
    """What a route of the catalog checks before its handler runs: who may call it (None:
    anyone, no token needed) and which query parameters it takes."""

    access: Access | None
    query: dict[str, dict[str, Any]]
    """The query parameters the route takes, and the schema of each."""
    public: bool
    """Whether the route's path needs no token (``auth.is_public``), known once for all its
    requests: the public paths are fixed paths and a fixed prefix, which no path parameter
    can make or unmake."""
    admits_admin: bool
    admits_users: bool
    callback: bool
    """Whether the route takes a payment provider's callbacks (still taken while the server
    stops)."""
    takes_key: bool
    """Whether the route reads an ``Idempotency-Key`` header."""
    body: type | None
    """What the route's handler decodes its body as (an empty one for a POST that takes
    none), refusing it 422; None where the body is no validation's (a GET; a provider's
    callback, verified by its signature first and refused 400)."""
    body_optional: bool

    @classmethod
    def of(cls, operation: Operation) -> Guard:
        """The guard of ``operation``."""
        access = None if operation.access is Access.PUBLIC else operation.access
        query = {p.name: p.schema for p in operation.params if p.location == "query"}
        validated = operation.method in ("POST", "PATCH") and 400 not in operation.extra_problems
        return cls(
            access,
            query,
            is_public(operation.path),
            operation.access.admits(ADMIN),
            operation.access.admits(Principal(0)),
            operation.path in CALLBACK_PATHS,
            any(p.name == IDEMPOTENCY_HEADER for p in operation.params),
            (operation.body or EmptyRequest) if validated else None,
            not operation.body_required or operation.body is None,
        )

    def check(self, request: web.Request, principal: Principal | None) -> None:
        """Refuse the caller (404, or 401 without a token), or a query with a parameter the
        route does not take (a misspelt ``?limt=`` would otherwise be silently ignored, as an
        unknown body field would be) or not as its schema says: 422 listing every one."""
        # Access.admits decided once per route, for the admin and for any user; a refusal is
        # raised by authorize, whose answers they are
        if self.access is not None and (
            principal is None
            or not (self.admits_admin if principal.user_id is None else self.admits_users)
        ):
            authorize(principal, self.access)
        if request.query_string:  # most requests have no query: nothing to parse then
            found = []
            seen: set[str] = set()
            repeated: set[str] = set()
            for name, raw in request.query.items():
                schema = self.query.get(name)
                if name in seen:
                    # each takes one value: ?status=paid&status=canceled read as paid alone
                    # would answer another question than the one asked (an unknown name,
                    # refused once already, is not said again as repeated)
                    if name in repeated or schema is None:
                        continue
                    repeated.add(name)
                    problem: str | None = f"query parameter {name!r} is given more than once"
                elif schema is None:
                    problem = f"unknown query parameter {name!r}"
                else:
                    problem = query_problem(raw, schema)
                seen.add(name)
                if problem is not None:
                    found.append(FieldError(problem, parameter=name))
                    if len(found) > MAX_PROBLEMS:  # one past: "and more"
                        break
            if found:
                raise ShopError.invalid(found)

    async def every_problem(self, request: web.Request, refused: ShopError) -> ShopError:
        """``refused``, a validation_error of one part of ``request``, with the problems of the
        parts its handler had not checked yet: SPEC 7's 422 lists every problem found, where a
        handler stops at the first part that has one. The parts are checked in one order, by
        this guard and then by every handler: the query, the ``Idempotency-Key``, the body."""
        found = list(refused.errors)
        parts = {_part_of(problem) for problem in found}
        if not found or BODY in parts:
            return refused
        if HEADER not in parts and self.takes_key:
            try:
                idempotency_key_of(request)
            except ShopError as more:
                found += more.errors
        if self.body is not None:
            try:
                await body_of(request, self.body, optional=self.body_optional)
            except ShopError as more:
                found += more.errors
            except (web.HTTPException, web.RequestPayloadError, OSError) as unread:
                # a body that cannot be read (too large, its chunks or compression broken, the
                # client gone) adds nothing; one whose connection the server closed is not
                # answered (its access line says why: the caller's answer_error)
                if cut_short(request, unread) is not None:
                    raise
        if len(found) == len(refused.errors):
            return refused
        return ShopError.invalid(found)


QUERY, HEADER, BODY = "query", "header", "body"


def _part_of(problem: FieldError) -> str:
    """The part of a request a problem is in: the body (a pointer), the Idempotency-Key (the
    only header a route validates) or the query."""
    if problem.pointer is not None:
        return BODY
    return HEADER if problem.parameter == IDEMPOTENCY_HEADER else QUERY
