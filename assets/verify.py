"""What the checks verify, computed without Dagster: contract re-validation and bar gaps.

Why apart from `assets.checks`: the benchmark's baseline must do the same work as a Dagster run
without Dagster, and scripts may verify a warehouse without running Dagster at all. The Dagster
side only turns these results into `AssetCheckResult`s.

- `verify_contract`: stored rows read back from the warehouse, turned back into the
  normaliser's schema, validated again by `ib_pipeline.schemas.validate`; any row that fails
  means the warehouse holds data its contract forbids.
- `find_gaps`: each instrument's stored bars against the bars its sessions imply
  (`ib_pipeline.calendars.bar_starts`, half days included), counting only bars completed by now
  (an intraday bar once its last minute has ended, a daily bar once its session has).
- `find_delayed_bars` / `find_delayed_quotes`: instruments whose stored data the gateway
  flagged delayed (history ``mdAvailability`` kept in the partition manifests, snapshot field
  6509 kept in the quotes' ``market_data_availability``), although every instrument of the
  universe is expected real-time.

Never calls the gateway and never writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.calendars import Session, TradingHours, bar_starts
from ib_pipeline.ibkr.normalize import DELAYED_KINDS, md_availability_kind
from ib_pipeline.schemas import ValidationContext, validate
from ib_pipeline.storage.datasets import dataset_spec
from ib_pipeline.storage.manifest import STATUS_OK, Manifest
from ib_pipeline.storage.store import Store
from ib_pipeline.timeframes import BarKind, BarSize
from ib_pipeline.universe import ResolvedContract

MAX_SAMPLES = 50
"""Rejected rows kept as examples (the counts are always complete)."""


@dataclass
class ContractVerdict:
    """The outcome of re-validating stored rows; accumulates over chunks."""

    rows_checked: int = 0
    rows_violating: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    samples: list[pa.Table] = field(default_factory=list)
    stale_partitions: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.rows_violating == 0 and not self.stale_partitions

    def sample_table(self) -> pa.Table | None:
        return pa.concat_tables(self.samples) if self.samples else None


def _as_input(dataset: str, stored: pa.Table) -> list[tuple[pa.Table, datetime | None]]:
    """Stored rows back in the normaliser's schema; one table per snapshot time when the store
    derived ``as_of`` (quotes, orders), since validation takes that time as context."""
    spec = dataset_spec(dataset)
    derived = [n for n in stored.column_names if n not in spec.input_schema.names]
    if not spec.adds_as_of:
        return [(stored.drop_columns(derived), None)]
    parts = []
    as_of_type = stored.schema.field("as_of").type
    for value in pc.unique(stored.column("as_of")).to_pylist():
        rows = stored.filter(pc.equal(stored.column("as_of"), pa.scalar(value, as_of_type)))
        parts.append((rows.drop_columns(derived), value))
    return parts


def verify_contract(
    dataset: str,
    stored: pa.Table,
    *,
    now: datetime,
    verdict: ContractVerdict | None = None,
    window: tuple[datetime, datetime] | None = None,
    hours: Mapping[int, TradingHours] | None = None,
    outside_rth: bool = False,
) -> ContractVerdict:
    """Re-validate ``stored`` rows of ``dataset``; adds to ``verdict`` when given."""
    verdict = verdict if verdict is not None else ContractVerdict()
    for table, as_of in _as_input(dataset, stored):
        context = ValidationContext(
            now=now, as_of=as_of, window=window, hours=hours, outside_rth=outside_rth
        )
        result = validate(dataset, table, context)
        verdict.rows_checked += int(table.num_rows)
        verdict.rows_violating += int(result.rejected.num_rows)
        for name, count in result.reasons.items():
            verdict.reasons[name] = verdict.reasons.get(name, 0) + count
        room = MAX_SAMPLES - sum(int(t.num_rows) for t in verdict.samples)
        if result.rejected.num_rows and room > 0:
            verdict.samples.append(result.rejected.slice(0, room))
    return verdict


def verify_manifests(
    store: Store, dataset: str, partitions: Sequence[str], verdict: ContractVerdict
) -> ContractVerdict:
    """Record partitions whose manifest does not describe their data file."""
    for partition in partitions:
        status = store.manifest(dataset, partition).status
        if status != STATUS_OK:
            verdict.stale_partitions.append(f"{partition} ({status})")
    return verdict


@dataclass(frozen=True)
class Gap:
    """Missing or extra bars of one instrument in one session (epoch ms)."""

    symbol: str
    conid: int
    session: str
    missing: tuple[int, ...]
    extra: tuple[int, ...]


def checks_completeness(bar: BarSize) -> bool:
    """Whether bars of this size have a calendar-implied count per session."""
    return bar.kind in (BarKind.INTRADAY, BarKind.DAY)


def expected_bars(session: Session, bar: BarSize, outside_rth: bool, now_ms: int) -> np.ndarray:
    """Starts (epoch ms) of the session's bars of ``bar`` completed by ``now_ms``."""
    starts = bar_starts(session, bar, outside_rth)
    session_end = session.bounds_ms(outside_rth)[1]
    if bar.is_intraday:
        ends = np.append(starts[1:], session_end)
    else:
        ends = np.full(len(starts), session_end, dtype=np.int64)
    return starts[ends <= now_ms]


