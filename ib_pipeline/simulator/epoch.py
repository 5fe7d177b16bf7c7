"""Epoch milliseconds, the gateway's unit of time, and the simulator's one way to convert them.

The gateway stamps bars, snapshots, orders and summaries in epoch milliseconds (UTC). Every
simulator module converts through these two functions, so a stamp written in one place equals
the stamp another computes for the same instant, bit for bit.

What it must never do: read a clock (callers pass the instant) or round through floats
(``datetime.timestamp() * 1000`` can land one millisecond off).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime, computed exactly (no float rounding)."""
    if value.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
    return (value - _EPOCH) // _MS


def from_ms(value: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=value)
