"""History of any range: plan the requests, page backward, stitch the pages.

The history endpoint answers at most 1000 bars per request: the most recent bars of a
``period`` that runs backward from ``startTime``. A long range is therefore paged backward,
each request's ``startTime`` being the earliest bar of the previous answer. The cost of a
range is its number of requests, so the planner picks each request's period from the exchange
calendar (`ib_pipeline.calendars`): long enough to fill a whole page of 1000 bars (one session
more than the estimate, as a margin: asking for more never costs a request because the answer
is cut to the 1000 most recent bars), and no longer than needed to reach the range start on
the last page. A range of N bars then costs ceil(N / 1000) requests for intraday and daily
bars. Weekly and monthly bars are bounded by the period syntax (792 weeks, 182 months), so a
very long range of them needs more requests than that.

Paging stops at the range start, when a page comes back short although its period covered the
start, or on ``{"error": "No data."}`` (nothing older exists). A window that holds nothing
although the calendar expects bars (it lies after the gateway's "now", or the exchange closed
unexpectedly) is followed by one probe with a period reaching back to the range start, whose
answer is the next full page. When the pages are turned into a table (`HistoryRange.table`),
only what is certainly not the range's business is dropped: bars outside [start, end) at times
a session covers (they belong to other partitions) and repeats of a time across pages (seams;
the newest page wins). A bar at a time no session covers, and a time repeated inside one page,
are kept, so the warehouse judges them (quarantine, with the reason) instead of their vanishing
without a trace; such bars never steer the paging either.

What this module must never do: normalise while fetching (pages are kept raw for the raw
zone), or loop without making progress.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ib_pipeline.calendars import US_EQUITY, Session, TradingHours, bar_starts, calendar_for
from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr import parsing as p
from ib_pipeline.ibkr.errors import GatewayError
from ib_pipeline.ibkr.response import Call, RawResponse
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.timeframes import BarKind, BarSize, PeriodUnit, parse_bar_size, parse_period

MAX_BARS_PER_RESPONSE = 1000
"""The gateway answers at most this many bars (the most recent ones) per request."""

SESSION_MARGIN = 1
"""Sessions (or weeks, months) asked for beyond the estimate, in case the gateway counts a
partial session differently; free, since answers are cut to the most recent 1000 bars."""

_DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class HistoryRequest:
    """Bars of ``bar_size`` for ``conid`` with ``start <= ts < end`` (aware datetimes).

    ``hours`` are the instrument's trading hours (default US equities), used only to plan the
    requests; ``source`` is Trades, Midpoint or Bid_Ask (None: the gateway's default).
    """

    conid: int
    bar_size: str
    start: datetime
    end: datetime
    outside_rth: bool = False
    source: str | None = "Trades"
    exchange: str | None = None
    hours: TradingHours = US_EQUITY

    def __post_init__(self) -> None:
        if isinstance(self.conid, bool) or not isinstance(self.conid, int) or self.conid <= 0:
            raise ValueError(f"history range: conid must be a positive integer, got {self.conid!r}")
        parse_bar_size(self.bar_size)
        p.ms_of(self.start, "start")
        p.ms_of(self.end, "end")
        if not self.start < self.end:
            raise ValueError(
                f"history range: start {self.start.isoformat()} must be before "
                f"end {self.end.isoformat()}"
            )

    @property
    def bar(self) -> BarSize:
        return parse_bar_size(self.bar_size)


@dataclass(frozen=True)
class PagePlan:
    """One request: the ``period`` label to ask for, the bars expected in [start, cursor), and
    whether the period reaches the range start."""

    period: str
    expected_bars: int
    reaches_start: bool


@dataclass(frozen=True)
class HistoryRange:
    """The raw pages of one range (newest first) and what the planner expected."""

    request: HistoryRequest
    pages: tuple[RawResponse, ...]
    expected_bars: int = 0
    minimum_requests: int = field(default=0)
    out_of_order: int = 0
    """Bars an answer listed after a later bar (the gateway answered out of order). They are
    genuine bars, kept and sorted by `table`; the count is the trace of the anomaly."""

    def table(self, *, lot_size: float) -> pa.Table:
        """The range's bars (`tables.HISTORY_BARS`), pages normalised and sorted by ts.

        Dropped: bars outside [start, end) at times a session of the instrument covers (they
        belong to other partitions), and a time repeated across pages (a seam: the newest
        page's rows win). Kept for the warehouse to judge: a bar at a time no session covers
        (it belongs to no partition, so no other load would ever see it) and a time repeated
        inside one page (the gateway's own duplicate: exact copies collapse in the warehouse,
        conflicting ones are quarantined). Rows of one page keep their order among equal times.
        """
        req = self.request
        parts = [
            normalize.history_bars(
                page.payload, conid=req.conid, bar_size=req.bar.label, lot_size=lot_size
            )
            for page in self.pages
        ]
        if not parts:
            return HISTORY_BARS.empty_table()
        bars = pa.concat_tables(parts)
        page = np.repeat(np.arange(len(parts)), [int(t.num_rows) for t in parts])
        stamps = np.asarray(bars.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64)
        outside = (stamps < p.ms_of(req.start)) | (stamps >= p.ms_of(req.end))
        keep = ~outside
        keep[outside] = ~placeable(stamps[outside], req.bar, req.hours)
        rows = np.flatnonzero(keep)
        order = rows[np.lexsort((page[rows], stamps[rows]))]  # by ts, then newest page first
        ordered, pages = stamps[order], page[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        newest = pages[starts][np.cumsum(starts) - 1]  # newest page holding each row's ts
        return bars.take(pa.array(order[pages == newest]))


def is_no_data(payload: Any) -> bool:
    """Whether a history answer is ``{"error": "No data."}``."""
    return isinstance(payload, dict) and payload.get("error") == normalize.NO_DATA_MESSAGE


def placeable(
    stamps: npt.NDArray[np.int64], bar: BarSize, hours: TradingHours
) -> npt.NDArray[np.bool_]:
    """Whether each bar time (epoch ms) names a session the warehouse can file it under: for
    intraday, daily and weekly bars, a session of ``hours`` (extended hours included) contains
    it; a monthly bar (stamped 00:00Z on the 1st) is filed by its month, whatever its time.
    Times outside the calendar's years lie in no session."""
    if bar.kind is BarKind.MONTH:
        return np.ones(len(stamps), dtype=bool)
    found = np.zeros(len(stamps), dtype=bool)
    if not len(stamps):
        return found
    cal = calendar_for(hours)
    first, last = _day_number(cal.first_date), _day_number(cal.last_date)
    days = stamps // _DAY_MS
    covered = (days >= first - 2) & (days <= last + 2)
    # Only sessions dated near an actual stamp (a CME session opens the evening before its
    # date), so a wild timestamp costs nothing.
    near = {
        session_date
        for day in np.unique(days[covered]).tolist()
        for session_date in cal.session_dates(_date_of(day - 2), _date_of(day + 2))
    }
    if not near:
        return found
    bounds = np.array([cal.session(d).bounds_ms(True) for d in sorted(near)], dtype=np.int64)
    index = np.searchsorted(bounds[:, 0], stamps, side="right") - 1
    inside = covered & (index >= 0)
    found[inside] = stamps[inside] < bounds[index[inside], 1]
    return found


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _date_of(day_number: int) -> date:
    return _EPOCH + timedelta(days=day_number)


def page_times(payload: Any) -> list[int]:
    """The ``t`` of every bar of a history answer (raises on a malformed answer)."""
    body = p.mapping(payload, "history payload")
    data = p.sequence(body.get("data"), "history data")
    return [p.epoch_ms(p.mapping(bar, "history bar").get("t"), "history bar t") for bar in data]


class RangePlanner:
    """Plans the period of each backward page of one range from the exchange calendar."""

    def __init__(self, request: HistoryRequest) -> None:
        self.request = request
        self.bar = request.bar
        self._calendar = calendar_for(request.hours)
        self._start_ms = p.ms_of(request.start)
        # Bar starts of every session overlapping the range, newest session first.
        self._sessions: list[tuple[Session, np.ndarray[Any, np.dtype[np.int64]]]] = []
        sessions = self._calendar.sessions_overlapping(
            request.start - timedelta(days=1), request.end, request.outside_rth
        )
        for session in reversed(sessions):
            self._sessions.append((session, self._bar_starts(session)))

    def _bar_starts(self, session: Session) -> np.ndarray[Any, np.dtype[np.int64]]:
        if self.bar.kind in (BarKind.INTRADAY, BarKind.DAY):
            return bar_starts(session, self.bar, self.request.outside_rth)
        return bar_starts(session, parse_bar_size("1d"), self.request.outside_rth)

    def expected_bars(self, cursor_ms: int) -> int:
        """Bars the calendar expects in [start, cursor)."""
        return sum(count for _, count in self._counts(cursor_ms))

    def _counts(self, cursor_ms: int) -> list[tuple[Session, int]]:
        """(session, bars in [start, cursor)) for sessions with any, newest first. Weekly and
        monthly bars count once, at their period's newest session in the range."""
        found: list[tuple[Session, int]] = []
        seen_periods: set[tuple[int, int]] = set()
        for session, starts in self._sessions:
            lo = int(np.searchsorted(starts, self._start_ms, side="left"))
            hi = int(np.searchsorted(starts, cursor_ms, side="left"))
            count = max(0, hi - lo)
            if count and self.bar.kind in (BarKind.WEEK, BarKind.MONTH):
                key = _period_key(session, self.bar)
                count = 0 if key in seen_periods else 1
                seen_periods.add(key)
            if count:
                found.append((session, count))
        return found

    def plan(self, cursor_ms: int, *, cover_all: bool = False) -> PagePlan:
        """The request for the page of bars just before ``cursor_ms``; with ``cover_all``, a
        period reaching back to the range start (as far as the period syntax allows)."""
        counts = self._counts(cursor_ms)
        remaining = sum(c for _, c in counts)
        target = remaining if cover_all else min(MAX_BARS_PER_RESPONSE, remaining)
        units, total = 0, 0
        while units < len(counts) and total < target:
            total += counts[units][1]
            units += 1
        units_in_range = len(counts)
        if self.bar.kind is BarKind.WEEK:
            unit, units, units_in_range = PeriodUnit.WEEK, total, remaining
        elif self.bar.kind is BarKind.MONTH:
            unit, units, units_in_range = PeriodUnit.MONTH, total, remaining
        else:
            unit = PeriodUnit.DAY
        asked = min(max(1, units + SESSION_MARGIN), unit.max_count)
        return PagePlan(
            period=f"{asked}{unit.value}",
            expected_bars=min(target if target else 0, MAX_BARS_PER_RESPONSE),
            reaches_start=asked >= units_in_range,
        )


def _period_key(session: Session, bar: BarSize) -> tuple[int, int]:
    if bar.kind is BarKind.WEEK:
        iso = session.date.isocalendar()
        return iso.year, iso.week
    return session.date.year, session.date.month


def minimum_requests(bars: int) -> int:
    """The fewest requests that can return ``bars`` bars."""
    return math.ceil(bars / MAX_BARS_PER_RESPONSE) if bars > 0 else 1


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


async def fetch_page(
    call: Call,
    conid: int,
    period: str,
    bar: str,
    *,
    start_time: datetime | None = None,
    outside_rth: bool | None = None,
    exchange: str | None = None,
    source: str | None = None,
) -> RawResponse:
    """One ``GET /iserver/marketdata/history``; ``"No data."`` comes back as a payload."""
    params = {
        "conid": str(int(conid)),
        "period": parse_period(period).label,
        "bar": parse_bar_size(bar).label,
        "startTime": None if start_time is None else p.gateway_time(start_time),
        "outsideRth": outside_rth,
        "exchange": exchange,
        "source": source,
    }
    return await call(
        ep.HISTORY, params=params, error_ok=lambda text: text == normalize.NO_DATA_MESSAGE
    )


async def fetch_range(call: Call, request: HistoryRequest) -> HistoryRange:
    """Page backward through ``request`` (see the module docstring)."""
    planner = RangePlanner(request)
    start_ms = p.ms_of(request.start)
    cursor = _ceil_second(request.end)
    cursor_ms = p.ms_of(cursor)
    expected = planner.expected_bars(p.ms_of(request.end))
    pages: list[RawResponse] = []
    seen_bars = probed = False
    out_of_order = 0
    plan = planner.plan(cursor_ms)
    while True:
        response = await fetch_page(
            call,
            request.conid,
            plan.period,
            request.bar.label,
            start_time=cursor,
            outside_rth=request.outside_rth,
            exchange=request.exchange,
            source=request.source,
        )
        pages.append(response)
        no_data = is_no_data(response.payload)
        times = [] if no_data else page_times(response.payload)
        if not times:
            if plan.reaches_start or (no_data and seen_bars):
                break  # nothing (older) in the range
            if not probed:
                # The window held nothing although the calendar expected bars: it lies after
                # the gateway's "now", or the exchange closed unexpectedly. Probe once with a
                # period reaching back to the range start: its answer is the next full page.
                probed = True
                plan = planner.plan(cursor_ms, cover_all=True)
                continue
            if no_data:
                break
            raise GatewayError(
                f"history: no bars for conid {request.conid} in the longest period before "
                f"{cursor.isoformat()} ({plan.period}) although the calendar expects some",
                endpoint="history",
            )
        seen_bars = True
        earliest, unordered = _order_of(times, request)
        out_of_order += unordered
        if earliest <= start_ms:
            break
        if len(times) < MAX_BARS_PER_RESPONSE and plan.reaches_start:
            break
        if earliest >= cursor_ms:
            raise GatewayError(
                f"history: no progress paging conid {request.conid} before "
                f"{cursor.isoformat()} (earliest bar {p.to_datetime(earliest).isoformat()})",
                endpoint="history",
            )
        cursor_ms = earliest
        cursor = p.to_datetime(earliest)
        plan, probed = planner.plan(cursor_ms), False
    return HistoryRange(
        request=request,
        pages=tuple(pages),
        expected_bars=expected,
        minimum_requests=minimum_requests(expected),
        out_of_order=out_of_order,
    )


def _order_of(times: Sequence[int], request: HistoryRequest) -> tuple[int, int]:
    """(earliest time, bars out of order) of one answer, counting only bars at times a session
    covers: a bar at a time no session covers (bad data, quarantined later) must neither move
    the paging cursor past bars never fetched nor make the bars after it look out of order."""
    stamps = np.asarray(times, dtype=np.int64)
    placed = stamps[placeable(stamps, request.bar, request.hours)]
    if not len(placed):
        return int(stamps.min()), 0
    highest = np.maximum.accumulate(placed)
    return int(placed.min()), int((placed[1:] < highest[:-1]).sum())


async def fetch_ranges(call: Call, requests: Iterable[HistoryRequest]) -> list[HistoryRange]:
    """Several ranges at once; the pacer's history cap bounds the requests in flight."""
    items: Sequence[HistoryRequest] = list(requests)
    return list(await asyncio.gather(*(fetch_range(call, r) for r in items)))
