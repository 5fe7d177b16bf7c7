"""The universe's instruments resolved to contract ids: searched, or read back from the store.

Why apart from the ``contracts`` asset: every loader (bars, quotes, the benchmark's baseline)
needs the conids, with or without Dagster. `search_instruments` asks the gateway's contract
search and picks each instrument's contract (`ib_pipeline.universe.resolve_contract`), failing
with one error that names every symbol that did not resolve; `resolved_contracts` reads the
stored ``contracts`` dataset and searches only what it lacks (an instrument added to the
universe since), so no loader runs on a stale or missing mapping.

Never writes and never imports dagster; requests go through the client the caller opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.storage.store import Store
from ib_pipeline.universe import (
    InstrumentConfig,
    ResolvedContract,
    Universe,
    UniverseError,
    resolve_contract,
)


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
        row = normalize.complete_contracts(row, exchange=instrument.exchange)
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
