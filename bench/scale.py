"""Benchmark: a year of minute bars for 500 instruments, replayed and queried (issue 11 item 5).

``--conids`` (500) instruments x ``--sessions`` (252) regular sessions of one-minute bars are
synthesised as gateway-shaped ``/iserver/marketdata/history`` answers, one per instrument and
session (`bench.replay_throughput.history_payload`), and landed in a raw zone in a temporary
folder: 126,000 files, 390 bars each, 49,140,000 rows. The sessions are the last full-length
ones up to 2024-11-26 (early closes skipped, so every answer holds 390 bars). Landing is
setup, not measured: the first answer of each session goes through `RawZone.land` itself, the
others are encoded with orjson (sorted keys) and written without fsync, to the path and bytes
`RawZone.land` gives (checked against that first answer of each session), in ``--workers``
processes.

Each phase then runs in a FRESH child process (``python -m bench.scale _phase ...``), one after
the other, so that its memory peak is its own:

1. ``floor``: the least any loader must do with the same responses: list the raw zone, read
   each file, decompress it, decode it with orjson, build Arrow columns (conid, bar_size, ts,
   open, high, low, close, volume in shares) and write them as zstd Parquet, one file per
   session (per ``date=`` folder of the raw zone); no validation, no sorting, no merging, no
   manifests, no catalog. It runs in ``floor_processes`` processes (``--floor-processes``;
   default the replay's worker count, so both sides have the same cores), each taking whole
   sessions.
2. ``replay``: `ib_pipeline.replay.replay` of every raw file into a warehouse whose
   ``contracts`` (one STK row per instrument, written during setup) give the resolver, as in
   production: ``replay_workers`` forked processes read and normalise, the calling process
   validates (pandera), holds the valid rows (spilling them to disk past `store.SPILL_ROWS`),
   then writes every partition (merge, sort, deterministic Parquet, manifests) and the
   catalog.
3. native tables (setup, in this process, not a goal): a persistent DuckDB database file in
   the temporary folder gets native copies of the views (``CREATE TABLE ... AS SELECT * FROM
   bars``): an in-memory table of 49M rows would itself take gigabytes.
4. ``queries``: the three queries of `bench.query_latency` (`QUERIES`, timed with its
   `time_queries`: a warm-up, then ``--repeat`` runs of each side in ``--rounds``
   alternating blocks; medians) through the views of `ib_pipeline.warehouse.connect` and on the
   native tables of that file, ATTACHed read-only to the same connection. DuckDB's
   ``memory_limit`` is ``--duckdb-memory-limit`` (512MB) for the native build and for the
   queries, so the native side pages its tables through a bounded buffer pool, as the views
   page Parquet.

Figures (the last line of output is one JSON object):
- ``rows``; ``replay_rows_per_s``: rows over the wall time of the `replay` call (listing,
  reading, normalising, validating, writing, catalog); ``floor_rows_per_s``: rows over the wall
  time of the floor (listing to last file written; both exclude interpreter start-up and
  imports); ``replay_vs_floor`` (goal >= 0.6) with ``replay_workers`` and ``floor_processes``.
  ``replay_cpu_s``/``floor_cpu_s``: CPU seconds of each (the process and its workers, user +
  system; ``replay_parent_cpu_s``: the replay's calling process alone, which validates and
  writes while the workers read and normalise); ``replay_vs_floor_cpu`` = ``floor_cpu_s /
  replay_cpu_s``, the same ratio in CPU work rather than wall time (blind to how well each
  side keeps the cores busy, and to what else runs on the machine). On a shared machine the
  wall ratio also depends on the share of the cores each side gets from the scheduler (the
  replay runs one process more than its workers): compare the two ratios.
- ``replay_peak_rss_mb`` (goal <= 1024): the largest sum of the resident set sizes of the
  replay's process and all its descendants (the workers), sampled every 50 ms from this
  process (Linux ``/proc``). Pages the forked workers share with their parent count once per
  process, so the sum overstates the physical memory; ``replay_peak_pss_mb`` (the sum of
  proportional set sizes, sampled every 250 ms) is the physical footprint. A spike shorter than
  a sample can be missed: ``replay_process_maxrss_mb`` and ``replay_worker_maxrss_mb`` are the
  kernel's exact peaks (``ru_maxrss``) of the replay's process and of its largest worker.
  ``floor_peak_rss_mb`` is measured the same way, for information.
- ``query_peak_rss_mb`` (goal <= 1024): the kernel's exact peak (``ru_maxrss``) of the one
  process that ran the three queries, both sides: interpreter, imports, `connect` (listing
  the files, the views), the attached native database and DuckDB's buffers for both;
  ``query_sampled_peak_rss_mb`` is the same process sampled as above (a cross-check).
- ``<query>_ms``, ``<query>_native_ms``, ``<query>_ratio`` (goal <= 2) for each query; for
  information, as in `bench.query_latency`: ``vwap_one_day_one_file_ms`` (the one-day query
  through a view of the one file it reads) and ``listed_file_us`` (what each other file the
  views name adds to it).
- ``seconds_land``, ``seconds_floor``, ``seconds_replay``, ``seconds_native_build``,
  ``seconds_queries``: wall time of each step (a child process's including its start-up);
  ``replay_seconds``: the replay's own split (`ReplayResult.seconds`); ``rows_spilled``.

Run: ``.venv/bin/python -m bench.scale [--conids 500] [--sessions 252] [--workers N]
[--floor-processes N] [--repeat 5] [--rounds 3] [--duckdb-memory-limit 512MB]``. A small run,
``--conids 20 --sessions 5``, takes seconds. Needs about 7 GB of free disk at full size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ib_pipeline.calendars import US_EQUITY, Session, bar_starts, calendar_for
from ib_pipeline.ibkr.tables import CONTRACTS, HISTORY_BARS
from ib_pipeline.raw_zone import FORMAT_VERSION, SUFFIX, RawZone, compress, decompress, params_hash
from ib_pipeline.storage.manifest import iso_ms
from ib_pipeline.timeframes import parse_bar_size

# The store, the replay, the warehouse's views and the query bench (pandas, pandera, DuckDB:
# seconds of imports) are imported by the functions that use them, so that the floor's process
# starts without them (the small configuration runs in seconds).

ROOT = Path(__file__).resolve().parent.parent
"""The project folder: phases run with it as their working directory."""
PHASE = "_phase"
"""The hidden first argument that runs one phase in a child process."""
FIRST_CONID = 900_300_000
LAST_SESSION = date(2024, 11, 26)
NOW = datetime(2024, 11, 28, tzinfo=UTC)  # the store's clock: every bar is in its past
SEED = 17
BARS_PER_SESSION = 390
MINUTE = parse_bar_size("1min")
SAMPLE_S = 0.05
PSS_EVERY = 5  # samples: PSS (smaps_rollup) costs more to read than RSS (statm)
MB = 2**20
QUERY_NAMES = ("daily_ohlcv_all_symbols", "vwap_one_day", "one_symbol_last_5_days")
"""The queries of `bench.query_latency.QUERIES` the goals name (checked at start)."""
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- sessions and landing -----------------------------------------------------------------------


def full_sessions(count: int) -> list[Session]:
    """The last ``count`` US equity sessions up to `LAST_SESSION` with a full regular session
    (390 one-minute bars), oldest first."""
    calendar = calendar_for(US_EQUITY)
    span = count
    while True:
        dates = calendar.previous_session_dates(LAST_SESSION, span)
        full = [s for s in map(calendar.session, dates) if not s.early_close]
        if len(full) >= count:
            return full[-count:]
        if len(dates) < span:
            raise ValueError(f"the calendar has only {len(full)} full sessions")
        span += count - len(full)


def raw_params(conid: int, session: Session) -> dict[str, str]:
    return {
        "bar": MINUTE.label,
        "conid": str(conid),
        "outsideRth": "false",
        "period": "1d",
        "startTime": f"{session.rth_close:%Y%m%d-%H:%M:%S}",
    }


def land_session(job: tuple[str, int, int, date]) -> tuple[int, int]:
    """Land one answer per instrument for one session; returns (bars, compressed bytes)."""
    from bench.replay_throughput import history_payload  # noqa: PLC0415  (see the imports)

    root, conids, index, day = job
    session = calendar_for(US_EQUITY).session(day)
    starts = bar_starts(session, MINUTE, False)
    if len(starts) != BARS_PER_SESSION:
        raise ValueError(f"{day}: {len(starts)} regular one-minute bars, not {BARS_PER_SESSION}")
    fetched_ms = round(session.ext_close.timestamp() * 1000) + 3_600_000
    rng = np.random.default_rng([SEED, index])  # the same answers whatever the process count
    zone, base = RawZone(root), Path(root)
    prefix = ""
    size = 0
    for number in range(conids):
        conid = FIRST_CONID + number
        params = raw_params(conid, session)
        payload = history_payload(conid, starts, rng)
        payload["outsideRth"] = False
        record = {
            "endpoint": "history",
            "fetched_at": iso_ms(fetched_ms),
            "fetched_at_ms": fetched_ms,
            "format": FORMAT_VERSION,
            "meta": {},
            "params": params,
            "payload": payload,
        }
        data = compress(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
        if not prefix:  # the reference: the raw zone lands it itself
            rel = zone.land("history", params, payload, fetched_ms)
            if rel is None:
                raise RuntimeError("the raw zone is disabled")
            prefix = rel.rsplit("-", 1)[0]
            same_name = rel == f"{prefix}-{params_hash(params)}{SUFFIX}"
            if not same_name or (base / rel).read_bytes() != data:
                raise RuntimeError(f"the fast landing differs from RawZone.land for {rel}")
        else:
            (base / f"{prefix}-{params_hash(params)}{SUFFIX}").write_bytes(data)
        size += len(data)
    return conids * len(starts), size


def land(root: Path, conids: int, sessions: Sequence[Session], processes: int) -> tuple[int, int]:
    """Land every answer, one session per task; returns (bars, compressed bytes)."""
    jobs = [(str(root), conids, i, s.date) for i, s in enumerate(sessions)]
    rows = size = 0
    step = max(1, len(jobs) // 10)
    started = time.perf_counter()
    for done, (bars, landed) in enumerate(_run(land_session, jobs, processes), start=1):
        rows, size = rows + bars, size + landed
        if done % step == 0 or done == len(jobs):
            print(f"landed {done}/{len(jobs)} sessions: {rows:,} bars, {size / MB:,.0f} MB, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return rows, size


def _run(function: Any, jobs: Sequence[Any], processes: int) -> Iterator[Any]:
    """``function`` over ``jobs``: in this process, or in forked processes (any order)."""
    if processes < 2 or len(jobs) < 2:
        yield from map(function, jobs)
        return
    with multiprocessing.get_context("fork").Pool(min(processes, len(jobs))) as pool:
        yield from pool.imap_unordered(function, jobs)


def write_contracts(root: Path, conids: int) -> None:
    """One STK row per instrument: the replay's resolver, and the symbols of the queries."""
    from ib_pipeline.clock import FixedClock  # noqa: PLC0415
    from ib_pipeline.storage.store import Store  # noqa: PLC0415

    rows = [
        {"conid": FIRST_CONID + i, "symbol": f"SYM{i:04d}", "sec_type": "STK",
         "exchanges": "NASDAQ"}
        for i in range(conids)
    ]  # fmt: skip
    Store(root, clock=FixedClock(NOW)).write(
        "contracts", pa.Table.from_pylist(rows, schema=CONTRACTS), source={"bench": "scale"},
        run_id="bench-scale",
    )  # fmt: skip


