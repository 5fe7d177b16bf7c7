"""Every dataset folder read whole by the common readers with nothing but hive partitioning
(issue 11 item 3): pyarrow.dataset, pandas, polars and DuckDB's read_parquet give the rows and
values `connect()`'s views give. Before issue 11 each of them failed on some folder: manifests
beside the data (pandas, polars), ``session_date`` typed date32 in the files and a string in the
path (pyarrow), three partition schemes under ``bars/`` (DuckDB)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.corporate_actions import action_row
from ib_pipeline.ibkr.tables import (
    ACCOUNT_SUMMARY,
    ACCOUNTS,
    CONTRACTS,
    LIVE_ORDERS,
    POSITIONS,
    SNAPSHOT_QUOTES,
)
from ib_pipeline.storage.listing import DATA_FOLDERS
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import connect

AAPL, MSFT = 265598, 272093
HOURS = {AAPL: US_EQUITY, MSFT: US_EQUITY}
D1, D2 = date(2024, 11, 25), date(2024, 11, 26)
AS_OF = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)

# folder -> (the view holding its rows, its WHERE, key columns, a value column)
FOLDERS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "bars": ("bars", "bar_size IN ('1min', '5min')", ("conid", "ts"), "close"),
    "bars_hourly": ("bars", "bar_size = '1h'", ("conid", "ts"), "close"),
    "bars_daily": ("bars", "bar_size = '1d'", ("conid", "ts"), "close"),
    "quotes": ("quotes", "true", ("conid", "as_of"), "last"),
    "positions": ("positions", "true", ("conid", "as_of"), "position"),
    "account_summary": ("account_summary", "true", ("key", "as_of"), "amount"),
    "orders": ("orders", "true", ("order_id", "as_of"), "limit_price"),
    "contracts": ("contracts", "true", ("conid",), "symbol"),
    "accounts": ("accounts", "true", ("account_id",), "alias"),
    "quarantine": ("quarantine", "true", ("key_json",), "row_json"),
    "corporate_actions": ("corporate_actions", "true", ("conid", "bar_size"), "ratio"),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small warehouse holding every dataset folder, loaded through the store."""
    from bar_builders import build_bars  # noqa: PLC0415 (beside tests/conftest.py)

    folder = tmp_path_factory.mktemp("plain") / "warehouse"
    store = Store(folder)

    def bars(table: pa.Table) -> None:
        store.write("bars", table, source={"t": "bars"}, run_id="r", hours=HOURS)

    for bar in ("1min", "1h", "1d"):
        bars(pa.concat_tables([build_bars([AAPL, MSFT], day, bar) for day in (D1, D2)]))
    broken = build_bars([AAPL], D1, "5min").to_pylist()[:3]
    broken[0]["high"] = -1.0  # one bad bar: quarantined
    bars(pa.Table.from_pylist(broken, schema=build_bars([AAPL], D1, "5min").schema))
    quotes = [
        {"conid": c, "updated": AS_OF, "last": 10.0 + i, "last_is_close": False, "halted": False}
        for i, c in enumerate((AAPL, MSFT))
    ]
    for minute in (0, 5):
        moment = AS_OF.replace(minute=minute)
        table = pa.Table.from_pylist(quotes, schema=SNAPSHOT_QUOTES)
        store.write("quotes", table, source={"t": "q"}, run_id="r", as_of=moment)
    positions = [
        {"account": a, "as_of": AS_OF, "conid": c, "position": 5.0 + i}
        for a in ("U1", "DU2")
        for i, c in enumerate((AAPL, MSFT))
    ]
    store.write(
        "positions", pa.Table.from_pylist(positions, schema=POSITIONS), source="p", run_id="r"
    )
    summary = [
        {"account": a, "as_of": AS_OF, "key": k, "amount": 1.5, "is_null": False}
        for a in ("U1", "DU2")
        for k in ("netliquidation", "cashbalance")
    ]
    store.write(
        "account_summary",
        pa.Table.from_pylist(summary, schema=ACCOUNT_SUMMARY),
        source="s",
        run_id="r",
    )
    orders = [
        {"order_id": n, "account": "U1", "conid": AAPL, "limit_price": 100.0 + n} for n in (1, 2)
    ]
    store.write(
        "orders",
        pa.Table.from_pylist(orders, schema=LIVE_ORDERS),
        source="o",
        run_id="r",
        as_of=AS_OF,
    )
    contracts = [{"conid": AAPL, "symbol": "AAPL"}, {"conid": MSFT, "symbol": "MSFT"}]
    store.write(
        "contracts", pa.Table.from_pylist(contracts, schema=CONTRACTS), source="c", run_id="r"
    )
    accounts = [{"account_id": "U1", "alias": "main", "is_paper": False, "is_selected": True}]
    store.write("accounts", pa.Table.from_pylist(accounts, schema=ACCOUNTS), source="a", run_id="r")
    store.record_corporate_actions(
        action_row(
            conid=AAPL,
            bar_size="1min",
            effective=D2,
            ratio=4.0,
            compared_session=D1,
            detected_at=AS_OF,
            rows_restated=390,
            partitions_restated=1,
            run_id="r",
        )
    )
    return folder


