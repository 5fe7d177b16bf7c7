"""The warehouse store: validated, partitioned Parquet that is replaced atomically.

Why: a bar must never be lost, duplicated, or wrong without a trace. Every load goes through
the dataset's contract (`ib_pipeline.schemas`); valid rows are merged into their partitions and
each partition file is replaced atomically, then its manifest; rejected rows go to the
quarantine with their reasons; the DuckDB catalog is refreshed. Re-running a load gives the same
rows (and the same bytes). The root is a local folder or any fsspec URL (`storage.fs`).

Semantics of a load (`Store.load`, `Store.write` for one batch)
---------------------------------------------------------------
- Each batch is judged on its own (duplicates inside a batch: `storage.keys`); batches sharing
  a context are validated in one pass.
- ``mode="merge"`` (default): a partition becomes the union of what it held and the new rows,
  keyed by the dataset key; for a key present in both, the newer row wins (later batches win
  over earlier ones). No duplicates, whatever overlaps.
- ``mode="replace"``: the rows a partition receives replace what it held *for what the load
  fetched*: for datasets filed by instrument (`DatasetSpec.replace_by`: bars), only the
  stored rows of the instruments the load brought to that partition, inside the windows of
  the batches that brought them (the whole partition for a batch without a window); the
  other instruments' rows are kept and merged by key. For other datasets the partition
  becomes exactly the new rows. Loading never deletes rows of instruments it did not fetch.
  Partitions receiving no rows are never touched. (The bar loader and replay use it: a
  re-fetched or replayed range is the truth for its instrument.)
- A partition is written whole: new file beside the old one, fsync, rename (`storage.fs`);
  then the manifest (under ``_manifests/``, outside the data folders); a reader sees the old
  or the new partition, never a mix. Columns the partition's folders name are not stored in
  the file; reads add them back from the path (`datasets.path_columns`).

Memory (issue 11 item 5)
------------------------
A load writes only after its last chunk, so whatever it validated must wait somewhere: up to
`SPILL_ROWS` valid rows wait in memory (without the columns their partition's folders name);
past that, every partition's rows go to LZ4-compressed Arrow files under ``_tmp/`` (or a local
temporary folder for an object-store root) and are read back one partition at a time when it
is written (`storage.spill`). Each batch's source is kept as compact JSON bytes. A replay of
49M minute bars thus holds about `SPILL_ROWS` rows, never the 49M, and writes the same bytes
as if it had held them all.

Bad files (issue 10 items 5-6, issue 11 "bad input")
----------------------------------------------------
- A data file that cannot be decoded (truncated, bytes flipped: files carry page CRCs, checked
  on every read here) raises `CorruptFileError` naming the file, never a bare Arrow error.
- ``manifest(verify=True)`` hashes the file: ``corrupt`` (the bytes differ from the manifest
  and do not decode), ``stale`` (another readable file: a crash between the two writes).
- A manifest that is not valid JSON, or lacks fields, is ``garbled``: treated as missing (a
  summary is read from the data), reported, never an abort of the whole warehouse.
- A ``replace`` of a partition whose file is corrupt writes the new rows (the repair); a
  ``merge`` into it fails naming the file, since the rows to keep cannot be read.
- One writer per partition at a time: local roots take a folder lock; on object stores it is
  the orchestrator's job (Dagster runs one materialisation per partition).

What it must never do: call the API, or write a row that failed its contract.
"""

from __future__ import annotations

import functools
import os
import time
from array import array
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline import warehouse
from ib_pipeline.calendars import TradingHours
from ib_pipeline.clock import Clock, SystemClock
from ib_pipeline.schemas import BATCH, ValidationContext, validate
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.storage import keys
from ib_pipeline.storage.datasets import (
    CORPORATE_ACTIONS,
    CORPORATE_ACTIONS_FILE,
    CORPORATE_ACTIONS_KEY,
    CORPORATE_ACTIONS_SCHEMA,
    DATASETS,
    SESSION_DATE,
    DatasetSpec,
    conform,
    dataset_spec,
    path_columns,
)
from ib_pipeline.storage.fs import FsspecRoot, LocalRoot, open_root
from ib_pipeline.storage.listing import check_no_glob, legacy_error
from ib_pipeline.storage.manifest import (
    STATUS_CORRUPT,
    STATUS_GARBLED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_STALE,
    Manifest,
    describe,
    iso_ms,
    merge_sources,
    source_json,
)
from ib_pipeline.storage.parquet import (
    CorruptFileError,
    read_parquet_file,
    sha256,
    to_parquet_bytes,
)
from ib_pipeline.storage.paths import Partition, dataset_folders, partition_of_data_path
from ib_pipeline.storage.quarantine import (
    QUARANTINE,
    QUARANTINE_SCHEMA,
    quarantine_file,
    quarantine_records,
)
from ib_pipeline.storage.scrub import scrub
from ib_pipeline.storage.spill import HeldRows