# --- the phases (each in its own process) -------------------------------------------------------

_BAR_VALUES = itemgetter("t", "o", "h", "l", "c", "v")
_TS = HISTORY_BARS.field("ts").type
LOT = 100.0


def floor_session(job: tuple[str, str, str, list[str]]) -> int:
    """The floor for one session: decode its files into Arrow and write one zstd Parquet."""
    root, out, name, files = job
    tables = []
    for rel in files:
        body = orjson.loads(decompress((Path(root) / rel).read_bytes()))
        params = body["params"]
        values = np.array(list(map(_BAR_VALUES, body["payload"]["data"])), dtype=np.float64)
        n = len(values)
        tables.append(
            pa.table(
                {
                    "conid": np.full(n, int(params["conid"]), dtype=np.int64),
                    "bar_size": pa.repeat(pa.scalar(params["bar"]), n),
                    "ts": pa.array(values[:, 0].astype(np.int64)).cast(_TS),
                    "open": values[:, 1],
                    "high": values[:, 2],
                    "low": values[:, 3],
                    "close": values[:, 4],
                    "volume": values[:, 5] * LOT,
                }
            )
        )
    table = pa.concat_tables(tables)
    pq.write_table(table, Path(out) / f"{name}.parquet", compression="zstd")
    return int(table.num_rows)


