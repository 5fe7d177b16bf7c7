"""DuckDB over the warehouse: `connect()` for notebooks and scripts, and the catalog file.

Why: researchers query Parquet through DuckDB views, never through file paths. `connect()`
returns an in-memory DuckDB connection with one view per dataset (``bars``, ``quotes``,
``positions``, ``account_summary``, ``contracts``, ``accounts``, ``orders``, ``quarantine``,
``corporate_actions``) and derived views (``bars_with_symbols``, ``bars_as_traded``,
``daily_ohlcv``, ``latest_positions``,
``latest_account_summary``, ``latest_quotes``). ``<root>/warehouse.duckdb`` holds the same views
so ``duckdb warehouse/warehouse.duckdb`` works straight away; the store rebuilds it after every
write that changes them (into a temporary file, then an atomic replace).

Views name their files
----------------------
A dataset view is ``read_parquet([<every data file>], hive_partitioning, hive_types,
explicit_cardinality)``, one per group of `storage.listing` (layout x columns the files lack,
nearly always a single group), unioned by name. Naming the files, rather than globbing the
partition folders, spares every query the folder listing; grouping files by columns spares it
``union_by_name`` (which opens every file); the row count known at listing time spares the
optimizer opening files for its estimate. Together a few milliseconds per query, most of the
cost of a small one. Filters on ``session_date`` (bars) or ``date`` (snapshots) skip whole files
before any is opened, by the folder names; prefer them to ``ts`` ranges, which DuckDB can only
check against each file's row-group statistics (files are sorted by conid then time, so one
instrument's rows sit in few row groups). A dataset without files gets a typed empty view.

What a view still costs, and why the layout stays one file per session (DuckDB 2.0.1, measured
with `bench.query_latency`): DuckDB expands, ``stat``s and filters every file a ``read_parquet``
names on every query before it opens the ones it keeps, ~10-20 us per file (its figure
``listed_file_us``), and a view of the single file a one-day query reads already costs ~1.4x
the same query on a native table (``vwap_one_day_one_file_ms``). Coarser files do not buy that
back: in monthly files a ``session_date`` filter can no longer skip files by folder, so DuckDB
opens every file for its row-group statistics (5 monthly files: 2.38x native, against 2.14x for
the 100 session files, same rows, same process), and a filter on ``session_date`` is not carried
over to a ``session_month`` folder key.

Freshness rule (what a reader sees, and when)
---------------------------------------------
- `connect()` lists the data files when it is called. Partitions rewritten in place later
  (merges, replays) are seen at once: the view names the file, and the file is replaced
  atomically. Partitions *created* later (a new session date, a new account) are seen after
  `refresh(con)` (or a new `connect()`); call it in a long-lived notebook after loads.
- The catalog file is rebuilt by every write that adds a file, so a DuckDB session opened
  after a load sees it; a session kept open across a load must re-open the file. On a local
  root, rebuilds are serialised by a lock on the root, so the last one lists every finished
  write; object stores have no locks, and two writers finishing together may leave the
  catalog without the other's new partition until the next write (`connect()` is unaffected).
- The listing behind the views is kept in the catalog (schema ``ib_catalog``) so that a rebuild
  or a `connect()` reads the footers of new files only (`storage.listing`).

DuckDB settings: `connect()` turns on the Parquet metadata cache (``parquet_metadata_cache``),
so repeated queries do not re-read file footers, and for a local root turns off read-ahead and
the file-block cache, meant for remote files (`LOCAL_SETTINGS`); a DuckDB file cannot store
settings, so in the DuckDB CLI run them by hand (or put them in ``~/.duckdbrc``). The views give
the same rows either way.

- Object-store roots: the fsspec filesystem is registered with the connection.
- No SQL injection: view names and columns are fixed identifiers from `storage.datasets`; paths
  only appear inside single-quoted SQL strings with quotes doubled, and a path containing glob
  characters (``*?[]{}``) is refused rather than misread.

This module never writes data files; it only reads them and writes the catalog.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import tempfile
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ib_pipeline import dictionary
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.storage.datasets import CORPORATE_ACTIONS, DATASETS
from ib_pipeline.storage.fs import FsspecRoot, LocalRoot, open_root
from ib_pipeline.storage.listing import (
    DATA_FOLDERS,
    DatasetListing,
    FileGroup,
    FileInfo,
    check_no_glob,
    known_files,
    list_all,
)
from ib_pipeline.storage.quarantine import QUARANTINE
from ib_pipeline.storage.scratch import scratch_folder
from ib_pipeline.timeframes import BAR_SIZES

CATALOG_FILE = "warehouse.duckdb"
CATALOG_STORAGE_VERSION = "v1.0.0"
"""The DuckDB storage format of the catalog file: the oldest this DuckDB writes, so that the
DuckDB command line a user installs from PyPI (which may be older than the library we pin)
opens it; the file holds only views and two small tables."""
CATALOG_SCHEMA = "ib_catalog"
"""Schema of the catalog file holding the listing its views were built from."""

_INTRADAY = ", ".join(f"'{label}'" for label, bar in BAR_SIZES.items() if bar.is_intraday)

FUTURES_DEFAULT_DAYS_BEFORE_LTD = 8
"""The roll of the ``futures_rolls`` and ``futures_continuous`` views: front month, rolled 8
calendar days before its last trade date (`ib_pipeline.universe.DEFAULT_DAYS_BEFORE_LTD`); the
table macros ``futures_rolls_by(days)`` and ``futures_continuous_by(days)`` take another."""

DERIVED_MACROS: dict[str, str] = {
    # The contract months of the rolled roots: contracts rows of type FUT with a last trade
    # date (``expiry``), each in force from the previous month's roll date to its own.
    "futures_schedule_by": """
        (days_before_ltd) AS TABLE
        SELECT symbol AS root, conid, CAST(expiry AS DATE) AS ltd,
               CAST(CAST(expiry AS DATE) - to_days(CAST(days_before_ltd AS INTEGER)) AS DATE)
                   AS roll_date,
               lag(CAST(CAST(expiry AS DATE) - to_days(CAST(days_before_ltd AS INTEGER)) AS DATE))
                   OVER (PARTITION BY symbol ORDER BY CAST(expiry AS DATE)) AS from_date,
               lead(conid) OVER (PARTITION BY symbol ORDER BY CAST(expiry AS DATE))
                   AS next_conid
        FROM (SELECT DISTINCT conid, symbol, expiry FROM contracts
              WHERE sec_type = 'FUT' AND expiry IS NOT NULL)""",
    "futures_rolls_by": """
        (days_before_ltd) AS TABLE
        SELECT s.root, o.bar_size, s.roll_date, s.conid AS from_conid,
               s.next_conid AS to_conid, n.close - o.close AS gap, o.ts AS gap_ts
        FROM futures_schedule_by(days_before_ltd) AS s
        JOIN bars AS o ON o.conid = s.conid AND o.session_date < s.roll_date
        JOIN bars AS n ON n.conid = s.next_conid AND n.bar_size = o.bar_size AND n.ts = o.ts
        WHERE s.next_conid IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY s.root, o.bar_size, s.roll_date
                                   ORDER BY o.ts DESC) = 1""",
    "futures_continuous_by": """
        (days_before_ltd) AS TABLE
        SELECT s.root, b.bar_size, b.ts, b.session_date, b.conid,
               b.open, b.high, b.low, b.close, b.volume,
               coalesce(a.adjustment, 0.0) AS adjustment,
               b.open + coalesce(a.adjustment, 0.0) AS adj_open,
               b.high + coalesce(a.adjustment, 0.0) AS adj_high,
               b.low + coalesce(a.adjustment, 0.0) AS adj_low,
               b.close + coalesce(a.adjustment, 0.0) AS adj_close
        FROM futures_schedule_by(days_before_ltd) AS s
        JOIN bars AS b ON b.conid = s.conid AND b.session_date < s.roll_date
             AND (s.from_date IS NULL OR b.session_date >= s.from_date)
        LEFT JOIN LATERAL (SELECT sum(r.gap) AS adjustment
                           FROM futures_rolls_by(days_before_ltd) AS r
                           WHERE r.root = s.root AND r.bar_size = b.bar_size
                             AND r.roll_date > b.session_date) AS a ON true""",
}
"""Table macros built on the dataset views (before `DERIVED_VIEWS`, which use them)."""

DERIVED_VIEWS: dict[str, str] = {
    "futures_rolls": f"SELECT * FROM futures_rolls_by({FUTURES_DEFAULT_DAYS_BEFORE_LTD})",
    "futures_continuous": f"""
        SELECT * FROM futures_continuous_by({FUTURES_DEFAULT_DAYS_BEFORE_LTD})""",
    "bars_with_symbols": """
        SELECT b.*, c.symbol, c.sec_type, c.company_name
        FROM bars AS b LEFT JOIN contracts AS c USING (conid)""",
    "daily_ohlcv": f"""
        SELECT d.conid, c.symbol, d.bar_size, d.session_date, d.open, d.high, d.low, d.close,
               d.volume, d.vwap_approx, d.bars, d.first_ts, d.last_ts
        FROM (SELECT conid, bar_size, session_date,
                     arg_min(open, ts) AS open, max(high) AS high, min(low) AS low,
                     arg_max(close, ts) AS close, sum(volume) AS volume,
                     sum(close * volume) / nullif(sum(volume), 0) AS vwap_approx,
                     count(*) AS bars, min(ts) AS first_ts, max(ts) AS last_ts
              FROM bars WHERE bar_size IN ({_INTRADAY})
              GROUP BY conid, bar_size, session_date) AS d
        LEFT JOIN contracts AS c USING (conid)""",
    "bars_as_traded": """
        SELECT b.* REPLACE (b.open * f.factor AS open, b.high * f.factor AS high,
                            b.low * f.factor AS low, b.close * f.factor AS close,
                            b.volume / f.factor AS volume)
        FROM bars AS b,
             LATERAL (SELECT coalesce(product(a.ratio), 1.0) AS factor
                      FROM corporate_actions AS a
                      WHERE a.conid = b.conid AND a.bar_size = b.bar_size
                        AND a.action = 'split' AND a.effective_date > b.session_date) AS f""",
    "latest_positions": """
        SELECT * FROM (
            SELECT * FROM positions
            QUALIFY as_of = max(as_of) OVER (PARTITION BY account)
        ) WHERE conid <> 0""",
    "latest_account_summary": """
        SELECT * FROM account_summary
        QUALIFY as_of = max(as_of) OVER (PARTITION BY account)""",
    "latest_quotes": """
        SELECT * FROM quotes
        QUALIFY row_number() OVER (PARTITION BY conid ORDER BY as_of DESC, updated DESC) = 1""",
}
"""Views built on the dataset views: what researchers ask for most."""

DATASET_VIEWS: tuple[str, ...] = (*DATASETS, QUARANTINE, CORPORATE_ACTIONS)
"""Names of the views with one dataset behind each."""

SETTINGS: tuple[str, ...] = ("SET TimeZone = 'UTC'", "SET parquet_metadata_cache = true")
"""What `connect()` sets on its connection: times shown in UTC; file footers kept between
queries (checked against the file's modification time, so a rewrite is still seen)."""

LOCAL_SETTINGS: tuple[str, ...] = (
    *SETTINGS,
    "SET disable_parquet_prefetching = true",
    "SET enable_external_file_cache = false",
)
"""`SETTINGS`, and for a local root DuckDB's read-ahead and file-block cache off: both are for
remote files, and on files in the page cache they only add work (measured on
`bench.query_latency`: ~10% of each query's time through the views)."""


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


CONSTANT_KEYS: frozenset[str] = frozenset({"bar_size"})
"""Hive keys with few values that a dataset view splits its files by: one ``read_parquet`` per
value, which the view states as a constant. Every bars query filters on ``bar_size``; as a
constant the optimizer decides that filter once per ``read_parquet`` (dropping the branches of
other bar sizes) instead of once per file (measured: ~3 us per file and query)."""

LIST_SEPARATOR = "|"
"""Separates the file names of a ``read_parquet`` in one string split at bind time
(`_file_list`); a list literal of 100 strings costs ~0.15 ms more to bind, on every query."""


def _key_values(rel: str) -> dict[str, str]:
    """The hive keys and values of ``rel``'s folders (``bar_size=1min/...`` -> 1min)."""
    return dict(part.split("=", 1) for part in rel.split("/")[:-1] if "=" in part)


def _file_list(paths: Sequence[str]) -> str:
    """The SQL value naming ``paths`` for ``read_parquet``: one string when it is a single
    file, else one string split at bind (cheaper than a list literal), or the list literal if
    a path holds the separator."""
    if len(paths) == 1:
        return sql_string(paths[0])
    if any(LIST_SEPARATOR in path for path in paths):
        return "[" + ", ".join(sql_string(path) for path in paths) + "]"
    joined = sql_string(LIST_SEPARATOR.join(paths))
    return f"string_split({joined}, {sql_string(LIST_SEPARATOR)})"


def _group_sql(
    listing: DatasetListing,
    group: FileGroup,
    base: str,
    types: dict[str, str],
    *,
    portable: bool = False,
) -> list[str]:
    """``SELECT ... FROM read_parquet(...)`` over the files of ``group``, one per value of its
    `CONSTANT_KEYS` (that value a constant column); the columns the files lack are typed NULLs.
    ``base`` "" names the files relative to the root (the catalog file's way); ``portable``
    keeps to what an older DuckDB reads (the catalog file), else the known row count goes to the
    optimizer.

    Files are named newest first (descending path: the period key sorts by time): DuckDB binds
    the schema from the first file named and keeps that reader, with its statistics, for the
    scan when the query's filters keep the file, which queries of the latest session(s) do
    (measured: ~0.4 ms of a ~4 ms one-day query over 100 sessions)."""
    layout = group.layout
    constant = [key for key, _ in layout.keys if key in CONSTANT_KEYS]
    hive_keys = [(key, kind) for key, kind in layout.keys if key not in CONSTANT_KEYS]
    if hive_keys:
        hive = ", ".join(f"{sql_string(key)}: {kind}" for key, kind in hive_keys)
        # autocast off: the types are given, so DuckDB need not look at every path for them
        autocast = "hive_types_autocast = false"
        options = f"hive_partitioning = true, hive_types = {{{hive}}}, {autocast}"
    else:
        options = "hive_partitioning = false"
    names = list(dict.fromkeys([*listing.source.schema.names, *layout.exposed]))
    by_value: dict[tuple[str, ...], list[str]] = {}
    for rel in group.files:
        in_path = _key_values(rel)
        by_value.setdefault(tuple(in_path[key] for key in constant), []).append(rel)
    branches = []
    for values, rels in sorted(by_value.items()):
        fixed = dict(zip(constant, values, strict=True))
        select = ", ".join(
            f"CAST(NULL AS {types[c]}) AS {_ident(c)}"
            if c in group.missing
            else f"CAST({sql_string(fixed[c])} AS {types[c]}) AS {_ident(c)}"
            if c in fixed
            else _ident(c)
            for c in names
        )
        rows = sum(listing.files[rel].rows for rel in rels)
        paths = [check_no_glob(f"{base}/{rel}" if base else rel) for rel in reversed(rels)]
        branch_options = options
        if not portable and rows > 0 and "explicit_cardinality" in _read_parquet_parameters():
            # the optimizer's row estimate without opening a file (an estimate only: a stale
            # one changes a plan, never a result); a few tenths of a millisecond per query on
            # DuckDB 1.x, within noise on 2.0
            branch_options += f", explicit_cardinality = {rows}"
        branches.append(f"SELECT {select} FROM read_parquet({_file_list(paths)}, {branch_options})")
    return branches


@functools.cache
def _read_parquet_parameters() -> frozenset[str]:
    """Named parameters this DuckDB's ``read_parquet`` takes (newer ones are used if there)."""
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT parameters FROM duckdb_functions() WHERE function_name = 'read_parquet'"
        ).fetchall()
    finally:
        con.close()
    return frozenset(str(name) for row in rows for name in row[0])


