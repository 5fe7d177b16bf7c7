"""Reading numbers and flags out of requests: what is read, and what is left to the caller."""

from __future__ import annotations

import pytest

from ib_pipeline.simulator.params import parse_bool, parse_count, parse_id


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("42", 42), ("007", 7), ("", None), ("-1", None)]
)
def test_parse_count(text: str, expected: int | None) -> None:
    assert parse_count(text) == expected


def test_parse_count_refuses_what_int_would_misread() -> None:
    assert parse_count("²") is None  # str.isdigit() says yes, int() raises
    assert parse_count("1_000") is None  # int() reads 1000
    assert parse_count(" 5") is None  # callers strip first


def test_parse_id_takes_json_integers_and_digit_strings_but_not_bools() -> None:
    assert parse_id(265598) == 265598
    assert parse_id(" 265598 ") == 265598
    assert parse_id(True) is None
    assert parse_id(2.0) is None
    assert parse_id("AAPL") is None
    assert parse_id(None) is None


def test_parse_bool_strict_and_with_yes_no() -> None:
    assert parse_bool(" TRUE ") is True
    assert parse_bool("0") is False
    assert parse_bool("yes") is None  # the history endpoint's outsideRth refuses it
    assert parse_bool("yes", yes_no=True) is True
    assert parse_bool("No", yes_no=True) is False
    assert parse_bool("maybe", yes_no=True) is None
