"""Invalid configuration fails with a message naming the value and the choices: offline
problems before any request reaches the gateway, unknown symbols and accounts when the
gateway's answers show them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dagster_support import SMALL_UNIVERSE, Pipeline

from assets.definitions import build_definitions
from assets.runs import run_assets, summarize_run
from ib_pipeline.universe import UNIVERSE_ENV, UniverseError, load_universe, parse_universe

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator


def requests_served(sim: Simulator) -> int:
    return int(sim.stats()["totals"]["requests"])


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bar_sizes: [1min, 90s]", "unknown bar size '90s'; valid bar sizes: 1min"),
        ("history_end: 2023-01-01", "history_start 2024-10-01 is after history_end 2023-01-01"),
        ('accounts: ["U1\'; DROP TABLE positions"]', "invalid account id"),
        ("accounts: [../../etc]", "invalid account id '../../etc'"),
    ],
)
def test_invalid_universe_fails_before_any_request(
    sim: Simulator, tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "universe.yaml"
    instruments = "instruments: [{symbol: AAPL, exchange: NASDAQ}]\n"
    base = f"history_start: 2024-10-01\nbar_sizes: [1min]\n{instruments}"
    key = text.split(":", maxsplit=1)[0]
    lines = [line for line in base.splitlines() if line.split(":", maxsplit=1)[0] != key]
    path.write_text("\n".join([*lines, text]) + "\n")
    with pytest.raises(UniverseError, match=named.replace("(", r"\(").replace("[", r"\[")):
        build_definitions(load_universe(environ={UNIVERSE_ENV: str(path)}))
    assert requests_served(sim) == 0


def test_hostile_symbol_is_refused_before_any_request(sim: Simulator) -> None:
    with pytest.raises(UniverseError, match=r"invalid symbol 'AAPL/\.\./x'"):
        parse_universe(
            {**SMALL_UNIVERSE, "instruments": [{"symbol": "AAPL/../x", "exchange": "NASDAQ"}]}
        )
    assert requests_served(sim) == 0


def test_unknown_symbols_fail_the_contracts_run_naming_them(
    sim: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(
        sim,
        instruments=[
            {"symbol": "AAPL", "exchange": "NASDAQ"},
            {"symbol": "ZZZZ", "exchange": "NASDAQ"},
            {"symbol": "QQQQX", "exchange": "NYSE"},
        ],
    )
    summary = summarize_run(run_assets(pipeline.defs, ["contracts"], raise_on_error=False))
    assert not summary.success
    message = " ".join(summary.errors)
    assert "2 instrument(s) of the universe did not resolve" in message
    assert "unknown symbol 'ZZZZ'" in message and "unknown symbol 'QQQQX'" in message
    assert "AAPL" not in message.split("did not resolve")[1]
    assert not (pipeline.root / "contracts").exists()


def test_accounts_the_gateway_does_not_list_fail_naming_the_choices(
    sim: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(sim, accounts=["DU1234567", "U9999999"])
    result = run_assets(pipeline.defs, ["positions", "account_summary"], raise_on_error=False)
    summary = summarize_run(result)
    assert not summary.success
    message = " ".join(summary.errors)
    assert "'U9999999' are not listed by the gateway" in message
    assert "its accounts: DU1234567, DU7654321" in message
    served = sim.stats()["endpoints"]
    assert not any(path.startswith("GET /portfolio/{accountId}") for path in served)
