"""Views that name their files: what a connection sees and when (the freshness rule of
`ib_pipeline.warehouse`), files written before a column existed, stray and hostile file names,
and object-store roots."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.clock import FixedClock
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.storage import listing
from ib_pipeline.storage.parquet import to_parquet_bytes
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import DATASET_VIEWS, DERIVED_VIEWS, connect, refresh

AAPL, MSFT, IBM = 265598, 272093, 8314
HOURS = {AAPL: US_EQUITY, MSFT: US_EQUITY, IBM: US_EQUITY}
D1, D2, D3 = date(2024, 11, 22), date(2024, 11, 25), date(2024, 11, 26)
Bars = Callable[..., pa.Table]


def write_bars(store: Store, table: pa.Table, run_id: str = "run") -> None:
    store.write("bars", table, source={"test": run_id}, run_id=run_id, hours=HOURS)


def count(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def view_sql(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()
    assert row is not None
    return str(row[0])


def test_a_connection_sees_new_partitions_after_refresh_and_rewrites_at_once(
    store: Store, make_bars: Bars
) -> None:
    write_bars(store, make_bars([AAPL], D1))
    con = connect(store.url)
    assert count(con, "SELECT count(*) FROM bars") == 390
    sql = view_sql(con, "bars")
    assert "session_date=2024-11-22/part.parquet" in sql and "*" not in sql  # no folder glob

    # a rewrite of a listed partition (a merge adds MSFT) is seen without a refresh
    write_bars(store, make_bars([MSFT], D1), run_id="merge")
    assert count(con, "SELECT count(DISTINCT conid) FROM bars") == 2
    # a partition created after connect() is not, until refresh()
    write_bars(store, make_bars([AAPL, IBM], D2), run_id="new-day")
    assert count(con, "SELECT count(*) FROM bars") == 780
    assert refresh(con)["bars"] == 2
    assert count(con, "SELECT count(*) FROM bars") == 780 + 780
    by_day = con.execute("SELECT session_date, count(*) FROM bars GROUP BY 1 ORDER BY 1").fetchall()
    assert by_day == [(D1, 780), (D2, 780)]
    # derived views follow their dataset views
    assert count(con, "SELECT count(*) FROM daily_ohlcv") == 4
    # a fresh connect() sees everything without a refresh
    assert count(connect(store.url), "SELECT count(*) FROM bars") == 1560


def test_an_empty_dataset_view_is_typed_and_fills_on_refresh(
    tmp_path: Path, make_bars: Bars, clock: FixedClock
) -> None:
    root = tmp_path / "warehouse"
    contracts = pa.Table.from_pylist(
        [{"conid": AAPL, "symbol": "AAPL", "sec_type": "STK", "exchanges": "NASDAQ"}],
        schema=CONTRACTS,
    )
    Store(root, clock=clock).write("contracts", contracts, source={"endpoint": "t"}, run_id="c")
    con = connect(root)
    for view in (*DATASET_VIEWS, *DERIVED_VIEWS):
        assert count(con, f'SELECT count(*) FROM "{view}"') == (view == "contracts")
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE bars)").fetchall())
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["session_date"] == "DATE"
    assert types["volume"] == "DOUBLE" and types["conid"] == "BIGINT"
    write_bars(Store(root, clock=clock), make_bars([AAPL], D3))
    assert count(con, "SELECT count(*) FROM bars") == 0  # listed at connect(): still empty
    assert refresh(con) == {
        name: (1 if name in ("bars", "contracts") else 0) for name in DATASET_VIEWS
    }
    assert count(con, "SELECT count(*) FROM bars WHERE session_date = DATE '2024-11-26'") == 390
    assert con.execute("SELECT current_setting('parquet_metadata_cache')").fetchone() == (True,)


def test_refresh_needs_a_warehouse_connection() -> None:
    with pytest.raises(ValueError, match=r"connection made by ib_pipeline\.warehouse\.connect"):
        refresh(duckdb.connect())


def test_a_file_written_before_a_column_existed_reads_it_as_null(
    store: Store, make_bars: Bars
) -> None:
    write_bars(store, make_bars([AAPL], D1))
    # an older writer stored D2 without ``close``: the view must not need union_by_name
    # (bar_size and session_date are the folders' keys: never stored in the file)
    old = make_bars([MSFT], D2).drop_columns(["bar_size", "close"])
    old_path = "bars/bar_size=1min/session_date=2024-11-25/part.parquet"
    store.root.write_atomic(old_path, to_parquet_bytes(old))
    con = connect(store.url)
    assert "union_by_name" not in view_sql(con, "bars")
    rows = con.execute(
        "SELECT conid, count(*), count(close), min(volume) >= 0 FROM bars GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [(AAPL, 390, 390, True), (MSFT, 390, 0, True)]
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE bars)").fetchall())
    assert types["close"] == "DOUBLE"
    # the store rewrites the partition whole, with every column: after refresh, no NULLs
    store.write(
        "bars", make_bars([MSFT], D2), source={"t": "fix"}, run_id="fix", hours=HOURS,
        mode="replace",
    )  # fmt: skip
    refresh(con)
    assert count(con, "SELECT count(close) FROM bars WHERE conid = 272093") == 390
    assert "CAST(NULL" not in view_sql(con, "bars")


def test_known_columns_spare_footer_reads(
    store: Store, make_bars: Bars, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bars(store, make_bars([AAPL], D1))
    write_bars(store, make_bars([AAPL], D2))
    reads: list[str] = []
    real = listing.read_footer

    def counting(root: object, rel: str) -> listing.FileInfo:
        reads.append(rel)
        return real(root, rel)  # type: ignore[arg-type]

    monkeypatch.setattr(listing, "read_footer", counting)
    con = connect(store.url)  # the catalog already knows both files
    assert reads == []
    write_bars(store, make_bars([AAPL], D3))  # the rebuild reads the new footer only
    assert reads == ["bars/bar_size=1min/session_date=2024-11-26/part.parquet"]
    refresh(con)  # and so does refresh(), from what connect() listed
    assert reads[1:] == ["bars/bar_size=1min/session_date=2024-11-26/part.parquet"]
    assert count(con, "SELECT count(*) FROM bars") == 3 * 390


def test_files_outside_the_layouts_are_ignored_and_glob_names_refused(
    store: Store, make_bars: Bars
) -> None:
    write_bars(store, make_bars([AAPL], D1))
    stray = store.read("bars")
    store.root.write_atomic("bars/stray.parquet", to_parquet_bytes(stray))  # no layout
    assert count(connect(store.url), "SELECT count(*) FROM bars") == 390
    store.root.write_atomic(
        "bars/bar_size=1min/session_date=2024-11-25/x[1].parquet", to_parquet_bytes(stray)
    )
    with pytest.raises(ValueError, match=r"x\[1\]\.parquet.*glob characters"):
        connect(store.url)


def test_an_object_store_root_lists_and_refreshes(make_bars: Bars, clock: FixedClock) -> None:
    url = "memory://wh-test-views"
    fs = fsspec.filesystem("memory")
    if fs.exists("/wh-test-views"):
        fs.rm("/wh-test-views", recursive=True)
    try:
        store = Store(url, clock=clock)
        write_bars(store, make_bars([AAPL, MSFT], D1))
        con = connect(url)
        assert "memory://wh-test-views/bars/" in view_sql(con, "bars")
        write_bars(store, make_bars([IBM], D2))
        assert count(con, "SELECT count(*) FROM bars") == 780
        assert refresh(con)["bars"] == 2
        assert con.execute("SELECT conid, count(*) FROM bars GROUP BY 1 ORDER BY 1").fetchall() == [
            (IBM, 390),
            (AAPL, 390),
            (MSFT, 390),
        ]
        msft = pc.equal(store.read("bars")["conid"], MSFT)
        assert count(con, "SELECT count(*) FROM bars WHERE conid = 272093") == int(
            pc.sum(msft).as_py()
        )
    finally:
        fs.rm("/wh-test-views", recursive=True)


def test_a_listed_file_removed_by_hand_fails_loudly_until_refresh(
    store: Store, make_bars: Bars
) -> None:
    write_bars(store, make_bars([AAPL], D1))
    write_bars(store, make_bars([AAPL], D2))
    con = connect(store.url)
    store.root.remove("bars/bar_size=1min/session_date=2024-11-22/part.parquet")
    with pytest.raises(duckdb.IOException, match="session_date=2024-11-22"):
        con.execute("SELECT count(*) FROM bars").fetchall()  # never a silent partial answer
    assert refresh(con)["bars"] == 1
    assert count(con, "SELECT count(*) FROM bars") == 390
