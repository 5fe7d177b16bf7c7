"""The synthetic market: universe, determinism, exact aggregation, sessions, completed bars."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from ib_pipeline.calendars import bar_starts, month_bar_start_ms
from ib_pipeline.clock import FixedClock
from ib_pipeline.simulator.bars import Bars
from ib_pipeline.simulator.epoch import to_ms
from ib_pipeline.simulator.instruments import UNIVERSE, by_conid, by_symbol
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.price_model import generate_tape
from ib_pipeline.timeframes import parse_bar_size

AAPL, SPY, EURUSD = 265598, 756733, 12087792
ES = by_symbol("ES", "FUT")[0].conid
NOW = datetime(2024, 12, 3, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 New York


def make_market(seed: int = 42, now: datetime = NOW) -> Market:
    return Market(seed, FixedClock(now))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- universe ---------------------------------------------------------------------------------


def test_universe_has_stable_real_conids_and_required_asset_classes() -> None:
    assert len(UNIVERSE) >= 50
    assert len({i.conid for i in UNIVERSE}) == len(UNIVERSE)
    known = {"AAPL": 265598, "SPY": 756733, "TSLA": 76792991, "META": 107113386}
    known |= {"IBKR": 43645865, "MSFT": 272093, "EUR.USD": 12087792}
    for symbol, conid in known.items():
        assert by_conid(conid).symbol == symbol
    kinds = {(i.sec_type, i.exchange) for i in UNIVERSE}
    assert {("STK", "NYSE"), ("STK", "NASDAQ"), ("FUT", "CME"), ("CASH", "IDEALPRO")} <= kinds
    assert any(i.is_etf for i in UNIVERSE)
    assert by_conid(ES).min_tick == 0.25
    assert by_conid(EURUSD).min_tick == 0.00005
    assert any(i.first_date.year == 2019 for i in UNIVERSE)  # a later listing
    assert all(i.lot_size == (100 if i.sec_type == "STK" else 1) for i in UNIVERSE)


def test_lookups_are_case_insensitive_and_unknown_conids_are_named() -> None:
    assert [i.conid for i in by_symbol("aapl")] == [AAPL]
    assert by_symbol("AAPL", "FUT") == []
    with pytest.raises(KeyError, match="unknown conid 1"):
        by_conid(1)
    with pytest.raises(KeyError, match="unknown conid 1"):
        make_market().instrument(1)


def test_market_rejects_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed"):
        Market(-1, FixedClock(NOW))


# -- determinism and realism ------------------------------------------------------------------


@pytest.mark.parametrize("conid", [AAPL, ES, EURUSD])
def test_same_seed_same_bars_other_seed_other_bars(conid: int) -> None:
    day = date(2024, 11, 26)
    first = make_market(7).minute_bars(conid, day, True)
    again = make_market(7).minute_bars(conid, day, True)
    other = make_market(8).minute_bars(conid, day, True)
    assert first.equals(again)
    assert np.array_equal(first.ts_ms, other.ts_ms)
    assert not np.array_equal(first.close, other.close)


@pytest.mark.parametrize("conid", [AAPL, SPY, ES, EURUSD, by_symbol("USD.JPY")[0].conid])
def test_minute_bars_are_valid_tick_multiples(conid: int) -> None:
    instrument = by_conid(conid)
    market = make_market()
    for day in (date(2006, 6, 1), date(2016, 3, 14), date(2024, 11, 29)):
        bars = market.minute_bars(conid, day, True)
        for prices in (bars.open, bars.high, bars.low, bars.close):
            per_unit = instrument.ticks_per_unit
            assert np.array_equal(np.rint(prices * per_unit) / per_unit, prices)
            # written exactly: the shortest repr has no more decimals than the tick
            decimals = [len(repr(float(p)).split(".")[1]) for p in prices[:200]]
            assert max(decimals) <= instrument.price_decimals
        assert (bars.high >= np.maximum(bars.open, bars.close)).all()
        assert (bars.low <= np.minimum(bars.open, bars.close)).all()
        assert (bars.low > 0).all()
        assert (bars.volume_shares >= 0).all()
        assert bars.volume_shares.sum() > 0


def test_prices_stay_near_the_instrument_scale_over_twenty_years() -> None:
    market = make_market(now=utc(2025, 1, 2))
    for conid in (AAPL, ES, EURUSD):
        instrument = by_conid(conid)
        daily = market.bars(conid, parse_bar_size("1d"), utc(2005, 1, 1), utc(2025, 1, 1), False)
        assert len(daily) > 4000
        assert daily.close.min() > instrument.base_price * 0.2
        assert daily.close.max() < instrument.base_price * 5
        returns = np.diff(np.log(daily.close))
        assert 0.3 * instrument.daily_vol < returns.std() < 3 * instrument.daily_vol


def test_a_day_is_generated_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2016 session costs one generation, like yesterday's: nothing is chained."""
    calls: list[date] = []
    real = generate_tape

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[3].date)  # type: ignore[attr-defined]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("ib_pipeline.simulator.market.generate_tape", counting)
    old = make_market().minute_bars(AAPL, date(2016, 3, 14), False)
    assert calls == [date(2016, 3, 14)]
    recent = make_market().minute_bars(AAPL, date(2024, 12, 2), False)
    assert calls == [date(2016, 3, 14), date(2024, 12, 2)]
    assert len(old) == len(recent) == 390
    # and it is the same day whatever was generated before it
    market = make_market()
    market.minute_bars(AAPL, date(2016, 3, 11), False)
    assert market.minute_bars(AAPL, date(2016, 3, 14), False).equals(old)


