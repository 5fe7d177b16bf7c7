"""Trading sessions of the exchanges the loader knows, from a real exchange calendar.

Holidays and half days come from `exchange_calendars` (a maintained calendar library), never
from hand-written lists. What the library does not model, extended hours and the regular-hours
window of futures, is added here as fixed local times per class of exchange.

One module answers, for the simulator, the client and the warehouse alike: which dates are
sessions, when each session's regular and extended hours start and end (in UTC), and where the
bars of a given size start inside a session. Keeping this in one place is what makes the
simulator's bars, the client's request planning and the completeness checks agree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from ib_pipeline.timeframes import BarKind, BarSize

CALENDAR_START = "2000-01-01"
"""Earliest date the calendars cover. History requests before it find no sessions."""

MS_PER_MINUTE = 60_000


@dataclass(frozen=True)
class TradingHours:
    """How one class of exchange trades.

    ``calendar`` names an `exchange_calendars` calendar whose sessions give the trading dates and
    the full session bounds. ``rth_*`` narrow the regular-hours window inside the calendar
    session (futures); ``None`` means the calendar's own open/close are the regular hours.
    ``extended_*`` widen the session for ``outsideRth`` requests (US stocks: 04:00-20:00 local,
    17:00 on half days); ``None`` means the calendar session is already the full session.
    """

    name: str
    calendar: str
    timezone: str
    rth_start: time | None = None
    rth_end: time | None = None
    extended_start: time | None = None
    extended_end: time | None = None
    early_close_extended_end: time | None = None


US_EQUITY = TradingHours(
    name="US_EQUITY",
    calendar="XNYS",
    timezone="America/New_York",
    extended_start=time(4, 0),
    extended_end=time(20, 0),
    early_close_extended_end=time(17, 0),
)
CME_FUTURES = TradingHours(
    name="CME_FUTURES",
    calendar="CMES",
    timezone="America/Chicago",
    rth_start=time(8, 30),
    rth_end=time(15, 0),
)
FOREX = TradingHours(name="FOREX", calendar="24/5", timezone="UTC")

IBKR_EXCHANGE_CALENDARS: dict[str, str] = {
    "NYSE": "XNYS",
    "NASDAQ": "XNYS",
    "ARCA": "XNYS",
    "AMEX": "XNYS",
    "BATS": "XNYS",
    "CME": "CMES",
    "GLOBEX": "CMES",
    "IDEALPRO": "24/5",
    "IBIS": "XETR",  # Xetra (Deutsche Boerse)
    "LSE": "XLON",  # London Stock Exchange
    "TSEJ": "XTKS",  # Tokyo Stock Exchange (IBKR's "TSE" is Toronto)
    "SEHK": "XHKG",  # Hong Kong
    "ASX": "XASX",  # Australian Securities Exchange
    "TSE": "XTSE",  # Toronto Stock Exchange
}
"""The one table from IBKR's exchange codes to `exchange_calendars` calendar names. ``SMART`` is
IBKR's router, not a venue, so it has no calendar of its own (a US stock routed SMART follows its
listing exchange)."""

_NON_US_EQUITY_TIMEZONES: dict[str, str] = {
    "IBIS": "Europe/Berlin",
    "LSE": "Europe/London",
    "TSEJ": "Asia/Tokyo",
    "SEHK": "Asia/Hong_Kong",
    "ASX": "Australia/Sydney",
    "TSE": "America/Toronto",
}

NON_US_EQUITY: dict[str, TradingHours] = {
    code: TradingHours(
        name=f"{code}_EQUITY",
        calendar=IBKR_EXCHANGE_CALENDARS[code],
        timezone=zone,
    )
    for code, zone in _NON_US_EQUITY_TIMEZONES.items()
}
"""Stocks on IBKR's non-US venues, keyed by IBKR exchange code: the calendar's own open and close
are the regular hours, in the exchange's time zone, with its lunch break where it has one (Tokyo,
Hong Kong); no extended hours are modelled, so ``outsideRth`` changes nothing there."""


def calendar_name_for_exchange(exchange: str) -> str:
    """The `exchange_calendars` name of an IBKR exchange code (``TSEJ`` -> ``XTKS``); ValueError
    naming the code and the known ones otherwise."""
    try:
        return IBKR_EXCHANGE_CALENDARS[exchange.strip().upper()]
    except KeyError:
        known = ", ".join(IBKR_EXCHANGE_CALENDARS)
        raise ValueError(f"no exchange calendar known for {exchange!r}; known: {known}") from None


_EXCHANGE_HOURS: dict[tuple[str, str], TradingHours] = {
    **{
        (sec, ex): US_EQUITY
        for sec in ("STK", "ETF")
        for ex in ("NYSE", "NASDAQ", "ARCA", "AMEX", "BATS", "SMART")
    },
    ("FUT", "CME"): CME_FUTURES,
    ("FUT", "GLOBEX"): CME_FUTURES,
    ("CASH", "IDEALPRO"): FOREX,
    **{(sec, code): hours for sec in ("STK", "ETF") for code, hours in NON_US_EQUITY.items()},
}


def trading_hours_for(sec_type: str, exchange: str) -> TradingHours:
    """The trading hours of an instrument of ``sec_type`` listed on ``exchange``."""
    try:
        return _EXCHANGE_HOURS[(sec_type.upper(), exchange.upper())]
    except KeyError:
        known = ", ".join(f"{s}@{e}" for s, e in _EXCHANGE_HOURS)
        raise ValueError(
            f"no trading hours known for {sec_type}@{exchange}; known: {known}"
        ) from None


@dataclass(frozen=True)
class Session:
    """One trading session. Every datetime is timezone-aware UTC; ends are exclusive."""

    date: date
    rth_open: datetime
    rth_close: datetime
    ext_open: datetime
    ext_close: datetime
    utc_offset_minutes: int  # of the exchange's time zone at the regular open
    early_close: bool
    # A midday break (Tokyo, Hong Kong): no bars in [break_start, break_end). None: no break.
    break_start: datetime | None = None
    break_end: datetime | None = None

    def bounds(self, outside_rth: bool) -> tuple[datetime, datetime]:
        """Start (inclusive) and end (exclusive) of the session's bars."""
        if outside_rth:
            return self.ext_open, self.ext_close
        return self.rth_open, self.rth_close

    def bounds_ms(self, outside_rth: bool) -> tuple[int, int]:
        start, end = self.bounds(outside_rth)
        return _to_ms(start), _to_ms(end)

    def minutes(self, outside_rth: bool) -> int:
        start, end = self.bounds_ms(outside_rth)
        return (end - start) // MS_PER_MINUTE - self.break_minutes()

    def break_bounds_ms(self) -> tuple[int, int] | None:
        """Start (inclusive) and end (exclusive) of the midday break, or None without one."""
        if self.break_start is None or self.break_end is None:
            return None
        return _to_ms(self.break_start), _to_ms(self.break_end)

    def break_minutes(self) -> int:
        bounds = self.break_bounds_ms()
        return 0 if bounds is None else (bounds[1] - bounds[0]) // MS_PER_MINUTE


