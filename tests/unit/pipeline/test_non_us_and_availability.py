"""Issue 13 items 4 and 5 in the library: non-US stocks are not in lots of 100 and their bars
belong to their own exchange's session dates; market-data availability codes are read as IBKR
documents them, kept per instrument in a bar partition's manifest, and delayed data is found."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from assets.partitions import non_session_weekdays, session_partitions_def
from assets.verify import find_delayed_bars, find_delayed_quotes
from ib_pipeline.calendars import NON_US_EQUITY
from ib_pipeline.conversion import instrument_info
from ib_pipeline.ibkr.normalize import history_md_availability, md_availability_kind
from ib_pipeline.storage.bar_sessions import locate_bars
from ib_pipeline.storage.manifest import Manifest
from ib_pipeline.universe import InstrumentConfig, parse_universe


@pytest.mark.parametrize(
    ("sec_type", "exchange", "lot"),
    [
        ("STK", "NASDAQ", 100),
        ("STK", "ARCA", 100),
        *[("STK", code, 1) for code in NON_US_EQUITY],
        ("CASH", "IDEALPRO", 1),
    ],
)
def test_only_us_stocks_are_in_lots_of_100(sec_type: str, exchange: str, lot: int) -> None:
    assert InstrumentConfig("X", sec_type, exchange).lot_size == lot
    assert instrument_info(sec_type, f"{exchange},SMART", 1).lot_size == float(lot)


def test_a_non_us_universe_validates_and_an_unknown_exchange_is_named() -> None:
    universe = parse_universe(
        {
            "history_start": "2024-10-01",
            "bar_sizes": ["1min"],
            "instruments": [
                {"symbol": "SAP", "exchange": "IBIS"},
                {"symbol": "VOD", "exchange": "LSE"},
                {"symbol": "7203", "exchange": "TSEJ"},
                {"symbol": "700", "exchange": "SEHK"},
                {"symbol": "BHP", "exchange": "ASX"},
                {"symbol": "RY", "exchange": "TSE"},
            ],
        }
    )
    calendars = [item.trading_hours.calendar for item in universe.instruments]
    assert calendars == ["XETR", "XLON", "XTKS", "XHKG", "XASX", "XTSE"]
    with pytest.raises(ValueError, match="XETRA"):
        parse_universe(
            {
                "history_start": "2024-10-01",
                "bar_sizes": ["1min"],
                "instruments": [{"symbol": "SAP", "exchange": "XETRA"}],
            }
        )


def test_tokyo_bars_belong_to_their_tokyo_session_date() -> None:
    tokyo = NON_US_EQUITY["TSEJ"]
    # 00:00Z on the 5th is 09:00 JST on the 5th (Monday evening in New York); 06:29Z the last
    # minute before the 15:30 close (2024: 15:00); 02:30Z is inside the lunch break.
    stamps = [
        datetime(2024, 11, 5, 0, 0, tzinfo=UTC),
        datetime(2024, 11, 5, 5, 59, tzinfo=UTC),
        datetime(2024, 11, 5, 2, 30, tzinfo=UTC),
    ]
    ts = np.array([round(s.timestamp() * 1000) for s in stamps], dtype=np.int64)
    where = locate_bars(pa.array([7203] * 3), pa.array(["1min"] * 3), ts, {7203: tokyo}, False)
    assert [str(d) for d in where.session_date[:2]] == ["2024-11-05", "2024-11-05"]
    assert where.in_session.tolist() == [True, True, True]
    assert where.at_bar_start.tolist() == [True, True, False]  # no bar during lunch


def test_session_partitions_skip_only_days_nobody_trades() -> None:
    tokyo_only = parse_universe(
        {
            "history_start": "2024-11-01",
            "bar_sizes": ["1min"],
            "history_end": "2024-11-08",
            "instruments": [{"symbol": "7203", "exchange": "TSEJ"}],
        }
    )
    assert date(2024, 11, 4) in non_session_weekdays(tokyo_only)  # Culture Day (observed)
    assert "2024-11-04" not in session_partitions_def(tokyo_only).get_partition_keys()
    mixed = parse_universe(
        {
            "history_start": "2024-11-01",
            "bar_sizes": ["1min"],
            "history_end": "2024-11-08",
            "instruments": [
                {"symbol": "7203", "exchange": "TSEJ"},
                {"symbol": "AAPL", "exchange": "NASDAQ"},
            ],
        }
    )
    assert non_session_weekdays(mixed) == []
    assert "2024-11-04" in session_partitions_def(mixed).get_partition_keys()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("RpB", "realtime"),
        ("S", "realtime"),
        ("DpB", "delayed"),
        ("D", "delayed"),
        ("Z", "frozen"),
        ("YP", "frozen_delayed"),
        ("N", "not_subscribed"),
        ("Q", "unknown"),
        ("", None),
        (None, None),
    ],
)
def test_availability_codes_mean_what_ibkr_says(code: str | None, kind: str | None) -> None:
    assert md_availability_kind(code) == kind


def test_history_availability_is_read_leniently() -> None:
    assert history_md_availability({"mdAvailability": "D", "data": []}) == "D"
    assert history_md_availability({"error": "No data."}) is None
    assert history_md_availability({"mdAvailability": " "}) is None
    assert history_md_availability([]) is None


def _source(conid: int, code: str | None, fetched: str) -> dict[str, Any]:
    source: dict[str, Any] = {
        "endpoint": "history",
        "params": {"conid": str(conid), "bar": "1min"},
        "fetched_at": fetched,
    }
    if code is not None:
        source["md_availability"] = code
    return source


def _manifest(partition: str, sources: list[Any]) -> Manifest:
    return Manifest(
        dataset="bars",
        partition=partition,
        data_file="x.parquet",
        rows=1,
        content_sha256="",
        size_bytes=1,
        time_column="ts",
        time_min=None,
        time_max=None,
        key_range={},
        conids=[1, 2, 3],
        sources=sources,
        run_id="r",
        written_at="",
        quarantined_rows=0,
    )


def test_manifest_keeps_the_newest_availability_per_instrument() -> None:
    manifest = _manifest(
        "bar_size=1min/session_date=2024-11-25",
        [
            _source(1, "D", "2024-11-25T10:00:00.000Z"),
            _source(1, "S", "2024-11-26T10:00:00.000Z"),  # refetched with a subscription
            _source(2, "D", "2024-11-26T10:00:00.000Z"),
            _source(3, None, "2024-11-26T10:00:00.000Z"),  # an answer without the code
            "a plain source",
        ],
    )
    assert manifest.market_data_availability() == {1: "S", 2: "D"}
    again = Manifest.from_json(manifest.to_json(), "test")
    assert again.market_data_availability() == {1: "S", 2: "D"}
    [delayed] = find_delayed_bars([manifest], {2: "SAP"})
    assert (delayed.conid, delayed.symbol, delayed.code, delayed.kind) == (2, "SAP", "D", "delayed")
    assert delayed.where == ("bar_size=1min/session_date=2024-11-25",)


def test_delayed_quotes_are_named() -> None:
    as_of = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
    quotes = pa.table(
        {
            "as_of": pa.array([as_of] * 3, pa.timestamp("ms", tz="UTC")),
            "conid": [1, 2, 3],
            "market_data_availability": ["RpB", "DpB", None],
        }
    )
    [delayed] = find_delayed_quotes(quotes, {1: "AAPL"})
    assert (delayed.conid, delayed.symbol, delayed.code) == (2, "2", "DpB")
    assert delayed.where == (as_of.isoformat(),)
