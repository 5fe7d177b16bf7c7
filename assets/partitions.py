"""Partitions of the bars assets, matching the store's layout one to one.

Why: a Dagster partition must be exactly one store partition, so that "materialise partition X"
rewrites exactly the file ``bars/bar_size=.../session_date=X`` (or ``session_month``,
``session_year``) and the UI's partition status is the warehouse's. The rule (bar size ->
session date, month or year; key <-> dates) is the library's, `ib_pipeline.storage.bar_periods`,
re-exported here for the schedules and the backfill runner.

Session-date partitions are weekdays minus the days on which no instrument of the universe has
a session (a US-only universe skips NYSE holidays; a universe with a forex pair keeps them, since
forex trades). Each partition key is a session date in every instrument's own calendar: a CME
session that opens the evening before, or an extended-hours session past midnight UTC, still
belongs to the partition of its session date.

This module never fetches or writes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from ib_pipeline.calendars import calendar_for
from ib_pipeline.storage.bar_periods import (
    Granularity,
    granularity,
    key_dates,
    key_for_date,
    keys_between,
)
from ib_pipeline.timeframes import BarSize
from ib_pipeline.universe import Universe

__all__ = [
    "PARTITION_TIMEZONE",
    "Granularity",
    "bars_partitions_def",
    "granularity",
    "key_dates",
    "key_for_date",
    "keys_between",
    "keys_in_range",
    "monthly_partitions_def",
    "non_session_weekdays",
    "session_partitions_def",
    "yearly_partitions_def",
]

PARTITION_TIMEZONE = "America/New_York"
"""The zone partition windows and schedules are expressed in (the US market's)."""

_TZ = ZoneInfo(PARTITION_TIMEZONE)


def non_session_weekdays(universe: Universe, until: date | None = None) -> list[date]:
    """Weekdays from ``history_start`` to ``until`` (default: the end of the calendars or
    ``history_end``) on which no instrument of the universe has a session."""
    calendars = [calendar_for(hours) for hours in universe.trading_hours]
    last = min(c.last_date for c in calendars)
    if universe.history_end is not None:
        last = min(last, universe.history_end)
    if until is not None:
        last = min(last, until)
    sessions: set[date] = set()
    for cal in calendars:
        sessions.update(cal.session_dates(universe.history_start, last))
    found = []
    day = universe.history_start
    while day <= last:
        if day.weekday() < 5 and day not in sessions:
            found.append(day)
        day += timedelta(days=1)
    return found


def session_partitions_def(universe: Universe) -> dg.TimeWindowPartitionsDefinition:
    """One partition per session date of the universe's instruments (see the module doc).

    ``end_offset=1`` makes today's partition exist while today trades, so intraday schedules
    and the demo can load the current session.
    """
    exclusions: list[str | datetime] = [
        datetime(d.year, d.month, d.day, tzinfo=_TZ) for d in non_session_weekdays(universe)
    ]
    end = None
    if universe.history_end is not None:
        end = _next_weekday(universe.history_end).isoformat()
    return dg.TimeWindowPartitionsDefinition(
        start=universe.history_start.isoformat(),
        end=end,
        fmt=Granularity.SESSION.key_format,
        cron_schedule="0 0 * * 1-5",
        timezone=PARTITION_TIMEZONE,
        end_offset=1,
        exclusions=exclusions or None,
    )


def monthly_partitions_def(universe: Universe) -> dg.TimeWindowPartitionsDefinition:
    """One partition per month (``2024-11``), for 1h-8h bars."""
    start = universe.history_start.replace(day=1)
    end = None
    if universe.history_end is not None:
        last = universe.history_end
        end = date(last.year + 1, 1, 1) if last.month == 12 else date(last.year, last.month + 1, 1)
        end_text: str | None = end.strftime("%Y-%m")
    else:
        end_text = None
    return dg.TimeWindowPartitionsDefinition(
        start=start.strftime("%Y-%m"),
        end=end_text,
        fmt=Granularity.MONTH.key_format,
        cron_schedule="0 0 1 * *",
        timezone=PARTITION_TIMEZONE,
        end_offset=1,
    )


def yearly_partitions_def(universe: Universe) -> dg.TimeWindowPartitionsDefinition:
    """One partition per year (``2024``), for daily, weekly and monthly bars."""
    end = None
    if universe.history_end is not None:
        end = str(universe.history_end.year + 1)
    return dg.TimeWindowPartitionsDefinition(
        start=str(universe.history_start.year),
        end=end,
        fmt=Granularity.YEAR.key_format,
        cron_schedule="0 0 1 1 *",
        timezone=PARTITION_TIMEZONE,
        end_offset=1,
    )


def bars_partitions_def(bar: BarSize, universe: Universe) -> dg.TimeWindowPartitionsDefinition:
    """The partitions of the ``bars_<bar>`` asset."""
    grain = granularity(bar)
    if grain is Granularity.SESSION:
        return session_partitions_def(universe)
    if grain is Granularity.MONTH:
        return monthly_partitions_def(universe)
    return yearly_partitions_def(universe)


def keys_in_range(partitions_def: dg.PartitionsDefinition[str], first: str, last: str) -> list[str]:
    """Existing partition keys from ``first`` to ``last`` inclusive; ValueError naming a key
    that is not a partition (a holiday, a date before history_start, a typo)."""
    for key in (first, last):
        if not partitions_def.has_partition_key(key):
            raise ValueError(
                f"{key!r} is not a partition key of this asset; {_describe(partitions_def)}"
            )
    keys = partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    if not keys:
        raise ValueError(f"no partitions between {first!r} and {last!r}: the range is reversed")
    return list(keys)


def _describe(partitions_def: dg.PartitionsDefinition[str]) -> str:
    keys = partitions_def.get_partition_keys()
    if not keys:
        return "it has no partitions yet"
    return f"partitions run from {keys[0]} to {keys[-1]} (weekdays that are sessions)"


def _next_weekday(day: date) -> date:
    following = day + timedelta(days=1)
    while following.weekday() >= 5:
        following += timedelta(days=1)
    return following
