"""Portfolio assets: ``accounts``, ``positions`` and ``account_summary``, from one client.

Why: research on a book needs what it held and what it was worth, as of known times. Each
materialisation takes an as-of snapshot (the clock's now) of every configured account (or of
every account the gateway lists when the universe names none): ``positions`` and
``account_summary`` partitions are per UTC date and account, and snapshots taken the same day
accumulate in them (keyed by ``as_of``).

Why one op for three assets: the gateway allows one ``/portfolio/accounts`` call per 5 seconds
and the client paces per event loop, so two assets with a client each, run back to back, could
prime the portfolio session twice within 5 seconds and open IBKR's 10-15 minute penalty box.
One subsettable multi-asset shares one client and primes once; selecting only ``positions``
still works.

A configured account the gateway does not list fails the run before any portfolio request,
naming the account and the gateway's accounts.
"""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.checks import contract_check_spec, quarantine_check_spec, write_results
from assets.metadata import column_schema
from assets.resources import IbkrClientResource, WarehouseResource
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.tables import ACCOUNT_SUMMARY, POSITIONS
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.store import Mode
from ib_pipeline.universe import Universe, resolve_accounts

ACCOUNTS_ASSET = "accounts"
POSITIONS_ASSET = "positions"
SUMMARY_ASSET = "account_summary"
PORTFOLIO_OP = "portfolio"
GROUP = "portfolio"

_DESCRIPTIONS = {
    ACCOUNTS_ASSET: "The brokerage accounts the gateway lists (/iserver/accounts); fails when "
    "an account of the universe is not among them.",
    POSITIONS_ASSET: "As-of snapshots of every position of each account (all pages); "
    "snapshots of a day accumulate in its partition.",
    SUMMARY_ASSET: "As-of snapshots of each account's summary (net liquidation, cash, "
    "margin...), one row per summary key.",
}


async def positions_table(client: IbkrClient, account: str, as_of: datetime) -> pa.Table:
    """Every position of ``account`` (all pages) as of ``as_of``."""
    pages = await client.all_positions(account)
    entries: list[Any] = []
    for page in pages:
        if not isinstance(page.payload, list):
            raise ValueError(
                f"positions of {account}: page {dict(page.params)} is not a list: "
                f"{page.payload!r:.200}"
            )
        entries.extend(page.payload)
    return normalize.positions(entries, account=account, as_of=as_of)


async def summary_table(client: IbkrClient, account: str, as_of: datetime) -> pa.Table:
    """The summary of ``account`` as of ``as_of``."""
    payload = await client.account_summary(account)
    return normalize.account_summary(payload, account=account, as_of=as_of)


@dataclass
class PortfolioSnapshot:
    """What one portfolio materialisation fetched."""

    accounts_table: pa.Table
    accounts: tuple[str, ...]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)


async def take_portfolio(
    client: IbkrClient, universe: Universe, as_of: datetime, wanted: set[str]
) -> PortfolioSnapshot:
    """The account list, then positions and summaries of the chosen accounts (as wanted)."""
    payload = await client.accounts()
    accounts_table = normalize.accounts(payload)
    listed = [str(a) for a in accounts_table.column("account_id").to_pylist()]
    chosen = resolve_accounts(universe, listed)
    snapshot = PortfolioSnapshot(accounts_table, chosen)
    if POSITIONS_ASSET in wanted:
        parts = [await positions_table(client, account, as_of) for account in chosen]
        snapshot.tables["positions"] = pa.concat_tables(parts) if parts else POSITIONS.empty_table()
    if SUMMARY_ASSET in wanted:
        parts = [await summary_table(client, account, as_of) for account in chosen]
        snapshot.tables["account_summary"] = (
            pa.concat_tables(parts) if parts else ACCOUNT_SUMMARY.empty_table()
        )
    snapshot.requests = dict(client.stats.requests)
    return snapshot


def build_portfolio_assets(universe: Universe) -> dg.AssetsDefinition:
    """The ``accounts``, ``positions`` and ``account_summary`` assets of ``universe``."""
    specs = [
        dg.AssetSpec(
            name,
            group_name=GROUP,
            kinds={"parquet"},
            deps=[] if name == ACCOUNTS_ASSET else [ACCOUNTS_ASSET],
            description=_DESCRIPTIONS[name],
            metadata={"dagster/column_schema": column_schema(DATASETS[dataset].schema)},
            skippable=True,
        )
        for name, dataset in (
            (ACCOUNTS_ASSET, "accounts"),
            (POSITIONS_ASSET, "positions"),
            (SUMMARY_ASSET, "account_summary"),
        )
    ]
    check_specs = [
        spec
        for name in (ACCOUNTS_ASSET, POSITIONS_ASSET, SUMMARY_ASSET)
        for spec in (contract_check_spec(name), quarantine_check_spec(name))
    ]

    @dg.multi_asset(name=PORTFOLIO_OP, specs=specs, check_specs=check_specs, can_subset=True)
    def portfolio(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)
        as_of = clock.now()
        wanted = {key.to_user_string() for key in context.selected_asset_keys}

        async def run() -> PortfolioSnapshot:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                return await take_portfolio(client, universe, as_of, wanted)

        snapshot = asyncio.run(run())
        # The account list is replaced whole; as-of snapshots accumulate (merge).
        outputs: list[tuple[str, str, pa.Table, Mode]] = []
        if ACCOUNTS_ASSET in wanted:
            outputs.append((ACCOUNTS_ASSET, "accounts", snapshot.accounts_table, "replace"))
        if POSITIONS_ASSET in wanted:
            outputs.append((POSITIONS_ASSET, "positions", snapshot.tables["positions"], "merge"))
        if SUMMARY_ASSET in wanted:
            outputs.append(
                (SUMMARY_ASSET, "account_summary", snapshot.tables["account_summary"], "merge")
            )
        for name, dataset, table, mode in outputs:
            result = store.write(
                dataset,
                table,
                source={"endpoint": dataset, "accounts": list(snapshot.accounts)},
                run_id=context.run.run_id,
                mode=mode,
            )
            yield from write_results(
                name,
                dataset,
                store,
                [result],
                labels=list(snapshot.accounts),
                requests=snapshot.requests,
                run_id=context.run.run_id,
                time_column=None if dataset == "accounts" else "as_of",
            )

    return portfolio