__all__ = [
    "DATASETS",
    "Batch",
    "CorruptFileError",
    "Manifest",
    "Partition",
    "PartitionWrite",
    "Store",
    "WriteResult",
]

Mode = Literal["merge", "replace"]

SPILL_ROWS = 2_000_000
"""Validated rows a load holds in memory before it spills them to disk (`storage.spill`):
about 200 MB of minute bars. Live loads and small replays stay under it and never spill."""


@dataclass(frozen=True)
class Batch:
    """One normalised table and what its validity depends on.

    ``source``: the request it came from (endpoint, params, fetch time), kept in manifests and
    quarantine records; secrets are scrubbed. ``as_of``: snapshot time (quotes, orders).
    ``window``: [start, end) its rows must fall in. ``hours``/``outside_rth``: bars only, each
    conid's trading hours and whether extended hours were requested.
    """

    table: pa.Table
    source: Mapping[str, Any] | str
    as_of: datetime | None = None
    window: tuple[datetime, datetime] | None = None
    hours: Mapping[int, TradingHours] | None = None
    outside_rth: bool | Mapping[int, bool] = False


@dataclass(frozen=True)
class PartitionWrite:
    """What a load did to one partition."""

    partition: str
    path: str  # root-relative data file
    rows: int  # rows in the partition after the write
    rows_loaded: int  # valid rows this load brought to it (new or replacing)
    quarantined: int  # rows of this load meant for it that were quarantined
    content_sha256: str
    unchanged: bool  # the bytes are identical to the previous file


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one load."""

    dataset: str
    run_id: str
    partitions: tuple[PartitionWrite, ...]
    rows_valid: int
    rows_quarantined: int
    duplicates_collapsed: int
    reasons: dict[str, int]  # failed check -> rejected rows
    quarantine_files: tuple[str, ...]
    # seconds in the contracts ("validate"), partitioning, merging and writing files ("write"),
    # rebuilding the DuckDB catalog ("catalog")
    seconds: dict[str, float] = field(default_factory=dict)
    # valid rows spilled to disk until the write (past the load's budget; `storage.spill`)
    rows_spilled: int = 0


class Store:
    """A warehouse root and the operations on its datasets."""

    def __init__(
        self,
        root: str | os.PathLike[str] | Any | None = None,
        *,
        clock: Clock | None = None,
        catalog: bool = True,
    ) -> None:
        """``root``: folder, URL or UPath (default: `WarehouseSettings` from the environment).
        ``catalog``: rebuild ``warehouse.duckdb`` after writes that change its views.

        A root DuckDB would read as a glob pattern is refused here, before anything is fetched
        or written: no reader could ever query what the store would write under it."""
        self.root: LocalRoot | FsspecRoot = open_root(
            WarehouseSettings.from_env().root if root is None else root
        )
        check_no_glob(self.root.url)
        self.clock: Clock = clock or SystemClock()
        self.catalog = catalog

    @classmethod
    def from_settings(cls, settings: WarehouseSettings, *, clock: Clock | None = None) -> Store:
        return cls(settings.root, clock=clock)

    @property
    def url(self) -> str:
        return self.root.url

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # --- writing ---------------------------------------------------------------------------

    def write(
        self,
        dataset: str,
        table: pa.Table,
        *,
        source: Mapping[str, Any] | str,
        run_id: str,
        as_of: datetime | None = None,
        window: tuple[datetime, datetime] | None = None,
        hours: Mapping[int, TradingHours] | None = None,
        outside_rth: bool | Mapping[int, bool] = False,
        mode: Mode = "merge",
    ) -> WriteResult:
        """Validate and store one table (see `load`)."""
        batch = Batch(table, source, as_of, window, hours, outside_rth)
        return self.load(dataset, [batch], run_id=run_id, mode=mode)

    def load(
        self,
        dataset: str,
        batches: Sequence[Batch],
        *,
        run_id: str,
        mode: Mode = "merge",
        only: Collection[str] | None = None,
    ) -> WriteResult:
        """Validate ``batches`` (oldest first: later ones win on equal keys) and write every
        partition they touch. ``only``: partition ids to write; rows for others are ignored
        (not written, not quarantined), except rejected rows that belong to no partition at
        all (a bar outside every session): no other load could claim them, so they are
        quarantined whatever ``only`` says. Returns counts per partition and the quarantine."""
        return self.load_stream(dataset, [batches], run_id=run_id, mode=mode, only=only)

    def load_stream(
        self,
        dataset: str,
        chunks: Iterable[Sequence[Batch]],
        *,
        run_id: str,
        mode: Mode = "merge",
        only: Collection[str] | None = None,
        spill_rows: int | None = None,
    ) -> WriteResult:
        """`load` of batches arriving in consecutive chunks (oldest first), with the result of
        `load` of them all at once. Each chunk is validated as soon as it arrives, so the
        contracts run while whatever produces the next chunk works (a replay's processes
        convert raw files meanwhile); partitions and quarantine are written only after the
        last chunk, so an iterator that raises leaves them untouched. A context group's
        trading hours are those of its batches up to the current chunk.

        Memory stays bounded whatever the stream's length: validated rows are held in memory
        up to ``spill_rows`` rows (default `SPILL_ROWS`); past that, every partition's held
        rows are spilled to local disk (`storage.spill`) and read back one partition at a time
        when it is written; the spill folder is removed however the load ends. Spilling
        changes no byte of any partition or manifest. Batch sources are kept as JSON in one
        buffer (`_Sources`; a replay of a year of minute bars has 100k+ batches).
        ``seconds["wait"]``: time spent waiting for chunks (not counted in ``write``)."""
        spec = dataset_spec(dataset)
        if mode not in ("merge", "replace"):
            raise ValueError(f"mode must be 'merge' or 'replace', got {mode!r}")
        if not run_id or not isinstance(run_id, str):
            raise ValueError("run_id must be a non-empty string naming the run")
        budget = SPILL_ROWS if spill_rows is None else spill_rows
        with HeldRows[Partition](self.root, budget) as held:
            return self._load_held(spec, chunks, held, run_id=run_id, mode=mode, only=only)

    def _load_held(
        self,
        spec: DatasetSpec,
        chunks: Iterable[Sequence[Batch]],
        held: HeldRows[Partition],
        *,
        run_id: str,
        mode: Mode,
        only: Collection[str] | None,
    ) -> WriteResult:
        """`load_stream` with its validated rows held (and spilled) by ``held``."""
        now = self.clock.now()
        now_ms = round(now.timestamp() * 1000)
        started = time.perf_counter()
        # per batch ordinal, numbered across all chunks: its source (`_Sources`) and its
        # window (one object per distinct window)
        sources = _Sources()
        windows: list[tuple[datetime, datetime] | None] = []
        distinct_windows: dict[tuple[datetime, datetime] | None, Any] = {None: None}

        folder_columns = _FolderColumns(spec)
        by_group: dict[tuple[Any, ...], list[pa.Table]] = {}  # quarantine records, group-major
        group_hours: dict[tuple[Any, ...], dict[int, TradingHours] | None] = {}
        reasons: dict[str, int] = {}
        collapsed = 0
        validating = 0.0  # seconds inside the contracts (the rest is partitioning and I/O)
        waiting = 0.0  # seconds waiting for the next chunk
        pending = iter(chunks)
        while True:
            asked = time.perf_counter()
            batches = next(pending, None)
            waiting += time.perf_counter() - asked
            if batches is None:
                break
            first = len(sources)
            for batch in batches:
                sources.append(batch.source)
            windows.extend(distinct_windows.setdefault(b.window, b.window) for b in batches)
            for group, indices, context in _context_groups(batches, now, group_hours):
                tables = [batches[i].table for i in indices]
                counts = [t.num_rows for t in tables]
                combined = _concat_conformed(spec, tables)
                ids = np.repeat(np.asarray(indices, dtype=np.int64) + first, counts)
                checking = time.perf_counter()
                result = validate(spec.name, combined, context, batches=ids)
                validating += time.perf_counter() - checking
                collapsed += result.duplicates_collapsed
                for name, count in result.reasons.items():
                    reasons[name] = reasons.get(name, 0) + count
                valid = result.valid.rename_columns(
                    [keys.ORDINAL if n == BATCH else n for n in result.valid.column_names]
                )
                for partition, rows in spec.group(valid):
                    if only is not None and partition.id not in only:
                        continue
                    held.add(partition, folder_columns.drop(partition, _rows_of(valid, rows)))
                records, homeless = self._quarantine_records(
                    spec, result.rejected, sources, run_id, now_ms
                )
                if only is not None and records.num_rows:
                    targets = records.column("partition").to_pylist()
                    wanted = pa.array(
                        [p in only or h for p, h in zip(targets, homeless, strict=True)]
                    )
                    records = records.filter(wanted)
                if records.num_rows:
                    by_group.setdefault(group, []).append(records)

        quarantined = [records for group in by_group.values() for records in group]
        all_records = (
            pa.concat_tables(quarantined) if quarantined else QUARANTINE_SCHEMA.empty_table()
        )
        per_partition_q = _count_by(all_records.column("partition").to_pylist())

        def write(partition: Partition) -> PartitionWrite:
            # the partition's rows are read back (if spilled) only now, inside its write; each
            # part in one piece (a part read back from a spill file can be several batches)
            parts = [
                folder_columns.restore(partition, part.combine_chunks())
                for part in held.take(partition)
            ]
            used = sorted({int(b) for t in parts for b in pc.unique(t[keys.ORDINAL]).to_pylist()})
            return self._write_partition(
                spec,
                partition,
                [_shift_ordinal(t) for t in parts],
                [orjson.loads(sources[b]) for b in used],
                run_id=run_id,
                mode=mode,
                written_at=iso_ms(now_ms),
                quarantined=per_partition_q.get(partition.id, 0),
                scope=functools.partial(_scope, spec, parts, windows)
                if mode == "replace"
                else None,
            )

        written = _run_writes([functools.partial(write, p) for p in sorted(held.keys())])
        q_files = []
        if all_records.num_rows:
            path = quarantine_file(spec.name, all_records)
            with self.root.lock(path.rsplit("/", 1)[0]):
                # ``dataset`` is the folder's key (quarantine/dataset=bars/): not in the file
                stored_records = all_records.drop_columns(["dataset"])
                self.root.write_atomic(path, to_parquet_bytes(stored_records))
            q_files.append(path)
        stored = time.perf_counter()
        if self.catalog and (written or q_files):
            self.refresh_catalog()
        finished = time.perf_counter()
        return WriteResult(
            dataset=spec.name,
            run_id=run_id,
            partitions=tuple(written),
            rows_valid=sum(w.rows_loaded for w in written),
            rows_quarantined=int(all_records.num_rows),
            duplicates_collapsed=collapsed,
            reasons=reasons,
            quarantine_files=tuple(q_files),
            rows_spilled=held.spilled_rows,
            seconds={
                "validate": validating,
                "write": stored - started - validating - waiting,
                "catalog": finished - stored,
                "wait": waiting,
            },
        )

    def _quarantine_records(
        self,
        spec: DatasetSpec,
        rejected: pa.Table,
        sources: _Sources,
        run_id: str,
        now_ms: int,
    ) -> tuple[pa.Table, list[bool]]:
        """Quarantine records of one validated group, each with its own batch's source, and
        for each record whether its row belongs to no partition at all: a bar outside every
        session has no session date (the record names the UTC date of its time instead)."""
        if rejected.num_rows == 0:
            return QUARANTINE_SCHEMA.empty_table(), []
        parts = []
        homeless: list[bool] = []
        batch_ids = np.asarray(rejected.column(BATCH).to_numpy(), dtype=np.int64)
        for batch in np.unique(batch_ids):
            rows = rejected.filter(pa.array(batch_ids == batch)).drop_columns([BATCH])
            text = sources[int(batch)].decode()
            parts.append(quarantine_records(spec, rows, source=text, run_id=run_id, at_ms=now_ms))
            if SESSION_DATE.name in rows.column_names:
                homeless.extend(pc.is_null(rows.column(SESSION_DATE.name)).to_pylist())
            else:
                homeless.extend([False] * rows.num_rows)
        return pa.concat_tables(parts), homeless

    def _write_partition(
        self,
        spec: DatasetSpec,
        partition: Partition,
        tables: list[pa.Table],
        sources: list[Any],
        *,
        run_id: str,
        mode: Mode,
        written_at: str,
        quarantined: int,
        scope: Callable[[], Scope | None] | None = None,
    ) -> PartitionWrite:
        """Merge ``tables`` into the partition and write it, then its manifest. ``scope``
        (replace mode) gives what the load rewrites in it: called only when there is a
        stored file to keep rows of (a first write has none to look at)."""
        # the data folder, then the manifest's: taking each lock sweeps the temporary files a
        # crashed writer left in that folder (the manifest's lives under _manifests/)
        manifest_folder = partition.manifest_path.rsplit("/", 1)[0]
        with self.root.lock(partition.folder), self.root.lock(manifest_folder):
            previous_bytes = (
                self.root.read_bytes(partition.data_path)
                if self.root.exists(partition.data_path)
                else None
            )
            parts = list(tables)
            previous_sources: list[Any] = []
            kept = None
            if previous_bytes is not None and mode == "merge":
                kept = self._read_stored(spec, partition, previous_bytes)
            elif previous_bytes is not None and scope is not None:
                scoped = scope()  # None: the partition is replaced whole
                if scoped is not None:
                    try:
                        previous_table = self._read_stored(spec, partition, previous_bytes)
                    except CorruptFileError:  # nothing readable to keep: the replace repairs it
                        previous_table = None
                    if previous_table is not None:
                        kept = _outside_scope(spec, previous_table, scoped)
            if kept is not None and (mode == "merge" or kept.num_rows):
                parts.insert(0, kept)
                previous, _ = self._read_manifest(partition)
                previous_sources = previous.sources if previous is not None else []
            merged = keys.merge(parts, spec.file_key, spec.sort)
            from_path = path_columns(spec.schema, partition.pairs())
            data = to_parquet_bytes(merged.drop_columns(list(from_path)))
            digest = sha256(data)
            unchanged = data == previous_bytes
            if not unchanged:
                self.root.write_atomic(partition.data_path, data)
            time_min, time_max, key_range, conids = describe(merged, spec.key, spec.time_column)
            manifest = Manifest(
                dataset=spec.name,
                partition=partition.id,
                data_file=partition.data_path,
                rows=int(merged.num_rows),
                content_sha256=digest,
                size_bytes=len(data),
                time_column=spec.time_column,
                time_min=time_min,
                time_max=time_max,
                key_range=key_range,
                conids=conids,
                sources=merge_sources(previous_sources, sources),
                run_id=run_id,
                written_at=written_at,
                quarantined_rows=quarantined,
            )
            self.root.write_atomic(partition.manifest_path, manifest.to_json())
        return PartitionWrite(
            partition=partition.id,
            path=partition.data_path,
            rows=int(merged.num_rows),
            rows_loaded=sum(int(t.num_rows) for t in tables),
            quarantined=quarantined,
            content_sha256=digest,
            unchanged=unchanged,
        )

    def record_corporate_actions(self, rows: pa.Table) -> None:
        """Merge ``rows`` (`CORPORATE_ACTIONS_SCHEMA`) into ``corporate_actions/part.parquet``
        by key (conid, bar_size, effective_date; a row recorded again replaces the old one),
        written atomically; then refresh the catalog."""
        if rows.num_rows == 0:
            return
        rows = rows.select(CORPORATE_ACTIONS_SCHEMA.names).cast(CORPORATE_ACTIONS_SCHEMA)
        with self.root.lock(CORPORATE_ACTIONS):
            merged = keys.merge(
                [self.corporate_actions(), rows], CORPORATE_ACTIONS_KEY, CORPORATE_ACTIONS_KEY
            )
            self.root.write_atomic(CORPORATE_ACTIONS_FILE, to_parquet_bytes(merged))
        if self.catalog:
            self.refresh_catalog()

    def corporate_actions(self) -> pa.Table:
        """Every recorded corporate action (empty table if none); see
        `ib_pipeline.corporate_actions`."""
        if not self.root.exists(CORPORATE_ACTIONS_FILE):
            return CORPORATE_ACTIONS_SCHEMA.empty_table()
        table = self._read_table(CORPORATE_ACTIONS_FILE)
        return table.select(CORPORATE_ACTIONS_SCHEMA.names).cast(CORPORATE_ACTIONS_SCHEMA)

    def refresh_catalog(self, *, force: bool = False) -> str:
        """Rebuild ``warehouse.duckdb`` if its views changed (a file added, or a file's
        columns; or ``force``); return its path. See `warehouse.refresh_catalog`."""
        return warehouse.refresh_catalog(self.root, force=force)

    # --- reading ---------------------------------------------------------------------------

    def partitions(self, dataset: str) -> list[Partition]:
        """Every partition of ``dataset`` that has a data file, in id order (bars: of every
        grain's folder). A file where the layout before issue 11 kept it (a month or year
        folder under ``bars/``) raises `listing.LegacyLayoutError` naming it and the fix."""
        spec = dataset_spec(dataset)
        found = []
        for home in dataset_folders(spec.name):
            for rel in self.root.files(home, ".parquet"):
                try:
                    found.append(partition_of_data_path(spec.name, rel))
                except ValueError:
                    raise legacy_error(rel, "a partition in another grain's folder") from None
        return sorted(found)

    def partition(self, dataset: str, partition: str | Partition) -> Partition:
        spec = dataset_spec(dataset)
        if isinstance(partition, Partition):
            return partition
        return Partition.from_id(spec.name, partition)

    def read(self, dataset: str, partition: str | Partition | None = None) -> pa.Table:
        """The rows of one partition, or of the whole dataset (empty table if none)."""
        spec = dataset_spec(dataset)
        chosen = (
            self.partitions(spec.name)
            if partition is None
            else [self.partition(spec.name, partition)]
        )
        tables = []
        for part in chosen:
            if not self.root.exists(part.data_path):
                raise FileNotFoundError(f"{spec.name}: no partition {part.label!r}")
            tables.append(self._read_stored(spec, part))
        if not tables:
            return spec.empty()
        return pa.concat_tables(tables)

    def _read_table(self, rel: str, data: bytes | None = None) -> pa.Table:
        """The table in data file ``rel`` (from ``data`` when given); `CorruptFileError` (a
        ValueError) naming the file if it does not decode."""
        if data is None and isinstance(self.root, LocalRoot):
            return read_parquet_file(rel, self.root.full(rel))
        return read_parquet_file(rel, self.root.read_bytes(rel) if data is None else data)

    def _read_stored(
        self, spec: DatasetSpec, partition: Partition, data: bytes | None = None
    ) -> pa.Table:
        """A partition's rows in the dataset's stored schema, with the columns its folders
        name added back from the path (a file of the old layout that still stores them is
        read too: the path wins, and its next write drops them)."""
        table = self._read_table(partition.data_path, data)
        for name, value in path_columns(spec.schema, partition.pairs()).items():
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, pa.repeat(value, table.num_rows))
        return _conform_stored(spec, table)

    def _read_manifest(self, partition: Partition) -> tuple[Manifest | None, str | None]:
        """The partition's manifest, and None; or (None, why) when it is garbled (not JSON,
        not a manifest): the caller treats it as missing and reports it."""
        if not self.root.exists(partition.manifest_path):
            return None, None
        try:
            found = Manifest.from_json(
                self.root.read_bytes(partition.manifest_path), partition.manifest_path
            )
        except ValueError as error:
            return None, str(error)
        return found, None

    def manifest(
        self, dataset: str, partition: str | Partition, *, verify: bool = False
    ) -> Manifest:
        """The manifest of one partition with its ``status``: ``ok``; ``stale`` (the data file
        differs from what the manifest describes: a crash between the two writes); ``corrupt``
        (``verify`` only: the bytes differ and do not decode as Parquet); ``missing`` (data
        without a manifest) or ``garbled`` (a manifest that is not valid JSON or lacks fields):
        a summary read from the data file, or ``corrupt`` with no rows if that does not decode.
        ``verify`` compares the sha256 of the bytes (measured: ~1.5 ms for a 2.4 MB partition,
        against seconds to fetch it); otherwise only their size is compared (cheap, and enough
        to see a crash between the two writes, but blind to bytes damaged in place)."""
        spec = dataset_spec(dataset)
        part = self.partition(spec.name, partition)
        if not self.root.exists(part.data_path):
            raise FileNotFoundError(f"{spec.name}: no partition {part.label!r}")
        found, garbled = self._read_manifest(part)
        if found is None:
            return self._summary_without_manifest(
                spec, part, STATUS_MISSING if garbled is None else STATUS_GARBLED
            )
        if not verify:
            same = self.root.size(part.data_path) == found.size_bytes
            return found.with_status(STATUS_OK if same else STATUS_STALE)
        data = self.root.read_bytes(part.data_path)
        if sha256(data) == found.content_sha256:
            return found.with_status(STATUS_OK)
        try:
            self._read_table(part.data_path, data)
        except CorruptFileError:
            return found.with_status(STATUS_CORRUPT)
        return found.with_status(STATUS_STALE)

    def manifests(self, dataset: str, *, verify: bool = False) -> list[Manifest]:
        """Manifests of every partition of ``dataset`` (see `manifest`)."""
        return [self.manifest(dataset, p, verify=verify) for p in self.partitions(dataset)]

    def _summary_without_manifest(
        self, spec: DatasetSpec, part: Partition, status: str = STATUS_MISSING
    ) -> Manifest:
        data = self.root.read_bytes(part.data_path)
        try:
            table = self._read_stored(spec, part, data)
        except CorruptFileError:
            table, status = spec.empty(), STATUS_CORRUPT
        time_min, time_max, key_range, conids = describe(table, spec.key, spec.time_column)
        return Manifest(
            dataset=spec.name,
            partition=part.id,
            data_file=part.data_path,
            rows=int(table.num_rows),
            content_sha256=sha256(data),
            size_bytes=len(data),
            time_column=spec.time_column,
            time_min=time_min,
            time_max=time_max,
            key_range=key_range,
            conids=conids,
            sources=[],
            run_id="",
            written_at="",
            quarantined_rows=0,
            status=status,
        )

    def quarantine(self, dataset: str | None = None) -> pa.Table:
        """Quarantined rows, of one dataset or of all."""
        folder = (
            QUARANTINE if dataset is None else f"{QUARANTINE}/dataset={dataset_spec(dataset).name}"
        )
        tables = []
        for rel in self.root.files(folder, ".parquet"):
            table = self._read_table(rel)
            name = rel.split("/")[1].removeprefix("dataset=")  # the folder's key, not stored
            if "dataset" in table.column_names:  # a file of the layout before issue 11
                table = table.drop_columns(["dataset"])
            tables.append(table.add_column(0, "dataset", pa.repeat(pa.scalar(name), len(table))))
        if not tables:
            return QUARANTINE_SCHEMA.empty_table()
        return pa.concat_tables(tables, promote_options="default")


def _conform_stored(spec: DatasetSpec, table: pa.Table) -> pa.Table:
    """A stored file's table in the dataset's current stored schema (columns added later read
    as nulls), failing loudly if a column changed type."""
    columns = []
    for stored_field in spec.schema:
        if stored_field.name in table.column_names:
            column = table.column(stored_field.name)
            if not column.type.equals(stored_field.type):
                raise ValueError(
                    f"{spec.name}: stored column {stored_field.name!r} is {column.type}, "
                    f"expected {stored_field.type}"
                )
        else:
            column = pa.nulls(table.num_rows, stored_field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=spec.schema)


Scope = dict[int, list[tuple[datetime, datetime] | None]]
"""What a replace rewrites in one partition: instrument -> the windows it was fetched for
(None: the whole partition)."""


def _scope(
    spec: DatasetSpec, parts: list[pa.Table], windows: list[tuple[datetime, datetime] | None]
) -> Scope | None:
    """The instruments (and their batches' windows) that ``parts`` bring to a partition;
    None for a dataset not filed by instrument (its partition is replaced whole)."""
    if spec.replace_by is None:
        return None
    scope: Scope = {}
    for table in parts:
        pairs = (
            pa.table({"id": table.column(spec.replace_by), "ordinal": table.column(keys.ORDINAL)})
            .group_by(["id", "ordinal"])
            .aggregate([])
        )
        for instrument, ordinal in zip(
            pairs.column("id").to_pylist(), pairs.column("ordinal").to_pylist(), strict=True
        ):
            found = scope.setdefault(int(instrument), [])
            window = windows[int(ordinal)]
            if window not in found:
                found.append(window)
    return scope


def _outside_scope(spec: DatasetSpec, table: pa.Table, scope: Scope) -> pa.Table:
    """The stored rows a scoped replace keeps: those of other instruments, or outside every
    window their instrument was fetched for."""
    if not table.num_rows or spec.replace_by is None:
        return table
    ids = np.asarray(table.column(spec.replace_by).to_numpy(zero_copy_only=False))
    drop = np.zeros(table.num_rows, dtype=bool)
    stamps = None
    for instrument, instrument_windows in scope.items():
        mine = ids == instrument
        if not mine.any():
            continue
        if None in instrument_windows or spec.time_column is None:
            drop |= mine
            continue
        if stamps is None:
            column = table.column(spec.time_column).cast(pa.int64())
            stamps = np.asarray(column.to_numpy(), dtype=np.int64)
        for window in instrument_windows:
            if window is not None:
                start, end = (round(t.timestamp() * 1000) for t in window)
                drop |= mine & (stamps >= start) & (stamps < end)
    return table.filter(pa.array(~drop)) if drop.any() else table


class _FolderColumns:
    """Held rows without the columns their partition's folders name (a bar size, a session
    date): one value in every row of a partition, dropped when rows are held and put back when
    the partition is written. They would take memory and a sixth of every spill (before its
    compression): spills were the largest cost of a 49M-bar replay after validation."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.schema: pa.Schema | None = None  # of the rows as validated
        self._values: dict[Partition, dict[str, pa.Scalar]] = {}

    def drop(self, partition: Partition, table: pa.Table) -> pa.Table:
        """``table`` without its partition's folder columns (as is if its schema is not the
        load's first, so `restore` can always put them back)."""
        if self.schema is None:
            self.schema = table.schema
        if not table.schema.equals(self.schema):
            return table
        values = self._values.get(partition)
        if values is None:
            values = self._values[partition] = path_columns(self.spec.schema, partition.pairs())
        return table.drop_columns([name for name in values if name in table.column_names])

    def restore(self, partition: Partition, table: pa.Table) -> pa.Table:
        """``table`` with its partition's folder columns back, in the validated order."""
        values = self._values.get(partition)
        if not values or self.schema is None or set(values) <= set(table.column_names):
            return table
        columns = [
            table.column(field.name)
            if field.name in table.column_names
            else pa.repeat(values[field.name], table.num_rows)
            for field in self.schema
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)


