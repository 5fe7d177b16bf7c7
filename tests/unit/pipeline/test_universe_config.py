"""The universe file: the packaged default, and every kind of invalid configuration failing with
a message that names the offending value and the valid choices."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.simulator.instruments import by_symbol
from ib_pipeline.timeframes import BAR_SIZES
from ib_pipeline.universe import (
    UNIVERSE_ENV,
    InstrumentConfig,
    Universe,
    UniverseError,
    default_universe_text,
    load_universe,
    parse_universe,
    parse_universe_text,
    resolve_accounts,
    resolve_contract,
)


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "history_start": "2024-01-02",
        "bar_sizes": ["1min", "1d"],
        "instruments": [{"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ"}],
    }
    base.update(changes)
    return base


def test_default_universe_suits_the_simulator() -> None:
    universe = load_universe(environ={})
    assert [b.label for b in universe.bar_sizes] == ["1min", "1d"]
    assert universe.history_start == date(2024, 1, 2)
    kinds = {i.sec_type for i in universe.instruments}
    assert kinds == {"STK", "FUT", "CASH"}
    assert 10 <= len(universe.instruments) <= 20
    for item in universe.instruments:
        assert by_symbol(item.symbol, item.sec_type), f"{item.symbol} is not in the simulator"
    assert "universe_default.yaml" in universe.source


def test_path_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(
        "history_start: 2023-05-01\nbar_sizes: [5min]\n"
        "instruments: [{symbol: SPY, exchange: ARCA}]\n"
    )
    universe = load_universe(environ={UNIVERSE_ENV: str(path)})
    assert universe.history_start == date(2023, 5, 1)
    assert universe.instruments == (InstrumentConfig("SPY", "STK", "ARCA"),)
    assert universe.source == str(path)


def test_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(UniverseError, match=UNIVERSE_ENV) as info:
        load_universe(environ={UNIVERSE_ENV: str(tmp_path / "nope.yaml")})
    assert "nope.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"bar_sizes": ["1min", "7min"]}, r"unknown bar size '7min'; valid bar sizes: 1min, 2min"),
        ({"bar_sizes": []}, r"valid bar sizes: 1min"),
        ({"history_start": "2024-06-01", "history_end": "2024-05-01"}, r"2024-06-01 is after"),
        ({"history_start": "1999-01-04"}, r"before 2000-01-01"),
        ({"history_start": "yesterday"}, r"history_start must be a date such as"),
        ({"accounts": ["../etc"]}, r"invalid account id '\.\./etc'"),
        ({"accounts": ["DU1'; DROP TABLE bars;--"]}, r"invalid account id"),
        ({"accounts": ["U1/2"]}, r"invalid account id 'U1/2'"),
        ({"accounts": ["DU1", "DU1"]}, r"listed twice: DU1"),
        ({"colour": "blue"}, r"unknown key\(s\) 'colour'; valid keys: instruments"),
        ({"outside_rth": "yes"}, r"outside_rth must be true or false"),
        ({"instruments": []}, r"non-empty list"),
    ],
)
def test_invalid_configuration_is_named(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(UniverseError, match=expected):
        parse_universe(doc(**changes), source="u.yaml")


@pytest.mark.parametrize(
    "symbol", ["AA/PL", "../AAPL", "A..B", "AAPL'", 'AAPL"', "AAPL; DROP TABLE bars", "", " "]
)
def test_hostile_symbols_are_refused(symbol: str) -> None:
    with pytest.raises(UniverseError, match="symbol"):
        parse_universe(doc(instruments=[{"symbol": symbol, "exchange": "NASDAQ"}]))


def test_unknown_security_type_and_exchange_list_the_choices() -> None:
    with pytest.raises(UniverseError, match=r"unknown sec_type 'BOND'.*STK, FUT, CASH"):
        parse_universe(doc(instruments=[{"symbol": "X", "sec_type": "BOND", "exchange": "NYSE"}]))
    with pytest.raises(UniverseError, match=r"unknown exchange for AAPL.*STK@NYSE"):
        parse_universe(doc(instruments=[{"symbol": "AAPL", "exchange": "MOON"}]))


def test_instrument_needs_an_exchange() -> None:
    with pytest.raises(UniverseError, match=r"instruments\[0\]: exchange is required for SPY"):
        parse_universe(doc(instruments=[{"symbol": "SPY"}]))
    with pytest.raises(UniverseError, match=r"expected a mapping"):
        parse_universe(doc(instruments=["SPY"]))


def test_duplicates_and_yaml_errors() -> None:
    twice = [{"symbol": "AAPL", "exchange": "NASDAQ"}, {"symbol": "aapl", "exchange": "NASDAQ"}]
    with pytest.raises(UniverseError, match=r"AAPL \(STK\) is listed twice"):
        parse_universe(doc(instruments=twice))
    with pytest.raises(UniverseError, match="not valid YAML"):
        parse_universe_text("history_start: [", source="bad.yaml")
    with pytest.raises(UniverseError, match="must be a mapping"):
        parse_universe_text("- a\n- b\n")


def test_valid_document_normalises_values() -> None:
    universe = parse_universe(
        doc(
            bar_sizes=["1d", "1min", "1h"],
            instruments=[{"symbol": "eur.usd", "sec_type": "cash", "exchange": "idealpro"}],
            accounts=["DU1234567"],
        )
    )
    assert [b.label for b in universe.bar_sizes] == ["1min", "1h", "1d"]
    assert universe.instruments[0] == InstrumentConfig("EUR.USD", "CASH", "IDEALPRO")
    assert universe.instruments[0].lot_size == 1
    assert universe.accounts == ("DU1234567",)
    assert parse_universe_text(default_universe_text()).instruments[0].lot_size == 100


def _candidates(*rows: dict[str, Any]) -> pa.Table:
    full = [
        {
            "conid": r["conid"],
            "symbol": r["symbol"],
            "sec_type": r.get("sec_type"),
            "company_name": None,
            "company_header": r.get("company_header"),
            "description": r.get("description"),
            "exchanges": r.get("exchanges"),
        }
        for r in rows
    ]
    return pa.Table.from_pylist(full, schema=CONTRACTS)


def test_contract_resolution() -> None:
    aapl = InstrumentConfig("AAPL", "STK", "NASDAQ")
    with pytest.raises(UniverseError, match=r"unknown symbol 'AAPL'.*returned nothing"):
        resolve_contract(aapl, _candidates())
    only_option = _candidates({"conid": 1, "symbol": "AAPL", "sec_type": "OPT"})
    with pytest.raises(UniverseError, match=r"no STK contract.*AAPL \(OPT\)"):
        resolve_contract(aapl, only_option)
    two = _candidates(
        {"conid": 1, "symbol": "AAPL", "sec_type": "STK", "description": "MEXI"},
        {"conid": 2, "symbol": "AAPL", "sec_type": "STK", "exchanges": "NASDAQ,SMART"},
    )
    assert resolve_contract(aapl, two) == 2
    elsewhere = _candidates(
        {"conid": 1, "symbol": "AAPL", "sec_type": "STK", "description": "MEXI"},
        {"conid": 3, "symbol": "AAPL", "sec_type": "STK", "description": "LSE"},
    )
    with pytest.raises(UniverseError, match=r"none is on NASDAQ: conid 1 \(MEXI\); conid 3"):
        resolve_contract(aapl, elsewhere)


def test_account_resolution() -> None:
    universe = parse_universe(doc(accounts=["DU1234567", "U7777777"]))
    with pytest.raises(UniverseError, match=r"'U7777777' are not listed.*DU1234567, DU7654321"):
        resolve_accounts(universe, ["DU1234567", "DU7654321"])
    assert resolve_accounts(parse_universe(doc()), ["DU1", "DU2"]) == ("DU1", "DU2")
    with pytest.raises(UniverseError, match="invalid account id"):
        resolve_accounts(parse_universe(doc()), ["DU1", "../x"])


def test_unknown_keys_are_refused_naming_the_valid_ones() -> None:
    top = "u.yaml: unknown key(s) 'colour', 'size'; valid keys: instruments, bar_sizes, "
    with pytest.raises(UniverseError, match=re.escape(top)):
        parse_universe(doc(colour="blue", size=3), source="u.yaml")
    with pytest.raises(UniverseError, match=r"unknown key\(s\) 'source'"):
        parse_universe(doc(source="elsewhere.yaml"), source="u.yaml")
    typo = [
        {"symbol": "AAPL", "exchange": "NASDAQ"},
        {"symbol": "MSFT", "sec_typ": "STK", "exchnage": "NASDAQ"},
    ]
    with pytest.raises(UniverseError) as info:
        parse_universe(doc(instruments=typo), source="u.yaml")
    assert str(info.value) == (
        "u.yaml: instruments[1]: unknown key(s) 'sec_typ', 'exchnage'; valid keys: symbol, "
        "sec_type, exchange, roll; instruments[1]: exchange is required for MSFT "
        "(an exchange such as NASDAQ)"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"instruments": "AAPL"}, "u.yaml: instruments must be a non-empty list of"),
        ({"instruments": None}, "u.yaml: instruments must be a non-empty list of"),
        ({"bar_sizes": ["1min", "1min"]}, "u.yaml: bar size '1min' is listed twice"),
        ({"bar_sizes": [5]}, "u.yaml: bar_sizes[0]: unknown bar size 5; valid bar sizes: 1min"),
        ({"history_start": 20240102}, "u.yaml: history_start must be a date such as 2024-01-"),
        ({"history_start": "2024-02-30"}, "a date such as 2024-01-02, got '2024-02-30'"),
        ({"history_start": None}, "u.yaml: history_start must be a date"),
        ({"history_end": "soon"}, "u.yaml: history_end must be a date such as 2024-12-31"),
        ({"accounts": "DU1"}, "u.yaml: accounts must be a list of account ids, got 'DU1'"),
        ({"accounts": ["DU1", 7]}, "u.yaml: accounts[1]: invalid account id 7"),
        ({"outside_rth": 1}, "u.yaml: outside_rth must be true or false, got 1"),
    ],
)
def test_each_message_says_where_what_and_what_is_valid(
    changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(UniverseError) as info:
        parse_universe(doc(**changes), source="u.yaml")
    assert expected in str(info.value)


def test_a_missing_key_is_named() -> None:
    document = doc()
    del document["history_start"]
    with pytest.raises(UniverseError, match=r"^u.yaml: history_start is required \(a date"):
        parse_universe(document, source="u.yaml")
    with pytest.raises(UniverseError, match=r"instruments\[0\]: symbol is required"):
        parse_universe(doc(instruments=[{"exchange": "NASDAQ"}]), source="u.yaml")


def test_a_universe_can_be_built_directly() -> None:
    universe = Universe(
        instruments=(InstrumentConfig("AAPL", "STK", "NASDAQ"),),
        bar_sizes=(BAR_SIZES["1d"], BAR_SIZES["1min"]),
        history_start=date(2024, 1, 2),
        accounts=("DU1",),
    )
    assert universe == parse_universe(doc(accounts=["DU1"]))
    assert universe.source == "<memory>" and universe.trading_hours
    assert Universe(**{**universe.model_dump(), "source": "x.yaml"}).source == "x.yaml"
    assert InstrumentConfig(symbol="spy", exchange="arca") == InstrumentConfig("SPY", "STK", "ARCA")
    assert hash(universe) == hash(parse_universe(doc(accounts=["DU1"])))
    with pytest.raises(UniverseError, match=r"^mem: history_start 2024-02-01 is after"):
        Universe(
            instruments=universe.instruments,
            bar_sizes=universe.bar_sizes,
            history_start=date(2024, 2, 1),
            history_end=date(2024, 1, 1),
            source="mem",
        )
    with pytest.raises(UniverseError, match=r"^<memory>: instruments must be a non-empty"):
        Universe(instruments=(), bar_sizes=universe.bar_sizes, history_start=date(2024, 1, 2))
    with pytest.raises(ValueError, match="invalid symbol 'A/B'"):
        InstrumentConfig("A/B", "STK", "NASDAQ")
    with pytest.raises(ValidationError, match="frozen"):
        universe.history_start = date(2024, 5, 1)  # type: ignore[misc]


def test_an_empty_universe_variable_means_the_packaged_default() -> None:
    assert load_universe(environ={UNIVERSE_ENV: "  "}).source == "<universe_default.yaml>"
