"""Asset checks: the data contract, the quarantine, completeness against the calendar, freshness.

Why: a materialisation that "succeeded" can still have stored wrong, partial or stale data.
Each check answers one question and names what is wrong in its metadata:

- ``contract`` (BLOCKING, every asset): the rows this run stored, read back from the warehouse,
  pass the dataset's pandera contract (`ib_pipeline.schemas.validate`) and every partition's
  manifest matches its data file. Blocking, so nothing downstream runs on a broken write.
- ``quarantine_empty`` (every asset): the run quarantined no row; otherwise the metadata lists
  the rejected rows (instrument, timestamp, failed checks).
- ``complete`` (intraday and daily bars): each instrument holds exactly the bars its sessions
  imply (`ib_pipeline.sessions.bar_starts`, half days included), up to the last bar completed
  before now; missing and extra bars are named (instrument, session, timestamps).
- ``fresh`` (bars and quotes, separate checks run after a materialisation or on demand): the
  newest stored bar reaches the last completed session, the newest quote snapshot is recent.

Checks read the warehouse; they never call the gateway and never write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.clock import Clock
from ib_pipeline.schemas import ValidationContext, validate
from ib_pipeline.sessions import TradingHours, bar_starts, calendar_for
from ib_pipeline.storage.datasets import dataset_spec
from ib_pipeline.storage.manifest import STATUS_OK
from ib_pipeline.store import Store, WriteResult
from ib_pipeline.timeframes import BarKind, BarSize
from ib_pipeline.universe import ResolvedContract, Universe

from assets.metadata import markdown_table
from assets.partitions import Granularity
from assets.store_resource import WarehouseResource

CONTRACT = "contract"
QUARANTINE_EMPTY = "quarantine_empty"
COMPLETE = "complete"
FRESH = "fresh"

MAX_NAMED = 50
"""Timestamps named per problem in check metadata (the counts are always complete)."""

QUOTES_MAX_AGE = timedelta(minutes=15)
"""A quote snapshot older than this during regular hours is stale (the schedule takes one
every 5 minutes)."""


# --- contract ----------------------------------------------------------------------------------


def contract_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CONTRACT,
        asset=asset,
        blocking=True,
        description="The rows stored by the run pass the dataset's pandera contract, and every "
        "written partition's manifest matches its data file.",
    )


def _as_input(dataset: str, stored: pa.Table) -> list[tuple[pa.Table, datetime | None]]:
    """Stored rows back in the normaliser's schema, one table per snapshot time when the
    store derived ``as_of`` (quotes, orders)."""
    spec = dataset_spec(dataset)
    if not spec.adds_as_of:
        derived = [n for n in stored.column_names if n not in spec.input_schema.names]
        return [(stored.drop_columns(derived), None)]
    parts = []
    for value in pc.unique(stored.column("as_of")).to_pylist():
        rows = stored.filter(pc.equal(stored.column("as_of"), pa.scalar(value, stored.schema.field("as_of").type)))
        derived = [n for n in rows.column_names if n not in spec.input_schema.names]
        parts.append((rows.drop_columns(derived), value))
    return parts


def contract_check_result(
    asset: str,
    dataset: str,
    stored: pa.Table,
    written: WriteResult,
    clock: Clock,
    *,
    store: Store | None = None,
    window: tuple[datetime, datetime] | None = None,
    hours: Mapping[int, TradingHours] | None = None,
    outside_rth: bool = False,
) -> dg.AssetCheckResult:
    """Re-validate ``stored`` (what the run's partitions hold now) against the contract."""
    rejected = 0
    reasons: dict[str, int] = {}
    samples: list[pa.Table] = []
    for table, as_of in _as_input(dataset, stored):
        context = ValidationContext(
            now=clock.now(), as_of=as_of, window=window, hours=hours, outside_rth=outside_rth
        )
        result = validate(dataset, table, context)
        rejected += int(result.rejected.num_rows)
        for name, count in result.reasons.items():
            reasons[name] = reasons.get(name, 0) + count
        if result.rejected.num_rows:
            samples.append(result.rejected.slice(0, MAX_NAMED))
    stale = []
    if store is not None:
        for write in written.partitions:
            status = store.manifest(dataset, write.partition).status
            if status != STATUS_OK:
                stale.append(f"{write.partition} ({status})")
    metadata: dict[str, Any] = {
        "rows_checked": dg.MetadataValue.int(int(stored.num_rows)),
        "rows_violating": dg.MetadataValue.int(rejected),
        "violations": dg.MetadataValue.json(reasons),
        "partitions_not_matching_manifest": dg.MetadataValue.json(stale),
    }
    if samples:
        metadata["violating_rows"] = dg.MetadataValue.md(markdown_table(pa.concat_tables(samples)))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=CONTRACT,
        passed=rejected == 0 and not stale,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


# --- quarantine --------------------------------------------------------------------------------


def quarantine_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        QUARANTINE_EMPTY,
        asset=asset,
        description="The run quarantined no row (rejected rows are listed with their reasons).",
    )


