"""The history endpoint's answers: shape, window rules, the 1000-bar cap, paging, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ib_pipeline.clock import FixedClock
from ib_pipeline.simulator.epoch import from_ms, to_ms
from ib_pipeline.simulator.history import (
    HISTORY_ERRORS,
    MAX_BARS,
    encode_body,
    history_response,
    history_window,
)
from ib_pipeline.simulator.instruments import by_conid, by_symbol
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.truth import MarketTruth
from ib_pipeline.timeframes import parse_period

AAPL, EURUSD = 265598, 12087792
ES = by_symbol("ES", "FUT")[0].conid
META = by_symbol("META")[0].conid
NOW = datetime(2024, 12, 3, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 New York

METADATA_KEYS = {
    "serverId", "symbol", "text", "priceFactor", "startTime", "high", "low", "timePeriod",
    "barLength", "mdAvailability", "mktDataDelay", "outsideRth", "tradingDayDuration",
    "volumeFactor", "priceDisplayRule", "priceDisplayValue", "chartPanStartTime", "direction",
    "negativeCapable", "messageVersion", "data", "points", "travelTime",
}  # fmt: skip


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def make_market(seed: int = 42, now: datetime = NOW) -> Market:
    return Market(seed, FixedClock(now))


def ask(market: Market, **params: str) -> tuple[int, Any]:
    return history_response(market, params)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d-%H:%M:%S")


# -- the answer -------------------------------------------------------------------------------


def test_daily_answer_has_the_gateway_shape_and_values() -> None:
    market = make_market()
    status, body = ask(market, conid=str(AAPL), period="1w", bar="1d")
    assert status == 200
    assert set(body) == METADATA_KEYS
    # Sessions starting in [Nov 26 15:00Z, Dec 3 15:00Z): today's has not ended, the 26th
    # started before the window, Thanksgiving is a holiday.
    times = [from_ms(row["t"]) for row in body["data"]]
    assert times == [utc(2024, 11, 27, 14, 30), utc(2024, 11, 29, 14, 30), utc(2024, 12, 2, 14, 30)]
    assert body["points"] == 2
    assert body["startTime"] == "20241127-14:30:00"
    assert body["chartPanStartTime"] == "20241203-15:00:00"
    assert (body["symbol"], body["text"]) == ("AAPL", "APPLE INC")
    assert (body["priceFactor"], body["volumeFactor"], body["priceDisplayValue"]) == (100, 100, "2")
    assert (body["barLength"], body["timePeriod"], body["outsideRth"]) == (86400, "1w", False)
    assert (body["direction"], body["messageVersion"], body["tradingDayDuration"]) == (-1, 2, 390)
    truth = MarketTruth(market).history_bars(AAPL, "1d", utc(2024, 11, 26, 15), NOW)
    assert [row["o"] for row in body["data"]] == truth.column("open").to_pylist()
    assert [row["c"] for row in body["data"]] == truth.column("close").to_pylist()
    assert [row["v"] * 100 for row in body["data"]] == pytest.approx(
        truth.column("volume").to_pylist(), abs=1e-6
    )
    top = max(body["data"], key=lambda row: row["h"])
    price, volume, minutes = body["high"].split("/")
    assert int(price) == round(top["h"] * 100)
    assert float(volume) == top["v"]
    assert int(minutes) == (top["t"] - body["data"][0]["t"]) // 60_000


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    params = {"conid": str(AAPL), "period": "2d", "bar": "5min", "outsideRth": "true"}
    first = encode_body(history_response(make_market(3), params)[1])
    again = encode_body(history_response(make_market(3), params)[1])
    other = encode_body(history_response(make_market(4), params)[1])
    assert first == again
    assert first != other
    assert json.loads(first)["data"]


def test_extended_hours_futures_and_forex() -> None:
    market = make_market()
    _, rth = ask(market, conid=str(AAPL), period="1d", bar="1h", startTime="20241203-01:00:00")
    _, ext = ask(
        market,
        conid=str(AAPL),
        period="1d",
        bar="1h",
        startTime="20241203-01:00:00",
        outsideRth="true",
    )
    assert from_ms(rth["data"][0]["t"]) == utc(2024, 12, 2, 14, 30)
    assert from_ms(ext["data"][0]["t"]) == utc(2024, 12, 2, 9, 0)
    assert len(ext["data"]) == 16 and len(rth["data"]) == 7
    _, es = ask(market, conid=str(ES), period="1d", bar="1h", outsideRth="true")
    assert es["volumeFactor"] == 1 and from_ms(es["data"][0]["t"]) == utc(2024, 12, 2, 23, 0)
    truth = MarketTruth(market).served_bars({"conid": str(ES), "period": "1d", "bar": "1h"})
    _, es_rth = ask(market, conid=str(ES), period="1d", bar="1h")
    assert [row["v"] for row in es_rth["data"]] == truth.column("volume").to_pylist()
    _, fx = ask(market, conid=str(EURUSD), period="4h", bar="30min")
    assert fx["priceFactor"] == 100_000 and len(fx["data"]) == 8


def test_sources() -> None:
    market = make_market()
    base = {"conid": str(AAPL), "period": "1d", "bar": "15min"}
    trades = history_response(market, base)[1]["data"]
    mid = history_response(market, {**base, "source": "midpoint"})[1]["data"]
    quotes = history_response(market, {**base, "source": "Bid_Ask"})[1]["data"]
    spread = by_conid(AAPL).min_tick
    assert [(r["o"], r["h"], r["l"], r["c"]) for r in mid] == [
        (r["o"], r["h"], r["l"], r["c"]) for r in trades
    ]
    assert all(r["v"] == 0 for r in mid + quotes)
    assert all(q["h"] == round(t["h"] + spread, 2) for q, t in zip(quotes, trades, strict=True))
    assert all(q["l"] == round(t["l"] - spread, 2) for q, t in zip(quotes, trades, strict=True))


# -- the window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "end", "outside_rth", "start"),
    [
        ("30min", utc(2024, 12, 2, 15), False, utc(2024, 12, 2, 14, 30)),
        ("8h", utc(2024, 12, 2, 15), False, utc(2024, 12, 2, 7)),
        ("2d", utc(2024, 12, 2, 15), False, utc(2024, 11, 29, 14, 30)),  # Mon (running) + Fri
        ("2d", utc(2024, 12, 2, 14), False, utc(2024, 11, 27, 14, 30)),  # Monday not begun
        ("2d", utc(2024, 12, 2, 14), True, utc(2024, 11, 29, 9, 0)),  # ...but its pre-market has
        ("1w", utc(2024, 12, 2, 15), False, utc(2024, 11, 25, 15)),
        ("1m", utc(2024, 3, 31, 12), False, utc(2024, 2, 29, 12)),
        ("3m", utc(2024, 5, 31), False, utc(2024, 2, 29)),
        ("1y", utc(2024, 2, 29), False, utc(2023, 2, 28)),
    ],
)
def test_history_window(period: str, end: datetime, outside_rth: bool, start: datetime) -> None:
    window = history_window(by_conid(AAPL), parse_period(period), end, outside_rth)
    assert window == (start, end)


def test_no_bar_at_or_after_end_nor_before_start() -> None:
    market = make_market()
    end = utc(2024, 12, 2, 16, 7)
    _, body = ask(market, conid=str(AAPL), period="30min", bar="1min", startTime=stamp(end))
    times = [row["t"] for row in body["data"]]
    assert times[0] == to_ms(utc(2024, 12, 2, 15, 37))
    assert times[-1] == to_ms(utc(2024, 12, 2, 16, 6))
    assert len(times) == 30


def test_cap_keeps_the_most_recent_thousand_bars() -> None:
    market = make_market()
    params = {"conid": str(AAPL), "period": "5d", "bar": "1min", "outsideRth": "true"}
    _, body = history_response(market, params)
    assert len(body["data"]) == MAX_BARS and body["points"] == MAX_BARS - 1
    start, end = MarketTruth(market).history_window(params)
    every = MarketTruth(market).history_bars(AAPL, "1min", start, end, outside_rth=True)
    assert len(every) > MAX_BARS
    expected = every.slice(len(every) - MAX_BARS).column("ts").cast("int64").to_pylist()
    assert [row["t"] for row in body["data"]] == expected
    assert body["data"][-1]["t"] == to_ms(utc(2024, 12, 3, 14, 59))


def page_backward(
    market: Market, start: datetime, end: datetime, **params: str
) -> list[dict[str, Any]]:
    """Page like a client: each request ends where the previous page began."""
    truth = MarketTruth(market)
    received: list[dict[str, Any]] = []
    cursor = end
    requests = 0
    while cursor > start:
        request = {**params, "startTime": stamp(cursor)}
        status, body = history_response(market, request)
        requests += 1
        assert status == 200 and requests < 200
        if "error" in body:
            break  # before the instrument's history
        if not body["data"]:
            cursor = truth.history_window(request)[0]  # a closed-market window: step over it
            continue
        assert len(body["data"]) <= MAX_BARS
        received = body["data"] + received
        cursor = from_ms(body["data"][0]["t"])
    return [row for row in received if row["t"] >= to_ms(start)]


@pytest.mark.parametrize(
    ("conid", "bar", "period", "outside_rth", "start"),
    [
        (AAPL, "1min", "2d", "true", utc(2024, 11, 20)),
        (AAPL, "1min", "3h", "false", utc(2024, 11, 25)),  # short windows: empty night pages
        (ES, "5min", "1w", "true", utc(2024, 10, 1)),
        (EURUSD, "1h", "1m", "false", utc(2024, 6, 1)),
        (AAPL, "1d", "1000d", "false", utc(2012, 1, 1)),
        (META, "1w", "15y", "false", utc(2005, 1, 1)),  # reaches before the listing
    ],
)
def test_paging_backward_reconstructs_the_truth(
    conid: int, bar: str, period: str, outside_rth: str, start: datetime
) -> None:
    market = make_market()
    rows = page_backward(
        market, start, NOW, conid=str(conid), bar=bar, period=period, outsideRth=outside_rth
    )
    truth = MarketTruth(market).history_bars(conid, bar, start, NOW, outside_rth == "true")
    lot = by_conid(conid).lot_size
    assert len(rows) == len(truth) > 0
    assert [row["t"] for row in rows] == truth.column("ts").cast("int64").to_pylist()
    assert len({row["t"] for row in rows}) == len(rows)
    for name, column in (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close")):
        assert [row[name] for row in rows] == truth.column(column).to_pylist()
    assert [round(row["v"] * lot) for row in rows] == truth.column("volume").to_pylist()


# -- errors and empty answers ------------------------------------------------------------------


def error(key: str, **values: object) -> tuple[int, dict[str, Any]]:
    answer = HISTORY_ERRORS[key]
    return answer.status, answer.body(**values)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"period": "1d", "bar": "1h"}, error("missing_parameter", name="conid")),
        ({"conid": "", "period": "1d", "bar": "1h"}, error("missing_parameter", name="conid")),
        ({"conid": "AAPL", "period": "1d", "bar": "1h"}, error("invalid_conid", value="AAPL")),
        ({"conid": "1", "period": "1d", "bar": "1h"}, error("unknown_conid", value=1)),
        ({"conid": str(AAPL), "bar": "1h"}, error("missing_parameter", name="period")),
        ({"conid": str(AAPL), "period": "1d"}, error("missing_parameter", name="bar")),
        ({"conid": str(AAPL), "period": "31min", "bar": "1h"}, None),
        ({"conid": str(AAPL), "period": "2x", "bar": "1h"}, None),
        ({"conid": str(AAPL), "period": "1d", "bar": "7min"}, None),
        ({"conid": str(AAPL), "period": "1d", "bar": "1H"}, None),
        (
            {"conid": str(AAPL), "period": "1d", "bar": "1h", "startTime": "2024-12-01T00:00:00"},
            error("invalid_start_time", value="2024-12-01T00:00:00"),
        ),
        (
            {"conid": str(AAPL), "period": "1d", "bar": "1h", "startTime": "20241301-00:00:00"},
            error("invalid_start_time", value="20241301-00:00:00"),
        ),
        (
            {"conid": str(AAPL), "period": "1d", "bar": "1h", "outsideRth": "yes"},
            error("invalid_outside_rth", value="yes"),
        ),
        (
            {"conid": str(AAPL), "period": "1d", "bar": "1h", "source": "Bid"},
            error("invalid_source", value="Bid"),
        ),
        (
            {"conid": str(AAPL), "period": "1d", "bar": "1h", "exchange": "NYSE"},
            error("invalid_exchange", value="NYSE", conid=AAPL),
        ),
    ],
)
def test_validation_errors(params: dict[str, str], expected: tuple[int, Any] | None) -> None:
    status, body = history_response(make_market(), params)
    if expected is None:  # the message quotes the parser's explanation; check its start
        assert status == 400 and body["statusCode"] == 400
        assert body["error"].startswith(("Bad Request: invalid period", "Bad Request: invalid bar"))
        quoted = params["period"] if "invalid period" in body["error"] else params["bar"]
        assert repr(quoted) in body["error"]
    else:
        assert (status, body) == expected


def test_accepted_spellings() -> None:
    market = make_market()
    for extra in ({"exchange": "nasdaq"}, {"exchange": "SMART"}, {"outsideRth": "TRUE"},
                  {"outsideRth": "0"}, {"source": "TRADES"}, {"source": "last"}):  # fmt: skip
        status, body = history_response(
            market, {"conid": str(AAPL), "period": "1d", "bar": "1h", **extra}
        )
        assert status == 200 and body["data"], extra


def test_no_data_outside_the_instruments_history() -> None:
    market = make_market()
    no_data = error("no_data")
    assert no_data == (200, {"error": "No data."})
    before_listing = {
        "conid": str(META),
        "period": "1y",
        "bar": "1d",
        "startTime": "20110101-00:00:00",
    }
    assert history_response(market, before_listing) == no_data
    future = {"conid": str(AAPL), "period": "1d", "bar": "1h", "startTime": "20250601-00:00:00"}
    assert history_response(market, future) == no_data
    # a window reaching back past the listing gets the bars that exist
    status, body = history_response(market, {**before_listing, "startTime": "20120601-00:00:00"})
    assert status == 200 and from_ms(body["data"][0]["t"]) == utc(2012, 5, 18, 13, 30)


def test_closed_market_window_inside_history_is_empty_not_an_error() -> None:
    market = make_market()
    sunday = {"conid": str(AAPL), "period": "8h", "bar": "1min", "startTime": "20241201-12:00:00"}
    status, body = history_response(market, sunday)
    assert status == 200 and body["data"] == [] and body["points"] == 0
    assert set(body) == METADATA_KEYS
    christmas = {**sunday, "period": "1d", "bar": "1h", "startTime": "20241225-23:00:00"}
    _, body = history_response(make_market(now=utc(2025, 1, 2)), christmas)
    assert from_ms(body["data"][-1]["t"]) == utc(2024, 12, 24, 17, 0)  # the half day before
