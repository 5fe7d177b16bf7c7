"""Bar sizes and history periods exactly as the IBKR Web API spells them.

Shared by the simulator (which validates requests with them), the client (which plans paged
history requests with them) and the warehouse (which partitions bars by them). Nothing here
knows about HTTP or about any particular instrument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class BarKind(Enum):
    """How a bar size relates to the trading calendar."""

    INTRADAY = "intraday"  # a whole number of minutes, aligned to the exchange's clock
    DAY = "day"  # one bar per session
    WEEK = "week"  # one bar per calendar week (Monday to Sunday) that has sessions
    MONTH = "month"  # one bar per calendar month that has sessions


@dataclass(frozen=True)
class BarSize:
    """One of the bar sizes the history endpoint accepts (`bar=` parameter)."""

    label: str
    kind: BarKind
    minutes: int  # length of an intraday bar; for day/week/month bars a nominal length

    @property
    def seconds(self) -> int:
        return self.minutes * 60

    @property
    def is_intraday(self) -> bool:
        return self.kind is BarKind.INTRADAY

    def __str__(self) -> str:
        return self.label


_BAR_SIZES: tuple[BarSize, ...] = (
    BarSize("1min", BarKind.INTRADAY, 1),
    BarSize("2min", BarKind.INTRADAY, 2),
    BarSize("3min", BarKind.INTRADAY, 3),
    BarSize("5min", BarKind.INTRADAY, 5),
    BarSize("10min", BarKind.INTRADAY, 10),
    BarSize("15min", BarKind.INTRADAY, 15),
    BarSize("30min", BarKind.INTRADAY, 30),
    BarSize("1h", BarKind.INTRADAY, 60),
    BarSize("2h", BarKind.INTRADAY, 120),
    BarSize("3h", BarKind.INTRADAY, 180),
    BarSize("4h", BarKind.INTRADAY, 240),
    BarSize("8h", BarKind.INTRADAY, 480),
    BarSize("1d", BarKind.DAY, 1440),
    BarSize("1w", BarKind.WEEK, 7 * 1440),
    BarSize("1m", BarKind.MONTH, 30 * 1440),
)

BAR_SIZES: dict[str, BarSize] = {b.label: b for b in _BAR_SIZES}
"""Every valid bar size, keyed by its API label, smallest first."""


def parse_bar_size(label: str) -> BarSize:
    """Return the bar size for an API label such as ``"5min"``; raise ValueError naming the
    valid choices otherwise. Labels are case-sensitive as in the API (``1m`` is a month)."""
    try:
        return BAR_SIZES[label]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown bar size {label!r}; valid bar sizes: {', '.join(BAR_SIZES)}"
        ) from None


class PeriodUnit(Enum):
    """Units of the history ``period`` parameter, with the API's accepted count ranges."""

    MINUTE = "min"
    HOUR = "h"
    DAY = "d"
    WEEK = "w"
    MONTH = "m"
    YEAR = "y"

    @property
    def max_count(self) -> int:
        return _PERIOD_LIMITS[self]


_PERIOD_LIMITS: dict[PeriodUnit, int] = {
    PeriodUnit.MINUTE: 30,
    PeriodUnit.HOUR: 8,
    PeriodUnit.DAY: 1000,
    PeriodUnit.WEEK: 792,
    PeriodUnit.MONTH: 182,
    PeriodUnit.YEAR: 15,
}

_PERIOD_RE = re.compile(r"^(\d+)(min|h|d|w|m|y)$")


@dataclass(frozen=True)
class Period:
    """A history ``period`` such as ``2d``: a count of units, running backward from the end."""

    count: int
    unit: PeriodUnit

    @property
    def label(self) -> str:
        return f"{self.count}{self.unit.value}"

    def __str__(self) -> str:
        return self.label


def parse_period(text: str) -> Period:
    """Parse ``"30min"``, ``"8h"``, ``"1000d"``, ``"792w"``, ``"182m"``, ``"15y"``.

    Raises ValueError naming the offending text and the accepted forms.
    """
    match = _PERIOD_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid period {text!r}; expected a count and a unit: {_period_help()}")
    count, unit = int(match.group(1)), PeriodUnit(match.group(2))
    if not 1 <= count <= unit.max_count:
        raise ValueError(f"invalid period {text!r}; {_period_help()}")
    return Period(count, unit)


def _period_help() -> str:
    return ", ".join(f"{{1-{u.max_count}}}{u.value}" for u in PeriodUnit)