# -- sessions ---------------------------------------------------------------------------------


def test_regular_and_extended_hours_of_a_stock() -> None:
    market = make_market()
    rth = market.minute_bars(AAPL, date(2024, 12, 2), False)
    ext = market.minute_bars(AAPL, date(2024, 12, 2), True)
    assert len(rth) == 390 and len(ext) == 960
    assert rth.ts_ms[0] == to_ms(utc(2024, 12, 2, 14, 30))  # 09:30 New York (EST)
    assert ext.ts_ms[0] == to_ms(utc(2024, 12, 2, 9, 0))  # 04:00 New York
    assert ext.ts_ms[-1] == to_ms(utc(2024, 12, 3, 0, 59))  # 19:59 New York
    offset = (rth.ts_ms[0] - ext.ts_ms[0]) // 60_000
    assert ext.select(slice(offset, offset + 390)).equals(rth)  # the same minutes either way


def test_half_day_holiday_and_first_date() -> None:
    market = make_market()
    half = market.minute_bars(AAPL, date(2024, 11, 29), False)
    assert len(half) == 210  # 09:30-13:00
    assert len(market.minute_bars(AAPL, date(2024, 11, 29), True)) == 780  # 04:00-17:00
    with pytest.raises(ValueError, match="not a US_EQUITY session"):
        market.minute_bars(AAPL, date(2024, 12, 25), False)
    christmas = market.bars(
        AAPL, parse_bar_size("1min"), utc(2024, 12, 25), utc(2024, 12, 26), True
    )
    assert len(christmas) == 0
    with pytest.raises(ValueError, match="no history before 2019-05-10"):
        market.minute_bars(by_symbol("UBER")[0].conid, date(2019, 5, 9), False)


def test_future_session_starts_the_evening_before_and_forex_trades_all_day() -> None:
    market = make_market()
    es = market.minute_bars(ES, date(2024, 12, 2), True)
    assert es.ts_ms[0] == to_ms(utc(2024, 12, 1, 23, 0))  # Sunday 17:00 Chicago
    assert len(market.minute_bars(ES, date(2024, 12, 2), False)) == 390  # 08:30-15:00 Chicago
    fx = market.minute_bars(EURUSD, date(2024, 12, 2), False)
    assert len(fx) == 1440 and fx.ts_ms[0] == to_ms(utc(2024, 12, 2))


