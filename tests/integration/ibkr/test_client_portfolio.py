"""Accounts, positions (paged), the summary, contract search and snapshots (with the pre-flight)
against the simulator: every normalised table equals the simulator's ground truth."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr import snapshots as snapshots_module
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import SnapshotNotReadyError
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy
from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.simulator.instruments import UNIVERSE

AAPL, IBM = 265598, 8314
AS_OF = datetime(2024, 11, 26, 18, tzinfo=UTC)


def settings_for(sim: Simulator, **changes: Any) -> ClientSettings:
    base = ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        retry=RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0),
        pacing=PacingLimits(portfolio_accounts_interval_s=0.3),
        snapshot_poll_interval_s=0.05,
    )
    return base.with_changes(**changes)


@pytest.fixture
def fast_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    """Published pacing, except /portfolio/accounts once per 0.25 s instead of 5 s."""
    return make_sim(pacing=PacingConfig(portfolio_accounts_interval_s=0.25, penalty_box_s=1.0))


def without(table: pa.Table, column: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.drop_columns([column]).to_pylist()
    return rows


def same_values(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    for key, value in expected.items():
        got = actual[key]
        if isinstance(value, float) and isinstance(got, float):
            if not math.isclose(got, value, rel_tol=1e-12, abs_tol=1e-9):
                return False
        elif got != value:
            return False
    return True


async def test_accounts_positions_and_summary(fast_sim: Simulator) -> None:
    sim = fast_sim
    async with IbkrClient(settings_for(sim)) as client:
        accounts = normalize.accounts(await client.accounts())
        main, bulk = sim.truth.accounts
        pages = await client.all_positions(bulk)
        main_pages = await client.all_positions()
        summary = await client.account_summary()
    assert accounts.column("account_id").to_pylist() == [main, bulk]
    assert accounts.column("is_paper").to_pylist() == [True, True]
    assert accounts.column("is_selected").to_pylist() == [True, False]

    assert [len(p.payload) for p in pages] == [100, 100, 50]  # a short page ends the listing
    assert [p.params["pageId"] for p in pages] == ["0", "1", "2"]
    rows = [entry for page in pages for entry in page.payload]
    table = normalize.positions(rows, account=bulk, as_of=AS_OF).sort_by("conid")
    assert set(table.column("as_of").to_pylist()) == {AS_OF}
    expected = sim.truth.positions(bulk)
    assert len(expected) == 250
    assert all(same_values(a, e) for a, e in zip(without(table, "as_of"), expected, strict=True))
    assert len(main_pages) == 1 and main_pages[0].params["accountId"] == main

    summary_rows = {
        r["key"]: r
        for r in normalize.account_summary(summary, account=main, as_of=AS_OF).to_pylist()
    }
    for key, amount in sim.truth.summary(main).items():
        row = summary_rows[key]
        if row["currency"] is None:  # a string-valued key such as "cushion": 0.868365
            assert float(row["value"]) == pytest.approx(amount, abs=1e-6), key
        else:
            assert row["amount"] == pytest.approx(amount), key
            assert row["currency"] == "USD"
    assert summary_rows["accountcode"]["value"] == main
    assert sim.stats()["totals"]["429"] == 0


async def test_contract_search(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        exact = normalize.contracts(await client.search_contracts("AAPL"))
        by_name = normalize.contracts(await client.search_contracts("APPLE", name=True))
        futures = normalize.contracts(await client.search_contracts("ES", sec_type="FUT"))
    assert exact.column("conid").to_pylist() == [AAPL]
    assert exact.column("sec_type").to_pylist() == ["STK"]
    assert "NASDAQ" in (exact.column("exchanges").to_pylist()[0] or "")
    assert AAPL in by_name.column("conid").to_pylist()
    assert set(futures.column("sec_type").to_pylist()) == {"FUT"}


async def test_snapshots_with_preflight_and_batches(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots_module, "MAX_CONIDS", 30)  # 70 instruments -> 3 batches
    conids = [instrument.conid for instrument in UNIVERSE]
    lots = {instrument.conid: instrument.lot_size for instrument in UNIVERSE}
    async with IbkrClient(settings_for(sim)) as client:
        responses = await client.snapshots(conids)
    assert [len(r.payload) for r in responses] == [30, 30, 10]
    table = pa.concat_tables(normalize.snapshot_quotes(r.payload, lot_size=lots) for r in responses)
    assert sorted(table.column("conid").to_pylist()) == sorted(conids)
    for row in table.to_pylist():
        truth = sim.truth.quote(row["conid"])
        assert same_values(row, truth), row["conid"]
    requests = sim.stats()["endpoints"]["GET /iserver/marketdata/snapshot"]["requests"]
    assert requests == 6  # each batch: the pre-flight, then the data


async def test_snapshot_that_never_delivers_names_the_conids(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim, snapshot_max_polls=1)) as client:
        with pytest.raises(SnapshotNotReadyError, match=r"after 1 polls.*8314, 265598") as info:
            await client.snapshots([AAPL, IBM])
    assert info.value.conids == (IBM, AAPL)
    with pytest.raises(ValueError, match="at most 50"):
        snapshots_module.snapshot_params([AAPL], [str(i) for i in range(51)])
