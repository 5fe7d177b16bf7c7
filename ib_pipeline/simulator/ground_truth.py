"""Ground truth of a simulator run: what a correct loader must end up with.

`SimulatorTruth` is the market's truth (`MarketTruth`: history bars, quotes, which bars bad data
corrupted) plus the broker's (positions, cash, summary amounts, orders), read straight from the
simulator's state, never through HTTP. Tests compare a loader's normalised tables with it.
"""

from __future__ import annotations

from typing import Any

from ib_pipeline.simulator.broker import Broker
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.truth import MarketTruth


class SimulatorTruth(MarketTruth):
    """Market truth (inherited) and brokerage truth for one simulator run."""

    def __init__(self, market: Market, broker: Broker) -> None:
        super().__init__(market)
        self._broker = broker

    @property
    def accounts(self) -> list[str]:
        """Account ids, the trading (main) account first."""
        return list(self._broker.account_ids)

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
