"""Benchmark: history responses per second the simulator serves over real HTTP, pacing off.

The simulator must never be what limits a loader, so with pacing off it should answer at least
200 history responses of 1000 one-minute bars per second on 2 cores. This starts
``ib-pipeline sim --no-pacing`` in its own process (so server and client do not share one GIL),
then a few concurrent httpx workers request 1000-bar windows of random stocks on random dates
from 2006 to 2024 (cold: each session is generated on the spot) for a fixed time, and count the
responses and the bars they carry. A second, shorter phase repeats one request (warm: cached).

Run: ``.venv/bin/python -m bench.sim_throughput [--seconds 8] [--workers 4]``.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench._sim_process import simulator_stats, start_simulator
from ib_pipeline.simulator.instruments import UNIVERSE

NOW = "2024-12-02T21:30:00Z"
PERIOD = "4d"  # 4 regular sessions of one-minute bars: 1560 bars, capped at 1000


def _requests(count: int, rng: random.Random) -> list[dict[str, str]]:
    stocks = [i for i in UNIVERSE if i.sec_type == "STK"]
    out = []
    for _ in range(count):
        instrument = rng.choice(stocks)
        first = max(instrument.first_date, date(2006, 1, 1))
        day = first + timedelta(days=rng.randrange(30, (date(2024, 11, 29) - first).days))
        end = datetime(day.year, day.month, day.day, 21, 0, tzinfo=UTC)
        out.append(
            {
                "conid": str(instrument.conid),
                "period": PERIOD,
                "bar": "1min",
                "startTime": end.strftime("%Y%m%d-%H:%M:%S"),
            }
        )
    return out


async def _phase(
    base_url: str, requests: list[dict[str, str]], workers: int, seconds: float
) -> dict[str, Any]:
    """Issue ``requests`` round-robin from ``workers`` tasks for ``seconds``."""
    latencies: list[float] = []
    bars: list[int] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    cursor = iter(range(10**9))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                params = requests[next(cursor) % len(requests)]
                started = time.perf_counter()
                response = await client.get("/iserver/marketdata/history", params=params)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1
                    continue
                bars.append(len(orjson.loads(response.content).get("data", [])))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "responses": len(latencies),
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "responses_per_s": round(len(latencies) / elapsed, 1),
        "bars_per_response": round(sum(bars) / max(1, len(bars)), 1),
        "bars_per_s": round(sum(bars) / elapsed),
        "latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 2),
        "latency_ms_p95": round(1000 * latencies[int(len(latencies) * 0.95)], 2),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), to tell whether the server or
    the client bound the run."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _start_server() -> tuple[subprocess.Popen[str], str]:
    return start_simulator("--no-pacing", "--now", NOW, "--bulk-positions", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the cold phase")
    parser.add_argument("--workers", type=int, default=4, help="concurrent client requests")
    args = parser.parse_args()
    process, base_url = _start_server()
    try:
        requests = _requests(4000, random.Random(11))
        with httpx.Client(base_url=base_url, timeout=60) as warmup:  # imports, calendars
            for params in requests[:40]:
                warmup.get("/iserver/marketdata/history", params=params).raise_for_status()
        cpu_before = _cpu_seconds(process.pid)
        cold = asyncio.run(_phase(base_url, requests[40:], args.workers, args.seconds))
        server_cpu = _cpu_seconds(process.pid) - cpu_before
        warm = asyncio.run(_phase(base_url, requests[:1], args.workers, args.seconds / 2))
        stats = simulator_stats(base_url)["totals"]
    finally:
        process.terminate()
        process.wait(timeout=20)
    print(f"cold (random dates): {cold}")
    print(f"warm (one cached request): {warm}")
    result = {
        "history_responses_per_s": cold["responses_per_s"],
        "bars_per_response": cold["bars_per_response"],
        "bars_per_s": cold["bars_per_s"],
        "latency_ms_p50": cold["latency_ms_p50"],
        "latency_ms_p95": cold["latency_ms_p95"],
        "server_cpu_ms_per_response": round(1000 * server_cpu / max(1, cold["responses"]), 2),
        "server_cpu_share": round(server_cpu / cold["elapsed_s"], 2),
        "warm_history_responses_per_s": warm["responses_per_s"],
        "errors": cold["errors"] + warm["errors"],
        "server_internal_errors": stats["internal_errors"],
        "workers": args.workers,
        "goal_responses_per_s": 200,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
