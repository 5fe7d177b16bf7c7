"""``include_positions: true``: the instruments the accounts hold join the configured ones
(`assets.contract_lookup`), resolved through the simulator's contract search by conid, never
duplicated, and those the calendars do not know (options) skipped with a warning naming them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from assets.contract_lookup import resolved_contracts, universe_contracts
from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.conversion import to_batches
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy
from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.storage.store import Store
from ib_pipeline.universe import ResolvedContract, Universe, UniverseError, parse_universe

AAPL = 265598


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    """The simulator with its pacing off: the client runs unpaced (`settings`), and a paced
    simulator would answer a fast burst with 429 (a retry the tests did not ask for)."""
    return make_sim(pacing=PacingConfig(enabled=False))


def settings(sim: Simulator) -> ClientSettings:
    return ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        retry=RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0.01),
        pacing=PacingLimits(global_per_s=1000.0, snapshot_per_s=1000.0),
    )


def universe(*, include_positions: bool, accounts: tuple[str, ...] = ()) -> Universe:
    return parse_universe(
        {
            "history_start": "2024-10-01",
            "bar_sizes": ["1min"],
            "accounts": list(accounts),
            "include_positions": include_positions,
            "instruments": [
                {"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ"},
                {"symbol": "ES", "sec_type": "FUT", "exchange": "CME"},
            ],
        },
        source="test",
    )


def store_positions(sim: Simulator, store: Store) -> None:
    """The accounts' positions, fetched and stored as the ``positions`` asset does."""

    async def fetch() -> list[object]:
        async with IbkrClient(settings(sim), clock=sim.clock) as client:
            pages = []
            for account in sim.truth.accounts:
                pages.extend(await client.all_positions(account))
            return pages

    store.load("positions", to_batches("positions", asyncio.run(fetch())), run_id="positions")


def resolve(sim: Simulator, store: Store, chosen: Universe) -> list[ResolvedContract]:
    async def run() -> list[ResolvedContract]:
        async with IbkrClient(settings(sim), clock=sim.clock) as client:
            return await resolved_contracts(client, store, chosen)

    return asyncio.run(run())


def held_stocks(sim: Simulator, accounts: list[str]) -> set[int]:
    return {
        p["conid"]
        for account in accounts
        for p in sim.truth.positions(account)
        if p["position"] and " " not in str(p["contract_desc"])  # options have spaces
    }


def test_held_instruments_follow_the_configured_ones_once_each(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "warehouse", clock=sim.clock)
    assert [c.symbol for c in resolve(sim, store, universe(include_positions=True))] == [
        "AAPL",
        "ES",
    ]  # nothing stored yet: nothing held is known
    store_positions(sim, store)
    assert [c.symbol for c in resolve(sim, store, universe(include_positions=False))] == [
        "AAPL",
        "ES",
    ]
    with caplog.at_level(logging.WARNING, logger="assets.contract_lookup"):
        contracts = resolve(sim, store, universe(include_positions=True))
    assert [c.symbol for c in contracts[:2]] == ["AAPL", "ES"]
    conids = [c.conid for c in contracts]
    assert len(conids) == len(set(conids))  # AAPL, held by the bulk account, is there once
    expected = held_stocks(sim, sim.truth.accounts) | {AAPL}
    assert set(conids) - {contracts[1].conid} == expected
    held = contracts[2:]
    assert [c.symbol for c in held] == sorted(c.symbol for c in held)
    for contract in held:  # sec_type and exchange from the search answer; hours from calendars
        assert contract.instrument.sec_type == "STK"
        assert contract.hours == US_EQUITY
        assert contract.lot_size == 100
    main = {p["conid"] for p in sim.truth.positions(sim.truth.selected_account)}
    assert main <= set(conids)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "held instrument(s) not loaded" in warning
    assert "OPT: no trading calendar" in warning and "DEC" in warning  # names the options


def test_only_the_universe_accounts_holdings_and_the_contracts_rows(
    sim: Simulator, tmp_path: Path
) -> None:
    store = Store(tmp_path / "warehouse", clock=sim.clock)
    store_positions(sim, store)
    main = sim.truth.selected_account
    chosen = universe(include_positions=True, accounts=(main,))
    contracts = resolve(sim, store, chosen)
    assert {c.conid for c in contracts[2:]} == held_stocks(sim, [main]) - {AAPL}

    async def rows() -> tuple[list[ResolvedContract], list[int], list[str]]:
        async with IbkrClient(settings(sim), clock=sim.clock) as client:
            found, table = await universe_contracts(client, store, chosen)
            return found, table.column("conid").to_pylist(), table.column("exchange").to_pylist()

    found, conids, exchanges = asyncio.run(rows())
    assert [c.conid for c in found] == conids == [c.conid for c in contracts]
    assert all(exchanges)
    # stored, they are looked up by conid rather than searched again
    _, table = asyncio.run(_universe_table(sim, store, chosen))
    store.write("contracts", table, source="test", run_id="contracts", mode="replace")
    before = sim.stats()["totals"]["requests"]
    again = resolve(sim, store, chosen)
    assert [(c.conid, c.instrument) for c in again] == [(c.conid, c.instrument) for c in contracts]
    assert sim.stats()["totals"]["requests"] - before <= 3  # session upkeep only, no searches


async def _universe_table(
    sim: Simulator, store: Store, chosen: Universe
) -> tuple[list[ResolvedContract], object]:
    async with IbkrClient(settings(sim), clock=sim.clock) as client:
        return await universe_contracts(client, store, chosen)


def test_include_positions_is_a_boolean_of_the_universe_file() -> None:
    assert not universe(include_positions=False).include_positions
    with pytest.raises(UniverseError, match="include_positions must be true or false"):
        parse_universe(
            {
                "history_start": "2024-10-01",
                "bar_sizes": ["1min"],
                "include_positions": "yes",
                "instruments": [{"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ"}],
            },
            source="test",
        )
