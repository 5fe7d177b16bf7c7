"""``GET /trsrv/futures`` and ``GET /iserver/secdef/info``: contract months and contract details.

The real gateway resolves a future in two steps: contract search answers the root (its conid and
the months it trades), then ``/iserver/secdef/info?conid=<root>&sectype=FUT&month=MAR25`` (or
``/trsrv/futures?symbols=ES``, which lists every non-expired month) gives each month's own conid.
The simulator's roots are the continuous ES and NQ contracts (their conids unchanged); the months
are `instruments.FUTURE_MONTHS`. ``secdef/info`` also answers stocks, forex and the non-US stocks
(exchange, currency, listing exchange), one entry each.

What it must never do: touch market data or HTTP. Guesses about the real shapes are listed in
`ib_pipeline.simulator.real_world`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from ib_pipeline.simulator.answers import Answer, bad_request
from ib_pipeline.simulator.instruments import (
    FUTURE_MONTH_CODES,
    Instrument,
    by_conid,
    by_symbol,
    future_months,
)

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _yyyymmdd(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def month_code(instrument: Instrument) -> str:
    """``MAR25`` for the March 2025 month (the gateway's MMMYY)."""
    expiry = instrument.expiry
    if expiry is None:
        raise ValueError(f"{instrument.symbol} {instrument.conid} is not a contract month")
    return f"{_MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def local_symbol(instrument: Instrument) -> str:
    """``ESH5``: root, month letter (H, M, U, Z), last digit of the year."""
    expiry = instrument.expiry
    if expiry is None:
        raise ValueError(f"{instrument.symbol} {instrument.conid} is not a contract month")
    return f"{instrument.symbol}{FUTURE_MONTH_CODES[expiry.month]}{expiry.year % 10}"


def listed_months(root_symbol: str, today: date) -> list[Instrument]:
    """The root's contract months listed and not expired on ``today``, nearest first."""
    return [
        item
        for item in future_months(root_symbol)
        if item.first_date <= today
        and item.last_trade_date is not None
        and item.last_trade_date >= today
    ]


def futures_listing(symbols: str | None, today: date) -> Answer:
    """``/trsrv/futures?symbols=ES,NQ``: ``{"ES": [{symbol, conid, underlyingConid,
    expirationDate, ltd, shortFuturesCutOff, longFuturesCutOff}, ...], ...}`` with dates as
    ``yyyymmdd`` integers; a symbol without futures maps to an empty list."""
    wanted = [s.strip().upper() for s in (symbols or "").split(",") if s.strip()]
    if not wanted:
        return bad_request("symbols is required (comma-separated futures roots, e.g. ES)")
    body: dict[str, list[dict[str, Any]]] = {}
    for symbol in wanted:
        body[symbol] = [_listing_entry(item) for item in listed_months(symbol, today)]
    return 200, body


def _listing_entry(item: Instrument) -> dict[str, Any]:
    expiry, last = item.expiry, item.last_trade_date
    if expiry is None or last is None:
        raise ValueError(f"{item.symbol} {item.conid} is not a contract month")
    return {
        "symbol": item.symbol,
        "conid": item.conid,
        "underlyingConid": item.underlying_conid,
        "expirationDate": _yyyymmdd(expiry),
        "ltd": _yyyymmdd(last),
        "shortFuturesCutOff": _yyyymmdd(last),
        "longFuturesCutOff": _yyyymmdd(last),
    }


def secdef_info(params: Mapping[str, str]) -> Answer:
    """``/iserver/secdef/info?conid&sectype[&month&exchange]``: a list of contract details.

    For ``sectype=FUT`` on a root (ES, NQ) ``month`` (MMMYY) is required and picks the month;
    on a month's own conid it answers that month. Other types answer the conid itself.
    """
    raw_conid = (params.get("conid") or "").strip()
    sec_type = (params.get("sectype") or params.get("secType") or "").strip().upper()
    if not raw_conid.isdigit():
        return bad_request("conid is required (a number)")
    if not sec_type:
        return bad_request("sectype is required (STK, FUT, CASH)")
    try:
        instrument = by_conid(int(raw_conid))
    except KeyError:
        return bad_request(f"no contract found for conid {raw_conid}")
    exchange = (params.get("exchange") or "").strip().upper()
    if exchange and exchange not in {instrument.exchange, instrument.listing_exchange, "SMART"}:
        return bad_request(f"exchange {exchange} is not valid for conid {raw_conid}")
    if sec_type != instrument.sec_type:
        return bad_request(f"conid {raw_conid} is a {instrument.sec_type}, not a {sec_type}")
    if sec_type != "FUT" or instrument.is_dated_future:
        return 200, [_info(instrument)]
    month = (params.get("month") or "").strip().upper()
    if not month:
        return bad_request("month is required for FUT (MMMYY, e.g. MAR25)")
    matches = [
        item
        for item in future_months(instrument.symbol)
        if month_code(item) == month and item.underlying_conid == instrument.conid
    ]
    if not matches:
        return bad_request(f"no FUT contract of {instrument.symbol} for month {month}")
    return 200, [_info(item) for item in matches]


def _info(item: Instrument) -> dict[str, Any]:
    expiry = item.expiry
    entry: dict[str, Any] = {
        "conid": item.conid,
        "ticker": item.symbol,
        "secType": item.sec_type,
        "listingExchange": item.listing_exchange.split(".")[0],
        "exchange": item.exchange,
        "companyName": item.company_name,
        "currency": item.currency,
        "validExchanges": item.exchange if item.sec_type != "STK" else f"SMART,{item.exchange}",
        "priceRendering": None,
        "maturityDate": None if expiry is None else str(_yyyymmdd(expiry)),
        "right": "?",
        "strike": 0.0,
        "multiplier": str(item.multiplier) if item.sec_type == "FUT" else "",
        "desc1": item.symbol,
        "desc2": "" if expiry is None else f"{month_code(item)[:3]} {expiry:%d} '{expiry:%y}",
        "tradingClass": item.symbol,
    }
    if expiry is not None:
        entry["localSymbol"] = local_symbol(item)
        entry["underlyingConid"] = item.underlying_conid
        entry["ltd"] = (
            None if item.last_trade_date is None else str(_yyyymmdd(item.last_trade_date))
        )
    return entry


def root_of(symbol: str) -> Instrument | None:
    """The continuous root (ES, NQ) of a futures symbol, or None."""
    roots = by_symbol(symbol, "FUT")
    return roots[0] if roots else None
