"""Ground truth for tests: what the simulator serves, and what a correct loader must end up with.

A test loads data through the client, the normalisers and the warehouse, then compares the
result with the truth, in the loader's own units:

- `MarketTruth`: the clean bars of any window as a ``HISTORY_BARS`` table (volume in shares,
  never lots), the values a snapshot shows as plain numbers, and, for bad-data runs, the list of
  rows a response corrupted and how, so a test can assert that exactly those rows landed in
  quarantine. It asks the same `Market` and the same pure functions the server uses
  (`history_window`, `history_response_with_report`, `Market.quote`), so it cannot drift from
  what is served.
- `SimulatorTruth` (a `Simulator`'s ``truth``): the market's truth plus the broker's (positions,
  cash, summary amounts, orders), read straight from the run's `Broker`.

What it must never do: speak HTTP, or change the market or the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.simulator.bad_data import BadDataSpec, Corruption
from ib_pipeline.simulator.bars import Bars
from ib_pipeline.simulator.broker import Broker
from ib_pipeline.simulator.epoch import from_ms
from ib_pipeline.simulator.futures import listed_months
from ib_pipeline.simulator.history import (
    MAX_BARS,
    HistoryRequestError,
    history_response_with_report,
    history_window,
    parse_history_params,
)
from ib_pipeline.simulator.market import Market
from ib_pipeline.timeframes import parse_bar_size


def bars_table(conid: int, bar_size: str, bars: Bars) -> pa.Table:
    """``bars`` as a ``HISTORY_BARS`` table (volume in shares, as float64)."""
    n = len(bars)
    return pa.table(
        {
            "conid": pa.array(np.full(n, conid, dtype=np.int64), pa.int64()),
            "bar_size": pa.array([bar_size] * n, pa.string()),
            "ts": pa.array(bars.ts_ms, HISTORY_BARS.field("ts").type),
            "open": pa.array(bars.open, pa.float64()),
            "high": pa.array(bars.high, pa.float64()),
            "low": pa.array(bars.low, pa.float64()),
            "close": pa.array(bars.close, pa.float64()),
            "volume": pa.array(bars.volume_shares.astype(np.float64), pa.float64()),
        },
        schema=HISTORY_BARS,
    )


class MarketTruth:
    """What the simulator built on ``market`` serves (same seed, same clock)."""

    def __init__(self, market: Market) -> None:
        self.market = market

    def history_bars(
        self,
        conid: int,
        bar_size: str,
        start: datetime,
        end: datetime,
        outside_rth: bool = False,
        *,
        as_of: datetime | None = None,
        as_traded: bool = False,
    ) -> pa.Table:
        """Every clean, completed bar with ``start <= ts < end``, as the server serves them
        (over as many pages as it takes). ValueError for an unknown bar size.

        For an instrument with splits, the bars are adjusted as of the clock's now, as served;
        ``as_of`` gives them adjusted as of another moment (what a request at that time got),
        ``as_traded`` unadjusted (each bar at the prices it traded at)."""
        bar = parse_bar_size(bar_size)
        bars = self.market.bars(
            conid, bar, start, end, outside_rth, as_of=as_of, as_traded=as_traded
        )
        return bars_table(conid, bar.label, bars)

    def splits(self, conid: int | None = None) -> list[dict[str, Any]]:
        """The seeded splits (``conid``, ``effective``, ``ratio``), of one conid or of all."""
        return [
            {"conid": c, "effective": day, "ratio": ratio}
            for c, events in sorted(self.market.splits.items())
            if conid is None or c == conid
            for day, ratio in events
        ]

    def is_delayed(self, conid: int) -> bool:
        """Whether ``conid``'s data is served delayed (history ``mdAvailability`` "D",
        snapshot 6509 "DpB", 15 minutes behind the clock)."""
        return self.market.is_delayed(conid)

    def futures(self, root_symbol: str) -> list[dict[str, Any]]:
        """The root's contract months listed now, as ``/trsrv/futures`` lists them (nearest
        first): conid, expiry, last trade date."""
        today = self.market.clock.now().date()
        return [
            {
                "conid": item.conid,
                "symbol": item.symbol,
                "underlying_conid": item.underlying_conid,
                "expiry": item.expiry,
                "last_trade_date": item.last_trade_date,
                "first_date": item.first_date,
            }
            for item in listed_months(root_symbol, today)
        ]

    def served_bars(self, params: Mapping[str, str]) -> pa.Table:
        """The clean bars one history request (raw query parameters) returns, after the
        1000-bar cap; an empty table for a request answered with an error."""
        try:
            request = parse_history_params(self.market, params)
        except HistoryRequestError:
            return bars_table(0, "", Bars.empty())
        start, end = self.history_window(params)
        status, body, _ = history_response_with_report(self.market, params)
        if status != 200 or "data" not in body:
            return bars_table(request.conid, request.bar.label, Bars.empty())
        bars = self.market.bars(
            request.conid, request.bar, start, end, request.outside_rth, limit=MAX_BARS
        )
        return bars_table(request.conid, request.bar.label, bars)

    def history_window(self, params: Mapping[str, str]) -> tuple[datetime, datetime]:
        """The [start, end) a history request covers. ValueError naming the problem for a
        request the server would refuse."""
        try:
            request = parse_history_params(self.market, params)
        except HistoryRequestError as exc:
            raise ValueError(f"the server refuses this request: {exc.body}") from None
        instrument = self.market.instrument(request.conid)
        return history_window(instrument, request.period, request.end, request.outside_rth)

    def corrupted_bars(self, params: Mapping[str, str], bad_data: BadDataSpec) -> list[Corruption]:
        """The rows a history response with ``bad_data`` carries corrupted, and how (positions
        in its ``data``, sorted). Replays the server's own deterministic draw."""
        _, _, report = history_response_with_report(self.market, params, bad_data)
        return report

    def quote(self, conid: int) -> dict[str, Any]:
        """The snapshot values of ``conid`` now, as plain numbers named like the
        ``SNAPSHOT_QUOTES`` columns (sizes and volume in shares; None where the snapshot has no
        value)."""
        quote = self.market.quote(conid)
        return {
            "conid": quote.conid,
            "updated": from_ms(quote.updated_ms),
            "symbol": quote.symbol,
            "last": quote.last,
            "bid": quote.bid,
            "ask": quote.ask,
            "last_size": quote.last_size,
            "bid_size": quote.bid_size,
            "ask_size": quote.ask_size,
            "volume": quote.volume,
            "open": quote.open,
            "high": quote.high,
            "low": quote.low,
            "close": quote.close,
            "prior_close": quote.prior_close,
            "change": quote.change,
            "change_pct": quote.change_pct,
            "last_is_close": quote.last_is_close,
            "halted": quote.halted,
            "market_data_availability": (
                quote.market_data_availability if quote.last is not None else None
            ),
        }


