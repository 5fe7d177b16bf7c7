"""Benchmark: raw history responses -> validated Parquet partitions (`ib_pipeline.replay`).

Gateway-shaped ``/iserver/marketdata/history`` answers (one per instrument and session, up to
1000 one-minute bars with extended hours, ``v`` in lots of 100, IBKR's metadata keys) are
synthesised with NumPy on the real trading calendar (bar stamps from `ib_pipeline.calendars`),
landed in a raw zone under a temporary warehouse, then replayed: read + decompress + JSON,
normalise (the project's `normalize.history_bars`), validate (the pandera contracts), write
(merge, deterministic Parquet, atomic replace, manifests), refresh the DuckDB catalog.
Reading and normalising run in ``--workers`` processes (default: the replay's own default,
``IB_PIPELINE_REPLAY_WORKERS`` or the CPUs available); the calling process validates each
chunk of converted batches meanwhile (`Store.load_stream`) and writes once every file is
converted. Each configuration is replayed ``--repeat`` times over identical partitions and
the fastest run is reported (the first run of a process also pays one-off warm-up: imports,
calendars, pandera schemas). Unless ``--no-sequential``, the same replay in one process is
measured too (``*_sequential``).

Reported (seconds are the fastest run's):
- ``rows_per_s``: rows over the wall time of the whole replay (goal: >= 1M rows/s on 2 cores).
- ``seconds_read``/``seconds_normalise``: work summed over the processes doing it (with
  several workers they exceed their wall time, ``seconds_parse_wall``: start to last file
  converted); ``seconds_validate``, ``seconds_write``, ``seconds_catalog``: the calling
  process; ``seconds_wait``: the calling process waiting for converted files.
- ``validation_share_of_load``: validation over the load's work, parse + validate + write
  (the measure kept from the sequential replay, where it equals the share of the wall time;
  goal < 0.10); with workers, validation shares the CPUs with them and takes longer, so the
  sequential run's share (``validation_share_of_load_sequential``) is the cleaner figure.
  ``validation_share_of_wall``: validation over the replay's wall time.
- ``validation_share_of_live_load``: validation's share of loading the same bars LIVE, where
  fetching dominates: at the pacing ceiling (`PacingLimits.global_per_s` requests/s, one
  answer each, so 1000 answers take 100 s) plus validate + write after the last answer. The
  decode + normalise + raw landing of each answer (under a millisecond, measured here as
  ``seconds_land_per_response``) is taken to hide between paced requests, so the denominator
  is the smallest a live load can have and the share an upper bound. Validate and write are
  the one-process run's (a live load validates in the asset's process, no workers).
- ``warehouse_rows_per_s``: rows over validate + write only (the warehouse's own part).

Run: ``.venv/bin/python -m bench.replay_throughput [--conids 100] [--sessions 10]
[--workers N] [--repeat 3] [--no-sequential]``. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ib_pipeline.calendars import US_EQUITY, bar_starts, calendar_for
from ib_pipeline.clock import FixedClock
from ib_pipeline.conversion import InstrumentInfo
from ib_pipeline.ibkr.settings import PacingLimits
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.replay import ReplayResult, replay, replay_workers
from ib_pipeline.storage.store import Store
from ib_pipeline.timeframes import parse_bar_size

FIRST_CONID = 900_100_000
LAST_SESSION = date(2024, 11, 26)
NOW = datetime(2024, 11, 28, tzinfo=UTC)


def history_payload(conid: int, starts: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One gateway-shaped history answer: ``data`` rows of o/h/l/c/v/t and the metadata keys
    the real gateway sends (values as the gateway types them)."""
    n = len(starts)
    close = np.round(50 + np.cumsum(rng.normal(0, 0.05, n)) + conid % 100, 2)
    open_ = np.round(close + rng.normal(0, 0.02, n), 2)
    high = np.round(np.maximum(open_, close) + rng.uniform(0.01, 0.1, n), 2)
    low = np.round(np.minimum(open_, close) - rng.uniform(0.01, 0.1, n), 2)
    lots = np.round(rng.uniform(0, 50, n), 2)
    data = [
        {"o": o, "c": c, "h": h, "l": lo, "v": v, "t": t}
        for o, c, h, lo, v, t in zip(
            open_.tolist(), close.tolist(), high.tolist(), low.tolist(), lots.tolist(),
            starts.tolist(), strict=True,
        )
    ]  # fmt: skip
    return {
        "serverId": str(conid),
        "symbol": f"S{conid % 10_000}",
        "text": "SYNTHETIC",
        "priceFactor": 100,
        "startTime": "20241125-09:00:00",
        "high": f"{int(high.max() * 100)}/{lots.max()}/0",
        "low": f"{int(low.min() * 100)}/{lots.min()}/0",
        "timePeriod": "1d",
        "barLength": 60,
        "mdAvailability": "S",
        "mktDataDelay": 0,
        "outsideRth": True,
        "volumeFactor": 1,
        "priceDisplayRule": 1,
        "priceDisplayValue": "2",
        "negativeCapable": False,
        "messageVersion": 2,
        "data": data,
        "points": n - 1,
        "travelTime": 12,
    }


