"""Invalid bars on demand, for testing that the loader quarantines exactly what is wrong.

A `BadDataSpec` says how many bars of a history response to corrupt, per kind of defect (a rate
or an exact count). `corrupt_rows` applies it to the rows of one response, deterministically:
the generator is seeded with the spec's seed and the request's own key, so the same request
against the same market always gets the same defects, and the ground truth (`truth`) can replay
it to say which rows were corrupted and how.

It works on the formatted response rows only (``{"o","c","h","l","v","t"}`` dicts). The clean
market and the ground truth's clean bars never see a defect.

NaN and infinite prices are real float NaN/inf in the rows; JSON has no such values, so the
encoder writes the literal tokens ``NaN`` and ``Infinity`` (which Python's ``json`` module reads
back). See `answers.encode_body`.

What it must never do: corrupt anything but the rows it is given (never the market, never the
ground truth's bars), or draw from a generator that is not seeded by the spec and the request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any

import numpy as np

from ib_pipeline.simulator.epoch import from_ms, to_ms


class BadKind(Enum):
    """The defects a response can carry. At most one applies to any row."""

    HIGH_BELOW_LOW = "high_below_low"  # h and l swapped (h < l)
    NEGATIVE_VOLUME = "negative_volume"  # v < 0
    NAN_PRICE = "nan_price"  # one of o/h/l/c is NaN
    INFINITE_PRICE = "infinite_price"  # one of o/h/l/c is +Infinity
    DUPLICATE_TIMESTAMP = "duplicate_timestamp"  # an extra row repeating a bar's t, other values
    UNSORTED_TIMESTAMP = "unsorted_timestamp"  # two neighbours swapped: a t below the one before
    OUTSIDE_SESSION = "outside_session"  # t moved to a Saturday, when no market trades


class UnreadableKind(Enum):
    """Values a loader cannot read at all, asked for by exact count (`BadDataSpec.unreadable`):
    kept apart from `BadKind` so that specs over every `BadKind` mean what they always meant."""

    TEXT_PRICE = "text_price"  # one of o/h/l/c is the string "N/A"
    NULL_CLOSE = "null_close"  # "c": null
    MISSING_VOLUME = "missing_volume"  # no "v" key at all


TEXT_PRICE_VALUE = "N/A"

_VALUE_KINDS = (
    BadKind.HIGH_BELOW_LOW,
    BadKind.NEGATIVE_VOLUME,
    BadKind.NAN_PRICE,
    BadKind.INFINITE_PRICE,
)
_PRICE_FIELDS = ("o", "h", "l", "c")


@dataclass(frozen=True)
class BadDataSpec:
    """How many bars of each response to corrupt, per kind.

    ``rates`` gives each row (independently) that chance of each kind; ``counts`` asks for an
    exact number per response instead (a count wins over a rate for the same kind, and is capped
    by the rows available). ``seed`` varies the draws without changing the market.
    """

    rates: Mapping[BadKind, float] = field(default_factory=dict)
    counts: Mapping[BadKind, int] = field(default_factory=dict)
    seed: int = 0
    unreadable: Mapping[UnreadableKind, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if not isinstance(kind, BadKind):
                raise ValueError(f"BadDataSpec.rates key {kind!r} is not a BadKind")
            if not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
                raise ValueError(
                    f"BadDataSpec rate of {kind.value} must be in [0, 1], got {rate!r}"
                )
        for kind, count in self.counts.items():
            if not isinstance(kind, BadKind):
                raise ValueError(f"BadDataSpec.counts key {kind!r} is not a BadKind")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"BadDataSpec count of {kind.value} must be >= 0, got {count!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"BadDataSpec.seed must be a non-negative integer, got {self.seed!r}")
        for unreadable, count in self.unreadable.items():
            if not isinstance(unreadable, UnreadableKind):
                raise ValueError(
                    f"BadDataSpec.unreadable key {unreadable!r} is not an UnreadableKind"
                )
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(
                    f"BadDataSpec count of {unreadable.value} must be >= 0, got {count!r}"
                )
        object.__setattr__(self, "unreadable", MappingProxyType(dict(self.unreadable)))
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))

    @classmethod
    def mixed(cls, rate: float, seed: int = 0) -> BadDataSpec:
        """Every kind, sharing ``rate`` (the chance that a row is corrupted at all) equally."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"bad-data rate must be in [0, 1], got {rate!r}")
        return cls(rates={kind: rate / len(BadKind) for kind in BadKind}, seed=seed)

    @property
    def is_empty(self) -> bool:
        return not any((*self.rates.values(), *self.counts.values(), *self.unreadable.values()))


