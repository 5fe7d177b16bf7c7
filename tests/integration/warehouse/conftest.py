"""Fixtures of the warehouse integration tests: a store on a temp folder with a pinned clock,
and builders of valid normalised bars (each test breaks them in one precise way)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from bar_builders import build_bars

from ib_pipeline.calendars import US_EQUITY, TradingHours
from ib_pipeline.clock import FixedClock
from ib_pipeline.storage.store import Store

NOW = datetime(2024, 11, 28, 12, tzinfo=UTC)
AAPL, MSFT, IBM = 265598, 272093, 8314
HOURS: dict[int, TradingHours] = {AAPL: US_EQUITY, MSFT: US_EQUITY, IBM: US_EQUITY}


@pytest.fixture
def make_bars() -> Callable[..., pa.Table]:
    return build_bars


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def store(tmp_path: Path, clock: FixedClock) -> Store:
    return Store(tmp_path / "warehouse", clock=clock)
