"""Pacing against the simulator's real limits: many concurrent callers never trip a 429, and a
client configured too aggressively leaves the penalty box instead of hammering it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy
from ib_pipeline.simulator import PacingConfig, Simulator

AAPL = 265598
END = datetime(2024, 11, 26, 18, tzinfo=UTC)


def settings_for(sim: Simulator, **changes: Any) -> ClientSettings:
    quick_retries = RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0.01)
    base = ClientSettings(
        base_url=sim.base_url, keepalive_interval_s=None, token_env=None, retry=quick_retries
    )
    return base.with_changes(**changes)


async def test_fifty_concurrent_history_requests_never_trip_a_429(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        sim.reset_stats()
        payloads = await asyncio.gather(
            *(client.history(AAPL, "1d", "5min", start_time=END) for _ in range(50))
        )
        assert client.stats.rate_limited == 0
        assert client.pacer.penalties == 0
    stats = sim.stats()
    assert stats["totals"]["429"] == 0
    assert stats["endpoints"]["GET /iserver/marketdata/history"]["requests"] == 50
    assert stats["pacing"]["history_concurrency_high_water"] <= 4
    assert all(len(p["data"]) == 42 for p in payloads)  # 09:30 to 13:00 New York in 5 minutes


async def test_two_clients_in_one_loop_share_the_budget(sim: Simulator) -> None:
    settings = settings_for(sim)
    async with IbkrClient(settings) as first, IbkrClient(settings) as second:
        assert first.pacer is second.pacer
        sim.reset_stats()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(
            *(c.history(AAPL, "1d", "1h", start_time=END) for c in (first, second) * 5)
        )
        elapsed = loop.time() - started
    assert sim.stats()["totals"]["429"] == 0
    assert elapsed >= 9 / settings.pacing.global_per_s  # ten requests, one shared spacing


async def test_an_over_eager_client_waits_out_the_penalty_box(
    make_sim: Callable[..., Simulator],
) -> None:
    """A client paced at twice the gateway's rate trips the 1 s penalty box; it pauses every
    request for the Retry-After, resumes at half rate (the limit) and completes.

    The gateway's limit is set at 4/s, well under what client and simulator reach together even
    with every core busy, so the client's own pacing (8/s) is what sends too fast: the 429 does
    not depend on how fast the machine is."""
    sim = make_sim(pacing=PacingConfig(global_per_s=4.0, penalty_box_s=1.0))
    eager = PacingLimits(
        global_per_s=8.0,
        history_concurrency=5,
        after_429_rate_factor=0.5,
        after_429_recovery_s=30.0,
    )
    async with IbkrClient(settings_for(sim, pacing=eager)) as client:
        sim.reset_stats()
        payloads = await asyncio.gather(
            *(client.history(AAPL, "1d", "15min", start_time=END) for _ in range(12))
        )
        limited = client.stats.rate_limited
    assert all(len(p["data"]) == 14 for p in payloads)  # 09:30 to 13:00 in 15 minutes
    stats = sim.stats()
    assert 1 <= stats["totals"]["429"] == limited
    assert stats["totals"]["429"] <= 6  # those in flight, then paused and slowed: no hammering
    assert stats["pacing"]["in_penalty_box"] is False
