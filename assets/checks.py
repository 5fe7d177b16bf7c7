"""Asset checks: the data contract, the quarantine, completeness against the calendar, freshness.

Why: a materialisation that "succeeded" can still have stored wrong, partial or stale data.
Each check answers one question and names what is wrong in its metadata:

- ``contract`` (BLOCKING, every asset): the rows this run stored, read back from the warehouse,
  pass the dataset's pandera contract and every written partition's manifest matches its data
  file (`assets.verify`). Blocking, so nothing downstream runs on a broken write.
- ``quarantine_empty`` (every asset): the run quarantined no row; otherwise the metadata lists
  the rejected rows (partition, key with instrument and timestamp, failed checks).
- ``complete`` (intraday and daily bars): each instrument holds exactly the bars its sessions
  imply, half days included, up to the last completed bar; missing and extra bars are named by
  instrument, session and timestamp.
- ``fresh`` (bars and quotes; separate checks that run after a materialisation or on demand):
  the newest stored bar reaches the last completed session (judged only when the run loaded the
  newest partition, or outside a run; a backfill of history passes, saying so); the newest quote
  snapshot is recent.
- ``realtime`` (bars and quotes; separate checks, severity WARN): the data the run stored was
  real-time, as every instrument of the universe is expected to be; instruments the gateway
  flagged delayed (history ``mdAvailability``, kept per instrument in each bar partition's
  manifest; snapshot field 6509, kept in the quotes' ``market_data_availability``) are named
  with their code and partitions. A warning, not an error: delayed bars of a finished session
  are the same bars, and an account without a subscription is a fact to see, not a broken load.

The first three are computed inside the asset that wrote the data (`assets.verify`); this module
turns them into check results. Checks read the warehouse; they never call the gateway.
"""

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.metadata import load_metadata, markdown_table, time_range
from assets.resources import WarehouseResource
from assets.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from assets.verify import (
    ContractVerdict,
    DelayedData,
    Gap,
    find_delayed_bars,
    find_delayed_quotes,
    verify_contract,
    verify_manifests,
)
from ib_pipeline.calendars import TradingHours, calendar_for
from ib_pipeline.clock import Clock
from ib_pipeline.storage.bar_periods import granularity, key_for_date, partition_id
from ib_pipeline.storage.datasets import dataset_spec
from ib_pipeline.storage.store import Store, WriteResult
from ib_pipeline.timeframes import BarSize

CONTRACT = "contract"
QUARANTINE_EMPTY = "quarantine_empty"
COMPLETE = "complete"
FRESH = "fresh"
REALTIME = "realtime"

PARTITION_TAG = "dagster/partition"
"""The tag of a run of one partition (a range has `PARTITION_RANGE_END_TAG`)."""

MAX_NAMED = 50
"""Rows, sessions or timestamps named per problem in check metadata (counts are complete)."""

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


def contract_check_result(asset: str, verdict: ContractVerdict) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {
        "rows_checked": dg.MetadataValue.int(verdict.rows_checked),
        "rows_violating": dg.MetadataValue.int(verdict.rows_violating),
        "violations": dg.MetadataValue.json(dict(verdict.reasons)),
        "partitions_not_matching_manifest": dg.MetadataValue.json(verdict.stale_partitions),
    }
    samples = verdict.sample_table()
    if samples is not None:
        metadata["violating_rows"] = dg.MetadataValue.md(markdown_table(samples, MAX_NAMED))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=CONTRACT,
        passed=verdict.passed,
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
    asset: str, dataset: str, written: Sequence[WriteResult], store: Store, run_id: str
) -> dg.AssetCheckResult:
    """Pass when the run's writes quarantined nothing; otherwise name the rejected rows."""
    count = sum(w.rows_quarantined for w in written)
    reasons: dict[str, int] = {}
    files: list[str] = []
    for write in written:
        files.extend(write.quarantine_files)
        for name, n in write.reasons.items():
            reasons[name] = reasons.get(name, 0) + n
    metadata: dict[str, Any] = {
        "quarantined_rows": dg.MetadataValue.int(count),
        "reasons": dg.MetadataValue.json(reasons),
        "quarantine_files": dg.MetadataValue.json(files),
    }
    if count:
        records = store.quarantine(dataset)
        mine = records.filter(pc.equal(records.column("run_id"), run_id))
        shown = mine.select(["partition", "failed_checks", "key_json"]).slice(0, MAX_NAMED)
        metadata["rejected_rows"] = dg.MetadataValue.md(markdown_table(shown, MAX_NAMED))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=QUARANTINE_EMPTY,
        passed=count == 0,
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


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def completeness_check_result(
    asset: str, gaps: Sequence[Gap], sessions_checked: int
) -> dg.AssetCheckResult:
    """The ``complete`` check's answer for ``gaps`` over ``sessions_checked`` instrument
    sessions."""
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
            "instrument_sessions_checked": dg.MetadataValue.int(sessions_checked),
            "missing_bars": dg.MetadataValue.int(sum(len(g.missing) for g in gaps)),
            "extra_bars": dg.MetadataValue.int(sum(len(g.extra) for g in gaps)),
            "incomplete_sessions": dg.MetadataValue.int(len(gaps)),
            "gaps": dg.MetadataValue.json(details),
        },
    )


