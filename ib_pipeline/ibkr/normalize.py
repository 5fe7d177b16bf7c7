"""Normalisers: one decoded IBKR payload in, one Arrow table with the exact schema of
`ib_pipeline.ibkr.tables` out.

This is the only module that knows IBKR's quirks: string prices with ``C``/``H`` prefixes,
field ids as keys, formatted volumes ("1.2M"), conids as strings or numbers, epoch
milliseconds, lots of 100. Everything downstream sees plain columns in plain units.

Normalisers are pure functions: they never touch the network, the clock or the disk. What a
payload lacks (the conid and bar size of a history response, the account and as-of time of a
positions listing, the lot size) is passed in by the caller.

Lot size, in one place
----------------------
``lot_size`` is the number of shares in one unit of the sizes the gateway reports: **100 for US
stocks and ETFs** (the gateway reports their history volumes and quote sizes in lots of 100),
**1 for everything else** (futures, forex, options report contracts/units). The normalisers
multiply the lot-denominated values by it so that every size column is in shares:

- `history_bars`: ``v`` (the payload's ``volumeFactor`` says the same; the caller's value wins);
- `snapshot_quotes`: the bid, ask and last sizes (fields 88, 85, 7059). The day's volume
  (7762, or the abbreviated 87) is already in shares and is not scaled.

Positions and orders are already in shares and take no lot size.

Errors versus bad data
----------------------
A payload the normaliser cannot read raises `InvalidPayloadError` (a ``ValueError``) naming the
field and quoting the value: a wrong JSON type, a missing required key, an unparseable string.
Values that parse but are bad market data (NaN or Infinity literals, high < low, a negative
volume, a 1970 timestamp) pass through unchanged: the warehouse's pandera contracts quarantine
those rows with a reason. The normaliser never drops a row silently and never invents a NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ib_pipeline.calendars import IBKR_EXCHANGE_CALENDARS, trading_hours_for
from ib_pipeline.ibkr import parsing as p
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.history_wire import EXACT_MS, HistoryColumns
from ib_pipeline.ibkr.tables import (
    ACCOUNT_SUMMARY,
    ACCOUNTS,
    CONTRACTS,
    HISTORY_BARS,
    LIVE_ORDERS,
    POSITIONS,
    SNAPSHOT_QUOTES,
)
from ib_pipeline.timeframes import parse_bar_size

US_STOCK_LOT_SIZE = 100
"""Shares per lot for US stocks and ETFs; pass ``lot_size=1`` for every other instrument."""

NO_DATA_MESSAGE = "No data."
"""The history endpoint's answer for a range outside the instrument's history."""

# --- market-data availability ------------------------------------------------------------------

MD_REALTIME = "realtime"
MD_DELAYED = "delayed"
MD_FROZEN = "frozen"
MD_FROZEN_DELAYED = "frozen_delayed"
MD_NOT_SUBSCRIBED = "not_subscribed"
MD_INCOMPLETE = "incomplete"
MD_VDR_EXEMPT = "vdr_exempt"

MD_AVAILABILITY_KINDS: dict[str, str] = {
    "R": MD_REALTIME,
    "S": MD_REALTIME,  # history answers of a subscribed instrument (IBKR's examples: "S")
    "D": MD_DELAYED,
    "Z": MD_FROZEN,
    "Y": MD_FROZEN_DELAYED,
    "N": MD_NOT_SUBSCRIBED,
    "i": MD_INCOMPLETE,
    "v": MD_VDR_EXEMPT,
}
"""First letter of a market-data availability code (snapshot field 6509, history
``mdAvailability``) -> what it means. IBKR: R real-time, D delayed, Z frozen, Y frozen delayed,
N not subscribed, i incomplete, v VDR exempt; the second letter says snapshot-permitted (``P``)
or consolidated (``p``), a third ``B`` book data. History answers of a subscribed instrument say
``S`` (streaming), read as real-time."""

DELAYED_KINDS = frozenset({MD_DELAYED, MD_FROZEN_DELAYED})
"""Availability kinds whose data lags the market (about 15 minutes)."""


def md_availability_kind(code: str | None) -> str | None:
    """What an availability code means (`MD_AVAILABILITY_KINDS`), from its first letter;
    None for no code, ``"unknown"`` for a letter IBKR does not document."""
    if code is None or not str(code).strip():
        return None
    return MD_AVAILABILITY_KINDS.get(str(code).strip()[0], "unknown")


def history_md_availability(payload: Any) -> str | None:
    """The ``mdAvailability`` code of a history answer (``"S"``, ``"D"``, ...), or None when the
    answer has none (a ``No data.`` answer, an older gateway). Never raises: the code flags the
    bars, it is not a reason to reject them."""
    if isinstance(payload, HistoryColumns):
        value = payload.md_availability
    elif isinstance(payload, Mapping):
        value = payload.get("mdAvailability")
    else:
        return None
    if value is None:
        return None
    return str(value).strip() or None


__all__ = [
    "DELAYED_KINDS",
    "FLAT_CONID",
    "MD_AVAILABILITY_KINDS",
    "NO_DATA_MESSAGE",
    "SNAPSHOT_FIELDS",
    "US_STOCK_LOT_SIZE",
    "Unreadable",
    "account_summary",
    "accounts",
    "complete_contracts",
    "contracts",
    "flat_positions",
    "history_bars",
    "history_md_availability",
    "live_orders",
    "md_availability_kind",
    "positions",
    "snapshot_quotes",
]


def _check_lot_size(lot_size: float) -> float:
    if isinstance(lot_size, bool) or not isinstance(lot_size, int | float):
        raise ValueError(f"lot_size must be a positive number, got {lot_size!r}")
    if not 0 < float(lot_size) < float("inf"):
        raise ValueError(f"lot_size must be a positive finite number, got {lot_size!r}")
    return float(lot_size)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else p.scaled(value, factor)


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


# --- history ---------------------------------------------------------------------------------

_BAR_KEYS = ("t", "o", "h", "l", "c", "v")
_bar_values = itemgetter(*_BAR_KEYS)
_JSON_NUMBERS = frozenset({int, float})


def history_bars(
    payload: Any,
    *,
    conid: int,
    bar_size: str,
    lot_size: float,
    unreadable: list[Unreadable] | None = None,
) -> pa.Table:
    """Bars of one ``/iserver/marketdata/history`` response (`tables.HISTORY_BARS`).

    ``conid`` and ``bar_size`` are the request's (the response carries neither); ``lot_size``
    converts ``v`` to shares (see the module docstring). ``{"error": "No data."}`` gives an
    empty table; any other error body raises. Rows keep the payload's order.

    ``unreadable``: by default an unreadable ``o/h/l/c/v`` (an unparseable string, ``null``, a
    missing key) raises. Given a list, such a value becomes null in its row instead (the
    columns are required: the warehouse contract rejects the row, ``close:not_nullable``) and
    the list receives an `Unreadable` naming the row, its ``t``, the column and the value
    (``close:unparseable('N/A')``), so one bad value costs one bar, not the answer. A bar that
    is not an object, or whose ``t`` is unreadable, still raises: it cannot be placed.

    Speed: a well-formed answer (every bar a JSON object whose six values are JSON numbers)
    is converted in bulk (`_bulk_bars`); anything else goes through the row-by-row reader
    (`_bars_by_row`), which gives the same table or raises naming the bar and the key. A
    replay hands in such an answer already decoded into columns (``payload`` a
    `history_wire.HistoryColumns`), which gives the same table again.
    """
    factor = _check_lot_size(lot_size)
    bar = parse_bar_size(bar_size).label
    conid = p.conid(conid, "conid argument")
    if isinstance(payload, HistoryColumns):  # decoded and checked already (`history_wire`)
        wire = payload
        return _bars_table(
            (wire.ts, wire.open, wire.high, wire.low, wire.close, wire.lots), {}, conid, bar, factor
        )
    body = p.mapping(payload, "history payload")
    if "data" not in body:
        if body.get("error") == NO_DATA_MESSAGE:
            return HISTORY_BARS.empty_table()
        raise InvalidPayloadError(f"history payload: missing key 'data' in {p.describe(body)}")
    data = p.sequence(body["data"], "history data")
    columns = _bulk_bars(data)
    missing: dict[str, npt.NDArray[np.bool_]] = {}
    if columns is None:
        columns, missing = _bars_by_row(data, unreadable)
    return _bars_table(columns, missing, conid, bar, factor)


def _bars_table(
    columns: _BarColumns,
    missing: Mapping[str, npt.NDArray[np.bool_]],
    conid: int,
    bar: str,
    factor: float,
) -> pa.Table:
    """`HISTORY_BARS` from a page's columns (``missing``: the null mask of a column, by key)."""
    ts, open_, high, low, close, lots = columns
    values = (open_, high, low, close, p.scaled_array(lots, factor))
    arrays = [
        pa.array(np.full(len(ts), conid, dtype=np.int64)),
        pa.repeat(pa.scalar(bar, pa.string()), len(ts)),
        pa.array(ts).view(HISTORY_BARS.field("ts").type),
        *(
            pa.array(column, mask=missing.get(key))
            for key, column in zip(_BAR_KEYS[1:], values, strict=True)
        ),
    ]
    return pa.Table.from_arrays(arrays, schema=HISTORY_BARS)


