"""Non-US exchanges end to end (issue 13 item 4): a universe mixing a US stock with stocks on
Xetra (IBIS), London (LSE) and Tokyo (TSEJ) resolves through contract search and loads daily
and one-minute bars through the real Dagster definitions. The stored bars equal the
simulator's ground truth, each bar sits in the partition of its own session date (a Tokyo
session opens on the previous evening in New York, the partitions' time zone), and the
``complete`` check passes with each exchange's calendar, lunch breaks and local holidays
included."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
from dagster_support import Pipeline

from assets.runs import run_assets, summarize_run
from ib_pipeline.calendars import calendar_for
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.simulator import Simulator

SIM_NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)

MIXED = [
    {"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ"},
    {"symbol": "SAP", "sec_type": "STK", "exchange": "IBIS"},
    {"symbol": "7203", "sec_type": "STK", "exchange": "TSEJ"},
    {"symbol": "VOD", "sec_type": "STK", "exchange": "LSE"},
]
# Friday 1 .. Tuesday 5 November 2024: Monday the 4th is a Tokyo holiday (Culture Day, observed)
# while New York, Frankfurt and London trade.
KEYS = ("2024-11-01", "2024-11-05")
TOKYO_HOLIDAY = date(2024, 11, 4)


def stored(p: Pipeline, conid: int, bar_size: str) -> pa.Table:
    table = p.store().read("bars")
    mine = table.filter(
        pc.and_(pc.equal(table["conid"], conid), pc.equal(table["bar_size"], bar_size))
    )
    return mine.select(HISTORY_BARS.names).cast(HISTORY_BARS).sort_by("ts")


def test_mixed_universe_loads_bars_equal_to_truth(
    sim: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    p = make_pipeline(sim, instruments=MIXED)
    contracts_run = summarize_run(run_assets(p.defs, ["contracts"]))
    assert contracts_run.success, contracts_run.errors
    contracts = {r["symbol"]: r for r in p.store().read("contracts").to_pylist()}
    assert contracts["SAP"]["currency"] == "EUR" and contracts["SAP"]["exchange"] == "IBIS"
    assert contracts["VOD"]["currency"] == "GBP"
    assert contracts["7203"]["currency"] == "JPY"
    assert contracts["7203"]["exchange_timezone"] == "Asia/Tokyo"

    summary = summarize_run(run_assets(p.defs, ["bars_1min"], partition_range=KEYS))
    assert summary.success and not summary.failed_checks, summary.checks
    assert summary.partitions["bars_1min"] == 3  # Fri, Mon, Tue
    for item in p.universe.instruments:
        conid = contracts[item.symbol]["conid"]
        sessions = calendar_for(item.trading_hours).sessions(
            date.fromisoformat(KEYS[0]), date.fromisoformat(KEYS[1])
        )
        truth = p.sim.truth.history_bars(
            conid, "1min", sessions[0].ext_open, sessions[-1].ext_close
        )
        mine = stored(p, conid, "1min")
        assert mine.num_rows == truth.num_rows > 0, item.symbol
        assert mine.equals(truth.sort_by("ts")), f"{item.symbol} differs from the truth"

    bars = p.store().read("bars")
    toyota = contracts["7203"]["conid"]
    tokyo = bars.filter(pc.equal(bars["conid"], toyota))
    assert set(tokyo["session_date"].to_pylist()) == {date(2024, 11, 1), date(2024, 11, 5)}
    # The Tokyo session of Tuesday the 5th opens at 00:00Z on the 5th (09:00 JST), which is
    # Monday evening in New York (the partitions' time zone), yet its bars are in the
    # partition of the 5th, its own session date; the Tokyo holiday holds no Tokyo bar.
    first = tokyo.filter(pc.equal(tokyo["session_date"], pa.scalar(date(2024, 11, 5))))
    assert pc.min(first["ts"]).as_py() == datetime(2024, 11, 5, 0, 0, tzinfo=UTC)
    partitions = sorted(m.partition for m in p.store().manifests("bars") if toyota in m.conids)
    assert partitions == [
        "bar_size=1min/session_date=2024-11-01",
        "bar_size=1min/session_date=2024-11-05",
    ]
    assert TOKYO_HOLIDAY not in set(tokyo["session_date"].to_pylist())
    # Lunch break: no Tokyo bar between 11:30 and 12:30 JST (02:30-03:30Z).
    hours = pc.hour(tokyo["ts"]).to_pylist()
    minutes = pc.minute(tokyo["ts"]).to_pylist()
    assert not any(
        (h == 2 and m >= 30) or (h == 3 and m < 30) for h, m in zip(hours, minutes, strict=True)
    )

    daily = summarize_run(run_assets(p.defs, ["bars_1d"], partition_range=("2024", "2024")))
    assert daily.success and not daily.failed_checks, daily.checks
    assert any(c.check == "complete" and c.passed for c in daily.checks)
    start = datetime(2024, 1, 1, tzinfo=UTC)  # a yearly partition holds the whole year
    for item in p.universe.instruments:
        conid = contracts[item.symbol]["conid"]
        truth = p.sim.truth.history_bars(conid, "1d", start, SIM_NOW).sort_by("ts")
        mine = stored(p, conid, "1d")
        assert mine.num_rows == truth.num_rows > 0, item.symbol
        assert mine.equals(truth), f"{item.symbol} daily bars differ from the truth"
        days = {t.date() for t in mine["ts"].to_pylist()}
        if item.exchange == "TSEJ":
            assert TOKYO_HOLIDAY not in days
