"""DuckDB over the warehouse: `connect()` for notebooks and scripts, and the catalog file.

Why: researchers query Parquet through DuckDB views, never through file paths. `connect()`
returns an in-memory DuckDB connection with one view per dataset (``bars``, ``quotes``,
``positions``, ``account_summary``, ``contracts``, ``accounts``, ``orders``, ``quarantine``) and
derived views (``bars_with_symbols``, ``daily_ohlcv``, ``latest_positions``,
``latest_account_summary``, ``latest_quotes``). ``<root>/warehouse.duckdb`` holds the same views
so ``duckdb warehouse/warehouse.duckdb`` works straight away; the store rebuilds it after writes
(into a temporary file, then an atomic replace).

- A view reads each partition layout of its dataset (`storage.datasets.Layout`: bars by day,
  month or year) with ``hive_partitioning``, fixed hive key types and ``union_by_name``, and
  unions the layouts by name. Filters on ``session_date`` (bars), ``date`` (snapshots) skip
  whole files. A dataset without files gets a typed empty view, so queries work before the
  first load; `connect()` looks at the files when called (reconnect after a first load).
- `connect()` turns on DuckDB's Parquet metadata cache, so repeated queries do not re-read
  every file footer.
- Object-store roots: the fsspec filesystem is registered with the connection.
- No SQL injection: view names and columns are fixed identifiers from `storage.datasets`; the
  root path only appears inside a single-quoted SQL string with quotes doubled, and a root
  containing glob characters (``*?[]{}``) is refused rather than misread.

This module never writes data files; it only reads them and writes the catalog.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.storage.datasets import DATASETS, DatasetSpec, Layout
from ib_pipeline.storage.fs import FsspecRoot, LocalRoot, open_root
from ib_pipeline.storage.quarantine import QUARANTINE, QUARANTINE_LAYOUTS, QUARANTINE_SCHEMA
from ib_pipeline.timeframes import BAR_SIZES

CATALOG_FILE = "warehouse.duckdb"

_GLOB_CHARS = frozenset("*?[]{}")

_INTRADAY = ", ".join(f"'{label}'" for label, bar in BAR_SIZES.items() if bar.is_intraday)

DERIVED_VIEWS: dict[str, str] = {
    "bars_with_symbols": """
        SELECT b.*, c.symbol, c.sec_type, c.company_name
        FROM bars AS b LEFT JOIN contracts AS c USING (conid)""",
    "daily_ohlcv": f"""
        SELECT conid, bar_size, session_date,
               arg_min(open, ts) AS open, max(high) AS high, min(low) AS low,
               arg_max(close, ts) AS close, sum(volume) AS volume,
               sum(close * volume) / nullif(sum(volume), 0) AS vwap,
               count(*) AS bars, min(ts) AS first_ts, max(ts) AS last_ts
        FROM bars WHERE bar_size IN ({_INTRADAY})
        GROUP BY conid, bar_size, session_date""",
    "latest_positions": """
        SELECT * FROM positions
        QUALIFY as_of = max(as_of) OVER (PARTITION BY account)""",
    "latest_account_summary": """
        SELECT * FROM account_summary
        QUALIFY as_of = max(as_of) OVER (PARTITION BY account)""",
    "latest_quotes": """
        SELECT * FROM quotes
        QUALIFY row_number() OVER (PARTITION BY conid ORDER BY as_of DESC, updated DESC) = 1""",
}
"""Views built on the dataset views: what researchers ask for most."""

DATASET_VIEWS: tuple[str, ...] = (*DATASETS, QUARANTINE)
"""Names of the views with one dataset behind each."""


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type DuckDB itself reads for an Arrow column written to Parquet."""
    if pa.types.is_int64(arrow_type):
        return "BIGINT"
    if pa.types.is_int32(arrow_type):
        return "INTEGER"
    if pa.types.is_float64(arrow_type):
        return "DOUBLE"
    if pa.types.is_string(arrow_type):
        return "VARCHAR"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_date32(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP WITH TIME ZONE" if arrow_type.tz else "TIMESTAMP"
    raise ValueError(f"no DuckDB type mapping for Arrow type {arrow_type}")


def sql_string(text: str) -> str:
    """``text`` as a single-quoted SQL string literal."""
    if "\x00" in text:
        raise ValueError("a SQL string cannot contain NUL bytes")
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _matches(rel: str, pattern: str) -> bool:
    """Segment-wise glob match (``*`` never crosses a ``/``)."""
    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, wanted, strict=True)
    )


def _check_base(base: str) -> str:
    if any(ch in base for ch in _GLOB_CHARS):
        raise ValueError(
            f"warehouse path {base!r} contains glob characters {sorted(_GLOB_CHARS)}; "
            "DuckDB would read them as a pattern: choose a root without them"
        )
    return base


