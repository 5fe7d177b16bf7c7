"""ib-pipeline: a market-data warehouse loader for the Interactive Brokers Web API.

The public face, one import away and loaded on first use (so ``import ib_pipeline`` costs
nothing and never imports Dagster)::

    from ib_pipeline import Warehouse, connect, IbkrClient, SyncIbkrClient, Simulator, Store

- `connect`: a DuckDB connection with the warehouse's views (`ib_pipeline.warehouse`).
- `IbkrClient` / `SyncIbkrClient` / `ClientSettings`: the paced, retried API client
  (`ib_pipeline.ibkr`).
- `Simulator`: the bundled gateway simulator (`ib_pipeline.simulator`).
- `Store`: validated, partitioned Parquet writes (`ib_pipeline.storage.store`).
- `Warehouse`: the research API, by symbol, to pandas, polars or Arrow (`ib_pipeline.research`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ib_pipeline.lazy import lazy_exports

if TYPE_CHECKING:
    from ib_pipeline.ibkr.client import IbkrClient
    from ib_pipeline.ibkr.settings import ClientSettings
    from ib_pipeline.ibkr.sync import SyncIbkrClient
    from ib_pipeline.research import Warehouse
    from ib_pipeline.simulator.runner import Simulator
    from ib_pipeline.storage.store import Store
    from ib_pipeline.warehouse import connect

_EXPORTS: dict[str, str] = {
    "connect": "ib_pipeline.warehouse",
    "IbkrClient": "ib_pipeline.ibkr.client",
    "SyncIbkrClient": "ib_pipeline.ibkr.sync",
    "ClientSettings": "ib_pipeline.ibkr.settings",
    "Simulator": "ib_pipeline.simulator.runner",
    "Store": "ib_pipeline.storage.store",
    "Warehouse": "ib_pipeline.research",
}

__all__ = [
    "ClientSettings",
    "IbkrClient",
    "Simulator",
    "Store",
    "SyncIbkrClient",
    "Warehouse",
    "connect",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