class _Sources:
    """The sources of a load's batches by batch ordinal, each scrubbed of secrets and kept as
    `manifest.source_json`: the bytes quarantine records carry, and (decoded) the values
    manifests list. All in one growing buffer: a replay has 100k+
    batches, and as many small objects living to the end of the load, allocated among the
    load's short-lived ones, keep the interpreter's small-object arenas from being returned
    and reused (measured on a replay of 11.7M bars: the process peaked at 666 MB with one
    bytes object per batch, 570-590 MB with this buffer)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("q")

    def __len__(self) -> int:
        return len(self._ends)

    def append(self, source: Mapping[str, Any] | str) -> None:
        self._data += source_json(scrub(source))
        self._ends.append(len(self._data))

    def __getitem__(self, ordinal: int) -> bytes:
        start = self._ends[ordinal - 1] if ordinal else 0
        return bytes(self._data[start : self._ends[ordinal]])


def _count_by(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _context_groups(
    batches: Sequence[Batch],
    now: datetime,
    group_hours: dict[tuple[Any, ...], dict[int, TradingHours] | None],
) -> list[tuple[tuple[Any, ...], list[int], ValidationContext]]:
    """Batches that can be validated together: same snapshot time, window and outside-RTH
    flag; their trading hours are merged (one conid with two different hours is an error),
    also with the hours ``group_hours`` holds from a stream's earlier chunks (updated)."""
    grouped: dict[tuple[Any, ...], list[int]] = {}
    for index, batch in enumerate(batches):
        rth = batch.outside_rth
        flag: Any = rth if isinstance(rth, bool) else tuple(sorted(rth.items()))
        grouped.setdefault((batch.as_of, batch.window, flag), []).append(index)
    result = []
    for group, indices in grouped.items():
        as_of, window, _ = group
        hours = group_hours.get(group)
        for index in indices:
            given = batches[index].hours
            if given is None:
                continue
            hours = {} if hours is None else hours
            for conid, value in given.items():
                if hours.setdefault(conid, value) != value:
                    raise ValueError(
                        f"conid {conid} has two different trading hours in one load: "
                        f"{hours[conid].name} and {value.name}"
                    )
        group_hours[group] = hours
        outside = batches[indices[0]].outside_rth
        context = ValidationContext(
            now=now,
            as_of=as_of,
            window=window,
            hours=None if hours is None else dict(hours),
            outside_rth=outside,
        )
        result.append((group, indices, context))
    return result


