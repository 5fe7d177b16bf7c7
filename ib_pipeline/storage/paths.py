"""Safe names for partitions: every value that becomes part of a path passes through here.

Why: account ids and other values come from the API, and a value like ``../../etc`` or
``U1'; DROP TABLE`` must never leave the warehouse root nor break a DuckDB glob or view. Values
are checked against a strict pattern (letters, digits, ``_``, ``.``, ``-``; starting with a
letter or digit, so ``.`` and ``..`` are impossible) and rejected with a clear error otherwise;
rows carrying such values are quarantined by the contracts before they reach this module.
This module never touches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ib_pipeline.storage.bar_periods import DATASET as BARS
from ib_pipeline.storage.bar_periods import Granularity, bars_home

SAFE_VALUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""What a partition value (and an account id) may look like."""

_SAFE_VALUE = re.compile(SAFE_VALUE_PATTERN)
_SAFE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SAFE_DATASET = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

DATA_SUFFIX = ".parquet"
MANIFEST_SUFFIX = ".json"
MANIFESTS = "_manifests"
"""Root-level folder of every manifest: ``_manifests/<dataset folder>/<partition>/<stem>.json``.
Outside the data folders, and ``_``-prefixed, so no reader of the data ever meets one."""
LEGACY_MANIFEST_SUFFIX = ".manifest.json"
"""Manifests of the layout before `MANIFESTS` (beside the data file): only recognised, to
refuse an old warehouse with a clear message."""
DEFAULT_STEM = "part"


def dataset_folders(dataset: str) -> tuple[str, ...]:
    """The folders under the root holding ``dataset``'s data files (bars: one per grain)."""
    if dataset == BARS:
        return tuple(dict.fromkeys(grain.home for grain in Granularity))
    return (dataset,)


def safe_value(what: str, value: str) -> str:
    """Return ``value`` if it may appear in a path; raise ValueError naming ``what`` otherwise."""
    if not isinstance(value, str) or _SAFE_VALUE.match(value) is None:
        raise ValueError(
            f"unsafe {what} {value!r} for a warehouse path: it must match {SAFE_VALUE_PATTERN}"
        )
    return value


def safe_dataset(name: str) -> str:
    if not isinstance(name, str) or _SAFE_DATASET.match(name) is None:
        raise ValueError(f"invalid dataset name {name!r}: lower-case letters, digits and '_'")
    return name


@dataclass(frozen=True, order=True)
class Partition:
    """One partition file of a dataset: ``<dataset>/<directory>/<stem>.parquet``.

    ``directory`` is a hive-style path (``bar_size=1min/period=2024-11-26``), empty for an
    unpartitioned dataset; ``stem`` is ``part`` except for datasets keeping several files per
    folder (one quote file per snapshot time). ``home`` is the dataset folder holding it: the
    dataset's name, except bars of hourly and coarser grains (`storage.bar_periods`).
    """

    dataset: str
    directory: str
    stem: str = DEFAULT_STEM

    def __post_init__(self) -> None:
        safe_dataset(self.dataset)
        if self.directory:
            for segment in self.directory.split("/"):
                key, sep, value = segment.partition("=")
                if not sep or _SAFE_KEY.match(key) is None:
                    raise ValueError(f"invalid partition folder {segment!r}: expected key=value")
                safe_value(f"value of partition key {key!r}", value)
        safe_value("partition file name", self.stem)

    @classmethod
    def from_pairs(
        cls, dataset: str, pairs: tuple[tuple[str, str], ...], stem: str = DEFAULT_STEM
    ) -> Partition:
        return cls(dataset, "/".join(f"{key}={value}" for key, value in pairs), stem)

    @classmethod
    def from_id(cls, dataset: str, text: str) -> Partition:
        """Parse a partition id as printed by `id` (``bar_size=1min/period=2024-11-26``)."""
        text = text.strip().strip("/")
        if text in ("", "-"):
            return cls(dataset, "")
        segments = text.split("/")
        stem = DEFAULT_STEM
        if "=" not in segments[-1]:
            stem = segments.pop()
        return cls(dataset, "/".join(segments), stem)

    @property
    def id(self) -> str:
        """The partition's name in manifests, results and the CLI."""
        if self.stem == DEFAULT_STEM:
            return self.directory
        return f"{self.directory}/{self.stem}" if self.directory else self.stem

    @property
    def label(self) -> str:
        return self.id or "(unpartitioned)"

    @property
    def home(self) -> str:
        """The dataset folder under the root (``bars``, ``bars_hourly``, ``quotes``...)."""
        return bars_home(self.directory) if self.dataset == BARS else self.dataset

    @property
    def folder(self) -> str:
        """Root-relative folder holding the data file."""
        return f"{self.home}/{self.directory}" if self.directory else self.home

    @property
    def data_path(self) -> str:
        return f"{self.folder}/{self.stem}{DATA_SUFFIX}"

    @property
    def manifest_path(self) -> str:
        return f"{MANIFESTS}/{self.folder}/{self.stem}{MANIFEST_SUFFIX}"

    @property
    def legacy_manifest_path(self) -> str:
        """Where the layout before `MANIFESTS` kept the manifest (beside the data file)."""
        return f"{self.folder}/{self.stem}{LEGACY_MANIFEST_SUFFIX}"

    @property
    def slug(self) -> str:
        """A single file-name-safe rendering of the id (used to name its quarantine file)."""
        return self.id.replace("/", "__").replace("=", "-") or "all"

    def pairs(self) -> dict[str, str]:
        """The hive keys and values of the folder."""
        if not self.directory:
            return {}
        return dict(segment.split("=", 1) for segment in self.directory.split("/"))


def partition_of_data_path(dataset: str, rel: str) -> Partition:
    """The partition whose data file is at root-relative ``rel`` (as listed by the root)."""
    home = rel.split("/", 1)[0]
    if home not in dataset_folders(dataset) or not rel.endswith(DATA_SUFFIX):
        raise ValueError(f"{rel!r} is not a data file of dataset {dataset!r}")
    inner = rel[len(home) + 1 : -len(DATA_SUFFIX)]
    directory, _, stem = inner.rpartition("/")
    partition = Partition(dataset, directory, stem)
    if partition.data_path != rel:  # e.g. a month folder under bars/: not where it belongs
        raise ValueError(
            f"{rel!r} is not where dataset {dataset!r} keeps that partition "
            f"(expected {partition.data_path!r})"
        )
    return partition
