"""Materialisations of the real definitions against the simulator over HTTP: the warehouse
equals the simulator's ground truth, re-runs are idempotent, a range of partitions is one run,
and complete partitions are not fetched again."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from dagster_support import Pipeline

from assets.definitions import build_definitions
from assets.progress import NullProgress
from assets.runs import run_assets, summarize_run
from ib_pipeline.calendars import calendar_for
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.storage.manifest import STATUS_OK

SIM_NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
CONIDS = {"AAPL": 265598, "SPY": 756733, "EUR.USD": 12087792}


def stored_bars(p: Pipeline, conid: int, bar_size: str) -> pa.Table:
    table = p.store().read("bars")
    mine = table.filter(
        pc.and_(pc.equal(table["conid"], conid), pc.equal(table["bar_size"], bar_size))
    )
    return mine.select(HISTORY_BARS.names).cast(HISTORY_BARS).sort_by("ts")


def assert_equals_truth(p: Pipeline, keys: tuple[str, str]) -> None:
    first, last = (datetime.fromisoformat(k).date() for k in keys)
    for item in p.universe.instruments:
        conid = CONIDS[item.symbol]
        sessions = calendar_for(item.trading_hours).sessions(first, last)
        truth = p.sim.truth.history_bars(conid, "1min", sessions[0].rth_open, SIM_NOW)
        stored = stored_bars(p, conid, "1min")
        assert stored.num_rows == truth.num_rows > 0, item.symbol
        assert stored.equals(truth.sort_by("ts")), f"{item.symbol} differs from the truth"


def partition_hashes(p: Pipeline) -> dict[str, str]:
    return {m.partition: m.content_sha256 for m in p.store().manifests("bars", verify=True)}


def test_bars_equal_the_truth_and_reruns_are_idempotent(pipeline: Pipeline) -> None:
    keys = ("2024-11-20", "2024-11-26")
    assert run_assets(pipeline.defs, ["contracts"]).success
    result = run_assets(pipeline.defs, ["bars_1min"], partition_range=keys)
    summary = summarize_run(result)
    assert summary.success and not summary.failed_checks, summary.checks
    meta = summary.materialized["bars_1min"]
    assert summary.partitions["bars_1min"] == 5
    assert meta["partitions_skipped_complete"] == 0
    assert meta["instruments"] == 3 and meta["quarantined_rows"] == 0
    assert_equals_truth(pipeline, keys)
    hashes = partition_hashes(pipeline)
    assert len(hashes) == 5

    # Forced refetch: same partitions, same bytes, same rows (no duplicates).
    again = run_assets(
        pipeline.defs,
        ["bars_1min"],
        partition_range=keys,
        run_config={"ops": {"bars_1min": {"config": {"refetch": True}}}},
    )
    assert summarize_run(again).materialized["bars_1min"]["partitions_skipped_complete"] == 0
    assert partition_hashes(pipeline) == hashes
    assert_equals_truth(pipeline, keys)

    # Gap-aware: the four finished sessions are complete; only today's, still trading, is not.
    third = summarize_run(run_assets(pipeline.defs, ["bars_1min"], partition_range=keys))
    meta = third.materialized["bars_1min"]
    assert meta["partitions_skipped_complete"] == 4
    # Today only: AAPL and SPY 210 bars (one page each), EUR.USD 1080 bars (two pages).
    assert meta["requests_by_endpoint"]["history"] == 4
    assert partition_hashes(pipeline) == hashes


class RecordingProgress(NullProgress):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def begin(self, asset: str, ranges: int) -> None:
        self.events.append(("begin", ranges))

    def advance(self, *, ranges: int, requests: int, bars: int) -> None:
        self.events.append(("advance", bars))


def test_twenty_partitions_are_one_run_with_minimal_requests(pipeline: Pipeline) -> None:
    progress = RecordingProgress()
    defs = build_definitions(
        pipeline.universe, resources={**pipeline.defs.resources, "progress": progress}
    )
    instance = dg.DagsterInstance.ephemeral()
    # The universe holds a forex pair, so every weekday is a partition: 20 of them.
    keys = ("2024-10-28", "2024-11-22")
    result = run_assets(defs, ["bars_1min"], instance=instance, partition_range=keys)
    summary = summarize_run(result)
    assert summary.success and not summary.failed_checks
    assert len(instance.get_runs()) == 1
    partitions = {
        e.partition for e in result.get_asset_materialization_events() if e.partition is not None
    }
    assert len(partitions) == 20 and min(partitions) == keys[0] and max(partitions) == keys[1]
    stored = pipeline.store().read("bars")
    minimum = sum(
        math.ceil(n / 1000) for n in pc.value_counts(stored["conid"]).field("counts").to_pylist()
    )
    history = summary.materialized["bars_1min"]["requests_by_endpoint"]["history"]
    assert minimum <= history <= math.ceil(minimum * 1.05)
    assert progress.events[0] == ("begin", 3)  # one contiguous range per instrument
    assert progress.events[-1] == ("advance", stored.num_rows)
    assert all(m.status == STATUS_OK for m in pipeline.store().manifests("bars"))


def test_snapshots_and_portfolio_equal_the_truth(pipeline: Pipeline) -> None:
    names = ["contracts", "quotes", "accounts", "positions", "account_summary", "orders"]
    summary = summarize_run(run_assets(pipeline.defs, names))
    assert summary.success and not summary.failed_checks, summary.errors
    assert set(summary.materialized) == set(names)
    store, truth = pipeline.store(), pipeline.sim.truth

    contracts = store.read("contracts").sort_by("conid")
    assert contracts["conid"].to_pylist() == sorted(CONIDS.values())

    quotes = store.read("quotes")
    assert quotes.num_rows == 3
    for row in quotes.to_pylist():
        expected = truth.quote(row["conid"])
        assert row["as_of"] == SIM_NOW
        for column in ("last", "bid", "ask", "volume", "bid_size", "ask_size"):
            assert row[column] == expected[column], (row["conid"], column)

    positions = store.read("positions")
    for account in truth.accounts:
        mine = positions.filter(pc.equal(positions["account"], account)).sort_by("conid")
        expected = truth.positions(account)
        assert mine["conid"].to_pylist() == [p["conid"] for p in expected]
        assert mine["position"].to_pylist() == [float(p["position"]) for p in expected]
    summaries = store.read("account_summary")
    for account in truth.accounts:
        rows = summaries.filter(
            pc.and_(
                pc.equal(summaries["account"], account),
                pc.equal(summaries["key"], "netliquidation"),
            )
        ).to_pylist()
        assert [r["amount"] for r in rows] == [truth.summary(account)["netliquidation"]]
    assert store.read("orders").num_rows == len(truth.orders())
    assert summary.materialized["accounts"]["instrument_list"] == ", ".join(truth.accounts)


def test_daily_bars_of_a_year_partition(pipeline: Pipeline) -> None:
    summary = summarize_run(
        run_assets(pipeline.defs, ["bars_1d"], partition_range=("2024", "2024"))
    )
    assert summary.success and not summary.failed_checks, summary.checks
    for item in pipeline.universe.instruments:
        conid = CONIDS[item.symbol]
        start = datetime(2024, 10, 1, tzinfo=UTC)
        truth = pipeline.sim.truth.history_bars(
            conid, "1d", datetime(2024, 1, 1, tzinfo=UTC), SIM_NOW
        )
        stored = stored_bars(pipeline, conid, "1d")
        assert stored.equals(truth.sort_by("ts")), item.symbol
        assert stored.num_rows > 200 and stored["ts"][0].as_py() < start + timedelta(days=7)