def phase_floor(folder: Path, processes: int) -> dict[str, Any]:
    root, out = folder / "warehouse", folder / "floor"
    out.mkdir(exist_ok=True)
    # pyarrow imports pandas at its first table (seconds): before the clock starts, and before
    # the fork, as the replay's process imported it with the store
    pa.table({"warm_up": [0]})
    cpu = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    by_session: dict[str, list[str]] = {}
    for rel in RawZone(root).paths("history"):
        by_session.setdefault(rel.rsplit("/", 2)[1], []).append(rel)
    jobs = [(str(root), str(out), name, files) for name, files in sorted(by_session.items())]
    rows = sum(_run(floor_session, jobs, processes))
    seconds = time.perf_counter() - started
    cpu = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN) - cpu
    return {"rows": rows, "seconds": seconds, "processes": processes, "cpu_s": cpu,
            "bytes": sum(p.stat().st_size for p in out.glob("*.parquet"))}  # fmt: skip


def phase_replay(folder: Path, workers: int) -> dict[str, Any]:
    from ib_pipeline.clock import FixedClock  # noqa: PLC0415
    from ib_pipeline.replay import replay  # noqa: PLC0415
    from ib_pipeline.storage.store import Store  # noqa: PLC0415

    store = Store(folder / "warehouse", clock=FixedClock(NOW))
    own, workers_cpu = _cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = replay(store, "bars", run_id="bench-scale", workers=workers)
    seconds = time.perf_counter() - started
    own = _cpu_s(resource.RUSAGE_SELF) - own
    workers_cpu = _cpu_s(resource.RUSAGE_CHILDREN) - workers_cpu  # the workers were joined
    write = result.write
    return {
        "rows": write.rows_valid,
        "rows_quarantined": write.rows_quarantined,
        "rows_spilled": write.rows_spilled,
        "records": result.records,
        "partitions": len(write.partitions),
        "workers": result.workers,
        "seconds": seconds,
        "cpu_s": own + workers_cpu,
        "parent_cpu_s": own,
        "split": {k: round(v, 2) for k, v in result.seconds.items()},
        "process_maxrss_mb": _maxrss_mb(resource.RUSAGE_SELF),
        "worker_maxrss_mb": _maxrss_mb(resource.RUSAGE_CHILDREN),  # the workers were joined
    }