def _to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class SessionCalendar:
    """Sessions of one class of exchange, answered from arrays built once per calendar."""

    def __init__(self, hours: TradingHours) -> None:
        self.hours = hours
        self._tz = ZoneInfo(hours.timezone)
        schedule = _load_schedule(hours.calendar)
        self._dates: npt.NDArray[np.datetime64] = schedule[0]
        self._open_ms: npt.NDArray[np.int64] = schedule[1]
        self._close_ms: npt.NDArray[np.int64] = schedule[2]
        self._break_start_ms: npt.NDArray[np.int64] | None = schedule[3]
        self._break_end_ms: npt.NDArray[np.int64] | None = schedule[4]
        self._regular_close_local = _usual_close_local(self._close_ms, self._tz)
        self._session_cache: dict[date, Session] = {}

    @property
    def first_date(self) -> date:
        return _as_date(self._dates[0])

    @property
    def last_date(self) -> date:
        return _as_date(self._dates[-1])

    def is_session(self, day: date) -> bool:
        index = int(np.searchsorted(self._dates, np.datetime64(day, "D")))
        return index < len(self._dates) and _as_date(self._dates[index]) == day

    def session(self, day: date) -> Session:
        """The session on ``day``; ValueError if the exchange does not trade that day."""
        cached = self._session_cache.get(day)
        if cached is not None:
            return cached
        index = int(np.searchsorted(self._dates, np.datetime64(day, "D")))
        if index >= len(self._dates) or _as_date(self._dates[index]) != day:
            raise ValueError(f"{day.isoformat()} is not a {self.hours.name} session")
        built = self._build(index)
        self._session_cache[day] = built
        return built

    def session_dates(self, start: date, end: date) -> list[date]:
        """Session dates from ``start`` to ``end``, both inclusive."""
        lo = int(np.searchsorted(self._dates, np.datetime64(start, "D"), side="left"))
        hi = int(np.searchsorted(self._dates, np.datetime64(end, "D"), side="right"))
        return [_as_date(d) for d in self._dates[lo:hi]]

    def sessions(self, start: date, end: date) -> list[Session]:
        return [self.session(d) for d in self.session_dates(start, end)]

    def sessions_overlapping(
        self, start: datetime, end: datetime, outside_rth: bool
    ) -> list[Session]:
        """Sessions whose bars (for ``outside_rth``) fall at least partly in [start, end)."""
        # Sessions can start up to a day before their date (CME evening open), so widen by 2 days.
        candidates = self.sessions(
            (start - timedelta(days=2)).date(), (end + timedelta(days=2)).date()
        )
        found = []
        for sess in candidates:
            s_start, s_end = sess.bounds(outside_rth)
            if s_start < end and s_end > start:
                found.append(sess)
        return found

    def previous_session_dates(self, day: date, count: int) -> list[date]:
        """The ``count`` session dates ending at ``day`` (inclusive), oldest first."""
        hi = int(np.searchsorted(self._dates, np.datetime64(day, "D"), side="right"))
        lo = max(0, hi - count)
        return [_as_date(d) for d in self._dates[lo:hi]]

    def _build(self, index: int) -> Session:
        day = _as_date(self._dates[index])
        cal_open = datetime.fromtimestamp(int(self._open_ms[index]) / 1000, UTC)
        cal_close = datetime.fromtimestamp(int(self._close_ms[index]) / 1000, UTC)
        close_local = cal_close.astimezone(self._tz).time()
        early_close = close_local < self._regular_close_local
        hours = self.hours
        if hours.rth_start is not None and hours.rth_end is not None:
            rth_open = max(cal_open, self._local(day, hours.rth_start))
            rth_close = min(cal_close, self._local(day, hours.rth_end))
        else:
            rth_open, rth_close = cal_open, cal_close
        ext_open = (
            cal_open if hours.extended_start is None else self._local(day, hours.extended_start)
        )
        ext_end_time = hours.early_close_extended_end if early_close else hours.extended_end
        ext_close = cal_close if ext_end_time is None else self._local(day, ext_end_time)
        offset = rth_open.astimezone(self._tz).utcoffset()
        break_start, break_end = self._break(index)
        return Session(
            date=day,
            rth_open=rth_open,
            rth_close=rth_close,
            ext_open=min(ext_open, rth_open),
            ext_close=max(ext_close, rth_close),
            utc_offset_minutes=int(offset.total_seconds() // 60) if offset else 0,
            early_close=early_close,
            break_start=break_start,
            break_end=break_end,
        )

    def _break(self, index: int) -> tuple[datetime | None, datetime | None]:
        starts, ends = self._break_start_ms, self._break_end_ms
        if starts is None or ends is None:
            return None, None
        start, end = int(starts[index]), int(ends[index])
        if _NAT_MS in (start, end) or end <= start:
            return None, None
        return datetime.fromtimestamp(start / 1000, UTC), datetime.fromtimestamp(end / 1000, UTC)

    def _local(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self._tz).astimezone(UTC)


_NAT_MS = int(np.datetime64("NaT").astype("datetime64[ms]").astype(np.int64))


@functools.cache
def _load_schedule(
    calendar_name: str,
) -> tuple[
    npt.NDArray[np.datetime64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64] | None,
    npt.NDArray[np.int64] | None,
]:
    """Dates, open and close (epoch ms) of every session, and the midday break's start and end
    (epoch ms, NaT where a session has none; None when the calendar has no break at all)."""
    import exchange_calendars as xcals  # noqa: PLC0415  (lazy: importing it costs ~0.5 s)

    cal = xcals.get_calendar(calendar_name, start=CALENDAR_START)
    schedule = cal.schedule
    dates = schedule.index.values.astype("datetime64[D]")
    open_ms = schedule["open"].values.astype("datetime64[ms]").astype(np.int64)
    close_ms = schedule["close"].values.astype("datetime64[ms]").astype(np.int64)
    breaks: list[npt.NDArray[np.int64] | None] = [None, None]
    if "break_start" in schedule and bool(schedule["break_start"].notna().any()):
        breaks = [
            schedule[column].values.astype("datetime64[ms]").astype(np.int64)
            for column in ("break_start", "break_end")
        ]
    return dates, open_ms, close_ms, breaks[0], breaks[1]


def _usual_close_local(close_ms: npt.NDArray[np.int64], tz: ZoneInfo) -> time:
    """The most common local closing time: anything earlier is an early close (half day)."""
    sample = close_ms[-500:] if len(close_ms) > 500 else close_ms
    counts: dict[time, int] = {}
    for value in sample:
        local = datetime.fromtimestamp(int(value) / 1000, UTC).astimezone(tz).time()
        counts[local] = counts.get(local, 0) + 1
    return max(counts, key=lambda t: counts[t])


def _as_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value.astype("datetime64[D]")))


