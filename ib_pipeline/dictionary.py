"""The data dictionary: every dataset, derived view and column of the warehouse, described once.

Why one place: the same words are shown in four places, and four copies drift. From the
entries below come `describe` (for code and notebooks), `comment_statements` / `apply_comments`
(DuckDB ``COMMENT ON VIEW`` / ``COMMENT ON COLUMN`` for the catalog's views), `column_descriptions`
(a plain dict Dagster's ``TableColumn`` descriptions are built from, under ``assets/``), and
`render_markdown` (``docs/DATA_DICTIONARY.md``, written by ``python -m ib_pipeline.dictionary``
and kept in step by a test that also checks no column of the warehouse goes undescribed).

Conventions every description follows (the units are part of the meaning):
- Times are UTC instants (``TIMESTAMP WITH TIME ZONE``, millisecond precision in Parquet).
- A bar's ``ts`` is its START; the bar covers ``[ts, ts + bar size)``.
- ``session_date`` is the exchange's trading session (exchange-local; a CME session opens the
  evening before its date), while the snapshot datasets' ``date`` is the UTC date of ``as_of``.
- Prices are plain floats in the instrument's currency; volumes and sizes are in shares
  (units of the instrument): the gateway's lots of 100 are multiplied out on the way in.

This module holds text only: it imports neither Dagster nor DuckDB at module level, and never
reads the warehouse (`apply_comments` is handed a connection).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

DOCS_FILE = Path(__file__).resolve().parents[1] / "docs" / "DATA_DICTIONARY.md"
"""Where ``python -m ib_pipeline.dictionary`` writes the Markdown dictionary."""


@dataclass(frozen=True)
class Column:
    """One column: its name, what it means (units included), and whether it is still to come."""

    name: str
    description: str
    pending: bool = False
    """Described here, not yet in the warehouse (issue 12 wiring); the test allows its absence."""


@dataclass(frozen=True)
class Entry:
    """One dataset (stored Parquet behind a view of the same name) or derived view."""

    name: str
    kind: str  # "dataset" or "view"
    summary: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}; columns: {self.names()}")

    def names(self, *, pending: bool = True) -> list[str]:
        return [c.name for c in self.columns if pending or not c.pending]


# --- words shared by several datasets ----------------------------------------------------------

_CONID = "IBKR contract id of the instrument (stable across symbol changes); join to `contracts`."
_AS_OF = (
    "UTC time the snapshot was taken (the loader's clock when it asked the gateway); every row "
    "of one snapshot shares it."
)
_DATE = (
    "UTC date of `as_of` (a partition folder, not a trading session): filter on it to let "
    "DuckDB skip whole files."
)
_ACCOUNT = "IBKR account id (e.g. `DU1234567`; `DU` = paper)."
_SYMBOL = "Ticker symbol from the contract search (e.g. `AAPL`, `ES`, `EUR.USD`)."
_SEC_TYPE = "IBKR security type: `STK` (stocks and ETFs), `FUT`, `CASH` (forex), `OPT`, ..."
_COMPANY = "Company or instrument name from the contract search."
_BAR_SIZE = "Bar size label: `1min` .. `30min`, `1h` .. `8h`, `1d`, `1w`, `1m` (one month)."
_TS = (
    "START of the bar (UTC): the bar covers [ts, ts + bar size). Exchange-local time: convert "
    "with the instrument's time zone (`Warehouse.bars(..., tz='exchange')`)."
)
_SESSION_DATE = (
    "The exchange's trading session the bar belongs to (exchange-local date; a CME session "
    "opens the evening before its date, a US extended session can cross midnight UTC). For "
    "bars under 1h it also names the partition folder: filter on it to skip whole files."
)
_SHARES = "in shares (units of the instrument; IBKR's lots of 100 multiplied out)"


def _bar_columns() -> tuple[Column, ...]:
    return (
        Column("conid", _CONID),
        Column("bar_size", _BAR_SIZE),
        Column("ts", _TS),
        Column("open", "First trade price of the bar, in the instrument's currency."),
        Column("high", "Highest trade price of the bar, in the instrument's currency."),
        Column("low", "Lowest trade price of the bar, in the instrument's currency."),
        Column("close", "Last trade price of the bar, in the instrument's currency."),
        Column("volume", f"Volume traded during the bar, {_SHARES}."),
        Column("session_date", _SESSION_DATE),
    )


def _quote_columns() -> tuple[Column, ...]:
    return (
        Column("as_of", _AS_OF),
        Column("conid", _CONID),
        Column(
            "updated", "UTC time the gateway last updated this instrument's fields (`_updated`)."
        ),
        Column("symbol", f"{_SYMBOL} As the snapshot reported it (field 55)."),
        Column(
            "last",
            "Last price (field 31), prefixes stripped: see `last_is_close` and `halted`.",
        ),
        Column("bid", "Best bid price (field 84)."),
        Column("ask", "Best ask price (field 86)."),
        Column("last_size", f"Size of the last trade (field 7059), {_SHARES}."),
        Column("bid_size", f"Size at the best bid (field 88), {_SHARES}."),
        Column("ask_size", f"Size at the best ask (field 85), {_SHARES}."),
        Column("volume", f"Volume of the current session so far (field 7762, else 87), {_SHARES}."),
        Column("open", "Session open price (field 7295)."),
        Column("high", "Session high price (field 70)."),
        Column("low", "Session low price (field 71)."),
        Column("close", "Close price when the session is over (field 7296), else empty."),
        Column("prior_close", "Previous session's close price (field 7741)."),
        Column("change", "Last minus prior close (field 82), in the instrument's currency."),
        Column("change_pct", "Change from the prior close in percent (field 83): 1.5 = 1.5 %."),
        Column(
            "last_is_close",
            "True when `last` came with IBKR's `C` prefix: it is the previous close, the "
            "instrument has not traded this session.",
        ),
        Column("halted", "True when `last` came with IBKR's `H` prefix: trading is halted."),
        Column(
            "market_data_availability",
            "IBKR's availability code (field 6509), as sent: first letter `R` real time, `D` "
            "delayed (about 15 minutes behind), `Z` frozen, `Y` frozen delayed, `N` not "
            "subscribed; second letter `P` snapshot, `p` consolidated; third `B` book.",
        ),
        Column(
            "parse_errors",
            "Empty in every stored row. In the quarantine: the fields of the row the gateway "
            "sent unreadable, with the value sent (e.g. `last:unparseable('N/A')`); such a "
            "field is empty in the row and the row is quarantined, the other instruments kept.",
        ),
        Column("date", _DATE),
    )


def _position_columns() -> tuple[Column, ...]:
    return (
        Column("account", _ACCOUNT),
        Column("as_of", _AS_OF),
        Column(
            "conid",
            f"{_CONID} 0 marks a flat snapshot: the account was listed with no position at "
            "`as_of` (one marker row, position 0; the `latest_positions` view leaves it out).",
        ),
        Column("contract_desc", "The gateway's short description of the contract (the symbol)."),
        Column("asset_class", _SEC_TYPE),
        Column("currency", "ISO currency of the position's prices and values."),
        Column("position", f"Quantity held, {_SHARES} (contracts for futures); negative = short."),
        Column("mkt_price", "The gateway's mark price when the snapshot was taken."),
        Column(
            "mkt_value",
            "The gateway's market value: position x mkt_price x multiplier, in `currency`.",
        ),
        Column("avg_cost", "Average cost per share including the multiplier, in `currency`."),
        Column("avg_price", "Average price per share paid, in `currency`."),
        Column("realized_pnl", "Realised profit and loss, in `currency`."),
        Column("unrealized_pnl", "Unrealised profit and loss at `mkt_price`, in `currency`."),
        Column("date", _DATE),
    )


def _summary_columns() -> tuple[Column, ...]:
    return (
        Column("account", _ACCOUNT),
        Column("as_of", _AS_OF),
        Column(
            "key",
            "Summary key, lower case as IBKR sends it: `netliquidation`, `totalcashvalue`, "
            "`buyingpower`, `cushion`, ... (suffix `-s` = securities segment, `-c` = commodities).",
        ),
        Column(
            "amount",
            "The key's numeric amount in `currency` (`netliquidation`: the account's value). "
            "Some keys carry their number only in `value` (e.g. `cushion`: amount 0, value "
            "'0.83'): read `value` for those.",
        ),
        Column("currency", "ISO currency of `amount`."),
        Column("value", "The key's value as IBKR sends it, text (a number for some keys)."),
        Column("is_null", "True when IBKR marked the key as having no value."),
        Column("severity", "IBKR's severity code of the key (0 = normal)."),
        Column("timestamp", "UTC time IBKR computed the key's value."),
        Column("date", _DATE),
    )


_VWAP_APPROX = (
    "Close-weighted average price of the session: sum(close x volume) / sum(volume) over its "
    "bars. An APPROXIMATION of the VWAP (each bar's volume is priced at its close, not at its "
    "trades' prices); empty when the session's volume is 0."
)

ENTRIES: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry(
            "bars",
            "dataset",
            "OHLCV bars from the gateway's history endpoint, one row per instrument, bar size and "
            "bar start. Partitioned by bar size then session date (under 1h), session month "
            "(1h-8h) or session year (1d, 1w, 1m); the session date is the exchange's own "
            "(a Tokyo session is dated in Tokyo). Whether the gateway served an instrument's bars "
            "real-time or delayed (history `mdAvailability`: `S`/`R` real time, `D` delayed) is "
            "kept per instrument in each partition's manifest "
            "(`Manifest.market_data_availability`), not in a column.",
            ("conid", "bar_size", "ts"),
            _bar_columns(),
        ),
        Entry(
            "quotes",
            "dataset",
            "Market-data snapshots: one file per snapshot, one row per instrument that "
            "delivered fields.",
            ("as_of", "conid"),
            _quote_columns(),
        ),
        Entry(
            "positions",
            "dataset",
            "Positions of each account, one snapshot per `as_of`.",
            ("account", "as_of", "conid"),
            _position_columns(),
        ),
        Entry(
            "account_summary",
            "dataset",
            "Account summary of each account, one snapshot per `as_of`, one row per key.",
            ("account", "as_of", "key"),
            _summary_columns(),
        ),
        Entry(
            "contracts",
            "dataset",
            "Contracts of the configured instruments, from the gateway's contract search "
            "(one row per conid, replaced whole on each load).",
            ("conid",),
            (
                Column("conid", _CONID),
                Column("symbol", _SYMBOL),
                Column("sec_type", _SEC_TYPE),
                Column("company_name", _COMPANY),
                Column("company_header", "Name with the listing exchange, as the search shows it."),
                Column("description", "Primary listing exchange as the search reports it."),
                Column(
                    "exchanges",
                    "Exchanges the contract trades on, comma-separated (e.g. `NASDAQ,SMART`).",
                ),
                Column(
                    "currency",
                    "ISO currency the instrument is priced in: the search answer's, else the "
                    "listing exchange's (a forex pair: its quote currency, `EUR.USD` -> USD).",
                ),
                Column(
                    "multiplier",
                    "Contract multiplier: value of one unit of price per contract (1 for "
                    "stocks, ETFs and forex; a future's from an answer that carries it, else "
                    "empty).",
                ),
                Column(
                    "exchange",
                    "The listing exchange whose calendar the bars follow: the configured "
                    "instrument's (IBKR's code, e.g. `NASDAQ`, `IBIS`).",
                ),
                Column(
                    "exchange_timezone",
                    "IANA time zone of the exchange's sessions (e.g. `America/New_York`), from "
                    "the trading calendars; empty when they do not know the exchange.",
                ),
                Column(
                    "expiry",
                    "Last trading date of a future, `YYYY-MM-DD` (empty for other security "
                    "types, and when the search answer carries none).",
                ),
            ),
        ),
        Entry(
            "accounts",
            "dataset",
            "Brokerage accounts the gateway lists.",
            ("account_id",),
            (
                Column("account_id", _ACCOUNT),
                Column("alias", "The account's alias in IBKR (its id when none is set)."),
                Column("is_paper", "True for a paper-trading account."),
                Column("is_selected", "True for the account the gateway session has selected."),
            ),
        ),
        Entry(
            "orders",
            "dataset",
            "Live orders (today's working and finished orders), one snapshot per `as_of`.",
            ("as_of", "order_id"),
            (
                Column("as_of", _AS_OF),
                Column("order_id", "IBKR order id."),
                Column("account", _ACCOUNT),
                Column("conid", _CONID),
                Column("ticker", _SYMBOL),
                Column("sec_type", _SEC_TYPE),
                Column("side", "`BUY` or `SELL`."),
                Column("order_type", "Order type: `MKT`, `LMT`, `STP`, ..."),
                Column("status", "IBKR order status: `Submitted`, `Filled`, `Cancelled`, ..."),
                Column("total_size", f"Quantity ordered, {_SHARES}."),
                Column("filled_quantity", f"Quantity filled so far, {_SHARES}."),
                Column("remaining_quantity", f"Quantity still to fill, {_SHARES}."),
                Column("avg_price", "Average fill price, in the instrument's currency."),
                Column("limit_price", "Limit price of a limit order."),
                Column("time_in_force", "`DAY`, `GTC`, ..."),
                Column("last_execution_time", "UTC time of the order's last fill."),
                Column("order_ref", "The client's reference of the order, if any."),
                Column("date", _DATE),
            ),
        ),
        Entry(
            "quarantine",
            "dataset",
            "Rows that failed a dataset's contract, kept with the reason and their original "
            "values instead of being written.",
            (),
            (
                Column("dataset", "Dataset the row was meant for (`bars`, `quotes`, ...)."),
                Column(
                    "partition",
                    "Partition the row would have gone to (empty when its values name none).",
                ),
                Column("failed_checks", "The checks of the contract the row failed."),
                Column("key_json", "The row's key as JSON."),
                Column("row_json", "The row's original values as JSON (NaN and inf kept)."),
                Column("source", "The request the row came from (endpoint and parameters)."),
                Column("run_id", "Id of the run that quarantined it (Dagster run id, or a uuid)."),
                Column("quarantined_at", "UTC time the row was quarantined."),
            ),
        ),
        Entry(
            "corporate_actions",
            "dataset",
            "Splits the bar loader detected by comparing stored bars with the same bars fetched "
            "again (IBKR adjusts history as of the request), one row per instrument, bar size "
            "and split; the stored bars of that size were restated to the new basis. As traded: "
            "price * product(ratio of the splits with effective_date > session_date), volume / "
            "that product (the `bars_as_traded` view).",
            ("conid", "bar_size", "effective_date"),
            (
                Column("conid", _CONID),
                Column("bar_size", "Bar size whose stored bars were restated."),
                Column("action", "What happened: `split` (reverse splits too)."),
                Column(
                    "effective_date",
                    "First session on the new basis (exchange-local ex-date; estimated as the "
                    "first session after the compared bars were stored).",
                ),
                Column("ratio", "New shares per old share: 4.0 for a 4:1 split, 0.1 for 1:10."),
                Column("compared_session", "Latest stored session whose bars proved the ratio."),
                Column("detected_at", "UTC time of the run that detected it."),
                Column(
                    "restated",
                    "How the stored bars were restated: `rescaled` (prices / ratio, volume * "
                    "ratio, in place; no request).",
                ),
                Column("rows_restated", "Stored bars rescaled."),
                Column("partitions_restated", "Stored partitions rewritten."),
                Column("run_id", "Id of the run that detected it."),
            ),
        ),
        Entry(
            "bars_as_traded",
            "view",
            "`bars` at the prices and volumes they traded at: stored bars are adjusted for "
            "every split in `corporate_actions`; this view multiplies prices by the product of "
            "the ratios of the splits effective after the bar's session (and divides volume).",
            ("conid", "bar_size", "ts"),
            _bar_columns(),
        ),
        Entry(
            "futures_rolls",
            "view",
            "The rolls of every futures root loaded by contract month (`roll:` in the universe): "
            "front month, rolled 8 calendar days before its last trade date (the table macro "
            "`futures_rolls_by(days)` takes another), one row per root, bar size and roll whose "
            "two months both have bars on the last session before it.",
            ("root", "bar_size", "roll_date"),
            (
                Column("root", "Futures root symbol (ES, NQ)."),
                Column("bar_size", "Bar size the gap was measured on."),
                Column("roll_date", "First session date of the new month (may be a holiday)."),
                Column("from_conid", "Conid of the month rolled out of."),
                Column("to_conid", "Conid of the month rolled into."),
                Column(
                    "gap",
                    "Price gap: close of the new month minus close of the old month, at their "
                    "last common bar before the roll.",
                ),
                Column("gap_ts", "UTC start of the bar the gap was measured on."),
            ),
        ),
        Entry(
            "futures_continuous",
            "view",
            "One continuous series per futures root and bar size: the bars of the month in "
            "force (see `futures_rolls`), unadjusted and back-adjusted (every price plus the sum "
            "of the gaps of the rolls after its session); `futures_continuous_by(days)` takes "
            "another roll.",
            ("root", "bar_size", "ts"),
            (
                Column("root", "Futures root symbol (ES, NQ)."),
                Column("bar_size", "Bar size (1min, 1d...)."),
                Column("ts", "UTC start of the bar."),
                Column("session_date", "Exchange-local trading date of the bar's session."),
                Column("conid", "Conid of the contract month in force."),
                Column("open", "Open of the month in force (unadjusted)."),
                Column("high", "High of the month in force (unadjusted)."),
                Column("low", "Low of the month in force (unadjusted)."),
                Column("close", "Close of the month in force (unadjusted)."),
                Column("volume", "Volume of the month in force (contracts)."),
                Column("adjustment", "Sum of the gaps of the later rolls (0 after the last)."),
                Column("adj_open", "Back-adjusted open: open + adjustment."),
                Column("adj_high", "Back-adjusted high: high + adjustment."),
                Column("adj_low", "Back-adjusted low: low + adjustment."),
                Column("adj_close", "Back-adjusted close: close + adjustment."),
            ),
        ),
        Entry(
            "bars_with_symbols",
            "view",
            "`bars` with each instrument's symbol, security type and name from `contracts` "
            "(a left join: bars of an instrument missing from `contracts` keep empty names).",
            ("conid", "bar_size", "ts"),
            (
                *_bar_columns(),
                Column("symbol", _SYMBOL),
                Column("sec_type", _SEC_TYPE),
                Column("company_name", _COMPANY),
            ),
        ),
        Entry(
            "daily_ohlcv",
            "view",
            "One row per instrument, intraday bar size and trading session, aggregated from "
            "that size's bars (a session of 1min bars, of 5min bars, ...).",
            ("conid", "bar_size", "session_date"),
            (
                Column("conid", _CONID),
                Column("symbol", _SYMBOL),
                Column("bar_size", "Intraday bar size the session was aggregated from."),
                Column("session_date", "The exchange's trading session (exchange-local date)."),
                Column("open", "Open of the session's first bar."),
                Column("high", "Highest high of the session's bars."),
                Column("low", "Lowest low of the session's bars."),
                Column("close", "Close of the session's last bar."),
                Column("volume", f"Total volume of the session's bars, {_SHARES}."),
                Column("vwap_approx", _VWAP_APPROX),
                Column("bars", "Number of bars in the session (390 for a full NYSE day of 1min)."),
                Column("first_ts", "Start (UTC) of the session's first bar."),
                Column("last_ts", "Start (UTC) of the session's last bar."),
            ),
        ),
        Entry(
            "latest_positions",
            "view",
            "`positions` of each account's latest snapshot only.",
            ("account", "conid"),
            _position_columns(),
        ),
        Entry(
            "latest_account_summary",
            "view",
            "`account_summary` of each account's latest snapshot only.",
            ("account", "key"),
            _summary_columns(),
        ),
        Entry(
            "latest_quotes",
            "view",
            "The latest quote of each instrument (latest `as_of`, then latest `updated`).",
            ("conid",),
            _quote_columns(),
        ),
    )
}
"""Every dataset and derived view of the warehouse, by name, in the order docs show them."""

RENAMED: dict[tuple[str, str], str] = {}
"""(view, old column name) -> new name: a column the warehouse still shows under its old name
until the view is changed (issue 12 wiring). Described as the new name."""


def entry(name: str) -> Entry:
    """The entry of dataset or view ``name``; ValueError naming the known ones otherwise."""
    found = ENTRIES.get(name)
    if found is None:
        raise ValueError(f"unknown dataset or view {name!r}; known: {', '.join(ENTRIES)}")
    return found


def describe(dataset: str) -> dict[str, str]:
    """``{column: description}`` of a dataset or view, in column order (units included)."""
    return {c.name: c.description for c in entry(dataset).columns}


def column_description(dataset: str, column: str) -> str:
    """The description of one column; an old column name (`RENAMED`) gets its new one's."""
    found = entry(dataset)
    new = RENAMED.get((dataset, column))
    if new is not None:
        return f"(old name of `{new}`) {found.column(new).description}"
    return found.column(column).description


