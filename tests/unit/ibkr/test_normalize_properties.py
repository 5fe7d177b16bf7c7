"""Property-based tests of the normalisers: generated payloads in the gateway's shapes.

Two promises are checked: well-formed payloads (including bad-but-valid numbers such as NaN,
Infinity, negative volumes) come out value for value in the schema's units; malformed payloads
(wrong types, missing keys, unparseable strings) raise InvalidPayloadError naming the field.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr import parsing as p
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.tables import SCHEMAS

FAST = settings(max_examples=60, deadline=None)

any_float = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
epoch_ms = st.integers(min_value=0, max_value=4_102_444_800_000)


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


def roundtrip(payload: Any) -> Any:
    """What the client decodes: the gateway's JSON, NaN/Infinity literals included."""
    return json.loads(json.dumps(payload, allow_nan=True))


bar = st.fixed_dictionaries(
    {"t": epoch_ms, "o": any_float, "h": any_float, "l": any_float, "c": any_float, "v": any_float}
)


@FAST
@given(st.lists(bar, max_size=30), st.sampled_from([1, 100]), st.integers(1, 2**40))
def test_history_bars_pass_values_through(bars: list[dict[str, Any]], lot: int, conid: int) -> None:
    payload = roundtrip({"symbol": "X", "data": bars, "points": max(len(bars) - 1, 0)})
    table = normalize.history_bars(payload, conid=conid, bar_size="5min", lot_size=lot)
    assert table.schema == SCHEMAS["history_bars"]
    assert table.num_rows == len(bars)
    assert table.column("ts").cast(pa.int64()).to_pylist() == [b["t"] for b in bars]
    for column, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
        assert all(
            same(x, b[key]) for x, b in zip(table.column(column).to_pylist(), bars, strict=True)
        )
    assert all(
        same(x, b["v"] * lot) for x, b in zip(table.column("volume").to_pylist(), bars, strict=True)
    )


wrong_type = st.one_of(
    st.booleans(),
    st.text(alphabet="abcxyz", min_size=1),
    st.lists(st.integers(), max_size=2),
    st.none(),
)


@FAST
@given(st.lists(bar, min_size=1, max_size=10), st.data())
def test_history_bars_reject_malformed_bars(
    bars: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(bars) - 1))
    key = data.draw(st.sampled_from(["t", "o", "h", "l", "c", "v"]))
    broken = [dict(b) for b in bars]
    if data.draw(st.booleans()):
        del broken[index][key]
        expected = f"missing required key '{key}'"
    else:
        broken[index][key] = data.draw(wrong_type)
        expected = f"data[{index}].{key}"
    with pytest.raises(InvalidPayloadError) as info:
        normalize.history_bars({"data": broken}, conid=1, bar_size="1d", lot_size=1)
    assert expected in str(info.value)


