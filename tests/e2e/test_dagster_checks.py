"""Checks fail, naming what is wrong, when the simulator sends invalid bars: the quarantine
check names the rejected rows and the completeness check names the bars now missing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.compute as pc
from conftest import Pipeline

from ib_pipeline.definitions import run_assets, summarize_run
from ib_pipeline.simulator.bad_data import BadDataSpec, BadKind

KEYS = ("2024-11-21", "2024-11-22")


def iso_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def test_invalid_bars_fail_the_quarantine_and_completeness_checks(pipeline: Pipeline) -> None:
    pipeline.sim.set_bad_data(
        BadDataSpec(
            counts={
                BadKind.HIGH_BELOW_LOW: 1,
                BadKind.NEGATIVE_VOLUME: 1,
                BadKind.OUTSIDE_SESSION: 1,
            },
            seed=7,
        )
    )
    result = run_assets(pipeline.defs, ["bars_1min"], partition_range=KEYS, raise_on_error=False)
    summary = summarize_run(result)
    assert summary.success, summary.errors  # bad rows are data problems, not run failures
    checks = {c.check: c for c in summary.checks if c.asset == "bars_1min"}
    assert checks["contract"].passed  # what was stored is valid
    quarantine, complete = checks["quarantine_empty"], checks["complete"]
    assert not quarantine.passed and not complete.passed
    assert {c.check for c in summary.failed_checks} == {"quarantine_empty", "complete"}

    history = summary.materialized["bars_1min"]["requests_by_endpoint"]["history"]
    assert quarantine.metadata["quarantined_rows"] == 3 * history
    reasons = quarantine.metadata["reasons"]
    assert reasons["high_ge_low"] == history and reasons["ts_in_session"] == history
    listed = quarantine.metadata["rejected_rows"]
    assert "high_ge_low" in listed and "volume" in listed and "ts_in_session" in listed

    # Every rejected in-session row left a hole the completeness check names, with its time.
    rejected = pipeline.store().quarantine("bars")
    in_session = rejected.filter(pc.invert(pc.match_substring(rejected["failed_checks"], "ts_in")))
    holes = {
        (json.loads(k)["conid"], json.loads(k)["ts"][:16] + "Z")
        for k in in_session["key_json"].to_pylist()
    }
    named = {(g["conid"], t) for g in complete.metadata["gaps"] for t in g["missing_ts"]}
    assert holes <= named
    assert complete.metadata["missing_bars"] == len(named) == 3 * history
    assert complete.metadata["extra_bars"] == 0
    assert {g["instrument"] for g in complete.metadata["gaps"]} <= {"AAPL", "SPY", "EUR.USD"}

    # The simulator serves clean data again: a refetch repairs the holes.
    pipeline.sim.set_bad_data(BadDataSpec())
    repaired = summarize_run(run_assets(pipeline.defs, ["bars_1min"], partition_range=KEYS))
    assert repaired.success and not repaired.failed_checks
    assert repaired.materialized["bars_1min"]["partitions_skipped_complete"] == 0