@dataclass(frozen=True)
class Unreadable:
    """A value a lenient normaliser could not read and left null: where, and why.

    ``row``: the row's index in the normalised table; ``ts_ms``: the bar's ``t`` (bars);
    ``reason``: ``<column>:unparseable(<value>)``, ``<column>:null`` or ``<column>:missing``.
    """

    row: int
    reason: str
    ts_ms: int | None = None


_COLUMN_OF_KEY = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}


def unreadable_reason(column: str, raw: Mapping[str, Any], key: str) -> str:
    """``<column>:missing``, ``<column>:null`` or ``<column>:unparseable(<value>)``."""
    if key not in raw:
        return f"{column}:missing"
    if raw[key] is None:
        return f"{column}:null"
    quoted = p.describe(raw[key]).replace(";", ",")  # ``; `` separates reasons
    return f"{column}:unparseable({quoted})"


_BarColumns = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]
"""t (epoch ms), o, h, l, c, v (lots) of a history answer, in the payload's order."""


def _bulk_bars(data: list[Any]) -> _BarColumns | None:
    """The columns of ``data`` at C speed, or None when any bar is not plainly well formed.

    Checked in bulk, each a single pass in C: every bar is a ``dict`` holding the six keys,
    every value's type is exactly ``int`` or ``float`` (JSON numbers: no bool, str, None or
    container) and every ``t`` is integral and below 2**53 in magnitude. Values then convert
    exactly as the row-by-row reader converts them (``float()`` of a Python int and NumPy's
    conversion both round to nearest). A None sends the caller to `_bars_by_row`, which
    finds the culprit and raises (or, for rarities such as ``t`` as an integral float beyond
    2**53, gives the table): this function never decides what is an error.
    """
    if not data:
        return _columns(np.empty((6, 0), dtype=np.float64))
    if set(map(type, data)) != {dict}:
        return None
    try:
        flat = list(chain.from_iterable(map(_bar_values, data)))  # t, o, h, l, c, v, t, ...
    except KeyError:
        return None
    if not set(map(type, flat)) <= _JSON_NUMBERS:
        return None
    try:
        values = np.array(flat, dtype=np.float64).reshape(len(data), len(_BAR_KEYS)).T
    except OverflowError:  # an integer beyond the float range
        return None
    ts = values[0]
    if not (np.abs(ts) < EXACT_MS).all() or not (ts == np.trunc(ts)).all():  # NaN fails both
        return None
    return _columns(values)


