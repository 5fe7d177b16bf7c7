"""The ``orders`` asset: the live orders of the gateway session, as of each materialisation.

Each materialisation asks for the live orders (polling past the first empty ``snapshot: false``
answer of a fresh session, as the client does) and adds them, stamped with the as-of time, to
``orders/date=<UTC date>``. It never places or cancels an order.
"""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from assets.portfolio import ACCOUNTS_ASSET
from assets.snapshot_factory import FetchScope, SnapshotSpec, build_snapshot_assets
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.universe import Universe

ORDERS_ASSET = "orders"
GROUP = "portfolio"


async def fetch_orders(scope: FetchScope) -> list[RawResponse]:
    return [await scope.client.live_orders_settled()]


def order_accounts(table: pa.Table) -> list[str]:
    return sorted({str(a) for a in table.column("account").to_pylist()})


ORDERS = SnapshotSpec(
    name=ORDERS_ASSET,
    dataset="orders",
    description="Live orders of the gateway session (/iserver/account/orders), stamped with "
    "the as-of time of each materialisation.",
    fetch=fetch_orders,
    deps=(ACCOUNTS_ASSET,),
    labels=order_accounts,
)


def build_orders_asset(universe: Universe) -> dg.AssetsDefinition:
    """The ``orders`` asset."""
    return build_snapshot_assets(ORDERS_ASSET, [ORDERS], universe, group=GROUP)
