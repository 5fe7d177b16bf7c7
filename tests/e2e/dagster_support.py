"""Shared pieces of the Dagster end-to-end tests (a plain module, imported by name: test
modules must not import ``conftest``, which is ambiguous across the suite's folders)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from ib_pipeline.storage.store import Store
from ib_pipeline.universe import Universe

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

SMALL_UNIVERSE: dict[str, Any] = {
    "history_start": "2024-10-01",
    "bar_sizes": ["1min", "1d"],
    "instruments": [
        {"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ"},
        {"symbol": "SPY", "sec_type": "STK", "exchange": "ARCA"},
        {"symbol": "EUR.USD", "sec_type": "CASH", "exchange": "IDEALPRO"},
    ],
}
"""Two US stocks (lots of 100, NYSE calendar) and a forex pair (units, 24/5 calendar)."""


@dataclass
class Pipeline:
    """The definitions under test and what they point at."""

    sim: Simulator
    universe: Universe
    defs: dg.Definitions
    root: Path

    def store(self) -> Store:
        return Store(self.root, clock=self.sim.clock)
