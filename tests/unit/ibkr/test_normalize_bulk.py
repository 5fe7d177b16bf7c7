"""The fast paths of the history normaliser give exactly what the precise paths give.

- `parsing.scaled_array` (vectorised lots -> shares) equals `parsing.scaled` (the Decimal
  reference) bit for bit: on values with up to 4 (and 6) decimals, and on any float at all.
- `normalize.history_bars` converts well-formed answers in bulk; every answer the bulk check
  refuses goes row by row and still raises the error naming the bar and key, or gives the same
  table (numeric strings, times beyond 2**53).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr import parsing as p
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.tables import HISTORY_BARS

FAST = settings(max_examples=80, deadline=None)
LOTS = st.sampled_from([100, 1, 10, 1000, 25, 0.5, 2.5, 0.01, 100.0])


def bits(values: npt.NDArray[np.float64]) -> list[int]:
    """The IEEE bit patterns (NaN payloads aside), so that -0.0 != 0.0 and NaN == NaN."""
    cleaned = np.where(np.isnan(values), np.nan, values)
    return [int(x) for x in cleaned.view(np.uint64)]


def reference(values: list[float], lot: float) -> npt.NDArray[np.float64]:
    return np.array([p.scaled(v, lot) for v in values], dtype=np.float64)


def decimals(places: int) -> st.SearchStrategy[float]:
    """Numbers with at most ``places`` decimals, as the gateway's JSON spells them."""
    return st.integers(-(10**15), 10**15).map(lambda n: float(f"{n / 10**places:.{places}f}"))


@FAST
@given(st.lists(st.integers(0, 4).flatmap(decimals), max_size=40), LOTS)
def test_scaled_array_equals_decimal_reference_up_to_4_decimals(
    values: list[float], lot: float
) -> None:
    assert bits(p.scaled_array(values, lot)) == bits(reference(values, lot))


@FAST
@given(st.lists(st.integers(5, 6).flatmap(decimals), max_size=40), LOTS)
def test_scaled_array_equals_decimal_reference_up_to_6_decimals(
    values: list[float], lot: float
) -> None:
    assert bits(p.scaled_array(values, lot)) == bits(reference(values, lot))


@FAST
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40), LOTS)
def test_scaled_array_equals_decimal_reference_on_any_float(
    values: list[float], lot: float
) -> None:
    assert bits(p.scaled_array(values, lot)) == bits(reference(values, lot))


def test_scaled_array_rounds_as_decimal_where_floats_do_not() -> None:
    lots = [0.29, 1.1, 2029077.77, 0.57, -0.0, math.inf, math.nan]
    assert 0.29 * 100 != 29.0 and 1.1 * 100 != 110.0  # the float products are off by an ulp
    shares = p.scaled_array(lots, 100)
    assert shares[:5].tolist() == [29.0, 110.0, 202907777.0, 57.0, 0.0]
    assert math.copysign(1.0, shares[4]) == -1.0
    assert shares[5] == math.inf and math.isnan(shares[6])
    assert p.scaled_array(np.array([]), 100).shape == (0,)


number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.integers(0, 4).flatmap(decimals),
)
epoch = st.one_of(st.integers(0, 4_102_444_800_000), st.integers(-(2**53) + 1, 2**53 - 1))
bar = st.fixed_dictionaries(
    {"t": epoch, "o": number, "h": number, "l": number, "c": number, "v": number},
    optional={"x": st.text(max_size=3)},  # keys the normaliser does not read are ignored
)


def columns_equal(a: Any, b: Any) -> None:
    assert a[0].dtype == b[0].dtype == np.int64 and a[0].tolist() == b[0].tolist()
    for x, y in zip(a[1:], b[1:], strict=True):
        assert x.dtype == y.dtype == np.float64 and bits(x) == bits(y)


@FAST
@given(st.lists(bar, max_size=30))
def test_bulk_columns_equal_the_row_by_row_reader(bars: list[dict[str, Any]]) -> None:
    bulk = normalize._bulk_bars(bars)
    assert bulk is not None  # well-formed: never sent row by row
    columns_equal(bulk, normalize._bars_by_row(bars)[0])


@FAST
@given(st.lists(bar, min_size=1, max_size=30), LOTS)
def test_history_bars_match_a_row_by_row_build(bars: list[dict[str, Any]], lot: float) -> None:
    table = normalize.history_bars({"data": bars}, conid=7, bar_size="1h", lot_size=lot)
    assert table.num_rows == len(bars)
    assert table.column("ts").cast("int64").to_pylist() == [b["t"] for b in bars]
    for column, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
        assert bits(table.column(column).to_numpy()) == bits(
            np.array([float(b[key]) for b in bars])
        )
    volumes = [p.scaled(float(b["v"]), lot) for b in bars]
    assert bits(table.column("volume").to_numpy()) == bits(np.array(volumes))
    assert set(table.column("conid").to_pylist()) == {7}
    assert set(table.column("bar_size").to_pylist()) == {"1h"}


