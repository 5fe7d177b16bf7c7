"""The overlap check of every bars run: bars already stored, received again, compared.

Why: IBKR serves history adjusted for splits as of the request, so a split between two runs
puts the stored bars and the new ones on different bases (`ib_pipeline.corporate_actions`).
Every run compares, per instrument, stored bars with the same bars fetched now:

- **Free overlap.** The history planner asks each range's last page for one session more
  than it needs (answers are cut to the 1000 most recent bars, so it costs nothing), and the
  loader drops what lies before the range. Those bars of the run's first range per instrument
  (the "spill": usually the tail of the last stored session) are compared before anything is
  written. For a daily incremental run that is the whole overlap: **zero extra requests**.
- **Probe.** When no spilled bar matches a stored one (the last page was full, the run
  fetches nothing for the instrument, or its range lies before the stored history) and the
  instrument has stored bars outside the run, ONE history request fetches the last
  `PROBE_BARS` stored bars of its latest stored partition: one request per such instrument.

A split restates the instrument's stored bars before the run writes (`restate_split`) and is
recorded in ``corporate_actions``; a revision returns the differing sessions, which the loader
fetches again after its writes (replacing them) and reports. Weekly and monthly bars are not
compared (a week or month still trading differs from its stored partial bar without any
revision); their check is left to the daily bars of the same instrument.

It never builds an HTTP client and never imports dagster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assets.bar_plan import FetchWindow
from ib_pipeline import corporate_actions as ca
from ib_pipeline.calendars import calendar_for
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.history import HistoryRange
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.storage.manifest import Manifest
from ib_pipeline.storage.parquet import CorruptFileError
from ib_pipeline.storage.store import Store
from ib_pipeline.timeframes import BarKind, BarSize
from ib_pipeline.universe import ResolvedContract

PROBE_BARS = 500
"""Bars a probe asks for: the tail of the latest stored partition, in one request."""


@dataclass
class OverlapReport:
    """What the overlap check of one run compared and found."""

    bars_compared: int = 0
    instruments_compared: int = 0
    probe_requests: int = 0
    splits: list[dict[str, Any]] = field(default_factory=list)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    revision_windows: list[FetchWindow] = field(default_factory=list)


def compares(bar: BarSize) -> bool:
    """Whether runs of ``bar`` compare an overlap (module doc: not weekly or monthly bars)."""
    return bar.kind not in (BarKind.WEEK, BarKind.MONTH)


def spill_of(history: HistoryRange, start: datetime, lot_size: float) -> pa.Table:
    """The bars of ``history``'s pages before ``start`` (dropped by the load)."""
    bars = readable_bars(history, lot_size)
    return bars.filter(pc.less(bars.column("ts"), pa.scalar(start, HISTORY_BARS.field("ts").type)))


def readable_bars(history: HistoryRange, lot_size: float) -> pa.Table:
    """The bars of ``history``'s pages whose values all parse: a bar the gateway sent with an
    unreadable value goes to quarantine through the load (`ib_pipeline.conversion`), and is no
    evidence of a split either way, so it is left out of the comparison."""
    req = history.request
    parts = []
    for page in history.pages:
        unreadable: list[normalize.Unreadable] = []
        parts.append(
            normalize.history_bars(
                page.payload,
                conid=req.conid,
                bar_size=req.bar.label,
                lot_size=lot_size,
                unreadable=unreadable,
            )
        )
    if not parts:
        return HISTORY_BARS.empty_table()
    bars = pa.concat_tables(parts)
    present = pc.and_(
        pc.and_(pc.is_valid(bars.column("open")), pc.is_valid(bars.column("close"))),
        pc.and_(
            pc.and_(pc.is_valid(bars.column("high")), pc.is_valid(bars.column("low"))),
            pc.is_valid(bars.column("volume")),
        ),
    )
    return bars.filter(present)


