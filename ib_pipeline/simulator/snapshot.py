"""``GET /iserver/marketdata/snapshot`` entries, formatted as the gateway formats them.

The values come from `Market.quote` (so they agree with the history endpoint's latest bar);
this module only writes them the gateway's way: keys are field ids as strings, every value is a
string, the last price carries a ``C`` prefix when it is the previous close, sizes are in lots
for US stocks with thousands separators (``"1,300"``), field 87 abbreviates the day's volume
(``"12.3K"``, ``"1.2M"``) while 7762 gives it plainly (in shares).

The pre-flight rule (the first request for a conid only returns ``{conid, conidEx}``) is the
server's to enforce: it calls `snapshot_preflight` or `snapshot_fields` accordingly.

What it must never do: compute market values itself, or speak HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ib_pipeline.simulator.instruments import Instrument
from ib_pipeline.simulator.market import Market, Quote

FIELD_NAMES: dict[str, str] = {
    "31": "last",
    "55": "symbol",
    "70": "high",
    "71": "low",
    "82": "change",
    "83": "change_pct",
    "84": "bid",
    "85": "ask_size",
    "86": "ask",
    "87": "volume (formatted)",
    "88": "bid_size",
    "6070": "sec_type",
    "6509": "market_data_availability",
    "7051": "company_name",
    "7059": "last_size",
    "7295": "open",
    "7296": "close",
    "7741": "prior_close",
    "7762": "volume",
}
"""The field ids the simulator serves. Others are simply absent from the entries, as the gateway
leaves out fields it has no value for."""


def snapshot_preflight(conid: int) -> dict[str, Any]:
    """The pre-flight entry: the conid and nothing else."""
    return {"conid": conid, "conidEx": str(conid)}


def snapshot_fields(
    market: Market, conid: int, fields: Sequence[str], *, server_id: str = "q0"
) -> dict[str, Any]:
    """One snapshot entry with data: the requested fields the market has values for, plus
    ``conid``, ``conidEx``, ``_updated`` (epoch ms), ``server_id`` and ``6119``.

    KeyError (naming the conid) for a conid the simulator does not know.
    """
    instrument = market.instrument(conid)
    quote = market.quote(conid)
    entry: dict[str, Any] = {
        "conid": conid,
        "conidEx": str(conid),
        "_updated": quote.updated_ms,
        "server_id": server_id,
        "6119": server_id,
    }
    for field_id in fields:
        formatter = _FORMATTERS.get(str(field_id).strip())
        if formatter is None:
            continue
        value = formatter(quote, instrument)
        if value is not None:
            entry[str(field_id).strip()] = value
    return entry


def format_price(value: float, instrument: Instrument) -> str:
    return f"{value:.{instrument.price_decimals}f}"


def format_lots(shares: int, instrument: Instrument) -> str:
    """A size in the gateway's unit (lots of 100 for US stocks), with thousands separators."""
    lots = shares / instrument.lot_size
    return f"{lots:,.0f}" if float(lots).is_integer() else f"{lots:,}"


def format_volume_short(shares: int) -> str:
    """Field 87: ``950``, ``12.3K``, ``1.2M``, ``3.4B`` (one decimal, as the gateway shows)."""
    for threshold, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if shares >= threshold:
            return f"{shares / threshold:.1f}{suffix}"
    return str(shares)


def _price(getter: Callable[[Quote], float | None]) -> Callable[[Quote, Instrument], str | None]:
    def format_field(quote: Quote, instrument: Instrument) -> str | None:
        value = getter(quote)
        return None if value is None else format_price(value, instrument)

    return format_field


def _size(getter: Callable[[Quote], int | None]) -> Callable[[Quote, Instrument], str | None]:
    def format_field(quote: Quote, instrument: Instrument) -> str | None:
        value = getter(quote)
        return None if value is None else format_lots(value, instrument)

    return format_field


def _last(quote: Quote, instrument: Instrument) -> str | None:
    if quote.last is None:
        return None
    prefix = "H" if quote.halted else ("C" if quote.last_is_close else "")
    return prefix + format_price(quote.last, instrument)


def _change_pct(quote: Quote, instrument: Instrument) -> str | None:
    return None if quote.change_pct is None else f"{quote.change_pct:.2f}"


def _volume_short(quote: Quote, instrument: Instrument) -> str | None:
    return None if quote.volume is None else format_volume_short(quote.volume)


def _volume_plain(quote: Quote, instrument: Instrument) -> str | None:
    return None if quote.volume is None else str(quote.volume)


_FORMATTERS: dict[str, Callable[[Quote, Instrument], str | None]] = {
    "31": _last,
    "55": lambda quote, instrument: instrument.symbol,
    "70": _price(lambda q: q.high),
    "71": _price(lambda q: q.low),
    "82": _price(lambda q: q.change),
    "83": _change_pct,
    "84": _price(lambda q: q.bid),
    "85": _size(lambda q: q.ask_size),
    "86": _price(lambda q: q.ask),
    "87": _volume_short,
    "88": _size(lambda q: q.bid_size),
    "6070": lambda quote, instrument: instrument.sec_type,
    "6509": lambda quote, instrument: (
        None if quote.last is None else quote.market_data_availability
    ),
    "7051": lambda quote, instrument: instrument.company_name,
    "7059": _size(lambda q: q.last_size),
    "7295": _price(lambda q: q.open),
    "7296": _price(lambda q: q.close),
    "7741": _price(lambda q: q.prior_close),
    "7762": _volume_plain,
}
