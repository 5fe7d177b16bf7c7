"""The ``contracts`` asset: the universe's symbols resolved to IBKR contract ids.

Why: every other dataset is keyed by conid, and which conid a symbol means is the gateway's
answer, not ours. This asset searches each configured instrument (symbol, security type,
exchange), picks the matching contract (`ib_pipeline.universe.resolve_contract`), and stores
one row per instrument in the ``contracts`` dataset, replaced whole at each materialisation.
A symbol the gateway does not know fails the run, naming every such symbol.

Downstream assets (bars, quotes) read the resolved conids back from the store
(`resolved_contracts`); an instrument added to the universe since the last materialisation is
searched on the fly, so they never run on a stale mapping.

Assets never build HTTP clients: they get one from the ``ibkr`` resource.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.clock import Clock
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.resources import IbkrClientResource
from ib_pipeline.store import Store
from ib_pipeline.universe import (
    InstrumentConfig,
    ResolvedContract,
    Universe,
    UniverseError,
    resolve_contract,
)

from assets.checks import contract_check_result, contract_check_spec
from assets.metadata import column_schema, load_metadata
from assets.store_resource import WarehouseResource

CONTRACTS_ASSET = "contracts"
GROUP = "reference"


async def search_instruments(
    client: IbkrClient, instruments: Sequence[InstrumentConfig]
) -> tuple[list[ResolvedContract], pa.Table]:
    """Search every instrument (concurrently; the client paces) and resolve each to a conid.

    Returns the resolved contracts and their contract rows (`tables.CONTRACTS`), in universe
    order. Raises `UniverseError` naming every instrument that did not resolve.
    """
    payloads = await asyncio.gather(
        *(client.search_contracts(i.symbol, sec_type=i.sec_type) for i in instruments)
    )
    resolved: list[ResolvedContract] = []
    rows: list[pa.Table] = []
    problems: list[str] = []
    for instrument, payload in zip(instruments, payloads, strict=True):
        candidates = normalize.contracts(payload)
        try:
            conid = resolve_contract(instrument, candidates)
        except UniverseError as error:
            problems.append(str(error))
            continue
        row = candidates.filter(pc.equal(candidates.column("conid"), conid)).slice(0, 1)
        resolved.append(ResolvedContract(instrument, conid, _first(row, "description")))
        rows.append(row)
    if problems:
        raise UniverseError(
            f"{len(problems)} instrument(s) of the universe did not resolve: " + "; ".join(problems)
        )
    table = pa.concat_tables(rows) if rows else CONTRACTS.empty_table()
    return resolved, table


def _first(table: pa.Table, column: str) -> str | None:
    if table.num_rows == 0:
        return None
    value = table.column(column)[0].as_py()
    return None if value is None else str(value)


def stored_contracts(
    store: Store, universe: Universe
) -> tuple[list[ResolvedContract], list[InstrumentConfig]]:
    """The universe's instruments found in the stored ``contracts`` dataset, and those not
    found there (never materialised, or added to the universe since)."""
    table = store.read("contracts")
    index: dict[tuple[str, str | None], int] = {}
    for row in table.select(["conid", "symbol", "sec_type"]).to_pylist():
        index.setdefault((str(row["symbol"]).upper(), row["sec_type"]), int(row["conid"]))
    found: list[ResolvedContract] = []
    missing: list[InstrumentConfig] = []
    for instrument in universe.instruments:
        conid = index.get((instrument.symbol, instrument.sec_type))
        if conid is None:
            conid = index.get((instrument.symbol, None))
        if conid is None:
            missing.append(instrument)
        else:
            found.append(ResolvedContract(instrument, conid, None))
    return found, missing


async def resolved_contracts(
    client: IbkrClient, store: Store, universe: Universe
) -> list[ResolvedContract]:
    """Every instrument's contract: from the store, searching only those it lacks."""
    found, missing = stored_contracts(store, universe)
    if missing:
        searched, _ = await search_instruments(client, missing)
        found.extend(searched)
    order = {item: position for position, item in enumerate(universe.instruments)}
    return sorted(found, key=lambda c: order[c.instrument])


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
        metadata={"dagster/column_schema": column_schema(CONTRACTS)},
        check_specs=[contract_check_spec(CONTRACTS_ASSET)],
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
                resolved, table = await search_instruments(client, universe.instruments)
                return resolved, table, dict(client.stats.requests)

        resolved, table, requests = asyncio.run(fetch())
        result = store.write(
            "contracts",
            table,
            source={"endpoint": "contract_search", "universe": universe.source},
            run_id=context.run_id,
            mode="replace",
        )
        stored = store.read("contracts")
        yield dg.MaterializeResult(
            metadata=load_metadata(
                result,
                instruments=[c.symbol for c in resolved],
                requests=requests,
                preview=stored,
                time_column=None,
            )
        )
        yield contract_check_result(CONTRACTS_ASSET, "contracts", stored, result, clock)

    return contracts
