"""Hostile names never leave the warehouse root, and partition ids round-trip."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ib_pipeline.storage.bar_periods import bar_folder
from ib_pipeline.storage.fs import check_relative, is_temp_name, open_root, temp_name
from ib_pipeline.storage.paths import Partition, partition_of_data_path, safe_value

HOSTILE = ["..", ".", "../etc", "a/b", "U1'; DROP TABLE bars;--", "x\x00y", "", " U1", "a b", "*"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_partition_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        safe_value("account id", value)
    with pytest.raises(ValueError):
        Partition("positions", f"date=2024-11-26/account={value}")


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "./a"])
def test_storage_paths_cannot_escape(rel: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_relative(rel)
    root = open_root(tmp_path / "wh")
    with pytest.raises(ValueError):
        root.write_atomic(rel, b"x")
    assert not any(tmp_path.rglob("x"))


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root_dir = tmp_path / "wh"
    root_dir.mkdir()
    (root_dir / "bars").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes"):
        open_root(root_dir).write_atomic("bars/part.parquet", b"x")
    assert list(outside.iterdir()) == []


def test_symlinked_file_in_a_checked_folder_is_refused(tmp_path: Path) -> None:
    # read_bytes checks a folder once, then opens its files without following symlinks: a
    # file that is a symlink out of the root must still be refused after the folder's check
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not yours")
    folder = tmp_path / "wh" / "raw"
    folder.mkdir(parents=True)
    (folder / "a.json").write_bytes(b"mine")
    (folder / "b.json").symlink_to(secret)
    (folder / "c.json").symlink_to(folder / "a.json")
    root = open_root(tmp_path / "wh")
    assert root.read_bytes("raw/a.json") == b"mine"  # the folder is checked here
    with pytest.raises(ValueError, match="escapes"):
        root.read_bytes("raw/b.json")
    assert root.read_bytes("raw/c.json") == b"mine"  # a symlink inside the root is followed
    with pytest.raises(FileNotFoundError):
        root.read_bytes("raw/missing.json")


def test_partition_ids_round_trip() -> None:
    bars = Partition.from_pairs("bars", (("bar_size", "1min"), ("session_date", "2024-11-26")))
    assert bars.id == "bar_size=1min/session_date=2024-11-26"
    assert bars.data_path == "bars/bar_size=1min/session_date=2024-11-26/part.parquet"
    # manifests live outside the data folders (issue 11): no reader of bars/ meets one
    assert bars.manifest_path == "_manifests/bars/bar_size=1min/session_date=2024-11-26/part.json"
    hourly = Partition.from_id("bars", "bar_size=1h/session_month=2024-11")
    assert hourly.data_path == "bars_hourly/bar_size=1h/session_month=2024-11/part.parquet"
    daily = Partition.from_id("bars", "bar_size=1d/session_year=2024")
    assert daily.data_path == "bars_daily/bar_size=1d/session_year=2024/part.parquet"
    assert daily.manifest_path == "_manifests/bars_daily/bar_size=1d/session_year=2024/part.json"
    quotes = Partition("quotes", "date=2024-11-26", "snapshot-20241126T180000000Z")
    assert quotes.id == "date=2024-11-26/snapshot-20241126T180000000Z"
    for part in (bars, hourly, daily, quotes, Partition("contracts", "")):
        assert Partition.from_id(part.dataset, part.id) == part
        assert partition_of_data_path(part.dataset, part.data_path) == part
    assert Partition("contracts", "").label == "(unpartitioned)"
    assert Partition("contracts", "").manifest_path == "_manifests/contracts/part.json"
    # a month folder under bars/ (the layout before one folder per grain) is not a partition
    with pytest.raises(ValueError, match="not where"):
        partition_of_data_path("bars", "bars/bar_size=1h/session_month=2024-11/part.parquet")


def test_temp_names_never_match_reader_globs() -> None:
    name = temp_name("part.parquet")
    assert name.startswith(".") and not name.endswith(".parquet")
    assert is_temp_name(name) and not is_temp_name("part.parquet")


@pytest.mark.parametrize(
    ("bar", "folder"),
    [
        ("1min", ("session_date", "2024-11-26")),
        ("30min", ("session_date", "2024-11-26")),
        ("1h", ("session_month", "2024-11")),
        ("8h", ("session_month", "2024-11")),
        ("1d", ("session_year", "2024")),
        ("1w", ("session_year", "2024")),
        ("1m", ("session_year", "2024")),
    ],
)
def test_bar_partitions_get_coarser_with_the_bar(bar: str, folder: tuple[str, str]) -> None:
    assert bar_folder(bar, date(2024, 11, 26)) == folder