class SimulatorTruth(MarketTruth):
    """Market truth (inherited) and brokerage truth for one simulator run."""

    def __init__(self, market: Market, broker: Broker) -> None:
        super().__init__(market)
        self._broker = broker

    @property
    def accounts(self) -> list[str]:
        """Account ids, the trading (main) account first: the real accounts only (what
        /portfolio/accounts lists; an advisor login's sub-accounts included)."""
        return list(self._broker.account_ids)

    @property
    def account_groups(self) -> list[str]:
        """Groups /iserver/accounts lists on an advisor login (``All``, ``GROUP1``): not
        accounts."""
        return self._broker.groups

    @property
    def account_profiles(self) -> list[str]:
        """Allocation profiles/models /iserver/accounts lists on an advisor login: not
        accounts."""
        return self._broker.profiles

    def is_real_account(self, account_id: str) -> bool:
        """Whether ``account_id`` is a real account (positions, summary), not a group or
        profile."""
        return self._broker.has_account(account_id)

    @property
    def selected_account(self) -> str:
        """The ``selectedAccount`` /iserver/accounts answers (the main account)."""
        return self._broker.main_account_id

    def positions(self, account_id: str) -> list[dict[str, Any]]:
        """The account's positions now, sorted by conid (POSITIONS column names; shares)."""
        return self._broker.truth_positions(account_id)

    def cash(self, account_id: str) -> float:
        return self._broker.truth_cash(account_id)

    def summary(self, account_id: str) -> dict[str, float]:
        """The money amounts of the account summary now (``netliquidation``, ``totalcashvalue``,
        ``grosspositionvalue``, ...; the ``-s`` variants equal these, ``-c`` are zero)."""
        return self._broker.summary_values(account_id)

    def orders(self) -> list[dict[str, Any]]:
        """Every order of the run (LIVE_ORDERS column names), oldest first."""
        return self._broker.orders.truth_orders()
