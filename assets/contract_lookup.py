"""The universe's instruments resolved to contract ids: searched, or read back from the store.

Why apart from the ``contracts`` asset: every loader (bars, quotes, the benchmark's baseline)
needs the conids, with or without Dagster. `search_instruments` asks the gateway's contract
search and picks each instrument's contract (`ib_pipeline.universe.resolve_contract`), failing
with one error that names every symbol that did not resolve; `resolved_contracts` reads the
stored ``contracts`` dataset and searches only what it lacks (an instrument added to the
universe since), so no loader runs on a stale or missing mapping.

With ``include_positions: true`` in the universe, both add the instruments the accounts hold
(`held_instruments`): the distinct conids of the latest stored ``positions`` snapshot of each
account (of the universe's accounts, when it names some), after the configured instruments and
never duplicating them. A held conid is looked up by conid in the stored ``contracts``, else
searched by its symbol (the position's ``contract_desc``); the contract whose conid is the
held conid is taken, with the security type and listing exchange of the search answer, and its
trading hours from `ib_pipeline.calendars`. Held instruments that cannot be loaded are skipped
with one warning naming them and why: a security type the calendars do not know (options,
bonds...), an exchange they do not know, or a conid the search does not return. Before the
positions have been read (no stored snapshot) nothing is added.

Never writes and never imports dagster; requests go through the client the caller opened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from ib_pipeline import futures
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.storage.store import Store
from ib_pipeline.universe import (
    SEC_TYPES,
    InstrumentConfig,
    ResolvedContract,
    Universe,
    UniverseError,
    check_symbol,
    resolve_contract,
)

log = logging.getLogger(__name__)

SKIPPED_NAMED = 12
"""How many skipped held instruments the warning names per reason (then: "and N more")."""


async def search_instruments(
    client: IbkrClient,
    instruments: Sequence[InstrumentConfig],
    *,
    history: tuple[date, date | None] | None = None,
) -> tuple[list[ResolvedContract], pa.Table]:
    """Search every instrument (concurrently; the client paces) and resolve each to a conid.

    Returns the resolved contracts and their contract rows (`tables.CONTRACTS`), in universe
    order. Raises `UniverseError` naming every instrument that did not resolve.

    A futures root with ``roll:`` resolves to its contract months in force during ``history``
    (history start and end, None for today; `ib_pipeline.futures.resolve_root`), each a
    contract of its own, instead of the root's conid.
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
        if instrument.roll is not None:
            try:
                months, month_rows = await _months(client, instrument, conid, history)
            except UniverseError as error:
                problems.append(str(error))
                continue
            resolved.extend(months)
            rows.append(normalize.complete_contracts(month_rows, exchange=instrument.exchange))
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


async def _months(
    client: IbkrClient,
    instrument: InstrumentConfig,
    root_conid: int,
    history: tuple[date, date | None] | None,
) -> tuple[list[ResolvedContract], pa.Table]:
    today = client.clock.now().date()
    first, end = history if history is not None else (today, None)
    last = min(end, today) if end is not None else today
    return await futures.resolve_root(client, instrument, root_conid, first=first, last=last)


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
    columns = ["conid", "symbol", "sec_type", "expiry"] if "expiry" in table.column_names else None
    for row in table.select(columns or ["conid", "symbol", "sec_type"]).to_pylist():
        if row.get("expiry") and row["sec_type"] == "FUT":
            continue  # a contract month of a rolled root, never the answer for a symbol
        index.setdefault((str(row["symbol"]).upper(), row["sec_type"]), int(row["conid"]))
    found: list[ResolvedContract] = []
    missing: list[InstrumentConfig] = []
    for instrument in universe.instruments:
        if instrument.roll is not None:
            # A rolled root is resolved to its months again on every run (the month in force
            # moves with the clock; `ib_pipeline.futures`): a few requests per root.
            missing.append(instrument)
            continue
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
    """Every instrument's contract: from the store, searching only those it lacks; then, with
    ``include_positions``, the held instruments that are not configured (module doc)."""
    found, missing = stored_contracts(store, universe)
    if missing:
        history = (universe.history_start, universe.history_end)
        searched, _ = await search_instruments(client, missing, history=history)
        found.extend(searched)
    order = {item: position for position, item in enumerate(universe.instruments)}
    configured = sorted(found, key=lambda c: order[c.instrument])
    if not universe.include_positions:
        return configured
    held, _ = await held_instruments(client, store, universe, configured)
    return [*configured, *held]


async def universe_contracts(
    client: IbkrClient, store: Store, universe: Universe
) -> tuple[list[ResolvedContract], pa.Table]:
    """What the ``contracts`` asset stores: every configured instrument searched (as
    `search_instruments`), then, with ``include_positions``, the held instruments that are not
    configured (module doc); contracts and their rows, in that order."""
    history = (universe.history_start, universe.history_end)
    resolved, table = await search_instruments(client, universe.instruments, history=history)
    if not universe.include_positions:
        return resolved, table
    held, rows = await held_instruments(client, store, universe, resolved, search_all=True)
    return [*resolved, *held], pa.concat_tables([table, rows])


@dataclass(frozen=True)
class HeldPosition:
    """A conid held in an account's latest stored positions snapshot."""

    conid: int
    description: str | None
    asset_class: str | None
    accounts: tuple[str, ...]