GOOD = {"t": 1732631400000, "o": 1.5, "h": 2, "l": 1.25, "c": 1.75, "v": 0.29}


class Row(dict[str, Any]):
    """A dict subclass: not what a JSON decoder makes, so not for the bulk path."""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": True}, "data[1].v: expected a number, got True"),
        ({"o": "abc"}, "data[1].o: expected a number, got 'abc'"),
        ({"h": None}, "data[1].h: expected a number, got None"),
        ({"l": [1]}, "data[1].l: expected a number, got [1]"),
        ({"t": 1.5}, "data[1].t: expected an integer, got 1.5"),
        ({"t": math.nan}, "data[1].t: expected an integer, got nan"),
        ({"t": False}, "data[1].t: expected an integer, got False"),
        ({"t": 2**63}, "data[1].t: expected epoch milliseconds within 64 bits"),
        ({"c": 10**400}, "data[1].c: expected a number within the float range"),
    ],
)
def test_malformed_bars_fall_back_and_raise_naming_the_value(
    change: dict[str, Any], message: str
) -> None:
    bars = [dict(GOOD), {**GOOD, **change}, dict(GOOD)]
    assert normalize._bulk_bars(bars) is None
    with pytest.raises(InvalidPayloadError) as info:
        normalize.history_bars({"data": bars}, conid=1, bar_size="1d", lot_size=100)
    assert message in str(info.value)


def test_missing_keys_and_non_objects_fall_back_and_raise() -> None:
    missing = [dict(GOOD), {k: v for k, v in GOOD.items() if k != "v"}]
    assert normalize._bulk_bars(missing) is None
    with pytest.raises(InvalidPayloadError, match=r"history data\[1\]: missing required key 'v'"):
        normalize.history_bars({"data": missing}, conid=1, bar_size="1d", lot_size=1)
    for row in ([1, 2, 3, 4, 5, 6], "bar", None):
        assert normalize._bulk_bars([GOOD, row]) is None
        with pytest.raises(InvalidPayloadError, match=r"history data\[1\]: expected a JSON object"):
            normalize.history_bars({"data": [GOOD, row]}, conid=1, bar_size="1d", lot_size=1)


def test_what_only_the_row_reader_accepts_gives_the_same_table() -> None:
    """Numeric strings and dict subclasses go row by row; an integral float time and a time
    beyond 2**53 are read exactly: all give the values of the plain spelling."""
    plain = normalize.history_bars({"data": [GOOD]}, conid=1, bar_size="1d", lot_size=100)
    assert plain.column("volume").to_pylist() == [29.0]  # 0.29 lots: not 28.999999999999996
    for variant in ({**GOOD, "o": "1.5", "v": "0.29"}, Row(GOOD)):
        assert normalize._bulk_bars([variant]) is None
        table = normalize.history_bars({"data": [variant]}, conid=1, bar_size="1d", lot_size=100)
        assert table.equals(plain)
    as_float = {**GOOD, "t": float(GOOD["t"])}
    table = normalize.history_bars({"data": [as_float]}, conid=1, bar_size="1d", lot_size=100)
    assert table.equals(plain)
    far = normalize.history_bars(
        {"data": [{**GOOD, "t": 2**62 + 1}]}, conid=1, bar_size="1d", lot_size=1
    )
    assert far.column("ts").cast("int64").to_pylist() == [2**62 + 1]  # exact, not via a float


def test_gateway_json_with_nan_literals_takes_the_bulk_path() -> None:
    text = '{"data":[{"t":1,"o":NaN,"h":Infinity,"l":-Infinity,"c":1,"v":-2.5}]}'
    payload = json.loads(text)
    assert normalize._bulk_bars(payload["data"]) is not None
    (row,) = normalize.history_bars(payload, conid=1, bar_size="1min", lot_size=100).to_pylist()
    assert math.isnan(row["open"]) and row["high"] == math.inf and row["low"] == -math.inf
    assert row["volume"] == -250.0  # bad data passes through for the contracts to quarantine


def test_empty_data_gives_an_empty_table_of_the_schema() -> None:
    table = normalize.history_bars({"data": []}, conid=1, bar_size="1d", lot_size=100)
    assert table.num_rows == 0
    assert table.schema == HISTORY_BARS