def dataset_view_sql(listing: DatasetListing, base: str, *, portable: bool = False) -> str:
    """``CREATE OR REPLACE VIEW`` for one dataset: the union by name of a ``read_parquet`` per
    file group of ``listing``, with files under ``base`` (the root as DuckDB should see it), or
    a typed empty view when the dataset has no file."""
    source = listing.source
    types = {f.name: duckdb_type(f.type) for f in source.schema}
    for layout in source.layouts:
        types.update({key: kind for key, kind in layout.keys if key in layout.exposed})
    exposed = (k for layout in source.layouts for k in layout.exposed)
    columns = list(dict.fromkeys([*source.schema.names, *exposed]))
    name = _ident(source.name)
    if not listing.groups:
        select = ", ".join(f"CAST(NULL AS {types[c]}) AS {_ident(c)}" for c in columns)
        return f"CREATE OR REPLACE VIEW {name} AS SELECT {select} WHERE false"
    check_no_glob(base)
    branches = [
        branch
        for group in listing.groups
        for branch in _group_sql(listing, group, base, types, portable=portable)
    ]
    if len(branches) == 1:
        return f"CREATE OR REPLACE VIEW {name} AS {branches[0]}"
    body = " UNION ALL BY NAME ".join(f"({branch})" for branch in branches)
    select = ", ".join(_ident(c) for c in columns)
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {select} FROM ({body})"


