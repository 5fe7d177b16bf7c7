"""What every materialisation reports in the Dagster UI, built the same way for every asset.

Why: a user looking at a run should see at a glance how many rows landed, for which
instruments, over which time range, how many rows were quarantined and why, how many requests
it cost, and a few rows of the data. One builder keeps that identical across assets.

What it must never do: put configuration values in metadata (a URL may carry nothing secret,
but tokens, cookies and headers must never appear: only counts, names and data rows are used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.dictionary import column_descriptions
from ib_pipeline.storage.store import WriteResult

PREVIEW_ROWS = 10
_MAX_LISTED = 40


def column_schema(schema: pa.Schema, dataset: str | None = None) -> dg.TableSchema:
    """The Arrow schema as Dagster's column schema (shown on the asset's page), each column
    described by the data dictionary (`ib_pipeline.dictionary`) when ``dataset`` is given."""
    described = column_descriptions(dataset, schema.names) if dataset else {}
    columns = []
    for field in schema:
        unit = (field.metadata or {}).get(b"unit")
        description = described.get(field.name) or (f"unit: {unit.decode()}" if unit else None)
        columns.append(
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                description=description,
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
        )
    return dg.TableSchema(columns=columns)


def markdown_table(table: pa.Table, limit: int = PREVIEW_ROWS) -> str:
    """The first ``limit`` rows of ``table`` as a Markdown table."""
    if table.num_rows == 0:
        return "_no rows_"
    head = table.slice(0, limit).to_pylist()
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in head:
        lines.append("| " + " | ".join(_cell(row[name]) for name in names) + " |")
    if table.num_rows > limit:
        lines.append(f"\n_{table.num_rows - limit} more rows_")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def time_range(table: pa.Table, column: str | None) -> str:
    """``first .. last`` of a timestamp column, or ``-`` when there is none."""
    if column is None or column not in table.column_names or table.num_rows == 0:
        return "-"
    bounds = pc.min_max(table.column(column))
    return f"{bounds['min'].as_py().isoformat()} .. {bounds['max'].as_py().isoformat()}"


def listed(names: Sequence[str]) -> str:
    """A short comma-separated list (the first few names and a count of the rest)."""
    if len(names) <= _MAX_LISTED:
        return ", ".join(names)
    return ", ".join(names[:_MAX_LISTED]) + f" and {len(names) - _MAX_LISTED} more"


@dataclass(frozen=True)
class WriteSummary:
    """The writes of one materialisation, added up."""

    rows_written: int
    partitions_written: int
    rows_quarantined: int
    duplicates_collapsed: int
    reasons: dict[str, int]


def summarize(writes: Sequence[WriteResult]) -> WriteSummary:
    reasons: dict[str, int] = {}
    for write in writes:
        for name, count in write.reasons.items():
            reasons[name] = reasons.get(name, 0) + count
    return WriteSummary(
        rows_written=sum(w.rows_valid for w in writes),
        partitions_written=sum(len(w.partitions) for w in writes),
        rows_quarantined=sum(w.rows_quarantined for w in writes),
        duplicates_collapsed=sum(w.duplicates_collapsed for w in writes),
        reasons=reasons,
    )


def load_metadata(
    writes: Sequence[WriteResult],
    *,
    instruments: Sequence[str],
    requests: Mapping[str, int],
    preview: pa.Table | None,
    time_range_text: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata of one materialisation (module doc)."""
    total = summarize(writes)
    metadata: dict[str, Any] = {
        "rows_written": dg.MetadataValue.int(total.rows_written),
        "partitions_written": dg.MetadataValue.int(total.partitions_written),
        "instruments": dg.MetadataValue.int(len(instruments)),
        "instrument_list": dg.MetadataValue.text(listed(list(instruments)) or "-"),
        "time_range": dg.MetadataValue.text(time_range_text),
        "quarantined_rows": dg.MetadataValue.int(total.rows_quarantined),
        "quarantine_reasons": dg.MetadataValue.json(total.reasons),
        "duplicates_collapsed": dg.MetadataValue.int(total.duplicates_collapsed),
        "requests": dg.MetadataValue.int(sum(requests.values())),
        "requests_by_endpoint": dg.MetadataValue.json(dict(sorted(requests.items()))),
        "preview": dg.MetadataValue.md(
            markdown_table(preview) if preview is not None else "_no rows_"
        ),
    }
    if extra:
        metadata.update(extra)
    return metadata
