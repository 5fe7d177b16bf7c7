"""Replay: rebuild partitions from the raw zone alone, without calling IBKR again.

Why: after a normaliser fix, every partition can be rebuilt from what IBKR sent. Responses
become batches through `ib_pipeline.conversion.to_batches`, the function live loads use too.
A response that cannot be read or normalised stops the replay before anything is written
(`ReplayError` names every such file): a half-replayed partition would lose rows.

Replay on several cores
-----------------------
Reading (decompression, JSON: well-formed history pages are decoded straight into bar
columns by msgspec, `ibkr.history_wire`, the rest by orjson) and normalising run in ``workers``
forked processes (the ``IB_PIPELINE_REPLAY_WORKERS`` setting; default the CPUs available;
1 = in this process), each converting runs of consecutive files. A few files, positions (a
listing's pages belong together) and raw zones on an object store (fsspec's async clients are
not fork-safe) are converted in the calling process. Their batches come back in file order and are
streamed to `Store.load_stream`, which validates each chunk while the workers convert the
next files and writes partitions only after the last file: the contract "convert and
validate everything, then write" holds, so a partition is only ever written from complete
inputs, and the worker count changes the speed, never the partitions (bytes included).

Memory does not grow with the replay's length: at most `AHEAD_PER_WORKER` conversion tasks
per worker are in flight (a slow validation holds back the workers instead of piling their
tables up here), and the store spills validated rows to disk past its budget until the write
(`storage.spill`). A replay of 49M minute bars stays under 1 GB (``bench.scale``).

This module never calls the API and never writes outside `Store.load`/`Store.load_stream`.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import (
    Collection,
    Generator,
    Iterator,
    Sequence,
)
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

import pyarrow as pa

from ib_pipeline.conversion import ENDPOINTS, Resolver, contracts_resolver, to_batches
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.storage.datasets import dataset_spec
from ib_pipeline.storage.manifest import iso_ms
from ib_pipeline.storage.store import Batch, Store, WriteResult


class ReplayError(ValueError):
    """Responses the normalisers reject; nothing was written."""


@dataclass(frozen=True)
class ReplayResult:
    """What a replay read and wrote.

    ``seconds`` splits the time: ``read`` (list files, read, decompress, decode the JSON: a
    well-formed history page straight into bar columns, `ibkr.history_wire`) and
    ``normalise`` are work summed over every process that did it, so with several workers they
    add up to more than the wall time; ``parse_wall`` is the wall time from the start to the
    last file converted. The calling process spends ``validate`` in the contracts (while the
    workers convert: with workers, the CPUs are shared), ``write`` partitioning, merging and
    writing files, ``catalog`` refreshing DuckDB's, and ``wait`` waiting for converted files.
    ``workers``: processes that read and normalised.
    """

    dataset: str
    records: int
    rows_normalised: int
    write: WriteResult
    seconds: dict[str, float] = field(default_factory=dict)
    workers: int = 1


def replay(
    store: Store,
    dataset: str,
    *,
    raw: RawZone | None = None,
    partitions: Collection[str] | None = None,
    since: date | None = None,
    until: date | None = None,
    run_id: str | None = None,
    resolver: Resolver | None = None,
    workers: int | None = None,
    spill_rows: int | None = None,
) -> ReplayResult:
    """Rebuild ``dataset``'s partitions (all it can, or only ``partitions`` by id) from the
    raw zone alone, replacing them. ``since``/``until`` limit the fetch dates read. The
    resolver defaults to the warehouse's ``contracts`` dataset.

    ``workers``: processes reading and normalising the raw files (`replay_workers`: default
    the ``IB_PIPELINE_REPLAY_WORKERS`` setting, else the CPUs available; 1 = this process
    alone). The batches go to `Store.load_stream` in file order, whatever the count, so the
    partitions are the same; the store validates each chunk while the workers convert the
    next files, and writes only once every file is converted. A file that cannot be read or
    normalised makes the stream raise a `ReplayError` naming every such file, so nothing is
    written.

    ``spill_rows``: validated rows held in memory before they are spilled to disk until the
    write (`Store.load_stream`; default `store.SPILL_ROWS`): memory stays bounded however
    many files the replay reads.
    """
    spec = dataset_spec(dataset)
    processes = replay_workers(workers)
    zone = raw or RawZone(store.root.url)
    wanted = None if partitions is None else {store.partition(spec.name, p).id for p in partitions}
    started = time.perf_counter()
    paths = zone.paths(ENDPOINTS[spec.name], since=since, until=until)
    listed = time.perf_counter()
    if resolver is None and spec.name in ("bars", "quotes"):
        resolver = contracts_resolver(store.read("contracts"))
    resolved = time.perf_counter()
    conversion = _Conversion(spec.name, zone, paths, resolver, processes)
    with closing(conversion.chunks()) as chunks:
        result = store.load_stream(
            spec.name,
            chunks,
            run_id=run_id or f"replay-{iso_ms(round(store.clock.now().timestamp() * 1000))}",
            mode="replace",
            only=wanted,
            spill_rows=spill_rows,
        )
    seconds = {
        "read": conversion.read_s + (listed - started),
        "normalise": conversion.normalise_s + (resolved - listed),
        "parse_wall": conversion.finished - started,
        **result.seconds,
    }
    return ReplayResult(
        dataset=spec.name,
        records=len(paths),
        rows_normalised=conversion.rows,
        write=result,
        seconds=seconds,
        workers=conversion.workers,
    )


# --- reading and normalising raw files, in this process or in a pool ----------------------------

MAX_CHUNK_FILES = 32
"""Raw files per conversion task: enough that a task's fixed costs (one pickled table, a queue
round trip) stay small, few enough that the workers finish together."""

MIN_FILES_PER_WORKER = 4
"""Below this many files per worker, forking and shipping cost more than they save."""

AHEAD_PER_WORKER = 16
"""Conversion tasks submitted per worker and not yet consumed: enough that the workers keep
converting while this process validates a chunk (about ten tasks' rows) or spills rows (up to
a second), few enough that a replay's memory does not grow with its length (a task is at most
`MAX_CHUNK_FILES` files: about 1 MB of converted one-minute bars each at 390 bars a file)."""

VALIDATE_ROWS = 131_072
"""Rows handed to the store's contracts at a time: a validation has a fixed cost (~6 ms)
that stays small at this size, and the chunks are small enough for validation to keep pace
with the workers instead of waiting for the last file."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def replay_workers(workers: int | None = None) -> int:
    """The processes a replay reads and normalises with: ``workers`` if given, else the
    ``IB_PIPELINE_REPLAY_WORKERS`` setting (`WarehouseSettings.replay_workers`), else
    `available_cpus`. ValueError unless it is a positive integer."""
    if workers is None:
        workers = WarehouseSettings.from_env().replay_workers
        if workers is None:
            return available_cpus()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"replay workers must be a positive integer, got {workers!r}")
    return workers