def views_sql(
    listings: Sequence[DatasetListing], base: str, *, portable: bool = False
) -> list[str]:
    """Every view's SQL for ``listings``, with files under ``base`` (the root as the reader
    will see it: an absolute path or a URL; "" for paths relative to the root)."""
    statements = [dataset_view_sql(listing, base, portable=portable) for listing in listings]
    for name, body in DERIVED_MACROS.items():
        statements.append(f"CREATE OR REPLACE MACRO {_ident(name)}{body.strip()}")
    for name, body in DERIVED_VIEWS.items():
        statements.append(f"CREATE OR REPLACE VIEW {_ident(name)} AS {body.strip()}")
    # the data dictionary, on every view and column (CREATE OR REPLACE drops comments: they
    # follow every rebuild, and belong to the catalog's digest)
    return [*statements, *dictionary.comment_statements()]


def _open(root: str | os.PathLike[str] | Any | None) -> LocalRoot | FsspecRoot:
    if isinstance(root, LocalRoot | FsspecRoot):
        return root
    return open_root(WarehouseSettings.from_env().root if root is None else root)


class WarehouseNotFoundError(FileNotFoundError):
    """A reader was pointed at a root that does not exist or holds no warehouse. Readers never
    create one (a typo must not answer zero rows); loaders do."""


