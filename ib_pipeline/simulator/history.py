"""``GET /iserver/marketdata/history``, answered as the gateway does, from the synthetic market.

Request semantics (the client plans its paging on these; `history_window` computes them):

- **End.** ``end`` is ``startTime`` (``YYYYMMDD-HH:MM:SS``, UTC) when given, else the clock's now:
  the period runs *backward* from it. Bars with ``t >= end`` are excluded, and so is every bar
  not yet completed at now (an intraday bar until its last minute has ended, a daily bar until
  its session has ended, a weekly/monthly bar until the last session of its week/month has).
- **Start**, by the period's unit: ``min``/``h``: ``end`` minus that wall time; ``d``: the start
  of the N-th most recent session whose bars (regular or extended, per ``outsideRth``) begin
  before ``end`` (N sessions, a session in progress counting as one); ``w``: ``end`` minus 7N
  days; ``m``: N calendar months back; ``y``: N years back (same day and time, clamped to the
  month's end). Bars with ``start <= t`` are included.
- **At most 1000 bars** (`MAX_BARS`): if the window holds more, the 1000 most *recent* ones. To
  page backward, send the next request with ``startTime`` set to the earliest ``t`` received:
  pages then neither overlap nor leave gaps.
- **Empty windows.** A window inside the instrument's history that holds no completed bar (a
  weekend, a holiday, the night, a bar still forming) answers 200 with ``data: []`` and
  ``points: 0`` (as the real gateway does for closed-market pages). A window that lies wholly
  before the instrument's first session or wholly in the future (its start at or after now)
  answers ``{"error": "No data."}``. A window that only partly precedes the first session gets
  the bars that exist. (The real gateway has been seen answering 500 "Chart data unavailable"
  there; the simulator does not, but `HISTORY_ERRORS` holds that body for fault injection.)
- **Source.** ``Trades`` (default): the market's bars, ``v`` in lots (shares / ``volumeFactor``,
  100 for US stocks, 1 otherwise). ``Midpoint``: the same prices (the synthetic market trades at
  the midpoint of a symmetric spread) and ``v = 0``. ``Bid_Ask``: ``o``/``c`` as Trades, ``h`` the
  highest ask (high + spread), ``l`` the lowest bid (low - spread), ``v = 0``. Case-insensitive;
  ``Last`` is accepted for Trades.
- **exchange**, when given, must be the instrument's exchange or listing exchange, or ``SMART``
  for stocks; it does not change the data.

Validation never raises: every bad request maps to a (status, body) pair of `HISTORY_ERRORS`, the
single table of the error answers. No authoritative capture of the real gateway's bodies for
these cases was found (only ``{"error":"No data."}``, ``{"error":"Chart data unavailable"}`` and
the ``{"error": "Bad Request: ...", "statusCode": 400}`` shape the gateway uses for parameter
errors elsewhere), so the messages below are modelled on those: change them here if a capture
shows otherwise.

What it must never do: touch HTTP, raise for bad input, or change the market.
"""

from __future__ import annotations

import calendar
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from ib_pipeline.calendars import calendar_for
from ib_pipeline.simulator.answers import Answer, NonFiniteJson, encode_body, error_body
from ib_pipeline.simulator.bad_data import BadDataSpec, Corruption, corrupt_rows, has_non_finite
from ib_pipeline.simulator.bars import Bars
from ib_pipeline.simulator.epoch import from_ms, to_ms
from ib_pipeline.simulator.instruments import Instrument
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.params import parse_bool
from ib_pipeline.timeframes import BarSize, Period, PeriodUnit, parse_bar_size, parse_period

__all__ = [  # NonFiniteJson and encode_body live in `answers`; re-exported for older imports
    "HISTORY_ERRORS",
    "MAX_BARS",
    "START_TIME_FORMAT",
    "ErrorAnswer",
    "HistoryRequest",
    "HistoryRequestError",
    "NonFiniteJson",
    "Source",
    "encode_body",
    "format_start_time",
    "history_response",
    "history_response_with_report",
    "history_window",
    "parse_history_params",
    "parse_start_time",
]

T = TypeVar("T")

MAX_BARS = 1000
"""The most bars one history response holds (the most recent ones of the window)."""

START_TIME_FORMAT = "%Y%m%d-%H:%M:%S"


# --------------------------------------------------------------------------------------------
# Every error answer of the endpoint, in one table.