# --- freshness ---------------------------------------------------------------------------------


def last_completed_session(hours: TradingHours, now: datetime) -> tuple[date, datetime] | None:
    """The date and regular close of the latest session of ``hours`` that closed by ``now``."""
    cal = calendar_for(hours)
    for day in reversed(cal.previous_session_dates((now + timedelta(days=1)).date(), 10)):
        close = cal.session(day).rth_close
        if close <= now:
            return day, close
    return None


def last_completed_session_close(hours: TradingHours, now: datetime) -> datetime | None:
    """The regular close of the latest session of ``hours`` that closed by ``now``."""
    last = last_completed_session(hours, now)
    return None if last is None else last[1]


def run_last_partition(tags: Mapping[str, str]) -> str | None:
    """The last partition a run materialised (its range end, or its one partition), if any."""
    return tags.get(PARTITION_RANGE_END_TAG) or tags.get(PARTITION_TAG)


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


def _newest(store: Store, dataset: str, prefix: str = "") -> datetime | None:
    """The newest time a dataset holds, from the manifest of its newest partition."""
    mine = [p for p in store.partitions(dataset) if p.id.startswith(prefix)]
    if not mine:
        return None
    manifest = store.manifest(dataset, mine[-1])
    if manifest.time_max is None:
        return None
    return datetime.fromisoformat(manifest.time_max.replace("Z", "+00:00"))


def build_bars_freshness_check(
    asset: str, bar: BarSize, hours: TradingHours
) -> dg.AssetChecksDefinition:
    """``fresh`` for a bars asset: its newest bar is no older than the last bar of the last
    completed session of ``hours`` (the schedules' calendar)."""

    @dg.asset_check(
        asset=asset,
        name=FRESH,
        description=f"The newest {bar.label} bar reaches the last completed {hours.calendar} "
        "session.",
    )
    def _fresh(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> dg.AssetCheckResult:
        now = clock.now()
        last = last_completed_session(hours, now)
        if last is None:
            return dg.AssetCheckResult(passed=True, metadata={"reason": "no completed session"})
        session_date, close = last
        newest_key = key_for_date(session_date, granularity(bar))
        loaded = run_last_partition(context.run.tags)
        if loaded is not None and loaded < newest_key:
            # A backfill of history: staleness is a property of the newest partition only.
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "skipped": dg.MetadataValue.text(
                        f"judged on the newest partition ({newest_key}) only; this run loaded "
                        f"partitions up to {loaded}"
                    ),
                    "newest_partition": dg.MetadataValue.text(newest_key),
                    "run_last_partition": dg.MetadataValue.text(loaded),
                },
            )
        newest = _newest(warehouse.store(clock), "bars", f"bar_size={bar.label}/")
        due = close - timedelta(seconds=bar.seconds if bar.is_intraday else 86_400)
        return dg.AssetCheckResult(
            passed=newest is not None and newest >= due,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "newest_bar": dg.MetadataValue.text(newest.isoformat() if newest else "none"),
                "due_at_least": dg.MetadataValue.text(due.isoformat()),
                "newest_partition": dg.MetadataValue.text(newest_key),
                "now": dg.MetadataValue.text(now.isoformat()),
            },
        )

    return _fresh


