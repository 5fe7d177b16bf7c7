"""History ranges against the simulator over HTTP, with real pacing: the normalised result
equals the simulator's ground truth, and the number of requests stays within 5% of the
minimum, ceil(bars / 1000)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from ib_pipeline.calendars import CME_FUTURES, FOREX
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import NoDataError
from ib_pipeline.ibkr.history import HistoryRequest
from ib_pipeline.ibkr.settings import ClientSettings, RetryPolicy
from ib_pipeline.simulator import Simulator
from ib_pipeline.simulator.instruments import UNIVERSE

AAPL, IBM, MSFT, META = 265598, 8314, 272093, 107113386
EURUSD = 12087792
ES = next(i.conid for i in UNIVERSE if i.symbol == "ES")
HISTORY = "GET /iserver/marketdata/history"


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def settings_for(sim: Simulator, **changes: Any) -> ClientSettings:
    quick_retries = RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0.01)
    base = ClientSettings(
        base_url=sim.base_url, keepalive_interval_s=None, token_env=None, retry=quick_retries
    )
    return base.with_changes(**changes)


def history_requests(sim: Simulator) -> int:
    endpoint = sim.stats()["endpoints"].get(HISTORY, {})
    return int(endpoint.get("requests", 0))


def assert_same_bars(actual: pa.Table, expected: pa.Table) -> None:
    assert actual.num_rows == expected.num_rows
    assert actual.schema.equals(expected.schema)
    assert actual.equals(expected)


async def test_twenty_sessions_of_minute_bars(sim: Simulator) -> None:
    start = datetime(2024, 10, 29, tzinfo=UTC)
    end = datetime(2024, 11, 26, tzinfo=UTC)
    async with IbkrClient(settings_for(sim)) as client:
        result = await client.history_range(AAPL, "1min", start, end)
    truth = sim.truth.history_bars(AAPL, "1min", start, end)
    assert truth.num_rows == 20 * 390
    assert_same_bars(result.table(lot_size=100), truth)
    minimum = math.ceil(truth.num_rows / 1000)
    assert len(result.pages) == history_requests(sim)
    assert history_requests(sim) <= math.floor(minimum * 1.05)
    assert result.minimum_requests == minimum
    assert sim.stats()["totals"]["429"] == 0


async def test_daily_bars_over_years(sim: Simulator) -> None:
    start = datetime(2010, 1, 1, tzinfo=UTC)
    end = datetime(2024, 11, 26, tzinfo=UTC)
    async with IbkrClient(settings_for(sim)) as client:
        result = await client.history_range(IBM, "1d", start, end)
    truth = sim.truth.history_bars(IBM, "1d", start, end)
    assert truth.num_rows > 3700
    assert_same_bars(result.table(lot_size=100), truth)
    assert history_requests(sim) <= math.floor(math.ceil(truth.num_rows / 1000) * 1.05)


async def test_extended_hours_and_coarser_bars(sim: Simulator) -> None:
    cases = [
        (MSFT, "5min", utc(2024, 9, 2), utc(2024, 11, 26), True),
        (MSFT, "1h", utc(2023, 1, 1), utc(2024, 11, 26, 18), False),
        (AAPL, "1w", utc(2015, 1, 1), utc(2024, 11, 26), False),
        (AAPL, "1m", utc(2012, 1, 1), utc(2024, 11, 26), False),
    ]
    requests = [
        HistoryRequest(conid, bar, start, end, outside_rth=rth)
        for conid, bar, start, end, rth in cases
    ]
    async with IbkrClient(settings_for(sim)) as client:
        results = await client.history_ranges(requests)
    for request, result in zip(requests, results, strict=True):
        truth = sim.truth.history_bars(
            request.conid, request.bar_size, request.start, request.end, request.outside_rth
        )
        assert truth.num_rows > 0, request
        assert_same_bars(result.table(lot_size=100), truth)
        if request.bar_size in ("5min", "1h"):
            assert len(result.pages) <= math.floor(math.ceil(truth.num_rows / 1000) * 1.05)


async def test_range_partly_and_wholly_before_the_instrument_existed(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        partly = await client.history_range(
            META, "1d", datetime(2011, 1, 1, tzinfo=UTC), datetime(2013, 1, 1, tzinfo=UTC)
        )
        wholly = await client.history_range(
            META, "1d", datetime(2008, 1, 1, tzinfo=UTC), datetime(2010, 1, 1, tzinfo=UTC)
        )
        with pytest.raises(NoDataError, match="no data for conid 107113386"):
            await client.history(META, "5d", "1d", start_time=datetime(2010, 1, 1, tzinfo=UTC))
    truth = sim.truth.history_bars(
        META, "1d", datetime(2011, 1, 1, tzinfo=UTC), datetime(2013, 1, 1, tzinfo=UTC)
    )
    assert truth.column("ts").to_pylist()[0] == datetime(2012, 5, 18, 13, 30, tzinfo=UTC)
    assert_same_bars(partly.table(lot_size=100), truth)
    assert wholly.table(lot_size=100).num_rows == 0
    assert len(wholly.pages) == 1  # "No data." ends the range at once


async def test_raw_pages_reach_the_hook_with_their_parameters(sim: Simulator) -> None:
    landed: list[tuple[str, dict[str, Any], Any, datetime]] = []

    async def hook(endpoint: str, params: dict[str, Any], payload: Any, at: datetime) -> None:
        landed.append((endpoint, params, payload, at))

    start, end = datetime(2024, 11, 18, tzinfo=UTC), datetime(2024, 11, 26, tzinfo=UTC)
    async with IbkrClient(settings_for(sim), on_response=hook) as client:
        result = await client.history_range(AAPL, "1min", start, end)
    history = [entry for entry in landed if entry[0] == "history"]
    assert [entry[2] for entry in history] == [page.payload for page in result.pages]
    first_params = history[0][1]
    assert first_params["conid"] == str(AAPL)
    assert first_params["bar"] == "1min"
    assert first_params["startTime"] == "20241126-00:00:00"
    assert first_params["period"].endswith("d")
    assert first_params["outsideRth"] == "false" and first_params["source"] == "Trades"
    assert all(entry[3].tzinfo is not None for entry in landed)
    assert "auth_status" not in {entry[0] for entry in landed}  # upkeep is not landed


async def test_other_calendars(sim: Simulator) -> None:
    """Forex (24/5) and CME futures plan their pages on their own calendars."""
    requests = [
        HistoryRequest(EURUSD, "5min", utc(2024, 11, 4), utc(2024, 11, 26), hours=FOREX),
        HistoryRequest(ES, "1min", utc(2024, 11, 18), utc(2024, 11, 26), hours=CME_FUTURES),
        HistoryRequest(
            ES, "15min", utc(2024, 10, 1), utc(2024, 11, 26), outside_rth=True, hours=CME_FUTURES
        ),
    ]
    async with IbkrClient(settings_for(sim)) as client:
        results = await client.history_ranges(requests)
    for request, result in zip(requests, results, strict=True):
        truth = sim.truth.history_bars(
            request.conid, request.bar_size, request.start, request.end, request.outside_rth
        )
        assert truth.num_rows > 1000, request
        assert_same_bars(result.table(lot_size=1), truth)
        assert len(result.pages) <= math.floor(math.ceil(truth.num_rows / 1000) * 1.05)


async def test_range_ending_after_the_gateways_now(sim: Simulator) -> None:
    """The simulator's clock is 2024-11-26 18:00Z: the first window lies wholly in the future
    ("No data."), one probe reaching back to the range start returns what exists."""
    start, end = utc(2024, 11, 25), utc(2024, 12, 7)
    async with IbkrClient(settings_for(sim)) as client:
        result = await client.history_range(AAPL, "1min", start, end)
    truth = sim.truth.history_bars(AAPL, "1min", start, end)
    assert truth.num_rows == 390 + 210  # Monday, and Tuesday until 13:00 New York
    assert_same_bars(result.table(lot_size=100), truth)
    assert len(result.pages) == 2
    assert result.pages[0].payload == {"error": "No data."}