def land(zone: RawZone, conids: int, sessions: int) -> tuple[int, float]:
    """Land one answer per instrument and session; returns the number of bars landed and the
    seconds spent landing them (canonical JSON, compression, atomic write; not synthesis)."""
    calendar = calendar_for(US_EQUITY)
    days = calendar.previous_session_dates(LAST_SESSION, sessions)
    rng = np.random.default_rng(7)
    bar = parse_bar_size("1min")
    rows = 0
    landing = 0.0
    for day in days:
        session = calendar.session(day)
        starts = bar_starts(session, bar, True)
        fetched = datetime.fromtimestamp(session.ext_close.timestamp() + 3600, UTC)
        for index in range(conids):
            conid = FIRST_CONID + index
            params = {
                "conid": str(conid),
                "period": "1d",
                "bar": "1min",
                "outsideRth": "true",
                "startTime": f"{session.ext_close:%Y%m%d-%H:%M:%S}",
            }
            payload = history_payload(conid, starts, rng)
            started = time.perf_counter()
            zone.land("history", params, payload, fetched)
            landing += time.perf_counter() - started
            rows += len(starts)
    return rows, landing


def timed_replays(
    store: Store, zone: RawZone, workers: int, repeat: int, label: str
) -> tuple[float, ReplayResult]:
    """The fastest of ``repeat`` replays of every bar with ``workers`` processes."""
    info = InstrumentInfo(US_EQUITY, 100.0)
    runs = []
    for attempt in range(repeat):
        started = time.perf_counter()
        result = replay(store, "bars", raw=zone, resolver=lambda conid: info,
                        run_id=f"bench-{label}-{attempt}", workers=workers)  # fmt: skip
        total = time.perf_counter() - started
        runs.append((total, result))
        split = {k: round(v, 3) for k, v in result.seconds.items()}
        print(f"{label} run {attempt} ({result.workers} process(es)): "
              f"{result.write.rows_valid} rows in {total:.2f} s, {split}")  # fmt: skip
    return min(runs, key=lambda r: r[0])


def _validation_share(result: ReplayResult) -> float:
    """Validation seconds over parse + validate + write seconds."""
    seconds = result.seconds
    load = seconds["read"] + seconds["normalise"] + seconds["validate"] + seconds["write"]
    return round(seconds["validate"] / load, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conids", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sequential", action="store_true")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    workers = replay_workers(args.workers)

    folder = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        root = folder / "warehouse"
        zone = RawZone(root)
        started = time.perf_counter()
        landed, land_s = land(zone, args.conids, args.sessions)
        synth_s = time.perf_counter() - started
        responses = args.conids * args.sessions
        raw_bytes = sum(p.stat().st_size for p in (root / "raw").rglob("*.json.zst"))
        print(f"landed {landed} bars in {responses} responses "
              f"({raw_bytes / 1e6:.1f} MB compressed) in {synth_s:.1f} s")  # fmt: skip

        store = Store(root, clock=FixedClock(NOW))
        total, result = timed_replays(store, zone, workers, args.repeat, "replay")
        sequential = None
        if not args.no_sequential and workers > 1:
            sequential = timed_replays(store, zone, 1, args.repeat, "sequential")
        seconds = result.seconds
        parse = seconds["read"] + seconds["normalise"]
        load = parse + seconds["validate"] + seconds["write"]
        rows = result.write.rows_valid
        assert rows == landed and result.write.rows_quarantined == 0
        fetch_s = result.records / PacingLimits().global_per_s
        live = (sequential[1] if sequential else result).seconds  # a live load: one process
        live_load = fetch_s + live["validate"] + live["write"]
        figures = {
            "benchmark": "replay_throughput",
            "rows": rows,
            "responses": result.records,
            "partitions": len(result.write.partitions),
            "cpus": os.cpu_count(),
            "workers": result.workers,
            "seconds_total": round(total, 3),
            "seconds_read": round(seconds["read"], 3),
            "seconds_normalise": round(seconds["normalise"], 3),
            "seconds_parse": round(parse, 3),
            "seconds_parse_wall": round(seconds["parse_wall"], 3),
            "seconds_validate": round(seconds["validate"], 3),
            "seconds_write": round(seconds["write"], 3),
            "seconds_catalog": round(seconds["catalog"], 3),
            "seconds_wait": round(seconds["wait"], 3),
            "rows_per_s": round(rows / total),
            "rows_per_s_sequential": round(rows / sequential[0]) if sequential else None,
            "warehouse_rows_per_s": round(rows / (seconds["validate"] + seconds["write"])),
            "parse_share_of_load": round(parse / load, 3),
            "validation_share_of_load": _validation_share(result),
            "write_share_of_load": round(seconds["write"] / load, 3),
            "validation_share_of_load_sequential": _validation_share(sequential[1])
            if sequential
            else None,
            "validation_share_of_wall": round(seconds["validate"] / total, 3),
            "live_fetch_seconds": round(fetch_s, 3),
            "live_load_seconds": round(live_load, 3),
            "validation_share_of_live_load": round(live["validate"] / live_load, 5),
            "seconds_land_per_response": round(land_s / responses, 6),
            "goal_rows_per_s": 1_000_000,
            "goal_validation_share": 0.10,
        }
        print(json.dumps(figures))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