def _rows(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Sorted rows of ``columns``, times as UTC epoch ms (each reader types them its own way)."""
    out = []
    for row in frame[list(columns)].itertuples(index=False):
        out.append(tuple(_plain(v) for v in row))
    return sorted(out, key=repr)


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.value // 1_000_000
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


READERS: dict[str, Callable[[str], pd.DataFrame]] = {
    "pyarrow": lambda path: pads.dataset(path, partitioning="hive").to_table().to_pandas(),
    "pandas": pd.read_parquet,
    "polars": lambda path: (
        pl.scan_parquet(f"{path}/**/*.parquet", hive_partitioning=True).collect().to_pandas()
    ),
    "duckdb": lambda path: duckdb.sql(
        f"SELECT * FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)"
    ).df(),
}


def test_the_fixture_fills_every_data_folder(root: Path) -> None:
    assert set(FOLDERS) == set(DATA_FOLDERS)
    for folder in DATA_FOLDERS:
        assert list((root / folder).rglob("*.parquet")), folder
    # nothing but data files (and their hive folders) inside a data folder
    for folder in DATA_FOLDERS:
        others = [p for p in (root / folder).rglob("*") if p.is_file() and p.suffix != ".parquet"]
        assert others == [], others
    assert list((root / "_manifests").rglob("*.json"))


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("folder", list(FOLDERS))
def test_every_folder_reads_whole_as_the_views_show_it(
    root: Path, folder: str, reader: str
) -> None:
    view, where, key, value = FOLDERS[folder]
    con = connect(root)
    expected = con.execute(f"SELECT * FROM {view} WHERE {where}").df()
    found = READERS[reader](str(root / folder))
    assert len(found) == len(expected) > 0
    assert _rows(found, (*key, value)) == _rows(expected, (*key, value))
    # every key its folders name comes back as a column with the view's values
    if folder.startswith("bars"):
        assert sorted({str(v) for v in found["bar_size"]}) == sorted(
            {str(v) for v in expected["bar_size"]}
        )
    if folder == "bars":
        got = sorted({str(pd.Timestamp(v).date()) for v in found["session_date"]})
        assert got == sorted({str(pd.Timestamp(v).date()) for v in expected["session_date"]})
    if folder in ("positions", "account_summary"):
        assert sorted(map(str, found["account"])) == sorted(map(str, expected["account"]))
    if folder == "quarantine":
        assert set(map(str, found["dataset"])) == {"bars"}


def test_the_store_reads_back_the_columns_the_folders_name(root: Path) -> None:
    store = Store(root, catalog=False)
    bars = store.read("bars")
    con = connect(root)
    assert bars.num_rows == con.execute("SELECT count(*) FROM bars").fetchone()[0]  # type: ignore[index]
    assert set(bars.column("bar_size").to_pylist()) == {"1min", "5min", "1h", "1d"}
    assert bars.schema.field("session_date").type == pa.date32()
    assert store.read("bars", "bar_size=1min/session_date=2024-11-26").num_rows == 2 * 390
    ids = [p.id for p in store.partitions("bars")]
    assert "bar_size=1h/session_month=2024-11" in ids and "bar_size=1d/session_year=2024" in ids
    assert store.manifest("bars", "bar_size=1d/session_year=2024", verify=True).status == "ok"
    positions = store.read("positions")
    assert sorted(set(positions.column("account").to_pylist())) == ["DU2", "U1"]
    assert set(store.quarantine().column("dataset").to_pylist()) == {"bars"}
