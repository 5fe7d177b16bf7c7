"""secdef search results for the simulator's universe."""

from __future__ import annotations

from datetime import date

import pytest

from ib_pipeline.simulator.search import secdef_search


def test_symbol_search_has_the_gateway_shape() -> None:
    [result] = secdef_search("AAPL", None, False)
    assert result == {
        "conid": "265598",  # a string here, unlike everywhere else
        "companyHeader": "APPLE INC - NASDAQ",
        "companyName": "APPLE INC",
        "symbol": "AAPL",
        "description": "NASDAQ",
        "restricted": None,
        "sections": [{"secType": "STK", "exchange": "NASDAQ;SMART"}],
        "secType": "STK",
    }


def test_case_type_filter_and_no_match() -> None:
    assert [r["conid"] for r in secdef_search("spy", "stk", False)] == ["756733"]
    assert [r["conid"] for r in secdef_search("SPY", "ETF", False)] == ["756733"]
    assert secdef_search("SPY", "FUT", False) == []
    assert secdef_search("NOSUCH", None, False) == []
    assert secdef_search("INTERACTIVE", None, False) == []  # not a symbol


def test_name_search() -> None:
    found = {r["symbol"] for r in secdef_search("interactive", None, True)}
    assert found == {"IBKR"}
    assert "GOOGL" in {r["symbol"] for r in secdef_search("GOO", None, True)}


def test_forex_and_futures() -> None:
    [fx] = secdef_search("EUR.USD", "CASH", False)
    assert fx["conid"] == "12087792"
    assert fx["sections"] == [{"secType": "CASH", "exchange": "IDEALPRO"}]
    [es] = secdef_search("ES", "FUT", False, today=date(2024, 12, 3))
    assert es["sections"] == [
        {"secType": "FUT", "exchange": "CME", "months": "DEC24;MAR25;JUN25;SEP25"}
    ]
    assert "months" not in secdef_search("ES", "FUT", False)[0]["sections"][0]


def test_blank_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty symbol"):
        secdef_search("  ", None, False)
