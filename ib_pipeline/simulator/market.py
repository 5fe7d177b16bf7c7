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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from ib_pipeline.calendars import (
    MS_PER_MINUTE,
    Session,
    SessionCalendar,
    calendar_for,
    month_bar_start_ms,
    period_key,
)
from ib_pipeline.clock import Clock
from ib_pipeline.simulator.bars import Bars, DailyBar, aggregate_days, aggregate_intraday
from ib_pipeline.simulator.epoch import from_ms, to_ms
from ib_pipeline.simulator.instruments import UNIVERSE, Instrument
from ib_pipeline.simulator.price_model import PriceModel, Tape, build_model, generate_tape
from ib_pipeline.timeframes import BarKind, BarSize

__all__ = [
    "Bars",
    "DailyBar",
    "Market",
    "Quote",
    "aggregate_intraday",
    "from_ms",
    "to_ms",
]


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
    market_data_availability: str = "RpB"


@dataclass(frozen=True)
class _Window:
    """What one `Market.bars` call asks for, in epoch ms."""

    start_ms: int
    end_ms: int
    now_ms: int
    outside_rth: bool
    limit: int | None


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
        universe: Sequence[Instrument] = UNIVERSE,
        session_cache_size: int = 512,
        daily_cache_size: int = 200_000,
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

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

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

    # -- sessions ----------------------------------------------------------------------------

    def minute_bars(self, conid: int, session_date: date, outside_rth: bool) -> Bars:
        """Every one-minute bar of one session, regardless of the clock (the market as it is, not
        what is visible yet). ValueError if the instrument has no session that day."""
        session = self.session(conid, session_date)
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
    ) -> Bars:
        """Completed bars (relative to ``clock.now()``) with ``start <= ts < end``, sorted by ts.

        With ``limit``, only the ``limit`` most recent of them; sessions older than needed are
        then never generated, so a long window costs what its last ``limit`` bars cost.
        """
        instrument = self.instrument(conid)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be non-negative, got {limit}")
        start_ms, end_ms = to_ms(start), to_ms(end)
        if end_ms <= start_ms or limit == 0:
            return Bars.empty()
        window = _Window(start_ms, end_ms, self.now_ms(), outside_rth, limit)
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
            minutes = self._tape(instrument.conid, session.date).view(outside_rth)
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
            days.append(self.daily_bar(instrument.conid, session.date, outside_rth))
            if limit is not None and len(days) >= limit:
                break
        return [Bars.of_days(days[::-1])] if days else []

    def _periods(self, instrument: Instrument, bar: BarSize, window: _Window) -> list[Bars]:
        start_ms, end_ms, now_ms = window.start_ms, window.end_ms, window.now_ms
        outside_rth, limit = window.outside_rth, window.limit
        cal = calendar_for(instrument.trading_hours)
        # Start past `end` so the newest week or month is seen whole (its completion depends on
        # its last session, which may lie after `end`).
        hi = from_ms(end_ms).date() + timedelta(days=40)
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
                days = [self.daily_bar(instrument.conid, d, outside_rth) for d in reversed(group)]
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
        hi = from_ms(end_ms).date() + timedelta(days=2)
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
        now_ms = self.now_ms()
        cal = calendar_for(instrument.trading_hours)
        now_day = from_ms(now_ms).date()
        current: Session | None = None
        start_day = max(instrument.first_date, now_day - timedelta(days=1))
        for day in cal.session_dates(start_day, now_day + timedelta(days=2)):
            session = cal.session(day)
            if session.bounds_ms(True)[1] > now_ms:
                current = session
                break
        quote_session: Session | None = None
        completed = 0
        last_is_close = True
        if current is not None:
            first = current.bounds_ms(True)[0]
            completed = max(0, (now_ms - first) // MS_PER_MINUTE)
            if completed >= 1:
                quote_session, last_is_close = current, False
        if quote_session is None:
            quote_session = self._session_before(instrument, cal, now_ms)
            if quote_session is None:
                return _empty_quote(instrument, now_ms)
            completed = quote_session.minutes(True)
        minutes = self._tape(instrument.conid, quote_session.date).bars
        completed = min(completed, len(minutes))
        last = float(minutes.close[completed - 1])
        previous = self._session_before(instrument, cal, quote_session.bounds_ms(True)[0])
        prior_close = (
            float(self._tape(instrument.conid, previous.date).bars.close[-1])
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
            updated_ms=now_ms,
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
        )

    def _session_before(
        self, instrument: Instrument, cal: SessionCalendar, moment_ms: int
    ) -> Session | None:
        """The latest session (from the first date on) whose extended hours end by ``moment_ms``."""
        day = from_ms(moment_ms).date() + timedelta(days=1)
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
    return calendar_for(instrument.trading_hours).session(session_date)


def _session_tape(
    seed: int,
    instruments: Mapping[int, Instrument],
    model_of: Callable[[Instrument], PriceModel],
    conid: int,
    session_date: date,
) -> Tape:
    """The minutes of one session (``Market._tape`` caches it; callers pass a session date)."""
    instrument = instruments[conid]
    session = calendar_for(instrument.trading_hours).session(session_date)
    return generate_tape(seed, model_of(instrument), instrument, session)


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
