"""Every example payload of IBKR's documentation (spec/examples), through the normalisers.

The examples carry documented caveats (spec/README.md): history_6's 11-digit ``t`` passes
through unchanged (bad data is the warehouse contracts' job), summary_2's ``"currency": 1.1``
is a wrong type and raises, snapshot_5's placeholder ``"6119"`` is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.errors import InvalidPayloadError, OrderRejectedError
from ib_pipeline.ibkr.orders import _question, _single_answer
from ib_pipeline.ibkr.response import RawResponse
from ib_pipeline.ibkr.tables import SCHEMAS

EXAMPLES = Path(__file__).resolve().parents[3] / "spec" / "examples"
AS_OF = datetime(2024, 4, 3, 15, 0, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def ms(table: pa.Table, column: str) -> list[int]:
    values: list[int] = table.column(column).cast(pa.int64()).to_pylist()
    return values


def check_accounts_2(payload: Any) -> None:
    table = normalize.accounts(payload)
    assert table.schema == SCHEMAS["accounts"]
    assert table.to_pylist() == [
        {"account_id": "U1234567", "alias": "U1234567", "is_paper": False, "is_selected": True}
    ]


def check_auth_status_3(payload: Any) -> None:
    # Not a dataset; the session check reads it (see test_client_session_unit.py). As a
    # dataset payload it is refused clearly.
    with pytest.raises(InvalidPayloadError, match="accounts"):
        normalize.accounts(payload)


def check_cancel_order_1(payload: Any) -> None:
    with pytest.raises(InvalidPayloadError, match="'orders'"):
        normalize.live_orders(payload)


def check_history_4(payload: Any) -> None:
    table = normalize.history_bars(payload, conid=265598, bar_size="1d", lot_size=100)
    assert table.schema == SCHEMAS["history_bars"]
    assert table.num_rows == 4
    assert ms(table, "ts") == [1747229400000, 1747315800000, 1747402200000, 1747661400000]
    assert table.column("open").to_pylist() == [212.43, 210.95, 212.36, 207.78]
    assert table.column("volume").to_pylist() == pytest.approx(
        [26661618.0, 25684725.0, 23524024.0, 26756989.0]
    )
    assert set(table.column("conid").to_pylist()) == {265598}
    assert set(table.column("bar_size").to_pylist()) == {"1d"}


def check_history_5(payload: Any) -> None:
    table = normalize.history_bars(payload, conid=265598, bar_size="1d", lot_size=100)
    assert table.num_rows == 4
    assert table.column("volume").to_pylist() == [0.0] * 4  # Bid_Ask/Midpoint data: v is 0
    assert table.column("low").to_pylist() == [210.58, 209.53, 209.77, 204.25]


def check_history_6(payload: Any) -> None:
    # The 11-digit t is a typo in IBKR's page: it is a valid number, so it passes through
    # unchanged (a 1970 timestamp) for the warehouse's contract to quarantine.
    table = normalize.history_bars(payload, conid=265598, bar_size="1d", lot_size=1)
    assert ms(table, "ts") == [16923456000]
    assert table.column("volume").to_pylist() == [472117.45]


def check_live_orders_4(payload: Any) -> None:
    table = normalize.live_orders(payload)
    assert table.schema == SCHEMAS["live_orders"]
    (row,) = table.to_pylist()
    assert row["order_id"] == 1234568790
    assert row["account"] == "U1234567"
    assert row["conid"] == 265598
    assert row["avg_price"] == 192.26
    assert row["total_size"] == 5.0
    assert row["order_type"] == "Market"
    assert row["limit_price"] is None
    assert row["last_execution_time"] == datetime.fromtimestamp(1702317649, UTC)
    assert row["order_ref"] == "Order123"


def check_place_order_reject_1(payload: Any) -> None:
    response = RawResponse("place_order", {}, payload, AS_OF)
    with pytest.raises(OrderRejectedError, match="limit price you selected"):
        _single_answer(response)


def check_place_order_reply_2(payload: Any) -> None:
    answer = _single_answer(RawResponse("place_order", {}, payload, AS_OF))
    reply_id, ids, messages = _question(answer, "place_order")
    assert reply_id == "07a13a5a-4a48-44a5-bb25-5ab37b79186c"
    assert ids == ["o163"]
    assert "Percentage constraint of 3%" in messages[0]


def check_place_order_response_2(payload: Any) -> None:
    answer = _single_answer(RawResponse("place_order", {}, payload, AS_OF))
    assert answer["order_id"] == "1234567890"
    assert answer["order_status"] == "Submitted"


def check_positions_3(payload: Any) -> None:
    table = normalize.positions(payload, account="U1234567", as_of=AS_OF)
    assert table.schema == SCHEMAS["positions"]
    assert table.column("conid").to_pylist() == [756733, 76792991, 107113386]
    assert table.column("position").to_pylist() == [5.0, 7.0, 11.0]
    assert table.column("avg_cost").to_pylist() == [434.93, 221.67142855, 306.6909091]
    assert set(table.column("as_of").to_pylist()) == {AS_OF}
    with pytest.raises(InvalidPayloadError, match=r"positions\[0\]\.acctId"):
        normalize.positions(payload, account="DU999", as_of=AS_OF)


def check_secdef_search_1(payload: Any) -> None:
    table = normalize.contracts(payload)
    assert table.schema == SCHEMAS["contracts"]
    assert table.to_pylist() == [
        {
            "conid": 43645865,  # a string in the payload
            "symbol": "IBKR",
            "sec_type": "STK",
            "company_name": "INTERACTIVE BROKERS GRO-CL A (NASDAQ)",
            "company_header": "IBKR INTERACTIVE BROKERS GRO-CL A (NASDAQ) ",
            "description": None,
            "exchanges": None,
            "currency": None,  # no listing exchange in the answer to derive it from
            "multiplier": 1.0,  # a stock
            "exchange": None,
            "exchange_timezone": None,
            "expiry": None,
        }
    ]


def check_snapshot_1(payload: Any) -> None:
    table = normalize.snapshot_quotes(payload, lot_size=100)  # pre-flight: no rows
    assert table.schema == SCHEMAS["snapshot_quotes"]
    assert table.num_rows == 0


def check_snapshot_2(payload: Any) -> None:
    table = normalize.snapshot_quotes(payload, lot_size=100)
    rows = table.to_pylist()
    assert [r["conid"] for r in rows] == [265598, 8314]
    assert rows[0]["last"] == 168.42
    assert rows[0]["bid"] == 168.41
    assert rows[0]["bid_size"] == 130_000.0  # "1,300" lots of 100
    assert rows[0]["ask_size"] == 60_000.0
    assert rows[0]["last_size"] == 10_000.0
    assert rows[0]["market_data_availability"] == "RpB"
    assert rows[0]["updated"] == datetime.fromtimestamp(1712596911.593, UTC)
    assert rows[0]["last_is_close"] is False and rows[0]["halted"] is False
    assert rows[0]["volume"] is None


def check_snapshot_5(payload: Any) -> None:
    (row,) = normalize.snapshot_quotes(payload, lot_size=100).to_pylist()
    assert (row["last"], row["bid"], row["ask"]) == (193.18, 193.06, 193.14)
    assert row["symbol"] is None  # "6119": "serverId" is a placeholder, not a field we map


def check_sso_validate_1(payload: Any) -> None:
    # Session information, not a dataset: refused by the accounts normaliser, by name.
    with pytest.raises(InvalidPayloadError, match="missing required key 'accounts'"):
        normalize.accounts(payload)


def check_summary_2(payload: Any) -> None:
    with pytest.raises(InvalidPayloadError, match=r"currency: expected a string or null, got 1\.1"):
        normalize.account_summary(payload, account="DU123456", as_of=AS_OF)
    fixed = {
        key: {**entry, "currency": "USD" if isinstance(entry["currency"], float) else None}
        for key, entry in payload.items()
    }
    table = normalize.account_summary(fixed, account="DU123456", as_of=AS_OF)
    assert table.schema == SCHEMAS["account_summary"]
    assert table.num_rows == len(payload)
    rows = {r["key"]: r for r in table.to_pylist()}
    assert rows["accountcode"]["value"] == "DU123456"
    assert rows["accountcode"]["amount"] == 0.0
    assert rows["netliquidation"]["amount"] == 206415536.0
    assert rows["netliquidation"]["currency"] == "USD"
    assert rows["netliquidation"]["timestamp"] == datetime.fromtimestamp(1712156105, UTC)


CHECKS: dict[str, Callable[[Any], None]] = {
    name.removeprefix("check_") + ".json": fn
    for name, fn in dict(globals()).items()
    if name.startswith("check_") and callable(fn)
}


def test_every_example_file_has_a_check() -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert files, f"no examples found in {EXAMPLES}"
    assert sorted(CHECKS) == files


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example(name: str) -> None:
    CHECKS[name](load(name))
