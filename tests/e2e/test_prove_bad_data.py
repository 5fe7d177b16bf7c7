"""Bad data from the API, end to end through Dagster against the simulator over HTTP.

The simulator corrupts bars of its history answers, one kind of defect at a time and all at
once (`BadDataSpec`): high below low, negative volume, NaN and infinite prices, a conflicting
duplicate of a timestamp, two bars swapped out of order, a bar moved to a Saturday (outside
every session). For each, against the simulator's own record of what it corrupted in every
answer the loader received (`SimulatorTruth.corrupted_bars` on the raw zone's requests):

- every invalid row lands in the quarantine, with its reason, and none in the clean dataset;
- the valid rows of the same answers are kept: the clean dataset equals the ground truth minus
  exactly the damaged bars;
- the warehouse's duplicate policy holds: a conflicting duplicate sends BOTH rows of its key to
  quarantine (nothing is collapsed), so the clean dataset has no row for that key;
- out-of-order bars are genuine bars: they are sorted on load and stored, nothing fails, and
  the run's metadata counts them (``bars_out_of_order``) so the anomaly leaves a trace;
- the run succeeds (bad rows are data problems, not run failures) and its checks say what
  happened: ``contract`` passes (what was stored is valid), ``quarantine_empty`` fails naming
  the rejected rows, ``complete`` fails naming exactly the bars that are now missing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster_support import Pipeline
from prove_fault_support import (
    BARS_ASSET,
    CONIDS,
    check,
    run_bars,
    stored_bars,
    truth_bars,
    window_ms,
)

from assets.runs import run_assets, summarize_run
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.simulator import Simulator
from ib_pipeline.simulator.bad_data import TEXT_PRICE_VALUE, BadDataSpec, BadKind, UnreadableKind

KEYS = ("2024-11-21", "2024-11-22")
"""Thursday and Friday."""

WEEKEND = ("2024-11-22", "2024-11-25")
"""Friday and Monday: the Saturday a corrupted Friday bar moves to lies inside the backfill's
window (such a run used to fail: the bar belonged to no partition of the run)."""

SYMBOL_OF = {conid: symbol for symbol, conid in CONIDS.items()}

REASON = {
    BadKind.HIGH_BELOW_LOW: "high_ge_low",
    BadKind.NEGATIVE_VOLUME: "volume:greater_than_or_equal_to(0)",
    BadKind.INFINITE_PRICE: "prices_finite",
    BadKind.DUPLICATE_TIMESTAMP: "duplicate_key_conflict",
    BadKind.OUTSIDE_SESSION: "ts_in_session",
}
"""The check each defect must fail (NaN: ``<price>:not_nullable``, see `expected_reason`)."""

PRICE = {"o": "open", "h": "high", "l": "low", "c": "close"}

Key = tuple[int, int]  # (conid, ts epoch ms)


UNREADABLE = {
    UnreadableKind.NULL_CLOSE: "close:null",
    UnreadableKind.MISSING_VOLUME: "volume:missing",
}
"""What the batch source's ``parse_errors`` says of each unreadable value (a text price:
``<price>:unparseable('N/A')``, see `unreadable_reason`)."""


def unreadable_reason(kind: UnreadableKind, field_name: str | None) -> str:
    if kind is UnreadableKind.TEXT_PRICE:
        assert field_name is not None
        return f"{PRICE[field_name]}:unparseable({TEXT_PRICE_VALUE!r})"
    return UNREADABLE[kind]


def expected_reason(kind: BadKind | UnreadableKind, field_name: str | None) -> str:
    if isinstance(kind, UnreadableKind):  # the value is null in a required column
        assert field_name is not None
        return f"{PRICE.get(field_name, 'volume')}:not_nullable"
    if kind is BadKind.NAN_PRICE:
        assert field_name is not None
        return f"{PRICE[field_name]}:not_nullable"
    return REASON[kind]


def minute(ms: int) -> str:
    """How the checks name a bar: ``2024-11-21T15:04Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass
class Damage:
    """What the simulator corrupted in the answers the loader received, and what that means
    for the warehouse."""

    quarantined: Counter[Key] = field(default_factory=Counter)  # rows per key
    reasons: dict[Key, str] = field(default_factory=dict)  # a check each must fail
    missing: set[Key] = field(default_factory=set)  # bars the clean dataset must lack
    unsorted: set[Key] = field(default_factory=set)  # out-of-order bars, stored all the same
    out_of_order: int = 0  # out-of-order bars in all answers (the run's metadata counts them)
    inside_window_elsewhere: int = 0  # bars moved outside every session, within the window
    kinds: set[BadKind | UnreadableKind] = field(default_factory=set)  # met in the window

    def add(self, key: Key, rows: int, reason: str) -> None:
        self.quarantined[key] += rows
        self.reasons[key] = reason


def expected_damage(p: Pipeline, spec: BadDataSpec, keys: tuple[str, str]) -> Damage:
    """Replay the simulator's corruption of every history answer landed in the raw zone.

    Bars of answers outside the backfill's window (the extra session each request asks for)
    are other partitions' business and are not loaded, except a bar moved outside every
    session: it belongs to no partition, so the run that received it quarantines it."""
    damage = Damage()
    for record in RawZone(p.root).records("history"):
        conid = int(record.params["conid"])
        start, end = window_ms(p, SYMBOL_OF[conid], keys)
        for bad in p.sim.truth.corrupted_bars(record.params, spec):
            in_window = start <= bad.clean_ts_ms < end
            if in_window:
                damage.kinds.add(bad.kind)
            if bad.kind is BadKind.UNSORTED_TIMESTAMP:
                damage.out_of_order += 1
                if in_window:
                    damage.unsorted.add((conid, bad.ts_ms))
                continue
            reason = expected_reason(bad.kind, bad.field)
            if bad.kind is BadKind.OUTSIDE_SESSION:
                damage.add((conid, bad.ts_ms), 1, reason)
                damage.inside_window_elsewhere += start <= bad.ts_ms < end
            if not in_window:
                continue
            damage.missing.add((conid, bad.clean_ts_ms))
            if bad.kind is BadKind.DUPLICATE_TIMESTAMP:
                damage.add((conid, bad.ts_ms), 2, reason)  # the genuine bar and its rival
            elif bad.kind is not BadKind.OUTSIDE_SESSION:
                damage.add((conid, bad.ts_ms), 1, reason)
    return damage


def quarantined_keys(p: Pipeline) -> list[tuple[Key, str]]:
    """(key, failed checks) of every quarantined bar."""
    records = p.store().quarantine("bars").to_pylist()
    found = []
    for record in records:
        key = json.loads(record["key_json"])
        ts = datetime.fromisoformat(key["ts"].replace("Z", "+00:00"))
        found.append(((int(key["conid"]), round(ts.timestamp() * 1000)), record["failed_checks"]))
    return found


def assert_clean_is_truth_minus(p: Pipeline, keys: tuple[str, str], missing: set[Key]) -> int:
    """Each instrument's clean bars equal the truth without exactly the ``missing`` bars."""
    total = 0
    for symbol, conid in CONIDS.items():
        truth = truth_bars(p, symbol, keys)
        lost = pa.array(sorted(ts for c, ts in missing if c == conid), pa.int64())
        keep = pc.invert(pc.is_in(truth["ts"].cast(pa.int64()), value_set=lost))
        expected = truth.filter(keep)
        stored = stored_bars(p, conid)
        assert stored.equals(expected), (
            f"{symbol}: {stored.num_rows} bars stored, {expected.num_rows} expected "
            f"({truth.num_rows} served clean, {len(lost)} damaged)"
        )
        total += int(stored.num_rows)
    return total