def require_warehouse(root: str | os.PathLike[str] | Any | None = None) -> LocalRoot | FsspecRoot:
    """The root (default: the settings'), if it holds a warehouse: its catalog file or a data
    file of some dataset. Raises `WarehouseNotFoundError` naming the path otherwise."""
    opened = _open(root)
    if opened.exists(CATALOG_FILE) or any(opened.files(name, ".parquet") for name in DATA_FOLDERS):
        return opened
    missing = isinstance(opened, LocalRoot) and not opened.path.exists()
    what = "does not exist" if missing else "holds no warehouse (no warehouse.duckdb, no dataset)"
    raise WarehouseNotFoundError(
        f"no warehouse at {opened.url}: the folder {what}; load one first (make demo, "
        "ib-pipeline backfill) or point --warehouse / IB_PIPELINE_WAREHOUSE at an existing one"
    )


# --- the listing kept in the catalog ---------------------------------------------------------


@dataclass(frozen=True)
class CatalogState:
    """What a catalog file says about itself: the digest of its views' SQL and what it knows
    of every file it lists."""

    views_sha256: str
    files: dict[str, FileInfo]


def _digest(statements: Sequence[str]) -> str:
    return hashlib.sha256("\n;\n".join(statements).encode()).hexdigest()


_Signature = tuple[int, int, int]

