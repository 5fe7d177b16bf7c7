"""The ``quotes`` asset: a market snapshot of every instrument; each materialisation adds one.

Why: researchers want the quote at the moments the loader looked (last, bid, ask, sizes,
day's range) next to the bars. Every materialisation takes one snapshot of the whole universe
(the client handles the gateway's pre-flight and batching) and stores it as its own file
``quotes/date=<UTC date>/snapshot-<time>.parquet``: snapshots accumulate, a re-run never
rewrites an earlier one.

The gateway reports US stock sizes in lots of 100 and everything else in units, so instruments
are snapshotted in one call per lot size and each answer normalised with its own lot size.
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.checks import contract_check_spec, quarantine_check_spec, write_results
from assets.contract_lookup import resolved_contracts
from assets.contracts import CONTRACTS_ASSET
from assets.metadata import column_schema
from assets.resources import IbkrClientResource, WarehouseResource
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.snapshots import DEFAULT_FIELDS
from ib_pipeline.ibkr.tables import SNAPSHOT_QUOTES
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.store import Store, WriteResult
from ib_pipeline.universe import ResolvedContract, Universe

QUOTES_ASSET = "quotes"
GROUP = "market"


@dataclass(frozen=True)
class Snapshot:
    contracts: list[ResolvedContract]
    table: pa.Table
    requests: dict[str, int]


async def take_snapshot(
    client: IbkrClient, store: Store, universe: Universe, as_of: datetime
) -> Snapshot:
    """Quotes of every instrument of ``universe``, one snapshot call per lot size."""
    contracts = await resolved_contracts(client, store, universe)
    by_lot: dict[int, list[ResolvedContract]] = {}
    for contract in contracts:
        by_lot.setdefault(contract.lot_size, []).append(contract)
    tables: list[pa.Table] = []
    for lot_size, group in sorted(by_lot.items()):
        responses = await client.snapshots([c.conid for c in group], DEFAULT_FIELDS)
        tables.extend(
            normalize.snapshot_quotes(r.payload, lot_size=lot_size, fallback_updated=as_of)
            for r in responses
        )
    table = pa.concat_tables(tables) if tables else SNAPSHOT_QUOTES.empty_table()
    return Snapshot(contracts, table, dict(client.stats.requests))


def write_snapshot(store: Store, snapshot: Snapshot, as_of: datetime, run_id: str) -> WriteResult:
    return store.write(
        "quotes",
        snapshot.table,
        source={"endpoint": "snapshot", "conids": len(snapshot.contracts)},
        run_id=run_id,
        as_of=as_of,
    )


def build_quotes_asset(universe: Universe) -> dg.AssetsDefinition:
    """The ``quotes`` asset of ``universe``."""

    @dg.asset(
        name=QUOTES_ASSET,
        group_name=GROUP,
        deps=[CONTRACTS_ASSET],
        kinds={"parquet"},
        metadata={"dagster/column_schema": column_schema(DATASETS["quotes"].schema)},
        check_specs=[contract_check_spec(QUOTES_ASSET), quarantine_check_spec(QUOTES_ASSET)],
        description="A market snapshot of every instrument of the universe; each "
        "materialisation adds one snapshot file.",
    )
    def quotes(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)
        as_of = clock.now()

        async def run() -> Snapshot:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                return await take_snapshot(client, store, universe, as_of)

        snapshot = asyncio.run(run())
        result = write_snapshot(store, snapshot, as_of, context.run.run_id)
        yield from write_results(
            QUOTES_ASSET,
            "quotes",
            store,
            [result],
            labels=[c.symbol for c in snapshot.contracts],
            requests=snapshot.requests,
            run_id=context.run.run_id,
            time_column="updated",
        )

    return quotes
