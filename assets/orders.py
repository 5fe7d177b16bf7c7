"""The ``orders`` asset: the live orders of the gateway session, as of each materialisation.

Why: which orders were working (and how far filled) at the end of each day is part of the
book's history. Each materialisation asks the gateway for its live orders (polling past the
first empty ``snapshot: false`` answer of a fresh session, as the client does) and adds them,
stamped with the as-of time, to ``orders/date=<UTC date>``. It never places or cancels an order.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.checks import contract_check_spec, quarantine_check_spec, write_results
from assets.metadata import column_schema
from assets.portfolio import ACCOUNTS_ASSET
from assets.resources import IbkrClientResource, WarehouseResource
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr import normalize
from ib_pipeline.storage.datasets import DATASETS

ORDERS_ASSET = "orders"
GROUP = "portfolio"


def build_orders_asset() -> dg.AssetsDefinition:
    """The ``orders`` asset."""

    @dg.asset(
        name=ORDERS_ASSET,
        group_name=GROUP,
        deps=[ACCOUNTS_ASSET],
        kinds={"parquet"},
        metadata={"dagster/column_schema": column_schema(DATASETS["orders"].schema)},
        check_specs=[contract_check_spec(ORDERS_ASSET), quarantine_check_spec(ORDERS_ASSET)],
        description="Live orders of the gateway session (/iserver/account/orders), stamped "
        "with the as-of time of each materialisation.",
    )
    def orders(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)
        as_of = clock.now()

        async def run() -> tuple[pa.Table, dict[str, int]]:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                response = await client.live_orders_settled()
                return normalize.live_orders(response.payload), dict(client.stats.requests)

        table, requests = asyncio.run(run())
        result = store.write(
            "orders",
            table,
            source={"endpoint": "live_orders"},
            run_id=context.run.run_id,
            as_of=as_of,
        )
        accounts = sorted({str(a) for a in table.column("account").to_pylist()})
        yield from write_results(
            ORDERS_ASSET,
            "orders",
            store,
            [result],
            labels=accounts,
            requests=requests,
            run_id=context.run.run_id,
            time_column="as_of",
        )

    return orders
