"""Ground truth: clean bars as HISTORY_BARS tables, and bad data that truth can account for."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ib_pipeline.clock import FixedClock
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.simulator.answers import NonFiniteJson, encode_body
from ib_pipeline.simulator.bad_data import BadDataSpec, BadKind, closed_instant_ms
from ib_pipeline.simulator.epoch import from_ms
from ib_pipeline.simulator.history import history_response
from ib_pipeline.simulator.instruments import by_symbol
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.truth import MarketTruth
from ib_pipeline.timeframes import parse_bar_size

AAPL, EURUSD = 265598, 12087792
ES = by_symbol("ES", "FUT")[0].conid
NOW = datetime(2024, 12, 3, 15, 0, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def make_market(seed: int = 42) -> Market:
    return Market(seed, FixedClock(NOW))


def test_history_bars_is_a_history_bars_table_in_shares() -> None:
    market = make_market()
    table = MarketTruth(market).history_bars(AAPL, "5min", utc(2024, 11, 25), NOW, True)
    assert table.schema.equals(HISTORY_BARS, check_metadata=True)
    bars = market.bars(AAPL, parse_bar_size("5min"), utc(2024, 11, 25), NOW, True)
    assert len(table) == len(bars) > 500
    assert table.column("ts").cast(pa.int64()).to_pylist() == bars.ts_ms.tolist()
    assert table.column("volume").to_pylist() == bars.volume_shares.astype(float).tolist()
    assert set(table.column("conid").to_pylist()) == {AAPL}
    assert set(table.column("bar_size").to_pylist()) == {"5min"}
    with pytest.raises(ValueError, match="unknown bar size"):
        MarketTruth(market).history_bars(AAPL, "5m", utc(2024, 11, 25), NOW)


def test_served_bars_are_the_response_rows() -> None:
    market = make_market()
    params = {"conid": str(ES), "period": "3d", "bar": "1min", "outsideRth": "true"}
    table = MarketTruth(market).served_bars(params)
    _, body = history_response(market, params)
    assert len(table) == len(body["data"]) == 1000
    assert table.column("ts").cast(pa.int64()).to_pylist() == [r["t"] for r in body["data"]]
    assert table.column("volume").to_pylist() == [r["v"] for r in body["data"]]
    refused = MarketTruth(market).served_bars({"conid": "x", "period": "1d", "bar": "1h"})
    assert len(refused) == 0
    with pytest.raises(ValueError, match="refuses"):
        MarketTruth(market).history_window({"conid": "x", "period": "1d", "bar": "1h"})


# -- bad data ---------------------------------------------------------------------------------


def in_a_session(market: Market, conid: int, ts: int, outside_rth: bool) -> bool:
    day = from_ms(ts).date()
    sessions = market.calendar(conid).sessions(day - timedelta(days=2), day + timedelta(days=2))
    return any(s.bounds_ms(outside_rth)[0] <= ts < s.bounds_ms(outside_rth)[1] for s in sessions)


def quarantine(
    market: Market, conid: int, rows: list[dict[str, Any]], outside_rth: bool
) -> dict[int, BadKind]:
    """A reference loader: row-level checks first, then order checks on the rows that remain."""
    flagged: dict[int, BadKind] = {}
    for i, row in enumerate(rows):
        prices = [row[name] for name in ("o", "h", "l", "c")]
        if any(math.isnan(p) for p in prices):
            flagged[i] = BadKind.NAN_PRICE
        elif any(math.isinf(p) for p in prices):
            flagged[i] = BadKind.INFINITE_PRICE
        elif row["h"] < row["l"]:
            flagged[i] = BadKind.HIGH_BELOW_LOW
        elif row["v"] < 0:
            flagged[i] = BadKind.NEGATIVE_VOLUME
        elif not in_a_session(market, conid, row["t"], outside_rth):
            flagged[i] = BadKind.OUTSIDE_SESSION
    latest = -1
    for i, row in enumerate(rows):
        if i in flagged:
            continue
        if row["t"] == latest:
            flagged[i] = BadKind.DUPLICATE_TIMESTAMP
        elif row["t"] < latest:
            flagged[i] = BadKind.UNSORTED_TIMESTAMP
        else:
            latest = row["t"]
    return flagged


@pytest.mark.parametrize(
    ("conid", "bar", "period", "outside_rth"),
    [
        (AAPL, "1min", "3d", "false"),
        (AAPL, "5min", "1w", "true"),
        (ES, "1h", "1m", "true"),
        (EURUSD, "1min", "1d", "false"),
        (AAPL, "1d", "1y", "false"),
    ],
)
def test_exactly_the_reported_rows_are_bad(
    conid: int, bar: str, period: str, outside_rth: str
) -> None:
    market = make_market()
    params = {"conid": str(conid), "bar": bar, "period": period, "outsideRth": outside_rth}
    spec = BadDataSpec.mixed(0.1, seed=3)
    _, clean = history_response(market, params)
    status, dirty = history_response(market, params, spec)
    report = MarketTruth(market).corrupted_bars(params, spec)
    assert status == 200 and len(report) > 5
    assert {c.kind for c in report} == set(BadKind)
    found = quarantine(market, conid, dirty["data"], outside_rth == "true")
    assert found == {c.index: c.kind for c in report}
    # everything else is the clean answer, in order, untouched
    kept = [row for i, row in enumerate(dirty["data"]) if i not in found]
    untouched = {c.clean_ts_ms for c in report if c.kind is not BadKind.DUPLICATE_TIMESTAMP}
    assert kept == [row for row in clean["data"] if row["t"] not in untouched]
    for c in report:
        assert dirty["data"][c.index]["t"] == c.ts_ms
        if c.kind is BadKind.OUTSIDE_SESSION:
            assert c.ts_ms == closed_instant_ms(c.clean_ts_ms)


def test_counts_are_exact_and_deterministic() -> None:
    market = make_market()
    params = {"conid": str(AAPL), "bar": "1min", "period": "2d", "outsideRth": "true"}
    spec = BadDataSpec(counts={kind: 3 for kind in BadKind}, seed=11)
    report = MarketTruth(market).corrupted_bars(params, spec)
    assert sorted(c.kind.value for c in report) == sorted(
        k.value for k in BadKind for _ in range(3)
    )
    _, body = history_response(market, params, spec)
    assert len(body["data"]) == 1000 + 3  # the duplicates are extra rows
    assert MarketTruth(make_market()).corrupted_bars(params, spec) == report
    other = BadDataSpec(counts={kind: 3 for kind in BadKind}, seed=12)
    assert MarketTruth(market).corrupted_bars(params, other) != report


def test_bad_data_never_touches_the_clean_market() -> None:
    market = make_market()
    params = {"conid": str(AAPL), "bar": "1min", "period": "1d"}
    before = encode_body(history_response(market, params)[1])
    history_response(market, params, BadDataSpec.mixed(0.5, seed=1))
    assert encode_body(history_response(market, params)[1]) == before
    assert MarketTruth(market).corrupted_bars(params, BadDataSpec()) == []


def test_non_finite_values_are_written_as_nan_and_infinity_tokens() -> None:
    market = make_market()
    params = {"conid": str(AAPL), "bar": "1min", "period": "1d"}
    spec = BadDataSpec(counts={BadKind.NAN_PRICE: 2, BadKind.INFINITE_PRICE: 2})
    _, body = history_response(market, params, spec)
    assert isinstance(body, NonFiniteJson)
    raw = encode_body(body)
    assert b"NaN" in raw and b"Infinity" in raw
    decoded = json.loads(raw)
    assert sum(math.isnan(v) for r in decoded["data"] for v in r.values()) == 2
    assert sum(math.isinf(v) for r in decoded["data"] for v in r.values()) == 2
    # a bad-data response without non-finite values keeps the fast encoder
    _, plain = history_response(market, params, BadDataSpec(counts={BadKind.NEGATIVE_VOLUME: 1}))
    assert not isinstance(plain, NonFiniteJson)


def test_closed_instants_are_outside_every_market() -> None:
    market = make_market()
    start = utc(2024, 3, 4)  # a DST change week in the US follows
    moments = [start + timedelta(minutes=37 * k) for k in range(0, 14 * 24 * 60 // 37)]
    for conid in (AAPL, ES, EURUSD):
        for moment in moments[::7]:
            instant = closed_instant_ms(int(moment.timestamp() * 1000))
            assert from_ms(instant).weekday() == 5
            assert not in_a_session(market, conid, instant, True)
    instants = [closed_instant_ms(int(m.timestamp() * 1000)) for m in moments[:200]]
    assert len(set(instants)) == len(instants)  # never two rows on the same instant


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rates": {BadKind.NAN_PRICE: 1.5}},
        {"counts": {BadKind.NAN_PRICE: -1}},
        {"rates": {"nan_price": 0.1}},
        {"seed": -2},
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="BadDataSpec"):
        BadDataSpec(**kwargs)


def test_mixed_spreads_one_rate_over_every_kind() -> None:
    spec = BadDataSpec.mixed(0.07, seed=2)
    assert set(spec.rates) == set(BadKind)
    assert np.isclose(sum(spec.rates.values()), 0.07)
    with pytest.raises(ValueError, match="rate"):
        BadDataSpec.mixed(2.0)
