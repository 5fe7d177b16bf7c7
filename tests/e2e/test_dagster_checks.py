"""Checks fail, naming what is wrong, when the simulator sends invalid bars: the quarantine
check names exactly the rejected rows (a bar moved outside every session included, wherever it
landed), the completeness check exactly the bars now missing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from dagster_support import Pipeline

from assets.runs import run_assets, summarize_run
from ib_pipeline.calendars import calendar_for
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.simulator.bad_data import BadDataSpec, BadKind

KEYS = ("2024-11-21", "2024-11-22")
BAD = BadDataSpec(
    counts={BadKind.HIGH_BELOW_LOW: 1, BadKind.NEGATIVE_VOLUME: 1, BadKind.OUTSIDE_SESSION: 1},
    seed=7,
)


def minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def expected_damage(p: Pipeline) -> tuple[set[tuple[int, str]], set[tuple[int, str]]]:
    """(rows the loader must quarantine, bars that must be missing), from the simulator's own
    record of what it corrupted in each history response the loader received."""
    windows = {}
    for item in p.universe.instruments:
        sessions = calendar_for(item.trading_hours).sessions(date(2024, 11, 21), date(2024, 11, 22))
        windows[item.symbol] = (sessions[0].bounds_ms(False)[0], sessions[-1].bounds_ms(False)[1])
    conid_symbol = {265598: "AAPL", 756733: "SPY", 12087792: "EUR.USD"}
    quarantined: set[tuple[int, str]] = set()
    missing: set[tuple[int, str]] = set()
    for record in RawZone(p.root).records("history"):
        conid = int(record.params["conid"])
        start, end = windows[conid_symbol[conid]]
        for bad in p.sim.truth.corrupted_bars(record.params, BAD):
            if bad.kind is BadKind.OUTSIDE_SESSION:  # in no session: quarantined wherever it is
                quarantined.add((conid, minute(bad.ts_ms)))
            if not start <= bad.clean_ts_ms < end:
                continue
            missing.add((conid, minute(bad.clean_ts_ms)))
            if bad.kind is not BadKind.OUTSIDE_SESSION:
                quarantined.add((conid, minute(bad.ts_ms)))
    return quarantined, missing


def test_invalid_bars_fail_the_quarantine_and_completeness_checks(pipeline: Pipeline) -> None:
    pipeline.sim.set_bad_data(BAD)
    result = run_assets(pipeline.defs, ["bars_1min"], partition_range=KEYS, raise_on_error=False)
    summary = summarize_run(result)
    assert summary.success, summary.errors  # bad rows are data problems, not run failures
    checks = {c.check: c for c in summary.checks if c.asset == "bars_1min"}
    assert checks["contract"].passed  # what was stored is valid
    quarantine, complete = checks["quarantine_empty"], checks["complete"]
    assert {c.check for c in summary.failed_checks} == {"quarantine_empty", "complete"}

    should_quarantine, should_miss = expected_damage(pipeline)
    assert should_quarantine and should_miss - should_quarantine  # both kinds happened
    rejected = pipeline.store().quarantine("bars")
    keys = [json.loads(k) for k in rejected["key_json"].to_pylist()]
    assert {(k["conid"], k["ts"][:16] + "Z") for k in keys} == should_quarantine
    assert quarantine.metadata["quarantined_rows"] == len(should_quarantine)
    assert set(quarantine.metadata["reasons"]) >= {
        "high_ge_low",
        "volume:greater_than_or_equal_to(0)",
    }
    listed = quarantine.metadata["rejected_rows"]
    for conid, _ in should_quarantine:
        assert str(conid) in listed

    named = {(g["conid"], t) for g in complete.metadata["gaps"] for t in g["missing_ts"]}
    assert named == should_miss
    assert complete.metadata["missing_bars"] == len(should_miss)
    assert complete.metadata["extra_bars"] == 0
    for gap in complete.metadata["gaps"]:
        assert gap["session"] in KEYS and gap["instrument"] in {"AAPL", "SPY", "EUR.USD"}

    # The simulator serves clean data again: the damaged partitions are incomplete, so the
    # next run fetches them again without being asked, and every check passes.
    pipeline.sim.set_bad_data(BadDataSpec())
    repaired = summarize_run(run_assets(pipeline.defs, ["bars_1min"], partition_range=KEYS))
    assert repaired.success and not repaired.failed_checks


def test_fresh_judges_the_newest_partition_only(pipeline: Pipeline) -> None:
    # The clock is inside the session of 2024-11-26: the last completed session is 2024-11-25.
    past = summarize_run(
        run_assets(pipeline.defs, ["bars_1min"], partition_range=("2024-11-21", "2024-11-21"))
    )
    fresh = next(c for c in past.checks if (c.asset, c.check) == ("bars_1min", "fresh"))
    assert fresh.passed, fresh.metadata  # a backfill of history is not stale data
    assert "newest partition (2024-11-25) only" in fresh.metadata["skipped"]
    assert fresh.metadata["run_last_partition"] == "2024-11-21"

    newest = summarize_run(run_assets(pipeline.defs, ["bars_1d"], partition_range=("2024", "2024")))
    fresh = next(c for c in newest.checks if (c.asset, c.check) == ("bars_1d", "fresh"))
    assert "skipped" not in fresh.metadata  # the run loaded the newest partition: judged
    assert fresh.passed and fresh.metadata["newest_partition"] == "2024"
