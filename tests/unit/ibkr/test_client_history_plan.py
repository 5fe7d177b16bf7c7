"""The history range planner: periods chosen from the exchange calendar, and the final table
(clipped to the range, seam duplicates dropped, sorted)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ib_pipeline.ibkr.history import (
    HistoryRange,
    HistoryRequest,
    RangePlanner,
    minimum_requests,
)
from ib_pipeline.ibkr.parsing import ms_of
from ib_pipeline.ibkr.raw import RawResponse

AAPL = 265598
# Twenty full regular sessions of November 2024 (Nov 28 is Thanksgiving, Nov 29 a half day).
NOV_START = datetime(2024, 10, 31, 0, 0, tzinfo=UTC)
NOV_END = datetime(2024, 11, 28, 0, 0, tzinfo=UTC)


def test_minute_bars_plan_full_pages() -> None:
    request = HistoryRequest(AAPL, "1min", NOV_START, NOV_END)
    planner = RangePlanner(request)
    assert planner.expected_bars(ms_of(NOV_END)) == 20 * 390
    plan = planner.plan(ms_of(NOV_END))
    # 1000 one-minute bars need 3 regular sessions (1170 bars); one more as a margin.
    assert plan.period == "4d"
    assert plan.expected_bars == 1000
    assert plan.reaches_start is False


def test_last_page_asks_only_for_what_is_left() -> None:
    request = HistoryRequest(AAPL, "1min", NOV_START, NOV_END)
    planner = RangePlanner(request)
    cursor = ms_of(datetime(2024, 11, 1, 17, 0, tzinfo=UTC))  # 3.5 h into Nov 1
    plan = planner.plan(cursor)
    assert plan.expected_bars == 390 + 210  # Oct 31 and the morning of Nov 1
    assert plan.period == "3d"
    assert plan.reaches_start is True


def test_outside_rth_counts_extended_sessions() -> None:
    end = datetime(2024, 11, 28, 6, 0, tzinfo=UTC)  # Nov 27 ends at 20:00 EST = 01:00Z
    request = HistoryRequest(AAPL, "5min", NOV_START, end, outside_rth=True)
    planner = RangePlanner(request)
    assert planner.expected_bars(ms_of(end)) == 20 * 192  # 04:00-20:00 in 5-minute bars
    assert planner.plan(ms_of(end)).period == "7d"  # ceil(1000 / 192) = 6, plus 1


def test_daily_bars_over_years_use_whole_pages() -> None:
    start = datetime(2014, 1, 1, tzinfo=UTC)
    end = datetime(2024, 1, 1, tzinfo=UTC)
    planner = RangePlanner(HistoryRequest(AAPL, "1d", start, end))
    bars = planner.expected_bars(ms_of(end))
    assert 2510 <= bars <= 2520  # ten years of NYSE sessions
    plan = planner.plan(ms_of(end))
    assert plan.period == "1000d" and plan.expected_bars == 1000
    assert minimum_requests(bars) == 3


def test_weekly_and_monthly_periods() -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    end = datetime(2024, 1, 1, tzinfo=UTC)
    weekly = RangePlanner(HistoryRequest(AAPL, "1w", start, end))
    weeks = weekly.expected_bars(ms_of(end))
    assert 205 <= weeks <= 210
    assert weekly.plan(ms_of(end)).period == f"{weeks + 1}w"
    monthly = RangePlanner(HistoryRequest(AAPL, "1m", start, end))
    assert monthly.expected_bars(ms_of(end)) == 48
    assert monthly.plan(ms_of(end)).period == "49m"


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="must be before"):
        HistoryRequest(AAPL, "1d", NOV_END, NOV_START)
    with pytest.raises(ValueError, match="timezone-aware"):
        HistoryRequest(AAPL, "1d", datetime(2024, 1, 1), NOV_END)
    with pytest.raises(ValueError, match="unknown bar size"):
        HistoryRequest(AAPL, "7min", NOV_START, NOV_END)
    with pytest.raises(ValueError, match="conid"):
        HistoryRequest(0, "1d", NOV_START, NOV_END)


def page(times: list[int], close: float) -> RawResponse:
    data = [{"t": t, "o": 1.0, "h": 2.0, "l": 0.5, "c": close, "v": 3} for t in times]
    fetched = datetime(2024, 11, 26, tzinfo=UTC)
    return RawResponse("history", {}, {"data": data}, fetched)


def test_table_clips_deduplicates_and_sorts() -> None:
    start = datetime.fromtimestamp(100, UTC)
    end = datetime.fromtimestamp(500, UTC)
    request = HistoryRequest(AAPL, "1min", start, end)
    newest = page([300_000, 360_000, 420_000, 480_000, 540_000], close=2.0)
    older = page([60_000, 120_000, 180_000, 240_000, 300_000], close=1.0)  # 300_000 twice
    table = HistoryRange(request, (newest, older)).table(lot_size=100)
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    assert ts == [120_000, 180_000, 240_000, 300_000, 360_000, 420_000, 480_000]
    assert table.column("close").to_pylist()[3] == 2.0  # the newer page's bar wins
    assert set(table.column("volume").to_pylist()) == {300.0}
    assert HistoryRange(request, ()).table(lot_size=1).num_rows == 0
