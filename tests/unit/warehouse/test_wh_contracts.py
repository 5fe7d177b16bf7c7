"""The pandera contracts: every kind of bad row is rejected with its reason, the valid rows of
the same batch are kept, and the key policy (exact duplicates collapse, conflicts are all
rejected) holds."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ib_pipeline.calendars import CME_FUTURES, US_EQUITY
from ib_pipeline.ibkr.tables import (
    ACCOUNT_SUMMARY,
    ACCOUNTS,
    CONTRACTS,
    LIVE_ORDERS,
    POSITIONS,
    SNAPSHOT_QUOTES,
)
from ib_pipeline.schemas import ValidationContext, ValidationResult, validate
from ib_pipeline.storage.paths import SAFE_VALUE_PATTERN

AAPL, MSFT, ES = 265598, 272093, 495512563
NOW = datetime(2024, 11, 28, tzinfo=UTC)  # the validation clock: after every bar built here
BarsFactory = Callable[..., pa.Table]  # the ``make_bars`` fixture (conftest.py)
DAY = date(2024, 11, 26)
AddRows = Callable[[pa.Table, list[dict[str, object]]], pa.Table]


def ctx(**changes: object) -> ValidationContext:
    base: dict[str, object] = {
        "now": NOW,
        "hours": {AAPL: US_EQUITY, MSFT: US_EQUITY, ES: CME_FUTURES},
    }
    base.update(changes)
    return ValidationContext(**base)  # type: ignore[arg-type]


def reasons_of(result: ValidationResult) -> list[str]:
    return [str(r) for r in result.rejected.column("failed_checks").to_pylist()]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def one_bar(**values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "conid": AAPL,
        "bar_size": "1min",
        "ts": utc(2024, 11, 26, 15, 0),
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 100.0,
    }
    row.update(values)
    return row


def test_valid_bars_pass_whole_with_their_session_date(make_bars: BarsFactory) -> None:
    table = make_bars([MSFT, AAPL], DAY)
    result = validate("bars", table, ctx())
    assert result.rejected.num_rows == 0
    assert result.valid.num_rows == table.num_rows == 2 * 390
    assert result.valid.column("session_date").unique().to_pylist() == [DAY]
    conids = result.valid.column("conid").to_pylist()
    assert conids == sorted(conids)  # sorted by key
    assert result.valid.schema.field("volume").metadata == {b"unit": b"shares"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"high": 8.0}, "high_ge_low"),
        ({"high": 10.2}, "high_ge_open_close"),
        ({"low": 10.6}, "low_le_open_close"),
        ({"volume": -5.0}, "volume:greater_than_or_equal_to(0)"),
        ({"open": math.nan}, "open:not_nullable"),
        ({"close": math.inf, "high": math.inf}, "prices_finite"),
        ({"volume": math.inf}, "volume_finite"),
        ({"low": -1.0}, "low:greater_than(0)"),
        ({"conid": 0}, "conid:greater_than(0)"),
        ({"bar_size": "7min"}, "bar_size:isin"),
        ({"ts": utc(2024, 11, 30, 15, 0)}, "ts_in_session"),  # a Saturday
        ({"ts": datetime(2024, 11, 26, 15, 0, 30, tzinfo=UTC)}, "ts_at_bar_start"),
        ({"ts": utc(2024, 11, 26, 12, 0)}, "ts_in_session"),  # pre-market, RTH request
        ({"ts": datetime.fromtimestamp(173_263_140, UTC)}, "ts_plausible"),  # 11-digit typo
    ],
)
def test_each_kind_of_bad_bar_is_rejected_with_its_reason(
    make_bars: BarsFactory, add_rows: AddRows, change: dict[str, object], reason: str
) -> None:
    table = make_bars([MSFT], DAY)
    result = validate("bars", add_rows(table, [one_bar(**change)]), ctx())
    assert result.valid.num_rows == table.num_rows  # the good rows of the batch stay
    assert result.rejected.num_rows == 1
    assert any(r.startswith(reason) for r in reasons_of(result)[0].split("; ")), reasons_of(result)


def test_rejected_rows_keep_their_original_values(
    make_bars: BarsFactory, add_rows: AddRows
) -> None:
    table = add_rows(make_bars([MSFT], DAY), [one_bar(open=math.nan, volume=-1.0)])
    result = validate("bars", table, ctx())
    row = result.rejected.to_pylist()[0]
    assert math.isnan(row["open"]) and row["volume"] == -1.0
    assert set(reasons_of(result)[0].split("; ")) >= {
        "open:not_nullable",
        "volume:greater_than_or_equal_to(0)",
    }
    assert result.reasons["open:not_nullable"] == 1


def test_exact_duplicates_collapse_and_are_counted(make_bars: BarsFactory) -> None:
    table = make_bars([AAPL], DAY)
    doubled = pa.concat_tables([table, table.slice(10, 5)])
    result = validate("bars", doubled, ctx())
    assert result.duplicates_collapsed == 5
    assert result.rejected.num_rows == 0
    assert result.valid.equals(validate("bars", table, ctx()).valid)


def test_conflicting_duplicates_are_all_rejected(make_bars: BarsFactory, add_rows: AddRows) -> None:
    table = make_bars([AAPL], DAY)
    first = table.slice(20, 1).to_pylist()[0]
    conflicting = dict(first, close=first["close"] + 0.01, high=first["high"] + 0.01)
    result = validate("bars", add_rows(table, [conflicting, first]), ctx())
    # the original, its exact copy (collapsed) and the conflicting version: key rejected whole
    assert result.duplicates_collapsed == 1
    assert reasons_of(result) == ["duplicate_key_conflict", "duplicate_key_conflict"]
    assert result.valid.num_rows == table.num_rows - 1
    assert first["ts"] not in result.valid.column("ts").to_pylist()


def test_unsorted_input_is_fine_and_comes_out_sorted(make_bars: BarsFactory) -> None:
    table = make_bars([MSFT, AAPL], DAY)
    shuffled = table.take(pa.array(list(reversed(range(table.num_rows)))))
    result = validate("bars", shuffled, ctx())
    assert result.rejected.num_rows == 0
    assert result.valid.equals(validate("bars", table, ctx()).valid)


def test_window_rejects_rows_outside_the_partition(make_bars: BarsFactory) -> None:
    table = make_bars([AAPL], DAY)
    window = (utc(2024, 11, 26, 15), utc(2024, 11, 26, 16))
    result = validate("bars", table, ctx(window=window))
    assert result.valid.num_rows == 60
    assert set(reasons_of(result)) == {"ts_in_window"}


def test_extended_session_crossing_midnight_utc_keeps_its_new_york_date(
    make_bars: BarsFactory,
) -> None:
    table = make_bars([AAPL], DAY, outside_rth=True)
    result = validate("bars", table, ctx(outside_rth=True))
    assert result.rejected.num_rows == 0
    last = result.valid.slice(result.valid.num_rows - 1).to_pylist()[0]
    assert last["ts"] == utc(2024, 11, 27, 0, 59)  # 19:59 in New York
    assert last["session_date"] == DAY
    # the same extended bars on a regular-hours request are outside the session
    rth = validate("bars", table, ctx(outside_rth=False))
    assert rth.valid.num_rows == 390
    assert set(reasons_of(rth)) == {"ts_in_session"}


def test_cme_evening_bars_belong_to_the_next_session(make_bars: BarsFactory) -> None:
    table = make_bars([ES], date(2024, 11, 25), "1h", outside_rth=True, hours=CME_FUTURES)
    result = validate("bars", table, ctx(outside_rth=True))
    assert result.rejected.num_rows == 0
    first = result.valid.slice(0, 1).to_pylist()[0]
    assert first["ts"] == utc(2024, 11, 24, 23)  # Sunday 17:00 Chicago
    assert first["session_date"] == date(2024, 11, 25)


def test_daily_weekly_monthly_stamps(add_rows: AddRows, make_bars: BarsFactory) -> None:
    empty = make_bars([AAPL], DAY).slice(0, 0)
    rows = [
        one_bar(bar_size="1d", ts=utc(2024, 11, 26, 14, 30)),  # session open: valid
        one_bar(bar_size="1w", ts=utc(2024, 11, 25, 14, 30)),  # Monday open: valid
        one_bar(bar_size="1m", ts=utc(2024, 11, 1)),  # 00:00Z on the 1st: valid
        one_bar(bar_size="1d", ts=utc(2024, 11, 26, 15, 30)),  # not the open
        one_bar(bar_size="1w", ts=utc(2024, 11, 27, 14, 30)),  # a Wednesday
        one_bar(bar_size="1m", ts=utc(2024, 11, 2)),  # not the 1st
    ]
    result = validate("bars", add_rows(empty, rows), ctx())
    assert result.valid.num_rows == 3
    assert sorted(result.valid.column("bar_size").to_pylist()) == ["1d", "1m", "1w"]
    assert reasons_of(result) == ["ts_at_bar_start"] * 3


def test_wrong_table_shape_is_an_error_not_quarantine(make_bars: BarsFactory) -> None:
    table = make_bars([AAPL], DAY)
    with pytest.raises(ValueError, match="missing columns \\['volume'\\]"):
        validate("bars", table.drop_columns(["volume"]), ctx())
    with pytest.raises(ValueError, match="column 'conid' is int32"):
        validate("bars", table.set_column(0, "conid", pc.cast(table["conid"], pa.int32())), ctx())
    with pytest.raises(ValueError, match="needs each conid's trading hours"):
        validate("bars", table, ctx(hours=None))
    with pytest.raises(ValueError, match="unknown dataset 'bar'"):
        validate("bar", table, ctx())


def quotes_table(rows: list[dict[str, object]]) -> pa.Table:
    base: dict[str, object] = {
        "conid": AAPL,
        "updated": utc(2024, 11, 26, 17, 59),
        "symbol": "AAPL",
        "last": 230.0,
        "bid": 229.9,
        "ask": 230.1,
        "last_is_close": False,
        "halted": False,
    }
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=SNAPSHOT_QUOTES)


def test_quotes_contract() -> None:
    table = quotes_table(
        [{}, {"conid": MSFT, "ask": math.inf}, {"conid": 8314, "bid": None, "low": 5, "high": 4}]
    )
    with pytest.raises(ValueError, match="as_of"):
        validate("quotes", table, ctx())
    result = validate("quotes", table, ctx(as_of=utc(2024, 11, 26, 18)))
    assert result.valid.column("conid").to_pylist() == [AAPL]
    assert result.valid.column("as_of").to_pylist() == [utc(2024, 11, 26, 18)]
    assert sorted(reasons_of(result)) == ["low_le_high", "values_finite"]


def test_hostile_account_ids_are_quarantined_not_used() -> None:
    rows = [
        {"account": account, "as_of": utc(2024, 11, 26, 18), "conid": AAPL, "position": 5.0}
        for account in ("U1234567", "../../etc", "U1'; DROP TABLE bars;--", "a/b", ".hidden")
    ]
    result = validate("positions", pa.Table.from_pylist(rows, schema=POSITIONS), ctx())
    assert result.valid.column("account").to_pylist() == ["U1234567"]
    assert all(r.startswith("account:str_matches") for r in reasons_of(result))
    assert result.rejected.num_rows == 4


def test_other_datasets_reject_bad_values() -> None:
    summary = pa.Table.from_pylist(
        [
            {
                "account": "U1",
                "as_of": NOW,
                "key": "netliquidation",
                "amount": 1.0,
                "is_null": False,
            },
            {"account": "U1", "as_of": NOW, "key": "cash", "amount": math.inf, "is_null": False},
            {"account": "U1", "as_of": NOW, "key": "", "amount": 1.0, "is_null": False},
        ],
        schema=ACCOUNT_SUMMARY,
    )
    result = validate("account_summary", summary, ctx())
    assert result.valid.num_rows == 1
    assert sorted(reasons_of(result)) == ["amount_finite", "key:str_length(1, 200)"]

    contracts = pa.Table.from_pylist(
        [{"conid": AAPL, "symbol": "AAPL"}, {"conid": -1, "symbol": ""}], schema=CONTRACTS
    )
    result = validate("contracts", contracts, ctx())
    assert result.valid.num_rows == 1
    assert reasons_of(result) == ["conid:greater_than(0); symbol:str_length(1, 64)"]

    accounts = pa.Table.from_pylist(
        [
            {"account_id": "DU1", "is_paper": True, "is_selected": True},
            {"account_id": "x/..", "is_paper": True, "is_selected": None},
        ],
        schema=ACCOUNTS,
    )
    result = validate("accounts", accounts, ctx())
    assert result.valid.column("account_id").to_pylist() == ["DU1"]
    assert set(reasons_of(result)[0].split("; ")) == {
        f"account_id:str_matches('{SAFE_VALUE_PATTERN}')",
        "is_selected:not_nullable",
    }

    orders = pa.Table.from_pylist(
        [
            {"order_id": 1, "account": "U1", "conid": AAPL, "total_size": 5.0},
            {"order_id": 2, "account": "U1", "conid": AAPL, "total_size": -5.0},
        ],
        schema=LIVE_ORDERS,
    )
    result = validate("orders", orders, ctx(as_of=NOW))
    assert result.valid.column("order_id").to_pylist() == [1]
    assert reasons_of(result) == ["total_size:greater_than_or_equal_to(0)"]


def test_bars_of_a_conid_without_trading_hours_are_rejected(make_bars: BarsFactory) -> None:
    table = pa.concat_tables([make_bars([AAPL], DAY), make_bars([MSFT], DAY)])
    result = validate("bars", table, ctx(hours={AAPL: US_EQUITY}))
    assert result.valid.column("conid").unique().to_pylist() == [AAPL]
    assert set(reasons_of(result)) == {"conid_trading_hours_known"}


def test_a_null_in_a_required_column_rejects_the_row_not_the_batch(
    make_bars: BarsFactory,
) -> None:
    table = make_bars([AAPL], DAY).slice(0, 3)
    conid = pa.array([AAPL, None, AAPL], pa.int64())
    result = validate("bars", table.set_column(0, table.schema.field(0), conid), ctx())
    assert result.valid.num_rows == 2
    assert "conid:not_nullable" in reasons_of(result)[0]