def build_quotes_freshness_check(asset: str, hours: TradingHours) -> dg.AssetChecksDefinition:
    """``fresh`` for quotes (see `quotes_reference_time`)."""

    @dg.asset_check(
        asset=asset,
        name=FRESH,
        description=f"The newest quote snapshot is at most {QUOTES_MAX_AGE} old during "
        "regular hours (or that close to the last close outside them).",
    )
    def _fresh(warehouse: WarehouseResource, clock: dg.ResourceParam[Clock]) -> dg.AssetCheckResult:
        now = clock.now()
        newest = _newest(warehouse.store(clock), "quotes")
        reference = quotes_reference_time(hours, now)
        return dg.AssetCheckResult(
            passed=newest is not None and newest >= reference - QUOTES_MAX_AGE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "newest_snapshot": dg.MetadataValue.text(newest.isoformat() if newest else "none"),
                "reference_time": dg.MetadataValue.text(reference.isoformat()),
                "max_age_minutes": dg.MetadataValue.int(int(QUOTES_MAX_AGE.total_seconds() // 60)),
            },
        )

    return _fresh


# --- real-time data ----------------------------------------------------------------------------


def run_partition_range(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The first and last partition key a run materialised, if it ran partitions."""
    first, last = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if first and last:
        return first, last
    one = tags.get(PARTITION_TAG)
    return (one, one) if one else None


def _symbols(store: Store) -> dict[int, str]:
    """conid -> symbol from the stored contracts (empty before the first contracts load)."""
    contracts = store.read("contracts")
    return {
        int(c): str(s)
        for c, s in zip(
            contracts.column("conid").to_pylist(),
            contracts.column("symbol").to_pylist(),
            strict=True,
        )
    }


def realtime_check_result(
    delayed: Sequence[DelayedData], checked: Mapping[str, Any]
) -> dg.AssetCheckResult:
    """``realtime``: pass when nothing arrived delayed; otherwise WARN naming the instruments."""
    details = [
        {
            "instrument": d.symbol,
            "conid": d.conid,
            "availability": d.code,
            "meaning": d.kind,
            "where": list(d.where[:MAX_NAMED]),
        }
        for d in delayed[:MAX_NAMED]
    ]
    names = [f"{d.symbol} ({d.conid})" for d in delayed]
    metadata: dict[str, Any] = {
        "delayed_instruments": dg.MetadataValue.json(sorted(set(names))),
        "delayed": dg.MetadataValue.json(details),
        **{k: dg.MetadataValue.json(v) for k, v in checked.items()},
    }
    return dg.AssetCheckResult(
        passed=not delayed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "all data real-time"
            if not delayed
            else "expected real-time, arrived delayed: " + ", ".join(sorted(set(names)))
        ),
        metadata=metadata,
    )


def build_bars_realtime_check(asset: str, bar: BarSize) -> dg.AssetChecksDefinition:
    """``realtime`` for a bars asset: judged on the partitions the run loaded (its range, or
    its one partition), else on the newest partition."""

    @dg.asset_check(
        asset=asset,
        name=REALTIME,
        description=f"The {bar.label} bars the run stored came from real-time history answers "
        "(mdAvailability); instruments the gateway served delayed are named (WARN).",
    )
    def _realtime(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        clock: dg.ResourceParam[Clock],
    ) -> dg.AssetCheckResult:
        store = warehouse.store(clock)
        prefix = f"bar_size={bar.label}/"
        ids = [p.id for p in store.partitions("bars") if p.id.startswith(prefix)]
        span = run_partition_range(context.run.tags)
        if span is not None:
            low, high = partition_id(bar, span[0]), partition_id(bar, span[1])
            chosen = [pid for pid in ids if low <= pid <= high]
        else:
            chosen = ids[-1:]
        manifests = [store.manifest("bars", pid) for pid in chosen]
        delayed = find_delayed_bars(manifests, _symbols(store))
        return realtime_check_result(delayed, {"partitions_checked": chosen[-MAX_NAMED:]})

    return _realtime


def build_quotes_realtime_check(asset: str) -> dg.AssetChecksDefinition:
    """``realtime`` for quotes: judged on the newest snapshot (one partition per snapshot)."""

    @dg.asset_check(
        asset=asset,
        name=REALTIME,
        description="The newest quote snapshot is real-time (field 6509); instruments the "
        "gateway served delayed are named (WARN).",
    )
    def _realtime(
        warehouse: WarehouseResource, clock: dg.ResourceParam[Clock]
    ) -> dg.AssetCheckResult:
        store = warehouse.store(clock)
        partitions = store.partitions("quotes")
        newest = store.read("quotes", partitions[-1]) if partitions else None
        delayed = [] if newest is None else find_delayed_quotes(newest, _symbols(store))
        checked = [partitions[-1].id] if partitions else []
        return realtime_check_result(delayed, {"partitions_checked": checked})

    return _realtime


# --- the usual results of a snapshot-style asset ------------------------------------------------


def write_results(
    asset: str,
    dataset: str,
    store: Store,
    writes: Sequence[WriteResult],
    *,
    labels: Sequence[str],
    requests: Mapping[str, int],
    run_id: str,
    time_column: str | None,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]:
    """Read back what ``writes`` stored, verify it, and yield the materialisation (with the
    usual metadata) followed by the ``contract`` and ``quarantine_empty`` results."""
    partitions = [p.partition for w in writes for p in w.partitions]
    tables = [store.read(dataset, p) for p in partitions]
    stored = pa.concat_tables(tables) if tables else dataset_spec(dataset).empty()
    verdict = verify_contract(dataset, stored, now=store.clock.now())
    verify_manifests(store, dataset, partitions, verdict)
    yield dg.MaterializeResult(
        asset_key=asset,
        metadata=load_metadata(
            writes,
            instruments=labels,
            requests=requests,
            preview=stored,
            time_range_text=time_range(stored, time_column),
            extra=extra,
        ),
    )
    yield contract_check_result(asset, verdict)
    yield quarantine_check_result(asset, dataset, writes, store, run_id)
