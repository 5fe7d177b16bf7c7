"""The research API: the warehouse by symbol, one call to a DataFrame.

Why: a researcher asks for "AAPL's one-minute bars last week", not for a SQL join from conid to
symbol over hive folders. `Warehouse` answers in pandas (default), polars (``as_="polars"``) or
Arrow (``as_="arrow"``), through the same DuckDB views as `warehouse.connect` (no Dagster)::

    from ib_pipeline.research import Warehouse
    wh = Warehouse()                                   # root: IB_PIPELINE_WAREHOUSE or default
    bars = wh.bars("AAPL", "1min", "2025-11-24", "2025-11-28")   # ts (UTC) and ts_local
    daily = wh.daily(["AAPL", "SPY"], bar_size="1d")
    quotes = wh.quotes(as_of="2025-11-28T20:00Z")

Rules it keeps:
- Reads only what it needs: bar queries filter on ``session_date`` (the partition folder of
  intraday bars), snapshot queries on ``date`` (the UTC date of ``as_of``), so DuckDB skips
  whole files before opening any.
- Never a silent wrong answer: an unknown symbol raises `UnknownInstrumentError` naming it and
  its close matches; a symbol with two conids raises `AmbiguousInstrumentError` listing them;
  an unknown account raises naming the known ones; a query with no rows returns an empty frame
  with the usual columns and warns (`NoDataWarning`), saying what the warehouse does hold.
- Times: ``ts`` and ``as_of`` are UTC; ``tz="exchange"`` adds ``ts_local`` in the
  instrument's exchange time zone (`calendars.trading_hours_for`). Bounds given as dates select
  trading sessions (``session_date``, inclusive); bounds given as times select bar starts
  (``start <= ts < end``), a naive time being read in the chosen ``tz``.

This module only reads the warehouse; it never writes to it.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.calendars import trading_hours_for
from ib_pipeline.timeframes import BAR_SIZES
from ib_pipeline.warehouse import connect, refresh

Output = Literal["pandas", "polars", "arrow"]
TimeLike = date | datetime | str | None
_OUTPUTS = ("pandas", "polars", "arrow")
_DAY = timedelta(days=1)


class ResearchError(ValueError):
    """A question the warehouse cannot answer as asked (the message says why and what can)."""


class UnknownInstrumentError(ResearchError, KeyError):
    """A symbol or conid that is not in the warehouse's contracts."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousInstrumentError(ResearchError):
    """A symbol that names several conids (pass the conid instead)."""


class UnknownAccountError(ResearchError, KeyError):
    """An account the warehouse holds no data of."""

    def __str__(self) -> str:
        return str(self.args[0])


class NoDataWarning(UserWarning):
    """A query found no rows: the frame is empty, and the message says what exists."""


@dataclass(frozen=True)
class Instrument:
    """One instrument of the warehouse's contracts."""

    conid: int
    symbol: str
    sec_type: str
    exchange: str
    timezone: str


def _exchange_timezone(sec_type: str, exchanges: Sequence[str]) -> tuple[str, str]:
    """(exchange, IANA zone) of the first listed exchange with known trading hours."""
    for exchange in exchanges:
        try:
            return exchange, trading_hours_for(sec_type, exchange).timezone
        except ValueError:
            continue
    return (exchanges[0] if exchanges else ""), "UTC"


def _utc(value: datetime, zone: str) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC)