@dataclass
class _Converted:
    """Batches of some raw files in file order, one line per file that could not be read or
    normalised (naming it), and the seconds spent reading and normalising."""

    batches: list[Batch] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    read_s: float = 0.0
    normalise_s: float = 0.0


class _Conversion:
    """The raw files of one replay turned into batches, run by `chunks`, which also keeps the
    failures, the rows, the seconds of work and when the last file was done (``finished``)."""

    def __init__(
        self,
        dataset: str,
        zone: RawZone,
        paths: Sequence[str],
        resolver: Resolver | None,
        workers: int,
    ) -> None:
        self.dataset, self.zone, self.paths, self.resolver = dataset, zone, paths, resolver
        self.workers = 1
        if dataset != "positions" and zone.root.is_local and _can_fork():
            processes = min(workers, len(paths) // MIN_FILES_PER_WORKER)
            self.workers = processes if processes >= 2 else 1
        self.failures: list[str] = []
        self.rows = 0
        self.read_s = self.normalise_s = 0.0
        self.finished = time.perf_counter()

    def chunks(self) -> Generator[list[Batch], None, None]:
        """Chunks of about `VALIDATE_ROWS` rows of batches, in file order (the cut depends
        only on the batches, never on the worker count). Once a failure is seen nothing more
        is yielded (it would never be written), but every file is still converted so that the
        `ReplayError` raised at the end names every failing one."""
        pending: list[Batch] = []
        rows = 0
        for converted in self._converted():
            self.read_s += converted.read_s
            self.normalise_s += converted.normalise_s
            for batch in converted.batches:
                self.rows += int(batch.table.num_rows)
                if self.failures:
                    continue
                pending.append(batch)
                rows += int(batch.table.num_rows)
                if rows >= VALIDATE_ROWS:
                    yield pending
                    pending, rows = [], 0
            self.failures.extend(converted.failures)
        self.finished = time.perf_counter()
        if self.failures:
            shown = "\n  ".join(self.failures[:20])
            count = len(self.failures)
            more = f"\n  ... and {count - 20} more" if count > 20 else ""
            raise ReplayError(
                f"replay of {self.dataset}: {count} raw record(s) could not be read or "
                f"normalised; nothing was written:\n  {shown}{more}"
            )
        if pending:
            yield pending

    def _converted(self) -> Iterator[_Converted]:
        """Converted runs of files, in file order: in this process, or from a pool of forked
        processes whose results come back in submission order. Positions are converted in one
        go: the pages of a listing only make sense together."""
        if self.dataset == "positions":
            yield _convert_positions(self.zone, self.paths, self.resolver)
            return
        if self.workers < 2:
            for run in _chunks(self.paths, MAX_CHUNK_FILES):
                yield _convert_each(self.dataset, self.zone, run, self.resolver)
            return
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(_Job(self.dataset, self.zone, self.resolver),),
        )
        size = max(1, min(MAX_CHUNK_FILES, math.ceil(len(self.paths) / (self.workers * 4))))
        runs = deque(_chunks(self.paths, size))
        ahead: deque[Future[_Shipment]] = deque()
        try:
            while runs or ahead:
                # at most AHEAD_PER_WORKER tasks per worker submitted and not yet consumed:
                # when validation is slower than conversion, the files wait unread rather
                # than as converted tables in this process
                while runs and len(ahead) < AHEAD_PER_WORKER * self.workers:
                    ahead.append(pool.submit(_convert_chunk, runs.popleft()))
                yield ahead.popleft().result().unpack()
        finally:  # also when the consumer stops early (an error): pending tasks are dropped
            pool.shutdown(wait=True, cancel_futures=True)


