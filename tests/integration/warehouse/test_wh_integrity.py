"""Bad input (issue 10 items 5-6, issue 11 "bad input"): a data file damaged in place or a
garbled manifest is reported naming the file, by ``manifest --verify`` and by the readers,
and never aborts the whole warehouse. Each test fails on the code before the fix (said where)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.cli.warehouse import manifest
from ib_pipeline.storage.manifest import STATUS_CORRUPT, STATUS_GARBLED, STATUS_OK
from ib_pipeline.storage.store import Store

AAPL, MSFT = 265598, 272093
HOURS = {AAPL: US_EQUITY, MSFT: US_EQUITY}
D1, D2 = date(2024, 11, 25), date(2024, 11, 26)
P1 = "bar_size=1min/session_date=2024-11-25"
P2 = "bar_size=1min/session_date=2024-11-26"
Bars = Callable[..., pa.Table]


def write(store: Store, table: pa.Table, mode: str = "merge") -> None:
    store.write("bars", table, source={"t": 1}, run_id="r", hours=HOURS, mode=mode)  # type: ignore[arg-type]


def flip_middle(path: Path, count: int = 400) -> None:
    """Damage ``count`` bytes in the middle of a file, keeping its size (the red team's attack)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def test_same_size_corruption_is_found_and_named(store: Store, make_bars: Bars) -> None:
    write(store, make_bars([AAPL, MSFT], D1))
    write(store, make_bars([AAPL, MSFT], D2))
    part = store.partition("bars", P1)
    data = Path(store.url, part.data_path)
    size = data.stat().st_size
    flip_middle(data)
    assert data.stat().st_size == size
    # the size check alone cannot see it; the hash does (before: "stale", blamed on a crash)
    assert store.manifest("bars", P1, verify=True).status == STATUS_CORRUPT
    assert store.manifest("bars", P2, verify=True).status == STATUS_OK
    # reading it names the file (before: a bare "OSError: ZSTD decompression failed")
    with pytest.raises(ValueError, match=f"{part.data_path} is not a readable Parquet file"):
        store.read("bars", P1)
    with pytest.raises(ValueError, match=part.data_path):
        store.read("bars")
    # the command names the file and fails (before: exit 0, "stale" without a path)
    result = CliRunner().invoke(manifest, ["--root", store.url, "--verify"])
    assert result.exit_code == 1, result.output
    assert f"corrupt: {part.data_path}" in result.output
    # a replace of the partition repairs it; the other partition is untouched
    other = Path(store.url, store.partition("bars", P2).data_path).read_bytes()
    write(store, make_bars([AAPL, MSFT], D1), mode="replace")
    assert store.manifest("bars", P1, verify=True).status == STATUS_OK
    assert store.read("bars", P1).num_rows == 780
    assert Path(store.url, store.partition("bars", P2).data_path).read_bytes() == other


def test_a_garbled_manifest_is_reported_not_fatal(store: Store, make_bars: Bars) -> None:
    write(store, make_bars([AAPL], D1))
    write(store, make_bars([AAPL], D2))
    part = store.partition("bars", P1)
    Path(store.url, part.manifest_path).write_bytes(b'{"dataset": "bars", "rows": 3')
    # before: ValueError "manifest ... is not valid JSON" from manifest(), manifests() and
    # the command, for the whole warehouse
    found = store.manifest("bars", P1)
    assert found.status == STATUS_GARBLED and found.rows == 390
    assert [m.status for m in store.manifests("bars")] == [STATUS_GARBLED, STATUS_OK]
    result = CliRunner().invoke(manifest, ["--root", store.url])
    assert result.exit_code == 0, result.output
    assert f"garbled: {part.data_path}" in result.output
    json_out = CliRunner().invoke(manifest, ["bars", "--root", store.url, "--json"])
    assert json_out.exit_code == 0 and '"garbled"' in json_out.output
    # a merge into the partition rewrites the manifest (before: it raised on the garbled one)
    write(store, make_bars([MSFT], D1))
    assert store.manifest("bars", P1, verify=True).status == STATUS_OK


def test_a_truncated_file_without_manifest_is_reported(store: Store, make_bars: Bars) -> None:
    write(store, make_bars([AAPL], D1))
    part = store.partition("bars", P1)
    data = Path(store.url, part.data_path)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    store.root.remove(part.manifest_path)
    assert store.manifest("bars", P1).status == STATUS_CORRUPT
    result = CliRunner().invoke(manifest, ["--root", store.url, "--verify"])
    assert result.exit_code == 1 and f"corrupt: {part.data_path}" in result.output


def test_a_warehouse_of_the_old_layout_is_refused_with_the_fix(
    store: Store, make_bars: Bars
) -> None:
    """Files of the layout before issue 11 (path keys stored in the file; a month folder under
    ``bars/``) make connect() fail naming the file and the fix, not answer wrong rows."""
    from ib_pipeline.storage.listing import LegacyLayoutError  # noqa: PLC0415
    from ib_pipeline.storage.parquet import to_parquet_bytes  # noqa: PLC0415
    from ib_pipeline.warehouse import connect  # noqa: PLC0415

    write(store, make_bars([AAPL], D1))
    old = make_bars([AAPL], D2).append_column("session_date", pa.array([D2] * 390, pa.date32()))
    old_path = f"bars/{P2}/part.parquet"
    store.root.write_atomic(old_path, to_parquet_bytes(old))
    with pytest.raises(LegacyLayoutError, match=rf"{old_path}: .*ib-pipeline replay"):
        connect(store.url)
    # the store still reads it (the path wins), and its next write brings the new layout
    assert store.read("bars", P2).num_rows == 390
    write(store, make_bars([AAPL], D2), mode="replace")
    assert connect(store.url).execute("SELECT count(*) FROM bars").fetchone() == (780,)
    hourly = "bars/bar_size=1h/session_month=2024-11/part.parquet"
    store.root.write_atomic(hourly, to_parquet_bytes(make_bars([AAPL], D1, "1h")))
    with pytest.raises(LegacyLayoutError, match=hourly):
        connect(store.url)
    with pytest.raises(LegacyLayoutError, match=hourly):
        store.partitions("bars")
