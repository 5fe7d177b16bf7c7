"""Benchmark: Dagster's overhead on a single-run backfill of 1-minute bars.

A backfill of N trading days (default 20) of 1-minute bars for M instruments (default 20 US
stocks) against the bundled simulator with pacing off (on both sides: the simulator's limits
and the client's pacer), done twice in the same process on fresh warehouses:

- **baseline**: the same work without Dagster: `assets.bar_loader.load_bars` (resolve the
  contracts, plan, fetch, validate, write, verify the contract and the completeness), with a
  client built from the same settings;
- **dagster**: the real ``bars_1min`` asset of `assets.definitions`, materialised over the
  partition range as ONE in-process run on an ephemeral instance (job resolution, run and event
  storage, per-partition materialisation events, the checks).

``overhead_ms_per_partition = (dagster_s - baseline_s) / partitions`` (goal <= 30 ms). Each
variant runs ``--repeat`` times alternately and the fastest of each is kept (the machine is
shared). ``peak_memory_mb`` is the highest resident set size of the process sampled during the
Dagster runs (``/proc/self/statm`` every 5 ms; it includes the simulator serving in a thread
of the same process), with how much it grew during a run, the baseline's peak and Arrow's
own pool peak beside it.

Run: ``.venv/bin/python -m bench.dagster_backfill [--days 20] [--instruments 20] [--repeat 3]``.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.bar_loader import load_bars
from assets.contract_lookup import search_instruments
from assets.definitions import build_definitions
from assets.partitions import bars_partitions_def
from assets.resources import IbkrClientResource, WarehouseResource
from assets.runs import run_assets, summarize_run
from ib_pipeline.simulator import PacingConfig, Simulator, SimulatorConfig
from ib_pipeline.simulator.instruments import UNIVERSE as SIM_UNIVERSE
from ib_pipeline.storage.store import Store
from ib_pipeline.timeframes import parse_bar_size
from ib_pipeline.universe import Universe, parse_universe

NOW = datetime(2024, 11, 26, 21, 30, tzinfo=UTC)
"""The simulator's pinned clock: after the close of Tuesday 2024-11-26."""
LAST_DAY = "2024-11-26"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def bench_universe(instruments: int) -> Universe:
    stocks = [i for i in SIM_UNIVERSE if i.sec_type == "STK" and i.exchange in ("NASDAQ", "NYSE")]
    if instruments > len(stocks):
        raise SystemExit(f"--instruments {instruments}: the simulator has {len(stocks)} stocks")
    return parse_universe(
        {
            "history_start": "2024-01-02",
            "bar_sizes": ["1min"],
            "instruments": [
                {"symbol": s.symbol, "sec_type": "STK", "exchange": s.exchange}
                for s in stocks[:instruments]
            ],
        },
        source="bench",
    )