def _concat_conformed(spec: DatasetSpec, tables: list[pa.Table]) -> pa.Table:
    """One table of several normaliser outputs, each checked against the dataset's schema."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables([conform(spec, t) for t in tables])


def _run_writes(writes: list[Callable[[], PartitionWrite]]) -> list[PartitionWrite]:
    """Run the partition writes, several at once when there are several: merging, Parquet
    encoding, hashing and fsync release the GIL (measured 0.25 s -> 0.15 s for ten partitions
    of 96k bars on 2 cores). Each write holds its own partition's lock and replaces its file
    atomically, as before; results keep the partitions' order; an error is raised once every
    write has finished (each partition is still either old or new, never a mix)."""
    threads = min(len(writes), os.cpu_count() or 1)
    if threads < 2:
        return [write() for write in writes]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="partition-write") as pool:
        futures = [pool.submit(write) for write in writes]
        return [future.result() for future in futures]


def _rows_of(table: pa.Table, rows: np.ndarray[Any, np.dtype[np.int64]]) -> pa.Table:
    """``table``'s rows at the indices ``rows``, in that order: a zero-copy slice when they are
    one consecutive run, as a partition's rows are when the batches came in time order (a
    replay); a ``take`` copying every column otherwise."""
    if len(rows) and bool((np.diff(rows) == 1).all()):
        return table.slice(int(rows[0]), len(rows))
    return table.take(pa.array(rows))


def _shift_ordinal(table: pa.Table) -> pa.Table:
    """Batch ordinals start at 1 so that the existing partition (ordinal 0) is the oldest."""
    index = table.column_names.index(keys.ORDINAL)
    shifted = pc.add(table.column(keys.ORDINAL), 1)
    return table.set_column(index, keys.ORDINAL, shifted)