_STATE_SEEN: dict[str, tuple[_Signature, CatalogState]] = {}
"""The state of each local catalog this process last read or wrote, by the file's (inode, size,
mtime): a replaced or edited catalog has another signature and is read again."""


def _signature(root: LocalRoot | FsspecRoot) -> _Signature | None:
    if not isinstance(root, LocalRoot):
        return None
    try:
        found = os.stat(root.full(CATALOG_FILE))
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


SCRATCH_PREFIX = "ib-catalog-"
"""Private folders (in the system's temp folder) where a catalog is built or read, locked
while in use (`storage.scratch`): a loader killed during a rebuild leaves one behind (~1 MB;
a kill test left three per run), and the next rebuild removes it."""


def _scratch_folder(*, sweep: bool) -> AbstractContextManager[Path]:
    return scratch_folder(Path(tempfile.gettempdir()), SCRATCH_PREFIX, sweep=sweep)


def read_catalog_state(root: LocalRoot | FsspecRoot) -> CatalogState | None:
    """The state kept in ``<root>/warehouse.duckdb``, or None if there is no catalog or it
    cannot be read (written by another DuckDB version, or by older code without the listing,
    or being written by hand): it is derived data, so the caller lists the files afresh."""
    signature = _signature(root)
    seen = _STATE_SEEN.get(root.url)
    if signature is not None and seen is not None and seen[0] == signature:
        return seen[1]
    if not root.exists(CATALOG_FILE):
        return None
    with _scratch_folder(sweep=False) as folder:  # readers leave the sweeping to rebuilds
        copy = Path(folder, CATALOG_FILE)  # a copy: an open DuckDB CLI may hold a file lock
        copy.write_bytes(root.read_bytes(CATALOG_FILE))
        try:
            con = duckdb.connect(str(copy), read_only=True)
        except duckdb.Error:
            return None
        try:
            found = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? "
                "AND table_name IN ('build', 'files')",
                [CATALOG_SCHEMA],
            ).fetchone()
            if found is None or found[0] != 2:
                return None
            build = con.execute(f"SELECT views_sha256 FROM {CATALOG_SCHEMA}.build").fetchone()
            rows = con.execute(f"SELECT path, columns, rows FROM {CATALOG_SCHEMA}.files").fetchall()
        except duckdb.Error:
            return None
        finally:
            con.close()
    if build is None:
        return None
    state = CatalogState(
        str(build[0]), {str(p): FileInfo(frozenset(c), int(n)) for p, c, n in rows}
    )
    if signature is not None:  # taken before the read: a file replaced since has another one
        _STATE_SEEN[root.url] = (signature, state)
    return state