def held_positions(store: Store, universe: Universe) -> list[HeldPosition]:
    """The distinct conids of the latest stored positions snapshot of each account (only the
    universe's accounts when it names some; rows with a zero position or conid 0 excluded), by
    conid."""
    table = store.read("positions")
    if table.num_rows == 0:
        return []
    columns = ["account", "as_of", "conid", "contract_desc", "asset_class", "position"]
    rows = table.select(columns).to_pylist()
    latest: dict[str, datetime] = {}
    for row in rows:
        account = str(row["account"])
        if universe.accounts and account not in universe.accounts:
            continue
        if account not in latest or row["as_of"] > latest[account]:
            latest[account] = row["as_of"]
    held: dict[int, HeldPosition] = {}
    for row in rows:
        account = str(row["account"])
        if latest.get(account) != row["as_of"] or not row["conid"] or not row["position"]:
            continue
        conid = int(row["conid"])
        before = held.get(conid)
        accounts = (*before.accounts, account) if before else (account,)
        held[conid] = HeldPosition(conid, row["contract_desc"], row["asset_class"], accounts)
    return [held[conid] for conid in sorted(held)]


async def held_instruments(
    client: IbkrClient,
    store: Store,
    universe: Universe,
    configured: Sequence[ResolvedContract],
    *,
    search_all: bool = False,
) -> tuple[list[ResolvedContract], pa.Table]:
    """The held instruments (`held_positions`) that are not among ``configured``, resolved
    (module doc), by symbol, with their contract rows; the others skipped with one warning.

    A held conid found in the stored ``contracts`` is not searched again, unless
    ``search_all`` (the ``contracts`` asset refreshes every row it stores)."""
    taken = {c.conid for c in configured}
    keys = {(c.instrument.symbol, c.instrument.sec_type) for c in configured}
    wanted = [h for h in held_positions(store, universe) if h.conid not in taken]
    if not wanted:
        return [], CONTRACTS.empty_table()
    skipped: dict[str, list[str]] = {}
    stored = {} if search_all else _stored_by_conid(store, {h.conid for h in wanted})
    to_search: list[tuple[HeldPosition, str]] = []
    for position in wanted:
        sec_type = (position.asset_class or "").upper()
        if sec_type and sec_type not in SEC_TYPES:
            skipped.setdefault(f"{sec_type}: no trading calendar", []).append(_name(position))
        elif position.conid in stored:
            continue
        else:
            try:
                to_search.append((position, check_symbol(position.description, "positions")))
            except UniverseError:
                skipped.setdefault("no symbol to search", []).append(_name(position))
    payloads = await asyncio.gather(
        *(client.search_contracts(symbol, sec_type=p.asset_class) for p, symbol in to_search)
    )
    answers = dict(stored)
    for (position, _), payload in zip(to_search, payloads, strict=True):
        candidates = normalize.contracts(payload)
        row = candidates.filter(pc.equal(candidates.column("conid"), position.conid))
        if row.num_rows == 0:
            reason = "the contract search by symbol does not return its conid"
            skipped.setdefault(reason, []).append(_name(position))
        else:
            answers[position.conid] = row.slice(0, 1)
    resolved: list[ResolvedContract] = []
    rows: list[pa.Table] = []
    for position in wanted:
        row = answers.get(position.conid)
        if row is None:
            continue
        found = row.to_pylist()[0]
        try:
            instrument = InstrumentConfig(found["symbol"], found["sec_type"], found["exchange"])
        except ValueError as error:
            skipped.setdefault(_reason(error), []).append(_name(position))
            continue
        if (instrument.symbol, instrument.sec_type) in keys:
            reason = f"another {instrument.label} is configured"
            skipped.setdefault(reason, []).append(_name(position))
            continue
        keys.add((instrument.symbol, instrument.sec_type))
        resolved.append(ResolvedContract(instrument, position.conid, found["description"]))
        if position.conid not in stored:
            row = normalize.complete_contracts(row, exchange=instrument.exchange)
        rows.append(row)
    if skipped:
        log.warning("include_positions: %s", skipped_message(skipped))
    order = sorted(range(len(resolved)), key=lambda i: (resolved[i].symbol, resolved[i].conid))
    table = pa.concat_tables([rows[i] for i in order]) if rows else CONTRACTS.empty_table()
    return [resolved[i] for i in order], table


def skipped_message(skipped: dict[str, list[str]]) -> str:
    """``N held instrument(s) not loaded: <reason>: <names> (and N more); ...``."""
    total = sum(len(names) for names in skipped.values())
    parts = []
    for reason, names in skipped.items():
        shown = ", ".join(names[:SKIPPED_NAMED])
        more = f" and {len(names) - SKIPPED_NAMED} more" if len(names) > SKIPPED_NAMED else ""
        parts.append(f"{len(names)} with {reason}: {shown}{more}")
    return f"{total} held instrument(s) not loaded: " + "; ".join(parts)


def _stored_by_conid(store: Store, conids: set[int]) -> dict[int, pa.Table]:
    table = store.read("contracts")
    found: dict[int, pa.Table] = {}
    for index, conid in enumerate(table.column("conid").to_pylist() if table.num_rows else []):
        if conid in conids and conid not in found:
            found[int(conid)] = table.slice(index, 1)
    return found


def _name(position: HeldPosition) -> str:
    """``AAPL DEC2025 136 C (conid 880000002)``: the description without IBKR's bracketed
    local symbol."""
    description = (position.description or "?").split(" [", 1)[0]
    return f"{description} (conid {position.conid})"


def _reason(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        messages = [str(e.get("ctx", {}).get("error", e["msg"])) for e in error.errors()]
        return "; ".join(messages)
    return str(error).split("; known:")[0]
