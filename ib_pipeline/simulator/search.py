"""``/iserver/secdef/search`` results for the simulator's universe, shaped like the gateway's.

The gateway answers a list of matches whose ``conid`` is a *string* (an integer everywhere
else), with ``companyHeader`` ("APPLE INC - NASDAQ"), ``companyName``, ``symbol``,
``description`` (the exchange), ``restricted`` and ``sections`` (one per security type:
``{secType, months?, exchange?}``). A symbol search matches the symbol exactly (ignoring case);
a name search (``name=true``) matches the text anywhere in the company name, or as the start of
the symbol. No match is an empty list (the simulator's choice: no capture of the real gateway's
no-match answer was found, and an empty list is what its clients handle).

Futures: the real gateway answers a futures search with the underlying's conid and lists the
contract months in a section, to be resolved by another endpoint. The simulator's match carries
the root's conid (its continuous contract, which has a market of its own) and the months (the next
four quarterly months after ``today`` when it is given); the months themselves, each with its own
conid, come from ``/trsrv/futures`` and ``/iserver/secdef/info`` (`futures`). Non-US stocks
(`instruments.NON_US_STOCKS`) are searchable too.

What it must never do: touch market data or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from ib_pipeline.simulator.answers import Answer, bad_request
from ib_pipeline.simulator.instruments import SEARCHABLE, Instrument

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

SEARCH_ERRORS: Mapping[str, Answer] = {
    "missing_symbol": bad_request("symbol required"),
}
"""The error answers of the endpoint (modelled on the gateway's 400 bodies; not captured)."""


def secdef_search(
    symbol: str,
    sec_type: str | None = None,
    name: bool = False,
    *,
    today: date | None = None,
    universe: tuple[Instrument, ...] = SEARCHABLE,
) -> list[dict[str, Any]]:
    """Gateway-shaped matches for ``symbol`` (or, with ``name``, for a company-name fragment),
    optionally restricted to one ``sec_type`` (STK, FUT, CASH; "ETF" is treated as STK).
    ValueError if ``symbol`` is blank: the server answers `SEARCH_ERRORS` for that."""
    text = symbol.strip().upper() if isinstance(symbol, str) else ""
    if not text:
        raise ValueError("secdef search needs a non-empty symbol")
    kind = sec_type.strip().upper() if sec_type and sec_type.strip() else None
    if kind == "ETF":
        kind = "STK"
    matches = [
        item
        for item in universe
        if (kind is None or item.sec_type == kind) and _matches(item, text, name)
    ]
    return [_result(item, today) for item in matches]


def _matches(item: Instrument, text: str, name: bool) -> bool:
    if item.symbol == text:
        return True
    return name and (text in item.company_name.upper() or item.symbol.startswith(text))


def _result(item: Instrument, today: date | None) -> dict[str, Any]:
    return {
        "conid": str(item.conid),
        "companyHeader": f"{item.company_name} - {item.exchange}",
        "companyName": item.company_name,
        "symbol": item.symbol,
        "description": item.exchange,
        "restricted": None,
        "sections": _sections(item, today),
        "secType": item.sec_type,
    }


def _sections(item: Instrument, today: date | None) -> list[dict[str, Any]]:
    if item.sec_type == "STK":
        return [{"secType": "STK", "exchange": f"{item.exchange};SMART"}]
    if item.sec_type == "FUT":
        section: dict[str, Any] = {"secType": "FUT", "exchange": item.exchange}
        if today is not None:
            section["months"] = ";".join(_quarterly_months(today, 4))
        return [section]
    return [{"secType": item.sec_type, "exchange": item.exchange}]


def _quarterly_months(today: date, count: int) -> list[str]:
    """The next ``count`` March/June/September/December contract months from ``today``."""
    months: list[str] = []
    year, month = today.year, today.month
    while len(months) < count:
        if month % 3 == 0:
            months.append(f"{_MONTHS[month - 1]}{year % 100:02d}")
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return months