def _iso(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _grain_manifests(store: Store, bar: BarSize, exclude: set[str]) -> list[Manifest]:
    """The manifests of ``bar``'s stored partitions outside ``exclude`` that have times: read
    once per check, not once per instrument (four requests per partition on an object
    store)."""
    prefix = f"bar_size={bar.label}/"
    return [
        m
        for m in store.manifests("bars")
        if m.partition.startswith(prefix)
        and m.partition not in exclude
        and m.time_min
        and m.time_max
    ]


def _read(store: Store, manifest: Manifest, conid: int) -> pa.Table | None:
    try:
        table = store.read("bars", manifest.partition)
    except (CorruptFileError, FileNotFoundError):
        return None  # a damaged partition is not complete: the run fetches it again
    return table.filter(pc.equal(table.column("conid"), conid))


async def check_overlap(
    client: IbkrClient,
    store: Store,
    contracts: Sequence[ResolvedContract],
    bar: BarSize,
    *,
    outside_rth: bool,
    exclude: set[str],
    spill: Mapping[int, Sequence[pa.Table]],
    run_id: str,
    now: datetime,
) -> OverlapReport:
    """Compare, restate splits, and list revisions, for every contract (module doc)."""
    report = OverlapReport()
    if not compares(bar):
        return report
    grain: list[Manifest] | None = None
    for contract in contracts:
        if grain is None:
            grain = _grain_manifests(store, bar, exclude)
        manifests = [m for m in grain if contract.conid in m.conids]
        if not manifests:
            continue  # nothing stored outside the run: nothing to compare
        fetched = (
            pa.concat_tables(list(spill[contract.conid]))
            if spill.get(contract.conid)
            else HISTORY_BARS.empty_table()
        )
        stored, holders = _stored_for(store, manifests, contract.conid, fetched)
        comparison = ca.compare(contract.conid, stored, fetched)
        if comparison.matched == 0:
            fetched, stored, holders = await _probe(
                client, store, contract, bar, manifests, outside_rth=outside_rth, now=now
            )
            report.probe_requests += 1
            comparison = ca.compare(contract.conid, stored, fetched)
        if comparison.matched == 0:
            continue
        report.bars_compared += comparison.matched
        report.instruments_compared += 1
        if comparison.ratio is not None and comparison.compared_session is not None:
            grain = None  # a restatement rewrites partitions: read their manifests again
            _restate(
                store,
                contract,
                bar,
                comparison,
                holders=holders,
                report=report,
                outside_rth=outside_rth,
                exclude=exclude,
                run_id=run_id,
                now=now,
            )
        elif comparison.revised_sessions:
            _note_revision(
                contract, bar, comparison, report=report, outside_rth=outside_rth, now=now
            )
    return report


def _stored_for(
    store: Store, manifests: Sequence[Manifest], conid: int, fetched: pa.Table
) -> tuple[pa.Table, dict[date, Manifest]]:
    """Stored bars of ``conid`` at the times of ``fetched``, and the manifest holding each
    session of them."""
    holders: dict[date, Manifest] = {}
    if fetched.num_rows == 0:
        return _empty_stored(), holders
    bounds = pc.min_max(fetched.column("ts"))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    tables = []
    for manifest in manifests:
        first, last = _iso(manifest.time_min), _iso(manifest.time_max)
        if first is None or last is None or last < low or first > high:
            continue
        table = _read(store, manifest, conid)
        if table is None or table.num_rows == 0:
            continue
        for day in set(table.column("session_date").to_pylist()):
            holders[day] = manifest
        tables.append(table)
    return (pa.concat_tables(tables) if tables else _empty_stored()), holders


def _empty_stored() -> pa.Table:
    from ib_pipeline.storage.datasets import DATASETS  # noqa: PLC0415 (schema only)

    return DATASETS["bars"].empty()


async def _probe(
    client: IbkrClient,
    store: Store,
    contract: ResolvedContract,
    bar: BarSize,
    manifests: Sequence[Manifest],
    *,
    outside_rth: bool,
    now: datetime,
) -> tuple[pa.Table, pa.Table, dict[date, Manifest]]:
    """One request: the last `PROBE_BARS` stored bars of the latest stored partition, again."""
    latest = max(manifests, key=lambda m: m.time_max or "")
    table = _read(store, latest, contract.conid)
    if table is None or table.num_rows == 0:
        return HISTORY_BARS.empty_table(), _empty_stored(), {}
    tail = table.sort_by("ts").slice(max(0, table.num_rows - PROBE_BARS))
    bounds = pc.min_max(tail.column("ts"))
    start = bounds["min"].as_py()
    end = min(bounds["max"].as_py() + timedelta(milliseconds=1), now)
    history = await client.history_range(
        contract.conid, bar.label, start, end, outside_rth=outside_rth, hours=contract.hours
    )
    fetched = readable_bars(history, float(contract.lot_size))
    holders = {day: latest for day in set(tail.column("session_date").to_pylist())}
    return fetched, tail, holders


def _restate(
    store: Store,
    contract: ResolvedContract,
    bar: BarSize,
    comparison: ca.Comparison,
    *,
    holders: Mapping[date, Manifest],
    report: OverlapReport,
    outside_rth: bool,
    exclude: set[str],
    run_id: str,
    now: datetime,
) -> None:
    assert comparison.ratio is not None and comparison.compared_session is not None
    holder = holders.get(comparison.compared_session)
    written = _iso(holder.written_at) if holder is not None else None
    effective = ca.effective_date(
        contract.hours, comparison.compared_session, written, now.astimezone(UTC).date()
    )
    source = {
        "restated": ca.SPLIT,
        "conid": contract.conid,
        "ratio": comparison.ratio,
        "effective_date": effective.isoformat(),
    }
    rows, partitions = ca.restate_split(
        store,
        contract.conid,
        bar.label,
        comparison.ratio,
        exclude=exclude,
        hours={contract.conid: contract.hours},
        outside_rth=outside_rth,
        run_id=run_id,
        source=source,
    )
    store.record_corporate_actions(
        ca.action_row(
            conid=contract.conid,
            bar_size=bar.label,
            effective=effective,
            ratio=comparison.ratio,
            compared_session=comparison.compared_session,
            detected_at=now,
            rows_restated=rows,
            partitions_restated=partitions,
            run_id=run_id,
        )
    )
    report.splits.append(
        {
            "conid": contract.conid,
            "symbol": contract.symbol,
            "ratio": comparison.ratio,
            "effective_date": effective.isoformat(),
            "rows_restated": rows,
            "partitions_restated": partitions,
        }
    )


def _note_revision(
    contract: ResolvedContract,
    bar: BarSize,
    comparison: ca.Comparison,
    *,
    report: OverlapReport,
    outside_rth: bool,
    now: datetime,
) -> None:
    cal = calendar_for(contract.hours)
    for day in comparison.revised_sessions:
        start, end = cal.session(day).bounds(outside_rth)
        end = min(end, now)
        if start < end:
            report.revision_windows.append(FetchWindow(contract, start, end))
    report.revisions.append(
        {
            "conid": contract.conid,
            "symbol": contract.symbol,
            "sessions": [d.isoformat() for d in comparison.revised_sessions],
        }
    )
