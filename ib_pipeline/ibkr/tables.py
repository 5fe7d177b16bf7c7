"""The Arrow schemas of the normalised datasets: the contract between the normalisers (which
produce these tables from IBKR payloads) and the warehouse (which validates and stores them).

Units, in one place:
- Timestamps are ``timestamp[ms, tz=UTC]``.
- Prices are plain ``float64`` in the instrument's currency (no ``C``/``H`` prefixes; those
  become the ``last_is_close``/``halted`` flags).
- Every volume and size column is in **shares (units of the instrument)**, never in IBKR's lots
  of 100: the normalisers multiply by the lot size. The column metadata says so as well.
- ``conid`` is ``int64`` whether the API sent it as a string or a number.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("ms", tz="UTC")
_SHARES = {b"unit": b"shares"}


def _shares(name: str) -> pa.Field:
    return pa.field(name, pa.float64(), metadata=_SHARES)


HISTORY_BARS = pa.schema(
    [
        pa.field("conid", pa.int64(), nullable=False),
        pa.field("bar_size", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False, metadata=_SHARES),
    ]
)
"""One row per bar. Key: (conid, bar_size, ts); ``ts`` is the bar's start."""

SNAPSHOT_QUOTES = pa.schema(
    [
        pa.field("conid", pa.int64(), nullable=False),
        pa.field("updated", TS, nullable=False),
        pa.field("symbol", pa.string()),
        pa.field("last", pa.float64()),
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        _shares("last_size"),
        _shares("bid_size"),
        _shares("ask_size"),
        _shares("volume"),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("prior_close", pa.float64()),
        pa.field("change", pa.float64()),
        pa.field("change_pct", pa.float64()),
        pa.field("last_is_close", pa.bool_(), nullable=False),
        pa.field("halted", pa.bool_(), nullable=False),
        pa.field("market_data_availability", pa.string()),
        pa.field("parse_errors", pa.string()),
    ]
)
"""One row per instrument that delivered fields. Key: (conid, updated). Pre-flight entries
(conid only, no fields) yield no row. ``parse_errors``: why a field of the row could not be
read (``last:unparseable('N/A')``), null when every field was read; the warehouse contract
quarantines rows that have one, so it is null in every stored row."""

POSITIONS = pa.schema(
    [
        pa.field("account", pa.string(), nullable=False),
        pa.field("as_of", TS, nullable=False),
        pa.field("conid", pa.int64(), nullable=False),
        pa.field("contract_desc", pa.string()),
        pa.field("asset_class", pa.string()),
        pa.field("currency", pa.string()),
        _shares("position"),
        pa.field("mkt_price", pa.float64()),
        pa.field("mkt_value", pa.float64()),
        pa.field("avg_cost", pa.float64()),
        pa.field("avg_price", pa.float64()),
        pa.field("realized_pnl", pa.float64()),
        pa.field("unrealized_pnl", pa.float64()),
    ]
)
"""An as-of snapshot of an account's positions. Key: (account, as_of, conid)."""

ACCOUNT_SUMMARY = pa.schema(
    [
        pa.field("account", pa.string(), nullable=False),
        pa.field("as_of", TS, nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("amount", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("value", pa.string()),
        pa.field("is_null", pa.bool_(), nullable=False),
        pa.field("severity", pa.int64()),
        pa.field("timestamp", TS),
    ]
)
"""An as-of snapshot of an account's summary, one row per summary key (``netliquidation``,
``totalcashvalue-s``, ...). Key: (account, as_of, key)."""

CONTRACTS = pa.schema(
    [
        pa.field("conid", pa.int64(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("sec_type", pa.string()),
        pa.field("company_name", pa.string()),
        pa.field("company_header", pa.string()),
        pa.field("description", pa.string()),
        pa.field("exchanges", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("multiplier", pa.float64()),
        pa.field("exchange", pa.string()),
        pa.field("exchange_timezone", pa.string()),
        pa.field("expiry", pa.string()),
    ]
)
"""Contract search results, one row per conid. ``exchanges`` joins the sections' exchanges
with commas; ``exchange`` is the listing exchange whose calendar the bars follow and
``exchange_timezone`` its IANA zone; ``expiry`` a future's last trading date (``YYYY-MM-DD``).
Key: conid."""

ACCOUNTS = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("alias", pa.string()),
        pa.field("is_paper", pa.bool_(), nullable=False),
        pa.field("is_selected", pa.bool_(), nullable=False),
    ]
)
"""Brokerage accounts from ``/iserver/accounts``. Key: account_id."""

LIVE_ORDERS = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("account", pa.string(), nullable=False),
        pa.field("conid", pa.int64(), nullable=False),
        pa.field("ticker", pa.string()),
        pa.field("sec_type", pa.string()),
        pa.field("side", pa.string()),
        pa.field("order_type", pa.string()),
        pa.field("status", pa.string()),
        _shares("total_size"),
        _shares("filled_quantity"),
        _shares("remaining_quantity"),
        pa.field("avg_price", pa.float64()),
        pa.field("limit_price", pa.float64()),
        pa.field("time_in_force", pa.string()),
        pa.field("last_execution_time", TS),
        pa.field("order_ref", pa.string()),
    ]
)
"""Live orders from ``/iserver/account/orders``. Key: order_id."""

SCHEMAS: dict[str, pa.Schema] = {
    "history_bars": HISTORY_BARS,
    "snapshot_quotes": SNAPSHOT_QUOTES,
    "positions": POSITIONS,
    "account_summary": ACCOUNT_SUMMARY,
    "contracts": CONTRACTS,
    "accounts": ACCOUNTS,
    "live_orders": LIVE_ORDERS,
}
"""Every normalised table's schema, keyed by the normaliser's name."""
