"""The seeded price model: one session's one-minute bars from ``(seed, conid, session date)``.

Why it is built this way:

- **Same seed, same market, any day on its own.** A session is generated from
  ``np.random.default_rng([seed, conid, date.toordinal()])`` and nothing else: a day of 2016 costs
  the same as yesterday, and no day depends on having generated the one before. The day's price
  level is a deterministic function of the date (a few seeded sinusoids of the day number,
  `PriceModel.level`, plus hash-seeded noise); the intraday path is a Brownian bridge from the
  day's open anchor to its close anchor. Neighbouring days share the level
  function, so a close and the next open stay close (with gaps over weekends, as in real data).
- **Realistic shape.** Regular hours carry a U-shaped volume and full volatility; extended hours
  and the futures overnight session are quiet; forex trades around the clock.
- **Exact prices.** Prices are rounded to the instrument's tick as they are generated and volume
  is an integer count of shares, so every coarser bar aggregated from them is exact.

What it must never do: know about the clock or what is visible yet (`market`), cache anything
(`market` owns the caches), or format values for the gateway.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ib_pipeline.calendars import MS_PER_MINUTE, Session
from ib_pipeline.simulator.bars import F64, Bars, freeze
from ib_pipeline.simulator.instruments import Instrument

_REGULAR_MINUTES = 390  # a full US regular session: the unit the volume and volatility scale to

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
class PriceModel:
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
        """The log price level of day number ``day`` (a date's ordinal)."""
        return self.log_base + sum(
            a * math.sin(w * day + p)
            for a, w, p in zip(self.amplitudes, self.angular, self.phases, strict=True)
        )


def build_model(seed: int, instrument: Instrument) -> PriceModel:
    """The instrument's model under ``seed``: its level sinusoids and its noise scales."""
    rng = np.random.default_rng([seed, instrument.conid, 0, 1])
    periods = np.asarray(_LEVEL_PERIODS_DAYS)
    amplitudes = (
        instrument.daily_vol * np.sqrt(periods) * 0.35 * rng.uniform(0.5, 1.0, periods.size)
    )
    phases = rng.uniform(0.0, 2.0 * math.pi, periods.size)
    day_minutes = 1440 if instrument.sec_type == "CASH" else _REGULAR_MINUTES
    return PriceModel(
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
    freeze(volume)
    freeze(vol)
    return vol, volume


def _round_tick(values: F64, per_unit: int) -> F64:
    """Nearest multiple of the tick (1/per_unit). Dividing the integer tick count by
    ``per_unit`` gives the double nearest the exact decimal, so prices print cleanly."""
    result: F64 = np.rint(values * per_unit) / per_unit
    return result


def _ceil_tick(values: F64, per_unit: int) -> F64:
    """Smallest tick multiple at or above each value (a wick never cuts into the body)."""
    result: F64 = np.ceil(values * per_unit - 1e-7) / per_unit
    return result


def _floor_tick(values: F64, per_unit: int) -> F64:
    """Largest tick multiple at or below each value."""
    result: F64 = np.floor(values * per_unit + 1e-7) / per_unit
    return result


@dataclass(frozen=True, eq=False)
class Tape:
    """The one-minute bars of a whole extended session, and where its regular hours lie."""

    session: Session
    bars: Bars
    rth: slice

    def view(self, outside_rth: bool) -> Bars:
        """The whole extended session, or only its regular hours."""
        return self.bars if outside_rth else self.bars.select(self.rth)


def generate_tape(seed: int, model: PriceModel, instrument: Instrument, session: Session) -> Tape:
    """Every one-minute bar of ``session`` (extended hours), a pure function of its arguments."""
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
        freeze(array)
    bars = Bars(ts, opens, highs, lows, closes, volumes)
    return Tape(session=session, bars=bars, rth=slice(first_rth, first_rth + rth_minutes))