def find_gaps(
    stored: pa.Table,
    contracts: Sequence[ResolvedContract],
    sessions_of: Mapping[int, Sequence[Session]],
    bar: BarSize,
    *,
    outside_rth: bool,
    now: datetime,
) -> list[Gap]:
    """Compare each contract's stored bars (``stored``: the bars of the partitions holding
    ``sessions_of``) with the bars its sessions imply."""
    now_ms = round(now.timestamp() * 1000)
    conids = np.asarray(stored.column("conid").to_numpy(), dtype=np.int64)
    stamps = np.asarray(stored.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64)
    gaps: list[Gap] = []
    for contract in contracts:
        mine = np.sort(stamps[conids == contract.conid])
        for session in sessions_of.get(contract.conid, ()):
            start_ms, end_ms = session.bounds_ms(True)
            expected = expected_bars(session, bar, outside_rth, now_ms)
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


@dataclass(frozen=True)
class DelayedData:
    """One instrument whose stored data arrived delayed: its availability ``code`` as IBKR sent
    it (``D``, ``DpB``, ``Y``...), what it means (``kind``), and where it is stored (bar
    partitions, or the quote snapshot's time)."""

    conid: int
    symbol: str
    code: str
    kind: str
    where: tuple[str, ...]


def find_delayed_bars(
    manifests: Sequence[Manifest], symbols: Mapping[int, str]
) -> list[DelayedData]:
    """Instruments whose bars in the partitions of ``manifests`` came from a history answer
    flagged delayed (`Manifest.market_data_availability`), by conid."""
    found: dict[tuple[int, str], list[str]] = {}
    for manifest in manifests:
        for conid, code in manifest.market_data_availability().items():
            if md_availability_kind(code) in DELAYED_KINDS:
                found.setdefault((conid, code), []).append(manifest.partition)
    return [
        DelayedData(
            conid,
            symbols.get(conid, str(conid)),
            code,
            md_availability_kind(code) or "",
            tuple(partitions),
        )
        for (conid, code), partitions in sorted(found.items())
    ]


def find_delayed_quotes(quotes: pa.Table, symbols: Mapping[int, str]) -> list[DelayedData]:
    """Instruments whose quote rows carry a delayed availability (snapshot field 6509)."""
    if quotes.num_rows == 0 or "market_data_availability" not in quotes.column_names:
        return []
    found: dict[tuple[int, str], list[str]] = {}
    times = (
        quotes.column("as_of").to_pylist()
        if "as_of" in quotes.column_names
        else [None] * quotes.num_rows
    )
    rows = zip(
        quotes.column("conid").to_pylist(),
        quotes.column("market_data_availability").to_pylist(),
        times,
        strict=True,
    )
    for conid, code, as_of in rows:
        if md_availability_kind(code) in DELAYED_KINDS:
            where = found.setdefault((int(conid), str(code)), [])
            text = as_of.isoformat() if isinstance(as_of, datetime) else str(as_of)
            if text not in where:
                where.append(text)
    return [
        DelayedData(
            conid, symbols.get(conid, str(conid)), code, md_availability_kind(code) or "", tuple(w)
        )
        for (conid, code), w in sorted(found.items())
    ]
