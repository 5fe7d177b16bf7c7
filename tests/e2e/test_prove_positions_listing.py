"""Positions listings end to end (issue 10 item 3): Dagster against the simulator over HTTP.

The gateway pages positions by 100; the red team saw it answer ``[]`` for page 1 of 250
positions (100 were stored as the whole snapshot) and for page 0 (nothing was stored, and the
old positions stayed "latest"). The simulator cuts pages on demand
(`Simulator.set_positions_fault`). Held here:

- a truncated page (empty, or short, then more positions) is never stored as a snapshot: the
  client fetches the listing again, and a listing that stays truncated fails the run, leaving
  the stored snapshots as they were;
- an account listed with no position is a snapshot of its own, a flat marker row (conid 0),
  and the latest positions of that account are then none (`LATEST_POSITIONS_SQL`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster_support import Pipeline

from assets.runs import RunSummary, run_assets, summarize_run
from ib_pipeline.ibkr.normalize import FLAT_CONID
from ib_pipeline.simulator import Simulator

pytestmark = pytest.mark.slow(35)

LATEST_POSITIONS_SQL = """
    SELECT * FROM (
        SELECT * FROM positions
        QUALIFY as_of = max(as_of) OVER (PARTITION BY account)
    ) WHERE conid <> 0"""
"""The ``latest_positions`` view as it must read (`warehouse.DERIVED_VIEWS`): each account's
latest snapshot, without the flat marker."""


def run_positions(p: Pipeline, *, advance: bool = True) -> RunSummary:
    if advance:
        p.sim.advance(timedelta(minutes=5))  # a new snapshot time
    return summarize_run(run_assets(p.defs, ["positions"], raise_on_error=False))


def snapshots(p: Pipeline, account: str) -> dict[int, list[int]]:
    """as_of (epoch ms) -> the sorted conids of that snapshot of ``account``."""
    table = p.store().read("positions")
    mine = table.filter(pc.equal(table["account"], account))
    found: dict[int, list[int]] = {}
    for row in mine.select(["as_of", "conid"]).to_pylist():
        found.setdefault(int(row["as_of"].timestamp() * 1000), []).append(int(row["conid"]))
    return {as_of: sorted(conids) for as_of, conids in sorted(found.items())}


def truth_conids(p: Pipeline, account: str) -> list[int]:
    return sorted(int(x["conid"]) for x in p.sim.truth.positions(account))


def latest(p: Pipeline) -> pa.Table:
    """``LATEST_POSITIONS_SQL`` over the stored positions."""
    con = duckdb.connect()
    con.register("positions", p.store().read("positions"))
    return con.sql(LATEST_POSITIONS_SQL).fetch_arrow_table()


@pytest.fixture
def pipeline(sim: Simulator, make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    p = make_pipeline(sim)
    first = run_positions(p, advance=False)
    assert first.success, first.errors
    return p


@pytest.mark.parametrize(("page", "rows"), [(0, 0), (1, 0), (1, 30), (2, 0)])
def test_a_page_cut_once_is_fetched_again(pipeline: Pipeline, page: int, rows: int) -> None:
    p = pipeline
    _, bulk = p.sim.truth.accounts
    expected = truth_conids(p, bulk)
    assert len(expected) == 250
    p.sim.set_positions_fault(page, account=bulk, rows=rows, times=1)
    summary = run_positions(p)
    assert summary.success, summary.errors
    for conids in snapshots(p, bulk).values():
        assert conids == expected  # every snapshot whole, never 100 of 250


def test_a_listing_that_stays_cut_fails_and_stores_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    main, bulk = p.sim.truth.accounts
    before = {account: snapshots(p, account) for account in (main, bulk)}
    p.sim.set_positions_fault(1, account=bulk, times=None)
    summary = run_positions(p)
    assert not summary.success
    assert any("truncated" in error and bulk in error for error in summary.errors), summary.errors
    assert {account: snapshots(p, account) for account in (main, bulk)} == before


def test_an_empty_account_is_a_flat_snapshot(pipeline: Pipeline) -> None:
    p = pipeline
    main, bulk = p.sim.truth.accounts
    assert 0 < len(truth_conids(p, main)) < 100
    p.sim.set_positions_fault(0, account=main, times=None)  # the account is now flat
    summary = run_positions(p)
    assert summary.success, summary.errors
    taken = snapshots(p, main)
    assert len(taken) == 2
    old, new = taken.values()
    assert old == truth_conids(p, main) and new == [FLAT_CONID]
    marker = p.store().read("positions").filter(pc.equal(pc.field("conid"), FLAT_CONID))
    assert marker.select(["position", "mkt_value"]).to_pylist() == [
        {"position": 0.0, "mkt_value": 0.0}
    ]
    rows = latest(p)
    by_account = pc.value_counts(rows["account"]).to_pylist()
    assert {v["values"]: v["counts"] for v in by_account} == {bulk: 250}  # main: no position

    p.sim.clear_positions_faults()  # positions again: the flat snapshot is history
    summary = run_positions(p)
    assert summary.success, summary.errors
    rows = latest(p)
    held = sorted(rows.filter(pc.equal(rows["account"], main))["conid"].to_pylist())
    assert held == truth_conids(p, main)