def quarantine_check_result(
    asset: str, written: WriteResult, store: Store, run_id: str
) -> dg.AssetCheckResult:
    """Pass when ``written`` quarantined nothing; otherwise name the rejected rows."""
    metadata: dict[str, Any] = {
        "quarantined_rows": dg.MetadataValue.int(written.rows_quarantined),
        "reasons": dg.MetadataValue.json(dict(written.reasons)),
        "quarantine_files": dg.MetadataValue.json(list(written.quarantine_files)),
    }
    if written.rows_quarantined:
        records = store.quarantine(written.dataset)
        mine = records.filter(pc.equal(records.column("run_id"), run_id))
        shown = mine.select(["partition", "failed_checks", "key_json"]).slice(0, MAX_NAMED)
        metadata["rejected_rows"] = dg.MetadataValue.md(markdown_table(shown, MAX_NAMED))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=QUARANTINE_EMPTY,
        passed=written.rows_quarantined == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


# --- completeness ------------------------------------------------------------------------------


def completeness_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        COMPLETE,
        asset=asset,
        description="Every instrument holds exactly the bars its exchange sessions imply (half "
        "days included) up to the last completed bar; missing and extra bars are named.",
    )


def checks_completeness(bar: BarSize) -> bool:
    """Whether bars of this size have a calendar-implied count per session."""
    return bar.kind in (BarKind.INTRADAY, BarKind.DAY)


@dataclass(frozen=True)
class Gap:
    """Missing or extra bars of one instrument in one session."""

    symbol: str
    conid: int
    session: str
    missing: tuple[int, ...]
    extra: tuple[int, ...]


def find_gaps(
    stored: pa.Table,
    contracts: Sequence[ResolvedContract],
    sessions_of: Mapping[int, Sequence[Any]],
    bar: BarSize,
    *,
    outside_rth: bool,
    now: datetime,
) -> list[Gap]:
    """Compare each contract's stored bars (``stored``: the bars table of the run's partitions)
    with the bars its sessions imply, counting only bars completed by ``now``."""
    now_ms = round(now.timestamp() * 1000)
    conids = np.asarray(stored.column("conid").to_numpy(), dtype=np.int64)
    stamps = np.asarray(stored.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64)
    gaps: list[Gap] = []
    for contract in contracts:
        mine = np.sort(stamps[conids == contract.conid])
        for session in sessions_of.get(contract.conid, ()):
            start_ms, end_ms = session.bounds_ms(True)
            expected = bar_starts(session, bar, outside_rth)
            # A bar is complete once its last minute has ended: at the next bar's start, or
            # at the session's end for the last (possibly short) bar; a daily bar at the close.
            session_end = session.bounds_ms(outside_rth)[1]
            ends = np.append(expected[1:], session_end) if bar.is_intraday else np.array(
                [session_end] * len(expected), dtype=np.int64
            )
            expected = expected[ends <= now_ms]
            actual = mine[(mine >= start_ms) & (mine < end_ms)]
            missing = np.setdiff1d(expected, actual)
            extra = np.setdiff1d(actual, expected)
            if len(missing) or len(extra):
                gaps.append(
                    Gap(
                        contract.symbol,
                        contract.conid,
                        session.date.isoformat(),
                        tuple(int(t) for t in missing),
                        tuple(int(t) for t in extra),
                    )
                )
    return gaps


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def completeness_check_result(asset: str, gaps: Sequence[Gap], sessions: int) -> dg.AssetCheckResult:
    """The ``complete`` check's answer for ``gaps`` found over ``sessions`` instrument-sessions."""
    missing = sum(len(g.missing) for g in gaps)
    extra = sum(len(g.extra) for g in gaps)
    details = [
        {
            "instrument": g.symbol,
            "conid": g.conid,
            "session": g.session,
            "missing": len(g.missing),
            "extra": len(g.extra),
            "missing_ts": [_iso(t) for t in g.missing[:MAX_NAMED]],
            "extra_ts": [_iso(t) for t in g.extra[:MAX_NAMED]],
        }
        for g in gaps[:MAX_NAMED]
    ]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=COMPLETE,
        passed=not gaps,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "instrument_sessions_checked": dg.MetadataValue.int(sessions),
            "missing_bars": dg.MetadataValue.int(missing),
            "extra_bars": dg.MetadataValue.int(extra),
            "incomplete_sessions": dg.MetadataValue.int(len(gaps)),
            "gaps": dg.MetadataValue.json(details),
        },
    )