@pytest.mark.parametrize("conid", [AAPL, ES, EURUSD])
@pytest.mark.parametrize("outside_rth", [False, True])
def test_no_bar_outside_a_session(conid: int, outside_rth: bool) -> None:
    market = make_market()
    cal = market.calendar(conid)
    bars = market.bars(
        conid, parse_bar_size("1min"), utc(2024, 11, 20), utc(2024, 12, 3), outside_rth
    )
    sessions = cal.sessions(date(2024, 11, 19), date(2024, 12, 3))
    bounds = np.array([s.bounds_ms(outside_rth) for s in sessions])
    index = np.searchsorted(bounds[:, 0], bars.ts_ms, side="right") - 1
    assert (index >= 0).all()
    assert (bars.ts_ms < bounds[index, 1]).all()
    assert len(np.unique(bars.ts_ms)) == len(bars)
    assert (np.diff(bars.ts_ms) > 0).all()


# -- aggregation ------------------------------------------------------------------------------


def expected_intraday(minutes: Bars, starts: np.ndarray) -> list[tuple[float, ...]]:
    """Aggregate by hand: each bar covers the minutes from its start to the next start."""
    rows: list[tuple[float, ...]] = []
    cut = np.searchsorted(minutes.ts_ms, starts)
    bounds = [*cut.tolist(), len(minutes)]
    for a, b in itertools.pairwise(bounds):
        rows.append(
            (
                float(minutes.ts_ms[a]),
                float(minutes.open[a]),
                float(max(minutes.high[a:b])),
                float(min(minutes.low[a:b])),
                float(minutes.close[b - 1]),
                float(sum(int(v) for v in minutes.volume_shares[a:b])),
            )
        )
    return rows


def as_rows(bars: Bars) -> list[tuple[float, ...]]:
    rows: list[tuple[float, ...]] = list(
        zip(
            bars.ts_ms.astype(float).tolist(),
            bars.open.tolist(),
            bars.high.tolist(),
            bars.low.tolist(),
            bars.close.tolist(),
            bars.volume_shares.astype(float).tolist(),
            strict=True,
        )
    )
    return rows


