"""Mass assignment: a body that sets a field the server owns is refused 422, and changes nothing.

Every write body of SPEC 7 is sent valid plus one server-owned field (an id, a status, an
amount, an owner, a token...). Request types forbid unknown fields, so none of them can land.
"""

from __future__ import annotations

from typing import Any

import pytest

from shopkeep.proof.api_probes import WRITES, build_scene, filled, mass_assignment
from tests.http.conftest import ADMIN, SECRET, Api


async def snapshot(api: Api) -> list[Any]:
    """Everything a write could change, as the admin sees it."""
    answers = [
        await api.call("GET", "/v1/orders", ADMIN),
        await api.call("GET", "/v1/goods", ADMIN),
        await api.call("GET", "/v1/audit", ADMIN),
    ]
    return [answer.body for answer in answers]


@pytest.mark.parametrize(("method", "template", "body", "owned"), WRITES)
async def test_a_write_that_sets_a_server_owned_field_is_refused_and_changes_nothing(
    api: Api, method: str, template: str, body: dict[str, Any], owned: dict[str, Any]
) -> None:
    alice, bob = await api.customer(), await api.customer()
    goods = await api.goods()
    order = await api.order(alice, goods)
    ids = {"user": alice.id, "other": bob.id, "goods": goods, "order": order["id"]}
    as_admin = template.startswith(("/v1/users", "/v1/goods", "/v1/coupons"))
    headers = ADMIN if as_admin else alice.headers
    before = await snapshot(api)

    refused = await api.call(method, filled(template, ids), headers, filled({**body, **owned}, ids))

    assert (refused.status, refused.body["code"]) == (422, "validation_error")
    assert "unknown field" in refused.body["detail"]
    assert await snapshot(api) == before


async def test_every_write_at_once_is_refused_and_changes_nothing(api: Api) -> None:
    scene = await build_scene(api.call, ADMIN, SECRET, api.clock.now)

    probed = await mass_assignment(api.call, scene)

    assert (probed.probes, probed.leaks) == (len(WRITES), [])