@dataclass(frozen=True)
class ErrorAnswer:
    """One error answer: HTTP status and the ``error`` message (a ``str.format`` template).
    ``with_status_code`` adds the ``statusCode`` member the gateway puts in its 4xx bodies."""

    status: int
    message: str
    with_status_code: bool = True

    def body(self, **values: object) -> dict[str, Any]:
        status = self.status if self.with_status_code else None
        return error_body(self.message.format(**values), status)


HISTORY_ERRORS: Mapping[str, ErrorAnswer] = {
    "missing_parameter": ErrorAnswer(400, "Bad Request: {name} is missing"),
    "invalid_conid": ErrorAnswer(400, "Bad Request: invalid conid {value!r}"),
    "unknown_conid": ErrorAnswer(400, "Bad Request: no contract found for conid {value}"),
    "invalid_period": ErrorAnswer(400, "Bad Request: invalid period {value!r}; {detail}"),
    "invalid_bar": ErrorAnswer(400, "Bad Request: invalid bar {value!r}; {detail}"),
    "invalid_start_time": ErrorAnswer(
        400, "Bad Request: invalid startTime {value!r}; expected YYYYMMDD-HH:MM:SS (UTC)"
    ),
    "invalid_outside_rth": ErrorAnswer(
        400, "Bad Request: invalid outsideRth {value!r}; expected true or false"
    ),
    "invalid_source": ErrorAnswer(
        400, "Bad Request: invalid source {value!r}; expected Trades, Midpoint or Bid_Ask"
    ),
    "invalid_exchange": ErrorAnswer(
        400, "Bad Request: exchange {value!r} is not valid for conid {conid}"
    ),
    "no_data": ErrorAnswer(200, "No data.", with_status_code=False),
    "chart_data_unavailable": ErrorAnswer(500, "Chart data unavailable", with_status_code=False),
}
"""``chart_data_unavailable`` is never produced here; it is the transient error the real gateway
sends, for the server's fault injection to reuse."""


class HistoryRequestError(Exception):
    """A request the gateway would refuse; carries its (status, body) answer."""

    def __init__(self, key: str, **values: object) -> None:
        answer = HISTORY_ERRORS[key]
        self.key = key
        self.status = answer.status
        self.body = answer.body(**values)
        super().__init__(self.body["error"])


# --------------------------------------------------------------------------------------------
# Requests


class Source(Enum):
    TRADES = "Trades"
    MIDPOINT = "Midpoint"
    BID_ASK = "Bid_Ask"


_SOURCES = {
    "trades": Source.TRADES,
    "last": Source.TRADES,
    "midpoint": Source.MIDPOINT,
    "bid_ask": Source.BID_ASK,
}


@dataclass(frozen=True)
class HistoryRequest:
    """A validated history request. ``end`` is ``startTime`` or, without it, the clock's now."""

    conid: int
    period: Period
    bar: BarSize
    end: datetime
    outside_rth: bool
    source: Source
    exchange: str | None


def parse_start_time(text: str) -> datetime:
    """``YYYYMMDD-HH:MM:SS`` (UTC) as an aware datetime; ValueError otherwise."""
    if len(text) != 17:
        raise ValueError(f"invalid startTime {text!r}")
    return datetime.strptime(text, START_TIME_FORMAT).replace(tzinfo=UTC)


def format_start_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(START_TIME_FORMAT)


def parse_history_params(market: Market, params: Mapping[str, str]) -> HistoryRequest:
    """Validate raw query parameters; HistoryRequestError with the gateway's answer if bad."""
    conid = _required(params, "conid", int, "invalid_conid")
    try:
        instrument = market.instrument(conid)
    except KeyError:
        raise HistoryRequestError("unknown_conid", value=conid) from None
    period = _required(params, "period", parse_period, "invalid_period")
    bar = _required(params, "bar", parse_bar_size, "invalid_bar")

    raw_start = _param(params, "startTime")
    if raw_start is None:
        end = market.clock.now()
    else:
        try:
            end = parse_start_time(raw_start)
        except ValueError:
            raise HistoryRequestError("invalid_start_time", value=raw_start) from None

    raw_rth = _param(params, "outsideRth")
    outside_rth = False
    if raw_rth is not None:
        flag = parse_bool(raw_rth)
        if flag is None:
            raise HistoryRequestError("invalid_outside_rth", value=raw_rth)
        outside_rth = flag

    raw_source = _param(params, "source")
    source = Source.TRADES
    if raw_source is not None:
        if raw_source.lower() not in _SOURCES:
            raise HistoryRequestError("invalid_source", value=raw_source)
        source = _SOURCES[raw_source.lower()]

    exchange = _param(params, "exchange")
    if exchange is not None and not _exchange_ok(instrument, exchange):
        raise HistoryRequestError("invalid_exchange", value=exchange, conid=conid)

    return HistoryRequest(conid, period, bar, end, outside_rth, source, exchange)


