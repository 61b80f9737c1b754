"""The per-token rate limit (SPEC 7): too many requests from one token answer 429 rate_limited
with Retry-After, change nothing, and cost one number per token, bounded.

The limit counts seconds on a fake clock the test moves: nothing sleeps."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from shopkeep.http.app import make_app
from shopkeep.http.config import HttpConfig
from shopkeep.http.front_door import DOOR
from shopkeep.http.metrics import Metrics, metrics_routes
from shopkeep.http.rate_limit import RateLimited, RateLimiter
from shopkeep.runtime import VirtualClock
from shopkeep.shop import Shop
from tests.http.conftest import ADMIN, ADMIN_TOKEN, WRONG, Api

PER_S = 2.0
BURST = 3


class Instant:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def instant() -> Instant:
    return Instant()


@pytest.fixture
async def limited(
    aiohttp_client: AiohttpClient, shop: Shop, clock: VirtualClock, instant: Instant
) -> Api:
    config = HttpConfig(
        admin_token=ADMIN_TOKEN, rate_limit_per_s=PER_S, rate_limit_burst_s=BURST / PER_S
    )
    metrics = Metrics(shop, process=False)
    app = make_app(
        shop, config, extra_routes=[*metrics_routes(metrics)], metrics=metrics, clock=instant
    )
    return Api(await aiohttp_client(app), shop, clock)


async def test_a_token_past_its_burst_is_refused_429_with_retry_after_until_it_refills(
    limited: Api, instant: Instant
) -> None:
    alice = await limited.customer()
    answers = [await limited.call("GET", "/v1/me", alice.headers) for _ in range(BURST + 1)]

    assert [a.status for a in answers] == [200] * BURST + [429]
    refused = answers[-1]
    assert refused.content_type == "application/problem+json"
    assert refused.body["code"] == "rate_limited" and refused.body["status"] == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.body["detail"].endswith("retry after 1 s")  # as the header says
    instant.now += 1 / PER_S
    assert (await limited.call("GET", "/v1/me", alice.headers)).status == 200
    assert (await limited.call("GET", "/v1/me", alice.headers)).status == 429


async def test_a_refusal_names_in_the_access_log_the_user_it_limits(limited: Api) -> None:
    alice = await limited.customer()
    with capture_logs() as logged:
        statuses = [
            (await limited.call("GET", "/v1/me", alice.headers)).status for _ in range(BURST + 1)
        ]

    assert statuses[-1] == 429
    lines = [line for line in logged if line["event"] == "request"]
    assert [(line["status"], line["user_id"]) for line in lines] == [
        (200, alice.id)
    ] * BURST + [(429, alice.id)]


async def test_one_tokens_limit_leaves_other_users_the_admin_and_public_routes_alone(
    limited: Api,
) -> None:
    alice, bob = await limited.customer(), await limited.customer()
    for _ in range(BURST + 1):
        await limited.call("GET", "/v1/me", alice.headers)

    assert (await limited.call("GET", "/v1/me", bob.headers)).status == 200
    for _ in range(3 * BURST):
        assert (await limited.call("GET", "/v1/goods", ADMIN)).status == 200
        assert (await limited.call("GET", "/healthz", {})).status == 200
        assert (await limited.call("POST", "/v1/payments/callback", {}, {})).status == 400


async def test_a_refused_request_changes_nothing(limited: Api) -> None:
    alice = await limited.customer()
    tea = await limited.goods(stock=10)
    body = {"items": [{"goods_id": tea, "quantity": 1}]}
    answers = [await limited.call("POST", "/v1/orders", alice.headers, body) for _ in range(5)]

    assert [a.status for a in answers] == [201] * BURST + [429] * 2
    assert (await limited.call("GET", f"/v1/goods/{tea}", ADMIN)).body["stock"] == 10 - BURST
    listed = await limited.call("GET", "/v1/orders", ADMIN)
    assert len(listed.body["items"]) == BURST


async def test_a_token_nobody_holds_is_limited_before_it_is_looked_up(
    limited: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = limited.shop
    looked_up: list[str] = []
    look_up = shop.user_for_token_hash

    async def counted(token_hash: str) -> int | None:
        looked_up.append(token_hash)
        return await look_up(token_hash)

    monkeypatch.setattr(shop, "user_for_token_hash", counted)
    statuses = [(await limited.call("GET", "/v1/goods", WRONG)).status for _ in range(BURST + 2)]

    assert statuses == [401] * BURST + [429] * 2
    assert len(looked_up) == BURST


async def test_the_refusals_are_counted_in_the_metrics(limited: Api) -> None:
    alice = await limited.customer()
    for _ in range(BURST + 2):
        await limited.call("GET", "/v1/me", alice.headers)

    scraped = await limited.client.get("/metrics")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(await scraped.text())
        for sample in family.samples
    }
    assert samples["shopkeep_rate_limited_total"] == 2
    assert samples["shopkeep_rate_limit_tokens"] == 1


def test_a_bucket_refills_at_its_rate_and_says_how_long_to_wait() -> None:
    instant = Instant()
    limiter = RateLimiter(per_second=10, burst=2, clock=instant)
    limiter.admit("t")
    limiter.admit("t")
    with pytest.raises(RateLimited) as refused:
        limiter.admit("t")
    assert refused.value.retry_after == pytest.approx(0.1)
    instant.now += 0.1
    limiter.admit("t")
    with pytest.raises(RateLimited):
        limiter.admit("t")
    assert limiter.refused == 2


def test_the_tokens_tracked_stay_bounded_under_a_flood_of_distinct_tokens() -> None:
    instant = Instant()
    limiter = RateLimiter(per_second=1, burst=5, clock=instant, tracked=100)
    for n in range(10_000):
        limiter.admit(f"token-{n}")
        if n % 1_000 == 0:
            instant.now += 0.5
    assert limiter.tracked <= 100
    limiter.admit("token-9999")  # a token still tracked keeps what it spent
    assert limiter.tracked <= 100


@pytest.fixture
async def keys_limited(
    aiohttp_client: AiohttpClient, shop: Shop, clock: VirtualClock, instant: Instant
) -> Api:
    config = HttpConfig(admin_token=ADMIN_TOKEN, rate_limit_per_s=0, keys_per_day=KEYS_A_DAY)
    metrics = Metrics(shop, process=False)
    app = make_app(
        shop, config, extra_routes=[*metrics_routes(metrics)], metrics=metrics, clock=instant
    )
    return Api(await aiohttp_client(app), shop, clock)


KEYS_A_DAY = 3


async def test_a_users_idempotency_keys_past_a_days_worth_are_refused_and_change_nothing(
    keys_limited: Api, instant: Instant
) -> None:
    # each key is kept a day with its answer, refusals included: at the rate limit alone one
    # customer's token wrote about 17 GB of them a day
    alice = await keys_limited.customer(balance=0)
    order = await keys_limited.order(alice, await keys_limited.goods(stock=100))
    cancel = f"/v1/orders/{order['id']}/cancel"
    answers = [
        await keys_limited.call("POST", cancel, {**alice.headers, "Idempotency-Key": f"k{n}"})
        for n in range(KEYS_A_DAY + 1)
    ]
    assert [a.status for a in answers] == [200] * KEYS_A_DAY + [429]
    refused = answers[-1]
    assert refused.body["code"] == "rate_limited"
    assert refused.body["detail"].startswith(
        "too many Idempotency-Keys kept for this token in a day"
    )
    assert int(refused.headers["Retry-After"]) == 86_400 // KEYS_A_DAY
    kept = await keys_limited.shop.reader.fetchone(
        "SELECT count(*) FROM idempotency_keys WHERE principal = ?", (int(alice.id),)
    )
    assert kept == (KEYS_A_DAY,)
    async with keys_limited.client.get("/metrics") as scraped:
        assert "shopkeep_rate_limited_total 1.0" in await scraped.text()

    unkeyed = await keys_limited.call("POST", cancel, alice.headers)
    assert unkeyed.status == 200  # a request without a key is not counted
    for n in range(3):  # nor is the admin
        credited = await keys_limited.call(
            "POST", f"/v1/users/{alice.id}/wallet/credit",
            {**ADMIN, "Idempotency-Key": f"a{n}"}, {"amount": 1},
        )  # fmt: skip
        assert credited.status == 200
    instant.now += 86_400 / KEYS_A_DAY  # a key's worth of the day later
    again = await keys_limited.call("POST", cancel, {**alice.headers, "Idempotency-Key": "k9"})
    assert again.status == 200


async def test_retries_of_a_kept_key_are_replayed_without_spending_the_days_keys(
    keys_limited: Api,
) -> None:
    # each replay was counted as a key kept: a client retrying to learn its order's outcome
    # was refused 429 for hours, "too many Idempotency-Keys kept", with one key kept
    alice = await keys_limited.customer(balance=0)
    goods_id = await keys_limited.goods(stock=100)
    body = {"items": [{"goods_id": goods_id, "quantity": 1}]}
    refused = {"items": [{"goods_id": goods_id, "quantity": 1_000}]}  # past the stock
    headers = {**alice.headers, "Idempotency-Key": "only-one"}
    refusal = {**alice.headers, "Idempotency-Key": "no-stock"}

    first = await keys_limited.call("POST", "/v1/orders", headers, body)
    no = await keys_limited.call("POST", "/v1/orders", refusal, refused)
    retries = [
        await keys_limited.call("POST", "/v1/orders", *asked)
        for asked in [(headers, body), (refusal, refused)] * KEYS_A_DAY
    ]
    third = {**headers, "Idempotency-Key": "3"}
    another = await keys_limited.call("POST", "/v1/orders", third, body)

    assert (first.status, no.status) == (201, 409)
    assert [r.status for r in retries] == [201, 409] * KEYS_A_DAY
    assert {r.headers["Idempotent-Replayed"] for r in retries} == {"true"}
    assert another.status == 201  # the third key of the day's three


async def test_a_keyed_request_whose_answer_kept_no_key_gives_its_count_back(
    keys_limited: Api,
) -> None:
    # a 422 and a 503 bind nothing: counted, a client retrying through a stop spent its
    # day's keys on answers that kept none
    alice = await keys_limited.customer(balance=0)
    goods_id = await keys_limited.goods(stock=100)
    body = {"items": [{"goods_id": goods_id, "quantity": 1}]}

    def keyed(key: str) -> dict[str, str]:
        return {**alice.headers, "Idempotency-Key": key}

    first = await keys_limited.call("POST", "/v1/orders", keyed("first"), body)
    invalid = [
        await keys_limited.call("POST", "/v1/orders", keyed(f"bad{n}"), {"items": []})
        for n in range(5)
    ]
    assert first.status == 201 and {a.status for a in invalid} == {422}
    gate = keys_limited.client.app[DOOR].gate
    gate.stop_taking_writes()
    stopping = [
        await keys_limited.call("POST", "/v1/orders", keyed(f"stop{n}"), body) for n in range(5)
    ]
    assert {a.status for a in stopping} == {503}
    gate.stopping = gate.refusing_writes = False  # the stop called off, for the test

    more = [
        await keys_limited.call("POST", "/v1/orders", keyed(f"more{n}"), body)
        for n in range(KEYS_A_DAY)
    ]
    assert [a.status for a in more] == [201] * (KEYS_A_DAY - 1) + [429]