@dataclass(frozen=True)
class Corruption:
    """One corrupted row of a response.

    ``index`` is its position in the response's ``data``; ``ts_ms`` the ``t`` it carries;
    ``clean_ts_ms`` the ``t`` of the clean bar it was made from (equal to ``ts_ms`` except for
    OUTSIDE_SESSION). ``field`` names the value changed (``"h"``, ``"v"``, ``"c"``...) when one
    was. A DUPLICATE_TIMESTAMP row is an extra row placed right after the genuine bar it
    repeats; the genuine bar is intact and is not reported. UNSORTED_TIMESTAMP swaps two
    neighbouring bars, both intact: the one reported is the earlier bar, now placed right after
    the later one (the row whose ``t`` is below the previous row's ``t``).

    A loader that first sets aside rows with row-level defects (non-finite or negative values,
    high below low, ``t`` outside the sessions) and then checks the order of the rest (``t`` equal
    to the highest so far: duplicate; below it: unsorted) finds exactly the reported rows.
    """

    index: int
    kind: BadKind | UnreadableKind
    ts_ms: int
    clean_ts_ms: int
    field: str | None = None


Row = dict[str, Any]


def closed_instant_ms(ts_ms: int) -> int:
    """An instant outside every session of every market the simulator models, unique to ``ts_ms``.

    It lies on the Saturday of ``ts_ms``'s ISO week between 04:00 and 20:00 UTC, when US equities
    (whose Friday extended hours end by 01:00 UTC), CME (closed until Sunday evening) and forex
    (24/5) are all closed. The week is mapped onto that window monotonically, so different
    ``ts_ms`` give different instants in the same order.
    """
    day = from_ms(ts_ms).date()
    monday = day - timedelta(days=day.weekday())
    week_start_ms = to_ms(datetime(monday.year, monday.month, monday.day, tzinfo=UTC))
    saturday_0400_ms = week_start_ms + (5 * 24 + 4) * 3_600_000
    return saturday_0400_ms + (ts_ms - week_start_ms) * 2 // 21