def dataset_view_sql(
    name: str, schema: pa.Schema, layouts: Sequence[Layout], base: str, present: Sequence[Layout]
) -> str:
    """``CREATE OR REPLACE VIEW`` for one dataset: the union by name of a ``read_parquet`` per
    layout ``present`` under ``base`` (the dataset folder as DuckDB should see it), or a typed
    empty view when none is."""
    types = {f.name: duckdb_type(f.type) for f in schema}
    for layout in layouts:
        types.update({key: kind for key, kind in layout.keys if key in layout.exposed})
    columns = list(dict.fromkeys([*schema.names, *(k for lay in layouts for k in lay.exposed)]))
    if not present:
        select = ", ".join(f"CAST(NULL AS {types[c]}) AS {_ident(c)}" for c in columns)
        return f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT {select} WHERE false"
    _check_base(base)
    branches = []
    for layout in present:
        if layout.keys:
            hive = ", ".join(f"{sql_string(key)}: {kind}" for key, kind in layout.keys)
            options = f"hive_partitioning = true, union_by_name = true, hive_types = {{{hive}}}"
        else:
            options = "hive_partitioning = false, union_by_name = true"
        names = [*schema.names, *layout.exposed]
        select = ", ".join(_ident(c) for c in names)
        pattern = sql_string(f"{base}/{layout.pattern}")
        branches.append(f"SELECT {select} FROM read_parquet({pattern}, {options})")
    if len(branches) == 1:
        body = branches[0]
    else:
        body = " UNION ALL BY NAME ".join(f"({branch})" for branch in branches)
        body = f"SELECT {', '.join(_ident(c) for c in columns)} FROM ({body})"
    return f"CREATE OR REPLACE VIEW {_ident(name)} AS {body}"


def _datasets() -> list[tuple[str, pa.Schema, tuple[Layout, ...]]]:
    found = [(spec.name, spec.schema, spec.layouts) for spec in DATASETS.values()]
    found.append((QUARANTINE, QUARANTINE_SCHEMA, QUARANTINE_LAYOUTS))
    return found


def views_sql(root: LocalRoot | FsspecRoot, base_url: str) -> list[str]:
    """Every view's SQL for ``root``, with dataset folders under ``base_url`` (the root as the
    reader will see it: an absolute path, a path relative to the repo, or a URL)."""
    statements = []
    for name, schema, layouts in _datasets():
        files = [rel[len(name) + 1 :] for rel in root.files(name, ".parquet")]
        present = [lay for lay in layouts if any(_matches(f, lay.pattern) for f in files)]
        statements.append(dataset_view_sql(name, schema, layouts, f"{base_url}/{name}", present))
    for name, body in DERIVED_VIEWS.items():
        statements.append(f"CREATE OR REPLACE VIEW {_ident(name)} AS {body.strip()}")
    return statements


def _open(root: str | os.PathLike[str] | Any | None) -> LocalRoot | FsspecRoot:
    return open_root(WarehouseSettings.from_env().root if root is None else root)


def connect(
    root: str | os.PathLike[str] | Any | None = None,
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the warehouse's views (root: default from the settings).

    Times are shown in UTC. Pass ``connection`` to add the views to an existing connection.
    """
    opened = _open(root)
    con = duckdb.connect() if connection is None else connection
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET parquet_metadata_cache = true")
    filesystem = opened.filesystem()
    if filesystem is not None:
        con.register_filesystem(filesystem)
    for statement in views_sql(opened, opened.url):
        con.execute(statement)
    return con


def catalog_base(root: LocalRoot | FsspecRoot, cwd: Path | None = None) -> str:
    """How the catalog's views name the root: relative to the working directory when the root
    is inside it (so ``duckdb warehouse/warehouse.duckdb`` works from the repo root and the
    repo can move), else the absolute path or URL."""
    if isinstance(root, LocalRoot):
        here = (cwd or Path.cwd()).resolve()
        target = root.path.resolve()
        if target.is_relative_to(here):
            return target.relative_to(here).as_posix() or "."
    return root.url


def refresh_catalog(root: str | os.PathLike[str] | Any | None = None) -> str:
    """Rebuild ``<root>/warehouse.duckdb`` atomically; return its path or URL."""
    opened = _open(root)
    statements = views_sql(opened, catalog_base(opened))
    return write_catalog(opened, statements)


def write_catalog(root: LocalRoot | FsspecRoot, statements: list[str]) -> str:
    """Build a DuckDB file holding ``statements`` in a private temp folder, then put it at
    ``<root>/warehouse.duckdb`` in one atomic write."""
    with tempfile.TemporaryDirectory(prefix="ib-catalog-") as folder:
        path = Path(folder, CATALOG_FILE)
        con = duckdb.connect(str(path))
        try:
            filesystem = root.filesystem()
            if filesystem is not None:
                con.register_filesystem(filesystem)  # views are bound (checked) when created
            for statement in statements:
                con.execute(statement)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        root.write_atomic(CATALOG_FILE, path.read_bytes())
    return root.full(CATALOG_FILE)


def dataset_names() -> list[str]:
    return list(DATASET_VIEWS)


def spec_of_view(name: str) -> DatasetSpec | None:
    return DATASETS.get(name)