class RssSampler:
    """Samples the process's resident set size in a thread; ``peak`` in bytes."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def fresh_root(base: Path, name: str, contracts: Path) -> Path:
    """An empty warehouse holding only the contracts (resolved once, outside the timings)."""
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(contracts, root / "contracts")
    return root


def timed(work: Callable[[], Any]) -> tuple[float, Any, int, int]:
    """Seconds, result, peak RSS and the RSS growth during ``work``."""
    with RssSampler() as sampler:
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
    return seconds, result, sampler.peak, sampler.peak - sampler.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=20, help="trading days (partitions)")
    parser.add_argument("--instruments", type=int, default=20, help="US stocks")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant")
    args = parser.parse_args()

    universe = bench_universe(args.instruments)
    bar = parse_bar_size("1min")
    partitions = bars_partitions_def(bar, universe)
    all_keys = partitions.get_partition_keys(current_time=NOW)
    keys = all_keys[all_keys.index(LAST_DAY) - args.days + 1 : all_keys.index(LAST_DAY) + 1]
    print(f"{args.instruments} instruments x {len(keys)} sessions ({keys[0]} .. {keys[-1]})")

    config = SimulatorConfig(now=NOW, pacing=PacingConfig(enabled=False), session_timeout_s=None)
    ibkr = IbkrClientResource(
        global_per_s=100_000.0, history_concurrency=8, keepalive_interval_s=None
    )
    base = Path(tempfile.mkdtemp(prefix="bench-dagster-"))
    try:
        with Simulator(config) as sim:
            # The client's own pacer is off too: 100,000 requests/s is no limit.
            ibkr = IbkrClientResource(
                base_url=sim.base_url,
                global_per_s=100_000.0,
                history_concurrency=8,
                keepalive_interval_s=None,
            )

            async def contracts() -> None:
                async with ibkr.get_client(clock=sim.clock) as client:
                    _, table = await search_instruments(client, universe.instruments)
                Store(base / "seed", clock=sim.clock).write(
                    "contracts", table, source="bench", run_id="seed", mode="replace"
                )

            asyncio.run(contracts())
            seed = base / "seed" / "contracts"

            def baseline(root: Path) -> Any:
                store = Store(root, clock=sim.clock)

                async def run() -> Any:
                    async with ibkr.get_client(clock=sim.clock) as client:
                        return await load_bars(
                            client, store, universe, bar, keys, run_id="baseline", now=NOW
                        )

                return asyncio.run(run())

            def with_dagster(root: Path, instance: dg.DagsterInstance) -> Any:
                defs = build_definitions(
                    universe,
                    resources={
                        "ibkr": ibkr,
                        "warehouse": WarehouseResource(root=str(root), raw_zone=False),
                        "clock": sim.clock,
                    },
                )
                result = run_assets(
                    defs,
                    ["bars_1min"],
                    instance=instance,
                    partition_range=(keys[0], keys[-1]),
                    log_level="ERROR",
                )
                return summarize_run(result)

            base_times: list[float] = []
            dagster_times: list[float] = []
            base_peak = dagster_peak = dagster_growth = 0
            load: Any = None
            summary: Any = None
            for attempt in range(args.repeat):
                root = fresh_root(base, f"baseline-{attempt}", seed)
                seconds, load, peak, _ = timed(functools.partial(baseline, root))
                base_times.append(seconds)
                base_peak = max(base_peak, peak)
                shutil.rmtree(root, ignore_errors=True)
                with dg.DagsterInstance.ephemeral() as instance:
                    root = fresh_root(base, f"dagster-{attempt}", seed)
                    seconds, summary, peak, growth = timed(
                        functools.partial(with_dagster, root, instance)
                    )
                    dagster_times.append(seconds)
                    dagster_peak = max(dagster_peak, peak)
                    dagster_growth = max(dagster_growth, growth)
                    shutil.rmtree(root, ignore_errors=True)
                print(
                    f"run {attempt + 1}: baseline {base_times[-1]:.2f} s, "
                    f"dagster {dagster_times[-1]:.2f} s"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)

    meta = summary.materialized["bars_1min"]
    if not summary.success or summary.failed_checks or meta["rows_written"] != load.rows_written:
        raise SystemExit(f"the two variants disagree or failed: {summary}")
    baseline_s, dagster_s = min(base_times), min(dagster_times)
    figures = {
        "partitions": len(keys),
        "instruments": args.instruments,
        "bars": load.rows_written,
        "history_requests": load.requests.get("history", 0),
        "baseline_s": round(baseline_s, 3),
        "dagster_s": round(dagster_s, 3),
        "overhead_ms_per_partition": round(1000 * (dagster_s - baseline_s) / len(keys), 1),
        "goal_ms_per_partition": 30,
        "peak_memory_mb": round(dagster_peak / 2**20, 1),
        "dagster_run_memory_growth_mb": round(dagster_growth / 2**20, 1),
        "baseline_peak_memory_mb": round(base_peak / 2**20, 1),
        "arrow_pool_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1),
        "runs": {"baseline_s": [round(t, 3) for t in base_times],
                 "dagster_s": [round(t, 3) for t in dagster_times]},
    }  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
