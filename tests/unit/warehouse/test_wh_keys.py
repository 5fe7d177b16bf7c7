"""Sorted-key duplicate detection and the newer-wins merge."""

from __future__ import annotations

import itertools
import math

import pyarrow as pa

from ib_pipeline.storage.keys import (
    is_sorted,
    merge,
    neighbour_equal,
    split_duplicates,
    value_codes,
)


def table(rows: list[tuple[int, int, float | None]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"k1": a, "k2": b, "v": v} for a, b, v in rows],
        schema=pa.schema([("k1", pa.int64()), ("k2", pa.int64()), ("v", pa.float64())]),
    )


def test_neighbour_equal_treats_nan_and_null_as_equal_to_themselves() -> None:
    values = pa.array([1.0, 1.0, math.nan, math.nan, None, None, 2.0], pa.float64())
    assert neighbour_equal(values).tolist() == [True, False, True, False, True, False]


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def test_neighbour_equal_and_is_sorted_agree_across_column_kinds() -> None:
    """Plain columns (numbers, times without nulls) are compared in NumPy, the rest with
    Arrow's kernels (strings, dictionaries, columns with nulls): both give the same answers,
    also in several chunks and for a string column holding one value throughout."""
    cases = [
        pa.chunked_array([[3, 3, 1], [1, 2]], pa.int64()),
        pa.chunked_array([[0.5, math.nan], [math.nan, 0.5, 0.5]], pa.float64()),
        pa.array([5, 5, 6, 6, 4], pa.int64()).cast(pa.timestamp("ms", "UTC")),
        pa.array([19000, 19000, 19001], pa.int32()).cast(pa.date32()),
        pa.chunked_array([["1min", "1min"], ["1min"]]),
        pa.array(["b", "a", "a", "c"]),
        pa.array(["a", "a", "b"]).dictionary_encode(),
    ]
    for column in cases:
        values = column.to_pylist()
        same = [a == b or (_is_nan(a) and _is_nan(b)) for a, b in itertools.pairwise(values)]
        assert neighbour_equal(column).tolist() == same, column
        ordered = all(not a > b for a, b in itertools.pairwise(values))
        assert is_sorted(pa.table({"k": column}), ["k"]) == ordered, column


def test_value_codes_number_values_by_first_appearance_across_runs_and_chunks() -> None:
    codes, values = value_codes(pa.chunked_array([[3, 3, None, 1], [1, 3]], pa.int64()))
    assert values == [3, None, 1]  # a null is a value of its own, never a bad index
    assert codes.tolist() == [0, 0, 1, 2, 2, 0]
    codes, values = value_codes(pa.array(["1min"] * 4))
    assert (codes.tolist(), values) == ([0, 0, 0, 0], ["1min"])
    assert value_codes(pa.array([], pa.string()))[1] == []


def test_is_sorted_is_lexicographic() -> None:
    assert is_sorted(table([(1, 5, 0), (2, 1, 0), (2, 2, 0)]), ["k1", "k2"])
    assert not is_sorted(table([(1, 5, 0), (2, 2, 0), (2, 1, 0)]), ["k1", "k2"])
    assert is_sorted(table([(1, 5, 0), (1, 5, 0)]), ["k1", "k2"])


def test_split_duplicates_policy() -> None:
    rows = [
        (2, 1, 1.0),
        (1, 1, 1.0),
        (1, 1, 1.0),  # exact duplicate: collapses
        (3, 1, 1.0),
        (3, 1, 2.0),  # conflict: both versions rejected
        (3, 1, 1.0),  # exact copy of a conflicting version: collapses first
        (4, 1, math.nan),
        (4, 1, math.nan),  # NaN rows equal: collapse
    ]
    split = split_duplicates(table(rows), ["k1", "k2"])
    assert split.collapsed == 3
    assert split.unique.column("k1").to_pylist() == [1, 2, 4]
    assert sorted(split.conflicts.column("v").to_pylist()) == [1.0, 2.0]


def test_merge_keeps_the_newest_row_of_each_key_and_sorts() -> None:
    old = table([(1, 1, 1.0), (2, 1, 1.0), (3, 1, 1.0)])
    newer = table([(3, 1, 30.0), (2, 1, 20.0)])
    newest = table([(3, 1, 300.0), (0, 1, 0.5)])
    merged = merge([old, newer, newest], ["k1", "k2"], ["k1", "k2"])
    assert (
        merged.to_pylist()
        == table([(0, 1, 0.5), (1, 1, 1.0), (2, 1, 20.0), (3, 1, 300.0)]).to_pylist()
    )
    assert merge([old, old], ["k1", "k2"], ["k1", "k2"]).equals(old)
