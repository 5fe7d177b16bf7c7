"""Clocks: the wall clock by default, a settable one for tests and replays.

The simulator's "latest bar" and "today", and the loader's notion of "now", come from a clock
object rather than from ``datetime.now()`` calls scattered through the code, so every test can
pin time and stay deterministic.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that can tell the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """A clock that stays where it is put; tests move it with `set` or `advance`."""

    def __init__(self, now: datetime) -> None:
        self._lock = threading.Lock()
        self._now = _require_aware(now)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = _require_aware(now)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now = self._now + delta

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()})"


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 instant (``2024-11-26T15:00:00Z``); naive values are taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}; expected ISO-8601 such as 2024-11-26T15:00:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"clock time must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)
