"""The asset check that makes splits and data revisions seen by a bars run visible.

Why: a split restates a whole instrument's stored history (`ib_pipeline.corporate_actions`) and
a revision replaces stored sessions; both are correct outcomes, but a researcher who computed
something from the old bars must hear of them. Each bars asset carries this check: it passes
when the run's overlap (`assets.bar_overlap`) matched what was stored, and warns (severity WARN,
never blocking) naming each split (ratio, effective date, rows restated) and each revised
session otherwise. The recorded splits are in the ``corporate_actions`` view.
"""

from __future__ import annotations

import dagster as dg

from assets.bar_overlap import OverlapReport

RESTATEMENTS = "no_restatement"


def restatement_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        RESTATEMENTS,
        asset=asset,
        description=(
            "Bars received again matched the stored ones: no split restated the stored history "
            "and no session was revised (warns naming them otherwise; see corporate_actions)."
        ),
    )


def restatement_check_result(asset: str, report: OverlapReport) -> dg.AssetCheckResult:
    """Pass when the overlap held no split and no revision; warn naming them otherwise."""
    changed = bool(report.splits or report.revisions)
    parts = [
        f"{s['symbol']} split {s['ratio']:g}:1 effective {s['effective_date']}: "
        f"{s['rows_restated']} stored bars rescaled"
        for s in report.splits
    ]
    parts += [
        f"{r['symbol']} revised sessions {', '.join(r['sessions'])}: fetched again"
        for r in report.revisions
    ]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=RESTATEMENTS,
        passed=not changed,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(parts) if parts else "the overlap matched the stored bars",
        metadata={
            "splits": dg.MetadataValue.json(report.splits),
            "revisions": dg.MetadataValue.json(report.revisions),
            "overlap_bars_compared": dg.MetadataValue.int(report.bars_compared),
            "overlap_probe_requests": dg.MetadataValue.int(report.probe_requests),
        },
    )
