"""Shared pieces of the "prove it holds" end-to-end tests (crash safety, hostile input, secrets,
TLS): the small backfill they materialise, its ground truth, and what a reader of the
warehouse may find on disk.

A plain module imported by name (like ``dagster_support``), also by the crash test's child
process (``prove_crash_child.py``), so it must not import pytest fixtures or the simulator at
import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from assets.definitions import build_definitions
from assets.resources import IbkrClientResource, WarehouseResource
from assets.runs import run_assets, summarize_run
from ib_pipeline.calendars import calendar_for
from ib_pipeline.clock import Clock
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.raw_zone import RAW, SUFFIX, decompress
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.fs import is_temp_name
from ib_pipeline.storage.manifest import STATUS_MISSING, STATUS_OK, STATUS_STALE, Manifest
from ib_pipeline.storage.paths import MANIFEST_SUFFIX
from ib_pipeline.storage.store import Store
from ib_pipeline.universe import Universe, parse_universe
from ib_pipeline.warehouse import (
    CATALOG_FILE,
    DATASET_VIEWS,
    DERIVED_VIEWS,
    WarehouseNotFoundError,
    connect,
    open_catalog,
)

if TYPE_CHECKING:
    import dagster as dg

    from ib_pipeline.simulator import Simulator

SIM_NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
"""The simulator's pinned clock (tests/conftest.py): inside the session of 2024-11-26."""

CONIDS = {"AAPL": 265598, "SPY": 756733}

BACKFILL_UNIVERSE: dict[str, Any] = {
    "history_start": "2024-11-01",
    "bar_sizes": ["1min"],
    "instruments": [
        {"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ"},
        {"symbol": "SPY", "sec_type": "STK", "exchange": "ARCA"},
    ],
}
"""Two US stocks, one-minute bars: the smallest universe that still pages and merges."""

BACKFILL_KEYS = ("2024-11-22", "2024-11-25")
"""Two finished sessions (a Friday and the Monday after)."""

SNAPSHOT_ASSETS = ["contracts", "quotes", "positions"]
BARS_ASSET = "bars_1min"

VIEWS = (*DATASET_VIEWS, *DERIVED_VIEWS)


def backfill_universe() -> Universe:
    return parse_universe(BACKFILL_UNIVERSE, source="prove-backfill")


def backfill_definitions(base_url: str, root: Path, clock: Clock, **ibkr: Any) -> dg.Definitions:
    """The real definitions of `BACKFILL_UNIVERSE` on ``root``, talking to ``base_url``;
    ``ibkr`` sets `IbkrClientResource` fields (ca_bundle, token_env, global_per_s...)."""
    resources = {
        "ibkr": IbkrClientResource(base_url=base_url, keepalive_interval_s=None, **ibkr),
        "warehouse": WarehouseResource(root=str(root)),
        "clock": clock,
    }
    return build_definitions(backfill_universe(), resources=resources)


def materialise_backfill(defs: dg.Definitions, **run: Any) -> list[dg.ExecuteInProcessResult]:
    """The small backfill: contracts, quotes and positions in one run, then two sessions of
    one-minute bars in another (a run's assets must share a partitioning)."""
    first = run_assets(defs, SNAPSHOT_ASSETS, **run)
    second = run_assets(defs, [BARS_ASSET], partition_range=BACKFILL_KEYS, **run)
    return [first, second]


def assert_runs_succeeded(results: list[dg.ExecuteInProcessResult]) -> None:
    for result in results:
        summary = summarize_run(result)
        assert summary.success and not summary.failed_checks, (summary.errors, summary.checks)


# --- ground truth ------------------------------------------------------------------------------


def stored_bars(store: Store, conid: int) -> pa.Table:
    table = store.read("bars")
    mine = table.filter(pc.equal(table["conid"], conid))
    return mine.select(HISTORY_BARS.names).cast(HISTORY_BARS).sort_by("ts")


def assert_backfill_equals_truth(
    root: Path, sim: Simulator, counts: Mapping[str, int] | None = None
) -> None:
    """The warehouse holds exactly the simulator's truth for the small backfill, every
    manifest matches its data, nothing is quarantined, and the catalog file shows the same
    rows as a fresh `connect()`. ``counts``: the view counts of a `connect()` already taken
    on this root since its last write (`assert_readable_without_strays` returns them), so as
    not to bind every view again (the crash test checks 21 warehouses)."""
    store = Store(root, clock=sim.clock, catalog=False)
    universe = backfill_universe()
    first, last = (datetime.fromisoformat(k).date() for k in BACKFILL_KEYS)
    for item in universe.instruments:
        conid = CONIDS[item.symbol]
        sessions = calendar_for(item.trading_hours).sessions(first, last)
        truth = sim.truth.history_bars(conid, "1min", sessions[0].rth_open, sessions[-1].rth_close)
        stored = stored_bars(store, conid)
        assert stored.num_rows == truth.num_rows == 2 * 390, item.symbol
        assert stored.equals(truth.sort_by("ts")), f"{item.symbol} bars differ from the truth"
    quotes = store.read("quotes").sort_by("conid")
    assert quotes["conid"].to_pylist() == sorted(CONIDS.values())
    for row in quotes.to_pylist():
        expected = sim.truth.quote(row["conid"])
        for column in ("last", "bid", "ask", "volume", "bid_size", "ask_size"):
            assert row[column] == expected[column], (row["conid"], column)
    positions = store.read("positions")
    for account in sim.truth.accounts:
        mine = positions.filter(pc.equal(positions["account"], account)).sort_by("conid")
        held = sim.truth.positions(account)
        assert mine["conid"].to_pylist() == [p["conid"] for p in held], account
        assert mine["position"].to_pylist() == [float(p["position"]) for p in held]
    for dataset in ("bars", "quotes", "positions", "contracts"):
        manifests = store.manifests(dataset, verify=True)
        assert manifests, dataset
        assert all(m.status == STATUS_OK for m in manifests), [
            (m.partition, m.status) for m in manifests
        ]
    assert store.quarantine().num_rows == 0
    if counts is None:
        counts = view_counts(connect(root))
    assert view_counts_of_catalog(root) == counts


# --- what a reader finds ---------------------------------------------------------------------


def tree(root: Path) -> list[str]:
    """Every file under ``root`` (root-relative, sorted), hidden ones included."""
    return sorted(
        Path(folder, name).relative_to(root).as_posix()
        for folder, _, names in os.walk(root)
        for name in names
    )


def view_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of every dataset and derived view (a view that cannot be read raises)."""
    counts = {}
    for view in VIEWS:
        row = con.execute(f'SELECT count(*) FROM "{view}"').fetchone()
        assert row is not None
        counts[view] = int(row[0])
    return counts


def view_counts_of_catalog(root: Path) -> dict[str, int]:
    con = open_catalog(root)
    try:
        return view_counts(con)
    finally:
        con.close()


def assert_readable_without_strays(root: Path) -> dict[str, int]:
    """What a crash may leave is fine for every reader: each file DuckDB's ``*.parquet``
    globs, the store's manifests or replay's raw-zone listing pick up is complete; anything
    else is a temporary file whose name no reader matches. DuckDB reads every view through
    `connect()` and through the catalog file (when one exists). Returns the view counts."""
    for rel in tree(root):
        name = rel.rsplit("/", 1)[-1]
        path = root / rel
        if is_temp_name(name):
            assert not name.endswith((".parquet", ".json", SUFFIX, ".duckdb")), rel
            continue
        assert not name.startswith("."), f"stray hidden file {rel}"
        if name.endswith(".parquet"):
            pq.ParquetFile(path).read()
        elif name.endswith(MANIFEST_SUFFIX):
            Manifest.from_json(path.read_bytes(), rel)
        elif rel.startswith(f"{RAW}/") and name.endswith(SUFFIX):
            orjson.loads(decompress(path.read_bytes()))
        elif rel != CATALOG_FILE:
            raise AssertionError(f"stray file {rel}: no reader expects it")
    store = Store(root, catalog=False)
    for dataset in DATASETS:
        for manifest in store.manifests(dataset, verify=True):
            assert manifest.status in (STATUS_OK, STATUS_STALE, STATUS_MISSING)
    if not any(rel.endswith(".parquet") or rel == CATALOG_FILE for rel in tree(root)):
        # killed before its first data file: readers say there is no warehouse yet, loudly
        with pytest.raises(WarehouseNotFoundError):
            connect(root)
        return {}
    counts = view_counts(connect(root))
    if (root / CATALOG_FILE).exists():
        view_counts_of_catalog(root)
    return counts


def files_under(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                yield path


def snapshot_tree(folder: Path) -> Mapping[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``folder``, to show nothing else changed."""
    return {
        rel: ((folder / rel).stat().st_size, (folder / rel).stat().st_mtime_ns)
        for rel in tree(folder)
    }
