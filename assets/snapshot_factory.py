"""One factory for the snapshot-style assets: quotes, accounts, positions, account_summary, orders.

They differ only in data (`SnapshotSpec`: what to fetch, which dataset, how it is written), so
one op body serves them all: open one client, fetch the raw responses, turn them into store
batches with `ib_pipeline.conversion.to_batches` (the path replay takes, so a replay of the raw
zone rebuilds the same partitions), load them, and yield the materialisation with the usual
metadata and the ``contract`` and ``quarantine_empty`` results (`assets.checks.write_results`).

Specs built together share one op and one client (`build_snapshot_assets`): the portfolio's
three assets must, since ``/portfolio/accounts`` may be called once per 5 seconds and each
client primes the portfolio session. A subset (only ``positions``) still works.

Never calls the gateway outside the client, and never builds a client itself (the resource does).
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.checks import contract_check_spec, quarantine_check_spec, write_results
from assets.contract_lookup import resolved_contracts
from assets.metadata import column_schema
from assets.resources import IbkrClientResource, WarehouseResource
from ib_pipeline.clock import Clock
from ib_pipeline.conversion import InstrumentInfo, Resolver, to_batches
from ib_pipeline.ibkr import endpoints as ep
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.store import Batch, Mode, Store
from ib_pipeline.universe import ResolvedContract, Universe, resolve_accounts


@dataclass
class FetchScope:
    """What the specs of one op share while fetching: the open client, and what one spec
    looked up for another (the account list, the resolved contracts), fetched at most once."""

    client: IbkrClient
    store: Store
    universe: Universe
    contracts: list[ResolvedContract] | None = None
    _accounts: RawResponse | None = field(default=None, repr=False)
    _chosen: tuple[str, ...] = ()

    async def accounts_response(self) -> RawResponse:
        """``/iserver/accounts``, once per op."""
        if self._accounts is None:
            self._accounts = await self.client.call(ep.ACCOUNTS)
            # real accounts only: an advisor login also lists groups and profiles
            listing = await self.client.account_listing(self._accounts.payload)
            self._chosen = resolve_accounts(
                self.universe, listing.real, not_accounts=listing.not_accounts()
            )
        return self._accounts

    async def accounts(self) -> tuple[str, ...]:
        """The accounts to snapshot (the universe's, checked against the gateway's list)."""
        await self.accounts_response()
        return self._chosen

    async def resolved(self) -> list[ResolvedContract]:
        """The universe's contracts (from the store, searching what it lacks), once per op."""
        if self.contracts is None:
            self.contracts = await resolved_contracts(self.client, self.store, self.universe)
        return self.contracts

    def resolver(self) -> Resolver | None:
        """conid -> trading hours and lot size, when the contracts were looked up."""
        if self.contracts is None:
            return None
        known = {c.conid: InstrumentInfo(c.hours, float(c.lot_size)) for c in self.contracts}

        def resolve(conid: int) -> InstrumentInfo:
            if conid not in known:
                raise ValueError(f"conid {conid} is not an instrument of the universe")
            return known[conid]

        return resolve

    def labels(self) -> list[str]:
        """What the materialisation names: the instruments, else the accounts."""
        if self.contracts is not None:
            return [c.symbol for c in self.contracts]
        return list(self._chosen)


Fetch = Callable[[FetchScope], Awaitable[list[RawResponse]]]


@dataclass(frozen=True)
class SnapshotSpec:
    """One snapshot-style asset: its name, dataset and how its responses are fetched.

    ``mode``: how the store writes it (``merge``: snapshots accumulate by key; ``replace``: the
    dataset is replaced whole). ``time_column``: the column whose range the metadata shows.
    ``labels``: what the materialisation names, from the loaded table (default: the scope's).
    """

    name: str
    dataset: str
    description: str
    fetch: Fetch
    deps: tuple[str, ...] = ()
    mode: Mode = "merge"
    time_column: str | None = "as_of"
    labels: Callable[[pa.Table], list[str]] | None = None


def _asset_spec(spec: SnapshotSpec, group: str, subset: bool) -> dg.AssetSpec:
    return dg.AssetSpec(
        spec.name,
        group_name=group,
        kinds={"parquet"},
        deps=list(spec.deps),
        description=spec.description,
        metadata={
            "dagster/column_schema": column_schema(DATASETS[spec.dataset].schema, spec.dataset)
        },
        skippable=subset,
    )


def build_snapshot_assets(
    op_name: str, specs: Sequence[SnapshotSpec], universe: Universe, *, group: str
) -> dg.AssetsDefinition:
    """One op materialising ``specs`` (in their order) of ``universe``."""
    subset = len(specs) > 1
    check_specs = [
        check
        for spec in specs
        for check in (contract_check_spec(spec.name), quarantine_check_spec(spec.name))
    ]

    @dg.multi_asset(
        name=op_name,
        specs=[_asset_spec(spec, group, subset) for spec in specs],
        check_specs=check_specs,
        can_subset=subset,
    )
    def snapshot_op(
        context: dg.AssetExecutionContext,
        ibkr: IbkrClientResource,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> Iterator[Any]:
        store = warehouse.store(clock)
        wanted = {key.to_user_string() for key in context.selected_asset_keys}
        chosen = [spec for spec in specs if spec.name in wanted]

        async def fetch() -> tuple[FetchScope, list[list[RawResponse]], dict[str, int]]:
            async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                scope = FetchScope(client, store, universe)
                fetched = [await spec.fetch(scope) for spec in chosen]
                return scope, fetched, dict(client.stats.requests)

        scope, fetched, requests = asyncio.run(fetch())
        run_id = context.run.run_id
        for spec, responses in zip(chosen, fetched, strict=True):
            batches = to_batches(spec.dataset, responses, scope.resolver())
            result = store.load(spec.dataset, batches, run_id=run_id, mode=spec.mode)
            labels = spec.labels(_table(spec.dataset, batches)) if spec.labels else scope.labels()
            yield from write_results(
                spec.name,
                spec.dataset,
                store,
                [result],
                labels=labels,
                requests=requests,
                run_id=run_id,
                time_column=spec.time_column,
            )

    return snapshot_op


def _table(dataset: str, batches: Sequence[Batch]) -> pa.Table:
    if not batches:
        return DATASETS[dataset].empty()
    return pa.concat_tables([b.table for b in batches], promote_options="permissive")