_BATCH_FIELDS = tuple(f.name for f in fields(Batch) if f.name != "table")


@dataclass(frozen=True)
class _Shipment:
    """A `_Converted` on its way out of a worker. The batches' rows travel as ONE Arrow table
    (a few buffers; pickling a thousand small tables one by one was measured 6x slower) with
    each batch's row count and other fields; ``loose`` carries the batches as they are when
    their tables cannot be concatenated (different schemas)."""

    rows: pa.Table | None
    counts: tuple[int, ...]
    contexts: tuple[dict[str, Any], ...]
    loose: tuple[Batch, ...]
    failures: tuple[str, ...]
    read_s: float
    normalise_s: float

    @classmethod
    def pack(cls, converted: _Converted) -> _Shipment:
        batches = converted.batches
        rows: pa.Table | None = None
        if batches:
            try:
                rows = pa.concat_tables([b.table for b in batches]).combine_chunks()
            except pa.ArrowInvalid:
                rows = None
        packed = rows is not None
        return cls(
            rows=rows,
            counts=tuple(int(b.table.num_rows) for b in batches) if packed else (),
            contexts=tuple({n: getattr(b, n) for n in _BATCH_FIELDS} for b in batches)
            if packed
            else (),
            loose=() if packed else tuple(batches),
            failures=tuple(converted.failures),
            read_s=converted.read_s,
            normalise_s=converted.normalise_s,
        )

    def unpack(self) -> _Converted:
        batches = list(self.loose)
        if self.rows is not None:
            offset = 0
            for count, context in zip(self.counts, self.contexts, strict=True):
                batches.append(Batch(self.rows.slice(offset, count), **context))
                offset += count
        return _Converted(batches, list(self.failures), self.read_s, self.normalise_s)


@dataclass(frozen=True)
class _Job:
    """What every worker of one replay needs; handed over by fork, never pickled (a resolver
    may be a closure)."""

    dataset: str
    zone: RawZone
    resolver: Resolver | None


_WORKER: dict[str, _Job] = {}
"""The job of this worker process (set by `_start_worker`; empty in the calling process)."""


def _start_worker(job: _Job) -> None:
    # Objects inherited from the parent are never garbage: freezing them keeps this process's
    # collector from rescanning them (and from copying their pages) as payloads come and go.
    gc.freeze()
    _WORKER["job"] = job


def _convert_chunk(paths: list[str]) -> _Shipment:
    job = _WORKER.get("job")
    if job is None:
        raise RuntimeError("replay worker used before _start_worker")
    return _Shipment.pack(_convert_each(job.dataset, job.zone, paths, job.resolver))


def _convert_each(
    dataset: str, zone: RawZone, paths: Sequence[str], resolver: Resolver | None
) -> _Converted:
    """Convert files one by one: each file is normalised as soon as it is read, so its decoded
    payload (a million small Python objects per thousand answers) is freed right away and the
    garbage collector never rescans a growing heap of payloads. (A background thread reading
    files ahead was measured slower: it contends for the GIL.)"""
    result = _Converted()
    history_columns = dataset == "bars"  # well-formed pages decoded straight into columns
    for rel in paths:
        started = time.perf_counter()
        try:
            record = zone.read(rel, history_columns=history_columns)
        except ValueError as error:  # names the file
            result.failures.append(str(error))
            result.read_s += time.perf_counter() - started
            continue
        read_done = time.perf_counter()
        try:
            result.batches.extend(to_batches(dataset, [record], resolver))
        except (InvalidPayloadError, ValueError) as error:
            result.failures.append(f"{record.path}: {error}")
        del record  # its payload: no longer needed once normalised
        result.read_s += read_done - started
        result.normalise_s += time.perf_counter() - read_done
    return result


def _convert_positions(
    zone: RawZone, paths: Sequence[str], resolver: Resolver | None
) -> _Converted:
    """Every positions file read first, then normalised together (a listing's pages)."""
    started = time.perf_counter()
    result = _Converted()
    records = []
    for rel in paths:
        try:
            records.append(zone.read(rel))
        except ValueError as error:  # names the file
            result.failures.append(str(error))
    result.read_s = time.perf_counter() - started
    if not result.failures:
        try:
            result.batches = to_batches("positions", records, resolver)
        except (InvalidPayloadError, ValueError) as error:
            result.failures.append(str(error))
    result.normalise_s = time.perf_counter() - started - result.read_s
    return result


def _chunks(paths: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive runs of ``paths``, ``size`` long (the last one shorter)."""
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


def _can_fork() -> bool:
    """Worker processes are forked (the job, resolver included, is inherited, not pickled);
    a daemonic process (some executors run steps in one) may not have children. (Raw zones on
    an object store are read in one process: fsspec's async clients refuse to run in a
    forked child.)"""
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )
