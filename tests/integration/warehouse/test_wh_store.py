"""Store <-> DuckDB on real files: round trips, idempotent re-runs, merges where the newer row
wins, quarantine, manifests, hostile names, and an object-store (memory://) root."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import fsspec
import orjson
import pyarrow as pa
import pytest

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.clock import FixedClock
from ib_pipeline.ibkr.tables import CONTRACTS, POSITIONS, SNAPSHOT_QUOTES
from ib_pipeline.storage.manifest import STATUS_CORRUPT, STATUS_MISSING, STATUS_OK, STATUS_STALE
from ib_pipeline.storage.store import Batch, Store
from ib_pipeline.warehouse import (
    CATALOG_FILE,
    DATASET_VIEWS,
    DERIVED_VIEWS,
    WarehouseNotFoundError,
    connect,
)

NOW = datetime(2024, 11, 28, 12, tzinfo=UTC)  # the clock of the `store` fixture
AAPL, MSFT, IBM = 265598, 272093, 8314
HOURS = {AAPL: US_EQUITY, MSFT: US_EQUITY, IBM: US_EQUITY}
D1, D2 = date(2024, 11, 25), date(2024, 11, 26)
SOURCE = {"endpoint": "history", "params": {"conid": "265598", "bar": "1min"}}
Bars = Callable[..., pa.Table]


def write_bars(store: Store, table: pa.Table, run_id: str = "run-1", **kw: object):  # type: ignore[no-untyped-def]
    return store.write(
        "bars",
        table,
        source=SOURCE,
        run_id=run_id,
        hours=HOURS,
        **kw,  # type: ignore[arg-type]
    )


def query(root: str | Path, sql: str) -> list[tuple[object, ...]]:
    return connect(root).execute(sql).fetchall()


def test_bars_round_trip_through_duckdb(store: Store, make_bars: Bars) -> None:
    table = pa.concat_tables(
        [make_bars([AAPL, MSFT], D1, outside_rth=True), make_bars([AAPL], D2, outside_rth=True)]
    )
    result = write_bars(store, table, outside_rth=True)
    assert result.rows_valid == table.num_rows == 3 * 960
    assert [p.partition for p in result.partitions] == [
        "bar_size=1min/session_date=2024-11-25",
        "bar_size=1min/session_date=2024-11-26",
    ]
    con = connect(store.url)
    back = con.sql(
        "SELECT conid, bar_size, ts, open, high, low, close, volume FROM bars ORDER BY conid, ts"
    ).to_arrow_table()
    expected = table.sort_by([("conid", "ascending"), ("ts", "ascending")])
    assert back.to_pydict() == expected.to_pydict()
    # a bar at 00:59Z belongs to the previous New York session, and its partition
    rows = con.execute(
        "SELECT session_date FROM bars WHERE ts = TIMESTAMPTZ '2024-11-27 00:59:00+00'"
    ).fetchall()
    assert rows == [(D2,)]
    stored = store.read("bars", "bar_size=1min/session_date=2024-11-26")
    assert stored.num_rows == 960 and max(stored.column("ts").to_pylist()) == datetime(
        2024, 11, 27, 0, 59, tzinfo=UTC
    )
    ohlcv = con.execute(
        "SELECT bars, volume FROM daily_ohlcv WHERE conid = ? AND session_date = ?", [MSFT, D1]
    ).fetchall()
    msft = table.filter(pa.compute.equal(table["conid"], MSFT)).slice(0, 960)
    assert ohlcv == [(960, pytest.approx(sum(msft.column("volume").to_pylist())))]


def test_rerunning_a_load_gives_the_same_bytes_and_no_duplicates(
    store: Store, make_bars: Bars
) -> None:
    table = make_bars([AAPL, MSFT], D1)
    first = write_bars(store, table)
    path = Path(store.url, first.partitions[0].path)
    before = path.read_bytes()
    second = write_bars(store, table, run_id="run-2")
    assert second.partitions[0].unchanged
    assert path.read_bytes() == before
    assert second.partitions[0].content_sha256 == first.partitions[0].content_sha256
    assert query(store.url, "SELECT count(*), count(DISTINCT (conid, ts)) FROM bars") == [
        (780, 780)
    ]
    # a fresh warehouse fed the same rows writes the same bytes (no wall clock in the file)
    other = Store(
        Path(store.url).parent / "other", clock=FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    )
    assert (
        write_bars(other, table).partitions[0].content_sha256 == first.partitions[0].content_sha256
    )


def test_merging_adds_instruments_and_newer_values_win(store: Store, make_bars: Bars) -> None:
    write_bars(store, make_bars([AAPL], D1))
    write_bars(store, make_bars([MSFT], D1), run_id="run-2")  # a later run adds an instrument
    revised = make_bars([AAPL], D1, seed=7).slice(100, 50)  # overlapping re-request, new values
    write_bars(store, revised, run_id="run-3")
    rows = query(store.url, "SELECT conid, count(*) FROM bars GROUP BY conid ORDER BY conid")
    assert rows == [(AAPL, 390), (MSFT, 390)]
    stored = store.read("bars", "bar_size=1min/session_date=2024-11-25")
    aapl = stored.filter(pa.compute.equal(stored["conid"], AAPL))
    assert aapl.slice(100, 50).select(revised.column_names).equals(revised)
    assert (
        aapl.slice(0, 100)
        .column("close")
        .equals(make_bars([AAPL], D1).slice(0, 100).column("close"))
    )
    manifest = store.manifest("bars", "bar_size=1min/session_date=2024-11-25")
    assert manifest.run_id == "run-3"
    assert manifest.conids == sorted([MSFT, AAPL])
    assert manifest.rows == 780


def test_later_batches_win_and_replace_mode_rebuilds(store: Store, make_bars: Bars) -> None:
    base = make_bars([AAPL], D1)
    newer = make_bars([AAPL], D1, seed=3)
    result = store.load(
        "bars",
        [Batch(base, SOURCE, hours=HOURS), Batch(newer, {"n": 2}, hours=HOURS)],
        run_id="r",
    )
    assert result.rows_valid == 780 and result.partitions[0].rows == 390
    assert store.read("bars").select(newer.column_names).equals(newer)
    msft = make_bars([MSFT], D1)
    write_bars(store, msft)
    store.write("bars", base, source=SOURCE, run_id="rebuild", hours=HOURS, mode="replace")
    # AAPL's rows replaced (base back); MSFT, not in the replace, kept
    stored = store.read("bars").select(base.column_names)
    assert stored.equals(
        pa.concat_tables([base, msft]).sort_by([("conid", "ascending"), ("ts", "ascending")])
    )


def test_a_replace_with_a_window_rewrites_only_that_window(store: Store, make_bars: Bars) -> None:
    full = make_bars([AAPL], D1)
    write_bars(store, full)
    ts = full.column("ts").to_pylist()
    window = (ts[100], ts[200])  # [100, 200): the batch brings rows 100..149 only
    store.load(
        "bars",
        [Batch(full.slice(100, 50), SOURCE, window=window, hours=HOURS)],
        run_id="window",
        mode="replace",
    )
    kept = store.read("bars").column("ts").to_pylist()
    assert kept == ts[:150] + ts[200:]  # 150..199: in the window, not re-sent, so gone


def test_bad_rows_go_to_quarantine_with_their_reason(store: Store, make_bars: Bars) -> None:
    table = make_bars([AAPL], D1)
    rows = table.slice(0, 3).to_pylist()
    rows[0]["high"] = rows[0]["low"] - 1  # high < low
    rows[1]["volume"] = -100.0
    rows[2]["close"] = math.nan
    rows[2]["ts"] = datetime(2024, 11, 23, 15, tzinfo=UTC)  # a Saturday too
    bad = pa.Table.from_pylist(rows, schema=table.schema)
    clean = table.slice(3)
    result = write_bars(store, pa.concat_tables([clean, bad]))
    assert (result.rows_valid, result.rows_quarantined) == (387, 3)
    assert result.partitions[0].quarantined == 2  # the Saturday row names another partition
    con = connect(store.url)
    assert con.execute("SELECT count(*) FROM bars").fetchone() == (387,)
    found = con.execute(
        "SELECT dataset, partition, failed_checks, row_json, source, run_id, quarantined_at "
        "FROM quarantine ORDER BY row_json"
    ).fetchall()
    assert len(found) == 3
    checks = {row[2] for row in found}
    assert any("high_ge_low" in c for c in checks)
    assert any("volume:greater_than_or_equal_to(0)" in c for c in checks)
    assert any("close:not_nullable" in c and "ts_in_session" in c for c in checks)
    nan_row = next(orjson.loads(r[3]) for r in found if "close:not_nullable" in r[2])
    assert nan_row["close"] == "NaN" and nan_row["ts"] == "2024-11-23T15:00:00.000Z"
    assert {r[1] for r in found} == {
        "bar_size=1min/session_date=2024-11-25",
        "bar_size=1min/session_date=2024-11-23",
    }
    assert all(orjson.loads(r[4]) == SOURCE and r[5] == "run-1" for r in found)
    assert found[0][6] == NOW
    # re-running the same load does not grow the quarantine
    write_bars(store, pa.concat_tables([clean, bad]), run_id="run-2")
    assert store.quarantine("bars").num_rows == 3
    assert set(store.quarantine("bars").column("run_id").to_pylist()) == {"run-2"}


def test_only_still_quarantines_a_bar_outside_every_session(store: Store, make_bars: Bars) -> None:
    """``only`` ignores rows meant for other partitions, but a bar at a time no session covers
    belongs to no partition: no other load could claim it, so this load quarantines it (a
    response holding one used to leave it nowhere and fail the bars loader)."""
    table = make_bars([AAPL], D1)
    rows = table.slice(0, 2).to_pylist()
    rows[0]["ts"] = datetime(2024, 11, 23, 15, tzinfo=UTC)  # a Saturday
    rows[1]["ts"] = datetime(2024, 11, 26, 15, tzinfo=UTC)  # a bar of another partition...
    rows[1]["volume"] = -1.0  # ...and invalid: that partition's own load must judge it
    bad = pa.Table.from_pylist(rows, schema=table.schema)
    batch = Batch(pa.concat_tables([table.slice(2), bad]), SOURCE, hours=HOURS)
    only = {"bar_size=1min/session_date=2024-11-25"}
    result = store.load("bars", [batch], run_id="run-1", mode="replace", only=only)
    assert (result.rows_valid, result.rows_quarantined) == (388, 1)
    (record,) = store.quarantine("bars").to_pylist()
    assert "ts_in_session" in record["failed_checks"]
    assert orjson.loads(record["key_json"])["ts"] == "2024-11-23T15:00:00.000Z"
    assert [p.partition for p in result.partitions] == sorted(only)


def test_manifests_describe_partitions_and_notice_stale_data(store: Store, make_bars: Bars) -> None:
    write_bars(store, make_bars([AAPL, IBM], D1))
    manifest = store.manifest("bars", "bar_size=1min/session_date=2024-11-25", verify=True)
    assert manifest.status == STATUS_OK
    assert manifest.rows == 780
    assert manifest.conids == sorted([IBM, AAPL])
    assert (manifest.time_min, manifest.time_max) == (
        "2024-11-25T14:30:00.000Z",
        "2024-11-25T20:59:00.000Z",
    )
    assert manifest.key_range["ts"]["distinct"] == 390
    assert manifest.sources == [SOURCE] and manifest.run_id == "run-1"
    assert manifest.written_at == "2024-11-28T12:00:00.000Z"
    # the data file replaced but the manifest not yet (a crash between the two writes)
    part = store.partition("bars", manifest.partition)
    other = make_bars([AAPL], D1)
    store.root.write_atomic(
        part.data_path, pa.BufferOutputStream().getvalue().to_pybytes() + b"x" * 10
    )
    assert store.manifest("bars", part).status == STATUS_STALE
    store.root.remove(part.manifest_path)
    # an unreadable file without a manifest is reported (issue 10 item 6: the manifest command
    # must not abort for the whole warehouse); reading it raises an error naming the file
    assert store.manifest("bars", part).status == STATUS_CORRUPT
    with pytest.raises(ValueError, match=f"{re.escape(part.data_path)} is not a readable Parquet"):
        store.read("bars", part)
    write_bars(store, other, mode="replace")
    store.root.remove(part.manifest_path)
    assert store.manifest("bars", part).status == STATUS_MISSING
    assert [m.partition for m in store.manifests("bars")] == [part.id]


def test_snapshot_datasets_layout(store: Store) -> None:
    as_of = datetime(2024, 11, 26, 18, 0, 0, 250000, tzinfo=UTC)
    quotes = pa.Table.from_pylist(
        [
            {"conid": c, "updated": as_of, "last": 10.0, "last_is_close": False, "halted": False}
            for c in (AAPL, MSFT)
        ],
        schema=SNAPSHOT_QUOTES,
    )
    result = store.write("quotes", quotes, source={"e": "snapshot"}, run_id="q", as_of=as_of)
    assert (
        result.partitions[0].path == "quotes/date=2024-11-26/snapshot-20241126T180000250Z.parquet"
    )
    positions = pa.Table.from_pylist(
        [
            {"account": account, "as_of": as_of, "conid": AAPL, "position": 5.0}
            for account in ("U1", "DU2")
        ],
        schema=POSITIONS,
    )
    result = store.write("positions", positions, source={"e": "positions"}, run_id="p")
    assert sorted(p.partition for p in result.partitions) == [
        "date=2024-11-26/account=DU2",
        "date=2024-11-26/account=U1",
    ]
    contracts = pa.Table.from_pylist([{"conid": AAPL, "symbol": "AAPL"}], schema=CONTRACTS)
    result = store.write("contracts", contracts, source={"e": "search"}, run_id="c")
    assert result.partitions[0].path == "contracts/part.parquet"
    con = connect(store.url)
    assert con.execute("SELECT account, date FROM latest_positions ORDER BY 1").fetchall() == [
        ("DU2", date(2024, 11, 26)),
        ("U1", date(2024, 11, 26)),
    ]
    assert con.execute("SELECT conid, as_of FROM latest_quotes ORDER BY 1").fetchall() == [
        (AAPL, as_of),
        (MSFT, as_of),
    ]


def test_hostile_account_ids_never_reach_a_path_or_a_query(store: Store) -> None:
    hostile = ["../../escape", "U1'; DROP VIEW bars;--", "a/b", ".."]
    positions = pa.Table.from_pylist(
        [{"account": a, "as_of": NOW, "conid": AAPL, "position": 1.0} for a in [*hostile, "U9"]],
        schema=POSITIONS,
    )
    result = store.write("positions", positions, source={"e": "positions"}, run_id="h")
    assert result.rows_quarantined == 4 and result.rows_valid == 1
    root = Path(store.url)
    assert not (root.parent / "escape").exists()
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())
        assert "'" not in path.name and ".." not in path.name
    con = connect(store.url)
    assert con.execute("SELECT account FROM positions").fetchall() == [("U9",)]
    accounts = [orjson.loads(r[0])["account"] for r in con.execute(
        "SELECT row_json FROM quarantine").fetchall()]  # fmt: skip
    assert sorted(accounts) == sorted(hostile)
    assert con.execute("SELECT count(*) FROM bars").fetchone() == (0,)  # the view survived


def test_a_root_with_a_quote_in_its_path_works(tmp_path: Path, make_bars: Bars) -> None:
    store = Store(tmp_path / "it's a warehouse", clock=FixedClock(NOW))
    write_bars(store, make_bars([AAPL], D1))
    assert query(store.url, "SELECT count(*) FROM bars") == [(390,)]
    with pytest.raises(ValueError, match="glob characters"):
        glob_store = Store(tmp_path / "wh[1]", clock=FixedClock(NOW))
        write_bars(glob_store, make_bars([AAPL], D1))


@pytest.mark.parametrize("name", ["wh*", "wh?", "wh[1]", "wh{a,b}"])
def test_a_root_duckdb_would_glob_is_refused_when_the_store_opens(
    tmp_path: Path, name: str
) -> None:
    """Refused before the first write (not when the catalog is rebuilt after it), so a
    pipeline fails before fetching anything and leaves no file no reader could query."""
    with pytest.raises(ValueError, match=r"contains glob characters .*rename it"):
        Store(tmp_path / name, clock=FixedClock(NOW))
    assert list(tmp_path.iterdir()) == []


def test_datasets_without_files_have_typed_empty_views(tmp_path: Path) -> None:
    store = Store(tmp_path / "wh", clock=FixedClock(NOW))
    contracts = pa.Table.from_pylist(
        [{"conid": AAPL, "symbol": "AAPL", "sec_type": "STK", "exchanges": "NASDAQ"}],
        schema=CONTRACTS,
    )
    store.write("contracts", contracts, source={"endpoint": "test"}, run_id="c")
    con = connect(tmp_path / "wh")
    for view in (*DATASET_VIEWS, *DERIVED_VIEWS):
        expected = 1 if view == "contracts" else 0
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (expected,)
    types = {row[0]: row[1] for row in con.execute("DESCRIBE bars").fetchall()}
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["session_date"] == "DATE"
    assert list(types)[:3] == ["conid", "bar_size", "ts"]


@pytest.mark.parametrize("make_root", ["missing", "empty", "unrelated"])
def test_readers_refuse_a_root_without_a_warehouse(tmp_path: Path, make_root: str) -> None:
    """A typo in a path must fail naming the path, never answer zero rows; and a reader never
    creates the folder."""
    root = tmp_path / "typo_wh"
    if make_root != "missing":
        root.mkdir()
    if make_root == "unrelated":
        (root / "notes.txt").write_text("not a warehouse")
    with pytest.raises(WarehouseNotFoundError, match=re.escape(str(root))):
        connect(root)
    assert root.exists() == (make_root != "missing")


def test_the_catalog_opens_from_any_folder_and_after_the_warehouse_moves(
    tmp_path: Path, make_bars: Bars
) -> None:
    """The catalog names files relative to the warehouse folder: from inside the folder it
    opens as it is; from elsewhere with ``file_search_path`` (what `duckdb_cli_command`
    prints); and the same after the whole folder is moved, since no path names the old place.
    Each in a fresh process, as an analyst would."""
    store = Store(tmp_path / "warehouse", clock=FixedClock(NOW))
    write_bars(store, make_bars([AAPL], D1))
    query = "SELECT count(*) FROM bars"

    def count(catalog: Path, cwd: Path, search: Path | None) -> str:
        config = "" if search is None else f", config={{'file_search_path': {str(search)!r}}}"
        script = (
            f"import duckdb; con = duckdb.connect({str(catalog)!r}, read_only=True{config});"
            f"print(con.execute({query!r}).fetchone()[0])"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    folder = tmp_path / "warehouse"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert count(folder / CATALOG_FILE, folder, None) == "390"
    assert count(folder / CATALOG_FILE, elsewhere, folder) == "390"
    moved = tmp_path / "moved" / "copy-of-warehouse"
    moved.parent.mkdir()
    os.rename(folder, moved)
    assert count(moved / CATALOG_FILE, moved, None) == "390"
    assert count(moved / CATALOG_FILE, elsewhere, moved) == "390"
    con = duckdb.connect(str(moved / CATALOG_FILE), read_only=True)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert {*DATASET_VIEWS, *DERIVED_VIEWS} <= views


def test_an_object_store_root_needs_no_code_change(make_bars: Bars) -> None:
    url = "memory://wh-test-object-store"
    fs = fsspec.filesystem("memory")
    if fs.exists("/wh-test-object-store"):
        fs.rm("/wh-test-object-store", recursive=True)
    store = Store(url, clock=FixedClock(NOW))
    table = make_bars([AAPL, MSFT], D1)
    first = write_bars(store, table)
    assert write_bars(store, table).partitions[0].unchanged
    assert fs.exists(
        "/wh-test-object-store/bars/bar_size=1min/session_date=2024-11-25/part.parquet"
    )
    assert fs.exists(f"/wh-test-object-store/{CATALOG_FILE}")
    assert query(url, "SELECT count(*), count(DISTINCT conid) FROM bars") == [(780, 2)]
    manifest = store.manifest("bars", first.partitions[0].partition, verify=True)
    assert manifest.status == STATUS_OK and manifest.rows == 780
    assert store.read("bars").num_rows == 780
    fs.rm("/wh-test-object-store", recursive=True)