def corrupt_rows(
    rows: Sequence[Row],
    spec: BadDataSpec,
    *,
    key: Sequence[int],
    tick: float,
    decimals: int,
    closed_instant: Callable[[int], int] = closed_instant_ms,
) -> tuple[list[Row], list[Corruption]]:
    """Apply ``spec`` to a response's rows (which are left untouched) and report what changed.

    ``key`` identifies the request (conid, bar length, first and last t, ...): together with
    ``spec.seed`` it seeds the draws, so replaying the same request gives the same defects.
    """
    out: list[Row] = list(rows)  # rows are copied only when changed (copy on write)
    n = len(out)
    if n == 0 or spec.is_empty:
        return out, []
    rng = np.random.default_rng([spec.seed, *(int(k) & ((1 << 63) - 1) for k in key)])
    used = np.zeros(n, dtype=bool)
    # id(row) -> (kind, clean t, field)
    notes: dict[int, tuple[BadKind | UnreadableKind, int, str | None]] = {}

    def how_many(kind: BadKind) -> int:
        if kind in spec.counts:
            return spec.counts[kind]
        rate = spec.rates.get(kind, 0.0)
        return int(rng.binomial(n, rate)) if rate > 0 else 0

    def pick(count: int, candidates: np.ndarray[Any, np.dtype[np.int64]]) -> list[int]:
        if count <= 0 or candidates.size == 0:
            return []
        return sorted(int(i) for i in rng.permutation(candidates)[:count])

    for kind in _VALUE_KINDS:
        for i in pick(how_many(kind), np.flatnonzero(~used)):
            used[i] = True
            row = out[i] = dict(out[i])
            changed = _corrupt_value(row, kind, rng, tick, decimals)
            notes[id(row)] = (kind, int(row["t"]), changed)

    for i in pick(how_many(BadKind.OUTSIDE_SESSION), np.flatnonzero(~used)):
        used[i] = True
        row = out[i] = dict(out[i])
        clean_t = int(row["t"])
        row["t"] = closed_instant(clean_t)
        notes[id(row)] = (BadKind.OUTSIDE_SESSION, clean_t, "t")

    wanted = how_many(BadKind.UNSORTED_TIMESTAMP)
    if wanted > 0 and n > 1:
        taken = 0
        for i in (int(j) for j in rng.permutation(np.flatnonzero(~used[:-1] & ~used[1:]))):
            if taken >= wanted:
                break
            if used[i] or used[i + 1]:
                continue  # overlaps a pair already swapped
            used[i] = used[i + 1] = True
            out[i], out[i + 1] = out[i + 1], dict(out[i])
            behind = out[i + 1]  # the earlier bar, now after a later one
            notes[id(behind)] = (BadKind.UNSORTED_TIMESTAMP, int(behind["t"]), None)
            taken += 1

    for unreadable_kind, count in spec.unreadable.items():  # no draw unless asked for
        for i in pick(count, np.flatnonzero(~used)):
            used[i] = True
            row = out[i] = dict(out[i])
            changed = _unreadable_value(row, unreadable_kind, rng)
            notes[id(row)] = (unreadable_kind, int(row["t"]), changed)

    duplicates = pick(how_many(BadKind.DUPLICATE_TIMESTAMP), np.flatnonzero(~used))
    for i in reversed(duplicates):  # from the end, so earlier positions stay valid
        genuine = out[i]
        copy = dict(genuine)
        copy["c"] = round(float(genuine["c"]) + tick, decimals)
        copy["h"] = max(float(genuine["h"]), copy["c"])
        copy["v"] = float(genuine["v"]) + 1.0
        out.insert(i + 1, copy)
        notes[id(copy)] = (BadKind.DUPLICATE_TIMESTAMP, int(genuine["t"]), "c")

    report = [
        Corruption(index=i, kind=note[0], ts_ms=int(row["t"]), clean_ts_ms=note[1], field=note[2])
        for i, row in enumerate(out)
        if (note := notes.get(id(row))) is not None
    ]
    return out, report


def _corrupt_value(
    row: Row, kind: BadKind, rng: np.random.Generator, tick: float, decimals: int
) -> str:
    if kind is BadKind.HIGH_BELOW_LOW:
        high, low = float(row["h"]), float(row["l"])
        row["h"], row["l"] = (low, high) if high > low else (round(low - tick, decimals), low)
        return "h"
    if kind is BadKind.NEGATIVE_VOLUME:
        volume = float(row["v"])
        row["v"] = -volume if volume > 0 else -1.0
        return "v"
    name = _PRICE_FIELDS[int(rng.integers(len(_PRICE_FIELDS)))]
    row[name] = math.nan if kind is BadKind.NAN_PRICE else math.inf
    return name


def _unreadable_value(row: Row, kind: UnreadableKind, rng: np.random.Generator) -> str:
    if kind is UnreadableKind.NULL_CLOSE:
        row["c"] = None
        return "c"
    if kind is UnreadableKind.MISSING_VOLUME:
        del row["v"]
        return "v"
    name = _PRICE_FIELDS[int(rng.integers(len(_PRICE_FIELDS)))]
    row[name] = TEXT_PRICE_VALUE
    return name


def has_non_finite(rows: Sequence[Row]) -> bool:
    """Whether any price or volume of ``rows`` is NaN or infinite (needs the lenient encoder)."""
    return any(
        isinstance(value, float) and not math.isfinite(value)
        for row in rows
        for value in row.values()
    )