def _parse(value: TimeLike) -> date | datetime | None:
    """A bound as a date (a session) or a datetime (an instant, maybe naive)."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value
    text = value.strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _instant(value: TimeLike, zone: str = "UTC") -> datetime | None:
    """``value`` as a UTC instant (a date: its midnight in ``zone``)."""
    parsed = _parse(value)
    if parsed is None:
        return None
    if not isinstance(parsed, datetime):
        parsed = datetime(parsed.year, parsed.month, parsed.day)
    return _utc(parsed, zone)


def _convert(table: pa.Table, as_: Output) -> Any:
    if as_ == "arrow":
        return table
    if as_ == "polars":
        import polars as pl  # noqa: PLC0415 (optional, the research extra)

        return pl.from_arrow(table)
    if as_ == "pandas":
        return table.to_pandas()
    raise ValueError(f"as_ must be one of {', '.join(_OUTPUTS)}, not {as_!r}")


def _ms(table: pa.Table) -> pa.Table:
    """Timestamps at millisecond precision (what the warehouse stores; DuckDB hands out us)."""
    fields = []
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            fields.append(field.with_type(pa.timestamp("ms", tz=field.type.tz)))
        else:
            fields.append(field)
    return table.cast(pa.schema(fields))


class Warehouse:
    """The warehouse at ``root`` (default: ``IB_PIPELINE_WAREHOUSE``, else the settings'
    default) as DataFrames by symbol. Use as a context manager, or call `close`.

    ``Warehouse.con`` is the underlying DuckDB connection (`warehouse.connect`) for SQL."""

    def __init__(self, root: str | os.PathLike[str] | Any | None = None) -> None:
        self.con: duckdb.DuckDBPyConnection = connect(root)
        self._contracts: pa.Table | None = None
        self._instruments: dict[int, Instrument] | None = None
        if self._scalar("SELECT count(*) FROM contracts") == 0:
            where = root if root is not None else "the default warehouse"
            raise FileNotFoundError(
                f"no contracts in {where}: the warehouse is missing or empty (load it first, "
                "e.g. `make demo`, or set IB_PIPELINE_WAREHOUSE to a loaded warehouse)"
            )

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def refresh(self) -> None:
        """See partitions and contracts loaded since this object was made."""
        refresh(self.con)
        self._contracts = None
        self._instruments = None

    # -- helpers -------------------------------------------------------------------------------

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.con.execute(sql, list(params)).fetchall()  # fetchall: result finished
        return rows[0][0] if rows else None

    def _arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        return _ms(self.con.sql(sql, params=list(params)).to_arrow_table())

    def sql(self, query: str, params: Sequence[Any] = (), as_: Output = "pandas") -> Any:
        """Any SQL over the warehouse's views, as a frame."""
        return _convert(self._arrow(query, params), as_)

    def _contract_table(self) -> pa.Table:
        if self._contracts is None:
            self._contracts = self._arrow("SELECT * FROM contracts ORDER BY symbol, conid")
        return self._contracts

    def instruments(self) -> dict[int, Instrument]:
        """Every instrument of the contracts, by conid."""
        if self._instruments is None:
            found = {}
            for row in self._contract_table().to_pylist():
                sec_type = str(row.get("sec_type") or "")
                exchanges = [e for e in str(row.get("exchanges") or "").split(",") if e]
                primary = row.get("exchange") or row.get("description")
                if primary:
                    exchanges.insert(0, str(primary))
                exchange, zone = _exchange_timezone(sec_type, exchanges)
                zone = str(row.get("exchange_timezone") or zone)
                conid = int(row["conid"])
                found[conid] = Instrument(conid, str(row["symbol"]), sec_type, exchange, zone)
            self._instruments = found
        return self._instruments

    def instrument(self, symbol_or_conid: str | int) -> Instrument:
        """The instrument a symbol (case-insensitive) or conid names; raises
        `UnknownInstrumentError` (with close matches) or `AmbiguousInstrumentError`."""
        known = self.instruments()
        if isinstance(symbol_or_conid, int) or str(symbol_or_conid).strip().isdigit():
            conid = int(symbol_or_conid)
            if conid in known:
                return known[conid]
            raise UnknownInstrumentError(
                f"conid {conid} is not in the warehouse's contracts "
                f"({len(known)} instruments; see Warehouse.contracts())"
            )
        wanted = str(symbol_or_conid).strip().upper()
        matches = [i for i in known.values() if i.symbol.upper() == wanted]
        if len(matches) == 1:
            return matches[0]
        if matches:
            listed = ", ".join(f"{i.conid} ({i.sec_type} {i.exchange})" for i in matches)
            raise AmbiguousInstrumentError(
                f"symbol {symbol_or_conid!r} names {len(matches)} contracts: {listed}; "
                "pass the conid instead"
            )
        symbols = sorted({i.symbol for i in known.values()})
        close = difflib.get_close_matches(wanted, symbols, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownInstrumentError(
            f"unknown symbol {symbol_or_conid!r}: not in the warehouse's contracts{hint} "
            f"(known: {', '.join(symbols)})"
        )

    def _accounts(self) -> list[str]:
        rows = self.con.execute(
            "SELECT DISTINCT account FROM (SELECT account FROM positions UNION ALL "
            "SELECT account FROM account_summary UNION ALL SELECT account_id FROM accounts) "
            "ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _check_account(self, account: str | None) -> None:
        if account is not None and account not in (known := self._accounts()):
            raise UnknownAccountError(
                f"unknown account {account!r}; the warehouse holds {', '.join(known) or 'none'}"
            )

    @staticmethod
    def _empty(table: pa.Table, message: str) -> pa.Table:
        if table.num_rows == 0:
            warnings.warn(message, NoDataWarning, stacklevel=3)
        return table

    def _symbols_of(self, conids: pa.ChunkedArray | pa.Array) -> pa.Array:
        known = self.instruments()
        return pa.array(
            [known[c].symbol if c in known else None for c in conids.to_pylist()], pa.string()
        )

    # -- contracts -----------------------------------------------------------------------------

    def contracts(self, as_: Output = "pandas") -> Any:
        """The contracts, with each instrument's trading ``exchange`` and ``timezone`` (the
        exchange's time zone, from `calendars`)."""
        table = self._contract_table()
        known = self.instruments()
        conids = table.column("conid").to_pylist()
        for name, values in (
            ("exchange", [known[c].exchange for c in conids]),
            ("timezone", [known[c].timezone for c in conids]),
        ):
            if name not in table.column_names:
                table = table.append_column(name, pa.array(values, pa.string()))
        return _convert(table, as_)

    # -- bars ----------------------------------------------------------------------------------

    def bars(
        self,
        symbol_or_conid: str | int,
        bar_size: str = "1min",
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        tz: str = "exchange",
        as_: Output = "pandas",
    ) -> Any:
        """One instrument's bars, oldest first: ``symbol``, ``conid``, ``bar_size``, ``ts``
        (the bar's START, UTC), ``ts_local`` (the same instant in the exchange's time zone
        with ``tz="exchange"``, or in any IANA zone named; left out with ``tz="UTC"``), open,
        high, low, close, volume (shares), ``session_date`` (the exchange's session).

        ``start``/``end``: dates select sessions (inclusive); times select bar starts
        (``start <= ts < end``; naive ones are read in ``tz``)."""
        if bar_size not in BAR_SIZES:
            raise ValueError(f"unknown bar size {bar_size!r}; bar sizes: {', '.join(BAR_SIZES)}")
        inst = self.instrument(symbol_or_conid)
        zone = inst.timezone if tz == "exchange" else tz
        ZoneInfo(zone)  # an unknown zone fails here, before any query
        where = ["conid = ?", "bar_size = ?"]
        params: list[Any] = [inst.conid, bar_size]
        for bound, op, session_op in ((start, ">=", ">="), (end, "<", "<=")):
            parsed = _parse(bound)
            if parsed is None:
                continue
            if isinstance(parsed, datetime):
                instant = _utc(parsed, zone)
                # sessions around the instant (a session can start the evening before its
                # date or end after midnight UTC): prunes files, the ts filter decides
                margin = -_DAY if op == ">=" else _DAY
                where += [f"ts {op} ?", f"session_date {session_op} ?"]
                params += [instant, instant.date() + margin]
            else:
                where.append(f"session_date {session_op} ?")
                params.append(parsed)
        table = self._arrow(
            "SELECT conid, bar_size, ts, open, high, low, close, volume, session_date "
            f"FROM bars WHERE {' AND '.join(where)} ORDER BY ts",
            params,
        )
        if table.num_rows == 0:
            self._warn_no_bars(inst, bar_size, start, end)
        table = table.add_column(0, "symbol", pa.array([inst.symbol] * table.num_rows, pa.string()))
        if tz != "UTC":
            local = table.column("ts").cast(pa.timestamp("ms", tz=zone))
            table = table.add_column(table.column_names.index("ts") + 1, "ts_local", local)
        return _convert(table, as_)

    def _warn_no_bars(self, inst: Instrument, bar_size: str, start: Any, end: Any) -> None:
        rows = self.con.execute(
            "SELECT min(session_date), max(session_date), count(*) FROM bars "
            "WHERE conid = ? AND bar_size = ?",
            [inst.conid, bar_size],
        ).fetchall()
        held = rows[0] if rows else None
        if held is None or not held[2]:
            sizes = self.con.execute(
                "SELECT DISTINCT bar_size FROM bars WHERE conid = ? ORDER BY 1", [inst.conid]
            ).fetchall()
            holds = ", ".join(str(s[0]) for s in sizes) or "no bars at all"
            what = f"the warehouse has no {bar_size} bars of {inst.symbol} (it holds: {holds})"
        else:
            what = (
                f"no {bar_size} bars of {inst.symbol} between {start} and {end}; the warehouse "
                f"holds sessions {held[0]} .. {held[1]}"
            )
        warnings.warn(what, NoDataWarning, stacklevel=3)

    def daily(
        self,
        symbols: str | int | Iterable[str | int] | None = None,
        start: date | str | None = None,
        end: date | str | None = None,
        *,
        bar_size: str = "1min",
        as_: Output = "pandas",
    ) -> Any:
        """One row per instrument and session, oldest first: symbol, conid, session_date,
        open, high, low, close, volume (shares) and more. ``bar_size="1d"`` reads the stored
        daily bars; an intraday size aggregates that size's bars (view ``daily_ohlcv``, with
        ``vwap_approx``, the close-weighted average price, and ``bars``). ``start``/``end``
        are session dates, inclusive. ``symbols``: one, several, or None for every
        instrument."""
        if bar_size not in BAR_SIZES:
            raise ValueError(f"unknown bar size {bar_size!r}; bar sizes: {', '.join(BAR_SIZES)}")
        if symbols is None:
            conids = list(self.instruments())
        elif isinstance(symbols, str | int):
            conids = [self.instrument(symbols).conid]
        else:
            conids = [self.instrument(s).conid for s in symbols]
        where = ["bar_size = ?", "list_contains(?, conid)"]
        params: list[Any] = [bar_size, conids]
        for bound, op in ((start, ">="), (end, "<=")):
            parsed = _parse(bound)
            if parsed is not None:
                day = parsed.date() if isinstance(parsed, datetime) else parsed
                where.append(f"session_date {op} ?")
                params.append(day)
        if BAR_SIZES[bar_size].is_intraday:
            source = "daily_ohlcv"
            columns = "* EXCLUDE (bar_size)"
        else:
            source = "bars"
            columns = "conid, session_date, ts, open, high, low, close, volume"
        table = self._arrow(
            f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)} "
            "ORDER BY conid, session_date",
            params,
        )
        if "vwap" in table.column_names:  # the view's old name (issue 12 renames it)
            names = ["vwap_approx" if n == "vwap" else n for n in table.column_names]
            table = table.rename_columns(names)
        if "symbol" not in table.column_names:
            table = table.add_column(0, "symbol", self._symbols_of(table.column("conid")))
        table = table.sort_by([("symbol", "ascending"), ("session_date", "ascending")])
        self._empty(table, f"no {bar_size} sessions for {symbols} between {start} and {end}")
        return _convert(table, as_)

    # -- snapshots -----------------------------------------------------------------------------

    def quotes(
        self,
        symbols: str | int | Iterable[str | int] | None = None,
        as_of: TimeLike = None,
        *,
        as_: Output = "pandas",
    ) -> Any:
        """The latest quote of each instrument (or of ``symbols``), or the latest at or before
        ``as_of`` (a time; naive = UTC; a date = its end, UTC). One row per instrument."""
        where: list[str] = []
        params: list[Any] = []
        if symbols is not None:
            chosen = [symbols] if isinstance(symbols, str | int) else list(symbols)
            where.append("list_contains(?, conid)")
            params.append([self.instrument(s).conid for s in chosen])
        cutoff = self._cutoff(as_of)
        if cutoff is not None:
            where += ["as_of <= ?", "date <= ?"]
            params += [cutoff, cutoff.date()]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        table = self._arrow(
            f"SELECT * FROM quotes {clause} QUALIFY row_number() OVER "
            "(PARTITION BY conid ORDER BY as_of DESC, updated DESC) = 1 ORDER BY symbol, conid",
            params,
        )
        self._empty(table, f"no quotes{self._at(as_of)} for {symbols or 'any instrument'}")
        return _convert(table, as_)

    @staticmethod
    def _cutoff(as_of: TimeLike) -> datetime | None:
        parsed = _parse(as_of)
        if parsed is None:
            return None
        if not isinstance(parsed, datetime):
            return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC) + _DAY
        return _utc(parsed, "UTC")

    @staticmethod
    def _at(as_of: TimeLike) -> str:
        return f" at or before {as_of}" if as_of is not None else ""

    def positions(
        self, account: str | None = None, as_of: TimeLike = None, *, as_: Output = "pandas"
    ) -> Any:
        """Each account's (or ``account``'s) positions of its latest snapshot, or of its latest
        at or before ``as_of``, with the instrument's ``symbol`` (from the contracts, else the
        gateway's ``contract_desc``, for an instrument outside the universe)."""
        self._check_account(account)
        where: list[str] = []
        params: list[Any] = []
        if account is not None:
            where.append("account = ?")
            params.append(account)
        cutoff = self._cutoff(as_of)
        if cutoff is not None:
            where += ["as_of <= ?", "date <= ?"]
            params += [cutoff, cutoff.date()]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        table = self._arrow(
            "SELECT p.*, coalesce(c.symbol, p.contract_desc) AS symbol "
            f"FROM (SELECT * FROM positions {clause} "
            "QUALIFY as_of = max(as_of) OVER (PARTITION BY account)) AS p "
            "LEFT JOIN contracts AS c USING (conid) WHERE p.conid <> 0 ORDER BY account, conid",
            params,
        )
        self._empty(table, f"no positions{self._at(as_of)} for {account or 'any account'}")
        return _convert(table, as_)

    def marked_positions(self, account: str | None = None, *, as_: Output = "pandas") -> Any:
        """Latest positions marked to the latest quotes: ``mark`` is the quote's last price
        (``mark_source`` = ``quote``) or, for an instrument without a quote, the gateway's own
        ``mkt_price`` (``mark_source`` = ``position``); ``marked_value`` = position x mark
        (shares x price; the gateway's ``mkt_value`` is beside it for comparison)."""
        positions = self.positions(account, as_="arrow")
        quotes = self._arrow(
            "SELECT conid, last AS quote_last, as_of AS quote_as_of FROM latest_quotes"
        )
        joined = positions.join(quotes, "conid", join_type="left outer")
        has_quote = pc.is_valid(joined.column("quote_last"))
        mark = pc.if_else(has_quote, joined.column("quote_last"), joined.column("mkt_price"))
        source = pc.if_else(has_quote, pa.scalar("quote"), pa.scalar("position"))
        joined = joined.append_column("mark", mark)
        joined = joined.append_column("mark_source", source)
        joined = joined.append_column(
            "marked_value", pc.multiply(joined.column("position"), joined.column("mark"))
        )
        joined = joined.sort_by([("account", "ascending"), ("conid", "ascending")])
        return _convert(joined, as_)

    def portfolio_value(
        self,
        account: str | None = None,
        start: TimeLike = None,
        end: TimeLike = None,
        *,
        as_: Output = "pandas",
    ) -> Any:
        """Net liquidation value over time: one row per account and summary snapshot
        (``account``, ``as_of``, ``net_liquidation``, ``currency``), from the account summary's
        ``netliquidation`` key. ``start``/``end`` bound ``as_of`` (dates: UTC days, inclusive)."""
        self._check_account(account)
        where = ["key = 'netliquidation'"]
        params: list[Any] = []
        if account is not None:
            where.append("account = ?")
            params.append(account)
        first = _instant(start)
        if first is not None:
            where += ["as_of >= ?", "date >= ?"]
            params += [first, first.date()]
        last = self._cutoff(end)
        if last is not None:
            where += ["as_of <= ?", "date <= ?"]
            params += [last, last.date()]
        table = self._arrow(
            "SELECT account, as_of, amount AS net_liquidation, currency FROM account_summary "
            f"WHERE {' AND '.join(where)} ORDER BY account, as_of",
            params,
        )
        self._empty(table, f"no net liquidation snapshots for {account or 'any account'}")
        return _convert(table, as_)
