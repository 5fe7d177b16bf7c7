"""Benchmark: research queries through `ib_pipeline.warehouse.connect()` versus a native table.

About 4M one-minute bars (``--conids`` instruments x ``--sessions`` regular sessions of 390
bars) are written through the store (validated, one partition per session, sorted by conid and
ts, row groups of 16k rows, LZ4), with a ``contracts`` row per instrument. Three queries run
through the views of `connect()` and, in the same process, against native DuckDB tables holding
the same rows (``CREATE TABLE ... AS SELECT * FROM <view>``):

1. daily OHLCV per symbol, for all symbols and sessions (goal: <= 2x native);
2. VWAP per symbol for one session (goal: <= 2x native);
3. one symbol's bars over its last 5 sessions (goal: <= 2x native).

Each query runs ``--repeat`` (15) times through the views and as many times natively, after
one warm-up of each, in ``--rounds`` (3) alternating blocks (views then native, then native then
views, ...) so that a change in the load of a shared machine falls on both sides alike; the
median of each side is reported, with the ratio.

The one-day query is also timed over a view of the ONE file it reads (`one_file_view`), in the
same blocks, and reported for information: ``vwap_one_day_one_file_ms`` is DuckDB's floor for
that query through a Parquet view, and ``listed_file_us`` what each other file that
`connect()`'s view names adds to it (DuckDB expands, stats and filters every listed file on
every query, before it opens the one it keeps).

Run: ``.venv/bin/python -m bench.query_latency [--conids 100] [--sessions 100]``.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from ib_pipeline.calendars import US_EQUITY, bar_starts, calendar_for
from ib_pipeline.clock import FixedClock
from ib_pipeline.ibkr.tables import CONTRACTS, HISTORY_BARS
from ib_pipeline.storage.bar_periods import partition_id
from ib_pipeline.storage.paths import Partition
from ib_pipeline.storage.store import Batch, Store
from ib_pipeline.timeframes import parse_bar_size
from ib_pipeline.warehouse import connect

FIRST_CONID = 900_200_000
LAST_SESSION = date(2024, 11, 26)
NOW = datetime(2024, 11, 28, tzinfo=UTC)

ONE_DAY_QUERY = "vwap_one_day"
"""The query also timed over a view of the one file it reads (`one_file_view`)."""

QUERIES: dict[str, tuple[str, float]] = {
    "daily_ohlcv_all_symbols": (
        """
        SELECT c.symbol, b.session_date,
               arg_min(b.open, b.ts) AS open, max(b.high) AS high, min(b.low) AS low,
               arg_max(b.close, b.ts) AS close, sum(b.volume) AS volume
        FROM {bars} AS b JOIN {contracts} AS c USING (conid)
        WHERE b.bar_size = '1min'
        GROUP BY c.symbol, b.session_date
        """,
        2.0,
    ),
    "vwap_one_day": (
        """
        SELECT c.symbol, sum(b.close * b.volume) / sum(b.volume) AS vwap
        FROM {bars} AS b JOIN {contracts} AS c USING (conid)
        WHERE b.bar_size = '1min' AND b.session_date = DATE '{day}'
        GROUP BY c.symbol
        """,
        2.0,
    ),
    "one_symbol_last_5_days": (
        """
        SELECT b.ts, b.open, b.high, b.low, b.close, b.volume
        FROM {bars} AS b JOIN {contracts} AS c USING (conid)
        WHERE c.symbol = '{symbol}' AND b.bar_size = '1min' AND b.session_date >= DATE '{since}'
        ORDER BY b.ts
        """,
        2.0,
    ),
}


def bars_of_session(conids: int, day: date, rng: np.random.Generator) -> pa.Table:
    session = calendar_for(US_EQUITY).session(day)
    starts = bar_starts(session, parse_bar_size("1min"), False)
    n = len(starts) * conids
    close = 50 + np.cumsum(rng.normal(0, 0.02, n))
    open_ = close + rng.normal(0, 0.01, n)
    spread = rng.uniform(0.01, 0.05, n)
    return pa.table(
        {
            "conid": np.repeat(np.arange(FIRST_CONID, FIRST_CONID + conids, dtype=np.int64),
                               len(starts)),
            "bar_size": ["1min"] * n,
            "ts": pa.array(np.tile(starts, conids)).cast(HISTORY_BARS.field("ts").type),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(1, 100, n).astype(np.float64) * 100,
        },
        schema=HISTORY_BARS,
    )  # fmt: skip


def build(root: Path, conids: int, sessions: int) -> tuple[int, list[date]]:
    store = Store(root, clock=FixedClock(NOW))
    contracts = pa.Table.from_pylist(
        [
            {"conid": FIRST_CONID + i, "symbol": f"SYM{i:04d}", "sec_type": "STK",
             "exchanges": "NASDAQ"}
            for i in range(conids)
        ],
        schema=CONTRACTS,
    )  # fmt: skip
    store.write("contracts", contracts, source={"bench": "query_latency"}, run_id="bench")
    days = calendar_for(US_EQUITY).previous_session_dates(LAST_SESSION, sessions)
    hours = {FIRST_CONID + i: US_EQUITY for i in range(conids)}
    rng = np.random.default_rng(11)
    rows = 0
    for chunk in range(0, len(days), 10):
        batches = [
            Batch(bars_of_session(conids, day, rng), {"bench": str(day)}, hours=hours)
            for day in days[chunk : chunk + 10]
        ]
        rows += store.load("bars", batches, run_id="bench").rows_valid
    return rows, days


def timed(con: duckdb.DuckDBPyConnection, sql: str, repeat: int) -> tuple[list[float], int]:
    times, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = len(con.execute(sql).fetchall())
        times.append(time.perf_counter() - started)
    return times, count


def timed_together(
    con: duckdb.DuckDBPyConnection, sqls: list[str], repeat: int, rounds: int
) -> list[tuple[float, int]]:
    """Median seconds and row count of each query, over ``repeat`` runs each made in
    ``rounds`` blocks after one warm-up of each (metadata and file caches); every block runs
    the queries in another order (rotated, then reversed), so that a change in the load of a
    shared machine falls on all of them alike."""
    for sql in sqls:
        con.execute(sql).fetchall()
    samples: dict[str, list[float]] = {sql: [] for sql in sqls}
    counts: dict[str, int] = {}
    for block in range(rounds):
        size = repeat // rounds + (1 if block < repeat % rounds else 0)
        shift = block // 2 % len(sqls)
        order = sqls[shift:] + sqls[:shift]
        for sql in order if block % 2 == 0 else reversed(order):
            times, counts[sql] = timed(con, sql, size)
            samples[sql].extend(times)
    return [(statistics.median(samples[sql]), counts[sql]) for sql in sqls]


def one_file_view(con: duckdb.DuckDBPyConnection, root: Path, day: date) -> str:
    """A view of the 1-minute bars of ``day`` over the one file that holds them, its folder
    columns as constants: what a Parquet view costs DuckDB when it names no file but the one a
    one-day query reads (the floor under `connect()`'s views, which name every session's
    file)."""
    partition = Partition.from_id("bars", partition_id("1min", day.isoformat()))
    con.execute(
        "CREATE VIEW bars_one_file AS SELECT *, CAST('1min' AS VARCHAR) AS bar_size, "
        f"DATE '{day.isoformat()}' AS session_date "
        f"FROM read_parquet('{root / partition.data_path}')"
    )
    return "bars_one_file"


@dataclass(frozen=True)
class QueryTiming:
    """Medians of one query through the views and on the native tables, and its rows."""

    view_s: float
    native_s: float
    rows: int
    one_file_s: float | None = None
    """`ONE_DAY_QUERY` only: the same query over `one_file_view`."""

    def listed_file_us(self, files: int) -> float:
        """What each file the views name besides the one read adds to the query (µs)."""
        if self.one_file_s is None:
            raise ValueError("only the one-day query is also timed over one file")
        return (self.view_s - self.one_file_s) / max(1, files - 1) * 1e6


def time_queries(
    con: duckdb.DuckDBPyConnection,
    *,
    native: tuple[str, str],
    one_file: str,
    params: dict[str, str],
    repeat: int,
    rounds: int,
) -> dict[str, QueryTiming]:
    """Every query of `QUERIES` through the views and on the ``native`` (bars, contracts)
    tables, `ONE_DAY_QUERY` also over ``one_file``, timed together (`timed_together`); each
    side must return the same rows, at least one."""
    timings: dict[str, QueryTiming] = {}
    for name, (template, _goal) in QUERIES.items():
        sqls = [
            template.format(bars="bars", contracts="contracts", **params),
            template.format(bars=native[0], contracts=native[1], **params),
        ]
        if name == ONE_DAY_QUERY:
            sqls.append(template.format(bars=one_file, contracts="contracts", **params))
        measured = timed_together(con, sqls, repeat, max(1, min(rounds, repeat)))
        rows = [count for _, count in measured]
        if rows[0] == 0 or len(set(rows)) != 1:
            raise RuntimeError(f"{name}: rows via the views, native (, one file): {rows}")
        timings[name] = QueryTiming(
            view_s=measured[0][0],
            native_s=measured[1][0],
            rows=rows[0],
            one_file_s=measured[2][0] if len(measured) > 2 else None,
        )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conids", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.sessions < 5 or args.conids < 1:
        parser.error("--sessions must be at least 5 (one query reads the last 5 sessions) "
                     "and --conids at least 1")  # fmt: skip

    folder = Path(tempfile.mkdtemp(prefix="bench-query-"))
    try:
        root = folder / "warehouse"
        started = time.perf_counter()
        rows, days = build(root, args.conids, args.sessions)
        files = len(list((root / "bars").rglob("*.parquet")))
        print(f"wrote {rows} bars in {files} files in {time.perf_counter() - started:.1f} s")

        con = connect(root)
        con.execute("CREATE TABLE bars_native AS SELECT * FROM bars")
        con.execute("CREATE TABLE contracts_native AS SELECT * FROM contracts")
        one_file = one_file_view(con, root, days[-1])
        params = {"day": days[-1].isoformat(), "since": days[-5].isoformat(),
                  "symbol": f"SYM{args.conids // 2:04d}"}  # fmt: skip
        figures: dict[str, object] = {
            "benchmark": "query_latency",
            "rows": rows,
            "files": files,
            "duckdb": duckdb.__version__,
        }
        all_met = True
        timings = time_queries(
            con, native=("bars_native", "contracts_native"), one_file=one_file, params=params,
            repeat=args.repeat, rounds=args.rounds,
        )  # fmt: skip
        for name, (_template, goal) in QUERIES.items():
            timing = timings[name]
            if timing.one_file_s is not None:
                per_file_us = timing.listed_file_us(files)
                print(f"{name}: one file {timing.one_file_s * 1000:.1f} ms "
                      f"({timing.one_file_s / timing.native_s:.2f}x native); each other listed "
                      f"file {per_file_us:.1f} us")  # fmt: skip
                figures[f"{name}_one_file_ms"] = round(timing.one_file_s * 1000, 2)
                figures["listed_file_us"] = round(per_file_us, 1)
            ratio = timing.view_s / timing.native_s
            all_met = all_met and ratio <= goal
            print(f"{name}: views {timing.view_s * 1000:.1f} ms, native "
                  f"{timing.native_s * 1000:.1f} ms, ratio {ratio:.2f} (goal <= {goal}), "
                  f"{timing.rows} rows")  # fmt: skip
            figures[f"{name}_ms"] = round(timing.view_s * 1000, 2)
            figures[f"{name}_native_ms"] = round(timing.native_s * 1000, 2)
            figures[f"{name}_ratio"] = round(ratio, 2)
            figures[f"{name}_goal"] = goal
        figures["all_goals_met"] = all_met
        print(json.dumps(figures))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