CASES = [
    pytest.param(BadKind.HIGH_BELOW_LOW, KEYS, id="high_below_low"),
    pytest.param(BadKind.NEGATIVE_VOLUME, KEYS, id="negative_volume"),
    pytest.param(BadKind.NAN_PRICE, KEYS, id="nan_price"),
    pytest.param(BadKind.INFINITE_PRICE, KEYS, id="infinite_price"),
    pytest.param(BadKind.DUPLICATE_TIMESTAMP, KEYS, id="duplicate_timestamp"),
    pytest.param(BadKind.UNSORTED_TIMESTAMP, KEYS, id="unsorted_timestamp"),
    pytest.param(BadKind.OUTSIDE_SESSION, KEYS, id="outside_session"),
    pytest.param(BadKind.OUTSIDE_SESSION, WEEKEND, id="outside_session_over_a_weekend"),
    pytest.param(None, WEEKEND, id="every_kind_at_once"),
]


@pytest.mark.parametrize(("kind", "keys"), CASES)
def test_bad_bars_are_quarantined_with_their_reason(
    kind: BadKind | None,
    keys: tuple[str, str],
    sim: Simulator,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    counts = {kind: 2} if kind is not None else {each: 1 for each in BadKind}
    spec = BadDataSpec(counts=counts, seed=5)
    p = make_pipeline(sim, bar_sizes=["1min"])
    sim.set_bad_data(spec)
    summary = run_bars(p, keys)
    assert summary.success, summary.errors  # bad rows are data problems, not run failures

    damage = expected_damage(p, spec, keys)
    assert damage.kinds == set(counts), "the simulator did not corrupt every kind asked for"
    if kind is BadKind.UNSORTED_TIMESTAMP:
        assert damage.unsorted and not damage.quarantined and not damage.missing
    else:
        assert damage.quarantined and damage.missing, "the simulator corrupted nothing here"
    if keys == WEEKEND:
        assert damage.inside_window_elsewhere, "no bar moved to a Saturday inside the window"

    # Every invalid row is in quarantine with its reason; nothing else is.
    found = quarantined_keys(p)
    assert Counter(key for key, _ in found) == damage.quarantined
    for key, failed in found:
        assert damage.reasons[key] in failed.split("; "), (key, failed)

    # The valid rows of the same answers are kept; no damaged bar is in the clean dataset.
    stored = assert_clean_is_truth_minus(p, keys, damage.missing)
    meta = summary.materialized[BARS_ASSET]
    assert meta["quarantined_rows"] == sum(damage.quarantined.values())
    assert meta["duplicates_collapsed"] == 0  # conflicting duplicates are not collapsed
    assert meta["bars_out_of_order"] == damage.out_of_order  # kept, sorted, and counted

    # The checks tell: the stored rows are valid; the rejected and missing rows are named.
    contract = check(summary, BARS_ASSET, "contract")
    assert contract.passed and contract.metadata["rows_violating"] == 0
    assert contract.metadata["rows_checked"] == stored
    quarantine = check(summary, BARS_ASSET, "quarantine_empty")
    complete = check(summary, BARS_ASSET, "complete")
    assert quarantine.passed is not bool(damage.quarantined)
    assert quarantine.metadata["quarantined_rows"] == sum(damage.quarantined.values())
    assert complete.passed is not bool(damage.missing)
    named = {(g["conid"], t) for g in complete.metadata["gaps"] for t in g["missing_ts"]}
    assert named == {(conid, minute(ts)) for conid, ts in damage.missing}
    assert complete.metadata["missing_bars"] == len(damage.missing)
    assert complete.metadata["extra_bars"] == 0
    if damage.quarantined:
        listed = quarantine.metadata["rejected_rows"]
        for conid, ts in damage.quarantined:
            assert str(conid) in listed and minute(ts)[:-1] in listed, (conid, minute(ts))
        reasons = {REASON[each] for each in counts if each in REASON}
        assert reasons <= set(quarantine.metadata["reasons"]), quarantine.metadata["reasons"]


@pytest.mark.parametrize("kind", list(UnreadableKind), ids=lambda k: k.value)
def test_an_unreadable_bar_value_costs_its_bar_only(
    kind: UnreadableKind, sim: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    """``"c": null``, no ``"v"``, ``"N/A"`` as a price: that bar is quarantined with the reason
    and what the gateway sent; every other bar of the same answers is stored (it used to fail
    the whole run and keep no bar of any instrument)."""
    spec = BadDataSpec(unreadable={kind: 2}, seed=5)
    p = make_pipeline(sim, bar_sizes=["1min"])
    sim.set_bad_data(spec)
    summary = run_bars(p, KEYS)
    assert summary.success, summary.errors

    damage = expected_damage(p, spec, KEYS)
    assert damage.kinds == {kind} and damage.quarantined
    found = quarantined_keys(p)
    assert Counter(key for key, _ in found) == damage.quarantined
    for key, failed in found:
        assert damage.reasons[key] in failed.split("; "), (key, failed)
    assert_clean_is_truth_minus(p, KEYS, damage.missing)

    # The quarantine record names what was unreadable, with the value the gateway sent.
    said: dict[Key, list[str]] = {}
    for record in p.store().quarantine("bars").to_pylist():
        key = json.loads(record["key_json"])
        ts = datetime.fromisoformat(key["ts"].replace("Z", "+00:00"))
        errors = json.loads(record["source"]).get("parse_errors", [])
        said[(int(key["conid"]), round(ts.timestamp() * 1000))] = errors
    for record in RawZone(p.root).records("history"):
        conid = int(record.params["conid"])
        for bad in p.sim.truth.corrupted_bars(record.params, spec):
            if (conid, bad.ts_ms) in said:
                stamp = datetime.fromtimestamp(bad.ts_ms / 1000, UTC)
                text = f"{stamp:%Y-%m-%dT%H:%M:%S}.000Z: {unreadable_reason(kind, bad.field)}"
                assert text in said[(conid, bad.ts_ms)], said[(conid, bad.ts_ms)]
    assert check(summary, BARS_ASSET, "contract").passed
    assert not check(summary, BARS_ASSET, "quarantine_empty").passed


QUOTE_CASES = [
    pytest.param({"31": "N/A"}, "last:unparseable('N/A')", id="last_NA"),
    pytest.param({"84": "-"}, "bid:unparseable('-')", id="bid_dash"),
    pytest.param({"7295": "1.2K"}, "open:unparseable('1.2K')", id="open_abbreviated"),
]


@pytest.mark.parametrize(("values", "reason"), QUOTE_CASES)
def test_an_unreadable_quote_value_costs_its_instrument_only(
    values: dict[str, object],
    reason: str,
    sim: Simulator,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """One unparseable price of one instrument used to fail the snapshot of every instrument:
    now that instrument's row is quarantined with the reason and the value, the others stored."""
    p = make_pipeline(sim)
    bad = CONIDS["AAPL"]
    sim.set_quote_values({bad: values})
    summary = summarize_run(run_assets(p.defs, ["contracts", "quotes"], raise_on_error=False))
    assert summary.success, summary.errors

    quotes = p.store().read("quotes")
    assert sorted(quotes["conid"].to_pylist()) == sorted(c for c in CONIDS.values() if c != bad)
    assert quotes["parse_errors"].null_count == quotes.num_rows
    for row in quotes.to_pylist():
        assert row["last"] == sim.truth.quote(row["conid"])["last"]
    (record,) = p.store().quarantine("quotes").to_pylist()
    assert json.loads(record["key_json"])["conid"] == bad
    assert reason in record["failed_checks"].split("; ")
    assert json.loads(record["row_json"])["parse_errors"] == reason
    assert summary.materialized["quotes"]["quarantined_rows"] == 1
    assert check(summary, "quotes", "contract").passed
    assert not check(summary, "quotes", "quarantine_empty").passed