def _param(params: Mapping[str, str], name: str) -> str | None:
    """The parameter's text without surrounding blanks; None if absent or blank."""
    value = params.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _required(params: Mapping[str, str], name: str, parse: Callable[[str], T], invalid: str) -> T:
    """A mandatory parameter read by ``parse``: the ``missing_parameter`` answer if it is
    absent, the ``invalid`` one (with the parser's reason as ``detail``) if it does not parse."""
    raw = _param(params, name)
    if raw is None:
        raise HistoryRequestError("missing_parameter", name=name)
    try:
        return parse(raw)
    except ValueError as exc:
        raise HistoryRequestError(invalid, value=raw, detail=_detail(exc)) from None


def _detail(exc: ValueError) -> str:
    return str(exc).split("; ", 1)[-1]


def _exchange_ok(instrument: Instrument, exchange: str) -> bool:
    wanted = exchange.upper()
    allowed = {instrument.exchange.upper(), instrument.listing_exchange.upper()}
    allowed.add(instrument.listing_exchange.split(".")[0].upper())
    if instrument.sec_type == "STK":
        allowed.add("SMART")
    return wanted in allowed


# --------------------------------------------------------------------------------------------
# The window


def history_window(
    instrument: Instrument, period: Period, end: datetime, outside_rth: bool
) -> tuple[datetime, datetime]:
    """The [start, end) a request covers (see the module docstring for the rules)."""
    end = end.astimezone(UTC)
    count = period.count
    unit = period.unit
    if unit is PeriodUnit.MINUTE:
        return end - timedelta(minutes=count), end
    if unit is PeriodUnit.HOUR:
        return end - timedelta(hours=count), end
    if unit is PeriodUnit.WEEK:
        return end - timedelta(days=7 * count), end
    if unit is PeriodUnit.MONTH:
        return _months_back(end, count), end
    if unit is PeriodUnit.YEAR:
        return _months_back(end, 12 * count), end
    cal = calendar_for(instrument.trading_hours)
    end_ms = to_ms(end)
    candidates = cal.previous_session_dates(end.date() + timedelta(days=2), count + 4)
    starts = [
        first
        for first in (cal.session(d).bounds_ms(outside_rth)[0] for d in candidates)
        if first < end_ms
    ]
    if not starts:
        return end, end
    return from_ms(starts[-count] if len(starts) >= count else starts[0]), end