def _duckdb(folder: Path, memory_limit: str) -> Any:
    """The warehouse's views, DuckDB's memory bounded, its spill files in the temp folder."""
    from ib_pipeline.warehouse import connect  # noqa: PLC0415

    con = connect(folder / "warehouse")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{folder / 'duckdb_tmp'}'")
    return con


def build_native(folder: Path, memory_limit: str) -> int:
    """The native tables, in a DuckDB file; returns its rows of bars."""
    con = _duckdb(folder, memory_limit)
    try:
        con.execute(f"ATTACH '{folder / 'native.duckdb'}' AS native")
        con.execute("CREATE TABLE native.bars AS SELECT * FROM bars")
        con.execute("CREATE TABLE native.contracts AS SELECT * FROM contracts")
        counted = con.execute("SELECT count(*) FROM native.bars").fetchone()
        con.execute("DETACH native")
    finally:
        con.close()
    return int(counted[0]) if counted else 0


def phase_queries(
    folder: Path, memory_limit: str, repeat: int, rounds: int, params: dict[str, str]
) -> dict[str, Any]:
    from bench.query_latency import one_file_view, time_queries  # noqa: PLC0415

    con = _duckdb(folder, memory_limit)
    con.execute(f"ATTACH '{folder / 'native.duckdb'}' AS native (READ_ONLY)")
    one_file = one_file_view(con, folder / "warehouse", date.fromisoformat(params["day"]))
    timings = time_queries(
        con, native=("native.bars", "native.contracts"), one_file=one_file, params=params,
        repeat=repeat, rounds=rounds,
    )  # fmt: skip
    figures = {name: dataclasses.asdict(timing) for name, timing in timings.items()}
    for name, timing in timings.items():
        print(f"{name}: views {timing.view_s * 1000:.1f} ms, native "
              f"{timing.native_s * 1000:.1f} ms, ratio {timing.view_s / timing.native_s:.2f}, "
              f"{timing.rows} rows", flush=True)  # fmt: skip
    return {"queries": figures, "process_maxrss_mb": _maxrss_mb(resource.RUSAGE_SELF)}


