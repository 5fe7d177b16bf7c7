"""Portfolio assets: ``accounts``, ``positions`` and ``account_summary``, from one op.

Each materialisation takes an as-of snapshot of every configured account (or of every account
the gateway lists when the universe names none); snapshots taken the same day accumulate in the
day's partition (keyed by ``as_of``). The three assets share one op and one client
(`assets.snapshot_factory`), so the portfolio session is primed once per run. A configured
account the gateway does not list fails the run before any portfolio request, naming it.
"""

from __future__ import annotations

import dagster as dg

from assets.snapshot_factory import FetchScope, SnapshotSpec, build_snapshot_assets
from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.universe import Universe

ACCOUNTS_ASSET = "accounts"
POSITIONS_ASSET = "positions"
SUMMARY_ASSET = "account_summary"
PORTFOLIO_OP = "portfolio"
GROUP = "portfolio"


async def fetch_accounts(scope: FetchScope) -> list[RawResponse]:
    await scope.accounts()  # checks the universe's accounts against the listing
    return [await scope.accounts_response()]


async def fetch_positions(scope: FetchScope) -> list[RawResponse]:
    """Every page of every chosen account's positions."""
    pages: list[RawResponse] = []
    for account in await scope.accounts():
        pages.extend(await scope.client.all_positions(account))
    return pages


async def fetch_summaries(scope: FetchScope) -> list[RawResponse]:
    return [
        await scope.client.call(ep.ACCOUNT_SUMMARY, path_params={"accountId": account})
        for account in await scope.accounts()
    ]


ACCOUNTS = SnapshotSpec(
    name=ACCOUNTS_ASSET,
    dataset="accounts",
    description="The brokerage accounts the gateway lists (/iserver/accounts); fails when an "
    "account of the universe is not among them.",
    fetch=fetch_accounts,
    mode="replace",
    time_column=None,
)
POSITIONS = SnapshotSpec(
    name=POSITIONS_ASSET,
    dataset="positions",
    description="As-of snapshots of every position of each account (all pages); snapshots of "
    "a day accumulate in its partition.",
    fetch=fetch_positions,
    deps=(ACCOUNTS_ASSET,),
)
SUMMARY = SnapshotSpec(
    name=SUMMARY_ASSET,
    dataset="account_summary",
    description="As-of snapshots of each account's summary (net liquidation, cash, margin...), "
    "one row per summary key.",
    fetch=fetch_summaries,
    deps=(ACCOUNTS_ASSET,),
)


def build_portfolio_assets(universe: Universe) -> dg.AssetsDefinition:
    """The ``accounts``, ``positions`` and ``account_summary`` assets of ``universe``."""
    return build_snapshot_assets(
        PORTFOLIO_OP, [ACCOUNTS, POSITIONS, SUMMARY], universe, group=GROUP
    )
