"""Delayed market data flagged end to end (issue 13 item 5): an account without a subscription
for an instrument gets its history and snapshots delayed (`SimulatorConfig.delayed_conids`),
flagged as the real gateway flags them (history ``mdAvailability`` ``D``, snapshot field 6509
``D...``). The flag is kept with the bars (per instrument, in each partition's manifest) and
with the quotes (``market_data_availability``), and the ``realtime`` checks WARN naming the
delayed instrument; with every instrument real-time they pass."""

from __future__ import annotations

from collections.abc import Callable

from dagster_support import Pipeline

from assets.checks import REALTIME
from assets.runs import CheckOutcome, RunSummary, run_assets, summarize_run
from ib_pipeline.simulator import Simulator

AAPL = 265598
KEYS = ("2024-11-20", "2024-11-25")  # finished sessions: delay changes no bar of them


def realtime(summary: RunSummary, asset: str) -> CheckOutcome:
    found = [c for c in summary.checks if c.asset == asset and c.check == REALTIME]
    assert len(found) == 1, summary.checks
    return found[0]


def test_delayed_instrument_warns_naming_it(
    make_sim: Callable[..., Simulator], make_pipeline: Callable[..., Pipeline]
) -> None:
    p = make_pipeline(make_sim(delayed_conids=frozenset({AAPL})))
    assert run_assets(p.defs, ["contracts"]).success
    bars = summarize_run(run_assets(p.defs, ["bars_1min"], partition_range=KEYS))
    assert bars.success and not bars.failed_checks, bars.checks
    check = realtime(bars, "bars_1min")
    assert not check.passed and check.severity == "WARN"
    assert check.metadata["delayed_instruments"] == [f"AAPL ({AAPL})"]
    [detail] = check.metadata["delayed"]
    assert detail["conid"] == AAPL and detail["availability"] == "D"
    assert detail["meaning"] == "delayed" and len(detail["where"]) == 4
    for manifest in p.store().manifests("bars"):
        availability = manifest.market_data_availability()
        assert availability[AAPL] == "D"
        assert {c: a for c, a in availability.items() if c != AAPL} == dict.fromkeys(
            (c for c in manifest.conids if c != AAPL), "S"
        )

    quotes = summarize_run(run_assets(p.defs, ["quotes"]))
    assert quotes.success and not quotes.failed_checks, quotes.checks
    stored = {
        r["conid"]: r["market_data_availability"] for r in p.store().read("quotes").to_pylist()
    }
    assert stored[AAPL].startswith("D")
    assert all(code.startswith("R") for conid, code in stored.items() if conid != AAPL)
    check = realtime(quotes, "quotes")
    assert not check.passed and check.severity == "WARN"
    assert check.metadata["delayed_instruments"] == [f"AAPL ({AAPL})"]


def test_realtime_data_passes(sim: Simulator, make_pipeline: Callable[..., Pipeline]) -> None:
    p = make_pipeline(sim)
    assert run_assets(p.defs, ["contracts"]).success
    bars = summarize_run(run_assets(p.defs, ["bars_1min"], partition_range=KEYS))
    check = realtime(bars, "bars_1min")
    assert check.passed and check.metadata["delayed_instruments"] == []
    assert len(check.metadata["partitions_checked"]) == 4
    quotes = summarize_run(run_assets(p.defs, ["quotes"]))
    assert realtime(quotes, "quotes").passed