def _cpu_s(who: int) -> float:
    """CPU seconds (user + system) so far of this process, or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _maxrss_mb(who: int) -> float:
    """The kernel's peak resident set size of this process or of its largest waited-for
    child (``ru_maxrss``: KiB on Linux)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def run_phase(argv: Sequence[str]) -> None:
    """``_phase NAME FOLDER OUT [options]``: run one phase and write its figures to OUT."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.scale {PHASE}")
    parser.add_argument("name", choices=("floor", "replay", "queries"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--memory-limit", default="512MB")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", type=json.loads, default={})
    args = parser.parse_args(argv)
    if args.name == "floor":
        figures = phase_floor(args.folder, args.processes)
    elif args.name == "replay":
        figures = phase_replay(args.folder, args.processes)
    else:
        figures = phase_queries(
            args.folder, args.memory_limit, args.repeat, args.rounds, args.params
        )
    args.out.write_text(json.dumps(figures))


# --- running a phase and sampling its memory ----------------------------------------------------


class TreeSampler(threading.Thread):
    """Samples the memory of a process and all its descendants every `SAMPLE_S` (Linux
    ``/proc``): the peak of the sum of their RSS, and of the sum of their PSS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self.peak_pss = 0
        self.samples = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                pids = _tree(self.pid)
                self.peak_rss = max(self.peak_rss, sum(_rss(p) for p in pids))
                if self.samples % PSS_EVERY == 0:
                    self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))
                self.samples += 1
                self._stop_event.wait(SAMPLE_S)
        except BaseException as error:  # re-raised by `stop`: a peak never silently low
            self.error = error

    def stop(self) -> None:
        """Stop sampling; raises if sampling failed (the peaks would be wrong)."""
        self._stop_event.set()
        self.join()
        if self.error is not None:
            raise RuntimeError(f"sampling the memory of process {self.pid} failed") from (
                self.error
            )


