"""Which history ranges a bars run must fetch, and which stored partitions it may skip.

Why: a backfill of years of bars is bounded by IBKR's pacing, so the number of requests is the
cost that matters. A run over a range of partitions fetches each instrument's sessions as few
contiguous ranges as possible (the client pages each range with the fewest requests), skips
partitions the store already holds completely (gap-aware loading, unless ``refetch``), and cuts
very long ranges into chunks of bounded size so memory stays flat however long the backfill.

A stored partition is complete when its manifest is current (``ok``: the caller verifies the
file's sha256 against it, so damaged bytes or a garbled manifest are never ``ok``), it holds
every instrument that had a session in it, its last load quarantined nothing, it holds at least as
many bars as those sessions imply (`ib_pipeline.calendars.bar_starts`, for intraday and daily
bars), and it was written after the last of those sessions closed. A partition that falls short
(bad rows, a hole) is therefore fetched again by the next run without being asked. The price:
an instrument that truly has no bar in some minutes (an illiquid stock: IBKR sends no bar for a
minute without trades) or no data at all in a period (listed after ``history_start``) keeps its
partitions incomplete, which costs its range's requests again on every run.

Pure planning: this module never makes requests, never writes, and never imports dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ib_pipeline.calendars import Session, bar_starts, calendar_for
from ib_pipeline.storage.bar_periods import Granularity, key_dates
from ib_pipeline.storage.manifest import STATUS_OK, Manifest
from ib_pipeline.timeframes import BarKind, BarSize
from ib_pipeline.universe import ResolvedContract

MAX_BARS_PER_CHUNK = 32_000
"""Bars per instrument fetched before the chunk is written: ~32 requests of 1000 bars, a few
MB per instrument in memory; cutting there costs at most one extra request per 32."""


@dataclass(frozen=True)
class FetchWindow:
    """One history range to fetch: bars of ``contract`` with ``start <= ts < end``."""

    contract: ResolvedContract
    start: datetime
    end: datetime


def sessions_in_keys(
    contract: ResolvedContract, keys: Sequence[str], grain: Granularity
) -> list[Session]:
    """The contract's sessions whose date falls in any of ``keys``, oldest first."""
    cal = calendar_for(contract.hours)
    found: list[Session] = []
    for key in sorted(set(keys)):
        first, last = key_dates(key, grain)
        found.extend(cal.sessions(first, last))
    return [s for s in found if contract.loads_on(s.date)]


def fetch_windows(
    contracts: Sequence[ResolvedContract],
    bar: BarSize,
    keys: Sequence[str],
    grain: Granularity,
    *,
    outside_rth: bool,
    now: datetime,
) -> list[FetchWindow]:
    """Ranges covering every contract's sessions in ``keys``: one per run of consecutive
    sessions of its calendar, ending no later than ``now`` (nothing after it exists yet)."""
    windows: list[FetchWindow] = []
    for contract in contracts:
        sessions = sessions_in_keys(contract, keys, grain)
        if not sessions:
            continue
        cal = calendar_for(contract.hours)
        wanted = {s.date for s in sessions}
        run: list[Session] = []
        for day in cal.session_dates(sessions[0].date, sessions[-1].date):
            if day in wanted:
                run.append(cal.session(day))
                continue
            _close_run(windows, contract, run=run, bar=bar, outside_rth=outside_rth, now=now)
            run = []
        _close_run(windows, contract, run=run, bar=bar, outside_rth=outside_rth, now=now)
    return windows


def _close_run(
    windows: list[FetchWindow],
    contract: ResolvedContract,
    *,
    run: list[Session],
    bar: BarSize,
    outside_rth: bool,
    now: datetime,
) -> None:
    if not run:
        return
    start = run[0].bounds(outside_rth)[0]
    if bar.kind is BarKind.MONTH:
        # Monthly bars are stamped at 00:00 UTC on the 1st, before the month's first session.
        start = datetime(start.year, start.month, 1, tzinfo=UTC)
    end = min(run[-1].bounds(outside_rth)[1], now)
    if start < end:
        windows.append(FetchWindow(contract, start, end))


def bars_per_key(
    contracts: Sequence[ResolvedContract],
    bar: BarSize,
    key: str,
    grain: Granularity,
    outside_rth: bool,
) -> int:
    """The most bars any one contract has in partition ``key`` (an upper estimate)."""
    most = 0
    for contract in contracts:
        count = 0
        for session in sessions_in_keys(contract, [key], grain):
            if bar.kind is BarKind.INTRADAY:
                count += -(-session.minutes(outside_rth) // bar.minutes)
            else:
                count += 1
        most = max(most, count)
    return most


def chunk_keys(
    keys: Sequence[str],
    estimate: Callable[[str], int],
    max_bars: int = MAX_BARS_PER_CHUNK,
) -> list[list[str]]:
    """Cut ``keys`` (in order) into chunks whose estimated bars per instrument stay under
    ``max_bars`` (a single key bigger than that is a chunk of its own)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    total = 0
    for key in keys:
        bars = estimate(key)
        if current and total + bars > max_bars:
            chunks.append(current)
            current, total = [], 0
        current.append(key)
        total += bars
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class KeyExpectation:
    """What a complete partition holds: the conids with a session in it, when the last of
    those sessions closed, and how many bars their sessions imply (0: not countable)."""

    conids: frozenset[int]
    last_close: datetime | None
    bars: int = 0


def expectation(
    contracts: Sequence[ResolvedContract],
    key: str,
    grain: Granularity,
    outside_rth: bool,
    bar: BarSize | None = None,
) -> KeyExpectation:
    conids: set[int] = set()
    last_close: datetime | None = None
    bars = 0
    countable = bar is not None and bar.kind in (BarKind.INTRADAY, BarKind.DAY)
    for contract in contracts:
        sessions = sessions_in_keys(contract, [key], grain)
        if not sessions:
            continue
        conids.add(contract.conid)
        close = sessions[-1].bounds(outside_rth)[1]
        last_close = close if last_close is None or close > last_close else last_close
        if countable and bar is not None:
            bars += sum(len(bar_starts(s, bar, outside_rth)) for s in sessions)
    return KeyExpectation(frozenset(conids), last_close, bars)


def is_complete(manifest: Manifest | None, expected: KeyExpectation) -> bool:
    """Whether a stored partition already holds everything ``expected`` (module doc)."""
    if manifest is None or manifest.status != STATUS_OK:
        return False
    if not expected.conids:
        return True
    if not expected.conids <= set(manifest.conids):
        return False
    if manifest.quarantined_rows or manifest.rows < expected.bars:
        return False
    if expected.last_close is None or not manifest.written_at:
        return False
    written = datetime.fromisoformat(manifest.written_at.replace("Z", "+00:00"))
    return written >= expected.last_close
