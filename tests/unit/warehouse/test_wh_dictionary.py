"""The data dictionary (`ib_pipeline.dictionary`) describes every column the warehouse has, the
committed docs/DATA_DICTIONARY.md is what it generates, and its COMMENT ON statements land on
the views of a `connect()` connection (DuckDB keeps comments on view columns)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ib_pipeline import dictionary
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.quarantine import QUARANTINE, QUARANTINE_SCHEMA
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import DATASET_VIEWS, DERIVED_VIEWS, connect


def empty_warehouse(root: Path) -> duckdb.DuckDBPyConnection:
    """`connect()` to a warehouse that holds one contract: every view exists, typed."""
    contracts = pa.Table.from_pylist(
        [{"conid": 265598, "symbol": "AAPL", "sec_type": "STK", "exchanges": "NASDAQ"}],
        schema=CONTRACTS,
    )
    Store(root).write("contracts", contracts, source={"endpoint": "test"}, run_id="test")
    return connect(root)


def view_columns(root: Path) -> dict[str, list[str]]:
    con = empty_warehouse(root)
    rows = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal "
        "AND schema_name = 'main' ORDER BY table_name, column_index"
    ).fetchall()
    found: dict[str, list[str]] = {}
    for view, column in rows:
        found.setdefault(str(view), []).append(str(column))
    return found


def test_the_committed_markdown_is_the_generated_one() -> None:
    committed = dictionary.DOCS_FILE.read_text(encoding="utf-8")
    assert committed == dictionary.render_markdown(), (
        "docs/DATA_DICTIONARY.md is out of date: run .venv/bin/python -m ib_pipeline.dictionary"
    )


def test_every_dataset_and_view_has_an_entry() -> None:
    assert set(dictionary.ENTRIES) == {*DATASET_VIEWS, *DERIVED_VIEWS}


@pytest.mark.parametrize("name", [*DATASETS, QUARANTINE])
def test_every_stored_column_is_described(name: str) -> None:
    schema = QUARANTINE_SCHEMA if name == QUARANTINE else DATASETS[name].schema
    described = dictionary.describe(name)
    missing = [c for c in schema.names if c not in described]
    assert not missing, f"{name}: columns without a description: {missing}"
    assert all(text.strip() for text in described.values())


def test_every_view_column_is_described_and_nothing_else(tmp_path: Path) -> None:
    views = view_columns(tmp_path)  # an empty warehouse: typed empty views, same columns
    assert set(views) == set(dictionary.ENTRIES)
    for name, columns in views.items():
        entry = dictionary.entry(name)
        old = {c for (v, c) in dictionary.RENAMED if v == name}
        undocumented = [c for c in columns if c not in entry.names() and c not in old]
        assert not undocumented, f"{name}: columns without a description: {undocumented}"
        gone = [c for c in entry.names(pending=False) if c not in columns]
        assert not gone, f"{name}: described but not in the view (mark pending?): {gone}"


def test_units_and_meanings_are_stated() -> None:
    assert "START" in dictionary.describe("bars")["ts"]
    assert "exchange" in dictionary.describe("bars")["session_date"]
    assert "UTC date of `as_of`" in dictionary.describe("quotes")["date"]
    assert "shares" in dictionary.describe("bars")["volume"]
    assert "APPROXIMATION" in dictionary.describe("daily_ohlcv")["vwap_approx"]
    with pytest.raises(ValueError, match="unknown dataset or view 'nope'"):
        dictionary.describe("nope")


def test_comments_land_on_the_views_and_their_columns(tmp_path: Path) -> None:
    con = empty_warehouse(tmp_path)
    assert dictionary.apply_comments(con) > len(dictionary.ENTRIES)
    missing = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal "
        "AND schema_name = 'main' AND comment IS NULL"
    ).fetchall()
    assert missing == []
    (ts,) = con.execute(
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'bars' AND column_name = 'ts'"
    ).fetchall()[0]
    assert ts == dictionary.describe("bars")["ts"]
    views = dict(
        con.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall()
    )
    assert views["daily_ohlcv"] == dictionary.entry("daily_ohlcv").summary


def test_the_default_statements_quote_text_and_skip_pending_columns() -> None:
    statements = dictionary.comment_statements()
    assert 'COMMENT ON COLUMN "bars"."ts" IS ' in "\n".join(statements)
    assert any('"contracts"."currency"' in s for s in statements)
    assert any("instrument''s" in s for s in statements)  # quotes doubled


def test_dagster_descriptions_are_a_plain_dict() -> None:
    found = dictionary.column_descriptions("daily_ohlcv", ["conid", "vwap_approx"])
    assert isinstance(found["vwap_approx"], str) and "APPROXIMATION" in found["vwap_approx"]
    assert dictionary.column_descriptions("bars") == dictionary.describe("bars")
