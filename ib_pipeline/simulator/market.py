"""The simulator's deterministic synthetic market: one-minute bars for any session of any
instrument, every coarser bar aggregated from them, and the quote a snapshot shows.

Why it is built this way:

- **Same seed, same market.** Every session is generated on its own from
  ``(seed, conid, session date)``: a day of 2016 costs the same as yesterday, and no day depends
  on having generated the one before. The day's price level comes from a deterministic function
  of the date (a few seeded sinusoids of the day number plus hash-seeded noise), and the day's
  intraday path is a Brownian bridge from its open anchor to its close anchor, drawn with
  ``np.random.default_rng([seed, conid, date.toordinal()])``. Neighbouring days share a level
  function, so closes and the next opens stay close (with gaps over weekends, as in real data).
- **Exact aggregates.** One-minute prices are rounded to the instrument's tick when generated
  and volume is an integer count of shares, so every coarser bar (2min..8h, 1d, 1w, 1m) is the
  exact first/max/min/last/sum of its minutes. Lots (the gateway's unit of 100 shares) are a
  formatting concern of the history endpoint, never of the market.
- **Sessions from the real calendar.** Bars exist only inside sessions of
  `ib_pipeline.sessions`; a stock's extended session (04:00-20:00 New York) contains its
  regular one, and the regular-hours bars are the same minutes either way.
- **Time from a clock.** "Now" is ``clock.now()``: only completed bars are visible (a bar once
  its last minute has ended, a daily bar once its session has ended, a weekly or monthly bar once
  the last session of its week or month has ended).

What it must never do: speak HTTP, read the wall clock directly, format values for the gateway
(`history`, `snapshot` do that), or keep state that changes what a given (seed, clock) serves.
The caches only save work.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from ib_pipeline.clock import Clock
from ib_pipeline.sessions import (
    MS_PER_MINUTE,
    Session,
    SessionCalendar,
    calendar_for,
    intraday_bucket_keys,
    month_bar_start_ms,
    period_key,
)
from ib_pipeline.simulator.instruments import UNIVERSE, Instrument
from ib_pipeline.timeframes import BarKind, BarSize

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_REGULAR_MINUTES = 390  # a full US regular session: the unit the volume and volatility scale to


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime, computed exactly (no float rounding)."""
    if value.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
    return (value - _EPOCH) // _MS


def from_ms(value: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=value)


# --------------------------------------------------------------------------------------------
# Bars


def _frozen(array: npt.NDArray[np.generic]) -> None:
    array.flags.writeable = False


