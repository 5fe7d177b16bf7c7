"""Progress of a load, reported by assets to whoever drives the run.

Why: a backfill of years of bars takes as long as IBKR's pacing allows, so the person who
started it wants to see instruments and requests done, bars per second and the time left. The
assets report through this small protocol, passed in as a Dagster resource (``progress``); the
``backfill`` command plugs in a rich progress bar, everything else the silent `NullProgress`.

What it must never do: influence the load (a progress sink only listens).
"""

from __future__ import annotations

from typing import Protocol


class LoadProgress(Protocol):
    """Receives the progress of a load."""

    def begin(self, asset: str, ranges: int) -> None:
        """The load of ``asset`` is about to fetch ``ranges`` history ranges (or items)."""

    def advance(self, *, ranges: int, requests: int, bars: int) -> None:
        """``ranges`` more are done; ``requests`` and ``bars`` are running totals."""

    def finish(self, asset: str) -> None:
        """The load of ``asset`` is done (written or failed)."""


class NullProgress:
    """Ignores progress (the default outside the ``backfill`` command)."""

    def begin(self, asset: str, ranges: int) -> None:
        return None

    def advance(self, *, ranges: int, requests: int, bars: int) -> None:
        return None

    def finish(self, asset: str) -> None:
        return None

    def __repr__(self) -> str:
        return "NullProgress()"