def _columns(values: npt.NDArray[np.float64]) -> _BarColumns:
    """Split a (6, n) array of t, o, h, l, c, v into contiguous columns (ts as int64)."""
    ts, open_, high, low, close, lots = (np.ascontiguousarray(row) for row in values)
    return ts.astype(np.int64), open_, high, low, close, lots


def _bars_by_row(
    data: list[Any], unreadable: list[Unreadable] | None = None
) -> tuple[_BarColumns, dict[str, npt.NDArray[np.bool_]]]:
    """The precise reader: bar by bar, key by key, raising `InvalidPayloadError` that names
    the bar's index and key and quotes the value (``data[3].v: expected a number, got 'x'``).
    Also accepts what the bulk path leaves to it: numeric strings, ``t`` beyond 2**53.

    With ``unreadable`` (a list), an unreadable o/h/l/c/v is recorded there instead of raising;
    the second result maps each such key to its null mask (keys without one are absent)."""
    ts: list[int] = []
    columns: dict[str, list[float]] = {key: [] for key in _BAR_KEYS[1:]}
    nulls: dict[str, list[int]] = {}
    for index, raw in enumerate(data):
        bar_obj = p.mapping(raw, f"history data[{index}]")
        t = p.epoch_ms(_require(bar_obj, "t", f"history data[{index}]"), f"data[{index}].t")
        ts.append(t)
        for key, column in columns.items():
            if unreadable is None:
                value = _require(bar_obj, key, f"history data[{index}]")
                column.append(p.number(value, f"data[{index}].{key}"))
                continue
            try:
                column.append(p.number(bar_obj[key], f"data[{index}].{key}"))
            except (KeyError, InvalidPayloadError):
                column.append(np.nan)
                nulls.setdefault(key, []).append(index)
                reason = unreadable_reason(_COLUMN_OF_KEY[key], bar_obj, key)
                unreadable.append(Unreadable(index, reason, t))
    open_, high, low, close, lots = (np.array(c, dtype=np.float64) for c in columns.values())
    masks = {}
    for key, rows in nulls.items():
        mask = np.zeros(len(data), dtype=bool)
        mask[rows] = True
        masks[key] = mask
    return (np.array(ts, dtype=np.int64), open_, high, low, close, lots), masks


