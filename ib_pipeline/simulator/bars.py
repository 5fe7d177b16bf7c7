"""Bars as the synthetic market holds them, and the exact arithmetic that aggregates them.

`Bars` is a column-wise run of bars (numpy arrays, prices as float64 multiples of the tick,
volume as int64 shares); `DailyBar` is one session's bar (or several sessions' bars merged into a
week or a month). Every coarser bar is the exact first/max/min/last/sum of the bars it covers:
`aggregate_intraday` buckets one session's minutes on the exchange clock, `DailyBar.of_minutes`
and `aggregate_days` build daily, weekly and monthly bars.

What it must never do: generate prices (`price_model`), decide what is visible at the clock's
time (`market`), or format values for the gateway (lots, strings: `history`, `snapshot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from ib_pipeline.calendars import MS_PER_MINUTE, intraday_bucket_keys
from ib_pipeline.timeframes import BarSize

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_COLUMNS = ("ts_ms", "open", "high", "low", "close", "volume_shares")


def freeze(array: npt.NDArray[np.generic]) -> None:
    """Make ``array`` read-only: cached bars are shared, so nobody may change them in place."""
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
        for name in _COLUMNS[1:]:
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

    @classmethod
    def of_days(cls, days: Sequence[DailyBar]) -> Bars:
        """The daily (or weekly, monthly) bars ``days`` as columns, in the order given."""
        return cls(
            np.array([d.ts_ms for d in days], dtype=np.int64),
            np.array([d.open for d in days], dtype=np.float64),
            np.array([d.high for d in days], dtype=np.float64),
            np.array([d.low for d in days], dtype=np.float64),
            np.array([d.close for d in days], dtype=np.float64),
            np.array([d.volume_shares for d in days], dtype=np.int64),
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
            np.array_equal(getattr(self, name), getattr(other, name)) for name in _COLUMNS
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

    @classmethod
    def of_minutes(cls, session_date: date, minutes: Bars) -> DailyBar:
        """The bar of one session's one-minute bars (at least one), exactly their aggregate."""
        return cls(
            session_date=session_date,
            ts_ms=int(minutes.ts_ms[0]),
            end_ms=int(minutes.ts_ms[-1]) + MS_PER_MINUTE,
            open=float(minutes.open[0]),
            high=float(minutes.high.max()),
            low=float(minutes.low.min()),
            close=float(minutes.close[-1]),
            volume_shares=int(minutes.volume_shares.sum()),
        )


def aggregate_days(days: Sequence[DailyBar], stamp_ms: int) -> DailyBar:
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
