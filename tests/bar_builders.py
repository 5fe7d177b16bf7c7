"""Valid normalised bars for the warehouse tests (unit and integration), in the exact schema
of `ib_pipeline.ibkr.tables.HISTORY_BARS`; each test then breaks them in one precise way.
A plain module beside tests/conftest.py, imported by name from both warehouse conftests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pyarrow as pa

from ib_pipeline.calendars import US_EQUITY, TradingHours, bar_starts, calendar_for
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.timeframes import parse_bar_size


def build_bars(
    conids: Sequence[int],
    day: date,
    bar: str = "1min",
    *,
    outside_rth: bool = False,
    hours: TradingHours = US_EQUITY,
    seed: int = 0,
) -> pa.Table:
    """Valid bars of ``bar`` for every conid over the session of ``day``, sorted by (conid, ts)."""
    session = calendar_for(hours).session(day)
    starts = bar_starts(session, parse_bar_size(bar), outside_rth)
    n = len(starts) * len(conids)
    rng = np.random.default_rng(seed)
    close = 100 + rng.normal(0, 1, n).cumsum() * 0.1
    open_ = close + rng.normal(0, 0.05, n)
    spread = rng.uniform(0.01, 0.2, n)
    return pa.table(
        {
            "conid": np.repeat(np.asarray(conids, dtype=np.int64), len(starts)),
            "bar_size": [bar] * n,
            "ts": pa.array(np.tile(starts, len(conids))).cast(HISTORY_BARS.field("ts").type),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(0, 50, n).astype(np.float64) * 100,
        },
        schema=HISTORY_BARS,
    )
