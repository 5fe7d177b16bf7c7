"""A small raw zone of history answers for the replay tests (`test_wh_replay_parallel.py`,
`test_wh_replay_spill.py`): 16 answers, 4 conids x 4 sessions; 1min bars with extended hours
for two conids, 5min regular-hours bars for the others; every third answer corrupted, so the
quarantine has rows too. Landed through `RawZone.land` as the client would land them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.clock import FixedClock
from ib_pipeline.conversion import InstrumentInfo
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.simulator.bad_data import BadDataSpec, BadKind
from ib_pipeline.simulator.history import (
    encode_body,
    format_start_time,
    history_response_with_report,
)
from ib_pipeline.simulator.market import Market

SIM_NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
CONIDS = (265598, 272093, 3691937, 4815747)  # AAPL, MSFT, AMZN, NVDA in the simulator
DAYS = (date(2024, 11, 19), date(2024, 11, 20), date(2024, 11, 21), date(2024, 11, 22))
BAD = BadDataSpec(counts={kind: 1 for kind in BadKind}, seed=5)


def resolve(conid: int) -> InstrumentInfo:
    return InstrumentInfo(US_EQUITY, 100.0)


def land_history(root: Path) -> Path:
    """Land the answers (module doc) in ``root``'s raw zone; returns ``root``."""
    zone = RawZone(root)
    market = Market(0, FixedClock(SIM_NOW))
    count = 0
    for day in DAYS:
        end = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=22)
        for position, conid in enumerate(CONIDS):
            extended = position % 2 == 0
            params = {
                "conid": str(conid),
                "period": "1d",
                "bar": "1min" if extended else "5min",
                "startTime": format_start_time(end),
                "outsideRth": "true" if extended else "false",
            }
            spec = BAD if count % 3 == 0 else None
            status, body, _ = history_response_with_report(market, params, spec)
            assert status == 200 and body["data"]
            payload = json.loads(encode_body(body))  # as the client decodes it: NaN literals
            fetched = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
                hours=23, seconds=count
            )
            zone.land("history", params, payload, fetched)
            count += 1
    return root