# --- freshness ---------------------------------------------------------------------------------


def last_completed_session_close(hours: TradingHours, now: datetime) -> datetime | None:
    """The regular close of the latest session of ``hours`` that closed by ``now``."""
    cal = calendar_for(hours)
    for day in reversed(cal.previous_session_dates(now.date(), 10)):
        close = cal.session(day).rth_close
        if close <= now:
            return close
    return None


def latest_bar(store: Store, bar: BarSize) -> datetime | None:
    """The newest stored bar of ``bar`` size, from the manifest of its newest partition."""
    prefix = f"bar_size={bar.label}/"
    mine = [p for p in store.partitions("bars") if p.id.startswith(prefix)]
    if not mine:
        return None
    manifest = store.manifest("bars", mine[-1])
    if manifest.time_max is None:
        return None
    return datetime.fromisoformat(manifest.time_max.replace("Z", "+00:00"))


def build_bars_freshness_check(
    asset: str, bar: BarSize, universe: Universe, hours: TradingHours
) -> dg.AssetChecksDefinition:
    """``fresh`` for a bars asset: its newest bar is at or after the last completed session's
    last bar (in the schedule calendar)."""

    @dg.asset_check(
        asset=asset,
        name=FRESH,
        description=f"The newest {bar.label} bar reaches the last completed {hours.calendar} "
        "session.",
    )
    def _fresh(warehouse: WarehouseResource, clock: dg.ResourceParam[Clock]) -> dg.AssetCheckResult:
        now = clock.now()
        store = warehouse.store(clock)
        newest = latest_bar(store, bar)
        close = last_completed_session_close(hours, now)
        if close is None:
            return dg.AssetCheckResult(passed=True, metadata={"reason": "no completed session yet"})
        due = close - timedelta(seconds=bar.seconds if bar.is_intraday else 86_400)
        passed = newest is not None and newest >= due
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "newest_bar": dg.MetadataValue.text(newest.isoformat() if newest else "none"),
                "due_at_least": dg.MetadataValue.text(due.isoformat()),
                "now": dg.MetadataValue.text(now.isoformat()),
            },
        )

    return _fresh


def quotes_reference_time(hours: TradingHours, now: datetime) -> datetime:
    """When the newest quote snapshot should have been taken (give or take `QUOTES_MAX_AGE`):
    now while the regular session is open, else the last regular close."""
    cal = calendar_for(hours)
    today = now.astimezone(ZoneInfo(hours.timezone)).date()
    if cal.is_session(today):
        session = cal.session(today)
        if session.rth_open <= now < session.rth_close:
            return now
    close = last_completed_session_close(hours, now)
    return close if close is not None else now


def build_quotes_freshness_check(asset: str, hours: TradingHours) -> dg.AssetChecksDefinition:
    """``fresh`` for quotes: during regular hours the newest snapshot is at most
    `QUOTES_MAX_AGE` old; outside them it was taken within that age of the last close."""

    @dg.asset_check(
        asset=asset,
        name=FRESH,
        description=f"The newest quote snapshot is at most {QUOTES_MAX_AGE} old during "
        "regular hours (or that close to the last close outside them).",
    )
    def _fresh(warehouse: WarehouseResource, clock: dg.ResourceParam[Clock]) -> dg.AssetCheckResult:
        now = clock.now()
        store = warehouse.store(clock)
        parts = store.partitions("quotes")
        newest = None
        if parts:
            manifest = store.manifest("quotes", parts[-1])
            if manifest.time_max is not None:
                newest = datetime.fromisoformat(manifest.time_max.replace("Z", "+00:00"))
        reference = quotes_reference_time(hours, now)
        passed = newest is not None and newest >= reference - QUOTES_MAX_AGE
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "newest_snapshot": dg.MetadataValue.text(newest.isoformat() if newest else "none"),
                "reference_time": dg.MetadataValue.text(reference.isoformat()),
                "max_age_minutes": dg.MetadataValue.int(int(QUOTES_MAX_AGE.total_seconds() // 60)),
            },
        )

    return _fresh


def granularity_sessions(
    contracts: Sequence[ResolvedContract], keys: Sequence[str], grain: Granularity
) -> dict[int, list[Any]]:
    """Each contract's sessions in the partitions ``keys`` (for `find_gaps`)."""
    from assets.bar_plan import sessions_in_keys

    return {c.conid: sessions_in_keys(c, keys, grain) for c in contracts}
