"""Partitions match the store's periods; session partitions skip days no instrument trades;
fetch planning joins consecutive sessions and skips complete partitions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from assets.bar_plan import (
    KeyExpectation,
    chunk_keys,
    expectation,
    fetch_windows,
    is_complete,
)
from assets.partitions import bars_partitions_def, keys_in_range
from ib_pipeline.storage.bar_periods import (
    Granularity,
    granularity,
    key_dates,
    keys_between,
    partition_id,
)
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.manifest import STATUS_OK, Manifest
from ib_pipeline.timeframes import parse_bar_size
from ib_pipeline.universe import InstrumentConfig, ResolvedContract, parse_universe

NOW = datetime(2024, 12, 31, tzinfo=UTC)


def universe(*instruments: dict[str, str], **changes: Any) -> Any:
    document: dict[str, Any] = {
        "history_start": "2024-11-01",
        "bar_sizes": ["1min", "1h", "1d"],
        "instruments": list(instruments) or [{"symbol": "AAPL", "exchange": "NASDAQ"}],
    }
    document.update(changes)
    return parse_universe(document)


STOCKS = universe()
WITH_FOREX = universe(
    {"symbol": "AAPL", "exchange": "NASDAQ"},
    {"symbol": "EUR.USD", "sec_type": "CASH", "exchange": "IDEALPRO"},
)


@pytest.mark.parametrize(
    ("label", "grain", "key"),
    [("1min", Granularity.SESSION, "2024-11-26"), ("30min", Granularity.SESSION, "2024-11-26"),
     ("1h", Granularity.MONTH, "2024-11"), ("8h", Granularity.MONTH, "2024-11"),
     ("1d", Granularity.YEAR, "2024"), ("1w", Granularity.YEAR, "2024"),
     ("1m", Granularity.YEAR, "2024")],
)  # fmt: skip
def test_partition_keys_are_the_store_periods(label: str, grain: Granularity, key: str) -> None:
    bar = parse_bar_size(label)
    assert granularity(bar) is grain
    partitions = bars_partitions_def(bar, STOCKS)
    assert partitions.has_partition_key(key)
    # The store files a bar of session 2024-11-26 under the partition id of that key.
    row = {
        "conid": 1, "bar_size": label, "ts": datetime(2024, 11, 26, 15, tzinfo=UTC),
        "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
        "session_date": date(2024, 11, 26),
    }  # fmt: skip
    spec = DATASETS["bars"]
    groups = spec.group(pa.Table.from_pylist([row], schema=spec.schema))
    assert [p.id for p, _ in groups] == [partition_id(bar, key)]


def test_session_partitions_skip_days_nobody_trades() -> None:
    stocks = bars_partitions_def(parse_bar_size("1min"), STOCKS)
    forex = bars_partitions_def(parse_bar_size("1min"), WITH_FOREX)
    # Thanksgiving: NYSE shut, forex trading; weekends: nobody.
    assert not stocks.has_partition_key("2024-11-28")
    assert forex.has_partition_key("2024-11-28")
    assert not forex.has_partition_key("2024-11-30")
    assert keys_in_range(stocks, "2024-11-25", "2024-11-29") == [
        "2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="'2024-11-28' is not a partition key"):
        keys_in_range(stocks, "2024-11-28", "2024-11-29")


def test_history_end_bounds_the_partitions() -> None:
    bounded = universe(history_end="2024-11-29")
    partitions = bars_partitions_def(parse_bar_size("1min"), bounded)
    keys = partitions.get_partition_keys(current_time=NOW)
    assert keys[0] == "2024-11-01" and keys[-1] == "2024-11-29"
    yearly = bars_partitions_def(parse_bar_size("1d"), bounded)
    assert yearly.get_partition_keys(current_time=NOW) == ["2024"]


def test_key_dates_and_ranges() -> None:
    assert key_dates("2024-02", Granularity.MONTH) == (date(2024, 2, 1), date(2024, 2, 29))
    assert key_dates("2024", Granularity.YEAR) == (date(2024, 1, 1), date(2024, 12, 31))
    with pytest.raises(ValueError, match="invalid month partition key '2024-13'"):
        key_dates("2024-13", Granularity.MONTH)
    assert keys_between(date(2024, 11, 29), date(2024, 12, 3), Granularity.SESSION) == [
        "2024-11-29", "2024-12-02", "2024-12-03"
    ]  # fmt: skip
    assert keys_between(date(2024, 11, 29), date(2025, 1, 3), Granularity.MONTH) == [
        "2024-11", "2024-12", "2025-01"
    ]  # fmt: skip


def aapl() -> ResolvedContract:
    return ResolvedContract(InstrumentConfig("AAPL", "STK", "NASDAQ"), 265598, None)


def eurusd() -> ResolvedContract:
    return ResolvedContract(InstrumentConfig("EUR.USD", "CASH", "IDEALPRO"), 12087792, None)


def test_fetch_windows_join_consecutive_sessions() -> None:
    bar = parse_bar_size("1min")
    keys = ["2024-11-25", "2024-11-26", "2024-11-27", "2024-11-28", "2024-11-29", "2024-12-03"]
    windows = fetch_windows(
        [aapl(), eurusd()], bar, keys, Granularity.SESSION, outside_rth=False, now=NOW
    )
    spans = [(w.contract.symbol, w.start.isoformat(), w.end.isoformat()) for w in windows]
    assert spans == [
        # Thanksgiving is no AAPL session, so 25-29 is one range; 12-02 is missing: a new one.
        ("AAPL", "2024-11-25T14:30:00+00:00", "2024-11-29T18:00:00+00:00"),
        ("AAPL", "2024-12-03T14:30:00+00:00", "2024-12-03T21:00:00+00:00"),
        ("EUR.USD", "2024-11-25T00:00:00+00:00", "2024-11-30T00:00:00+00:00"),
        ("EUR.USD", "2024-12-03T00:00:00+00:00", "2024-12-04T00:00:00+00:00"),
    ]


def test_fetch_windows_stop_at_now_and_monthly_bars_start_on_the_first() -> None:
    now = datetime(2024, 11, 26, 18, tzinfo=UTC)
    windows = fetch_windows(
        [aapl()], parse_bar_size("1min"), ["2024-11-26", "2024-11-27"], Granularity.SESSION,
        outside_rth=False, now=now,
    )  # fmt: skip
    assert [(w.start.hour, w.end) for w in windows] == [(14, now)]
    monthly = fetch_windows(
        [aapl()], parse_bar_size("1m"), ["2024"], Granularity.YEAR, outside_rth=False, now=NOW
    )
    assert monthly[0].start == datetime(2024, 1, 1, tzinfo=UTC)


def test_chunks_bound_the_bars_per_chunk() -> None:
    sizes = {"a": 400, "b": 400, "c": 400, "d": 2000, "e": 10}
    assert chunk_keys(list(sizes), sizes.__getitem__, max_bars=800) == [
        ["a", "b"], ["c"], ["d"], ["e"]
    ]  # fmt: skip


def manifest(
    conids: list[int], written_at: str, status: str = STATUS_OK, rows: int = 1440, bad: int = 0
) -> Manifest:
    return Manifest(
        dataset="bars", partition="p", data_file="f", rows=rows, content_sha256="x",
        size_bytes=1, time_column="ts", time_min=None, time_max=None, key_range={},
        conids=conids, sources=[], run_id="r", written_at=written_at, quarantined_rows=bad,
    ).with_status(status)  # fmt: skip


def test_completeness_of_a_stored_partition() -> None:
    expected = expectation([aapl(), eurusd()], "2024-11-28", Granularity.SESSION, False)
    # Thanksgiving: only the forex pair trades; its session closes at midnight UTC.
    assert expected == KeyExpectation(frozenset({12087792}), datetime(2024, 11, 29, tzinfo=UTC))
    assert is_complete(manifest([12087792], "2024-11-29T00:00:00.000Z"), expected)
    assert not is_complete(manifest([12087792], "2024-11-28T21:00:00.000Z"), expected)
    assert not is_complete(manifest([], "2024-12-01T00:00:00.000Z"), expected)
    assert not is_complete(manifest([12087792], "2024-12-01T00:00:00.000Z", "stale"), expected)
    assert not is_complete(None, expected)
