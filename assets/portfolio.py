"""Portfolio assets: ``accounts``, ``positions`` and ``account_summary``.

Why: research on a book needs what it held and what it was worth, as of known times. Each
materialisation takes an as-of snapshot (the clock's now) of every configured account (or of
every account the gateway lists when the universe names none) and adds it to the warehouse:
``positions`` and ``account_summary`` partitions are per UTC date and account, and snapshots
taken the same day accumulate in them (keyed by ``as_of``).

A configured account the gateway does not list fails the run before any portfolio request,
naming the account and the gateway's accounts.
"""

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.checks import contract_check_spec, quarantine_check_spec, write_results
from assets.metadata import column_schema
from assets.store_resource import WarehouseResource
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.tables import ACCOUNT_SUMMARY, POSITIONS
from ib_pipeline.resources import IbkrClientResource
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.universe import Universe, resolve_accounts

ACCOUNTS_ASSET = "accounts"
POSITIONS_ASSET = "positions"
SUMMARY_ASSET = "account_summary"
GROUP = "portfolio"


async def listed_accounts(client: IbkrClient) -> tuple[Any, list[str]]:
    """``/iserver/accounts`` as sent, and the account ids it lists."""
    payload = await client.accounts()
    table = normalize.accounts(payload)
    return payload, [str(a) for a in table.column("account_id").to_pylist()]


async def accounts_to_snapshot(client: IbkrClient, universe: Universe) -> tuple[str, ...]:
    """The universe's accounts, checked against the gateway's list (all listed if none)."""
    _, listed = await listed_accounts(client)
    return resolve_accounts(universe, listed)


async def positions_table(client: IbkrClient, account: str, as_of: datetime) -> pa.Table:
    """Every position of ``account`` (all pages) as of ``as_of``."""
    pages = await client.all_positions(account)
    entries: list[Any] = []
    for page in pages:
        if not isinstance(page.payload, list):
            raise ValueError(
                f"positions of {account}: page {page.params} is not a list: {page.payload!r:.200}"
            )
        entries.extend(page.payload)
    return normalize.positions(entries, account=account, as_of=as_of)


async def summary_table(client: IbkrClient, account: str, as_of: datetime) -> pa.Table:
    """The summary of ``account`` as of ``as_of``."""
    payload = await client.account_summary(account)
    return normalize.account_summary(payload, account=account, as_of=as_of)


PerAccount = Callable[[IbkrClient, str, datetime], Coroutine[Any, Any, pa.Table]]


@dataclass(frozen=True)
class AccountTables:
    accounts: tuple[str, ...]
    table: pa.Table
    requests: dict[str, int]


def _per_account_asset(
    name: str,
    dataset: str,
    *,
    schema: pa.Schema,
    fetch: PerAccount,
    universe: Universe,
    doc: str,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name=GROUP,
        deps=[ACCOUNTS_ASSET],
        kinds={"parquet"},
        metadata={"dagster/column_schema": column_schema(DATASETS[dataset].schema)},
        check_specs=[contract_check_spec(name), quarantine_check_spec(name)],
        description=doc,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)
        as_of = clock.now()

        async def run() -> AccountTables:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                accounts = await accounts_to_snapshot(client, universe)
                tables = [await fetch(client, account, as_of) for account in accounts]
                table = pa.concat_tables(tables) if tables else schema.empty_table()
                return AccountTables(accounts, table, dict(client.stats.requests))

        got = asyncio.run(run())
        result = store.write(
            dataset,
            got.table,
            source={"endpoint": dataset, "accounts": list(got.accounts)},
            run_id=context.run_id,
        )
        yield from write_results(
            name,
            dataset,
            store,
            [result],
            labels=list(got.accounts),
            requests=got.requests,
            run_id=context.run_id,
            time_column="as_of",
        )

    return _asset


def build_portfolio_assets(universe: Universe) -> list[dg.AssetsDefinition]:
    """``accounts``, ``positions`` and ``account_summary`` of ``universe``."""

    @dg.asset(
        name=ACCOUNTS_ASSET,
        group_name=GROUP,
        kinds={"parquet"},
        metadata={"dagster/column_schema": column_schema(DATASETS["accounts"].schema)},
        check_specs=[contract_check_spec(ACCOUNTS_ASSET), quarantine_check_spec(ACCOUNTS_ASSET)],
        description="The brokerage accounts the gateway lists (/iserver/accounts); fails when "
        "an account of the universe is not among them.",
    )
    def accounts(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)

        async def run() -> tuple[pa.Table, tuple[str, ...], dict[str, int]]:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                payload, listed = await listed_accounts(client)
                chosen = resolve_accounts(universe, listed)
                return normalize.accounts(payload), chosen, dict(client.stats.requests)

        table, chosen, requests = asyncio.run(run())
        result = store.write(
            "accounts",
            table,
            source={"endpoint": "accounts"},
            run_id=context.run_id,
            mode="replace",
        )
        yield from write_results(
            ACCOUNTS_ASSET,
            "accounts",
            store,
            [result],
            labels=list(chosen),
            requests=requests,
            run_id=context.run_id,
            time_column=None,
        )

    positions = _per_account_asset(
        POSITIONS_ASSET,
        "positions",
        schema=POSITIONS,
        fetch=positions_table,
        universe=universe,
        doc="As-of snapshots of every position of each account (all pages); snapshots of a day "
        "accumulate in its partition.",
    )
    summary = _per_account_asset(
        SUMMARY_ASSET,
        "account_summary",
        schema=ACCOUNT_SUMMARY,
        fetch=summary_table,
        universe=universe,
        doc="As-of snapshots of each account's summary (net liquidation, cash, margin...), one row "
        "per summary key.",
    )
    return [accounts, positions, summary]
