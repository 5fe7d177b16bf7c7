"""Builders for the warehouse unit tests: valid normalised tables in the exact schemas of
`ib_pipeline.ibkr.tables`, which each test then breaks in one precise way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from bar_builders import build_bars

NOW = datetime(2024, 11, 28, tzinfo=UTC)
"""Validation clock of the unit tests: after every bar they build."""

BarsFactory = Callable[..., pa.Table]


@pytest.fixture
def make_bars() -> BarsFactory:
    return build_bars


def with_rows(table: pa.Table, rows: list[dict[str, object]]) -> pa.Table:
    """``table`` plus ``rows`` (dicts of column values), same schema."""
    return pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)])


@pytest.fixture
def add_rows() -> Callable[[pa.Table, list[dict[str, object]]], pa.Table]:
    return with_rows
