"""Snapshot entries: formatting, agreement with the latest bar, the "C" prefix when closed."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ib_pipeline.clock import FixedClock
from ib_pipeline.simulator.epoch import to_ms
from ib_pipeline.simulator.instruments import by_symbol
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.snapshot import (
    FIELD_NAMES,
    format_volume_short,
    snapshot_fields,
    snapshot_preflight,
)
from ib_pipeline.simulator.truth import MarketTruth

AAPL, EURUSD = 265598, 12087792
ES = by_symbol("ES", "FUT")[0].conid
ALL_FIELDS = [*FIELD_NAMES, "9999"]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def at(moment: datetime, seed: int = 42) -> Market:
    return Market(seed, FixedClock(moment))


def number(text: str) -> float:
    return float(text.lstrip("CH").replace(",", ""))


def test_preflight_is_the_conid_only() -> None:
    assert snapshot_preflight(AAPL) == {"conid": AAPL, "conidEx": "265598"}


def test_entry_during_the_session_agrees_with_the_latest_bar() -> None:
    now = utc(2024, 12, 3, 15, 0, second=30)  # 10:00:30 New York
    market = at(now)
    entry = snapshot_fields(market, AAPL, ALL_FIELDS, server_id="q3")
    ext = market.minute_bars(AAPL, date(2024, 12, 3), True)
    done = (to_ms(now) - int(ext.ts_ms[0])) // 60_000  # minutes completed since 04:00
    assert done == 360
    last = float(ext.close[done - 1])
    previous_close = float(market.minute_bars(AAPL, date(2024, 12, 2), True).close[-1])
    assert entry["31"] == f"{last:.2f}"
    assert entry["84"] == f"{last - 0.01:.2f}" and entry["86"] == f"{last + 0.01:.2f}"
    assert entry["7295"] == f"{ext.open[0]:.2f}"
    assert entry["70"] == f"{ext.high[:done].max():.2f}"
    assert entry["71"] == f"{ext.low[:done].min():.2f}"
    assert entry["7741"] == f"{previous_close:.2f}"
    assert entry["82"] == f"{last - previous_close:.2f}"
    assert entry["83"] == f"{(round(last - previous_close, 2)) / previous_close * 100:.2f}"
    volume = int(ext.volume_shares[:done].sum())
    assert entry["7762"] == str(volume)
    assert entry["87"] == format_volume_short(volume) and entry["87"].endswith("M")
    assert "7296" not in entry  # the session has not closed
    assert "9999" not in entry  # unknown fields are simply absent
    assert (entry["55"], entry["6509"], entry["6070"]) == ("AAPL", "RpB", "STK")
    assert entry["_updated"] == to_ms(now)
    assert (entry["conid"], entry["conidEx"], entry["server_id"], entry["6119"]) == (
        AAPL,
        "265598",
        "q3",
        "q3",
    )
    for size in ("85", "88", "7059"):
        assert int(entry[size].replace(",", "")) >= 1  # lots of 100
    assert all(isinstance(value, str) for key, value in entry.items() if key.isdigit())


def test_only_requested_fields_are_present() -> None:
    entry = snapshot_fields(at(utc(2024, 12, 3, 15)), AAPL, ["31", "84"])
    assert set(entry) == {"conid", "conidEx", "_updated", "server_id", "6119", "31", "84"}


@pytest.mark.parametrize(
    ("moment", "closed_session", "prior_session"),
    [
        (utc(2024, 12, 3, 8, 30), date(2024, 12, 2), date(2024, 11, 29)),  # before 04:00 NY
        (
            utc(2024, 12, 3, 9, 0, second=59),
            date(2024, 12, 2),
            date(2024, 11, 29),
        ),  # first minute runs
        (utc(2024, 11, 30, 12), date(2024, 11, 29), date(2024, 11, 27)),  # Saturday
        (utc(2024, 12, 25, 15), date(2024, 12, 24), date(2024, 12, 23)),  # Christmas
    ],
)
def test_last_is_the_previous_close_with_a_c_prefix_when_nothing_has_traded_yet(
    moment: datetime, closed_session: date, prior_session: date
) -> None:
    market = at(moment)
    entry = snapshot_fields(market, AAPL, ALL_FIELDS)
    closed = market.minute_bars(AAPL, closed_session, True)
    prior = market.minute_bars(AAPL, prior_session, True)
    assert entry["31"] == f"C{closed.close[-1]:.2f}"
    assert entry["7296"] == f"{closed.close[-1]:.2f}"  # that session's close
    assert entry["7741"] == f"{prior.close[-1]:.2f}"
    assert entry["7762"] == str(int(closed.volume_shares.sum()))
    assert entry["70"] == f"{closed.high.max():.2f}"


def test_the_prefix_goes_once_the_first_minute_has_completed() -> None:
    market = at(utc(2024, 12, 3, 9, 1))
    first_minute = market.minute_bars(AAPL, date(2024, 12, 3), True)
    assert snapshot_fields(market, AAPL, ["31"])["31"] == f"{first_minute.close[0]:.2f}"


def test_futures_and_forex_quotes() -> None:
    sunday_evening = at(utc(2024, 12, 1, 23, 30))  # Globex has been open 30 minutes
    es = snapshot_fields(sunday_evening, ES, ["31", "85", "7762"])
    globex = sunday_evening.minute_bars(ES, date(2024, 12, 2), True)
    assert es["31"] == f"{globex.close[29]:.2f}"
    assert es["7762"] == str(int(globex.volume_shares[:30].sum()))
    fx = snapshot_fields(sunday_evening, EURUSD, ["31", "84", "86"])
    friday = sunday_evening.minute_bars(EURUSD, date(2024, 11, 29), True)
    assert fx["31"] == f"C{friday.close[-1]:.5f}"
    assert number(fx["86"]) - number(fx["84"]) == pytest.approx(0.0001)


def test_an_instrument_not_listed_yet_has_no_values() -> None:
    abnb = by_symbol("ABNB")[0].conid
    market = at(utc(2020, 6, 1, 15))
    entry = snapshot_fields(market, abnb, ALL_FIELDS)
    assert set(entry) == {"conid", "conidEx", "_updated", "server_id", "6119", "55", "6070", "7051"}
    with pytest.raises(ValueError, match="not listed yet"):
        market.last_price(abnb)
    assert MarketTruth(market).quote(abnb)["last"] is None


def test_unknown_conid_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown conid 5"):
        snapshot_fields(at(utc(2024, 12, 3)), 5, ["31"])


@pytest.mark.parametrize("moment", [utc(2024, 12, 3, 15, 0, second=30), utc(2024, 11, 30, 12)])
def test_truth_quote_is_what_the_snapshot_shows(moment: datetime) -> None:
    market = at(moment)
    entry = snapshot_fields(market, AAPL, ALL_FIELDS)
    quote = MarketTruth(market).quote(AAPL)
    assert quote["last"] == number(entry["31"])
    assert quote["last_is_close"] == entry["31"].startswith("C")
    for field_id, name in (("84", "bid"), ("86", "ask"), ("7295", "open"), ("70", "high")):
        assert quote[name] == number(entry[field_id])
    for field_id, name in (("71", "low"), ("7741", "prior_close"), ("82", "change")):
        assert quote[name] == number(entry[field_id])
    assert quote["change_pct"] == number(entry["83"])
    for field_id, name in (("85", "ask_size"), ("88", "bid_size"), ("7059", "last_size")):
        assert quote[name] == number(entry[field_id]) * 100  # shares, not lots
    assert quote["volume"] == int(entry["7762"])
    assert quote["updated"] == moment.replace(microsecond=0)
    assert quote["close"] == (number(entry["7296"]) if "7296" in entry else None)


@pytest.mark.parametrize(
    ("shares", "text"),
    [(950, "950"), (12_345, "12.3K"), (1_234_567, "1.2M"), (45_600_000, "45.6M"), (2e9, "2.0B")],
)
def test_volume_abbreviation(shares: int, text: str) -> None:
    assert format_volume_short(int(shares)) == text