def _opt_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    return p.optional_text(obj.get(key), f"{where}.{key}")


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise InvalidPayloadError(f"{where}: missing required key {key!r}")
    return obj[key]


# --- snapshot --------------------------------------------------------------------------------

SNAPSHOT_FIELDS: dict[str, tuple[str, ...]] = {
    "last": ("31", "LastPrice"),
    "bid": ("84", "BidPrice"),
    "ask": ("86", "AskPrice"),
    "ask_size": ("85", "AskSize"),
    "bid_size": ("88", "BidSize"),
    "last_size": ("7059", "LastSize"),
    "volume": ("7762", "87", "Volume"),
    "open": ("7295", "Open"),
    "high": ("70", "High"),
    "low": ("71", "Low"),
    "close": ("7296", "Close"),
    "prior_close": ("7741", "PriorClose"),
    "change": ("82", "Change"),
    "change_pct": ("83", "ChangePercent"),
    "symbol": ("55", "Symbol"),
    "market_data_availability": ("6509", "MarketDataAvailability"),
}
"""Snapshot column -> the keys that may carry it, preferred first: the real gateway's field ids
and the spec's names. Volume prefers 7762 (a plain number) over 87 (formatted, "1.2M")."""

_PRICE_COLUMNS = ("last", "bid", "ask", "open", "high", "low", "close", "prior_close", "change")
_LOT_COLUMNS = ("ask_size", "bid_size", "last_size")
_SNAPSHOT_KEYS = frozenset(key for keys in SNAPSHOT_FIELDS.values() for key in keys)


def snapshot_has_fields(entry: Mapping[str, Any]) -> bool:
    """True if a snapshot entry carries at least one market-data field (not a pre-flight)."""
    return any(key in _SNAPSHOT_KEYS for key in entry)


def snapshot_quotes(
    payload: Any,
    *,
    lot_size: float | Mapping[int, float],
    fallback_updated: datetime | None = None,
    lenient: bool = False,
) -> pa.Table:
    """Quotes of one ``/iserver/marketdata/snapshot`` response (`tables.SNAPSHOT_QUOTES`).

    Accepts field-id keys (``"31"``) and the spec's names (``LastPrice``). Pre-flight entries
    (conid only) give no row. ``updated`` comes from ``_updated``; an entry with fields but no
    ``_updated`` raises unless ``fallback_updated`` (e.g. the time the response was fetched)
    is given. ``lot_size`` converts the bid/ask/last sizes to shares (volume already is): one
    number for every row, or a mapping conid -> lot size for a mixed batch (a conid missing
    from it raises).

    ``lenient``: a field value that cannot be read (``"N/A"``, ``"-"``, ``"1.2K"`` as a price)
    raises by default; with ``lenient=True`` it becomes null and the row's ``parse_errors``
    names it (``last:unparseable('N/A')``; several joined by ``; ``), so that the warehouse
    contract quarantines that instrument's row and keeps the others. ``parse_errors`` is null
    in every row read whole.
    """
    lots: dict[int, float] | None = None
    factor = 1.0
    if isinstance(lot_size, Mapping):
        lots = {conid: _check_lot_size(size) for conid, size in lot_size.items()}
    else:
        factor = _check_lot_size(lot_size)
    fallback_ms = None if fallback_updated is None else p.ms_of(fallback_updated)
    rows: list[dict[str, Any]] = []
    for index, raw in enumerate(p.sequence(payload, "snapshot payload")):
        where = f"snapshot[{index}]"
        entry = p.mapping(raw, where)
        if not snapshot_has_fields(entry):
            continue
        row_conid = p.conid(_require(entry, "conid", where), f"{where}.conid")
        updated = p.optional_epoch_ms(entry.get("_updated"), f"{where}._updated")
        if updated is None:
            if fallback_ms is None:
                raise InvalidPayloadError(
                    f"{where} (conid {row_conid}): missing '_updated' and no fallback time given"
                )
            updated = fallback_ms
        if lots is not None:
            if row_conid not in lots:
                raise ValueError(f"{where}: no lot size given for conid {row_conid}")
            factor = lots[row_conid]
        rows.append(_snapshot_row(entry, where, row_conid, updated, factor, lenient=lenient))
    return _table(rows, SNAPSHOT_QUOTES)