def _months_back(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


# --------------------------------------------------------------------------------------------
# Answers


def history_response(
    market: Market, params: Mapping[str, str], bad_data: BadDataSpec | None = None
) -> Answer:
    """(HTTP status, JSON-serialisable body) exactly as the gateway answers the request."""
    status, body, _ = history_response_with_report(market, params, bad_data)
    return status, body


def history_response_with_report(
    market: Market, params: Mapping[str, str], bad_data: BadDataSpec | None = None
) -> tuple[int, Any, list[Corruption]]:
    """`history_response` plus the list of rows ``bad_data`` corrupted (the ground truth's view)."""
    try:
        request = parse_history_params(market, params)
    except HistoryRequestError as exc:
        return exc.status, exc.body, []
    instrument = market.instrument(request.conid)
    start, end = history_window(instrument, request.period, request.end, request.outside_rth)
    first = market.history_start(request.conid, request.outside_rth)
    last = market.history_end(request.conid, request.outside_rth)
    if (
        first is None
        or end <= first
        or start >= market.clock.now()
        or (last is not None and start >= last)
    ):
        no_data = HISTORY_ERRORS["no_data"]
        return no_data.status, no_data.body(), []
    bars = market.bars(request.conid, request.bar, start, end, request.outside_rth, limit=MAX_BARS)
    rows = _rows(bars, instrument, request.source)
    body: dict[str, Any] = _metadata(
        instrument,
        market_delayed=market.is_delayed(request.conid),
        request=request,
        start=start,
        end=end,
        bars=bars,
        rows=rows,
    )
    report: list[Corruption] = []
    if bad_data is not None and len(bars):
        key = (
            request.conid,
            request.bar.minutes,
            int(bars.ts_ms[0]),
            int(bars.ts_ms[-1]),
            len(bars),
        )
        rows, report = corrupt_rows(
            rows, bad_data, key=key, tick=instrument.min_tick, decimals=instrument.price_decimals
        )
    body["data"] = rows
    body["points"] = max(len(rows) - 1, 0)
    body["travelTime"] = 1 + len(rows) // 100
    if report and has_non_finite(rows):
        body = NonFiniteJson(body)
    return 200, body, report


def _rows(bars: Bars, instrument: Instrument, source: Source) -> list[dict[str, Any]]:
    if not len(bars):
        return []
    opens = bars.open.tolist()
    closes = bars.close.tolist()
    times = bars.ts_ms.tolist()
    if source is Source.TRADES:
        highs = bars.high.tolist()
        lows = bars.low.tolist()
        volumes = (bars.volume_shares / instrument.lot_size).tolist()
    else:
        spread = instrument.half_spread if source is Source.BID_ASK else 0.0
        decimals = instrument.price_decimals
        highs = [round(h + spread, decimals) for h in bars.high.tolist()]
        lows = [max(round(x - spread, decimals), instrument.min_tick) for x in bars.low.tolist()]
        volumes = [0] * len(bars)
    return [
        {"o": o, "c": c, "h": h, "l": lo, "v": v, "t": t}
        for o, c, h, lo, v, t in zip(opens, closes, highs, lows, volumes, times, strict=True)
    ]


REALTIME_HISTORY_AVAILABILITY = "S"
"""``mdAvailability`` of a subscribed instrument's history, as IBKR's examples show it."""
DELAYED_HISTORY_AVAILABILITY = "D"
"""``mdAvailability`` of delayed history (a guess: see `ib_pipeline.simulator.real_world`)."""


def md_availability(delayed: bool) -> str:
    return DELAYED_HISTORY_AVAILABILITY if delayed else REALTIME_HISTORY_AVAILABILITY


def _metadata(
    instrument: Instrument,
    *,
    market_delayed: bool = False,
    request: HistoryRequest,
    start: datetime,
    end: datetime,
    bars: Bars,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    factor = instrument.price_factor
    first_ts = int(bars.ts_ms[0]) if len(bars) else to_ms(start)
    return {
        "serverId": _server_id(request),
        "symbol": instrument.symbol,
        "text": instrument.company_name,
        "priceFactor": factor,
        "startTime": format_start_time(from_ms(first_ts)),
        "high": _summary(bars, rows, "h", factor),
        "low": _summary(bars, rows, "l", factor),
        "timePeriod": request.period.label,
        "barLength": request.bar.seconds,
        "mdAvailability": md_availability(market_delayed),
        "mktDataDelay": 0,
        "outsideRth": request.outside_rth,
        "tradingDayDuration": _trading_day_minutes(instrument, end, request.outside_rth),
        "volumeFactor": instrument.lot_size,
        "priceDisplayRule": 1,
        "priceDisplayValue": str(instrument.price_decimals),
        "chartPanStartTime": format_start_time(end),
        "direction": -1,
        "negativeCapable": False,
        "messageVersion": 2,
    }


def _summary(bars: Bars, rows: list[dict[str, Any]], name: str, factor: int) -> str:
    """``price*priceFactor/volume/minutes-from-start`` of the highest high (``name="h"``) or the
    lowest low (``name="l"``), first occurrence, from the clean rows (Bid_Ask rows are the clean
    highs and lows shifted by a constant, so the same row wins)."""
    if not rows:
        return "0/0/0"
    index = int(bars.high.argmax() if name == "h" else bars.low.argmin())
    best = rows[index]
    minutes = (int(best["t"]) - int(bars.ts_ms[0])) // 60_000
    return f"{round(best[name] * factor)}/{_number(best['v'])}/{minutes}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _trading_day_minutes(instrument: Instrument, end: datetime, outside_rth: bool) -> int:
    """Minutes of the latest session that starts before ``end`` (0 if the calendar has none)."""
    cal = calendar_for(instrument.trading_hours)
    end_ms = to_ms(end)
    for day in reversed(cal.previous_session_dates(end.date() + timedelta(days=2), 5)):
        session = cal.session(day)
        if session.bounds_ms(outside_rth)[0] < end_ms:
            return session.minutes(outside_rth)
    return 0


def _server_id(request: HistoryRequest) -> str:
    key = (
        f"{request.conid}|{request.period}|{request.bar}|{to_ms(request.end)}|{request.outside_rth}"
    )
    return str(1_000_000 + zlib.crc32(key.encode()) % 9_000_000)