def _store_state(
    con: duckdb.DuckDBPyConnection, listings: Sequence[DatasetListing], digest: str
) -> None:
    rows = [
        (listing.source.name, rel, info)
        for listing in listings
        for rel, info in sorted(listing.files.items())
    ]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {CATALOG_SCHEMA}")
    con.execute(
        f"CREATE OR REPLACE TABLE {CATALOG_SCHEMA}.files "
        "(dataset VARCHAR, path VARCHAR, columns VARCHAR[], rows BIGINT)"
    )
    if rows:
        # one statement with list parameters (an Arrow table would make DuckDB import pandas)
        con.execute(
            f"INSERT INTO {CATALOG_SCHEMA}.files "
            "SELECT unnest($1), unnest($2), unnest($3), unnest($4)",
            [
                [r[0] for r in rows],
                [r[1] for r in rows],
                [sorted(r[2].columns) for r in rows],
                [r[2].rows for r in rows],
            ],
        )
    con.execute(f"CREATE OR REPLACE TABLE {CATALOG_SCHEMA}.build (views_sha256 VARCHAR)")
    con.execute(f"INSERT INTO {CATALOG_SCHEMA}.build VALUES (?)", [digest])


# --- connections ------------------------------------------------------------------------------


@dataclass
class _Connected:
    root: LocalRoot | FsspecRoot
    known: dict[str, FileInfo]