def _pick(entry: Mapping[str, Any], column: str) -> tuple[str, Any] | None:
    for key in SNAPSHOT_FIELDS[column]:
        if key in entry and entry[key] is not None:
            return key, entry[key]
    return None


def _snapshot_row(
    entry: Mapping[str, Any],
    where: str,
    row_conid: int,
    updated: int,
    factor: float,
    *,
    lenient: bool = False,
) -> dict[str, Any]:
    row: dict[str, Any] = {"conid": row_conid, "updated": updated}
    errors: list[str] = []

    def read(column: str, parse: Any) -> Any:
        picked = _pick(entry, column)
        if picked is None:
            return None
        key, value = picked
        if not lenient:
            return parse(value, f"{where}.{key}")
        try:
            return parse(value, f"{where}.{key}")
        except InvalidPayloadError:
            errors.append(unreadable_reason(column, entry, key))
            return None

    last_is_close = halted = False
    for column in _PRICE_COLUMNS:
        value, prefix = read(column, p.price) or (None, None)
        row[column] = value
        halted = halted or prefix == "H"
        if column == "last":
            last_is_close = prefix == "C"
    for column in _LOT_COLUMNS:
        row[column] = _scaled(read(column, p.abbreviated), factor)
    row["volume"] = read("volume", p.abbreviated)
    row["change_pct"] = read("change_pct", p.percent)
    for column in ("symbol", "market_data_availability"):
        row[column] = read(column, p.text)
    row["last_is_close"] = last_is_close
    row["halted"] = halted
    row["parse_errors"] = REASON_SEPARATOR.join(errors) if errors else None
    return row


REASON_SEPARATOR = "; "
"""Between the reasons of one row's ``parse_errors`` (as between failed checks)."""


# --- portfolio -------------------------------------------------------------------------------

_POSITION_NUMBERS = {
    "position": "position",
    "mkt_price": "mktPrice",
    "mkt_value": "mktValue",
    "avg_cost": "avgCost",
    "avg_price": "avgPrice",
    "realized_pnl": "realizedPnl",
    "unrealized_pnl": "unrealizedPnl",
}


def positions(payload: Any, *, account: str, as_of: datetime) -> pa.Table:
    """Positions of one ``/portfolio/{accountId}/positions/{pageId}`` page (or of several
    pages concatenated into one list) as of ``as_of`` (`tables.POSITIONS`).

    Positions are already in shares. An entry whose ``acctId`` names another account raises.
    """
    account = p.text(account, "account argument")
    as_of_ms = p.ms_of(as_of, "as_of")
    rows: list[dict[str, Any]] = []
    for index, raw in enumerate(p.sequence(payload, "positions payload")):
        where = f"positions[{index}]"
        entry = p.mapping(raw, where)
        acct = p.optional_text(entry.get("acctId"), f"{where}.acctId")
        if acct is not None and acct != account:
            raise InvalidPayloadError(f"{where}.acctId: expected {account!r}, got {acct!r}")
        row: dict[str, Any] = {
            "account": account,
            "as_of": as_of_ms,
            "conid": p.conid(_require(entry, "conid", where), f"{where}.conid"),
            "contract_desc": p.optional_text(entry.get("contractDesc"), f"{where}.contractDesc"),
            "asset_class": p.optional_text(entry.get("assetClass"), f"{where}.assetClass"),
            "currency": p.optional_text(entry.get("currency"), f"{where}.currency"),
        }
        for column, key in _POSITION_NUMBERS.items():
            row[column] = p.optional_number(entry.get(key), f"{where}.{key}")
        rows.append(row)
    return _table(rows, POSITIONS)


