"""The ``quotes`` asset: a market snapshot of every instrument; each materialisation adds one.

Every materialisation snapshots the whole universe (the client handles the gateway's pre-flight
and batches of 100 conids) and stores each answer as its own file under
``quotes/date=<UTC date>/``: snapshots accumulate, a re-run never rewrites an earlier one.
Sizes are normalised per instrument's lot size (US stocks are quoted in lots of 100).
"""

from __future__ import annotations

import dagster as dg

from assets.contracts import CONTRACTS_ASSET
from assets.snapshot_factory import FetchScope, SnapshotSpec, build_snapshot_assets
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.ibkr.snapshots import DEFAULT_FIELDS
from ib_pipeline.universe import Universe

QUOTES_ASSET = "quotes"
GROUP = "market"


async def fetch_quotes(scope: FetchScope) -> list[RawResponse]:
    """One complete snapshot answer per batch of instruments."""
    contracts = await scope.resolved()
    return await scope.client.snapshots([c.conid for c in contracts], DEFAULT_FIELDS)


QUOTES = SnapshotSpec(
    name=QUOTES_ASSET,
    dataset="quotes",
    description="A market snapshot of every instrument of the universe; each materialisation "
    "adds one snapshot file.",
    fetch=fetch_quotes,
    deps=(CONTRACTS_ASSET,),
    time_column="updated",
)


def build_quotes_asset(universe: Universe) -> dg.AssetsDefinition:
    """The ``quotes`` asset of ``universe``."""
    return build_snapshot_assets(QUOTES_ASSET, [QUOTES], universe, group=GROUP)
