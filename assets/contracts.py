"""The ``contracts`` asset: the universe's symbols resolved to IBKR contract ids.

Why: every other dataset is keyed by conid, and which conid a symbol means is the gateway's
answer, not ours. This asset searches each configured instrument (symbol, security type,
exchange), picks the matching contract (`ib_pipeline.universe.resolve_contract`), and stores
one row per instrument in the ``contracts`` dataset, replaced whole at each materialisation.
A symbol the gateway does not know fails the run, naming every such symbol.

Downstream assets (bars, quotes) read the resolved conids back from the store
(`assets.contract_lookup.resolved_contracts`); an instrument added to the universe since the
last materialisation is searched on the fly, so they never run on a stale mapping.

Assets never build HTTP clients: they get one from the ``ibkr`` resource.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.checks import contract_check_spec, quarantine_check_spec, write_results
from assets.contract_lookup import universe_contracts
from assets.metadata import column_schema
from assets.resources import IbkrClientResource, WarehouseResource
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.universe import ResolvedContract, Universe

CONTRACTS_ASSET = "contracts"
GROUP = "reference"


def build_contracts_asset(universe: Universe) -> dg.AssetsDefinition:
    """The ``contracts`` asset of ``universe``."""

    @dg.asset(
        name=CONTRACTS_ASSET,
        group_name=GROUP,
        kinds={"parquet"},
        description=(
            "The universe's instruments resolved through the gateway's contract search: one "
            "row per instrument (conid, symbol, security type, names, exchanges)."
        ),
        metadata={"dagster/column_schema": column_schema(CONTRACTS, "contracts")},
        check_specs=[
            contract_check_spec(CONTRACTS_ASSET),
            quarantine_check_spec(CONTRACTS_ASSET),
        ],
    )
    def contracts(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)

        async def fetch() -> tuple[list[ResolvedContract], pa.Table, dict[str, int]]:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                resolved, table = await universe_contracts(client, store, universe)
                return resolved, table, dict(client.stats.requests)

        resolved, table, requests = asyncio.run(fetch())
        result = store.write(
            "contracts",
            table,
            source={"endpoint": "contract_search", "universe": universe.source},
            run_id=context.run.run_id,
            mode="replace",
        )
        yield from write_results(
            CONTRACTS_ASSET,
            "contracts",
            store,
            [result],
            labels=[c.symbol for c in resolved],
            requests=requests,
            run_id=context.run.run_id,
            time_column=None,
        )

    return contracts
