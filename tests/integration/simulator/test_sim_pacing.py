"""Pacing: the published limits, 429s and the penalty box, on physical (monotonic) time.

The algorithm is tested on a fake monotonic clock (exact); the HTTP tests trip each limit with
bursts sent at once, and show paced traffic under the limits never gets a 429.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.simulator.pacing import Limit, Pacer, TokenBucket

pytestmark = pytest.mark.timing

AAPL = 265598
HISTORY: dict[str, str | int] = {"conid": AAPL, "period": "1d", "bar": "1h"}


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    bucket = TokenBucket(10, 1.0)
    assert all(bucket.admit(0.0) for _ in range(10))
    assert not bucket.admit(0.0)
    assert not bucket.admit(0.099)
    assert bucket.admit(0.1)
    assert not bucket.admit(0.1)
    slow = TokenBucket(1, 5.0)
    assert slow.admit(0.0) and not slow.admit(4.999) and slow.admit(5.0)


def test_pacer_opens_the_penalty_box_on_any_violation_and_closes_it_after() -> None:
    clock = FakeMonotonic()
    pacer = Pacer(PacingConfig(penalty_box_s=30.0), monotonic=clock)
    assert all(pacer.admit(None).allowed for _ in range(10))
    refused = pacer.admit(None)
    assert not refused.allowed and "global" in refused.reason
    assert refused.retry_after_header == "30"
    clock.now += 29.0
    boxed = pacer.admit(Limit.TICKLE)
    assert not boxed.allowed and boxed.reason == "penalty box" and boxed.retry_after_header == "1"
    clock.now += 1.0
    assert pacer.admit(Limit.TICKLE).allowed
    assert not pacer.admit(Limit.TICKLE).allowed  # 1 per second
    assert pacer.state()["penalties"] == 2


def test_pacer_caps_concurrent_history_requests() -> None:
    clock = FakeMonotonic()
    pacer = Pacer(PacingConfig(global_per_s=100.0, penalty_box_s=5.0), monotonic=clock)
    assert all(pacer.admit(Limit.HISTORY).allowed for _ in range(5))
    assert not pacer.admit(Limit.HISTORY).allowed
    for _ in range(5):
        pacer.history_done()
    clock.now += 5.0
    assert pacer.admit(Limit.HISTORY).allowed
    assert pacer.state()["history_concurrency_high_water"] == 5
    with pytest.raises(ValueError, match="positive"):
        PacingConfig(history_concurrency=0)


def test_a_refused_endpoint_request_spends_no_global_token() -> None:
    clock = FakeMonotonic()
    pacer = Pacer(PacingConfig(penalty_box_s=0.001), monotonic=clock)
    assert pacer.admit(Limit.LIVE_ORDERS).allowed
    assert not pacer.admit(Limit.LIVE_ORDERS).allowed
    clock.now += 0.01
    assert sum(pacer.admit(None).allowed for _ in range(10)) == 9


async def _burst(simulator: Simulator, path: str, count: int, **params: str | int) -> list[int]:
    async with httpx.AsyncClient(base_url=simulator.base_url, timeout=20) as client:
        responses = await asyncio.gather(*(client.get(path, params=params) for _ in range(count)))
    return [r.status_code for r in responses]


async def test_a_global_burst_gets_429_then_the_penalty_box_refuses_everything(
    sim: Simulator, api: httpx.Client
) -> None:
    statuses = await _burst(sim, "/iserver/auth/status", 30)
    assert 429 in statuses and statuses.count(200) >= 10
    boxed = api.get("/iserver/accounts")
    assert boxed.status_code == 429
    assert boxed.json() == {"error": "Too many requests", "statusCode": 429}
    assert boxed.headers["Retry-After"] == "1"
    assert sim.stats()["pacing"]["in_penalty_box"] is True
    time.sleep(sim.config.pacing.penalty_box_s + 0.05)
    assert api.get("/iserver/accounts").status_code == 200
    assert sim.stats()["totals"]["429"] == statuses.count(429) + 1


async def test_ten_requests_at_once_are_within_the_global_limit(sim: Simulator) -> None:
    statuses = await _burst(sim, "/iserver/auth/status", 10)
    assert statuses == [200] * 10


@pytest.mark.parametrize(
    ("path", "burst", "limit_name"),
    [
        ("/iserver/marketdata/snapshot", 40, "snapshot"),
        ("/iserver/account/orders", 2, "live_orders"),
        ("/portfolio/accounts", 2, "portfolio_accounts"),
        ("/tickle", 2, "tickle"),
        ("/sso/validate", 2, "sso_validate"),
    ],
)
async def test_each_endpoint_limit_trips_on_a_burst(
    make_sim: Callable[..., Simulator], path: str, burst: int, limit_name: str
) -> None:
    # A generous global limit, so that the endpoint's own limit is the one exceeded.
    simulator = make_sim(pacing=PacingConfig(global_per_s=1000.0, penalty_box_s=1.0))
    with httpx.Client(base_url=simulator.base_url) as client:
        assert client.get("/iserver/accounts").status_code == 200  # priming, where needed
    params = {"conids": str(AAPL)} if "snapshot" in path else {}
    statuses = await _burst(simulator, path, burst, **params)
    assert 429 in statuses, statuses
    assert simulator.stats()["pacing"]["last_violation"].startswith(limit_name)


async def test_more_than_five_concurrent_history_requests_get_429(
    make_sim: Callable[..., Simulator],
) -> None:
    simulator = make_sim(latency_ms=800, pacing=PacingConfig(global_per_s=100.0))
    statuses = await _burst(simulator, "/iserver/marketdata/history", 6, **HISTORY)
    assert sorted(statuses) == [200] * 5 + [429]
    pacing = simulator.stats()["pacing"]
    assert pacing["history_concurrency_high_water"] == 5
    assert pacing["history_in_flight"] == 0
    assert "concurrent history" in pacing["last_violation"]


async def test_traffic_paced_under_the_limits_never_gets_429(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        assert (await client.get("/iserver/accounts")).status_code == 200
        statuses = []
        for step in range(12):  # ~6.7 requests per second, a tickle every 8 steps (>1.2 s)
            if step % 8 == 0:
                statuses.append((await client.post("/tickle")).status_code)
            calls: list[tuple[str, dict[str, str | int]]] = [
                ("/iserver/auth/status", {}),
                ("/iserver/marketdata/history", HISTORY),
                ("/iserver/marketdata/snapshot", {"conids": str(AAPL)}),
            ]
            path, params = calls[step % 3]
            statuses.append((await client.get(path, params=params)).status_code)
            await asyncio.sleep(0.15)
        history = await asyncio.gather(
            *(client.get("/iserver/marketdata/history", params=HISTORY) for _ in range(5))
        )
    assert set(statuses) == {200}
    assert [r.status_code for r in history] == [200] * 5
    assert sim.stats()["totals"]["429"] == 0


async def test_no_pacing_means_no_429(make_sim: Callable[..., Simulator]) -> None:
    simulator = make_sim(pacing=PacingConfig(enabled=False))
    assert set(await _burst(simulator, "/tickle", 40)) == {200}
    assert simulator.stats()["pacing"]["enabled"] is False


async def test_the_penalty_box_runs_on_real_time_not_the_simulator_clock(
    sim: Simulator, api: httpx.Client
) -> None:
    assert 429 in await _burst(sim, "/tickle", 3)
    sim.advance(timedelta(hours=1))
    assert api.post("/tickle").status_code == 429
