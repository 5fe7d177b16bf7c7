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

from collections.abc import Mapping
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ib_pipeline.ibkr import parsing as p
from ib_pipeline.ibkr.errors import InvalidPayloadError
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

__all__ = [
    "NO_DATA_MESSAGE",
    "SNAPSHOT_FIELDS",
    "US_STOCK_LOT_SIZE",
    "account_summary",
    "accounts",
    "contracts",
    "history_bars",
    "live_orders",
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
_EXACT_MS = 2.0**53
"""Epoch milliseconds below this magnitude survive a trip through float64 unchanged."""


def history_bars(payload: Any, *, conid: int, bar_size: str, lot_size: float) -> pa.Table:
    """Bars of one ``/iserver/marketdata/history`` response (`tables.HISTORY_BARS`).

    ``conid`` and ``bar_size`` are the request's (the response carries neither); ``lot_size``
    converts ``v`` to shares (see the module docstring). ``{"error": "No data."}`` gives an
    empty table; any other error body raises. Rows keep the payload's order.

    Speed: a well-formed answer (every bar a JSON object whose six values are JSON numbers)
    is converted in bulk (`_bulk_bars`); anything else goes through the row-by-row reader
    (`_bars_by_row`), which gives the same table or raises naming the bar and the key.
    """
    factor = _check_lot_size(lot_size)
    bar = parse_bar_size(bar_size).label
    conid = p.conid(conid, "conid argument")
    body = p.mapping(payload, "history payload")
    if "data" not in body:
        if body.get("error") == NO_DATA_MESSAGE:
            return HISTORY_BARS.empty_table()
        raise InvalidPayloadError(f"history payload: missing key 'data' in {p.describe(body)}")
    data = p.sequence(body["data"], "history data")
    columns = _bulk_bars(data)
    if columns is None:
        columns = _bars_by_row(data)
    ts, open_, high, low, close, lots = columns
    arrays = [
        pa.array(np.full(len(ts), conid, dtype=np.int64)),
        pa.repeat(pa.scalar(bar, pa.string()), len(ts)),
        pa.array(ts).view(HISTORY_BARS.field("ts").type),
        *(pa.array(column) for column in (open_, high, low, close, p.scaled_array(lots, factor))),
    ]
    return pa.Table.from_arrays(arrays, schema=HISTORY_BARS)


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
    if not (np.abs(ts) < _EXACT_MS).all() or not (ts == np.trunc(ts)).all():  # NaN fails both
        return None
    return _columns(values)


def _columns(values: npt.NDArray[np.float64]) -> _BarColumns:
    """Split a (6, n) array of t, o, h, l, c, v into contiguous columns (ts as int64)."""
    ts, open_, high, low, close, lots = (np.ascontiguousarray(row) for row in values)
    return ts.astype(np.int64), open_, high, low, close, lots


def _bars_by_row(data: list[Any]) -> _BarColumns:
    """The precise reader: bar by bar, key by key, raising `InvalidPayloadError` that names
    the bar's index and key and quotes the value (``data[3].v: expected a number, got 'x'``).
    Also accepts what the bulk path leaves to it: numeric strings, ``t`` beyond 2**53."""
    ts: list[int] = []
    columns: dict[str, list[float]] = {key: [] for key in _BAR_KEYS[1:]}
    for index, raw in enumerate(data):
        bar_obj = p.mapping(raw, f"history data[{index}]")
        ts.append(p.epoch_ms(_require(bar_obj, "t", f"history data[{index}]"), f"data[{index}].t"))
        for key, column in columns.items():
            value = _require(bar_obj, key, f"history data[{index}]")
            column.append(p.number(value, f"data[{index}].{key}"))
    open_, high, low, close, lots = (np.array(c, dtype=np.float64) for c in columns.values())
    return np.array(ts, dtype=np.int64), open_, high, low, close, lots


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
) -> pa.Table:
    """Quotes of one ``/iserver/marketdata/snapshot`` response (`tables.SNAPSHOT_QUOTES`).

    Accepts field-id keys (``"31"``) and the spec's names (``LastPrice``). Pre-flight entries
    (conid only) give no row. ``updated`` comes from ``_updated``; an entry with fields but no
    ``_updated`` raises unless ``fallback_updated`` (e.g. the time the response was fetched)
    is given. ``lot_size`` converts the bid/ask/last sizes to shares (volume already is): one
    number for every row, or a mapping conid -> lot size for a mixed batch (a conid missing
    from it raises).
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
        rows.append(_snapshot_row(entry, where, row_conid, updated, factor))
    return _table(rows, SNAPSHOT_QUOTES)


def _pick(entry: Mapping[str, Any], column: str) -> tuple[str, Any] | None:
    for key in SNAPSHOT_FIELDS[column]:
        if key in entry and entry[key] is not None:
            return key, entry[key]
    return None


def _snapshot_row(
    entry: Mapping[str, Any], where: str, row_conid: int, updated: int, factor: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"conid": row_conid, "updated": updated}
    last_is_close = halted = False
    for column in _PRICE_COLUMNS:
        picked = _pick(entry, column)
        value, prefix = (
            (None, None) if picked is None else p.price(picked[1], f"{where}.{picked[0]}")
        )
        row[column] = value
        halted = halted or prefix == "H"
        if column == "last":
            last_is_close = prefix == "C"
    for column in _LOT_COLUMNS:
        picked = _pick(entry, column)
        parsed = None if picked is None else p.abbreviated(picked[1], f"{where}.{picked[0]}")
        row[column] = _scaled(parsed, factor)
    picked = _pick(entry, "volume")
    row["volume"] = None if picked is None else p.abbreviated(picked[1], f"{where}.{picked[0]}")
    picked = _pick(entry, "change_pct")
    row["change_pct"] = None if picked is None else p.percent(picked[1], f"{where}.{picked[0]}")
    for column in ("symbol", "market_data_availability"):
        picked = _pick(entry, column)
        row[column] = None if picked is None else p.text(picked[1], f"{where}.{picked[0]}")
    row["last_is_close"] = last_is_close
    row["halted"] = halted
    return row


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


def account_summary(payload: Any, *, account: str, as_of: datetime) -> pa.Table:
    """One row per key of a ``/portfolio/{accountId}/summary`` answer (`tables.ACCOUNT_SUMMARY`).

    Each key maps to ``{amount, currency, isNull, severity, timestamp, value}``; ``currency``
    must be a currency code or null (IBKR's documentation example with ``1.1`` raises).
    """
    account = p.text(account, "account argument")
    as_of_ms = p.ms_of(as_of, "as_of")
    rows: list[dict[str, Any]] = []
    for key, raw in p.mapping(payload, "summary payload").items():
        where = f"summary[{key!r}]"
        entry = p.mapping(raw, where)
        is_null = entry.get("isNull", False)
        rows.append(
            {
                "account": account,
                "as_of": as_of_ms,
                "key": key,
                "amount": p.optional_number(entry.get("amount"), f"{where}.amount"),
                "currency": p.optional_text(entry.get("currency"), f"{where}.currency"),
                "value": p.optional_text(entry.get("value"), f"{where}.value"),
                "is_null": p.boolean(is_null, f"{where}.isNull"),
                "severity": p.optional_integer(entry.get("severity"), f"{where}.severity"),
                "timestamp": p.optional_epoch_ms(entry.get("timestamp"), f"{where}.timestamp"),
            }
        )
    return _table(rows, ACCOUNT_SUMMARY)


# --- contracts and accounts ------------------------------------------------------------------


def contracts(payload: Any) -> pa.Table:
    """Contract search results (`tables.CONTRACTS`), one row per conid (first one wins).

    ``exchanges`` joins the distinct exchanges of the result's ``sections`` with commas
    (IBKR separates several exchanges of one section with ``;``).
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
        rows.append(
            {
                "conid": row_conid,
                "symbol": p.text(_require(entry, "symbol", where), f"{where}.symbol"),
                "sec_type": sec_type,
                "company_name": p.optional_text(entry.get("companyName"), f"{where}.companyName"),
                "company_header": p.optional_text(
                    entry.get("companyHeader"), f"{where}.companyHeader"
                ),
                "description": p.optional_text(entry.get("description"), f"{where}.description"),
                "exchanges": ",".join(exchanges) if exchanges else None,
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
