"""`ib_pipeline.research.Warehouse` on a warehouse the demo loaded: answers by symbol equal to
the simulator's ground truth, in pandas, polars and Arrow, and clear errors or warnings
instead of wrong answers."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from ib_pipeline.research import (
    AmbiguousInstrumentError,
    Instrument,
    NoDataWarning,
    UnknownAccountError,
    UnknownInstrumentError,
    Warehouse,
)
from ib_pipeline.simulator import Simulator

AAPL = 265598
ES = 900000053
SESSION = date(2025, 11, 26)

pytestmark = pytest.mark.timeout(300)


def test_bars_by_symbol_equal_the_ground_truth(wh: Warehouse, truth_sim: Simulator) -> None:
    bars = wh.bars("aapl", "1min", SESSION, SESSION)
    session = truth_sim.market.session(AAPL, SESSION)
    truth = truth_sim.truth.history_bars(AAPL, "1min", *session.bounds(False)).to_pandas()
    assert len(bars) == len(truth) == 390
    assert (bars["symbol"] == "AAPL").all() and (bars["conid"] == AAPL).all()
    assert list(bars["ts"]) == list(truth["ts"])  # ts is the bar's start, UTC
    assert bars["close"].tolist() == pytest.approx(truth["close"].tolist())
    assert bars["volume"].tolist() == pytest.approx(truth["volume"].tolist())
    assert str(bars["ts_local"].dt.tz) == "America/New_York"
    first = bars["ts_local"].iloc[0]
    assert (first.hour, first.minute) == (9, 30)  # the NYSE open, exchange time


def test_time_bounds_select_bar_starts_in_the_exchange_zone(wh: Warehouse) -> None:
    # naive times are read in the instrument's zone: 10:00-10:05 Chicago = 16:00-16:05 UTC
    bars = wh.bars("ES", "1min", "2025-11-26T10:00", "2025-11-26T10:05", as_="arrow")
    assert isinstance(bars, pa.Table)
    assert bars.num_rows == 5
    assert bars.column("ts")[0].as_py() == datetime(2025, 11, 26, 16, 0, tzinfo=UTC)
    utc = wh.bars(ES, "1min", "2025-11-26T16:00Z", "2025-11-26T16:05Z", tz="UTC", as_="polars")
    assert isinstance(utc, pl.DataFrame)
    assert "ts_local" not in utc.columns
    assert utc["close"].to_list() == bars.column("close").to_pylist()


def test_daily_from_minutes_and_stored_daily_bars(wh: Warehouse, truth_sim: Simulator) -> None:
    daily = wh.daily(["AAPL", "SPY"], "2025-11-24", "2025-11-28")
    assert set(daily["symbol"]) == {"AAPL", "SPY"}
    assert "vwap_approx" in daily.columns
    aapl = daily[daily["symbol"] == "AAPL"].set_index("session_date")
    session = truth_sim.market.session(AAPL, SESSION)
    truth = truth_sim.truth.history_bars(AAPL, "1d", *session.bounds(False))
    assert aapl.loc[SESSION, "close"] == pytest.approx(truth.column("close")[0].as_py())
    assert aapl.loc[SESSION, "volume"] == pytest.approx(truth.column("volume")[0].as_py())
    stored = wh.daily("AAPL", SESSION, SESSION, bar_size="1d")
    assert stored["close"].iloc[0] == pytest.approx(truth.column("close")[0].as_py())


def test_quotes_positions_and_portfolio_value(wh: Warehouse, truth_sim: Simulator) -> None:
    quotes = wh.quotes("AAPL")
    assert len(quotes) == 1
    assert quotes["last"].iloc[0] == pytest.approx(truth_sim.truth.quote(AAPL)["last"])
    # the demo quotes its 12 instruments and the 55 stocks its accounts hold (include_positions)
    assert len(wh.quotes()) == 67
    assert len(wh.quotes(as_of="2025-11-28T21:00Z")) == 67
    # ... at each session close of its week: as of Thursday, Wednesday's close is the latest
    wednesday = wh.quotes("AAPL", as_of="2025-11-27")
    assert list(wednesday["as_of"]) == [datetime(2025, 11, 26, 21, tzinfo=UTC)]
    value = wh.portfolio_value()
    assert set(value["account"]) == set(truth_sim.truth.accounts)
    # one value per snapshot of the demo's week (each session close); the last one at its clock
    assert set(value.groupby("account")["as_of"].nunique()) == {4}
    for row in value.sort_values("as_of").groupby("account").tail(1).itertuples():
        expected = truth_sim.truth.summary(row.account)["netliquidation"]
        assert row.net_liquidation == pytest.approx(expected)
    account = truth_sim.truth.accounts[1]
    positions = wh.positions(account)
    held = {p["conid"]: p["position"] for p in truth_sim.truth.positions(account)}
    assert dict(zip(positions["conid"], positions["position"], strict=True)) == pytest.approx(held)
    marked = wh.marked_positions(account)
    quoted = marked[marked["mark_source"] == "quote"]
    assert not quoted.empty
    assert (quoted["marked_value"] == quoted["position"] * quoted["mark"]).all()


def test_contracts_carry_exchange_and_time_zone(wh: Warehouse) -> None:
    contracts = wh.contracts().set_index("symbol")
    assert contracts.loc["ES", "timezone"] == "America/Chicago"
    assert contracts.loc["AAPL", "timezone"] == "America/New_York"
    assert contracts.loc["EUR.USD", "timezone"] == "UTC"


def test_unknown_or_ambiguous_names_raise_clearly(wh: Warehouse) -> None:
    with pytest.raises(UnknownInstrumentError, match=r"'APPL'.*did you mean [A-Z, ]*\bAAPL\b"):
        wh.bars("APPL")
    with pytest.raises(UnknownInstrumentError, match="conid 99 "):
        wh.bars(99)
    with pytest.raises(UnknownAccountError, match=r"DU0.*DU1234567"):
        wh.positions("DU0")
    with pytest.raises(ValueError, match="unknown bar size '7min'"):
        wh.bars("AAPL", "7min")
    # a second conid for AAPL makes the symbol ambiguous: the error lists both
    wh.instruments()[1] = Instrument(1, "AAPL", "STK", "NYSE", "America/New_York")
    with pytest.raises(AmbiguousInstrumentError, match=r"1 \(STK NYSE\).*265598|265598.*1 \("):
        wh.bars("AAPL")


def test_no_data_is_an_empty_frame_with_a_warning(wh: Warehouse) -> None:
    with pytest.warns(NoDataWarning, match="holds sessions 2025-11-24 .. 2025-11-28"):
        empty = wh.bars("AAPL", "1min", "2024-01-01", "2024-01-05")
    assert isinstance(empty, pd.DataFrame) and empty.empty
    assert {"ts", "ts_local", "close"} <= set(empty.columns)
    with pytest.warns(NoDataWarning, match="no 5min bars of AAPL"):
        wh.bars("AAPL", "5min")
    with pytest.warns(NoDataWarning, match="no quotes at or before"):
        assert wh.quotes(as_of="2025-11-23").empty  # the first snapshot: Monday's close
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wh.bars("AAPL", "1min", SESSION, SESSION)  # data: no warning


def test_bar_queries_prune_partitions_by_session(wh: Warehouse) -> None:
    plan = wh.con.execute(
        "EXPLAIN ANALYZE SELECT * FROM bars WHERE conid = ? AND bar_size = '1min' "
        "AND session_date >= ? AND session_date <= ?",
        [AAPL, SESSION, SESSION],
    ).fetchall()
    text = "\n".join(str(cell) for row in plan for cell in row)
    assert "Scanning Files: 1/" in text or "File Filters" in text


def test_a_missing_warehouse_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no warehouse at"):
        Warehouse(tmp_path / "nothing")
