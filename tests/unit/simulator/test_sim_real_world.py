"""Issue 13 in the simulator, without HTTP: advisor accounts, splits, futures months, non-US
exchanges, delayed data; and the default market unchanged by any of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from ib_pipeline.calendars import (
    IBKR_EXCHANGE_CALENDARS,
    calendar_for,
    calendar_name_for_exchange,
    trading_hours_for,
)
from ib_pipeline.clock import FixedClock
from ib_pipeline.simulator.broker import Broker
from ib_pipeline.simulator.config import SimulatorConfig
from ib_pipeline.simulator.futures import futures_listing, listed_months, secdef_info
from ib_pipeline.simulator.history import history_response
from ib_pipeline.simulator.instruments import (
    NON_US_STOCKS,
    UNIVERSE,
    by_conid,
    by_symbol,
    future_months,
    third_friday,
)
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.real_world import GUESSES, table
from ib_pipeline.simulator.search import secdef_search
from ib_pipeline.simulator.snapshot import snapshot_fields
from ib_pipeline.simulator.truth import MarketTruth
from ib_pipeline.timeframes import parse_bar_size

NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
AAPL = 265598
SPY = 756733
ES = by_symbol("ES", "FUT")[0].conid
NQ = by_symbol("NQ", "FUT")[0].conid
SPLIT_DAY = date(2024, 11, 20)


def market(now: datetime = NOW, **kwargs: object) -> Market:
    return Market(42, FixedClock(now), **kwargs)  # type: ignore[arg-type]


# -- non-US exchanges --------------------------------------------------------------------------


def test_one_table_maps_ibkr_exchange_codes_to_calendars() -> None:
    expected = {
        "IBIS": "XETR",
        "LSE": "XLON",
        "TSEJ": "XTKS",
        "SEHK": "XHKG",
        "ASX": "XASX",
        "TSE": "XTSE",
    }
    assert expected.items() <= IBKR_EXCHANGE_CALENDARS.items()
    assert calendar_name_for_exchange("tsej") == "XTKS"
    assert calendar_name_for_exchange("TSE") == "XTSE"  # Toronto, not Tokyo
    with pytest.raises(ValueError, match="SMART"):
        calendar_name_for_exchange("SMART")
    for code, name in expected.items():
        assert trading_hours_for("STK", code).calendar == name


def test_us_calendars_have_no_break_and_keep_their_minutes() -> None:
    us = calendar_for(trading_hours_for("STK", "NYSE")).session(date(2024, 11, 26))
    assert us.break_start is None and us.minutes(False) == 390 and us.minutes(True) == 960


@pytest.mark.parametrize("instrument", NON_US_STOCKS, ids=lambda i: f"{i.symbol}@{i.exchange}")
def test_non_us_bars_lie_inside_their_exchange_sessions(instrument: object) -> None:
    item = by_conid(instrument.conid)  # type: ignore[attr-defined]
    assert item.lot_size == 1 and item.currency != "USD" and item not in UNIVERSE
    m = market()
    cal = calendar_for(item.trading_hours)
    start, end = NOW - timedelta(days=7), NOW
    minutes = m.bars(item.conid, parse_bar_size("1min"), start, end, False)
    assert len(minutes)
    sessions = cal.sessions_overlapping(start, end, False)
    inside = np.zeros(len(minutes), dtype=bool)
    for session in sessions:
        lo, hi = session.bounds_ms(False)
        mask = (minutes.ts_ms >= lo) & (minutes.ts_ms < hi)
        pause = session.break_bounds_ms()
        if pause is not None:
            mask &= (minutes.ts_ms < pause[0]) | (minutes.ts_ms >= pause[1])
        inside |= mask
    assert inside.all()
    days = m.bars(item.conid, parse_bar_size("1d"), start, end, False)
    for bar in days.ts_ms.tolist():
        session_date = next(s.date for s in sessions if s.bounds_ms(False)[0] == bar)
        whole = m.minute_bars(item.conid, session_date, False)
        assert whole.volume_shares.sum() == days.volume_shares[days.ts_ms.tolist().index(bar)]


def test_tokyo_has_no_bars_in_its_lunch_break() -> None:
    toyota = by_symbol("7203")[0]
    session = calendar_for(toyota.trading_hours).session(date(2024, 11, 26))
    assert session.break_start == datetime(2024, 11, 26, 2, 30, tzinfo=UTC)
    minutes = market().minute_bars(toyota.conid, date(2024, 11, 26), False)
    # 09:00-11:30 and 12:30-15:30 JST (Tokyo closes at 15:30 since November 2024)
    assert len(minutes) == session.minutes(False) == 330
    stamps = minutes.ts_ms
    pause = session.break_bounds_ms()
    assert pause is not None
    assert not ((stamps >= pause[0]) & (stamps < pause[1])).any()


def test_non_us_search_and_history_show_exchange_currency_and_shares() -> None:
    found = secdef_search("VOD")
    assert [f["description"] for f in found] == ["LSE"]
    assert found[0]["companyHeader"].endswith(" - LSE")
    sap = by_symbol("SAP")[0]
    status, body = history_response(
        market(), {"conid": str(sap.conid), "period": "1d", "bar": "1h"}
    )
    assert status == 200 and body["volumeFactor"] == 1 and body["data"]
    ok, info = secdef_info({"conid": str(sap.conid), "sectype": "STK"})
    assert ok == 200 and info[0]["exchange"] == "IBIS" and info[0]["currency"] == "EUR"


# -- splits ------------------------------------------------------------------------------------


def test_history_is_adjusted_as_of_the_clock() -> None:
    splits = {AAPL: [(SPLIT_DAY, 4.0)]}
    before = market(datetime(2024, 11, 19, 22, tzinfo=UTC), splits=splits)
    after = market(NOW, splits=splits)
    plain = market(NOW)
    start, end = datetime(2024, 11, 12, tzinfo=UTC), datetime(2024, 11, 19, 22, tzinfo=UTC)
    for size in ("1min", "1h", "1d"):
        bar = parse_bar_size(size)
        unadjusted = before.bars(AAPL, bar, start, end, False)
        adjusted = after.bars(AAPL, bar, start, end, False)
        assert len(unadjusted) == len(adjusted) > 0
        np.testing.assert_allclose(adjusted.close * 4, unadjusted.close, rtol=1e-12)
        np.testing.assert_allclose(adjusted.high * 4, unadjusted.high, rtol=1e-12)
        np.testing.assert_array_equal(adjusted.volume_shares, unadjusted.volume_shares * 4)
        # Fully adjusted history is continuous: the plain market's prices.
        np.testing.assert_allclose(
            adjusted.close, plain.bars(AAPL, bar, start, end, False).close, atol=0.01
        )
    # Bars on and after the effective date are on the new basis whenever they are asked for.
    new = (datetime(2024, 11, 20, tzinfo=UTC), datetime(2024, 11, 26, tzinfo=UTC))
    assert after.bars(AAPL, parse_bar_size("1d"), *new, False).equals(
        after.bars(AAPL, parse_bar_size("1d"), *new, False, as_traded=True)
    )
    # Other instruments are untouched.
    spy = (SPY, parse_bar_size("5min"), start, end, False)
    assert after.bars(*spy).equals(plain.bars(*spy))


def test_daily_bars_stay_exact_aggregates_of_minutes_on_either_basis() -> None:
    m = market(NOW, splits={AAPL: [(SPLIT_DAY, 1.5)]})
    session_day = date(2024, 11, 18)
    for as_traded in (False, True):
        day = m.bars(
            AAPL,
            parse_bar_size("1d"),
            datetime(2024, 11, 18, tzinfo=UTC),
            datetime(2024, 11, 19, tzinfo=UTC),
            False,
            as_traded=as_traded,
        )
        minutes = m._served_minutes(AAPL, session_day, False, None if as_traded else NOW.date())
        assert len(day) == 1
        assert day.open[0] == minutes.open[0] and day.close[0] == minutes.close[-1]
        assert day.high[0] == minutes.high.max() and day.low[0] == minutes.low.min()
        assert day.volume_shares[0] == minutes.volume_shares.sum()


def test_truth_gives_both_bases_and_lists_splits() -> None:
    m = market(NOW, splits={AAPL: [(SPLIT_DAY, 4.0)]})
    truth = MarketTruth(m)
    start, end = datetime(2024, 11, 18, tzinfo=UTC), datetime(2024, 11, 19, tzinfo=UTC)
    now_basis = truth.history_bars(AAPL, "1d", start, end)
    then = truth.history_bars(AAPL, "1d", start, end, as_of=datetime(2024, 11, 19, tzinfo=UTC))
    traded = truth.history_bars(AAPL, "1d", start, end, as_traded=True)
    assert then.equals(traded)
    assert now_basis.column("close")[0].as_py() * 4 == pytest.approx(
        traded.column("close")[0].as_py()
    )
    assert truth.splits() == [{"conid": AAPL, "effective": SPLIT_DAY, "ratio": 4.0}]


def test_snapshot_agrees_with_the_latest_bar_after_a_split() -> None:
    m = market(NOW, splits={AAPL: [(date(2024, 11, 26), 4.0)]})
    quote = m.quote(AAPL)
    last_minute = m.bars(AAPL, parse_bar_size("1min"), NOW - timedelta(hours=1), NOW, True)
    assert quote.last == last_minute.close[-1]
    previous = m.bars(
        AAPL, parse_bar_size("1d"), NOW - timedelta(days=3), NOW - timedelta(hours=8), True
    )
    assert quote.prior_close == previous.close[-1]


@pytest.mark.parametrize(
    "splits",
    [{1: [(SPLIT_DAY, 2.0)]}, {AAPL: [(SPLIT_DAY, 1.0)]}, {AAPL: [(SPLIT_DAY, -2.0)]}],
)
def test_bad_splits_are_refused(splits: dict[int, list[tuple[date, float]]]) -> None:
    with pytest.raises(ValueError, match="split"):
        market(splits=splits)


# -- futures -----------------------------------------------------------------------------------


def test_contract_months_follow_the_quarterly_cme_schedule() -> None:
    for root in ("ES", "NQ"):
        months = future_months(root)
        assert len({m.conid for m in months}) == len(months) > 80
        for month in months:
            assert month.expiry is not None and month.last_trade_date is not None
            assert month.expiry.month in (3, 6, 9, 12)
            assert month.expiry == third_friday(month.expiry.year, month.expiry.month)
            assert month.expiry.weekday() == 4 and 15 <= month.expiry.day <= 21
            assert month.last_trade_date == month.expiry - timedelta(days=1)
            assert month.underlying_conid == by_symbol(root, "FUT")[0].conid
    assert {m.conid for m in future_months("ES")}.isdisjoint({i.conid for i in UNIVERSE})
    assert by_symbol("ES", "FUT")[0].conid == ES  # the root is still what search returns
    assert [r["conid"] for r in secdef_search("ES")] == [str(ES)]


def test_the_futures_listing_has_the_gateways_shape() -> None:
    status, body = futures_listing("ES,NQ,XYZ", date(2024, 11, 26))
    assert status == 200 and set(body) == {"ES", "NQ", "XYZ"} and body["XYZ"] == []
    es = body["ES"]
    assert [e["expirationDate"] for e in es] == [20241220, 20250321, 20250620, 20250919]
    assert es[1]["ltd"] == 20250320 and es[1]["symbol"] == "ES"
    assert all(e["underlyingConid"] == ES for e in es)
    assert futures_listing(None, date(2024, 11, 26))[0] == 400
    # Expired months drop out.
    later = futures_listing("ES", date(2024, 12, 20))[1]["ES"]
    assert later[0]["expirationDate"] == 20250321


def test_secdef_info_resolves_a_contract_month() -> None:
    status, info = secdef_info({"conid": str(ES), "sectype": "FUT", "month": "MAR25"})
    assert status == 200 and len(info) == 1
    entry = info[0]
    month = by_conid(entry["conid"])
    assert month.expiry == date(2025, 3, 21)
    assert entry["maturityDate"] == "20250321" and entry["multiplier"] == "50"
    assert entry["exchange"] == "CME" and entry["currency"] == "USD"
    assert secdef_info({"conid": str(ES), "sectype": "FUT"})[0] == 400
    assert secdef_info({"conid": str(ES), "sectype": "FUT", "month": "MAR99"})[0] == 400
    assert secdef_info({"conid": "1", "sectype": "FUT"})[0] == 400
    assert secdef_info({"conid": str(month.conid), "sectype": "FUT"})[1][0]["conid"] == month.conid


def test_a_month_has_bars_only_while_listed_and_differs_from_its_neighbours() -> None:
    h5, m5 = listed_months("ES", date(2024, 11, 26))[1:3]  # March and June 2025
    m = market(datetime(2025, 4, 1, tzinfo=UTC))
    daily = parse_bar_size("1d")
    h5_bars = m.bars(h5.conid, daily, datetime(2023, 1, 1, tzinfo=UTC), m.clock.now(), False)
    first = datetime.fromtimestamp(h5_bars.ts_ms[0] / 1000, UTC).date()
    last = datetime.fromtimestamp(h5_bars.ts_ms[-1] / 1000, UTC).date()
    assert h5.first_date <= first <= h5.first_date + timedelta(days=5)
    assert last == h5.last_trade_date
    window = (datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC))
    front = m.bars(h5.conid, daily, *window, False)
    back = m.bars(m5.conid, daily, *window, False)
    assert len(front) == len(back) == 5
    assert (back.close > front.close).all()  # carry: the later month trades higher
    assert front.volume_shares.sum() > 10 * back.volume_shares.sum()  # the front month trades
    status, body = history_response(
        m, {"conid": str(h5.conid), "period": "1w", "bar": "1d", "startTime": "20250331-00:00:00"}
    )
    assert status == 200 and body == {"error": "No data."}
    quote = m.quote(h5.conid)
    assert quote.last_is_close and quote.session_date == h5.last_trade_date


# -- delayed data ------------------------------------------------------------------------------


def test_delayed_instruments_lag_fifteen_minutes_and_are_flagged() -> None:
    delayed = market(delayed_conids=frozenset({SPY}))
    live = market()
    one_min = parse_bar_size("1min")
    window = (NOW - timedelta(hours=1), NOW)
    lagged = delayed.bars(SPY, one_min, *window, False)
    assert len(lagged) == 45 and lagged.equals(
        live.bars(SPY, one_min, *window, False).select(slice(0, 45))
    )
    assert delayed.bars(AAPL, one_min, *window, False).equals(
        live.bars(AAPL, one_min, *window, False)
    )
    quote = delayed.quote(SPY)
    assert (
        quote.market_data_availability == "DpB" and quote.updated_ms == live.quote(SPY).updated_ms
    )
    assert quote.last == lagged.close[-1]
    assert snapshot_fields(delayed, SPY, ["6509"])["6509"] == "DpB"
    assert snapshot_fields(delayed, AAPL, ["6509"])["6509"] == "RpB"
    status, body = history_response(delayed, {"conid": str(SPY), "period": "1d", "bar": "1h"})
    assert status == 200 and body["mdAvailability"] == "D"
    status, body = history_response(delayed, {"conid": str(AAPL), "period": "1d", "bar": "1h"})
    assert body["mdAvailability"] == "S"
    with pytest.raises(ValueError, match="delayed_conids"):
        market(delayed_conids=frozenset({1}))


# -- advisor logins ----------------------------------------------------------------------------


def _broker(advisor: bool) -> Broker:
    return Broker(
        market(),
        seed=42,
        main_account="DU1234567",
        bulk_account="DU7654321",
        bulk_positions=250,
        starting_cash=1_000_000.0,
        advisor=advisor,
    )


def test_an_advisor_login_lists_groups_and_profiles_besides_real_accounts() -> None:
    advisor, individual = _broker(True), _broker(False)
    payload = advisor.iserver_accounts_payload("s")
    real = [a["id"] for a in advisor.portfolio_accounts_payload()]
    assert real == advisor.account_ids and len(real) == 4
    assert payload["accounts"][0] == "All"
    assert set(payload["accounts"]) == set(real) | {"All", "GROUP1"} | set(payload["profiles"])
    assert payload["groups"] == ["All", "GROUP1"]
    assert payload["profiles"] and payload["profiles"][0].startswith("UPRO_BUY_785_")
    assert set(payload["acctProps"]) == set(real)
    assert set(payload["aliases"]) == set(payload["accounts"])
    assert payload["selectedAccount"] == "DU1234567"
    assert advisor.is_group_or_profile("All") and not advisor.has_account("GROUP1")
    # The accounts an individual login has are the same, with the same holdings.
    assert individual.iserver_accounts_payload("s")["accounts"] == ["DU1234567", "DU7654321"]
    for account in individual.account_ids:
        assert advisor.truth_positions(account) == individual.truth_positions(account)
    assert all(advisor.truth_positions(a) for a in real)


def test_config_validates_the_new_fields() -> None:
    with pytest.raises(ValueError, match="login"):
        SimulatorConfig(login="fa")
    config = SimulatorConfig(delayed_conids=[SPY])  # type: ignore[arg-type]
    assert config.delayed_conids == frozenset({SPY})
    assert SimulatorConfig().login == "individual" and not SimulatorConfig().splits


def test_every_guess_names_its_source_and_every_case_is_covered() -> None:
    assert {g.case for g in GUESSES} == {"advisor", "splits", "futures", "non-us", "delayed"}
    assert all(g.behaviour and g.source and g.where for g in GUESSES)
    assert table().count("\n") == len(GUESSES) + 1
