"""Benchmark: how fast the simulator's pure market core answers 1000-bar history requests.

Builds ``history_response`` bodies for 1000-bar one-minute requests on random dates and
instruments (cold: each session is generated on the spot) and JSON-encodes them with the
server's encoder (`history.encode_body`: orjson, or the standard library for bad-data bodies
holding NaN/Infinity). It also times 100 of them again (warm: their sessions cached) and a
bad-data variant. The full HTTP server aims at >= 200 responses/s on 2 cores, so this pure part
should stay well above that.

Run: ``.venv/bin/python -m bench.sim_market``. The last line of output is one JSON object.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

from ib_pipeline.calendars import calendar_for
from ib_pipeline.clock import FixedClock
from ib_pipeline.simulator.bad_data import BadDataSpec
from ib_pipeline.simulator.history import MAX_BARS, encode_body, history_response
from ib_pipeline.simulator.instruments import UNIVERSE
from ib_pipeline.simulator.market import Market

REQUESTS = 600
SEED = 7


def _requests(count: int, rng: random.Random) -> list[dict[str, str]]:
    """Requests whose window holds at least 1000 one-minute bars (5 sessions back)."""
    out = []
    for _ in range(count):
        instrument = rng.choice(UNIVERSE)
        first = max(instrument.first_date, datetime(2006, 1, 1, tzinfo=UTC).date())
        span = (datetime(2024, 12, 1, tzinfo=UTC).date() - first).days
        end = datetime.combine(first, datetime.min.time(), UTC) + timedelta(
            days=rng.randrange(30, span), hours=rng.randrange(24)
        )
        out.append(
            {
                "conid": str(instrument.conid),
                "period": "5d",
                "bar": "1min",
                "startTime": end.strftime("%Y%m%d-%H:%M:%S"),
                "outsideRth": rng.choice(["true", "false"]),
            }
        )
    return out


def _run(
    market: Market, requests: list[dict[str, str]], bad: BadDataSpec | None
) -> tuple[float, int]:
    bars = 0
    started = time.perf_counter()
    for params in requests:
        status, body = history_response(market, params, bad)
        encode_body(body)
        if status == 200 and "data" in body:
            bars += len(body["data"])
    return time.perf_counter() - started, bars


def main() -> None:
    rng = random.Random(SEED)
    market = Market(SEED, FixedClock(datetime(2025, 1, 2, tzinfo=UTC)))
    # Load the exchange calendars once (a one-off ~0.1 s each that the server pays at start-up).
    for instrument in UNIVERSE:
        calendar_for(instrument.trading_hours)
    requests = _requests(REQUESTS, rng)

    cold_s, bars = _run(market, requests, None)
    repeated = requests[:100]  # few enough for the session cache to hold them all
    _run(market, repeated, None)
    warm_s, _ = _run(market, repeated, None)
    cold_bad_s, _ = _run(
        Market(SEED + 1, market.clock), requests, BadDataSpec.mixed(0.02, seed=SEED)
    )
    result = {
        "benchmark": "sim_market",
        "requests": REQUESTS,
        "max_bars_per_response": MAX_BARS,
        "mean_bars_per_response": round(bars / REQUESTS, 1),
        "cold_responses_per_s": round(REQUESTS / cold_s, 1),
        "warm_responses_per_s": round(len(repeated) / warm_s, 1),
        "cold_bad_data_responses_per_s": round(REQUESTS / cold_bad_s, 1),
        "cold_bars_per_s": round(bars / cold_s),
    }
    print(
        f"{REQUESTS} one-minute history requests (5d windows, capped at {MAX_BARS} bars),"
        " built and JSON-encoded"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
