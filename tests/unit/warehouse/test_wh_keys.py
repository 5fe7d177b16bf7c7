"""Sorted-key duplicate detection and the newer-wins merge."""

from __future__ import annotations

import math

import pyarrow as pa

from ib_pipeline.storage.keys import is_sorted, merge, neighbour_equal, split_duplicates


def table(rows: list[tuple[int, int, float | None]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"k1": a, "k2": b, "v": v} for a, b, v in rows],
        schema=pa.schema([("k1", pa.int64()), ("k2", pa.int64()), ("v", pa.float64())]),
    )


def test_neighbour_equal_treats_nan_and_null_as_equal_to_themselves() -> None:
    values = pa.array([1.0, 1.0, math.nan, math.nan, None, None, 2.0], pa.float64())
    assert neighbour_equal(values).tolist() == [True, False, True, False, True, False]


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
