"""The history range planner: periods chosen from the exchange calendar, the final table
(clipped to the range, seam duplicates dropped, sorted; bad data kept for the warehouse), and
paging that bad data cannot steer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from ib_pipeline.calendars import US_EQUITY, bar_starts, calendar_for
from ib_pipeline.ibkr.endpoints import Endpoint
from ib_pipeline.ibkr.history import (
    HistoryRange,
    HistoryRequest,
    RangePlanner,
    fetch_range,
    minimum_requests,
)
from ib_pipeline.ibkr.parsing import ms_of
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.timeframes import parse_bar_size

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


def minute(hour: int, minute: int, day: int = 26) -> int:
    """Epoch ms of a minute of November 2024 (UTC); AAPL trades 14:30-21:00 on the 26th."""
    return ms_of(datetime(2024, 11, day, hour, minute, tzinfo=UTC))


def test_table_clips_deduplicates_and_sorts() -> None:
    start = datetime(2024, 11, 26, 14, 32, tzinfo=UTC)
    end = datetime(2024, 11, 26, 14, 39, tzinfo=UTC)
    request = HistoryRequest(AAPL, "1min", start, end)
    newest = page([minute(14, m) for m in (35, 36, 37, 38, 39)], close=2.0)
    older = page([minute(14, m) for m in (31, 32, 33, 34, 35)], close=1.0)  # 14:35 twice
    table = HistoryRange(request, (newest, older)).table(lot_size=100)
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    assert ts == [minute(14, m) for m in range(32, 39)]  # 14:31 and 14:39: other partitions'
    assert table.column("close").to_pylist()[3] == 2.0  # the newer page's bar wins
    assert set(table.column("volume").to_pylist()) == {300.0}
    assert HistoryRange(request, ()).table(lot_size=1).num_rows == 0


def test_table_keeps_what_the_warehouse_must_judge() -> None:
    """A time repeated inside one page and a bar at a time no session covers are bad data the
    warehouse must quarantine with a reason; the table must not make them vanish."""
    start = datetime(2024, 11, 26, 14, 32, tzinfo=UTC)
    end = datetime(2024, 11, 26, 14, 36, tzinfo=UTC)
    request = HistoryRequest(AAPL, "1min", start, end)
    saturday = minute(12, 0, day=23)  # outside the range and outside every session
    body = page([minute(14, m) for m in (32, 33, 34, 35)], close=1.0).payload
    body["data"].insert(2, {**body["data"][1], "c": 1.5})  # 14:33 twice, another close
    body["data"].append({**body["data"][0], "t": saturday})
    body["data"].append({**body["data"][0], "t": minute(14, 36)})  # in session: next range's
    one_page = RawResponse("history", {}, body, datetime(2024, 11, 26, tzinfo=UTC))
    table = HistoryRange(request, (one_page,)).table(lot_size=1)
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    assert ts == [saturday, *(minute(14, m) for m in (32, 33, 33, 34, 35))]
    assert table.column("close").to_pylist()[2:4] == [1.0, 1.5]  # the page's order


def test_monthly_bars_of_other_months_are_clipped() -> None:
    """A monthly bar is stamped 00:00Z on the 1st, in no session, yet names its month: bars of
    months outside the range belong to other partitions and are dropped."""
    request = HistoryRequest(AAPL, "1m", datetime(2024, 3, 1, tzinfo=UTC), NOV_END)
    months = [ms_of(datetime(2024, month, 1, tzinfo=UTC)) for month in range(1, 13)]
    table = HistoryRange(request, (page(months, close=1.0),)).table(lot_size=1)
    assert table.column("ts").cast(pa.int64()).to_pylist() == months[2:11]


class PagingGateway:
    """A `response.Call` answering `fetch_range` like the history endpoint (the most recent 1000
    of ``times`` before ``startTime``), with the earliest bar of its first answer moved to
    ``bogus``."""

    def __init__(self, times: list[int], bogus: int, swap: int | None = None) -> None:
        self.times = times
        self.bogus = bogus
        self.swap = swap  # also swap this bar of the first answer with the next one
        self.calls = 0

    async def call(
        self, endpoint: Endpoint, *, params: Mapping[str, Any] | None = None, **_: Any
    ) -> RawResponse:
        assert endpoint.name == "history" and params is not None
        start_time = datetime.strptime(params["startTime"], "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        cursor = ms_of(start_time)
        data = [
            {"t": t, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.0, "v": 3}
            for t in [t for t in self.times if t < cursor][-1000:]
        ]
        if self.calls == 0:
            data[0]["t"] = self.bogus
            if self.swap is not None:
                data[self.swap], data[self.swap + 1] = data[self.swap + 1], data[self.swap]
        self.calls += 1
        return RawResponse("history", dict(params), {"data": data}, start_time)


async def test_a_bar_outside_every_session_does_not_steer_the_paging() -> None:
    """A bogus early time in a full page must not end the paging (nor skip bars): the cursor
    moves to the page's earliest bar that lies in a session."""
    sessions = calendar_for(US_EQUITY).sessions(date(2024, 11, 18), date(2024, 11, 22))
    times = [int(t) for s in sessions for t in bar_starts(s, parse_bar_size("1min"), False)]
    request = HistoryRequest(
        AAPL, "1min", sessions[0].rth_open, sessions[-1].rth_close, hours=US_EQUITY
    )
    saturday = minute(12, 0, day=16)  # before the range start, in no session
    gateway = PagingGateway(times, bogus=saturday)
    history = await fetch_range(gateway.call, request)
    ts = history.table(lot_size=1).column("ts").cast(pa.int64()).to_pylist()
    assert gateway.calls == 2
    assert ts == [saturday, *times]  # every bar, and the bogus one for the warehouse to reject
    assert history.out_of_order == 0  # the bogus time makes no bar after it look out of order


async def test_bars_out_of_order_are_kept_sorted_and_counted() -> None:
    sessions = calendar_for(US_EQUITY).sessions(date(2024, 11, 18), date(2024, 11, 22))
    times = [int(t) for s in sessions for t in bar_starts(s, parse_bar_size("1min"), False)]
    request = HistoryRequest(AAPL, "1min", sessions[0].rth_open, sessions[-1].rth_close)
    gateway = PagingGateway(times, bogus=minute(12, 0, day=16), swap=500)
    history = await fetch_range(gateway.call, request)
    ts = history.table(lot_size=1).column("ts").cast(pa.int64()).to_pylist()
    assert history.out_of_order == 1
    assert ts[1:] == times