_CONNECTED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, _Connected] = (
    weakref.WeakKeyDictionary()
)


def _apply(
    con: duckdb.DuckDBPyConnection, root: LocalRoot | FsspecRoot, listings: list[DatasetListing]
) -> dict[str, int]:
    for statement in views_sql(listings, root.url):
        con.execute(statement)
    _CONNECTED[con] = _Connected(root, known_files(listings))
    return {listing.source.name: len(listing.files) for listing in listings}


def connect(
    root: str | os.PathLike[str] | Any | None = None,
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the warehouse's views (root: default from the settings).

    The views name the data files present now; call `refresh` on the connection to see
    partitions created later (see the module's freshness rule). Times are shown in UTC. Pass
    ``connection`` to add the views to an existing connection.
    """
    opened = require_warehouse(root)
    state = read_catalog_state(opened)
    listings = list_all(opened, state.files if state is not None else None)
    con = duckdb.connect() if connection is None else connection
    for setting in LOCAL_SETTINGS if isinstance(opened, LocalRoot) else SETTINGS:
        con.execute(setting)
    filesystem = opened.filesystem()
    if filesystem is not None:
        con.register_filesystem(filesystem)
    _apply(con, opened, listings)
    return con


def refresh(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """List the files again and rebuild the views of ``con`` (made by `connect`), so that
    partitions created since are seen. Returns the number of data files behind each dataset
    view. Cheap: only the footers of new files are read."""
    connected = _CONNECTED.get(con)
    if connected is None:
        raise ValueError(
            "refresh() needs a connection made by ib_pipeline.warehouse.connect(); "
            "this one has no warehouse views"
        )
    listings = list_all(connected.root, connected.known)
    return _apply(con, connected.root, listings)


# --- the catalog file -------------------------------------------------------------------------


def catalog_base(root: LocalRoot | FsspecRoot) -> str:
    """How the catalog file's views name the data files: relative to the warehouse folder for a
    local root ("": see `CATALOG_STORAGE_VERSION` and the README for why), the URL for an
    object store."""
    return "" if isinstance(root, LocalRoot) else root.url


def open_catalog(root: str | os.PathLike[str] | Any | None = None) -> duckdb.DuckDBPyConnection:
    """The catalog file of a local warehouse, opened read-only as the DuckDB CLI would open it,
    with ``file_search_path`` set to the warehouse folder so its relative paths resolve from
    any working directory (`duckdb_cli_command` does the same for the CLI)."""
    opened = require_warehouse(root)
    if not isinstance(opened, LocalRoot):
        raise ValueError(f"open_catalog() opens local catalogs; use connect({opened.url!r})")
    return duckdb.connect(
        opened.full(CATALOG_FILE), read_only=True, config={"file_search_path": str(opened.path)}
    )


def duckdb_cli_command(root: str | os.PathLike[str] | Any | None = None) -> str:
    """The shell command that opens the catalog in the DuckDB command line from any folder.

    DuckDB resolves a view's relative paths against its ``file_search_path`` (else the working
    directory), never against the database file; the catalog names files relative to the
    warehouse folder so that a moved or copied warehouse keeps working, and this command tells
    the CLI where that folder is. From inside the folder, ``duckdb warehouse.duckdb`` is
    enough."""
    opened = _open(root)
    if not isinstance(opened, LocalRoot):  # DuckDB reads object stores through httpfs
        attach = (
            "INSTALL httpfs; LOAD httpfs; CREATE SECRET (TYPE s3, PROVIDER credential_chain); "
            f"ATTACH {sql_string(opened.full(CATALOG_FILE))} AS wh (READ_ONLY); USE wh"
        )
        return f"duckdb -cmd {shlex.quote(attach)}"
    path = str(opened.path)
    if re.fullmatch(r"[\w./+-]+", path):  # the common case, quoted the way people type it
        return f"duckdb -cmd \"SET file_search_path='{path}'\" {path}/{CATALOG_FILE}"
    setting = shlex.quote(f"SET file_search_path = {sql_string(path)}")
    return f"duckdb -cmd {setting} {shlex.quote(path)}/{CATALOG_FILE}"


def refresh_catalog(
    root: str | os.PathLike[str] | Any | None = None, *, force: bool = False
) -> str:
    """Rebuild ``<root>/warehouse.duckdb`` if its views would change (or ``force``): list the
    files, compare with the catalog's own record, write a new catalog atomically. Return its
    path or URL.

    On a local root the whole cycle holds the root's lock, so concurrent writers' rebuilds run
    one after the other and the last lists every write finished before it."""
    opened = _open(root)
    with opened.lock(""):
        state = read_catalog_state(opened)
        listings = list_all(opened, state.files if state is not None else None)
        statements = views_sql(listings, catalog_base(opened), portable=True)
        digest = _digest(statements)
        if not force and state is not None and state.views_sha256 == digest:
            return opened.full(CATALOG_FILE)
        written = write_catalog(opened, statements, listings, digest)
        signature = _signature(opened)  # still under the lock: the file just written
        if signature is not None:
            _STATE_SEEN[opened.url] = (signature, CatalogState(digest, known_files(listings)))
        return written


def write_catalog(
    root: LocalRoot | FsspecRoot,
    statements: Sequence[str],
    listings: Sequence[DatasetListing],
    digest: str | None = None,
) -> str:
    """Build a DuckDB file holding ``statements`` (and the listing they were built from) in a
    private temp folder, in `CATALOG_STORAGE_VERSION`, then put it at
    ``<root>/warehouse.duckdb`` in one atomic write."""
    with _scratch_folder(sweep=True) as folder:
        path = Path(folder, CATALOG_FILE)
        con = duckdb.connect()
        try:
            filesystem = root.filesystem()
            if filesystem is not None:
                con.register_filesystem(filesystem)  # views are bound (checked) when created
            if isinstance(root, LocalRoot):  # relative file names resolve against the root
                con.execute(f"SET file_search_path = {sql_string(str(root.path))}")
            con.execute(
                f"ATTACH {sql_string(str(path))} AS catalog "
                f"(STORAGE_VERSION {sql_string(CATALOG_STORAGE_VERSION)})"
            )
            con.execute("USE catalog")
            # one transaction, one call: the ~250 statements (mostly the dictionary's
            # comments) each committed on their own took half of a rebuild (measured 132 ms
            # -> 70 ms for the demo warehouse), and the store rebuilds after every load
            con.execute("BEGIN TRANSACTION")
            if statements:
                con.execute(";\n".join(statements))
            _store_state(con, listings, digest or _digest(statements))
            con.execute("COMMIT")
            con.execute("CHECKPOINT catalog")
            con.execute("USE memory")
            con.execute("DETACH catalog")
        finally:
            con.close()
        root.write_atomic(CATALOG_FILE, path.read_bytes())
    return root.full(CATALOG_FILE)