def price_text(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


@FAST
@given(
    conid=st.integers(1, 2**40),
    last=st.floats(0.01, 99_999, allow_nan=False),
    prefix=st.sampled_from(["", "C", "H"]),
    volume=st.integers(0, 9_999_999),
    size=st.integers(0, 999_999),
    updated=epoch_ms,
    named=st.booleans(),
)
def test_snapshot_strings_are_parsed(
    *, conid: int, last: float, prefix: str, volume: int, size: int, updated: int, named: bool
) -> None:
    text = price_text(last, 2)
    entry: dict[str, Any]
    if named:
        entry = {"conid": conid, "_updated": updated, "LastPrice": prefix + text}
        entry |= {"BidPrice": text, "AskPrice": text, "Volume": str(volume)}
    else:
        entry = {"conid": str(conid), "conidEx": str(conid), "_updated": updated}
        entry |= {"31": prefix + text, "84": text, "86": text, "88": f"{size:,}"}
        entry |= {"87": f"{volume / 1000:.1f}K", "7762": str(volume), "82": "+1.5", "83": "-0.25%"}
    (row,) = normalize.snapshot_quotes([entry], lot_size=100).to_pylist()
    assert row["conid"] == conid
    assert row["last"] == pytest.approx(float(text))
    assert row["last_is_close"] is (prefix == "C")
    assert row["halted"] is (prefix == "H")
    assert row["volume"] == pytest.approx(volume)  # shares; 7762 wins over the rounded 87
    assert row["updated"] == p.to_datetime(updated)
    if not named:
        assert row["bid_size"] == size * 100
        assert row["change"] == 1.5
        assert row["change_pct"] == -0.25


@FAST
@given(
    st.floats(0.1, 999.9, allow_nan=False),
    st.sampled_from([("K", 1e3), ("M", 1e6), ("B", 1e9)]),
)
def test_abbreviated_volumes(base: float, suffix: tuple[str, float]) -> None:
    text = f"{base:.1f}{suffix[0]}"
    assert p.abbreviated(text, "87") == pytest.approx(float(f"{base:.1f}") * suffix[1])


@FAST
@given(st.text(max_size=12))
def test_number_never_guesses(text: str) -> None:
    """Any string either parses to the number it spells or raises naming the field."""
    try:
        value = p.optional_number(text, "field_x")
    except InvalidPayloadError as error:
        assert "field_x" in str(error)
        return
    if value is None:
        assert text.strip() == ""
        return
    cleaned = text.strip().replace(",", "").lower()
    assert same(value, float(cleaned))


@FAST
@given(st.sampled_from(["31", "84", "86", "85", "88", "7762", "70"]), wrong_type)
def test_snapshot_rejects_wrong_types(key: str, value: Any) -> None:
    if value is None:  # null means "absent" for optional fields; use another wrong type
        value = {"nested": 1}
    entry = {"conid": 1, "_updated": 1, key: value}
    with pytest.raises(InvalidPayloadError, match=rf"snapshot\[0\]\.{key}"):
        normalize.snapshot_quotes([entry], lot_size=1)


position = st.fixed_dictionaries(
    {
        "acctId": st.just("DU1"),
        "conid": st.one_of(st.integers(1, 2**40), st.integers(1, 2**40).map(str)),
        "position": st.one_of(finite, finite.map(lambda x: f"{x:.4f}")),
        "mktPrice": any_float,
        "currency": st.sampled_from(["USD", "EUR", None]),
        "strike": st.one_of(st.just(0.0), st.just("0")),
    }
)


@FAST
@given(st.lists(position, max_size=20))
def test_positions_accept_type_drift(entries: list[dict[str, Any]]) -> None:
    as_of = datetime(2024, 11, 26, 18, tzinfo=UTC)
    table = normalize.positions(roundtrip(entries), account="DU1", as_of=as_of)
    assert table.num_rows == len(entries)
    assert table.column("conid").to_pylist() == [int(e["conid"]) for e in entries]
    assert all(
        same(x, float(e["position"]))
        for x, e in zip(table.column("position").to_pylist(), entries, strict=True)
    )


def expected_amount(amount: float | None, value: str | None) -> float | None:
    """The amount as sent, or the number of a numeric string value when the amount is 0/null."""
    if amount not in (None, 0.0) or value is None:
        return amount
    try:
        number = p.number(value, "value")
    except InvalidPayloadError:
        return amount
    return number if math.isfinite(number) else amount


def test_summary_numbers_sent_as_text_are_numbers() -> None:
    stamp = 1732644000000
    payload = {
        "cushion": {"amount": 0, "value": "0.832550", "isNull": False, "timestamp": stamp},
        "accountready": {"amount": 0, "value": "true", "isNull": False, "timestamp": stamp},
        "netliquidation": {"amount": 1250.5, "currency": "USD", "value": None, "isNull": False},
        "leverage-s": {"amount": 0.0, "value": "1,234.5", "isNull": False},
    }
    rows = {
        r["key"]: r
        for r in normalize.account_summary(
            payload, account="DU1", as_of=datetime(2024, 1, 2, tzinfo=UTC)
        ).to_pylist()
    }
    assert (rows["cushion"]["amount"], rows["cushion"]["value"]) == (0.83255, "0.832550")
    assert (rows["accountready"]["amount"], rows["accountready"]["value"]) == (0.0, "true")
    assert rows["netliquidation"]["amount"] == 1250.5
    assert rows["leverage-s"]["amount"] == 1234.5


@FAST
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.fixed_dictionaries({
    "amount": st.one_of(finite, st.none()), "currency": st.sampled_from(["USD", None]),
    "isNull": st.booleans(), "severity": st.integers(0, 3), "timestamp": epoch_ms,
    "value": st.one_of(st.none(), st.text(max_size=8))}), max_size=15))  # fmt: skip
def test_summary_rows_match_keys(payload: dict[str, Any]) -> None:
    table = normalize.account_summary(
        payload, account="DU1", as_of=datetime(2024, 1, 2, tzinfo=UTC)
    )
    assert sorted(table.column("key").to_pylist()) == sorted(payload)
    rows = {r["key"]: r for r in table.to_pylist()}
    for key, entry in payload.items():
        assert same(rows[key]["amount"], expected_amount(entry["amount"], entry["value"]))
        assert rows[key]["is_null"] is entry["isNull"]
        assert rows[key]["value"] == entry["value"]


def test_lot_size_is_validated() -> None:
    for bad in (0, -100, math.nan, math.inf, True, "100"):
        with pytest.raises(ValueError, match="lot_size"):
            normalize.history_bars({"data": []}, conid=1, bar_size="1d", lot_size=bad)  # type: ignore[arg-type]


def test_no_data_is_an_empty_table_other_errors_raise() -> None:
    empty = normalize.history_bars({"error": "No data."}, conid=1, bar_size="1d", lot_size=1)
    assert empty.num_rows == 0 and empty.schema == SCHEMAS["history_bars"]
    with pytest.raises(InvalidPayloadError, match="missing key 'data'"):
        normalize.history_bars(
            {"error": "Chart data unavailable"}, conid=1, bar_size="1d", lot_size=1
        )
    with pytest.raises(ValueError, match="unknown bar size"):
        normalize.history_bars({"data": []}, conid=1, bar_size="7min", lot_size=1)


def test_snapshot_without_updated_needs_a_fallback() -> None:
    entry = {"conid": 5, "31": "1.5"}
    with pytest.raises(InvalidPayloadError, match=r"conid 5.*_updated"):
        normalize.snapshot_quotes([entry], lot_size=1)
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    (row,) = normalize.snapshot_quotes([entry], lot_size=1, fallback_updated=when).to_pylist()
    assert row["updated"] == when


def test_bad_market_data_passes_through_unchanged() -> None:
    """high < low and negative volume are data problems for the contracts, not parse errors."""
    payload = roundtrip({"data": [{"t": 1, "o": 5.0, "h": 1.0, "l": 9.0, "c": math.nan, "v": -3}]})
    (row,) = normalize.history_bars(payload, conid=1, bar_size="1min", lot_size=100).to_pylist()
    assert (row["high"], row["low"], row["volume"]) == (1.0, 9.0, -300.0)
    assert math.isnan(row["close"])
