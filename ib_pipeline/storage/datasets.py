"""What each warehouse dataset stores, what its key is, and how it is split into partitions.

Why one table of definitions: the contracts, the store, the replay and the DuckDB views must
agree on dataset names, stored columns, keys and layout; they all read them from here.

Layout (under the warehouse root; each top-level folder is ONE hive layout that pyarrow,
pandas, polars and DuckDB read whole with nothing but ``hive`` partitioning):

================  ===========================================================  ===============
dataset           file                                                         key
================  ===========================================================  ===============
bars (< 1h)       bars/bar_size=1min/session_date=2024-11-26/part.parquet      conid,bar_size,
bars (1h-8h)      bars_hourly/bar_size=1h/session_month=2024-11/part.parquet   ts
bars (1d,1w,1m)   bars_daily/bar_size=1d/session_year=2024/part.parquet
quotes            quotes/date=2024-11-26/snapshot-20241126T150000000Z.parquet  as_of,conid
positions         positions/date=2024-11-26/account=U1234567/part.parquet      account,as_of,
                                                                               conid
account_summary   account_summary/date=2024-11-26/account=U1/part.parquet      account,as_of,
                                                                               key
orders            orders/date=2024-11-26/part.parquet                          as_of,order_id
contracts         contracts/part.parquet                                       conid
accounts          accounts/part.parquet                                        account_id
corporate_actions corporate_actions/part.parquet (`CORPORATE_ACTIONS`)          conid,bar_size,
                                                                               effective_date
================  ===========================================================  ===============

Manifests live under ``_manifests/`` (`storage.paths.MANIFESTS`), quarantine files under
``quarantine/dataset=<name>/``; temporary files start with ``.``: none is in a data folder's
``*.parquet`` glob.

- Bars are never partitioned by symbol. The folder below ``bar_size`` is the session date,
  month or year, by bar size (`storage.bar_periods`, which also names each grain's folder), so
  files are neither tiny nor huge. Bars carry a ``session_date`` column (the trading session a
  bar belongs to: an extended-hours US session crosses midnight UTC, a CME session opens the
  evening before its date).
- A column that a partition's folders name (``bar_size``; ``session_date`` of sub-hour bars;
  ``account`` of positions and summaries; ``dataset`` of the quarantine) is NOT stored in the
  file: the folder is its only copy, so a reader never meets two types for one name (DuckDB
  and polars read ``2024-11-26`` as a date, pyarrow and pandas as a string). The store and the
  views add it back from the path (`path_columns`).
- Snapshot datasets carry ``as_of``, the time the snapshot was taken (for quotes and orders the
  store adds it from the write call; positions and summaries have it already); their ``date``
  is the UTC date of ``as_of``.
This module holds definitions and pure grouping functions; it never touches files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ib_pipeline.ibkr.tables import (
    ACCOUNT_SUMMARY,
    ACCOUNTS,
    CONTRACTS,
    HISTORY_BARS,
    LIVE_ORDERS,
    POSITIONS,
    SNAPSHOT_QUOTES,
    TS,
)
from ib_pipeline.storage.bar_periods import Granularity, bar_folder, granularity
from ib_pipeline.storage.keys import value_codes
from ib_pipeline.storage.paths import Partition, safe_value

AS_OF = pa.field("as_of", TS, nullable=False)
SESSION_DATE = pa.field("session_date", pa.date32(), nullable=False)

Grouper = Callable[[pa.Table], list[tuple[Partition, npt.NDArray[np.int64]]]]


@dataclass(frozen=True)
class Layout:
    """One dataset folder and the shape of its partition folders, as DuckDB must read it.

    ``pattern``: glob of the data files relative to ``folder`` (the top-level folder under the
    root; "" is the dataset's name); ``keys``: the hive keys in those paths with their DuckDB
    types; ``exposed``: keys the dataset's view shows as columns although the dataset's schema
    lacks them (keys that are schema columns are always shown, from the path). One folder has
    one layout; a dataset may span several folders (bars: one per grain) and its view unions
    them by name.
    """

    pattern: str
    keys: tuple[tuple[str, str], ...] = ()
    exposed: tuple[str, ...] = ()
    folder: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its input (normaliser) schema, stored schema, key and layout."""

    name: str
    normaliser_table: str  # the name in `ib_pipeline.ibkr.tables.SCHEMAS`
    input_schema: pa.Schema
    schema: pa.Schema  # as stored: the input plus derived columns
    key: tuple[str, ...]
    file_key: tuple[str, ...]  # the key minus columns constant inside one file (cheaper sorts)
    sort: tuple[str, ...]  # order of rows inside a file
    time_column: str | None  # the column manifests report a range of, and windows apply to
    adds_as_of: bool  # the store adds ``as_of`` from the write call
    layouts: tuple[Layout, ...]  # partition folder shapes, for DuckDB
    group: Grouper  # rows -> partitions
    replace_by: str | None = None  # the instrument column a replace is scoped by (`Store.load`)

    def empty(self) -> pa.Table:
        return self.schema.empty_table()


def _utc_days(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Days since the epoch of a UTC timestamp[ms] column."""
    ms = np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    return ms // 86_400_000


def _day_text(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def _split(codes: list[npt.NDArray[np.int64]]) -> list[npt.NDArray[np.int64]]:
    """Row indices of each distinct combination of the (small, non-negative) code arrays, in
    code order. Hash-based: a partition load usually has one or a few groups."""
    if not codes or len(codes[0]) == 0:
        return []
    shifted = [c - int(c.min()) for c in codes]
    combined = shifted[0].astype(np.int64)
    for more in shifted[1:]:
        combined = combined * (int(more.max()) + 1) + more
    encoded = pc.dictionary_encode(pa.array(combined))
    values = np.asarray(encoded.dictionary.to_numpy(), dtype=np.int64)
    if len(values) == 1:
        return [np.arange(len(combined), dtype=np.int64)]
    indices = np.asarray(encoded.indices.to_numpy(), dtype=np.int64)
    rank = np.empty(len(values), dtype=np.int64)
    rank[np.argsort(values)] = np.arange(len(values))
    group = rank[indices]
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    return [part.astype(np.int64) for part in np.split(order, bounds)]


def _dictionary(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], list[str]]:
    codes, values = value_codes(column)
    return codes, [str(v) for v in values]


def _group_bars(table: pa.Table) -> list[tuple[Partition, npt.NDArray[np.int64]]]:
    """Rows by (bar size, partition period): the rule of `storage.bar_periods`."""
    sizes, labels = _dictionary(table.column("bar_size"))
    days = np.asarray(table.column("session_date").cast(pa.int32()).to_numpy(), dtype=np.int64)
    period_code = np.empty_like(days)
    dates = days.astype("datetime64[D]")
    unit = {Granularity.SESSION: "D", Granularity.MONTH: "M", Granularity.YEAR: "Y"}
    for position, label in enumerate(labels):
        rows = sizes == position
        period = dates[rows].astype(f"datetime64[{unit[granularity(label)]}]")
        period_code[rows] = period.astype(np.int64)
    groups = []
    for rows in _split([sizes, period_code]):
        first = int(rows[0])
        label = labels[int(sizes[first])]
        day = dates[first].astype(object)
        pairs = (("bar_size", label), bar_folder(label, day))
        groups.append((Partition.from_pairs("bars", pairs), rows))
    return groups


def snapshot_stem(as_of_ms: int) -> str:
    """File stem of one quote snapshot: ``snapshot-20241126T150000123Z``."""
    moment = datetime.fromtimestamp(as_of_ms / 1000, UTC)
    return f"snapshot-{moment:%Y%m%dT%H%M%S}{moment.microsecond // 1000:03d}Z"


def _group_quotes(table: pa.Table) -> list[tuple[Partition, npt.NDArray[np.int64]]]:
    as_of = np.asarray(table.column("as_of").cast(pa.int64()).to_numpy(), dtype=np.int64)
    groups = []
    for rows in _split([as_of]):
        stamp = int(as_of[rows[0]])
        pairs = (("date", _day_text(stamp // 86_400_000)),)
        groups.append((Partition.from_pairs("quotes", pairs, snapshot_stem(stamp)), rows))
    return groups


def _group_by_date(dataset: str, with_account: bool) -> Grouper:
    def group(table: pa.Table) -> list[tuple[Partition, npt.NDArray[np.int64]]]:
        days = _utc_days(table.column("as_of"))
        codes = [days]
        accounts: list[str] = []
        if with_account:
            account_codes, accounts = _dictionary(table.column("account"))
            codes.append(account_codes)
        groups = []
        for rows in _split(codes):
            first = int(rows[0])
            pairs: tuple[tuple[str, str], ...] = (("date", _day_text(int(days[first]))),)
            if with_account:
                account = safe_value("account id", accounts[int(codes[1][first])])
                pairs = (*pairs, ("account", account))
            groups.append((Partition.from_pairs(dataset, pairs), rows))
        return groups

    return group


def _group_all(dataset: str) -> Grouper:
    def group(table: pa.Table) -> list[tuple[Partition, npt.NDArray[np.int64]]]:
        if table.num_rows == 0:
            return []
        return [(Partition(dataset, ""), np.arange(table.num_rows, dtype=np.int64))]

    return group


def _bar_layouts() -> tuple[Layout, ...]:
    """One folder per bar grain (`Granularity.home`), each with its own period key."""
    return tuple(
        Layout(
            f"bar_size=*/{grain.folder}=*/*.parquet",
            (
                ("bar_size", "VARCHAR"),
                (grain.folder, "DATE" if grain is Granularity.SESSION else "VARCHAR"),
            ),
            folder=grain.home,
        )
        for grain in Granularity
    )


def path_columns(spec_schema: pa.Schema, pairs: dict[str, str]) -> dict[str, pa.Scalar]:
    """The stored columns a partition's folders name (``pairs``: its hive keys and values),
    as typed scalars: these are not kept in its file, and come back from the path on read."""
    found: dict[str, pa.Scalar] = {}
    for key, value in pairs.items():
        if key in spec_schema.names:
            kind = spec_schema.field(key).type
            found[key] = pa.scalar(value, pa.string()).cast(kind)
    return found


def _with_as_of(schema: pa.Schema) -> pa.Schema:
    return schema.insert(0, AS_OF)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="bars",
            normaliser_table="history_bars",
            input_schema=HISTORY_BARS,
            schema=HISTORY_BARS.append(SESSION_DATE),
            key=("conid", "bar_size", "ts"),
            file_key=("conid", "ts"),
            sort=("conid", "ts"),
            time_column="ts",
            adds_as_of=False,
            layouts=_bar_layouts(),
            group=_group_bars,
            replace_by="conid",
        ),
        DatasetSpec(
            name="quotes",
            normaliser_table="snapshot_quotes",
            input_schema=SNAPSHOT_QUOTES,
            schema=_with_as_of(SNAPSHOT_QUOTES),
            key=("as_of", "conid"),
            file_key=("conid",),
            sort=("conid",),
            time_column="as_of",
            adds_as_of=True,
            layouts=(Layout("date=*/*.parquet", (("date", "DATE"),), exposed=("date",)),),
            group=_group_quotes,
        ),
        DatasetSpec(
            name="positions",
            normaliser_table="positions",
            input_schema=POSITIONS,
            schema=POSITIONS,
            key=("account", "as_of", "conid"),
            file_key=("as_of", "conid"),
            sort=("as_of", "conid"),
            time_column="as_of",
            adds_as_of=False,
            layouts=(
                Layout(
                    "date=*/account=*/*.parquet",
                    (("date", "DATE"), ("account", "VARCHAR")),
                    exposed=("date",),
                ),
            ),
            group=_group_by_date("positions", with_account=True),
        ),
        DatasetSpec(
            name="account_summary",
            normaliser_table="account_summary",
            input_schema=ACCOUNT_SUMMARY,
            schema=ACCOUNT_SUMMARY,
            key=("account", "as_of", "key"),
            file_key=("as_of", "key"),
            sort=("as_of", "key"),
            time_column="as_of",
            adds_as_of=False,
            layouts=(
                Layout(
                    "date=*/account=*/*.parquet",
                    (("date", "DATE"), ("account", "VARCHAR")),
                    exposed=("date",),
                ),
            ),
            group=_group_by_date("account_summary", with_account=True),
        ),
        DatasetSpec(
            name="orders",
            normaliser_table="live_orders",
            input_schema=LIVE_ORDERS,
            schema=_with_as_of(LIVE_ORDERS),
            key=("as_of", "order_id"),
            file_key=("as_of", "order_id"),
            sort=("as_of", "order_id"),
            time_column="as_of",
            adds_as_of=True,
            layouts=(Layout("date=*/*.parquet", (("date", "DATE"),), exposed=("date",)),),
            group=_group_by_date("orders", with_account=False),
        ),
        DatasetSpec(
            name="contracts",
            normaliser_table="contracts",
            input_schema=CONTRACTS,
            schema=CONTRACTS,
            key=("conid",),
            file_key=("conid",),
            sort=("conid",),
            time_column=None,
            adds_as_of=False,
            layouts=(Layout("*.parquet"),),
            group=_group_all("contracts"),
        ),
        DatasetSpec(
            name="accounts",
            normaliser_table="accounts",
            input_schema=ACCOUNTS,
            schema=ACCOUNTS,
            key=("account_id",),
            file_key=("account_id",),
            sort=("account_id",),
            time_column=None,
            adds_as_of=False,
            layouts=(Layout("*.parquet"),),
            group=_group_all("accounts"),
        ),
    )
}
"""Every dataset of the warehouse, by name."""

DATASET_OF_NORMALISER: dict[str, str] = {s.normaliser_table: s.name for s in DATASETS.values()}
"""Warehouse dataset name of each normaliser table name (``history_bars`` -> ``bars``)."""


CORPORATE_ACTIONS = "corporate_actions"
"""The corporate actions the bar loader detected (splits), one file:
``corporate_actions/part.parquet``. Not a gateway dataset (no contract, no replay: the rows
are derived by comparing stored bars with re-fetched ones, `ib_pipeline.corporate_actions`),
so it is not in `DATASETS`; like the quarantine it has a view of its own."""

CORPORATE_ACTIONS_SCHEMA = pa.schema(
    [
        pa.field("conid", pa.int64(), nullable=False),
        pa.field("bar_size", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("effective_date", pa.date32(), nullable=False),
        pa.field("ratio", pa.float64(), nullable=False),
        pa.field("compared_session", pa.date32(), nullable=False),
        pa.field("detected_at", TS, nullable=False),
        pa.field("restated", pa.string(), nullable=False),
        pa.field("rows_restated", pa.int64(), nullable=False),
        pa.field("partitions_restated", pa.int64(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)
"""Key: (conid, bar_size, effective_date). ``ratio``: new shares per old share (4.0 for a
4:1 split, 0.1 for a 1:10 reverse split)."""

CORPORATE_ACTIONS_KEY = ("conid", "bar_size", "effective_date")
CORPORATE_ACTIONS_FILE = f"{CORPORATE_ACTIONS}/part.parquet"
CORPORATE_ACTIONS_LAYOUTS = (Layout("*.parquet"),)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (a warehouse name or a normaliser table name)."""
    spec = DATASETS.get(name) or DATASETS.get(DATASET_OF_NORMALISER.get(name, ""))
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; datasets: {', '.join(DATASETS)}")
    return spec


def conform(spec: DatasetSpec, table: pa.Table, schema: pa.Schema | None = None) -> pa.Table:
    """``table`` with exactly ``schema`` (default: the dataset's input schema): same column
    names and types, in schema order, schema metadata dropped. Raises ValueError naming every
    missing, extra or mistyped column; a wrong table is a caller bug, not bad data."""
    target = spec.input_schema if schema is None else schema
    if table.schema.equals(target, check_metadata=True):
        return table  # the normalisers' own output: nothing to check or reorder
    names = set(table.column_names)
    wanted = set(target.names)
    problems = []
    if missing := sorted(wanted - names):
        problems.append(f"missing columns {missing}")
    if extra := sorted(names - wanted):
        problems.append(f"unexpected columns {extra}")
    for field in target:
        if field.name in names and not table.schema.field(field.name).type.equals(field.type):
            actual = table.schema.field(field.name).type
            problems.append(f"column {field.name!r} is {actual}, expected {field.type}")
    if problems:
        raise ValueError(f"{spec.name}: table does not match its schema: {'; '.join(problems)}")
    columns = [table.column(field.name) for field in target]
    return pa.Table.from_arrays(columns, schema=target)


def add_as_of(table: pa.Table, as_of_ms: int) -> pa.Table:
    """``table`` with a constant ``as_of`` column in front (quotes and orders)."""
    column = pc.cast(pa.array(np.full(table.num_rows, as_of_ms, dtype=np.int64)), TS)
    return table.add_column(0, AS_OF, column)
