"""The catalog file ``warehouse.duckdb`` with views that name their files: rebuilt when a write
adds a file (and only then), kept whole by concurrent writers, and never trusted blindly."""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from ib_pipeline import warehouse
from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.clock import FixedClock
from ib_pipeline.storage import listing
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import (
    CATALOG_FILE,
    CATALOG_SCHEMA,
    connect,
    open_catalog,
    read_catalog_state,
)

AAPL, MSFT = 265598, 272093
HOURS = {AAPL: US_EQUITY, MSFT: US_EQUITY}
D1, D2, D3 = date(2024, 11, 22), date(2024, 11, 25), date(2024, 11, 26)
Bars = Callable[..., pa.Table]


def write_bars(store: Store, table: pa.Table, run_id: str = "run") -> None:
    store.write("bars", table, source={"test": run_id}, run_id=run_id, hours=HOURS)


def catalog_rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    con = open_catalog(root)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_catalog_names_every_file_and_is_rebuilt_only_when_one_is_added(
    store: Store, make_bars: Bars
) -> None:
    root = Path(store.url)
    write_bars(store, make_bars([AAPL], D1))
    catalog = root / CATALOG_FILE
    first = catalog.read_bytes()
    # the same load again (no new file, same bytes): the catalog is left alone
    write_bars(store, make_bars([AAPL], D1), run_id="again")
    assert catalog.read_bytes() == first
    # a merge rewrites the listed file in place: the catalog still reads it, unchanged
    write_bars(store, make_bars([MSFT], D1), run_id="merge")
    assert catalog.read_bytes() == first
    assert catalog_rows(root, "SELECT count(DISTINCT conid) FROM bars") == [(2,)]
    # a new partition: rebuilt, with the file in its views and in its listing
    write_bars(store, make_bars([AAPL], D2), run_id="day-2")
    assert catalog.read_bytes() != first
    assert catalog_rows(root, "SELECT count(*) FROM bars") == [(3 * 390,)]
    listed = catalog_rows(
        root, f"SELECT dataset, path, columns FROM {CATALOG_SCHEMA}.files ORDER BY path"
    )
    assert [(d, p) for d, p, _ in listed] == [
        ("bars", "bars/bar_size=1min/session_date=2024-11-22/part.parquet"),
        ("bars", "bars/bar_size=1min/session_date=2024-11-25/part.parquet"),
    ]
    assert {c for _, _, cols in listed for c in cols} >= {"conid", "ts", "close", "volume"}
    state = read_catalog_state(store.root)
    assert state is not None and set(state.files) == {p for _, p, _ in listed}


def test_concurrent_rebuilds_run_one_at_a_time_and_the_last_sees_every_write(
    store: Store, make_bars: Bars, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A lists the files, then stalls before writing the catalog; writer B adds a
    partition meanwhile. Without the root lock B's catalog would land first and A's stale one
    over it; with it, B waits for A and then lists both partitions."""
    root = Path(store.url)
    write_bars(store, make_bars([AAPL], D1))
    a_listed, b_written, b_done = threading.Event(), threading.Event(), threading.Event()
    b_finished_while_a_held_the_lock: list[bool] = []
    real_list_all = listing.list_all

    def list_then_stall(*args: Any, **kwargs: Any) -> Any:
        found = real_list_all(*args, **kwargs)
        if threading.current_thread().name == "writer-a":
            a_listed.set()
            assert b_written.wait(timeout=30)  # B has written its partition, wants the lock
            # B cannot finish its rebuild while A holds the lock: this wait times out
            b_finished_while_a_held_the_lock.append(b_done.wait(timeout=1))
        return found

    monkeypatch.setattr(warehouse, "list_all", list_then_stall)
    errors: list[BaseException] = []

    def writer_a() -> None:
        try:
            write_bars(Store(root, clock=clock), make_bars([AAPL], D2), run_id="a")
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    def writer_b() -> None:
        try:
            a_listed.wait(timeout=30)
            other = Store(root, clock=clock, catalog=False)
            write_bars(other, make_bars([MSFT], D3), run_id="b")
            b_written.set()
            other.refresh_catalog()
            b_done.set()
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=writer_a, name="writer-a"),
        threading.Thread(target=writer_b, name="writer-b"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert b_finished_while_a_held_the_lock == [False]
    assert catalog_rows(root, "SELECT session_date, count(*) FROM bars GROUP BY 1 ORDER BY 1") == [
        (D1, 390),
        (D2, 390),
        (D3, 390),
    ]


def test_an_unreadable_catalog_is_rebuilt_not_trusted(store: Store, make_bars: Bars) -> None:
    root = Path(store.url)
    write_bars(store, make_bars([AAPL], D1))
    (root / CATALOG_FILE).write_bytes(b"not a duckdb file")
    assert read_catalog_state(store.root) is None
    assert connect(store.url).execute("SELECT count(*) FROM bars").fetchone() == (390,)
    write_bars(store, make_bars([AAPL], D1), run_id="again")  # no new file, but no catalog
    assert catalog_rows(root, "SELECT count(*) FROM bars") == [(390,)]
    # a catalog written without the listing (older code) is rebuilt too
    con = duckdb.connect(str(root / CATALOG_FILE))
    con.execute(f"DROP SCHEMA {CATALOG_SCHEMA} CASCADE")
    con.close()
    assert read_catalog_state(store.root) is None
    assert store.refresh_catalog().endswith(CATALOG_FILE)
    assert read_catalog_state(store.root) is not None


def test_a_rebuild_removes_the_scratch_folders_of_killed_processes(
    store: Store, make_bars: Bars, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a loader killed (SIGKILL) during a rebuild cannot remove its scratch folder, nor hold its
    # lock any more: the next rebuild, in any process, removes it; a folder still locked by a
    # live process stays, and so does anything without the prefix
    scratch = tmp_path / "system-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    abandoned = scratch / f"{warehouse.SCRATCH_PREFIX}{'0' * 32}"
    abandoned.mkdir()
    (abandoned / CATALOG_FILE).write_bytes(b"half a catalog")
    running = scratch / f"{warehouse.SCRATCH_PREFIX}{'1' * 32}"
    running.mkdir()
    unrelated = scratch / "someone-else"
    unrelated.mkdir()
    held = os.open(running, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as its live owner does
    try:
        write_bars(store, make_bars([AAPL], D1))  # a new file: the catalog is rebuilt
    finally:
        os.close(held)
    assert (Path(store.url) / CATALOG_FILE).exists()
    assert sorted(p.name for p in scratch.iterdir()) == sorted([running.name, unrelated.name])