def column_descriptions(dataset: str, columns: Iterable[str] | None = None) -> dict[str, str]:
    """Descriptions by column name for Dagster's ``TableColumn(description=...)`` (a plain
    dict: the library never imports Dagster). ``columns``: the names the asset's schema has
    (default: every described column); a name not described raises KeyError."""
    if columns is None:
        return describe(dataset)
    return {name: column_description(dataset, name) for name in columns}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def comment_statements(present: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """DuckDB ``COMMENT ON VIEW`` and ``COMMENT ON COLUMN`` statements for the catalog's views.

    ``present``: the columns each view has (``{view: [column, ...]}``, e.g. from
    ``duckdb_columns()``); only those views and columns are commented, old names (`RENAMED`)
    included. Default: every described view and non-pending column. DuckDB (checked on 2.0)
    keeps comments on views and on view columns, but ``CREATE OR REPLACE VIEW`` drops them:
    run these after every (re)build of the views."""
    statements = []
    for name, found in ENTRIES.items():
        if present is not None and name not in present:
            continue
        statements.append(f"COMMENT ON VIEW {_ident(name)} IS {_literal(found.summary)}")
        columns = found.names(pending=False) if present is None else present[name]
        for column in columns:
            text = column_description(name, column)
            statements.append(
                f"COMMENT ON COLUMN {_ident(name)}.{_ident(column)} IS {_literal(text)}"
            )
    return statements


def apply_comments(con: duckdb.DuckDBPyConnection) -> int:
    """Comment the warehouse views of ``con`` (made by `warehouse.connect`, or the catalog
    file's connection) and their columns; returns the number of statements run. Views or
    columns the dictionary does not know are left alone (the completeness test catches them)."""
    rows = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE NOT internal AND schema_name = current_schema() ORDER BY table_name, column_index"
    ).fetchall()
    present: dict[str, list[str]] = {}
    for view, column in rows:
        name, col = str(view), str(column)
        if name not in ENTRIES:
            continue
        known = set(ENTRIES[name].names()) | {old for (v, old) in RENAMED if v == name}
        if col in known:
            present.setdefault(name, []).append(col)
    statements = comment_statements(present)
    for statement in statements:
        con.execute(statement)
    return len(statements)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    """The Markdown data dictionary (``docs/DATA_DICTIONARY.md``)."""
    lines = [
        "# Data dictionary",
        "",
        "<!-- Generated by `python -m ib_pipeline.dictionary` from ib_pipeline/dictionary.py;"
        " do not edit by hand. -->",
        "",
        "Every dataset and derived view of the warehouse, and every column. In DuckDB the same",
        "text is on the views (`SELECT comment FROM duckdb_columns() WHERE table_name = 'bars'`);",
        "in Python, `ib_pipeline.dictionary.describe('bars')`.",
        "",
        "Conventions:",
        "",
        "- Times are UTC instants. A bar's `ts` is its **start**: the bar covers"
        " `[ts, ts + bar size)`.",
        "- `session_date` is the exchange's trading session (an exchange-local date); the"
        " snapshot datasets' `date` is the **UTC** date of `as_of`.",
        "- Prices are plain floats in the instrument's currency; **volumes and sizes are in"
        " shares** (IBKR's lots of 100 are multiplied out).",
        "- `daily_ohlcv.vwap_approx` is close-weighted (sum(close x volume) / sum(volume)),"
        " an approximation of the VWAP.",
        "",
        "Columns marked *(pending)* are described ahead of the change that adds them.",
        "",
    ]
    for kind, title in (("dataset", "Datasets"), ("view", "Derived views")):
        lines += [f"## {title}", ""]
        for found in ENTRIES.values():
            if found.kind != kind:
                continue
            lines += [f"### `{found.name}`", "", found.summary, ""]
            if found.key:
                lines += ["Key: " + ", ".join(f"`{k}`" for k in found.key), ""]
            lines += ["| Column | Description |", "| --- | --- |"]
            for column in found.columns:
                mark = " *(pending)*" if column.pending else ""
                lines.append(f"| `{column.name}`{mark} | {_cell(column.description)} |")
            lines.append("")
    return "\n".join(lines)


def write_markdown(path: Path = DOCS_FILE) -> Path:
    """Write `render_markdown` to ``path``; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ib_pipeline.dictionary [--check] [--output PATH]``."""
    parser = argparse.ArgumentParser(
        prog="python -m ib_pipeline.dictionary",
        description="Write docs/DATA_DICTIONARY.md from ib_pipeline/dictionary.py.",
    )
    parser.add_argument("--output", type=Path, default=DOCS_FILE, help="file to write")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs from the dictionary"
    )
    args = parser.parse_args(argv)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != render_markdown():
            print(f"{args.output} is out of date: run python -m ib_pipeline.dictionary")
            return 1
        return 0
    print(write_markdown(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
