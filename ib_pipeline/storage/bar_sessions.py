"""Which trading session each bar belongs to, and whether its timestamp is a real bar start.

Why: bars are partitioned by the exchange's session date, not the UTC date (a US extended-hours
session runs 04:00-20:00 New York, past midnight UTC; a CME session opens the evening before
its date), and a bar stamped outside its instrument's sessions, or between two bar starts, is
wrong data. Both answers come from `ib_pipeline.calendars`, the same code the simulator and the
client use, so the three agree by construction.

Everything is vectorised: rows are grouped by (trading hours, outside-RTH flag, bar size), and
each group is answered with array searches against the sessions it spans. This module never
reads or writes files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ib_pipeline.calendars import (
    Session,
    TradingHours,
    bar_starts,
    calendar_for,
)
from ib_pipeline.storage.keys import value_codes
from ib_pipeline.timeframes import BAR_SIZES, BarKind, BarSize, parse_bar_size

MS_PER_DAY = 86_400_000
NO_DATE = np.datetime64("NaT", "D")


@dataclass(frozen=True)
class BarLocation:
    """Per-row answers, aligned with the input arrays.

    ``session_date``: the session the bar's timestamp falls in, using the extended bounds (the
    widest), so even a regular-hours request's stray pre-market bar gets a date; for monthly
    bars the UTC date of the stamp (00:00Z on the 1st); NaT if no session contains it.
    ``in_session``: the timestamp lies inside the session for the requested outside-RTH flag.
    ``at_bar_start``: the timestamp is one of the session's bar starts for the bar size.
    ``hours_known``/``bar_size_known``: the row's conid has trading hours and its bar size
    is a real one; otherwise the row is located nowhere (the other answers are False/NaT).
    """

    session_date: npt.NDArray[np.datetime64]
    in_session: npt.NDArray[np.bool_]
    at_bar_start: npt.NDArray[np.bool_]
    hours_known: npt.NDArray[np.bool_]
    bar_size_known: npt.NDArray[np.bool_]


def locate_bars(
    conid: pa.ChunkedArray | pa.Array,
    bar_size: pa.ChunkedArray | pa.Array,
    ts_ms: npt.NDArray[np.int64],
    hours: Mapping[int, TradingHours],
    outside_rth: bool | Mapping[int, bool],
) -> BarLocation:
    """Locate every bar (row ``i`` is ``conid[i]``, ``bar_size[i]``, ``ts_ms[i]``) in its
    instrument's sessions. A conid missing from ``hours`` is never guessed: its rows are
    located nowhere (``hours_known`` False) and the contract rejects them."""
    n = len(ts_ms)
    session_date = np.full(n, NO_DATE, dtype="datetime64[D]")
    in_session = np.zeros(n, dtype=bool)
    at_start = np.zeros(n, dtype=bool)
    if n == 0:
        none = np.zeros(0, dtype=bool)
        return BarLocation(session_date, in_session, at_start, none, none)

    conid_index, conids = value_codes(conid)
    known = np.array([c in hours for c in conids], dtype=bool)
    # One group per (hours, outside_rth) among the conids, then per bar size inside it.
    group_of_conid: dict[tuple[TradingHours, bool], list[int]] = {}
    for position, c in enumerate(conids):
        if not known[position]:
            continue
        flag = outside_rth if isinstance(outside_rth, bool) else bool(outside_rth.get(c, False))
        group_of_conid.setdefault((hours[c], flag), []).append(position)
    bar_index, bar_labels = value_codes(bar_size)
    bar_known = np.array([label in BAR_SIZES for label in bar_labels], dtype=bool)
    for (trading_hours, outside), positions in group_of_conid.items():
        conid_mask = (
            np.ones(n, dtype=bool)
            if len(positions) == len(conids)
            else np.isin(conid_index, np.asarray(positions))
        )
        for label_position, label in enumerate(bar_labels):
            rows = np.flatnonzero(conid_mask & (bar_index == label_position))
            if len(rows) == 0 or not bar_known[label_position]:
                continue
            bar = parse_bar_size(str(label))
            dates, inside, starts = _locate_group(ts_ms[rows], bar, trading_hours, outside)
            session_date[rows] = dates
            in_session[rows] = inside
            at_start[rows] = starts
    return BarLocation(session_date, in_session, at_start, known[conid_index], bar_known[bar_index])


def _locate_group(
    ts: npt.NDArray[np.int64], bar: BarSize, hours: TradingHours, outside_rth: bool
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    if bar.kind is BarKind.MONTH:
        return _locate_months(ts, hours)
    sessions = _sessions_spanning(ts, hours, 7 if bar.kind is BarKind.WEEK else 2)
    n = len(ts)
    dates = np.full(n, NO_DATE, dtype="datetime64[D]")
    inside = np.zeros(n, dtype=bool)
    starts = np.zeros(n, dtype=bool)
    if not sessions:
        return dates, inside, starts
    ext_open = np.array([s.bounds_ms(True)[0] for s in sessions], dtype=np.int64)
    ext_close = np.array([s.bounds_ms(True)[1] for s in sessions], dtype=np.int64)
    req_open = np.array([s.bounds_ms(outside_rth)[0] for s in sessions], dtype=np.int64)
    req_close = np.array([s.bounds_ms(outside_rth)[1] for s in sessions], dtype=np.int64)
    session_days = np.array([np.datetime64(s.date, "D") for s in sessions])

    index = np.searchsorted(ext_open, ts, side="right") - 1
    safe = np.clip(index, 0, len(sessions) - 1)
    found = (index >= 0) & (ts < ext_close[safe])
    dates[found] = session_days[safe[found]]
    inside = found & (ts >= req_open[safe]) & (ts < req_close[safe])

    valid_starts = _valid_starts(sessions, bar, outside_rth)
    if len(valid_starts):
        position = np.clip(np.searchsorted(valid_starts, ts), 0, len(valid_starts) - 1)
        starts = inside & (valid_starts[position] == ts)
    return dates, inside, starts


def _valid_starts(
    sessions: list[Session], bar: BarSize, outside_rth: bool
) -> npt.NDArray[np.int64]:
    """Sorted epoch-ms bar starts of ``bar`` over ``sessions``."""
    if bar.kind is BarKind.WEEK:
        # A weekly bar is stamped like the daily bar of the week's first session.
        firsts: dict[tuple[int, int], Session] = {}
        for sess in sessions:
            iso = sess.date.isocalendar()
            firsts.setdefault((iso.year, iso.week), sess)
        chosen = [bar_starts(s, parse_bar_size("1d"), outside_rth) for s in firsts.values()]
    else:
        chosen = [bar_starts(s, bar, outside_rth) for s in sessions]
    if not chosen:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(chosen))


_DENSE_DAYS = 62
"""Up to this many days between the first and the last stamp, every day between is a candidate
(a min and a max instead of sorting the stamps' days: ~1 ms per 131k-bar chunk of a replay)."""


def _sessions_spanning(
    ts: npt.NDArray[np.int64], hours: TradingHours, pad_days: int
) -> list[Session]:
    """Sessions dated within ``pad_days`` of any stamp's UTC date, oldest first (when the
    stamps are under `_DENSE_DAYS` apart, also the sessions between them: no bar can fall in
    those, so nothing changes but the cost).

    Otherwise only dates near actual stamps are visited, so a wild timestamp (an 11-digit typo,
    a year 2500) costs nothing; the padding covers CME sessions opening the evening before their
    date and, for weekly bars, the rest of the week.
    """
    calendar = calendar_for(hours)
    lo = np.datetime64(calendar.first_date, "D")
    hi = np.datetime64(calendar.last_date, "D")
    first, last = int(ts.min()) // MS_PER_DAY, int(ts.max()) // MS_PER_DAY
    if last - first <= _DENSE_DAYS:  # the usual page or chunk: a few days, every one visited
        days = np.arange(first, last + 1).astype("datetime64[D]")
    else:  # far apart (a typo, a long backfill): only the days that hold a stamp
        days = np.unique((ts // MS_PER_DAY).astype("datetime64[D]"))
    offsets = np.arange(-pad_days, pad_days + 1).astype("timedelta64[D]")
    candidates = np.unique((days[:, None] + offsets[None, :]).ravel())
    candidates = candidates[(candidates >= lo) & (candidates <= hi)]
    sessions: list[Session] = []
    for day in candidates:
        as_date = day.item()
        if calendar.is_session(as_date):
            sessions.append(calendar.session(as_date))
    return sessions


def _locate_months(
    ts: npt.NDArray[np.int64], hours: TradingHours
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Monthly bars: stamped at 00:00Z on the 1st (`sessions.month_bar_start_ms`) of a month
    that has sessions. Their session date is that 1st."""
    calendar = calendar_for(hours)
    days = (ts // MS_PER_DAY).astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    inside = np.zeros(len(ts), dtype=bool)
    first_month = np.datetime64(calendar.first_date, "M")
    last_month = np.datetime64(calendar.last_date, "M")
    for month in np.unique(months):
        if not first_month <= month <= last_month:
            continue
        start: date = month.astype("datetime64[D]").item()
        end: date = (month + np.timedelta64(1, "M")).astype("datetime64[D]").item()
        if calendar.session_dates(start, end - timedelta(days=1)):
            inside |= months == month
    stamps = months.astype("datetime64[ms]").astype(np.int64)
    return days, inside, inside & (stamps == ts)
