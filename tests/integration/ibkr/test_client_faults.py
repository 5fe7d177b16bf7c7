"""Every fault the simulator injects: recovered (the result still equals the ground truth), or,
when it persists, a typed error naming the endpoint. Fault draws are seeded, so each run sees
the same faults at the same requests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import (
    GatewayError,
    IbkrError,
    InvalidPayloadError,
    RateLimitedError,
    RequestTimeoutError,
    TlsVerificationError,
    TransportError,
)
from ib_pipeline.ibkr.history import HistoryRequest
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy, Timeouts
from ib_pipeline.simulator import Simulator

AAPL, IBM = 265598, 8314
START = datetime(2024, 11, 18, tzinfo=UTC)
END = datetime(2024, 11, 26, tzinfo=UTC)


def settings_for(sim: Simulator, **changes: Any) -> ClientSettings:
    base = ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        timeouts=Timeouts(read=0.4),
        retry=RetryPolicy(max_attempts=6, backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0),
        pacing=PacingLimits(after_429_recovery_s=1.0),
    )
    return base.with_changes(**changes)


def faults_seen(sim: Simulator, kind: str) -> int:
    return int(sim.stats()["totals"]["faults"].get(kind, 0))


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        ("5xx=0.4,seed=1", "5xx"),
        ("429=0.25,seed=2", "429"),
        ("slow=0.3,slow_s=1,seed=3", "slow"),
        ("drop=0.4,seed=4", "drop"),
        ("truncate=0.4,seed=6", "truncate"),
    ],
)
async def test_transient_faults_are_recovered(sim: Simulator, faults: str, kind: str) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        sim.set_faults(faults)
        result = await client.history_range(AAPL, "1min", START, END)
        retries = client.stats.retries["history"]
    truth = sim.truth.history_bars(AAPL, "1min", START, END)
    assert result.table(lot_size=100).equals(truth)
    assert faults_seen(sim, kind) >= 1
    assert retries >= faults_seen(sim, kind)


async def test_all_faults_at_once(sim: Simulator) -> None:
    mix = "5xx=0.1,429=0.05,slow=0.05,slow_s=1,drop=0.1,truncate=0.1,seed=11"
    async with IbkrClient(settings_for(sim)) as client:
        sim.set_faults(mix)
        minute = await client.history_range(AAPL, "1min", START, END)
        daily = await client.history_range(IBM, "1d", datetime(2020, 1, 1, tzinfo=UTC), END)
    assert minute.table(lot_size=100).equals(sim.truth.history_bars(AAPL, "1min", START, END))
    daily_truth = sim.truth.history_bars(IBM, "1d", datetime(2020, 1, 1, tzinfo=UTC), END)
    assert daily.table(lot_size=100).equals(daily_truth)
    assert sum(sim.stats()["totals"]["faults"].values()) >= 2


@pytest.mark.parametrize(
    ("faults", "error", "message"),
    [
        ("5xx=1", GatewayError, r"history \(GET http://127\.0\.0\.1:\d+/v1/api/iserver/"),
        ("drop=1", TransportError, "history .*RemoteProtocolError"),
        ("truncate=1", InvalidPayloadError, "invalid or truncated JSON"),
        ("slow=1,slow_s=1", RequestTimeoutError, "no answer within the timeout"),
        ("429=1", RateLimitedError, "HTTP 429"),
    ],
)
async def test_persistent_faults_raise_typed_errors(
    sim: Simulator, faults: str, error: type[IbkrError], message: str
) -> None:
    settings = settings_for(sim, retry=RetryPolicy(max_attempts=3, backoff_initial_s=0.01))
    async with IbkrClient(settings) as client:
        sim.set_faults(faults)
        with pytest.raises(error, match=message) as info:
            await client.history(AAPL, "1d", "1h")
        sent = client.stats.requests["history"]
    assert not isinstance(info.value, TlsVerificationError)
    assert info.value.endpoint == "history"
    assert sent == 3  # bounded attempts
    if isinstance(info.value, GatewayError):
        assert info.value.status in (429, 500, 503)


async def test_answers_slower_than_the_timeout_never_open_the_penalty_box(sim: Simulator) -> None:
    """The gateway keeps working on (and counting) a history request the client stopped
    waiting for; a retry sent at once ran beside it, and with four ranges in flight the sixth
    concurrent request opened the penalty box. Abandoned requests now keep their slot."""
    settings = settings_for(
        sim,
        timeouts=Timeouts(read=0.4),
        retry=RetryPolicy(max_attempts=8, backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0),
    )
    conids = [AAPL, IBM, 756733, 272093, 76792991, 4815747, 3691937, 15124833]
    start, end = datetime(2024, 11, 20, tzinfo=UTC), datetime(2024, 11, 23, tzinfo=UTC)
    async with IbkrClient(settings) as client:
        sim.set_faults("slow=0.5,slow_s=1,seed=3")
        ranges = await client.history_ranges(
            HistoryRequest(conid, "1min", start, end) for conid in conids
        )
        lingering = client.pacer.lingering
    stats = sim.stats()
    assert stats["pacing"]["penalties"] == 0, stats["pacing"]
    assert stats["totals"]["faults"]["slow"] >= 8
    assert lingering >= stats["totals"]["faults"]["slow"] - 1
    for conid, history in zip(conids, ranges, strict=True):
        truth = sim.truth.history_bars(conid, "1min", start, end)
        assert history.table(lot_size=100).equals(truth), conid


async def test_session_drop_mid_range_is_recovered_once(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        sim.set_faults("session_drop_at=2")
        result = await client.history_range(AAPL, "1min", START, END)
        recoveries = client.session.recoveries
    assert result.table(lot_size=100).equals(sim.truth.history_bars(AAPL, "1min", START, END))
    stats = sim.stats()
    assert stats["session"]["drops"] == 1
    assert stats["totals"]["401"] == 1
    assert recoveries == 1
    assert stats["endpoints"]["POST /iserver/auth/ssodh/init"]["requests"] == 1


async def test_accounts_reset_is_reprimed_once(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        await client.snapshots([AAPL])  # primes /iserver/accounts and does the pre-flight
        sim.set_faults("accounts_reset_at=1")
        (response,) = await client.snapshots([AAPL, IBM])
    assert {entry["conid"] for entry in response.payload} == {AAPL, IBM}
    endpoints = sim.stats()["endpoints"]
    assert endpoints["GET /iserver/accounts"]["requests"] == 2
    assert endpoints["GET /iserver/marketdata/snapshot"]["statuses"]["500"] == 1
