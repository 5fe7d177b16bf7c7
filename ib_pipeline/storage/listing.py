"""The data files of each warehouse dataset, grouped the way DuckDB must read them.

Why: a DuckDB view that names its files (``read_parquet([...])``) answers without listing the
partition folders on every query, and without ``union_by_name`` it does not open every file to
learn its columns. Both only hold if the list is right: every data file of the dataset, each
under the partition layout it was written with, and, in one ``read_parquet``, only files that
all have the columns the view selects. This module makes that list.

- `list_dataset` lists a dataset's data files (one listing call per dataset, local or fsspec),
  keeps those matching one of its layouts (`storage.datasets.Layout`) and groups them by
  (layout, stored columns the files lack). A file written before a column was added to its
  dataset lacks it; the view reads it as NULL.
- A file's columns (and row count) come from its Parquet footer, read only when not already
  known: ``known`` holds what a previous listing found (the catalog keeps it). The store only
  ever adds columns to a file it rewrites, never removes one, so a file once known to hold
  every stored column still does; a file known to lack some is read again. Row counts only
  feed DuckDB's cardinality estimate (``explicit_cardinality``): one gone stale after an
  in-place rewrite changes a plan, never a result.

What it must never do: read data pages, guess a file's columns, or accept a file name that
DuckDB would read as a glob pattern.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ib_pipeline.storage.datasets import (
    CORPORATE_ACTIONS,
    CORPORATE_ACTIONS_LAYOUTS,
    CORPORATE_ACTIONS_SCHEMA,
    DATASETS,
    Layout,
)
from ib_pipeline.storage.fs import FsspecRoot, LocalRoot
from ib_pipeline.storage.quarantine import QUARANTINE, QUARANTINE_LAYOUTS, QUARANTINE_SCHEMA

DATA_SUFFIX = ".parquet"

GLOB_CHARS = frozenset("*?[]{}")
"""Characters DuckDB reads as a pattern in a file path: refused in any listed path."""


@dataclass(frozen=True)
class ViewSource:
    """One dataset as the views see it: its folder name, stored schema and layouts."""

    name: str
    schema: pa.Schema
    layouts: tuple[Layout, ...]


VIEW_SOURCES: tuple[ViewSource, ...] = (
    *(ViewSource(spec.name, spec.schema, spec.layouts) for spec in DATASETS.values()),
    ViewSource(QUARANTINE, QUARANTINE_SCHEMA, QUARANTINE_LAYOUTS),
    ViewSource(CORPORATE_ACTIONS, CORPORATE_ACTIONS_SCHEMA, CORPORATE_ACTIONS_LAYOUTS),
)
"""Every dataset with a view of its own, in view order."""

DATA_FOLDERS: tuple[str, ...] = tuple(
    dict.fromkeys(lay.folder or src.name for src in VIEW_SOURCES for lay in src.layouts)
)
"""Every top-level folder of the root holding data files (one hive layout each)."""


@dataclass(frozen=True)
class FileInfo:
    """What the footer of one data file said: its stored columns and its rows."""

    columns: frozenset[str]
    rows: int


@dataclass(frozen=True)
class FileGroup:
    """Files DuckDB can read in one ``read_parquet`` without ``union_by_name``: same layout,
    same stored columns missing (usually none)."""

    layout: Layout
    missing: tuple[str, ...]  # stored columns these files lack, in schema order
    files: tuple[str, ...]  # root-relative paths, sorted
    rows: int  # rows in the files when listed (an estimate once they are rewritten)


@dataclass(frozen=True)
class DatasetListing:
    """What one dataset holds right now, as the views must read it."""

    source: ViewSource
    groups: tuple[FileGroup, ...]
    files: Mapping[str, FileInfo]  # every listed file


def matches(rel: str, pattern: str) -> bool:
    """Segment-wise glob match (``*`` never crosses a ``/``), as DuckDB matches a layout."""
    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, wanted, strict=True)
    )


def check_no_glob(path: str) -> str:
    """Return ``path``; raise ValueError if DuckDB would read it as a pattern."""
    if found := sorted(GLOB_CHARS.intersection(path)):
        raise ValueError(
            f"warehouse path {path!r} contains glob characters {found}; DuckDB would read it "
            "as a pattern: rename it (or choose a root without them)"
        )
    return path


def read_footer(root: LocalRoot | FsspecRoot, rel: str) -> FileInfo:
    """Columns and rows in the footer of data file ``rel`` (no data pages are read)."""
    try:
        if isinstance(root, LocalRoot):
            metadata = pq.read_metadata(root.full(rel))
        else:
            with root.filesystem().open(root.full(rel), "rb") as handle:
                metadata = pq.read_metadata(handle)
        names = metadata.schema.to_arrow_schema().names
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{rel} is not a readable Parquet file: {error}") from None
    return FileInfo(frozenset(names), int(metadata.num_rows))


class LegacyLayoutError(ValueError):
    """The warehouse holds files of the layout before one folder per layout and manifests under
    ``_manifests`` (issue 11); the message names a file and the fix."""


LEGACY_FIX = (
    "this warehouse was written in the layout before manifests moved to _manifests/ and hourly "
    "and daily bars to bars_hourly/ and bars_daily/; rebuild it: move the folder aside and run "
    "`ib-pipeline replay contracts`, then `ib-pipeline replay <dataset>` for each dataset "
    "(from the raw zone), or re-run the backfill"
)


def legacy_error(rel: str, why: str) -> LegacyLayoutError:
    return LegacyLayoutError(f"{rel}: {why}; {LEGACY_FIX}")


def list_dataset(
    root: LocalRoot | FsspecRoot,
    source: ViewSource,
    known: Mapping[str, FileInfo] | None = None,
) -> DatasetListing:
    """The data files of ``source`` under ``root``, grouped for DuckDB. ``known``: files of an
    earlier listing; only files not known to hold every stored column have their footer read.
    Each layout's folder is listed once; a file there matching no layout is not a data file and
    is left out (as a layout glob would have left it), except a ``.parquet`` file of the layout
    before issue 11 (a month or year folder under ``bars/``), and a file that stores a column
    its folders name: both raise `LegacyLayoutError` naming the file and the fix."""
    stored = frozenset(source.schema.names)
    known = known or {}
    files: dict[str, FileInfo] = {}
    grouped: dict[tuple[int, tuple[str, ...]], list[str]] = {}
    homes: dict[str, list[int]] = {}
    for position, lay in enumerate(source.layouts):
        homes.setdefault(lay.folder or source.name, []).append(position)
    for home, indices in homes.items():
        prefix = len(home) + 1
        for rel in root.files(home, DATA_SUFFIX):
            inner = rel[prefix:]
            found_at = next((i for i in indices if matches(inner, source.layouts[i].pattern)), None)
            if found_at is None:
                if any(matches(inner, lay.pattern) for lay in source.layouts):
                    raise legacy_error(rel, "a partition in another grain's folder")
                continue
            index = found_at
            check_no_glob(rel)
            # a column named by the layout's folders comes from the path, not from the file
            from_path = {key for key, _ in source.layouts[index].keys}
            before = known.get(rel)
            if before is None or not before.columns >= stored - from_path:
                found = read_footer(root, rel)
                before = FileInfo(found.columns & stored, found.rows)
            if repeated := sorted(before.columns & from_path):
                raise legacy_error(rel, f"the file stores its partition key(s) {repeated}")
            files[rel] = before
            missing = tuple(
                n for n in source.schema.names if n not in before.columns and n not in from_path
            )
            grouped.setdefault((index, missing), []).append(rel)
    groups = tuple(
        FileGroup(
            source.layouts[index],
            missing,
            tuple(sorted(rels)),
            sum(files[rel].rows for rel in rels),
        )
        for (index, missing), rels in sorted(grouped.items())
    )
    return DatasetListing(source, groups, files)


def list_all(
    root: LocalRoot | FsspecRoot, known: Mapping[str, FileInfo] | None = None
) -> list[DatasetListing]:
    """`list_dataset` for every view source, in view order."""
    return [list_dataset(root, source, known) for source in VIEW_SOURCES]


def known_files(listings: Sequence[DatasetListing]) -> dict[str, FileInfo]:
    """Every listed file: the ``known`` of the next listing."""
    return {rel: info for listing in listings for rel, info in listing.files.items()}