FLAT_CONID = 0
"""The conid of the flat marker (`flat_positions`); IBKR's contract ids are positive."""

FLAT_DESCRIPTION = "(no positions)"


def flat_positions(*, account: str, as_of: datetime) -> pa.Table:
    """The snapshot of an account whose complete listing had no position: one marker row,
    conid `FLAT_CONID` (0), position and market value 0, ``contract_desc`` ``(no positions)``.

    Why a row: a snapshot is the rows sharing an ``as_of``, so a snapshot of nothing needs one
    row to exist; without it the account's previous positions would stay its latest. The
    views and the research API leave the marker out (``conid <> 0``); a sum of ``position``
    or ``mkt_value`` over a snapshot is 0 with or without it.
    """
    row = {
        "account": p.text(account, "account argument"),
        "as_of": p.ms_of(as_of, "as_of"),
        "conid": FLAT_CONID,
        "contract_desc": FLAT_DESCRIPTION,
        "position": 0.0,
        "mkt_value": 0.0,
    }
    return _table([row], POSITIONS)


def account_summary(payload: Any, *, account: str, as_of: datetime) -> pa.Table:
    """One row per key of a ``/portfolio/{accountId}/summary`` answer (`tables.ACCOUNT_SUMMARY`).

    Each key maps to ``{amount, currency, isNull, severity, timestamp, value}``; ``currency``
    must be a currency code or null (IBKR's documentation example with ``1.1`` raises).
    A key the gateway sends as a numeric string (``cushion``: amount 0, value ``"0.832550"``)
    gets that number as its ``amount``; ``value`` stays as sent.
    """
    account = p.text(account, "account argument")
    as_of_ms = p.ms_of(as_of, "as_of")
    rows: list[dict[str, Any]] = []
    for key, raw in p.mapping(payload, "summary payload").items():
        where = f"summary[{key!r}]"
        entry = p.mapping(raw, where)
        is_null = entry.get("isNull", False)
        amount = p.optional_number(entry.get("amount"), f"{where}.amount")
        value = p.optional_text(entry.get("value"), f"{where}.value")
        rows.append(
            {
                "account": account,
                "as_of": as_of_ms,
                "key": key,
                "amount": _summary_amount(amount, value),
                "currency": p.optional_text(entry.get("currency"), f"{where}.currency"),
                "value": value,
                "is_null": p.boolean(is_null, f"{where}.isNull"),
                "severity": p.optional_integer(entry.get("severity"), f"{where}.severity"),
                "timestamp": p.optional_epoch_ms(entry.get("timestamp"), f"{where}.timestamp"),
            }
        )
    return _table(rows, ACCOUNT_SUMMARY)


def _summary_amount(amount: float | None, value: str | None) -> float | None:
    """``amount``, or the number in ``value`` when the gateway put it there (amount 0 or absent
    and a finite numeric string value); an amount the gateway did send is never replaced."""
    if value is None or amount not in (None, 0.0):
        return amount
    try:
        parsed = p.optional_number(value, "value")
    except InvalidPayloadError:
        return amount
    if parsed is None or not math.isfinite(parsed):
        return amount
    return parsed


# --- contracts and accounts ------------------------------------------------------------------

EXCHANGE_CURRENCIES: dict[str, str] = {
    **dict.fromkeys(("NYSE", "NASDAQ", "ARCA", "AMEX", "BATS", "CME", "GLOBEX"), "USD"),
    "IBIS": "EUR",
    "LSE": "GBP",
    "TSEJ": "JPY",
    "SEHK": "HKD",
    "ASX": "AUD",
    "TSE": "CAD",
}
"""The currency instruments listed on an IBKR exchange are priced in, used when the contract
search answer carries none (forex pairs: the quote currency, ``EUR.USD`` -> ``USD``)."""

UNIT_MULTIPLIER_SEC_TYPES = frozenset({"STK", "ETF", "CASH"})
"""Security types whose multiplier is 1 (a future's comes from its contract details)."""

ROUTER_EXCHANGES = frozenset({"SMART"})
"""IBKR's router: never an instrument's listing exchange."""


def listing_exchange(description: str | None, exchanges: list[str]) -> str | None:
    """The primary listing exchange of a search result: its ``description`` when that names
    an exchange (the search puts the listing exchange there), else the first exchange of its
    sections that is not the ``SMART`` router."""
    if description and description.strip().upper() in IBKR_EXCHANGE_CALENDARS:
        return description.strip().upper()
    return next((e.upper() for e in exchanges if e.upper() not in ROUTER_EXCHANGES), None)