@dataclass(frozen=True, eq=False)
class Bars:
    """A run of bars sorted by ``ts_ms`` (epoch ms of each bar's start, UTC).

    Prices are float64 multiples of the instrument's tick; ``volume_shares`` is int64 in shares
    (units). Arrays may be read-only views of the market's cache: copy before changing them.
    """

    ts_ms: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume_shares: I64

    def __post_init__(self) -> None:
        n = len(self.ts_ms)
        for name in ("open", "high", "low", "close", "volume_shares"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Bars.{name} has {len(getattr(self, name))} values, ts_ms has {n}"
                )

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def empty(cls) -> Bars:
        f = np.empty(0, dtype=np.float64)
        i = np.empty(0, dtype=np.int64)
        return cls(i, f, f, f, f, i)

    @classmethod
    def concat(cls, parts: Sequence[Bars]) -> Bars:
        """The bars of ``parts`` one after another (the caller keeps them in time order)."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.ts_ms for p in parts]),
            np.concatenate([p.open for p in parts]),
            np.concatenate([p.high for p in parts]),
            np.concatenate([p.low for p in parts]),
            np.concatenate([p.close for p in parts]),
            np.concatenate([p.volume_shares for p in parts]),
        )

    def select(self, index: slice | npt.NDArray[np.bool_] | I64) -> Bars:
        """The bars picked by a slice, a boolean mask or an index array."""
        return Bars(
            self.ts_ms[index],
            self.open[index],
            self.high[index],
            self.low[index],
            self.close[index],
            self.volume_shares[index],
        )

    def tail(self, count: int) -> Bars:
        """The ``count`` most recent bars (all of them if there are fewer)."""
        return self if len(self) <= count else self.select(slice(len(self) - count, None))

    def equals(self, other: Bars) -> bool:
        """Exact equality of every value (prices compared bit for bit, NaN never equal)."""
        return len(self) == len(other) and all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("ts_ms", "open", "high", "low", "close", "volume_shares")
        )


@dataclass(frozen=True)
class DailyBar:
    """One session's bar: stamped at the session's first minute (regular or extended), with
    ``end_ms`` the end of its last minute (the moment it is complete)."""

    session_date: date
    ts_ms: int
    end_ms: int
    open: float
    high: float
    low: float
    close: float
    volume_shares: int


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


# --------------------------------------------------------------------------------------------
# Caches

K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A small thread-safe least-recently-used map (the server may call from several threads)."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"cache size must be at least 1, got {maxsize}")
        self._maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


# --------------------------------------------------------------------------------------------
# The price model

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _hash_normal(*keys: int) -> float:
    """A standard normal draw that is a pure function of ``keys`` (splitmix64 + Box-Muller).

    Used for the per-day level noise, which a session needs for its own date and the next one:
    a hash keeps that free of generator set-up and of any order of generation.
    """
    state = 0x5EED
    for key in keys:
        state = _splitmix64(state ^ (key & _MASK64))
    u1 = ((state >> 11) + 0.5) / float(1 << 53)
    u2 = (_splitmix64(state) >> 11) / float(1 << 53)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


_LEVEL_PERIODS_DAYS = (21.0, 63.0, 250.0, 1000.0, 3000.0)


@dataclass(frozen=True)
class _PriceModel:
    """The seeded, per-instrument shape of the market (log prices)."""

    log_base: float
    amplitudes: tuple[float, ...]
    angular: tuple[float, ...]
    phases: tuple[float, ...]
    day_sd: float  # noise of the daily level (log)
    gap_sd: float  # gap between a close and the next day's open anchor (log)
    minute_sd: float  # one-minute log-return sd at a regular-hours volatility of 1
    volume_sd: float  # day-to-day volume variation (log)
    minutes_per_day: int  # minutes of an average day the volume is spread over

    def level(self, day: float) -> float:
        return self.log_base + sum(
            a * math.sin(w * day + p)
            for a, w, p in zip(self.amplitudes, self.angular, self.phases, strict=True)
        )


def _build_model(seed: int, instrument: Instrument) -> _PriceModel:
    rng = np.random.default_rng([seed, instrument.conid, 0, 1])
    periods = np.asarray(_LEVEL_PERIODS_DAYS)
    amplitudes = (
        instrument.daily_vol * np.sqrt(periods) * 0.35 * rng.uniform(0.5, 1.0, periods.size)
    )
    phases = rng.uniform(0.0, 2.0 * math.pi, periods.size)
    day_minutes = 1440 if instrument.sec_type == "CASH" else _REGULAR_MINUTES
    return _PriceModel(
        log_base=math.log(instrument.base_price),
        amplitudes=tuple(float(a) for a in amplitudes),
        angular=tuple(float(w) for w in 2.0 * math.pi / periods),
        phases=tuple(float(p) for p in phases),
        day_sd=0.6 * instrument.daily_vol,
        gap_sd=0.25 * instrument.daily_vol,
        minute_sd=instrument.daily_vol / math.sqrt(day_minutes),
        volume_sd=0.3,
        minutes_per_day=day_minutes,
    )


@functools.lru_cache(maxsize=256)
def _profiles(sec_type: str, minutes: int, rth_start: int, rth_minutes: int) -> tuple[F64, F64]:
    """Per-minute volatility and volume weights of a session's extended minutes.

    Regular hours carry a U-shaped volume (heavy at the open and close, mean 1) and full
    volatility; extended hours and the futures overnight session are quiet. Forex trades around
    the clock with a bump over the London/New York overlap.
    """
    index = np.arange(minutes, dtype=np.float64)
    if sec_type == "CASH":
        hour = (index + 0.5) / 60.0
        bump = np.exp(-(((hour - 14.0) / 3.5) ** 2))
        volume = 0.3 + bump
        volume /= volume.mean()
        vol = 0.6 + 0.6 * bump
    else:
        quiet_volume, quiet_vol = (0.04, 0.3) if sec_type == "STK" else (0.12, 0.4)
        volume = np.full(minutes, quiet_volume)
        vol = np.full(minutes, quiet_vol)
        if rth_minutes > 0:
            x = (np.arange(rth_minutes, dtype=np.float64) + 0.5) / rth_minutes
            volume[rth_start : rth_start + rth_minutes] = (0.6 + 1.8 * (2.0 * x - 1.0) ** 2) / 1.2
            vol[rth_start : rth_start + rth_minutes] = 1.0 + 0.6 * (1.0 - x) ** 4
    _frozen(volume)
    _frozen(vol)
    return vol, volume


def _round_tick(values: F64, per_unit: int) -> F64:
    """Nearest multiple of the tick (1/per_unit). Dividing the integer tick count by
    ``per_unit`` gives the double nearest the exact decimal, so prices print cleanly."""
    result: F64 = np.rint(values * per_unit) / per_unit
    return result


def _ceil_tick(values: F64, per_unit: int) -> F64:
    result: F64 = np.ceil(values * per_unit - 1e-7) / per_unit
    return result


def _floor_tick(values: F64, per_unit: int) -> F64:
    result: F64 = np.floor(values * per_unit + 1e-7) / per_unit
    return result


@dataclass(frozen=True, eq=False)
class _Tape:
    """The one-minute bars of a whole extended session, and where its regular hours lie."""

    session: Session
    bars: Bars
    rth: slice

    def view(self, outside_rth: bool) -> Bars:
        return self.bars if outside_rth else self.bars.select(self.rth)


def _generate_tape(
    seed: int, model: _PriceModel, instrument: Instrument, session: Session
) -> _Tape:
    ext_start, ext_end = session.bounds_ms(True)
    rth_start, rth_end = session.bounds_ms(False)
    n = (ext_end - ext_start) // MS_PER_MINUTE
    first_rth = (rth_start - ext_start) // MS_PER_MINUTE
    rth_minutes = (rth_end - rth_start) // MS_PER_MINUTE
    vol, volume_shape = _profiles(instrument.sec_type, n, first_rth, rth_minutes)
    per_unit = instrument.ticks_per_unit
    tick = 1.0 / per_unit

    ordinal = session.date.toordinal()
    rng = np.random.default_rng([seed, instrument.conid, ordinal])
    normals = rng.standard_normal(2 * n + 2)
    wicks = rng.random(2 * n)
    conid = instrument.conid
    open_log = model.level(ordinal) + model.day_sd * _hash_normal(seed, conid, ordinal)
    close_log = (
        model.level(ordinal + 1)
        + model.day_sd * _hash_normal(seed, conid, ordinal + 1)
        + model.gap_sd * float(normals[-1])
    )

    # A Brownian bridge in "volatility time": the path moves when the market is active.
    walk = np.zeros(n + 1)
    np.cumsum(normals[:n] * vol * model.minute_sd, out=walk[1:])
    clock = np.zeros(n + 1)
    np.cumsum(vol * vol, out=clock[1:])
    clock /= clock[-1]
    log_path = open_log + clock * (close_log - open_log) + (walk - clock * walk[-1])
    path = np.maximum(_round_tick(np.exp(log_path), per_unit), tick)

    opens = path[:-1]
    closes = path[1:]
    wick = vol * model.minute_sd
    top = np.maximum(opens, closes)
    bottom = np.minimum(opens, closes)
    highs = np.maximum(_ceil_tick(top * (1.0 + wicks[:n] * wick), per_unit), top)
    lows = _floor_tick(bottom * (1.0 - wicks[n:] * wick), per_unit)
    lows = np.maximum(np.minimum(lows, bottom), tick)

    per_minute = instrument.avg_daily_volume / model.minutes_per_day
    day_factor = math.exp(model.volume_sd * float(normals[-2]) - model.volume_sd**2 / 2)
    noise = np.exp(0.35 * normals[n : 2 * n] - 0.35**2 / 2)
    volumes = np.rint(per_minute * day_factor * volume_shape * noise).astype(np.int64)

    ts = ext_start + MS_PER_MINUTE * np.arange(n, dtype=np.int64)
    opens, closes = opens.copy(), closes.copy()
    for array in (ts, opens, highs, lows, closes, volumes):
        _frozen(array)
    bars = Bars(ts, opens, highs, lows, closes, volumes)
    return _Tape(session=session, bars=bars, rth=slice(first_rth, first_rth + rth_minutes))


def aggregate_intraday(minutes: Bars, bar: BarSize, utc_offset_minutes: int) -> tuple[Bars, I64]:
    """Aggregate one session's one-minute bars into ``bar`` bars aligned to the exchange clock.

    Returns the bars (stamped at their first minute inside the session) and the end (epoch ms,
    exclusive) of each: the end of its last minute, which is when the bar is complete.
    """
    if not bar.is_intraday:
        raise ValueError(f"{bar.label} is not an intraday bar size")
    if len(minutes) == 0:
        return minutes, np.empty(0, dtype=np.int64)
    if bar.minutes == 1:
        return minutes, minutes.ts_ms + MS_PER_MINUTE
    keys = intraday_bucket_keys(minutes.ts_ms, bar, utc_offset_minutes)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    last = np.concatenate((starts[1:], [len(minutes)])) - 1
    bars = Bars(
        minutes.ts_ms[starts],
        minutes.open[starts],
        np.maximum.reduceat(minutes.high, starts),
        np.minimum.reduceat(minutes.low, starts),
        minutes.close[last],
        np.add.reduceat(minutes.volume_shares, starts),
    )
    return bars, minutes.ts_ms[last] + MS_PER_MINUTE


# --------------------------------------------------------------------------------------------
# The market


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

    Thread-safe: generation is pure, and the caches lock around their own updates.
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
        self.seed = seed
        self.clock = clock
        self._instruments = {item.conid: item for item in universe}
        if len(self._instruments) != len(universe):
            raise ValueError("universe holds duplicate conids")
        self._models: dict[int, _PriceModel] = {}
        self._models_lock = threading.Lock()
        self._tapes: _LRU[tuple[int, date], _Tape] = _LRU(session_cache_size)
        self._daily: _LRU[tuple[int, date, bool], DailyBar] = _LRU(daily_cache_size)

    def __repr__(self) -> str:
        return f"Market(seed={self.seed}, clock={self.clock!r})"

    # -- lookups ---------------------------------------------------------------------------

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        return tuple(self._instruments.values())

    def instrument(self, conid: int) -> Instrument:
        """The instrument of ``conid``; KeyError naming the conid if this market has none."""
        try:
            return self._instruments[conid]
        except KeyError:
            raise KeyError(
                f"unknown conid {conid!r}: the simulator has no such instrument"
            ) from None

    def calendar(self, conid: int) -> SessionCalendar:
        return calendar_for(self.instrument(conid).trading_hours)

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    def session(self, conid: int, session_date: date) -> Session:
        """The instrument's session on ``session_date``; ValueError if it does not trade that day
        (not a session of its exchange, or before its first date of history)."""
        instrument = self.instrument(conid)
        if session_date < instrument.first_date:
            raise ValueError(
                f"{instrument.symbol} has no history before {instrument.first_date.isoformat()},"
                f" asked for {session_date.isoformat()}"
            )
        return calendar_for(instrument.trading_hours).session(session_date)

    def history_start(self, conid: int, outside_rth: bool) -> datetime | None:
        """Start of the instrument's first session (None if the calendar has none for it)."""
        instrument = self.instrument(conid)
        cal = calendar_for(instrument.trading_hours)
        dates = cal.session_dates(instrument.first_date, instrument.first_date + timedelta(days=14))
        return cal.session(dates[0]).bounds(outside_rth)[0] if dates else None

    # -- generation ------------------------------------------------------------------------

    def _model(self, instrument: Instrument) -> _PriceModel:
        model = self._models.get(instrument.conid)
        if model is None:
            model = _build_model(self.seed, instrument)
            with self._models_lock:
                self._models[instrument.conid] = model
        return model

    def _tape(self, instrument: Instrument, session: Session) -> _Tape:
        key = (instrument.conid, session.date)
        tape = self._tapes.get(key)
        if tape is None:
            tape = _generate_tape(self.seed, self._model(instrument), instrument, session)
            self._tapes.put(key, tape)
        return tape

    def minute_bars(self, conid: int, session_date: date, outside_rth: bool) -> Bars:
        """Every one-minute bar of one session, regardless of the clock (the market as it is, not
        what is visible yet). ValueError if the instrument has no session that day."""
        session = self.session(conid, session_date)
        return self._tape(self.instrument(conid), session).view(outside_rth)

    def daily_bar(self, conid: int, session_date: date, outside_rth: bool) -> DailyBar:
        """The session's daily bar, exactly the aggregate of its one-minute bars."""
        key = (conid, session_date, outside_rth)
        cached = self._daily.get(key)
        if cached is not None:
            return cached
        session = self.session(conid, session_date)
        minutes = self._tape(self.instrument(conid), session).view(outside_rth)
        bar = DailyBar(
            session_date=session_date,
            ts_ms=int(minutes.ts_ms[0]),
            end_ms=int(minutes.ts_ms[-1]) + MS_PER_MINUTE,
            open=float(minutes.open[0]),
            high=float(minutes.high.max()),
            low=float(minutes.low.min()),
            close=float(minutes.close[-1]),
            volume_shares=int(minutes.volume_shares.sum()),
        )
        self._daily.put(key, bar)
        return bar

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
            minutes = self._tape(instrument, session).view(outside_rth)
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
        return [_daily_bars(days)] if days else []

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
                aggregated.append(_aggregate_days(days, stamp))
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
        return [_daily_bars(aggregated)] if aggregated else []

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
        minutes = self._tape(instrument, quote_session).bars
        completed = min(completed, len(minutes))
        last = float(minutes.close[completed - 1])
        previous = self._session_before(instrument, cal, quote_session.bounds_ms(True)[0])
        prior_close = (
            float(self._tape(instrument, previous).bars.close[-1]) if previous is not None else None
        )
        ended = quote_session.bounds_ms(True)[1] <= now_ms
        decimals = instrument.price_decimals
        spread = instrument.spread_ticks * instrument.min_tick
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


def _aggregate_days(days: Sequence[DailyBar], stamp_ms: int) -> DailyBar:
    """Several sessions' bars as one (oldest first in ``days``), stamped at ``stamp_ms``."""
    return DailyBar(
        session_date=days[0].session_date,
        ts_ms=stamp_ms,
        end_ms=days[-1].end_ms,
        open=days[0].open,
        high=max(d.high for d in days),
        low=min(d.low for d in days),
        close=days[-1].close,
        volume_shares=sum(d.volume_shares for d in days),
    )


def _daily_bars(newest_first: Sequence[DailyBar]) -> Bars:
    days = newest_first[::-1]
    return Bars(
        np.array([d.ts_ms for d in days], dtype=np.int64),
        np.array([d.open for d in days], dtype=np.float64),
        np.array([d.high for d in days], dtype=np.float64),
        np.array([d.low for d in days], dtype=np.float64),
        np.array([d.close for d in days], dtype=np.float64),
        np.array([d.volume_shares for d in days], dtype=np.int64),
    )
