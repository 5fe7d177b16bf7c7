"""The data contract of every dataset: one pandera model each, and the one entry point,
`validate`, that splits a batch into rows the warehouse accepts and rows it quarantines.

Why: researchers trust a bar only if a wrong one can never enter the clean dataset silently.
Each model states what a valid row is (types, positive finite prices, ``high >= max(open,
close)``, non-negative volume, plausible UTC timestamps, safe account ids); `validate` adds what
depends on the request (the partition's time window, the instrument's trading sessions for the
bar size and outside-RTH flag) and the key policy below. Checks are vectorised; nothing loops
over rows except to write the reasons of rejected ones.

Policies
--------
- A row failing any check is rejected with every failed check's name (``open:greater_than(0)``,
  ``high_ge_open_close``, ``ts_in_session``..., joined by ``; ``); the valid rows of the same
  batch are kept. Bars of a conid without trading hours are rejected
  (``conid_trading_hours_known``): the exchange is never guessed.
- Keys are unique per batch (bars: conid, bar size, ts). Exact duplicate rows collapse to one,
  counted in ``ValidationResult.duplicates_collapsed``; conflicting duplicates (same key,
  different values) are all rejected as ``duplicate_key_conflict`` (`storage.keys`).
- NaN in a nullable float column (a quote without a bid) means "absent" once in pandas; NaN or
  null in a required column, and an infinity anywhere, is rejected.
- A value the normaliser could not read (``"N/A"`` as a price) is null in its row and named in
  the row's ``parse_errors`` (quotes): each reason there (``last:unparseable('N/A')``) is a
  failed check of the row, so the quarantine says what the gateway sent. Bars have no such
  column: an unreadable bar value is a null in a required column (``close:not_nullable``) and
  the batch's source lists the reasons (`conversion`).
- A table whose columns or types differ from the dataset's schema is a caller bug: it raises
  ValueError naming the columns instead of quarantining every row.

What this module must never do: write files, or change a value (rows are accepted or rejected
as they came; derived columns such as ``session_date`` are added, never substituted).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandera.pandas as pda
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors
from pandera.typing.pandas import Series

from ib_pipeline.calendars import TradingHours
from ib_pipeline.storage.bar_sessions import BarLocation, locate_bars
from ib_pipeline.storage.datasets import (
    SESSION_DATE,
    DatasetSpec,
    add_as_of,
    conform,
    dataset_spec,
)
from ib_pipeline.storage.keys import split_duplicates
from ib_pipeline.storage.paths import SAFE_VALUE_PATTERN
from ib_pipeline.timeframes import BAR_SIZES

TsUTC = Annotated[pd.DatetimeTZDtype, "ms", "UTC"]
"""A pandas column of UTC timestamps in milliseconds, as the normalisers produce them."""

Text = Annotated[pd.StringDtype, "pyarrow", pd.NA]
"""A pandas column of Arrow-backed strings: dtype checks, ``isin`` and regexes run in Arrow,
not per Python object (measured 5x faster on a million rows)."""

EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
"""Nothing the loader fetches is older (the calendars start here too); an 11-digit epoch typo
lands in 1973 and is rejected."""

FUTURE_TOLERANCE = timedelta(days=1)
"""How far past the validation clock a timestamp may be (clock skew, time zones)."""

CONFLICT = "duplicate_key_conflict"
REASON_SEPARATOR = "; "
"""Between check names in ``failed_checks`` (names such as ``isin([...])`` hold commas)."""
FAILED_CHECKS = "failed_checks"

_BAR_PRICES = ["open", "high", "low", "close"]


def _finite_or_missing(df: pd.DataFrame, columns: list[str]) -> pd.Series[bool]:
    """True where every listed value is finite or missing (NaN), i.e. not an infinity."""
    values = df[columns].to_numpy(dtype=np.float64)
    return pd.Series(~np.isinf(values).any(axis=1), index=df.index)


def _le_where_present(df: pd.DataFrame, low: str, high: str) -> pd.Series[bool]:
    """``low <= high`` where both are present."""
    lo, hi = df[low], df[high]
    return (lo <= hi) | lo.isna() | hi.isna()


# --- models ------------------------------------------------------------------------------------

SKIP_ALL_MISSING_ROWS = False
"""``ignore_na`` of every frame-wide check: False. pandera's default (True) passes a row whose
every value is missing, and finds such rows with a missing-value scan of the whole frame for
every check: a third of a replay's contract time. No frame validated here has such a row:
`_to_frame` fills the required columns, and every dataset has some (its key; asserted by the
unit tests), so the scan could never change a result."""


class _FiniteFloatsModel(pda.DataFrameModel):
    """Base of the snapshot-style models: no float column may hold an infinity (missing values
    are allowed; each model's fields say which must be present)."""

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def values_finite(cls, df: pd.DataFrame) -> pd.Series[bool]:
        columns = [str(c) for c, t in df.dtypes.items() if t == np.float64]
        return _finite_or_missing(df, columns)


class BarsModel(pda.DataFrameModel):
    """Historical bars (`tables.HISTORY_BARS`). Key: (conid, bar_size, ts)."""

    conid: Series[np.int64] = pda.Field(gt=0)
    bar_size: Series[Text] = pda.Field(isin=list(BAR_SIZES))
    ts: Series[TsUTC]
    open: Series[np.float64] = pda.Field(gt=0)
    high: Series[np.float64] = pda.Field(gt=0)
    low: Series[np.float64] = pda.Field(gt=0)
    close: Series[np.float64] = pda.Field(gt=0)
    volume: Series[np.float64] = pda.Field(ge=0)

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def prices_finite(cls, df: pd.DataFrame) -> pd.Series[bool]:
        # column by column: ``df[_BAR_PRICES]`` would copy four columns into a new block first
        finite: npt.NDArray[np.bool_] = np.ones(len(df), dtype=bool)
        for name in _BAR_PRICES:
            finite &= np.isfinite(df[name].to_numpy(dtype=np.float64))
        return pd.Series(finite, index=df.index, dtype=bool)

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def volume_finite(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return pd.Series(np.isfinite(df["volume"].to_numpy()), index=df.index)

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def high_ge_open_close(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["high"] >= np.maximum(df["open"], df["close"])

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def low_le_open_close(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["low"] <= np.minimum(df["open"], df["close"])

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def high_ge_low(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return df["high"] >= df["low"]

    class Config:
        strict = True
        name = "bars"


class QuotesModel(_FiniteFloatsModel):
    """Snapshot quotes (`tables.SNAPSHOT_QUOTES`) plus the snapshot time ``as_of``.
    Key: (as_of, conid). Absent fields are allowed; present prices are positive and finite."""

    as_of: Series[TsUTC]
    conid: Series[np.int64] = pda.Field(gt=0)
    updated: Series[TsUTC]
    symbol: Series[Text] = pda.Field(nullable=True)
    last: Series[np.float64] = pda.Field(nullable=True, gt=0)
    bid: Series[np.float64] = pda.Field(nullable=True, ge=0)
    ask: Series[np.float64] = pda.Field(nullable=True, ge=0)
    last_size: Series[np.float64] = pda.Field(nullable=True, ge=0)
    bid_size: Series[np.float64] = pda.Field(nullable=True, ge=0)
    ask_size: Series[np.float64] = pda.Field(nullable=True, ge=0)
    volume: Series[np.float64] = pda.Field(nullable=True, ge=0)
    open: Series[np.float64] = pda.Field(nullable=True, gt=0)
    high: Series[np.float64] = pda.Field(nullable=True, gt=0)
    low: Series[np.float64] = pda.Field(nullable=True, gt=0)
    close: Series[np.float64] = pda.Field(nullable=True, gt=0)
    prior_close: Series[np.float64] = pda.Field(nullable=True, gt=0)
    change: Series[np.float64] = pda.Field(nullable=True)
    change_pct: Series[np.float64] = pda.Field(nullable=True)
    last_is_close: Series[bool]
    halted: Series[bool]
    market_data_availability: Series[Text] = pda.Field(nullable=True)
    parse_errors: Series[Text] = pda.Field(nullable=True)

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def low_le_high(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return _le_where_present(df, "low", "high")

    class Config:
        strict = True
        name = "quotes"


class PositionsModel(_FiniteFloatsModel):
    """An as-of snapshot of an account's positions (`tables.POSITIONS`).
    Key: (account, as_of, conid). Positions may be negative (short), never infinite.
    conid 0 is the flat marker of an account listed with no position
    (`normalize.flat_positions`): its position and market value are 0."""

    account: Series[Text] = pda.Field(str_matches=SAFE_VALUE_PATTERN)
    as_of: Series[TsUTC]
    conid: Series[np.int64] = pda.Field(ge=0)
    contract_desc: Series[Text] = pda.Field(nullable=True)
    asset_class: Series[Text] = pda.Field(nullable=True)
    currency: Series[Text] = pda.Field(nullable=True)
    position: Series[np.float64] = pda.Field(nullable=True)
    mkt_price: Series[np.float64] = pda.Field(nullable=True, ge=0)
    mkt_value: Series[np.float64] = pda.Field(nullable=True)
    avg_cost: Series[np.float64] = pda.Field(nullable=True)
    avg_price: Series[np.float64] = pda.Field(nullable=True)
    realized_pnl: Series[np.float64] = pda.Field(nullable=True)
    unrealized_pnl: Series[np.float64] = pda.Field(nullable=True)

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def flat_marker_holds_nothing(cls, df: pd.DataFrame) -> pd.Series[bool]:
        marker = df["conid"] == 0
        return ~marker | ((df["position"] == 0) & (df["mkt_value"].fillna(0) == 0))

    class Config:
        strict = True
        name = "positions"


class AccountSummaryModel(pda.DataFrameModel):
    """An as-of snapshot of an account's summary (`tables.ACCOUNT_SUMMARY`), one row per key.
    Key: (account, as_of, key)."""

    account: Series[Text] = pda.Field(str_matches=SAFE_VALUE_PATTERN)
    as_of: Series[TsUTC]
    key: Series[Text] = pda.Field(str_length={"min_value": 1, "max_value": 200})
    amount: Series[np.float64] = pda.Field(nullable=True)
    currency: Series[Text] = pda.Field(nullable=True)
    value: Series[Text] = pda.Field(nullable=True)
    is_null: Series[bool]
    severity: Series[pd.Int64Dtype] = pda.Field(nullable=True)
    timestamp: Series[TsUTC] = pda.Field(nullable=True)

    @pda.dataframe_check(ignore_na=SKIP_ALL_MISSING_ROWS)
    @classmethod
    def amount_finite(cls, df: pd.DataFrame) -> pd.Series[bool]:
        return _finite_or_missing(df, ["amount"])

    class Config:
        strict = True
        name = "account_summary"


class ContractsModel(pda.DataFrameModel):
    """Contract search results (`tables.CONTRACTS`), one row per conid. Key: conid."""

    conid: Series[np.int64] = pda.Field(gt=0)
    symbol: Series[Text] = pda.Field(str_length={"min_value": 1, "max_value": 64})
    sec_type: Series[Text] = pda.Field(nullable=True)
    company_name: Series[Text] = pda.Field(nullable=True)
    company_header: Series[Text] = pda.Field(nullable=True)
    description: Series[Text] = pda.Field(nullable=True)
    exchanges: Series[Text] = pda.Field(nullable=True)
    currency: Series[Text] = pda.Field(nullable=True, str_matches=r"^[A-Z]{3}$")
    multiplier: Series[np.float64] = pda.Field(nullable=True, gt=0)
    exchange: Series[Text] = pda.Field(nullable=True)
    exchange_timezone: Series[Text] = pda.Field(nullable=True)
    expiry: Series[Text] = pda.Field(nullable=True, str_matches=r"^\d{4}-\d{2}-\d{2}$")

    class Config:
        strict = True
        name = "contracts"


class AccountsModel(pda.DataFrameModel):
    """Brokerage accounts (`tables.ACCOUNTS`). Key: account_id, a safe name."""

    account_id: Series[Text] = pda.Field(str_matches=SAFE_VALUE_PATTERN)
    alias: Series[Text] = pda.Field(nullable=True)
    is_paper: Series[bool]
    is_selected: Series[bool]

    class Config:
        strict = True
        name = "accounts"


class OrdersModel(_FiniteFloatsModel):
    """Live orders (`tables.LIVE_ORDERS`) plus the snapshot time ``as_of``.
    Key: (as_of, order_id). Quantities are non-negative, prices non-negative and finite."""

    as_of: Series[TsUTC]
    order_id: Series[np.int64]
    account: Series[Text] = pda.Field(str_matches=SAFE_VALUE_PATTERN)
    conid: Series[np.int64] = pda.Field(gt=0)
    ticker: Series[Text] = pda.Field(nullable=True)
    sec_type: Series[Text] = pda.Field(nullable=True)
    side: Series[Text] = pda.Field(nullable=True)
    order_type: Series[Text] = pda.Field(nullable=True)
    status: Series[Text] = pda.Field(nullable=True)
    total_size: Series[np.float64] = pda.Field(nullable=True, ge=0)
    filled_quantity: Series[np.float64] = pda.Field(nullable=True, ge=0)
    remaining_quantity: Series[np.float64] = pda.Field(nullable=True, ge=0)
    avg_price: Series[np.float64] = pda.Field(nullable=True, ge=0)
    limit_price: Series[np.float64] = pda.Field(nullable=True, ge=0)
    time_in_force: Series[Text] = pda.Field(nullable=True)
    last_execution_time: Series[TsUTC] = pda.Field(nullable=True)
    order_ref: Series[Text] = pda.Field(nullable=True)

    class Config:
        strict = True
        name = "orders"


MODELS: dict[str, type[pda.DataFrameModel]] = {
    "bars": BarsModel,
    "quotes": QuotesModel,
    "positions": PositionsModel,
    "account_summary": AccountSummaryModel,
    "contracts": ContractsModel,
    "accounts": AccountsModel,
    "orders": OrdersModel,
}
"""The pandera model of every dataset, by warehouse dataset name."""


@functools.cache
def _base_schema(dataset: str) -> pda.DataFrameSchema:
    return MODELS[dataset].to_schema()


# --- the entry point ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationContext:
    """What a batch's validity depends on beyond its own values.

    ``now``: upper bound for plausible timestamps (pass the loader's clock; replays pass the
    fetch time or the wall clock). ``as_of``: snapshot time, required for quotes and orders.
    ``window``: [start, end) the dataset's time column must fall in (a partition's window).
    ``hours`` and ``outside_rth``: for bars, each conid's trading hours and whether the request
    included extended hours (one flag, or one per conid); required for bars.
    """

    now: datetime
    as_of: datetime | None = None
    window: tuple[datetime, datetime] | None = None
    hours: Mapping[int, TradingHours] | None = None
    outside_rth: bool | Mapping[int, bool] = False


@dataclass(frozen=True)
class ValidationResult:
    """``valid``: accepted rows in the stored schema, sorted by key, duplicates collapsed.
    ``rejected``: rejected rows as they came (plus ``as_of``/``session_date`` where derived)
    with a ``failed_checks`` column listing every failed check, ``; ``-separated.
    ``duplicates_collapsed``: exact duplicate rows dropped (each kept once)."""

    dataset: str
    valid: pa.Table
    rejected: pa.Table
    duplicates_collapsed: int
    reasons: dict[str, int] = field(default_factory=dict)  # failed check -> rejected rows

    @property
    def rows_in(self) -> int:
        return int(self.valid.num_rows) + int(self.rejected.num_rows) + self.duplicates_collapsed


class ContractError(ValueError):
    """A batch that cannot be judged row by row (a column of the wrong type); names why."""


BATCH = "__batch__"
"""Column of `validate` results naming the batch a row came from, when ``batches`` is given."""


def validate(
    dataset: str,
    table: pa.Table,
    context: ValidationContext,
    *,
    batches: npt.NDArray[np.int64] | None = None,
) -> ValidationResult:
    """Split ``table`` (a normaliser's output for ``dataset``) into valid and rejected rows.

    ``batches`` (one int per row) validates several batches sharing one context in a single
    pass, as fast as one batch: keys must then be unique within each batch only (the store
    lets the later batch win across batches), and both result tables carry the row's batch in
    a ``__batch__`` column.
    """
    spec = dataset_spec(dataset)
    # one piece per column: the input is often hundreds of normaliser outputs concatenated, and
    # every step below (sort check, duplicates, sessions, pandas) would gather them again
    table = conform(spec, table).combine_chunks()
    if spec.adds_as_of:
        if context.as_of is None:
            raise ValueError(f"{spec.name}: the snapshot time (as_of) is required")
        table = add_as_of(table, _ms(context.as_of))
    key: tuple[str, ...] = spec.key
    if batches is not None:
        if len(batches) != table.num_rows:
            raise ValueError(f"batches has {len(batches)} values for {table.num_rows} rows")
        table = table.append_column(BATCH, pa.array(np.asarray(batches, dtype=np.int64)))
        key = (BATCH, *spec.key)

    split = split_duplicates(table, key)
    candidates = (
        pa.concat_tables([split.unique, split.conflicts])
        if split.conflicts.num_rows
        else split.unique
    )
    n = candidates.num_rows
    failures: dict[str, npt.NDArray[np.bool_]] = {}
    if split.conflicts.num_rows:
        conflict = np.zeros(n, dtype=bool)
        conflict[split.unique.num_rows :] = True
        failures[CONFLICT] = conflict

    checked = candidates.drop_columns([BATCH]) if batches is not None else candidates
    filled, frame, null_failures = _to_frame(checked)
    failures.update(null_failures)
    _add_parse_failures(failures, checked)
    session_dates: pa.Array | None = None
    if spec.name == "bars":
        location = _locate(filled, context)
        locatable = location.hours_known & location.bar_size_known
        _add(failures, "conid_trading_hours_known", ~location.hours_known)
        _add(failures, "ts_in_session", locatable & ~location.in_session)
        _add(failures, "ts_at_bar_start", location.in_session & ~location.at_bar_start)
        session_dates = pa.array(location.session_date, pa.date32(), from_pandas=True)
    _add_pandera_failures(failures, _schema_with_context(spec, checked, context), frame)

    rejected_mask = np.zeros(n, dtype=bool)
    for mask in failures.values():
        rejected_mask |= mask
    kept, rejected, kept_dates, rejected_dates = _split_rows(
        candidates, session_dates, rejected_mask
    )
    valid_columns = [kept.column(name) for name in checked.column_names]
    valid_schema = spec.schema
    if kept_dates is not None and rejected_dates is not None:
        valid_columns.append(kept_dates)
        rejected = rejected.append_column(pa.field(SESSION_DATE.name, pa.date32()), rejected_dates)
    if batches is not None:
        valid_columns.append(kept.column(BATCH))
        valid_schema = valid_schema.append(pa.field(BATCH, pa.int64(), nullable=False))
    valid = pa.Table.from_arrays(valid_columns, schema=valid_schema)
    rejected = rejected.append_column(FAILED_CHECKS, _reason_texts(failures, rejected_mask))
    reasons = {name: int(mask.sum()) for name, mask in sorted(failures.items()) if mask.any()}
    return ValidationResult(spec.name, valid, rejected, split.collapsed, reasons)


PARSE_ERRORS = "parse_errors"
"""The column in which a lenient normaliser names the values it could not read."""


def _add_parse_failures(failures: dict[str, npt.NDArray[np.bool_]], table: pa.Table) -> None:
    """Each reason of a row's ``parse_errors`` (``last:unparseable('N/A')``) as a failed check
    of that row: the value is null in the row, what the gateway sent is in the reason."""
    if PARSE_ERRORS not in table.column_names:
        return
    if table.column(PARSE_ERRORS).null_count == table.num_rows:
        return
    texts = table.column(PARSE_ERRORS).to_pylist()
    for row, text in enumerate(texts):
        if not text:
            continue
        for reason in str(text).split(REASON_SEPARATOR):
            mask = np.zeros(len(texts), dtype=bool)
            mask[row] = True
            _add(failures, reason, mask)


def _split_rows(
    candidates: pa.Table, session_dates: pa.Array | None, rejected_mask: npt.NDArray[np.bool_]
) -> tuple[pa.Table, pa.Table, pa.Array | None, pa.Array | None]:
    """Kept and rejected rows (and session dates). Without a rejected row, the common case,
    nothing is copied: filtering a million rows by an all-true mask costs tens of ms."""
    if not rejected_mask.any():
        none_dates = None if session_dates is None else session_dates.slice(0, 0)
        return candidates, candidates.slice(0, 0), session_dates, none_dates
    keep, drop = pa.array(~rejected_mask), pa.array(rejected_mask)
    if session_dates is None:
        return candidates.filter(keep), candidates.filter(drop), None, None
    return (
        candidates.filter(keep),
        candidates.filter(drop),
        session_dates.filter(keep),
        session_dates.filter(drop),
    )


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} must be timezone-aware (UTC)")
    return round(moment.timestamp() * 1000)


def _add(
    failures: dict[str, npt.NDArray[np.bool_]], name: str, mask: npt.NDArray[np.bool_]
) -> None:
    if mask.any():
        failures[name] = failures[name] | mask if name in failures else mask.copy()


def _fill_value(arrow_type: pa.DataType) -> Any:
    if pa.types.is_boolean(arrow_type):
        return False
    if pa.types.is_string(arrow_type):
        return ""
    if pa.types.is_timestamp(arrow_type):
        return pa.scalar(0, pa.int64()).cast(arrow_type)
    return pa.scalar(0, arrow_type)


_ARROW_STRINGS = {pa.string(): pd.StringDtype("pyarrow")}


def _to_frame(
    table: pa.Table,
) -> tuple[pa.Table, pd.DataFrame, dict[str, npt.NDArray[np.bool_]]]:
    """The table with nulls in required columns filled, its pandas frame for pandera, and the
    rows that had such nulls.

    Nulls in required columns are reported here (``<column>:not_nullable``) and filled with a
    neutral value for the frame, so one bad row cannot change a whole column's pandas dtype
    (a null turns a bool column into objects) and fail the batch instead of the row.
    """
    failures: dict[str, npt.NDArray[np.bool_]] = {}
    columns = []
    for column_field, column in zip(table.schema, table.columns, strict=True):
        if not column_field.nullable and column.null_count:
            failures[f"{column_field.name}:not_nullable"] = np.asarray(
                pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool
            )
            columns.append(pc.fill_null(column, _fill_value(column_field.type)))
        else:
            columns.append(column)
    plain = pa.Table.from_arrays(columns, names=table.column_names)
    frame = plain.to_pandas(types_mapper=_ARROW_STRINGS.get)
    for column_field in table.schema:
        if pa.types.is_integer(column_field.type) and column_field.nullable:
            frame[column_field.name] = frame[column_field.name].astype("Int64")
    frame.index = pd.RangeIndex(len(frame))
    return plain, frame, failures


def _locate(candidates: pa.Table, context: ValidationContext) -> BarLocation:
    if context.hours is None:
        raise ValueError(
            "bars: validation needs each conid's trading hours (ValidationContext.hours)"
        )
    return locate_bars(
        candidates.column("conid"),
        candidates.column("bar_size"),
        np.asarray(candidates.column("ts").cast(pa.int64()).to_numpy(), dtype=np.int64),
        context.hours,
        context.outside_rth,
    )


def _schema_with_context(
    spec: DatasetSpec, table: pa.Table, context: ValidationContext
) -> pda.DataFrameSchema:
    """The dataset's model plus the checks that depend on this batch's context."""
    base = _base_schema(spec.name)
    extra: list[pda.Check] = []
    ts_columns = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
    lowest = pd.Timestamp(EARLIEST_PLAUSIBLE)
    highest = pd.Timestamp(context.now + FUTURE_TOLERANCE)
    for name in ts_columns:
        extra.append(
            pda.Check(
                functools.partial(_plausible, column=name, lowest=lowest, highest=highest),
                name=f"{name}_plausible",
                ignore_na=SKIP_ALL_MISSING_ROWS,
            )
        )
    if context.window is not None and spec.time_column is not None:
        start, end = (pd.Timestamp(t) for t in context.window)
        extra.append(
            pda.Check(
                functools.partial(_in_window, column=spec.time_column, start=start, end=end),
                name=f"{spec.time_column}_in_window",
                ignore_na=SKIP_ALL_MISSING_ROWS,
            )
        )
    if not extra:
        return base
    schema = copy.copy(base)
    schema.checks = [*base.checks, *extra]
    return schema


def _plausible(
    df: pd.DataFrame, *, column: str, lowest: pd.Timestamp, highest: pd.Timestamp
) -> pd.Series[bool]:
    values = df[column]
    return values.isna() | ((values >= lowest) & (values <= highest))


def _in_window(
    df: pd.DataFrame, *, column: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.Series[bool]:
    values = df[column]
    return (values >= start) & (values < end)


def _add_pandera_failures(
    failures: dict[str, npt.NDArray[np.bool_]], schema: pda.DataFrameSchema, frame: pd.DataFrame
) -> None:
    n = len(frame)
    if n == 0:
        return
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        whole = cases[cases["index"].isna()]
        if len(whole):
            details = "; ".join(
                f"{row.column}: {row.check} (got {row.failure_case})" for row in whole.itertuples()
            )
            raise ContractError(f"{schema.name}: batch cannot be validated: {details}") from None
        for (context, column, check), group in cases.groupby(
            ["schema_context", "column", "check"], sort=True
        ):
            name = str(check) if context == "DataFrameSchema" else f"{column}:{check}"
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(group["index"], dtype=np.int64)] = True
            _add(failures, name, mask)


def _reason_texts(
    failures: dict[str, npt.NDArray[np.bool_]], rejected_mask: npt.NDArray[np.bool_]
) -> pa.Array:
    rows = np.flatnonzero(rejected_mask)
    names = sorted(failures)
    texts = []
    for row in rows:
        texts.append(REASON_SEPARATOR.join(name for name in names if failures[name][row]))
    return pa.array(texts, pa.string())
