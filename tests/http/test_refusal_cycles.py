"""A refused request leaves no reference cycle behind, through the whole HTTP layer: the
server freezes what survives each generation-1 collection (runtime/collector.py), and a frozen
cycle is never reclaimed: a refusal caught in flight by such a collection kept its request,
its answer and its exception for the life of the process."""

from __future__ import annotations

import gc
from typing import Any

from tests.http.conftest import ADMIN, WRONG, Api


async def test_refused_requests_leave_no_cycle_to_collect(
    api: Api, saved_garbage: list[Any]
) -> None:
    ann = await api.customer()
    tea = await api.goods(stock=1)
    order = await api.order(ann, tea)
    gc.collect()
    saved_garbage.clear()  # what setting up left

    answers = [
        await api.call("POST", "/v1/orders", ann.headers,
                       {"items": [{"goods_id": tea, "quantity": 5}]}),
        await api.call("POST", "/v1/orders", ann.headers, {"items": []}),
        await api.call("POST", f"/v1/orders/{order['id']}/deliver", ADMIN),
        await api.call("GET", f"/v1/orders/{int(order['id']) + 1}", ann.headers),
        await api.call("GET", "/v1/me", WRONG),
        await api.call("DELETE", "/v1/orders", ann.headers),
        await api.call("GET", "/v1/audit", ann.headers),
    ]  # fmt: skip
    gc.collect()

    assert [a.status for a in answers] == [409, 422, 409, 404, 401, 405, 403]
    left = sorted({type(o).__name__ for o in saved_garbage if isinstance(o, BaseException)})
    assert left == []
