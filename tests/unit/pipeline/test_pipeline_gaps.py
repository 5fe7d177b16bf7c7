"""Completeness: the bars a session implies (half days, partial sessions) and the gaps named."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from assets.verify import expected_bars, find_gaps
from ib_pipeline.calendars import US_EQUITY, calendar_for
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.timeframes import parse_bar_size
from ib_pipeline.universe import InstrumentConfig, ResolvedContract

AAPL = ResolvedContract(InstrumentConfig("AAPL", "STK", "NASDAQ"), 265598, None)
LATER = datetime(2025, 1, 1, tzinfo=UTC)


def bars(stamps: list[int]) -> pa.Table:
    n = len(stamps)
    return pa.table(
        {
            "conid": [AAPL.conid] * n, "bar_size": ["1min"] * n, "ts": stamps,
            "open": [1.0] * n, "high": [1.0] * n, "low": [1.0] * n, "close": [1.0] * n,
            "volume": [1.0] * n,
        },
        schema=HISTORY_BARS,
    )  # fmt: skip


def test_expected_bars_follow_the_calendar() -> None:
    cal = calendar_for(US_EQUITY)
    minute, hour, day = (parse_bar_size(x) for x in ("1min", "1h", "1d"))
    full, half = cal.session(date(2024, 11, 26)), cal.session(date(2024, 11, 29))
    now_ms = round(LATER.timestamp() * 1000)
    assert len(expected_bars(full, minute, False, now_ms)) == 390
    assert len(expected_bars(half, minute, False, now_ms)) == 210
    assert len(expected_bars(full, hour, False, now_ms)) == 7  # 09:30-10:00, then 10:00 ... 15:00
    assert len(expected_bars(half, day, False, now_ms)) == 1
    midday = round(datetime(2024, 11, 26, 15, 0, 30, tzinfo=UTC).timestamp() * 1000)
    assert len(expected_bars(full, minute, False, midday)) == 30  # 14:30 .. 14:59 completed
    assert len(expected_bars(full, hour, False, midday)) == 1  # 09:30-10:00 New York only
    assert len(expected_bars(full, day, False, midday)) == 0


def test_gaps_name_missing_and_extra_bars() -> None:
    session = calendar_for(US_EQUITY).session(date(2024, 11, 29))
    minute = parse_bar_size("1min")
    now_ms = round(LATER.timestamp() * 1000)
    wanted = [int(t) for t in expected_bars(session, minute, False, now_ms)]
    stray = wanted[-1] + 60_000  # 13:00 New York: after the half day's close
    stored = bars([t for t in wanted if t not in (wanted[5], wanted[6])] + [stray])
    gaps = find_gaps(stored, [AAPL], {AAPL.conid: [session]}, minute, outside_rth=False, now=LATER)
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.symbol, gap.session) == ("AAPL", "2024-11-29")
    assert gap.missing == (wanted[5], wanted[6])
    assert gap.extra == (stray,)
    assert find_gaps(bars(wanted), [AAPL], {AAPL.conid: [session]}, minute,
                     outside_rth=False, now=LATER) == []  # fmt: skip
