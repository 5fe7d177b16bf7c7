"""Benchmark: history ingestion of a fixed universe through the client, with REAL pacing.

The simulator runs in its own process (``ib-pipeline sim``) with the published limits and
300 ms of latency per response. The client fetches one-minute bars of a fixed set of stocks
over a fixed range of sessions (`history_ranges`: concurrent across instruments, paced by the
client), and the run is compared with:

- the **pacing ceiling**: the most bars per second the gateway's limits allow,
  ``min(10 req/s global, 5 concurrent / latency) x 1000 bars``;
- the **minimum number of requests**: the sum over ranges of ceil(bars / 1000);
- **ibind** (a popular client of this API) doing the same pages sequentially, as its users do
  (ibind neither pages nor paces by itself).

Run: ``.venv/bin/python -m bench.history_ingest [--sessions 40] [--latency-ms 300]``. The
client runs twice: with its defaults (10 req/s evenly spaced, 4 concurrent history requests)
and at exactly the published limits (10 req/s, 5 concurrent; skip with
``--no-published-limits``). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench._sim_process import simulator_stats, start_simulator
from ib_pipeline.calendars import US_EQUITY, calendar_for
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.history import HistoryRequest, RangePlanner, page_times
from ib_pipeline.ibkr.parsing import ms_of
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits

NOW = "2024-11-27T21:30:00Z"
LAST_SESSION_END = datetime(2024, 11, 27, 21, 0, tzinfo=UTC)
UNIVERSE = (265598, 272093, 3691937, 4815747, 208813719, 107113386, 76792991, 8314)
"""AAPL, MSFT, AMZN, NVDA, GOOGL, META, TSLA, IBM."""
GLOBAL_LIMIT_PER_S = 10.0
HISTORY_CONCURRENCY_LIMIT = 5


def _requests(sessions: int) -> list[HistoryRequest]:
    days = calendar_for(US_EQUITY).previous_session_dates(LAST_SESSION_END.date(), sessions)
    start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    return [HistoryRequest(conid, "1min", start, LAST_SESSION_END) for conid in UNIVERSE]


def _start_server(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    return start_simulator(
        "--now", NOW, "--latency-ms", str(latency_ms), "--penalty-box", "10",
        "--bulk-positions", "0",
    )  # fmt: skip


def _reset_stats(base_url: str) -> None:
    httpx.post(base_url.removesuffix("/v1/api") + "/sim/reset-stats").raise_for_status()


async def _ours(
    base_url: str, requests: list[HistoryRequest], pacing: PacingLimits
) -> dict[str, Any]:
    settings = ClientSettings(
        base_url=base_url, token_env=None, keepalive_interval_s=None, pacing=pacing
    )
    async with IbkrClient(settings) as client:
        started = time.perf_counter()
        results = await client.history_ranges(requests)
        elapsed = time.perf_counter() - started
        pages = sum(len(r.pages) for r in results)
        rate_limited = client.stats.rate_limited
    bars = sum(r.table(lot_size=100).num_rows for r in results)
    expected = sum(r.expected_bars for r in results)
    return {
        "bars": bars,
        "complete": bars == expected,
        "requests": pages,
        "elapsed_s": round(elapsed, 3),
        "bars_per_s": round(bars / elapsed),
        "requests_per_s": round(pages / elapsed, 2),
        "client_429": rate_limited,
    }


def _ibind(base_url: str, requests: list[HistoryRequest]) -> dict[str, Any]:
    """The same pages through ibind, one request at a time (its users' way)."""
    os.environ.setdefault("IBIND_LOG_TO_FILE", "False")
    os.environ.setdefault("IBIND_LOG_TO_CONSOLE", "False")
    os.environ.setdefault("IBIND_AUTO_REGISTER_SHUTDOWN", "False")
    from ibind import IbkrClient as IbindClient  # noqa: PLC0415 (reads the variables above)

    client = IbindClient(url=base_url + "/", cacert=False, use_session=True)
    bars = pages = 0
    started = time.perf_counter()
    for request in requests:
        planner = RangePlanner(request)
        start_ms = ms_of(request.start)
        cursor = request.end
        seen: set[int] = set()
        while True:
            plan = planner.plan(ms_of(cursor))
            result = client.marketdata_history_by_conid(
                str(request.conid), bar="1min", period=plan.period, outside_rth=False,
                start_time=cursor,
            )  # fmt: skip
            pages += 1
            times = page_times(result.data)
            seen.update(t for t in times if start_ms <= t < ms_of(request.end))
            if not times or min(times) <= start_ms or (len(times) < 1000 and plan.reaches_start):
                break
            cursor = datetime.fromtimestamp(min(times) / 1000, UTC)
        bars += len(seen)
    elapsed = time.perf_counter() - started
    client.close()
    return {
        "bars": bars,
        "requests": pages,
        "elapsed_s": round(elapsed, 3),
        "bars_per_s": round(bars / elapsed),
        "requests_per_s": round(pages / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40, help="sessions of 1-minute bars")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="simulated latency")
    parser.add_argument(
        "--no-published-limits",
        dest="published_limits",
        action="store_false",
        help="skip the second run at exactly the published limits (10 req/s, 5 concurrent)",
    )
    args = parser.parse_args()
    requests = _requests(args.sessions)
    minimum = sum(math.ceil(RangePlanner(r).expected_bars(ms_of(r.end)) / 1000) for r in requests)
    latency_s = args.latency_ms / 1000
    ceiling_rps = (
        min(GLOBAL_LIMIT_PER_S, HISTORY_CONCURRENCY_LIMIT / latency_s)
        if latency_s
        else GLOBAL_LIMIT_PER_S
    )
    ceiling = ceiling_rps * 1000
    process, base_url = _start_server(args.latency_ms)
    try:
        warm_up = {"conid": "265598", "period": "1d", "bar": "1d"}  # imports, calendars
        httpx.get(base_url + "/iserver/marketdata/history", params=warm_up).raise_for_status()
        _reset_stats(base_url)
        ours = asyncio.run(_ours(base_url, requests, PacingLimits()))
        ours_429 = simulator_stats(base_url)["totals"]["429"]
        print(f"ib-pipeline client (defaults): {ours}")
        published: dict[str, Any] | None = None
        if args.published_limits:
            _reset_stats(base_url)
            limits = PacingLimits(global_per_s=GLOBAL_LIMIT_PER_S, history_concurrency=5)
            published = asyncio.run(_ours(base_url, requests, limits))
            published["server_429"] = simulator_stats(base_url)["totals"]["429"]
            published["ratio_to_ceiling"] = round(published["bars_per_s"] / ceiling, 3)
            print(f"ib-pipeline client (published limits): {published}")
        _reset_stats(base_url)
        ibind = _ibind(base_url, requests)
        ibind_429 = simulator_stats(base_url)["totals"]["429"]
        print(f"ibind, sequential: {ibind}")
    finally:
        process.terminate()
        process.wait(timeout=20)
    result: dict[str, Any] = {
        "instruments": len(requests),
        "sessions": args.sessions,
        "latency_ms": args.latency_ms,
        "bars": ours["bars"],
        "complete": ours["complete"],
        "bars_per_s": ours["bars_per_s"],
        "ceiling_bars_per_s": round(ceiling),
        "ratio_to_ceiling": round(ours["bars_per_s"] / ceiling, 3),
        "goal_ratio": 0.95,
        "request_rate_ratio": round(ours["requests_per_s"] / ceiling_rps, 3),
        "bars_per_request": round(ours["bars"] / ours["requests"], 1),
        "requests": ours["requests"],
        "min_requests": minimum,
        "requests_over_min": round(ours["requests"] / minimum - 1, 4),
        "requests_per_s": ours["requests_per_s"],
        "server_429": ours_429,
        "elapsed_s": ours["elapsed_s"],
        "ibind_bars_per_s": ibind["bars_per_s"],
        "ibind_elapsed_s": ibind["elapsed_s"],
        "ibind_requests": ibind["requests"],
        "ibind_server_429": ibind_429,
        "speedup_vs_ibind": round(ours["bars_per_s"] / max(1, ibind["bars_per_s"]), 2),
    }
    if published is not None:
        result["published_limits"] = {
            k: published[k]
            for k in ("bars_per_s", "ratio_to_ceiling", "requests_per_s", "server_429", "requests")
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
