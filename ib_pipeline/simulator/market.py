"""The simulator's synthetic market as seen at the clock's time: bars of any size, and quotes.

`Market` answers "which bars of this window are complete now" for every bar size (1min..8h
aggregated from the session's minutes, 1d from whole sessions, 1w and 1m from whole weeks and
months of sessions) and "what does a snapshot show now" (`Quote`). The minutes themselves come
from `price_model` (one session from ``(seed, conid, date)``, nothing chained) and are combined
with the exact arithmetic of `bars`; sessions come from the real exchange calendars of
`ib_pipeline.calendars`, and a stock's extended session (04:00-20:00 New York) contains its
regular one.

Time comes from a clock: "now" is ``clock.now()``, and only completed bars are visible (a bar
once its last minute has ended, a daily bar once its session has ended, a weekly or monthly bar
once the last session of its week or month has ended).

What it must never do: speak HTTP, read the wall clock directly, format values for the gateway
(`history`, `snapshot` do that), or keep state that changes what a given (seed, clock) serves.
The caches only save work.

`Bars`, `DailyBar`, `aggregate_intraday`, `to_ms` and `from_ms` are re-exported here for code
that imported them from this module before they moved to `bars` and `epoch`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from ib_pipeline.calendars import (
    MS_PER_MINUTE,
    Session,
    SessionCalendar,
    calendar_for,
    month_bar_start_ms,
    period_key,
)
from ib_pipeline.clock import Clock
from ib_pipeline.simulator.bars import Bars, DailyBar, aggregate_days, aggregate_intraday, freeze
from ib_pipeline.simulator.epoch import from_ms, to_ms
from ib_pipeline.simulator.instruments import ALL_INSTRUMENTS, Instrument, third_friday
from ib_pipeline.simulator.price_model import PriceModel, Tape, build_model, generate_tape
from ib_pipeline.timeframes import BarKind, BarSize

__all__ = [
    "DELAY",
    "DELAYED_AVAILABILITY",
    "REALTIME_AVAILABILITY",
    "Bars",
    "DailyBar",
    "Market",
    "Quote",
    "aggregate_intraday",
    "from_ms",
    "to_ms",
]


REALTIME_AVAILABILITY = "RpB"
"""Snapshot field 6509 of a subscribed instrument: R real-time, p consolidated, B book."""
DELAYED_AVAILABILITY = "DpB"
"""Snapshot field 6509 of an instrument the account has no subscription for: D delayed."""
DELAY = timedelta(minutes=15)
"""How far delayed market data lags the clock."""

FUTURE_CARRY = 0.045
"""Annual cost of carry: a contract month trades at the root's price times
``exp(FUTURE_CARRY * days to expiry / 365)``, so months differ and a roll shows a gap."""
ROLL_DAYS = 8
"""Volume moves from the expiring month to the next this many days before its last trade date."""
_FRONT_SHARE, _EXPIRING_SHARE, _BACK_SHARE = 0.85, 0.15, 0.02

Splits = Mapping[int, Sequence[tuple[date, float]]]
"""conid -> [(effective date, ratio)]: from its effective date on, one old share is ``ratio``
new shares (4.0 for a 4:1 split, 0.1 for a 1:10 reverse split)."""


@dataclass(frozen=True)
class Quote:
    """What a market-data snapshot shows for one instrument at ``updated_ms``, as plain numbers.

    ``last`` is the close of the latest completed one-minute bar of the current extended session;
    before the first minute of a session has completed (pre-open, overnight, weekend, holiday)
    it is the previous session's last close and ``last_is_close`` is true (the gateway's "C"
    prefix). ``open``/``high``/``low``/``volume`` cover that quote session so far (extended
    hours included), ``close`` is its last close once it has ended, ``prior_close`` the last
    close of the session before it. Sizes and volume are in shares (units). Every field is
    None when the instrument has no session yet (not listed at ``updated_ms``).
    """

    conid: int
    symbol: str
    updated_ms: int
    session_date: date | None
    last: float | None
    last_is_close: bool
    bid: float | None
    ask: float | None
    last_size: int | None
    bid_size: int | None
    ask_size: int | None
    volume: int | None
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    prior_close: float | None
    change: float | None
    change_pct: float | None
    halted: bool = False
    market_data_availability: str = REALTIME_AVAILABILITY


@dataclass(frozen=True)
class _Window:
    """What one `Market.bars` call asks for, in epoch ms."""

    start_ms: int
    end_ms: int
    now_ms: int
    outside_rth: bool
    limit: int | None
    basis: date | None = None  # the split-adjustment date; None: as traded


class Market:
    """The synthetic market of one seed, seen at the time of one clock.

    Thread-safe: generation is pure, and the caches are `functools.lru_cache` wrappers (which
    guard their own bookkeeping) of module-level functions of the seed and the universe. They
    never hold the Market itself, so a Market and its cached sessions are freed as soon as the
    last reference to it goes.
    """

    def __init__(
        self,
        seed: int,
        clock: Clock,
        *,
        universe: Sequence[Instrument] = ALL_INSTRUMENTS,
        session_cache_size: int = 512,
        daily_cache_size: int = 200_000,
        splits: Splits | None = None,
        delayed_conids: frozenset[int] = frozenset(),
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        for name, size in (
            ("session_cache_size", session_cache_size),
            ("daily_cache_size", daily_cache_size),
        ):
            if size < 1:
                raise ValueError(f"{name}: cache size must be at least 1, got {size}")
        self.seed = seed
        self.clock = clock
        self._instruments = {item.conid: item for item in universe}
        if len(self._instruments) != len(universe):
            raise ValueError("universe holds duplicate conids")
        self.splits: dict[int, tuple[tuple[date, float], ...]] = _check_splits(
            splits or {}, self._instruments
        )
        unknown = sorted(c for c in delayed_conids if c not in self._instruments)
        if unknown:
            raise ValueError(f"delayed_conids: unknown conids {unknown}")
        self.delayed_conids = frozenset(delayed_conids)
        model_of: Callable[[Instrument], PriceModel] = functools.cache(
            functools.partial(build_model, seed)
        )
        # (conid, session date) -> the session's minutes; (conid, date, outside_rth) -> its bar.
        self._tape: Callable[[int, date], Tape] = functools.lru_cache(session_cache_size)(
            functools.partial(_session_tape, seed, self._instruments, model_of)
        )
        self._daily_bar: Callable[[int, date, bool], DailyBar] = functools.lru_cache(
            daily_cache_size
        )(functools.partial(_session_daily_bar, self._instruments, self._tape))
        self._split_daily_bar: Callable[[int, date, bool, date], DailyBar] = functools.lru_cache(
            4096
        )(self._adjusted_daily_bar)

    def __repr__(self) -> str:
        return f"Market(seed={self.seed}, clock={self.clock!r})"

    # -- lookups ---------------------------------------------------------------------------

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        return tuple(self._instruments.values())

    def instrument(self, conid: int) -> Instrument:
        """The instrument of ``conid``; KeyError naming the conid if this market has none."""
        return _instrument(self._instruments, conid)

    def calendar(self, conid: int) -> SessionCalendar:
        return calendar_for(self.instrument(conid).trading_hours)

    def now_ms(self, conid: int | None = None) -> int:
        """The clock's now; for a delayed instrument (``conid`` in ``delayed_conids``), the
        moment its delayed feed has reached (`DELAY` earlier)."""
        now = to_ms(self.clock.now())
        if conid is not None and conid in self.delayed_conids:
            return now - int(DELAY.total_seconds() * 1000)
        return now

    def is_delayed(self, conid: int) -> bool:
        return conid in self.delayed_conids

    def market_data_availability(self, conid: int) -> str:
        """Snapshot field 6509 for ``conid``: `DELAYED_AVAILABILITY` or `REALTIME_AVAILABILITY`."""
        return DELAYED_AVAILABILITY if conid in self.delayed_conids else REALTIME_AVAILABILITY

    # -- splits ------------------------------------------------------------------------------

    def basis_date(self, conid: int, as_of: datetime | None = None) -> date:
        """The date history is adjusted to: the exchange-local date of ``as_of`` (default: the
        clock's now). A split whose effective date is at or before it is applied."""
        moment = self.clock.now() if as_of is None else as_of
        zone = ZoneInfo(self.instrument(conid).trading_hours.timezone)
        return moment.astimezone(zone).date()

    def split_factors(self, conid: int, session_date: date, basis: date) -> tuple[float, float]:
        """``(as_traded, applied)`` for one session: the as-traded price is the model's price
        times ``as_traded`` (the product of the ratios of every split after the session), and the
        served price is the as-traded price divided by ``applied`` (the ratios of the splits after
        the session that are effective at ``basis``); volumes go the other way."""
        as_traded = applied = 1.0
        for effective, ratio in self.splits.get(conid, ()):
            if effective > session_date:
                as_traded *= ratio
                if effective <= basis:
                    applied *= ratio
        return as_traded, applied

    def _served_minutes(
        self, conid: int, session_date: date, outside_rth: bool, basis: date | None
    ) -> Bars:
        """The session's one-minute bars on the basis of ``basis`` (None: as traded)."""
        minutes = self._tape(conid, session_date).view(outside_rth)
        if conid not in self.splits:
            return minutes
        instrument = self.instrument(conid)
        as_traded, applied = self.split_factors(conid, session_date, basis or session_date)
        return _split_basis(minutes, instrument, as_traded, applied)

    def _served_daily(
        self, conid: int, session_date: date, outside_rth: bool, basis: date | None
    ) -> DailyBar:
        if conid not in self.splits:
            return self.daily_bar(conid, session_date, outside_rth)
        _listed_session(self.instrument(conid), session_date)
        applied = self.split_factors(conid, session_date, basis or session_date)[1]
        key = session_date if basis is None or applied == 1.0 else basis
        return self._split_daily_bar(conid, session_date, outside_rth, key)

    def _adjusted_daily_bar(
        self, conid: int, session_date: date, outside_rth: bool, basis: date
    ) -> DailyBar:
        return DailyBar.of_minutes(
            session_date, self._served_minutes(conid, session_date, outside_rth, basis)
        )

    def session(self, conid: int, session_date: date) -> Session:
        """The instrument's session on ``session_date``; ValueError if it does not trade that day
        (not a session of its exchange, or before its first date of history)."""
        return _listed_session(self.instrument(conid), session_date)

    def history_start(self, conid: int, outside_rth: bool) -> datetime | None:
        """Start of the instrument's first session (None if the calendar has none for it)."""
        instrument = self.instrument(conid)
        cal = calendar_for(instrument.trading_hours)
        dates = cal.session_dates(instrument.first_date, instrument.first_date + timedelta(days=14))
        return cal.session(dates[0]).bounds(outside_rth)[0] if dates else None

    def history_end(self, conid: int, outside_rth: bool) -> datetime | None:
        """End of the last session of a contract month (its last trade date); None for an
        instrument that keeps trading."""
        instrument = self.instrument(conid)
        last = instrument.last_trade_date
        if last is None:
            return None
        cal = calendar_for(instrument.trading_hours)
        dates = cal.session_dates(last - timedelta(days=14), last)
        return cal.session(dates[-1]).bounds(outside_rth)[1] if dates else None

    # -- sessions ----------------------------------------------------------------------------

    def minute_bars(self, conid: int, session_date: date, outside_rth: bool) -> Bars:
        """Every one-minute bar of one session, regardless of the clock (the market as it is, not
        what is visible yet). ValueError if the instrument has no session that day."""
        session = self.session(conid, session_date)
        if conid in self.splits:
            return self._served_minutes(conid, session.date, outside_rth, self.basis_date(conid))
        return self._tape(conid, session.date).view(outside_rth)

    def daily_bar(self, conid: int, session_date: date, outside_rth: bool) -> DailyBar:
        """The session's daily bar, exactly the aggregate of its one-minute bars. ValueError if
        the instrument has no session that day."""
        return self._daily_bar(conid, session_date, outside_rth)

    # -- bars --------------------------------------------------------------------------------

    def bars(
        self,
        conid: int,
        bar: BarSize,
        start: datetime,
        end: datetime,
        outside_rth: bool,
        *,
        limit: int | None = None,
        as_of: datetime | None = None,
        as_traded: bool = False,
    ) -> Bars:
        """Completed bars (relative to ``clock.now()``) with ``start <= ts < end``, sorted by ts.

        With ``limit``, only the ``limit`` most recent of them; sessions older than needed are
        then never generated, so a long window costs what its last ``limit`` bars cost.

        Instruments with splits are served adjusted as of the clock's now (the real service's
        rule); ``as_of`` adjusts as of another moment instead, and ``as_traded`` gives every bar
        as it traded (no adjustment at all). Both only matter for instruments with splits.
        """
        instrument = self.instrument(conid)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be non-negative, got {limit}")
        start_ms, end_ms = to_ms(start), to_ms(end)
        if end_ms <= start_ms or limit == 0:
            return Bars.empty()
        basis = None if as_traded else self.basis_date(conid, as_of)
        window = _Window(start_ms, end_ms, self.now_ms(conid), outside_rth, limit, basis)
        if bar.kind is BarKind.INTRADAY:
            parts = self._intraday(instrument, bar, window)
        elif bar.kind is BarKind.DAY:
            parts = self._days(instrument, window)
        else:
            parts = self._periods(instrument, bar, window)
        result = Bars.concat(parts[::-1])
        return result if limit is None else result.tail(limit)

    def _intraday(self, instrument: Instrument, bar: BarSize, window: _Window) -> list[Bars]:
        start_ms, end_ms, now_ms = window.start_ms, window.end_ms, window.now_ms
        outside_rth, limit = window.outside_rth, window.limit
        newest_first: list[Bars] = []
        count = 0
        for session in self._sessions_backward(instrument, start_ms, end_ms, outside_rth):
            if session.bounds_ms(outside_rth)[0] + MS_PER_MINUTE > now_ms:
                continue  # no minute of it has completed yet
            minutes = self._served_minutes(
                instrument.conid, session.date, outside_rth, window.basis
            )
            bars, ends = aggregate_intraday(minutes, bar, session.utc_offset_minutes)
            keep = (bars.ts_ms >= start_ms) & (bars.ts_ms < end_ms) & (ends <= now_ms)
            part = bars if bool(keep.all()) else bars.select(keep)
            if len(part):
                newest_first.append(part)
                count += len(part)
                if limit is not None and count >= limit:
                    break
        return newest_first

    def _days(self, instrument: Instrument, window: _Window) -> list[Bars]:
        start_ms, end_ms, now_ms = window.start_ms, window.end_ms, window.now_ms
        outside_rth, limit = window.outside_rth, window.limit
        days: list[DailyBar] = []
        for session in self._sessions_backward(instrument, start_ms, end_ms, outside_rth):
            first, last = session.bounds_ms(outside_rth)
            if first < start_ms:
                break  # this and every older session's bar starts before the window
            if first >= end_ms or last > now_ms:
                continue
            days.append(
                self._served_daily(instrument.conid, session.date, outside_rth, window.basis)
            )
            if limit is not None and len(days) >= limit:
                break
        return [Bars.of_days(days[::-1])] if days else []

    def _periods(self, instrument: Instrument, bar: BarSize, window: _Window) -> list[Bars]:
        start_ms, end_ms, now_ms = window.start_ms, window.end_ms, window.now_ms
        outside_rth, limit = window.outside_rth, window.limit
        cal = calendar_for(instrument.trading_hours)
        # Start past `end` so the newest week or month is seen whole (its completion depends on
        # its last session, which may lie after `end`).
        hi = _last_date(instrument, from_ms(end_ms).date() + timedelta(days=40))
        lo = max(instrument.first_date, from_ms(start_ms).date() - timedelta(days=40))
        aggregated: list[DailyBar] = []
        group: list[date] = []
        group_key: tuple[int, int] | None = None

        def flush() -> bool:
            """Emit the finished group; False once the groups have gone past the window."""
            oldest, newest = group[-1], group[0]
            if bar.kind is BarKind.MONTH:
                stamp = month_bar_start_ms(oldest.year, oldest.month)
            else:
                stamp = cal.session(oldest).bounds_ms(outside_rth)[0]
            if stamp < start_ms:
                return False
            if stamp < end_ms and cal.session(newest).bounds_ms(outside_rth)[1] <= now_ms:
                days = [
                    self._served_daily(instrument.conid, d, outside_rth, window.basis)
                    for d in reversed(group)
                ]
                aggregated.append(aggregate_days(days, stamp))
            return True

        for day in _dates_backward(cal, hi, lo):
            key = period_key(day, bar)
            if group and key != group_key:
                if not flush() or (limit is not None and len(aggregated) >= limit):
                    group = []
                    break
                group = []
            group_key = key
            group.append(day)
        if group:
            flush()
        return [Bars.of_days(aggregated[::-1])] if aggregated else []

    def _sessions_backward(
        self, instrument: Instrument, start_ms: int, end_ms: int, outside_rth: bool
    ) -> Iterator[Session]:
        """Sessions (newest first) whose bars overlap [start, end), from the first date on."""
        cal = calendar_for(instrument.trading_hours)
        hi = _last_date(instrument, from_ms(end_ms).date() + timedelta(days=2))
        lo = max(instrument.first_date, from_ms(start_ms).date() - timedelta(days=2))
        for day in _dates_backward(cal, hi, lo):
            session = cal.session(day)
            first, last = session.bounds_ms(outside_rth)
            if first >= end_ms:
                continue
            if last <= start_ms:
                return
            yield session

    # -- quotes -------------------------------------------------------------------------------

    def quote(self, conid: int) -> Quote:
        """The snapshot values of ``conid`` at ``clock.now()`` (see `Quote`)."""
        instrument = self.instrument(conid)
        now_ms = self.now_ms(conid)
        cal = calendar_for(instrument.trading_hours)
        now_day = from_ms(now_ms).date()
        current: Session | None = None
        start_day = max(instrument.first_date, now_day - timedelta(days=1))
        end_day = _last_date(instrument, now_day + timedelta(days=2))
        for day in cal.session_dates(start_day, end_day):
            session = cal.session(day)
            if session.bounds_ms(True)[1] > now_ms:
                current = session
                break
        quote_session: Session | None = None
        completed = 0
        last_is_close = True
        basis = self.basis_date(conid) if conid in self.splits else None
        if current is not None:
            current_minutes = self._served_minutes(conid, current.date, True, basis)
            completed = _completed(current_minutes, now_ms)
            if completed >= 1:
                quote_session, last_is_close = current, False
        if quote_session is None:
            quote_session = self._session_before(instrument, cal, now_ms)
            if quote_session is None:
                return _empty_quote(instrument, self.now_ms())
            completed = len(self._tape(instrument.conid, quote_session.date).bars)
        minutes = self._served_minutes(conid, quote_session.date, True, basis)
        completed = min(completed, len(minutes))
        last = float(minutes.close[completed - 1])
        previous = self._session_before(instrument, cal, quote_session.bounds_ms(True)[0])
        prior_close = (
            float(self._served_minutes(conid, previous.date, True, basis).close[-1])
            if previous is not None
            else None
        )
        ended = quote_session.bounds_ms(True)[1] <= now_ms
        decimals = instrument.price_decimals
        spread = instrument.half_spread
        unit = {"STK": instrument.lot_size, "CASH": 100_000}.get(instrument.sec_type, 1)
        sizes = np.random.default_rng([self.seed, conid, now_ms // MS_PER_MINUTE, 2]).integers(
            1, [60, 60, 10]
        )
        change = round(last - prior_close, decimals) if prior_close is not None else None
        return Quote(
            conid=conid,
            symbol=instrument.symbol,
            updated_ms=self.now_ms(),
            session_date=quote_session.date,
            last=last,
            last_is_close=last_is_close,
            bid=max(round(last - spread, decimals), instrument.min_tick),
            ask=round(last + spread, decimals),
            last_size=int(sizes[2]) * unit,
            bid_size=int(sizes[0]) * unit,
            ask_size=int(sizes[1]) * unit,
            volume=int(minutes.volume_shares[:completed].sum()),
            open=float(minutes.open[0]),
            high=float(minutes.high[:completed].max()),
            low=float(minutes.low[:completed].min()),
            close=last if ended else None,
            prior_close=prior_close,
            change=change,
            change_pct=(
                round(change / prior_close * 100.0, 2)
                if change is not None and prior_close
                else None
            ),
            market_data_availability=self.market_data_availability(conid),
        )

    def _session_before(
        self, instrument: Instrument, cal: SessionCalendar, moment_ms: int
    ) -> Session | None:
        """The latest session (from the first date on) whose extended hours end by ``moment_ms``."""
        day = _last_date(instrument, from_ms(moment_ms).date() + timedelta(days=1))
        for candidate in reversed(cal.previous_session_dates(day, 6)):
            if candidate < instrument.first_date:
                return None
            session = cal.session(candidate)
            if session.bounds_ms(True)[1] <= moment_ms:
                return session
        return None

    def last_price(self, conid: int) -> float:
        """What a market order fills at now: the snapshot's last price. ValueError if the
        instrument has no price yet (not listed at the clock's time)."""
        quote = self.quote(conid)
        if quote.last is None:
            raise ValueError(
                f"{quote.symbol} ({conid}) has no price at {from_ms(quote.updated_ms).isoformat()}:"
                " it is not listed yet"
            )
        return quote.last


def _empty_quote(instrument: Instrument, now_ms: int) -> Quote:
    return Quote(
        conid=instrument.conid,
        symbol=instrument.symbol,
        updated_ms=now_ms,
        session_date=None,
        last=None,
        last_is_close=False,
        bid=None,
        ask=None,
        last_size=None,
        bid_size=None,
        ask_size=None,
        volume=None,
        open=None,
        high=None,
        low=None,
        close=None,
        prior_close=None,
        change=None,
        change_pct=None,
    )


def _dates_backward(cal: SessionCalendar, hi: date, lo: date) -> Iterator[date]:
    """Session dates from ``hi`` down to ``lo`` (both inclusive), newest first, in chunks so a
    caller that stops early never lists the whole range."""
    while hi >= lo:
        chunk_lo = max(lo, hi - timedelta(days=63))
        yield from reversed(cal.session_dates(chunk_lo, hi))
        hi = chunk_lo - timedelta(days=1)


def _instrument(instruments: Mapping[int, Instrument], conid: int) -> Instrument:
    try:
        return instruments[conid]
    except KeyError:
        raise KeyError(f"unknown conid {conid!r}: the simulator has no such instrument") from None


def _listed_session(instrument: Instrument, session_date: date) -> Session:
    if session_date < instrument.first_date:
        raise ValueError(
            f"{instrument.symbol} has no history before {instrument.first_date.isoformat()},"
            f" asked for {session_date.isoformat()}"
        )
    last = instrument.last_trade_date
    if last is not None and session_date > last:
        raise ValueError(
            f"{instrument.symbol} {instrument.conid} stopped trading on {last.isoformat()},"
            f" asked for {session_date.isoformat()}"
        )
    return calendar_for(instrument.trading_hours).session(session_date)


def _last_date(instrument: Instrument, day: date) -> date:
    """``day``, or the instrument's last trade date if that comes first (contract months)."""
    last = instrument.last_trade_date
    return day if last is None or day <= last else last


def _completed(minutes: Bars, now_ms: int) -> int:
    """How many of the session's one-minute bars have ended by ``now_ms``."""
    return int(np.searchsorted(minutes.ts_ms + MS_PER_MINUTE, now_ms, side="right"))


def _check_splits(
    splits: Splits, instruments: Mapping[int, Instrument]
) -> dict[int, tuple[tuple[date, float], ...]]:
    checked: dict[int, tuple[tuple[date, float], ...]] = {}
    for conid, events in splits.items():
        if conid not in instruments:
            raise ValueError(f"splits: unknown conid {conid}")
        ordered = tuple(sorted((day, float(ratio)) for day, ratio in events))
        for day, ratio in ordered:
            if not isinstance(day, date) or not math.isfinite(ratio) or ratio <= 0 or ratio == 1:
                raise ValueError(
                    f"splits of {conid}: ({day!r}, {ratio!r}) needs a date and a ratio > 0, != 1"
                )
        if len({day for day, _ in ordered}) != len(ordered):
            raise ValueError(f"splits of {conid}: two splits on one date")
        if ordered:
            checked[conid] = ordered
    return checked


def _split_basis(minutes: Bars, instrument: Instrument, as_traded: float, applied: float) -> Bars:
    """One session's model minutes on a split basis: as traded (prices times ``as_traded`` on
    the tick, volumes divided by it), then adjusted (prices divided by ``applied``, volumes
    multiplied). The same factors for every minute, so coarser bars stay exact aggregates."""
    if as_traded == 1.0 and applied == 1.0:
        return minutes
    per_unit = instrument.ticks_per_unit
    tick = 1.0 / per_unit

    def price(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        traded = values
        if as_traded != 1.0:
            traded = np.maximum(np.rint(values * as_traded * per_unit) / per_unit, tick)
        if applied == 1.0:
            return traded
        result: npt.NDArray[np.float64] = np.round(traded / applied, 10)
        return result

    volume = minutes.volume_shares
    if as_traded != 1.0:
        volume = np.rint(volume / as_traded).astype(np.int64)
    if applied != 1.0:
        volume = np.rint(volume * applied).astype(np.int64)
    return Bars(
        minutes.ts_ms,
        price(minutes.open),
        price(minutes.high),
        price(minutes.low),
        price(minutes.close),
        volume,
    )


def _future_month_tape(root: Tape, instrument: Instrument) -> Tape:
    """A contract month's minutes from its root's: prices times the carry factor of the session
    (rounded to the tick), volume by the month's share of the day (front, expiring or back)."""
    session_date = root.session.date
    expiry = instrument.expiry or session_date
    last = instrument.last_trade_date or expiry
    per_unit = instrument.ticks_per_unit
    factor = math.exp(FUTURE_CARRY * (expiry - session_date).days / 365.0)
    previous_last = _previous_month_last_trade(instrument)
    if (last - session_date).days <= ROLL_DAYS:
        share = _EXPIRING_SHARE
    elif (previous_last - session_date).days < ROLL_DAYS:
        share = _FRONT_SHARE
    else:
        share = _BACK_SHARE
    bars = root.bars

    def price(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        scaled: npt.NDArray[np.float64] = np.rint(values * factor * per_unit) / per_unit
        freeze(scaled)
        return scaled

    volume = np.rint(bars.volume_shares * share).astype(np.int64)
    freeze(volume)
    derived = Bars(
        bars.ts_ms, price(bars.open), price(bars.high), price(bars.low), price(bars.close), volume
    )
    return Tape(session=root.session, bars=derived, rth=root.rth)


def _previous_month_last_trade(instrument: Instrument) -> date:
    """Last trade date of the contract month before ``instrument`` (three months earlier)."""
    expiry = instrument.expiry
    if expiry is None:
        raise ValueError(f"{instrument.symbol} {instrument.conid} is not a contract month")
    month_index = expiry.year * 12 + expiry.month - 1 - 3
    year, month = divmod(month_index, 12)
    return third_friday(year, month + 1) - timedelta(days=1)


def _without_break(tape: Tape) -> Tape:
    """The tape without the minutes of the session's midday break (Tokyo, Hong Kong)."""
    pause = tape.session.break_bounds_ms()
    if pause is None:
        return tape
    ts = tape.bars.ts_ms
    keep = (ts < pause[0]) | (ts >= pause[1])
    rth_start, rth_end = tape.session.bounds_ms(False)
    kept = ts[keep]
    first = int(np.count_nonzero(kept < rth_start))
    count = int(np.count_nonzero((kept >= rth_start) & (kept < rth_end)))
    bars = tape.bars.select(keep)
    for array in (bars.ts_ms, bars.open, bars.high, bars.low, bars.close, bars.volume_shares):
        freeze(array)
    return Tape(session=tape.session, bars=bars, rth=slice(first, first + count))


def _session_tape(
    seed: int,
    instruments: Mapping[int, Instrument],
    model_of: Callable[[Instrument], PriceModel],
    conid: int,
    session_date: date,
) -> Tape:
    """The minutes of one session (``Market._tape`` caches it; callers pass a session date)."""
    instrument = instruments[conid]
    if instrument.underlying_conid is not None and instrument.underlying_conid in instruments:
        root = _session_tape(seed, instruments, model_of, instrument.underlying_conid, session_date)
        return _future_month_tape(root, instrument)
    session = calendar_for(instrument.trading_hours).session(session_date)
    return _without_break(generate_tape(seed, model_of(instrument), instrument, session))


def _session_daily_bar(
    instruments: Mapping[int, Instrument],
    tape_of: Callable[[int, date], Tape],
    conid: int,
    session_date: date,
    outside_rth: bool,
) -> DailyBar:
    """One session's daily bar (``Market._daily_bar`` caches it); checks the date first."""
    _listed_session(_instrument(instruments, conid), session_date)
    return DailyBar.of_minutes(session_date, tape_of(conid, session_date).view(outside_rth))