@functools.cache
def calendar_for(hours: TradingHours) -> SessionCalendar:
    """The shared, cached SessionCalendar for ``hours``."""
    return SessionCalendar(hours)


def minute_starts(session: Session, outside_rth: bool) -> npt.NDArray[np.int64]:
    """Epoch-ms start of every one-minute bar in the session."""
    start, end = session.bounds_ms(outside_rth)
    minutes = np.arange(start, end, MS_PER_MINUTE, dtype=np.int64)
    pause = session.break_bounds_ms()
    if pause is not None:
        minutes = minutes[(minutes < pause[0]) | (minutes >= pause[1])]
    return minutes


def intraday_bucket_keys(
    minute_ms: npt.NDArray[np.int64], bar: BarSize, utc_offset_minutes: int
) -> npt.NDArray[np.int64]:
    """Bucket number of each one-minute bar for an intraday ``bar`` size.

    Buckets are aligned to the exchange's local clock (a 1h bar covers 10:00-11:00 local, an 8h
    bar 00:00-08:00 local), so a session's first bucket may be short (09:30-10:00).
    """
    if not bar.is_intraday:
        raise ValueError(f"{bar.label} is not an intraday bar size")
    local_minutes = minute_ms // MS_PER_MINUTE + utc_offset_minutes
    return local_minutes // bar.minutes