def contract_currency(symbol: str, sec_type: str | None, exchange: str | None) -> str | None:
    """The currency derived from the listing exchange (forex: the pair's quote currency)."""
    if (sec_type or "").upper() == "CASH" and "." in symbol:
        return symbol.rsplit(".", 1)[1].upper() or None
    return EXCHANGE_CURRENCIES.get((exchange or "").upper())


def exchange_timezone(sec_type: str | None, exchange: str | None) -> str | None:
    """The IANA time zone of the sessions of ``sec_type`` on ``exchange`` (`calendars`), or
    None when the calendars do not know them."""
    if not sec_type or not exchange:
        return None
    try:
        return trading_hours_for(sec_type, exchange).timezone
    except ValueError:
        return None


def _expiry(entry: Mapping[str, Any], where: str) -> str | None:
    """A future's last trading date as ``YYYY-MM-DD`` from ``expirationDate``/``maturityDate``/
    ``ltd`` (``yyyymmdd``) when the answer carries one."""
    for key in ("expirationDate", "maturityDate", "ltd"):
        raw = entry.get(key)
        if raw in (None, ""):
            continue
        text = str(p.integer(raw, f"{where}.{key}"))
        try:
            return datetime.strptime(text, "%Y%m%d").date().isoformat()
        except ValueError:
            raise p.fail(f"{where}.{key}", raw, "a date as yyyymmdd") from None
    return None


def complete_contracts(table: pa.Table, *, exchange: str) -> pa.Table:
    """``table`` (`tables.CONTRACTS` rows of one configured instrument) with the configured
    listing ``exchange``, and the time zone and currency that follow from it where the answer
    gave none: the configuration names the exchange whose calendar the bars follow."""
    rows = table.to_pylist()
    for row in rows:
        row["exchange"] = exchange.upper()
        row["exchange_timezone"] = exchange_timezone(row["sec_type"], row["exchange"])
        if row["currency"] is None:
            row["currency"] = contract_currency(row["symbol"], row["sec_type"], row["exchange"])
    return _table(rows, CONTRACTS)


def contracts(payload: Any) -> pa.Table:
    """Contract search results (`tables.CONTRACTS`), one row per conid (first one wins).

    ``exchanges`` joins the distinct exchanges of the result's ``sections`` with commas
    (IBKR separates several exchanges of one section with ``;``). Where the answer lacks them,
    the rest is derived, deterministically: ``exchange`` (`listing_exchange`),
    ``exchange_timezone`` (`calendars.trading_hours_for`), ``currency`` (from the exchange,
    `EXCHANGE_CURRENCIES`), ``multiplier`` (1 for stocks, ETFs and forex; a future's only from
    an answer that carries it), ``expiry`` (a future's ``expirationDate``/``maturityDate``).
    """
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, raw in enumerate(p.sequence(payload, "contract search payload")):
        where = f"contracts[{index}]"
        entry = p.mapping(raw, where)
        row_conid = p.conid(_require(entry, "conid", where), f"{where}.conid")
        if row_conid in seen:
            continue
        seen.add(row_conid)
        sections = entry.get("sections") or []
        exchanges: list[str] = []
        sec_type = p.optional_text(entry.get("secType"), f"{where}.secType")
        for s_index, section_raw in enumerate(p.sequence(sections, f"{where}.sections")):
            section = p.mapping(section_raw, f"{where}.sections[{s_index}]")
            exchange = p.optional_text(
                section.get("exchange"), f"{where}.sections[{s_index}].exchange"
            )
            for name in (exchange or "").split(";"):
                if name.strip() and name.strip() not in exchanges:
                    exchanges.append(name.strip())
            if sec_type is None:
                sec_type = p.optional_text(
                    section.get("secType"), f"{where}.sections[{s_index}].secType"
                )
        symbol = p.text(_require(entry, "symbol", where), f"{where}.symbol")
        description = p.optional_text(entry.get("description"), f"{where}.description")
        listing = listing_exchange(description, exchanges)
        currency = p.optional_text(entry.get("currency"), f"{where}.currency")
        multiplier = p.optional_number(entry.get("multiplier"), f"{where}.multiplier")
        if multiplier is None and (sec_type or "").upper() in UNIT_MULTIPLIER_SEC_TYPES:
            multiplier = 1.0
        rows.append(
            {
                "conid": row_conid,
                "symbol": symbol,
                "sec_type": sec_type,
                "company_name": p.optional_text(entry.get("companyName"), f"{where}.companyName"),
                "company_header": p.optional_text(
                    entry.get("companyHeader"), f"{where}.companyHeader"
                ),
                "description": description,
                "exchanges": ",".join(exchanges) if exchanges else None,
                "currency": currency or contract_currency(symbol, sec_type, listing),
                "multiplier": multiplier,
                "exchange": listing,
                "exchange_timezone": exchange_timezone(sec_type, listing),
                "expiry": _expiry(entry, where),
            }
        )
    return _table(rows, CONTRACTS)