@pytest.mark.parametrize("conid", [AAPL, ES, EURUSD])
@pytest.mark.parametrize("day", [date(2024, 11, 29), date(2024, 12, 2), date(2016, 3, 14)])
@pytest.mark.parametrize("outside_rth", [False, True])
def test_intraday_and_daily_bars_are_exact_aggregates(
    conid: int, day: date, outside_rth: bool
) -> None:
    market = make_market()
    session = market.session(conid, day)
    minutes = market.minute_bars(conid, day, outside_rth)
    start, end = session.bounds(outside_rth)
    for label in ("2min", "3min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "4h", "8h"):
        bar = parse_bar_size(label)
        got = market.bars(conid, bar, start, end, outside_rth)
        assert as_rows(got) == expected_intraday(minutes, bar_starts(session, bar, outside_rth)), (
            label
        )
    daily = market.bars(conid, parse_bar_size("1d"), start, end, outside_rth)
    assert as_rows(daily) == expected_intraday(minutes, minutes.ts_ms[:1])


@pytest.mark.parametrize("conid", [AAPL, ES])
@pytest.mark.parametrize("outside_rth", [False, True])
def test_weekly_and_monthly_bars_aggregate_their_sessions(conid: int, outside_rth: bool) -> None:
    market = make_market()
    cal = market.calendar(conid)
    one_day = parse_bar_size("1d")
    days = market.bars(conid, one_day, utc(2024, 9, 1), utc(2024, 12, 1), outside_rth)
    day_dates = [s for s in cal.session_dates(date(2024, 8, 30), date(2024, 12, 1))]

    def aggregate(mask: np.ndarray, stamp: int) -> tuple[float, ...]:
        part = days.select(mask)
        return (
            float(stamp),
            float(part.open[0]),
            float(part.high.max()),
            float(part.low.min()),
            float(part.close[-1]),
            float(part.volume_shares.sum()),
        )

    session_of = {int(cal.session(d).bounds_ms(outside_rth)[0]): d for d in day_dates}
    dates = [session_of[int(t)] for t in days.ts_ms]
    weeks = market.bars(
        conid, parse_bar_size("1w"), utc(2024, 9, 2), utc(2024, 11, 25), outside_rth
    )
    assert len(weeks) == 12
    for row in as_rows(weeks):
        monday = next(d for d in dates if int(days.ts_ms[dates.index(d)]) == row[0])
        week = np.array([d.isocalendar()[:2] == monday.isocalendar()[:2] for d in dates])
        assert row == aggregate(week, int(row[0]))
    months = market.bars(
        conid, parse_bar_size("1m"), utc(2024, 9, 1), utc(2024, 11, 30), outside_rth
    )
    assert [int(t) for t in months.ts_ms] == [month_bar_start_ms(2024, m) for m in (9, 10, 11)]
    for row, month in zip(as_rows(months), (9, 10, 11), strict=True):
        in_month = np.array([d.month == month for d in dates])
        assert row == aggregate(in_month, month_bar_start_ms(2024, month))


# -- the clock --------------------------------------------------------------------------------


def test_only_completed_bars_are_visible() -> None:
    clock = FixedClock(NOW)  # 2024-12-03 15:00Z = 10:00 New York
    market = Market(42, clock)

    def latest(label: str, outside_rth: bool = False) -> datetime | None:
        bars = market.bars(
            AAPL, parse_bar_size(label), utc(2024, 11, 1), utc(2025, 1, 1), outside_rth
        )
        return datetime.fromtimestamp(int(bars.ts_ms[-1]) / 1000, UTC) if len(bars) else None

    assert latest("1min") == utc(2024, 12, 3, 14, 59)
    assert latest("5min") == utc(2024, 12, 3, 14, 55)  # 14:55-15:00 has just ended
    assert latest("1h") == utc(2024, 12, 3, 14, 30)  # 09:30-10:00, the short first hour
    assert latest("2h") == utc(2024, 12, 3, 14, 30)  # 09:30-10:00 (bucket 08:00-10:00)
    assert latest("4h") == utc(2024, 12, 2, 17, 0)  # 12:00-16:00 yesterday; 08:00-12:00 runs
    assert latest("1d") == utc(2024, 12, 2, 14, 30)  # today's session has not ended
    assert latest("1w") == utc(2024, 11, 25, 14, 30)
    assert latest("1m") == utc(2024, 11, 1)
    clock.set(utc(2024, 12, 3, 21, 0))  # the regular session has ended
    assert latest("1d") == utc(2024, 12, 3, 14, 30)
    assert latest("1d", outside_rth=True) == utc(2024, 12, 2, 9, 0)  # extended hours run to 01:00Z
    clock.set(utc(2024, 12, 7))
    assert latest("1w") == utc(2024, 12, 2, 14, 30)


def test_limit_keeps_the_most_recent_bars() -> None:
    market = make_market()
    one_min = parse_bar_size("1min")
    every = market.bars(AAPL, one_min, utc(2024, 11, 1), utc(2024, 12, 3), False)
    last = market.bars(AAPL, one_min, utc(2024, 11, 1), utc(2024, 12, 3), False, limit=1000)
    assert len(last) == 1000 and last.equals(every.tail(1000))
    days = market.bars(
        AAPL, parse_bar_size("1d"), utc(2005, 1, 1), utc(2024, 12, 3), False, limit=5
    )
    assert len(days) == 5 and days.ts_ms[-1] == to_ms(utc(2024, 12, 2, 14, 30))


def test_quote_follows_the_latest_completed_minute() -> None:
    clock = FixedClock(utc(2024, 12, 3, 15, 0, second=30))
    market = Market(42, clock)
    ext = market.minute_bars(AAPL, date(2024, 12, 3), True)
    quote = market.quote(AAPL)
    done = (to_ms(clock.now()) - int(ext.ts_ms[0])) // 60_000
    assert quote.last == ext.close[done - 1] and not quote.last_is_close
    assert market.last_price(AAPL) == quote.last
    clock.advance(timedelta(minutes=1))
    assert market.quote(AAPL).last == ext.close[done]
