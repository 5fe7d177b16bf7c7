"""What one partition holds: rows, key range, where it came from, and the hash of its bytes.

Why: a researcher (or a check) must be able to answer "what is in this partition, from which
requests, written by which run" without scanning it, and to notice when the manifest and the
data disagree. The manifest is written atomically AFTER the data file, so after a crash between
the two it describes the previous data; readers compare ``content_sha256``/``size_bytes``
against the file and report ``stale`` rather than trusting it.

JSON, one file per partition under the root's ``_manifests/`` folder, at the data file's path
(``_manifests/bars/bar_size=1min/session_date=2024-11-26/part.json`` for
``bars/bar_size=1min/session_date=2024-11-26/part.parquet``; `storage.paths.MANIFESTS`): never
inside a data folder, where plain readers would trip on it. This module builds and parses
manifests; it never writes them (the store does, through `fs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

FORMAT_VERSION = 1

STATUS_OK = "ok"  # the data file is the one the manifest describes
STATUS_STALE = "stale"  # the data file changed after the manifest was written
STATUS_MISSING = "missing"  # data without a manifest (crash before the first manifest)
STATUS_GARBLED = "garbled"  # a manifest that is not valid JSON (or lacks fields): as missing
STATUS_CORRUPT = "corrupt"  # the data file does not decode (damaged or truncated bytes)
STATUS_UNCHECKED = "unchecked"  # as parsed, before a reader compared it with the data

MD_AVAILABILITY_KEY = "md_availability"
"""The key of a history page's source holding its ``mdAvailability`` code (set by
`ib_pipeline.conversion`; read by `Manifest.market_data_availability`)."""


@dataclass(frozen=True)
class Manifest:
    """The manifest of one partition. ``status`` is set by readers, never stored."""

    dataset: str
    partition: str
    data_file: str
    rows: int
    content_sha256: str
    size_bytes: int
    time_column: str | None
    time_min: str | None
    time_max: str | None
    key_range: dict[str, Any]
    conids: list[int]
    sources: list[Any]
    run_id: str
    written_at: str
    quarantined_rows: int  # rows of the latest load meant for this partition, quarantined
    format_version: int = FORMAT_VERSION
    status: str = field(default=STATUS_UNCHECKED, compare=False)

    def to_json(self) -> bytes:
        # Fields as they are (no ``asdict``: its deep copy of every source cost more than the
        # encoding); orjson walks the plain lists and dicts itself.
        body = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "status"}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as error:  # a ValueError: callers treat it as garbled
            raise ValueError(f"manifest {where} is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise ValueError(f"manifest {where} is not a JSON object")
        known = {f for f in cls.__dataclass_fields__ if f != "status"}
        missing = sorted(known - set(body) - {"format_version"})
        if missing:
            raise ValueError(f"manifest {where} lacks fields {missing}")
        try:
            return cls(**{k: v for k, v in body.items() if k in known})
        except TypeError as error:
            raise ValueError(f"manifest {where} is not a manifest: {error}") from None

    def with_status(self, status: str) -> Manifest:
        return replace(self, status=status)

    def market_data_availability(self) -> dict[int, str]:
        """conid -> the market-data availability code (``mdAvailability``: ``S``/``R``
        real-time, ``D`` delayed, ...) of the newest history answer that wrote its bars here.

        Read from ``sources``, where each history page's source keeps the code
        (`MD_AVAILABILITY_KEY`): a refetch replaces an instrument's bars and adds its newer
        source, so the newest answer per conid describes the stored bars. Conids whose answers
        carried no code (older gateways, manifests written before the code was kept) are absent.
        """
        newest: dict[int, tuple[str, str]] = {}
        for source in self.sources:
            if not isinstance(source, dict):
                continue
            code = source.get(MD_AVAILABILITY_KEY)
            params = source.get("params")
            if not isinstance(code, str) or not isinstance(params, dict):
                continue
            try:
                conid = int(params["conid"])
            except (KeyError, TypeError, ValueError):
                continue
            fetched = str(source.get("fetched_at", ""))
            if conid not in newest or fetched >= newest[conid][0]:
                newest[conid] = (fetched, code)
        return {conid: code for conid, (_, code) in sorted(newest.items())}


def iso_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _json_scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_ms(round(value.timestamp() * 1000))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def describe(
    table: pa.Table, key: Sequence[str], time_column: str | None
) -> tuple[str | None, str | None, dict[str, Any], list[int]]:
    """Time range, per-key-column range (min, max, distinct count) and distinct conids."""
    time_min = time_max = None
    if time_column is not None and table.num_rows:
        bounds = pc.min_max(table.column(time_column))
        time_min = _json_scalar(bounds["min"].as_py())
        time_max = _json_scalar(bounds["max"].as_py())
    key_range: dict[str, Any] = {}
    for name in key:
        column = table.column(name)
        if table.num_rows == 0:
            key_range[name] = {"min": None, "max": None, "distinct": 0}
            continue
        bounds = pc.min_max(column)
        key_range[name] = {
            "min": _json_scalar(bounds["min"].as_py()),
            "max": _json_scalar(bounds["max"].as_py()),
            "distinct": int(pc.count_distinct(column).as_py()),
        }
    conids: list[int] = []
    if "conid" in table.column_names and table.num_rows:
        conids = sorted(int(c) for c in pc.unique(table.column("conid")).to_pylist())
    return time_min, time_max, key_range, conids


def merge_sources(previous: Sequence[Any], new: Sequence[Any]) -> list[Any]:
    """Sources of a merged partition: the previous ones, then new ones not seen before."""
    seen = {orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for s in previous}
    merged = list(previous)
    for source in new:
        encoded = orjson.dumps(source, option=orjson.OPT_SORT_KEYS)
        if encoded not in seen:
            seen.add(encoded)
            merged.append(source)
    return merged


def source_json(source: Mapping[str, Any] | str) -> bytes:
    """A batch's source description as sorted-key JSON (values JSON cannot hold as text):
    the bytes a quarantine record carries; decoded, the value a manifest lists."""
    return orjson.dumps(source, option=orjson.OPT_SORT_KEYS, default=str)
