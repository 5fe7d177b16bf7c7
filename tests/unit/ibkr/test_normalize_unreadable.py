"""Unreadable values cost their row, not the answer (issue 10 item 4), flat positions
snapshots (item 3) and the derived contract columns (issue 12 item 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.tables import SCHEMAS
from ib_pipeline.schemas import ValidationContext, validate

AS_OF = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
T0 = 1732631400000  # 2024-11-26T14:30Z


def bar(t: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"t": t, "o": 10.0, "h": 11.0, "l": 9.5, "c": 10.5, "v": 12.0}
    row.update(changes)
    return row


def test_history_bars_strict_by_default() -> None:
    with pytest.raises(InvalidPayloadError, match=r"data\[1\]\.c"):
        normalize.history_bars(
            {"data": [bar(T0), bar(T0 + 60_000, c="N/A")]}, conid=1, bar_size="1min", lot_size=1
        )


def test_history_bars_lenient_null_the_value_and_say_why() -> None:
    missing_v = bar(T0 + 120_000)
    del missing_v["v"]
    data = [bar(T0), bar(T0 + 60_000, c=None), missing_v, bar(T0 + 180_000, o="-")]
    unreadable: list[normalize.Unreadable] = []
    table = normalize.history_bars(
        {"data": data}, conid=1, bar_size="1min", lot_size=100, unreadable=unreadable
    )
    assert table.schema == SCHEMAS["history_bars"] and table.num_rows == 4
    assert table.column("close").to_pylist() == [10.5, None, 10.5, 10.5]
    assert table.column("volume").to_pylist() == [1200.0, 1200.0, None, 1200.0]
    assert table.column("open").to_pylist() == [10.0, 10.0, 10.0, None]
    assert [(u.row, u.ts_ms, u.reason) for u in unreadable] == [
        (1, T0 + 60_000, "close:null"),
        (2, T0 + 120_000, "volume:missing"),
        (3, T0 + 180_000, "open:unparseable('-')"),
    ]


def test_history_bars_lenient_still_refuse_a_bar_without_time() -> None:
    with pytest.raises(InvalidPayloadError, match="'t'"):
        normalize.history_bars(
            {"data": [{"o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]},
            conid=1,
            bar_size="1min",
            lot_size=1,
            unreadable=[],
        )


def snapshot_entry(conid: int, **fields: Any) -> dict[str, Any]:
    entry = {"conid": conid, "_updated": T0, "31": "101.5", "84": "101.4", "86": "101.6"}
    entry.update(fields)
    return entry


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"31": "N/A"}, "last:unparseable('N/A')"),
        ({"84": "-"}, "bid:unparseable('-')"),
        ({"86": "1.2K"}, "ask:unparseable('1.2K')"),
        ({"83": "x%"}, "change_pct:unparseable('x%')"),
    ],
)
def test_snapshot_lenient_names_the_field_and_keeps_the_others(
    fields: dict[str, Any], reason: str
) -> None:
    payload = [snapshot_entry(1, **fields), snapshot_entry(2)]
    with pytest.raises(InvalidPayloadError):
        normalize.snapshot_quotes(payload, lot_size=1)
    table = normalize.snapshot_quotes(payload, lot_size=1, lenient=True)
    bad, good = table.to_pylist()
    assert bad["parse_errors"] == reason and good["parse_errors"] is None
    assert good["last"] == 101.5

    result = validate("quotes", table, ValidationContext(now=AS_OF, as_of=AS_OF))
    assert result.valid.column("conid").to_pylist() == [2]
    (rejected,) = result.rejected.to_pylist()
    assert rejected["conid"] == 1 and reason in rejected["failed_checks"].split("; ")


def test_flat_positions_is_one_valid_marker_row() -> None:
    table = normalize.flat_positions(account="DU1", as_of=AS_OF)
    assert table.schema == SCHEMAS["positions"]
    (row,) = table.to_pylist()
    assert (row["conid"], row["position"], row["mkt_value"]) == (normalize.FLAT_CONID, 0.0, 0.0)
    result = validate("positions", table, ValidationContext(now=AS_OF))
    assert result.valid.num_rows == 1 and result.rejected.num_rows == 0
    holding = table.to_pylist()[0] | {"position": 5.0}
    bad = validate(
        "positions",
        type(table).from_pylist([holding], schema=SCHEMAS["positions"]),
        ValidationContext(now=AS_OF),
    )
    assert bad.rejected.num_rows == 1
    assert "flat_marker_holds_nothing" in bad.rejected.column("failed_checks")[0].as_py()


def search_result(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "conid": "265598",
        "symbol": "AAPL",
        "secType": "STK",
        "companyName": "APPLE INC",
        "description": "NASDAQ",
        "sections": [{"secType": "STK", "exchange": "NASDAQ;SMART"}],
    }
    entry.update(changes)
    return entry


def test_contracts_derive_what_the_search_lacks() -> None:
    (row,) = normalize.contracts([search_result()]).to_pylist()
    assert row["currency"] == "USD" and row["multiplier"] == 1.0
    assert row["exchange"] == "NASDAQ" and row["exchange_timezone"] == "America/New_York"
    assert row["expiry"] is None

    fx = search_result(
        conid=12087792, symbol="EUR.USD", secType="CASH", description="IDEALPRO", sections=[]
    )
    (row,) = normalize.contracts([fx]).to_pylist()
    assert (row["currency"], row["multiplier"], row["exchange_timezone"]) == ("USD", 1.0, "UTC")

    future = search_result(
        conid=1,
        symbol="ES",
        secType="FUT",
        description="CME",
        sections=[{"secType": "FUT", "exchange": "CME"}],
        multiplier="50",
        expirationDate="20241220",
    )
    (row,) = normalize.contracts([future]).to_pylist()
    assert (row["multiplier"], row["expiry"], row["exchange_timezone"]) == (
        50.0,
        "2024-12-20",
        "America/Chicago",
    )
    no_detail = search_result(conid=2, symbol="ES", secType="FUT", description="CME", sections=[])
    (row,) = normalize.contracts([no_detail]).to_pylist()
    assert row["multiplier"] is None and row["expiry"] is None  # never guessed

    # The search's own currency wins; the configured exchange completes a row.
    (row,) = normalize.contracts([search_result(currency="EUR", description=None)]).to_pylist()
    assert row["currency"] == "EUR" and row["exchange"] == "NASDAQ"  # first non-SMART section
    table = normalize.complete_contracts(
        normalize.contracts([search_result(description=None, sections=[])]), exchange="nasdaq"
    )
    (row,) = table.to_pylist()
    assert (row["exchange"], row["exchange_timezone"], row["currency"]) == (
        "NASDAQ",
        "America/New_York",
        "USD",
    )
    assert validate("contracts", table, ValidationContext(now=AS_OF)).rejected.num_rows == 0