def _tree(root: int) -> list[int]:
    """``root`` and its running descendants."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while listed
        state, ppid = text.rsplit(")", 1)[1].split()[:2]
        if state not in ("Z", "X"):
            parents.setdefault(int(ppid), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError):  # it ended
        return 0


def _pss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):  # it ended
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def phase(name: str, folder: Path, *options: str) -> tuple[dict[str, Any], float, int, int]:
    """Run phase ``name`` in a fresh child process; its figures, wall seconds and the peaks of
    the RSS and PSS sums of its process tree (bytes)."""
    out = folder / f"phase-{name}.json"
    command = [sys.executable, "-m", "bench.scale", PHASE, name, str(folder), str(out), *options]
    print(f"{name}: running in a fresh process ...", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL)
    sampler = TreeSampler(child.pid)
    sampler.start()
    try:
        code = child.wait()
    finally:
        sampler.stop()
        if child.poll() is None:
            child.kill()
            child.wait()
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"phase {name} exited with code {code}")
    figures: dict[str, Any] = json.loads(out.read_text())
    os.sync()  # its writes reach the disk now, not during the next phase
    return figures, seconds, sampler.peak_rss, sampler.peak_pss


# --- the command --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [PHASE]:
        run_phase(arguments[1:])
        return
    from bench.query_latency import QUERIES, QueryTiming  # noqa: PLC0415
    from ib_pipeline.replay import replay_workers  # noqa: PLC0415

    if tuple(QUERIES) != QUERY_NAMES:
        raise RuntimeError(f"bench.query_latency's queries are {list(QUERIES)}: update the goals")

    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--conids", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="replay workers (default: the replay's own default)",
    )
    parser.add_argument(
        "--floor-processes",
        type=int,
        default=None,
        help="floor processes (default: the replay's worker count)",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duckdb-memory-limit", default="512MB")  # fmt: skip
    args = parser.parse_args(arguments)
    if args.conids < 1 or args.sessions < 5:
        parser.error("need at least 1 instrument and 5 sessions (a query reads the last 5)")
    workers = replay_workers(args.workers)
    floor_processes = workers if args.floor_processes is None else args.floor_processes
    if floor_processes < 1:
        parser.error("--floor-processes must be at least 1")

    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        root = folder / "warehouse"
        sessions = full_sessions(args.sessions)
        started = time.perf_counter()
        rows, raw_bytes = land(root, args.conids, sessions, workers)
        write_contracts(root, args.conids)
        os.sync()
        land_s = time.perf_counter() - started
        expected = args.conids * args.sessions * BARS_PER_SESSION
        if rows != expected:
            raise RuntimeError(f"landed {rows} bars, expected {expected}")

        floor, floor_s, floor_rss, floor_pss = phase(
            "floor", folder, "--processes", str(floor_processes)
        )
        print(f"floor: {floor['rows']:,} rows in {floor['seconds']:.1f} s "
              f"({floor['rows'] / floor['seconds']:,.0f} rows/s, {floor_processes} processes), "
              f"peak RSS {floor_rss / MB:,.0f} MB", flush=True)  # fmt: skip
        replayed, replay_s, replay_rss, replay_pss = phase(
            "replay", folder, "--processes", str(workers)
        )
        print(f"replay: {replayed['rows']:,} rows in {replayed['seconds']:.1f} s "
              f"({replayed['rows'] / replayed['seconds']:,.0f} rows/s, {replayed['workers']} "
              f"workers), peak RSS {replay_rss / MB:,.0f} MB (sum), PSS {replay_pss / MB:,.0f} "
              f"MB, {replayed['split']}", flush=True)  # fmt: skip
        if not floor["rows"] == replayed["rows"] == rows or replayed["rows_quarantined"]:
            raise RuntimeError(f"rows: landed {rows}, floor {floor['rows']}, replay {replayed}")
        limit = ("--memory-limit", args.duckdb_memory_limit)
        print("native: building the native tables ...", flush=True)
        started = time.perf_counter()
        native_rows = build_native(folder, args.duckdb_memory_limit)
        native_s = time.perf_counter() - started
        if native_rows != rows:
            raise RuntimeError(f"the native table holds {native_rows} rows, not {rows}")
        days = [s.date for s in sessions]
        params = {"day": days[-1].isoformat(), "since": days[-5].isoformat(),
                  "symbol": f"SYM{args.conids // 2:04d}"}  # fmt: skip
        queried, queries_s, query_rss, _ = phase(
            "queries", folder, *limit, "--repeat", str(args.repeat), "--rounds",
            str(args.rounds), "--params", json.dumps(params),
        )  # fmt: skip

        replay_rate = replayed["rows"] / replayed["seconds"]
        floor_rate = floor["rows"] / floor["seconds"]
        figures: dict[str, Any] = {
            "benchmark": "scale",
            "rows": rows,
            "conids": args.conids,
            "sessions": args.sessions,
            "responses": replayed["records"],
            "partitions": replayed["partitions"],
            "cpus": os.cpu_count(),
            "replay_workers": replayed["workers"],
            "floor_processes": floor["processes"],
            "replay_rows_per_s": round(replay_rate),
            "floor_rows_per_s": round(floor_rate),
            "replay_vs_floor": round(replay_rate / floor_rate, 3),
            "replay_cpu_s": round(replayed["cpu_s"], 1),
            "replay_parent_cpu_s": round(replayed["parent_cpu_s"], 1),
            "floor_cpu_s": round(floor["cpu_s"], 1),
            "replay_vs_floor_cpu": round(floor["cpu_s"] / replayed["cpu_s"], 3),
            "replay_peak_rss_mb": round(replay_rss / MB, 1),
            "replay_peak_pss_mb": round(replay_pss / MB, 1),
            "replay_process_maxrss_mb": replayed["process_maxrss_mb"],
            "replay_worker_maxrss_mb": replayed["worker_maxrss_mb"],
            "floor_peak_rss_mb": round(floor_rss / MB, 1),
            "floor_peak_pss_mb": round(floor_pss / MB, 1),
            "query_peak_rss_mb": queried["process_maxrss_mb"],
            "query_sampled_peak_rss_mb": round(query_rss / MB, 1),
            "duckdb_memory_limit": args.duckdb_memory_limit,
            "rows_spilled": replayed["rows_spilled"],
            "raw_mb": round(raw_bytes / MB, 1),
            "floor_parquet_mb": round(floor["bytes"] / MB, 1),
            "native_duckdb_mb": round((folder / "native.duckdb").stat().st_size / MB, 1),
        }
        for name, (_template, goal) in QUERIES.items():
            timing = queried["queries"][name]
            figures[f"{name}_ms"] = round(timing["view_s"] * 1000, 2)
            figures[f"{name}_native_ms"] = round(timing["native_s"] * 1000, 2)
            figures[f"{name}_ratio"] = round(timing["view_s"] / timing["native_s"], 2)
            figures[f"{name}_goal"] = goal
            if timing["one_file_s"] is not None:
                # what DuckDB costs for this query over one file, and per other file named
                figures[f"{name}_one_file_ms"] = round(timing["one_file_s"] * 1000, 2)
                listed = QueryTiming(**timing).listed_file_us(replayed["partitions"])
                figures["listed_file_us"] = round(listed, 1)
        figures.update(
            {
                "seconds_land": round(land_s, 1),
                "seconds_floor": round(floor_s, 1),
                "seconds_replay": round(replay_s, 1),
                "seconds_native_build": round(native_s, 1),
                "seconds_queries": round(queries_s, 1),
                "replay_seconds": replayed["split"],
            }
        )
        print(json.dumps(figures))
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