def bar_starts(session: Session, bar: BarSize, outside_rth: bool) -> npt.NDArray[np.int64]:
    """Epoch-ms timestamps of the bars of size ``bar`` the session holds.

    An intraday bar is stamped at its first minute inside the session; a daily bar at the
    session's first minute. Weekly and monthly bars span sessions: see `period_bar_start`.
    """
    minutes = minute_starts(session, outside_rth)
    if bar.kind is BarKind.DAY:
        return minutes[:1]
    if bar.kind is not BarKind.INTRADAY:
        raise ValueError(f"{bar.label} bars span several sessions; use period_bar_start")
    keys = intraday_bucket_keys(minutes, bar, session.utc_offset_minutes)
    first = np.concatenate(([True], keys[1:] != keys[:-1]))
    return minutes[first]


def period_key(day: date, bar: BarSize) -> tuple[int, int]:
    """The weekly or monthly bar a session date belongs to: (ISO year, week) or (year, month)."""
    if bar.kind is BarKind.WEEK:
        iso = day.isocalendar()
        return iso.year, iso.week
    if bar.kind is BarKind.MONTH:
        return day.year, day.month
    raise ValueError(f"{bar.label} is not a weekly or monthly bar size")


def month_bar_start_ms(year: int, month: int) -> int:
    """Monthly bars are stamped at 00:00 UTC on the first of the month, as the gateway does."""
    return _to_ms(datetime(year, month, 1, tzinfo=UTC))
