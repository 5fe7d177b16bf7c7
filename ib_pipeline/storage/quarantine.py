"""Quarantine records: rejected rows with why, where from, and when, kept beside the clean data.

Why: a row the contracts reject must never be lost silently nor enter the clean dataset. Each
rejected row is kept with its failed check names, its original values as JSON text (non-finite
floats spelled ``"NaN"``/``"Infinity"``/``"-Infinity"``, timestamps ISO-8601 UTC), its key, the
partition it was meant for, the source request, the run id and the time.

Layout: ``quarantine/dataset=<name>/q-<hash>.parquet``, one file per distinct set of rejected
rows, named by the hash of its content (checks, values, source; not the run id or time). The
quarantine is therefore a log that re-runs cannot inflate: re-rejecting the same rows rewrites
the same file (with the latest run id and time), and a later fix of the normaliser leaves the
old rejection visible as history. This module builds records; the store writes them.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.ibkr.tables import TS
from ib_pipeline.storage.datasets import SESSION_DATE, DatasetSpec, Layout
from ib_pipeline.storage.manifest import iso_ms

QUARANTINE = "quarantine"
FAILED_CHECKS = "failed_checks"

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("partition", pa.string(), nullable=False),
        pa.field("failed_checks", pa.string(), nullable=False),
        pa.field("key_json", pa.string(), nullable=False),
        pa.field("row_json", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("quarantined_at", TS, nullable=False),
    ]
)
"""The columns of the quarantine dataset (``partition`` is empty when the row's values do not
name a valid partition, e.g. an unknown bar size or an unsafe account id)."""


QUARANTINE_LAYOUTS = (Layout("dataset=*/*.parquet", (("dataset", "VARCHAR"),)),)
"""How DuckDB reads the quarantine folder (``dataset`` is also a column of every file)."""


def json_value(value: Any) -> Any:
    """A JSON-safe rendering of one original value that keeps what made it wrong."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        return iso_ms(round(value.timestamp() * 1000))
    if isinstance(value, date):
        return value.isoformat()
    return value


def _json_text(row: dict[str, Any]) -> str:
    return orjson.dumps({k: json_value(v) for k, v in row.items()}).decode()


def _target_partitions(spec: DatasetSpec, rejected: pa.Table) -> list[str]:
    """The partition id each rejected row was meant for, or "" if its values name none."""
    table = rejected.drop_columns([FAILED_CHECKS])
    if SESSION_DATE.name in table.column_names:
        dates = table.column(SESSION_DATE.name)
        fallback = pc.cast(table.column("ts"), pa.date32())
        filled = pc.if_else(pc.is_null(dates), fallback, dates)
        index = table.column_names.index(SESSION_DATE.name)
        table = table.set_column(index, SESSION_DATE.name, filled)
    targets = [""] * table.num_rows
    try:
        for partition, rows in spec.group(table):
            for row in rows:
                targets[int(row)] = partition.id
        return targets
    except (ValueError, TypeError, pa.ArrowException):
        pass  # some row names no valid partition: find out which, one row at a time
    for row in range(table.num_rows):
        try:
            groups = spec.group(table.slice(row, 1))
        except (ValueError, TypeError, pa.ArrowException):
            continue
        targets[row] = groups[0][0].id if groups else ""
    return targets


def quarantine_records(
    spec: DatasetSpec, rejected: pa.Table, *, source: str, run_id: str, at_ms: int
) -> pa.Table:
    """Quarantine rows for ``rejected`` (a `schemas.ValidationResult.rejected` table)."""
    n = rejected.num_rows
    if n == 0:
        return QUARANTINE_SCHEMA.empty_table()
    original = [
        name for name in rejected.column_names if name not in (FAILED_CHECKS, "session_date")
    ]
    rows = rejected.select(original).to_pylist()
    key_texts = [_json_text({k: row[k] for k in spec.key}) for row in rows]
    return pa.table(
        {
            "dataset": pa.array([spec.name] * n, pa.string()),
            "partition": pa.array(_target_partitions(spec, rejected), pa.string()),
            "failed_checks": rejected.column(FAILED_CHECKS).combine_chunks(),
            "key_json": pa.array(key_texts, pa.string()),
            "row_json": pa.array([_json_text(row) for row in rows], pa.string()),
            "source": pa.array([source] * n, pa.string()),
            "run_id": pa.array([run_id] * n, pa.string()),
            "quarantined_at": pc.cast(pa.array(np.full(n, at_ms, dtype=np.int64)), TS),
        },
        schema=QUARANTINE_SCHEMA,
    )


def quarantine_file(dataset: str, records: pa.Table) -> str:
    """Root-relative path of the file holding ``records``: named by their content (checks,
    values, source) so that re-quarantining the same rows overwrites the same file."""
    digest = hashlib.sha256(dataset.encode())
    for name in ("failed_checks", "row_json", "source"):
        for value in records.column(name).to_pylist():
            digest.update(b"\x00" + str(value).encode())
    return f"{QUARANTINE}/dataset={dataset}/q-{digest.hexdigest()[:20]}.parquet"
