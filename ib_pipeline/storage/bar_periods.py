"""The one rule that maps a bar size to its partition period, and a period to its dates.

Why one place: the store files bars by it (`storage.datasets`), the Dagster partitions and
schedules name their keys by it (`assets.partitions`), and the loader picks the partitions a
run rewrites by it (`assets.bar_loader`); they must never disagree.

- bars shorter than an hour: one partition per trading-session date (``session_date=2024-11-26``);
- 1h-8h bars: per session month (``session_month=2024-11``);
- daily, weekly and monthly bars: per year (``session_year=2024``).

Each grain has a dataset folder of its own (`Granularity.home`): ``bars/`` (sub-hour, by
session date), ``bars_hourly/`` (by month) and ``bars_daily/`` (by year), so that every folder
holds ONE hive layout a plain reader (pyarrow, pandas, polars, DuckDB) can take whole. They stay
one logical dataset, ``bars``: one view, one key, and partition ids that name the grain by their
folder key (``bar_size=1h/session_month=2024-11``), so an id alone says where its file is.

A partition key is the folder's value (``2024-11-26``, ``2024-11``, ``2024``). Pure functions:
no files, no dagster.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from enum import Enum

from ib_pipeline.timeframes import BarKind, BarSize, parse_bar_size

DATASET = "bars"


class Granularity(Enum):
    """How much time one bars partition covers."""

    SESSION = "session"
    MONTH = "month"
    YEAR = "year"

    @property
    def key_format(self) -> str:
        return {"session": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[self.value]

    @property
    def folder(self) -> str:
        """The hive key of the partition folder: ``session_date``, ``_month`` or ``_year``."""
        return {"session": "session_date", "month": "session_month", "year": "session_year"}[
            self.value
        ]

    @property
    def home(self) -> str:
        """The dataset folder under the warehouse root holding this grain's partitions."""
        return {"session": DATASET, "month": f"{DATASET}_hourly", "year": f"{DATASET}_daily"}[
            self.value
        ]


GRAIN_OF_FOLDER: dict[str, Granularity] = {grain.folder: grain for grain in Granularity}
"""The grain of a bars partition, by the hive key of its period folder."""


def bars_home(directory: str) -> str:
    """The dataset folder of the bars partition whose hive folders are ``directory``
    (``bar_size=1h/session_month=2024-11`` -> ``bars_hourly``); ``bars`` when it names none."""
    last = directory.rsplit("/", 1)[-1].partition("=")[0]
    grain = GRAIN_OF_FOLDER.get(last)
    return DATASET if grain is None else grain.home


def granularity(bar: BarSize | str) -> Granularity:
    """The partition size of ``bar`` (a `BarSize` or its label)."""
    size = parse_bar_size(bar) if isinstance(bar, str) else bar
    if size.kind is BarKind.INTRADAY and size.minutes < 60:
        return Granularity.SESSION
    if size.kind is BarKind.INTRADAY:
        return Granularity.MONTH
    return Granularity.YEAR


def key_for_date(day: date, grain: Granularity) -> str:
    """The partition key holding session date ``day``."""
    return day.strftime(grain.key_format)


def key_dates(key: str, grain: Granularity) -> tuple[date, date]:
    """First and last calendar date (inclusive) a partition key covers."""
    try:
        if grain is Granularity.SESSION:
            day = date.fromisoformat(key)
            return day, day
        if grain is Granularity.MONTH:
            first = datetime.strptime(key, "%Y-%m").date()
            last_day = calendar.monthrange(first.year, first.month)[1]
            return first, first.replace(day=last_day)
        year = int(key) if len(key) == 4 and key.isdigit() else -1
        if year < 1:
            raise ValueError
        return date(year, 1, 1), date(year, 12, 31)
    except ValueError:
        example = {"session": "2024-11-26", "month": "2024-11", "year": "2024"}[grain.value]
        raise ValueError(
            f"invalid {grain.value} partition key {key!r}; expected a key such as {example}"
        ) from None


def keys_between(first: date, last: date, grain: Granularity) -> list[str]:
    """Keys of every period overlapping [first, last] (sessions: every weekday)."""
    keys: list[str] = []
    day = first
    while day <= last:
        key = key_for_date(day, grain)
        weekday = grain is not Granularity.SESSION or day.weekday() < 5
        if weekday and (not keys or keys[-1] != key):
            keys.append(key)
        day += timedelta(days=1)
    return keys


def bar_folder(bar: BarSize | str, session_day: date) -> tuple[str, str]:
    """The partition folder key and value of a bar of session date ``session_day``."""
    grain = granularity(bar)
    return grain.folder, key_for_date(session_day, grain)


def partition_id(bar: BarSize | str, key: str) -> str:
    """The store's partition id of bars of ``bar`` for partition key ``key``."""
    size = parse_bar_size(bar) if isinstance(bar, str) else bar
    first_day, _ = key_dates(key, granularity(size))
    folder, value = bar_folder(size, first_day)
    return f"bar_size={size.label}/{folder}={value}"
