"""Epoch milliseconds: exact in both directions, and never through a float."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ib_pipeline.simulator.epoch import from_ms, to_ms


def test_whole_milliseconds_convert_exactly_where_a_float_would_not() -> None:
    moment = datetime(2004, 10, 28, 23, 41, 18, 916_000, tzinfo=UTC)
    assert int(moment.timestamp() * 1000) == 1_099_006_878_915  # the float path is 1 ms low
    assert to_ms(moment) == 1_099_006_878_916
    assert from_ms(1_099_006_878_916) == moment


def test_round_trip_and_offsets() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert to_ms(datetime(2024, 11, 26, 9, 30, tzinfo=new_york)) == to_ms(
        datetime(2024, 11, 26, 14, 30, tzinfo=UTC)
    )
    assert to_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert from_ms(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert to_ms(from_ms(1_732_633_200_123)) == 1_732_633_200_123


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_ms(datetime(2024, 11, 26, 15, 0))