def is_paper_account(account_id: str, is_paper_flag: bool | None) -> bool:
    """Whether an account is a paper account: the gateway's ``isPaper`` flag must not say
    otherwise, and the id must start with ``D`` (IBKR's paper accounts are ``DU...``)."""
    return is_paper_flag is not False and account_id.startswith("D")


def accounts(payload: Any) -> pa.Table:
    """Brokerage accounts of an ``/iserver/accounts`` answer (`tables.ACCOUNTS`)."""
    body = p.mapping(payload, "accounts payload")
    ids = p.sequence(_require(body, "accounts", "accounts payload"), "accounts")
    aliases = p.mapping(body.get("aliases") or {}, "aliases")
    selected = p.optional_text(body.get("selectedAccount"), "selectedAccount")
    flag = body.get("isPaper")
    is_paper_flag = None if flag is None else p.boolean(flag, "isPaper")
    rows = []
    for index, raw in enumerate(ids):
        account_id = p.text(raw, f"accounts[{index}]")
        rows.append(
            {
                "account_id": account_id,
                "alias": p.optional_text(aliases.get(account_id), f"aliases[{account_id!r}]"),
                "is_paper": is_paper_account(account_id, is_paper_flag),
                "is_selected": account_id == selected,
            }
        )
    return _table(rows, ACCOUNTS)


# --- orders ----------------------------------------------------------------------------------


def live_orders(payload: Any) -> pa.Table:
    """Orders of one ``/iserver/account/orders`` answer (`tables.LIVE_ORDERS`).

    ``orderId`` is an integer here (placeOrder's ``order_id`` is a string); ``avgPrice`` and
    ``price`` (the limit price) arrive as strings. Quantities are already in shares.
    """
    body = p.mapping(payload, "live orders payload")
    orders = p.sequence(_require(body, "orders", "live orders payload"), "orders")
    rows = []
    for index, raw in enumerate(orders):
        where = f"orders[{index}]"
        entry = p.mapping(raw, where)
        account_value = entry.get("acct", entry.get("account"))
        if account_value is None:
            raise InvalidPayloadError(f"{where}: missing required key 'acct' (or 'account')")
        conid_value = entry.get("conid", entry.get("conidex"))
        if conid_value is None:
            raise InvalidPayloadError(f"{where}: missing required key 'conid'")
        rows.append(
            {
                "order_id": p.integer(_require(entry, "orderId", where), f"{where}.orderId"),
                "account": p.text(account_value, f"{where}.acct"),
                "conid": p.conid(conid_value, f"{where}.conid"),
                "ticker": _opt_text(entry, "ticker", where),
                "sec_type": _opt_text(entry, "secType", where),
                "side": _opt_text(entry, "side", where),
                "order_type": _opt_text(entry, "orderType", where)
                or _opt_text(entry, "origOrderType", where),
                "status": _opt_text(entry, "status", where),
                "total_size": p.optional_number(entry.get("totalSize"), f"{where}.totalSize"),
                "filled_quantity": p.optional_number(
                    entry.get("filledQuantity"), f"{where}.filledQuantity"
                ),
                "remaining_quantity": p.optional_number(
                    entry.get("remainingQuantity"), f"{where}.remainingQuantity"
                ),
                "avg_price": p.optional_number(entry.get("avgPrice"), f"{where}.avgPrice"),
                "limit_price": p.optional_number(entry.get("price"), f"{where}.price"),
                "time_in_force": _opt_text(entry, "timeInForce", where),
                "last_execution_time": p.optional_epoch_ms(
                    entry.get("lastExecutionTime_r"), f"{where}.lastExecutionTime_r"
                ),
                "order_ref": _opt_text(entry, "order_ref", where),
            }
        )
    return _table(rows, LIVE_ORDERS)
