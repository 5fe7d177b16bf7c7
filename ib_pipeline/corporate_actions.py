"""Splits seen in the bars: compare a re-fetched overlap with what is stored, restate, record.

Why: IBKR serves history adjusted for splits *as of the time of the request*. Bars stored
before a split and bars fetched after it are on different bases, and a 4:1 split would show as a
-75% "return" forever. The bar loader (`assets.bar_loader`) therefore compares, on every run,
bars it receives again with the stored ones (`compare`):

- equal (within `PRICE_TOLERANCE`): nothing to do;
- every price divided by one ratio and every volume multiplied by it: a **split** of that
  ratio (snapped to a small fraction: 4, 3/2, 1/10...). The stored history of the instrument
  (that bar size) is **rescaled in place** (`restate_split`), and the event is recorded in the
  ``corporate_actions`` dataset (`storage.datasets.CORPORATE_ACTIONS`, a view of `connect()`);
- anything else: a **revision** of the data; the sessions that differ are returned for the
  loader to fetch again and report.

Rescale, not re-fetch: the new basis is the old one divided by the ratio, so rescaling is exact
(prices ``round(p / ratio, 10)``, volumes ``rint(v * ratio)``: what the gateway serves, to the
last digit it serves) and costs no request, where re-fetching years of one-minute bars costs one
request per 1000 bars per instrument under the gateway's pacing. The compared bars prove the
ratio: a ratio that does not map every compared bar onto the re-fetched one is not a split.

As traded: the stored bars of a session are on the basis of the latest recorded split, so the
price at which a bar traded is ``price * product(ratio of the splits with effective_date >
session_date)`` and its volume ``volume / product(...)``, per (conid, bar_size): the
``bars_as_traded`` view of `ib_pipeline.warehouse` computes it.

The effective date is not in the data (every answer is on the new basis): it is taken as the
first session of the instrument after the later of the compared session and the exchange-local
date when the compared partition was written (the split was not effective then, or the bars
would have been served adjusted already). Loaded once a session (the schedule), that is exact.

What it must never do: call the API (the loader fetches), or change a row it did not compare
its basis for.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.calendars import TradingHours, calendar_for
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.storage.datasets import CORPORATE_ACTIONS_SCHEMA
from ib_pipeline.storage.store import Store

PRICE_TOLERANCE = 1e-4
"""Relative difference under which a stored and a re-fetched price are the same (a gateway
that rounds adjusted prices to 4 decimals stays inside it for prices above 1)."""

VOLUME_TOLERANCE = 1e-3
"""Relative difference under which two volumes are the same (plus one share for rounding)."""

MAX_DENOMINATOR = 1000
"""Split ratios are snapped to a fraction with at most this denominator (3/2, 1/10, 1/1000)."""

SPLIT = "split"
RESCALED = "rescaled"
_PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Comparison:
    """What comparing stored bars of one instrument with the same bars fetched again found.

    ``matched``: bars present in both. ``ratio``: a clean split (new shares per old), or None.
    ``revised_sessions``: sessions whose bars differ otherwise (a data revision).
    ``compared_session``: the latest session compared (None: nothing matched)."""

    conid: int
    matched: int = 0
    ratio: float | None = None
    revised_sessions: tuple[date, ...] = ()
    compared_session: date | None = None

    @property
    def same(self) -> bool:
        return self.matched > 0 and self.ratio is None and not self.revised_sessions


def _values(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    return np.asarray(table.column(name).to_numpy(), dtype=np.float64)


def compare(conid: int, stored: pa.Table, fetched: pa.Table) -> Comparison:
    """Compare ``stored`` bars (stored schema, with ``session_date``) of ``conid`` with
    ``fetched`` (`HISTORY_BARS`) on their common timestamps (module doc)."""
    stored = stored.filter(pc.equal(stored.column("conid"), conid))
    fetched = fetched.filter(pc.equal(fetched.column("conid"), conid))
    joined = stored.select(["ts", "session_date", *_PRICES, "volume"]).join(
        fetched.select(["ts", *_PRICES, "volume"]), "ts", right_suffix="_new", join_type="inner"
    )
    if joined.num_rows == 0:
        return Comparison(conid)
    joined = joined.sort_by("ts")
    sessions = np.asarray(joined.column("session_date").to_pylist(), dtype=object)
    last = max(sessions)
    old = np.stack([_values(joined, n) for n in _PRICES])
    new = np.stack([_values(joined, f"{n}_new") for n in _PRICES])
    old_volume, new_volume = _values(joined, "volume"), _values(joined, "volume_new")
    usable = np.isfinite(old).all(0) & np.isfinite(new).all(0) & (new > 0).all(0) & (old > 0).all(0)

    def fits(ratio: float) -> npt.NDArray[np.bool_]:
        prices = (np.abs(old / ratio - new) <= PRICE_TOLERANCE * np.abs(new)).all(0)
        expected = old_volume * ratio
        volumes = np.abs(new_volume - expected) <= VOLUME_TOLERANCE * np.abs(expected) + 1.0
        ok: npt.NDArray[np.bool_] = usable & prices & volumes
        return ok

    n = joined.num_rows
    if fits(1.0).all():
        return Comparison(conid, n, compared_session=last)
    ratio: float | None = None
    if usable.any():
        raw = float(np.median((old / new)[:, usable]))
        if np.isfinite(raw) and raw > 0:
            snapped = float(Fraction(raw).limit_denominator(MAX_DENOMINATOR))
            if snapped > 0 and abs(snapped - 1.0) > PRICE_TOLERANCE and fits(snapped).all():
                ratio = snapped
    if ratio is not None:
        return Comparison(conid, n, ratio=ratio, compared_session=last)
    differing = sorted(set(sessions[~fits(1.0)].tolist()))
    return Comparison(conid, n, revised_sessions=tuple(differing), compared_session=last)


def rescale(table: pa.Table, ratio: float) -> pa.Table:
    """``table``'s bars on the basis after a split of ``ratio``: prices divided (rounded to 10
    decimals), volumes multiplied (rounded to whole units)."""
    for name in _PRICES:
        values = np.round(_values(table, name) / ratio, 10)
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    volume = np.rint(_values(table, "volume") * ratio)
    return table.set_column(table.schema.get_field_index("volume"), "volume", pa.array(volume))


def restate_split(
    store: Store,
    conid: int,
    bar_size: str,
    ratio: float,
    *,
    exclude: Collection[str],
    hours: Mapping[int, TradingHours],
    outside_rth: bool,
    run_id: str,
    source: Mapping[str, Any],
) -> tuple[int, int]:
    """Rescale every stored bar of ``conid`` and ``bar_size`` (partitions in ``exclude`` aside:
    the run replaces them) by a split of ``ratio``; each partition is merged back through the
    store (validated, written atomically, manifest updated). Returns (rows, partitions)."""
    prefix = f"bar_size={bar_size}/"
    rows = partitions = 0
    for manifest in store.manifests("bars"):
        if not manifest.partition.startswith(prefix) or manifest.partition in exclude:
            continue
        if manifest.conids and conid not in manifest.conids:
            continue
        table = store.read("bars", manifest.partition)
        mine = table.filter(pc.equal(table.column("conid"), conid))
        if mine.num_rows == 0:
            continue
        restated = rescale(mine.select(HISTORY_BARS.names).cast(HISTORY_BARS), ratio)
        store.write(
            "bars",
            restated,
            source=dict(source),
            run_id=run_id,
            hours=hours,
            outside_rth=outside_rth,
            mode="merge",
        )
        rows += int(mine.num_rows)
        partitions += 1
    return rows, partitions


def effective_date(
    hours: TradingHours, compared_session: date, written_at: datetime | None, today: date
) -> date:
    """The first session after the compared one and after the exchange-local date the compared
    bars were written (module doc); ``today`` when the calendar has none up to it."""
    floor = compared_session
    if written_at is not None:
        floor = max(floor, written_at.astimezone(ZoneInfo(hours.timezone)).date())
    cal = calendar_for(hours)
    later = [d for d in cal.session_dates(floor, max(floor, today)) if d > floor]
    return later[0] if later else today


def action_row(
    *,
    conid: int,
    bar_size: str,
    effective: date,
    ratio: float,
    compared_session: date,
    detected_at: datetime,
    rows_restated: int,
    partitions_restated: int,
    run_id: str,
) -> pa.Table:
    """One ``corporate_actions`` row for a split restated by rescaling."""
    return pa.Table.from_pylist(
        [
            {
                "conid": conid,
                "bar_size": bar_size,
                "action": SPLIT,
                "effective_date": effective,
                "ratio": ratio,
                "compared_session": compared_session,
                "detected_at": detected_at,
                "restated": RESCALED,
                "rows_restated": rows_restated,
                "partitions_restated": partitions_restated,
                "run_id": run_id,
            }
        ],
        schema=CORPORATE_ACTIONS_SCHEMA,
    )
