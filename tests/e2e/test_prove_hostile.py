"""Hostile and wrong input, through the whole pipeline: universe files, command-line arguments,
warehouse roots and values the gateway sends.

What must hold:

- a universe file with an unknown bar size, an impossible date range, or a symbol, exchange or
  account id carrying ``/``, ``..``, quotes or SQL is refused by ``ib-pipeline backfill``
  before any request, with a message naming the value, and nothing is written anywhere (the
  folder holding the warehouse root, and the working directory, stay as they were);
- nonsensical ``backfill`` arguments (start after end, an asset name that is a path or SQL)
  are refused the same way;
- values the gateway sends that look like SQL or paths are stored as data: the views still
  work and show them, and no path is built from them (an account id from the gateway that
  would become a folder is refused, naming it);
- ``ib-pipeline query`` and the catalog file work for a warehouse root whose path holds
  quotes, ``;`` and ``--``; a root DuckDB would read as a glob pattern is refused, naming it,
  before anything is fetched or written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from prove_support import (
    BACKFILL_KEYS,
    BACKFILL_UNIVERSE,
    CONIDS,
    assert_readable_without_strays,
    assert_runs_succeeded,
    backfill_definitions,
    materialise_backfill,
    snapshot_tree,
    tree,
    view_counts,
    view_counts_of_catalog,
)

from assets.runs import run_assets, summarize_run
from ib_pipeline.cli import main
from ib_pipeline.warehouse import connect

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

SQL = "x'); DROP VIEW bars; --"
"""A value that ends a SQL string literal and drops a view, if it is ever spliced into SQL."""


def requests_served(sim: Simulator) -> int:
    return int(sim.stats()["totals"]["requests"])


def flat(text: str) -> str:
    """Click output with line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory inside ``tmp_path`` (relative paths land there)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd


def backfill(sim: Simulator, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["backfill", *args, "--ephemeral"],
        env={"IB_PIPELINE_BASE_URL": sim.base_url, "COLUMNS": "200"},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def with_instrument(**changes: str) -> dict[str, Any]:
    instrument = {"symbol": "AAPL", "sec_type": "STK", "exchange": "NASDAQ", **changes}
    return {**BACKFILL_UNIVERSE, "instruments": [instrument]}


HOSTILE_UNIVERSES: list[tuple[str, dict[str, Any], str]] = [
    ("bar size unknown", {**BACKFILL_UNIVERSE, "bar_sizes": ["90s"]}, "'90s'"),
    ("bar size SQL", {**BACKFILL_UNIVERSE, "bar_sizes": [SQL]}, repr(SQL)),
    ("bar size path", {**BACKFILL_UNIVERSE, "bar_sizes": ["../1min"]}, "'../1min'"),
    (
        "start after end",
        {**BACKFILL_UNIVERSE, "history_start": "2024-11-20", "history_end": "2024-11-01"},
        "history_start 2024-11-20 is after history_end 2024-11-01",
    ),
    ("no such day", {**BACKFILL_UNIVERSE, "history_start": "2024-02-30"}, "'2024-02-30'"),
    (
        "before the calendars",
        {**BACKFILL_UNIVERSE, "history_start": "1850-01-02"},
        "history_start 1850-01-02 is before",
    ),
    ("symbol path", with_instrument(symbol="AAPL/../x"), "'AAPL/../x'"),
    ("symbol dots", with_instrument(symbol="../../etc/passwd"), "'../../etc/passwd'"),
    ("symbol quote", with_instrument(symbol="A'B"), repr("A'B")),
    ("symbol double quote", with_instrument(symbol='A"B'), repr('A"B')),
    ("symbol SQL", with_instrument(symbol=SQL), repr(SQL)),
    ("exchange path", with_instrument(exchange="NASDAQ/../../x"), "NASDAQ/../../X"),
    ("sec type SQL", with_instrument(sec_type="STK'; --"), repr("STK'; --")),
    ("account path", {**BACKFILL_UNIVERSE, "accounts": ["../../etc"]}, "'../../etc'"),
    ("account slash", {**BACKFILL_UNIVERSE, "accounts": ["DU1/2"]}, "'DU1/2'"),
    ("account SQL", {**BACKFILL_UNIVERSE, "accounts": [SQL]}, repr(SQL)),
    ("account quote", {**BACKFILL_UNIVERSE, "accounts": ["DU1'"]}, repr("DU1'")),
]


@pytest.mark.parametrize(
    ("document", "named"),
    [pytest.param(d, n, id=i) for i, d, n in HOSTILE_UNIVERSES],
)
def test_hostile_universe_is_refused_naming_the_value_and_nothing_is_written(
    sim: Simulator, tmp_path: Path, workdir: Path, document: dict[str, Any], named: str
) -> None:
    universe = tmp_path / "universe.yaml"
    universe.write_text(yaml.safe_dump(document))
    before = snapshot_tree(tmp_path)
    code, output = backfill(
        sim,
        *("--universe", str(universe), "--warehouse", str(tmp_path / "wh")),
        *("--asset", "bars_1min", "--start", BACKFILL_KEYS[0], "--end", BACKFILL_KEYS[1]),
    )
    assert code == 2, output
    assert named in flat(output), output
    assert requests_served(sim) == 0
    assert snapshot_tree(tmp_path) == before  # no warehouse, nothing in the working directory
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--asset", "bars_1min", "--start", "2024-11-25", "--end", "2024-11-22"),
         "--start 2024-11-25 is after --end 2024-11-22"),
        (("--asset", SQL, "--start", "2024-11-22", "--end", "2024-11-25"),
         f"unknown asset {SQL!r}"),
        (("--asset", "../../etc/passwd"), "unknown asset '../../etc/passwd'"),
        (("--asset", "bars_1min/../contracts"), "unknown asset 'bars_1min/../contracts'"),
        (("--asset", "bars_1min", "--start", "2024-13-01", "--end", "2024-11-25"),
         "'2024-13-01' does not match the format '%Y-%m-%d'"),
    ],
)  # fmt: skip
def test_nonsensical_backfill_arguments_are_refused_before_any_request(
    sim: Simulator, tmp_path: Path, workdir: Path, args: tuple[str, ...], named: str
) -> None:
    universe = tmp_path / "universe.yaml"
    universe.write_text(yaml.safe_dump(BACKFILL_UNIVERSE))
    before = snapshot_tree(tmp_path)
    code, output = backfill(sim, *args, "--universe", str(universe), "--warehouse", "wh")
    assert code == 2, output
    assert named in flat(output), output
    assert requests_served(sim) == 0
    assert snapshot_tree(tmp_path) == before
    assert list(workdir.iterdir()) == []


def test_gateway_values_that_look_like_sql_or_paths_are_stored_as_data(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator's contract search answers company names and headers that close a SQL
    string, drop a view and climb out of folders; they must come back verbatim as data."""
    from ib_pipeline.simulator.search import secdef_search  # noqa: PLC0415

    hostile_name = f'{SQL} ../../etc/passwd "q" {{*}}'

    def hostile_search(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        results = secdef_search(*args, **kwargs)
        for result in results:
            result["companyName"] = hostile_name
            result["companyHeader"] = f"../{result['symbol']}/'; DELETE FROM contracts; --"
        return results

    monkeypatch.setattr("ib_pipeline.simulator.routes_marketdata.secdef_search", hostile_search)
    root = tmp_path / "wh"
    before_parent = set(os.listdir(tmp_path))
    assert_runs_succeeded(materialise_backfill(backfill_definitions(sim.base_url, root, sim.clock)))

    con = connect(root)
    stored = con.execute("SELECT symbol, company_name, company_header FROM contracts").fetchall()
    assert sorted(stored) == [
        (symbol, hostile_name, f"../{symbol}/'; DELETE FROM contracts; --") for symbol in CONIDS
    ]
    joined = con.execute(
        "SELECT count(*) FROM bars_with_symbols WHERE company_name = ?", [hostile_name]
    ).fetchone()
    assert joined == (4 * 390,)
    counts = view_counts(con)
    assert counts["bars"] == 4 * 390 and counts["contracts"] == 2
    assert view_counts_of_catalog(root) == counts
    assert_readable_without_strays(root)
    assert set(os.listdir(tmp_path)) == before_parent | {"wh"}
    assert all(".." not in rel and "'" not in rel for rel in tree(root))


@pytest.mark.parametrize("account", [SQL, "../../evil", "DU1/2"])
def test_a_gateway_account_id_that_would_become_a_path_is_refused_naming_it(
    make_sim: Callable[..., Simulator], tmp_path: Path, account: str
) -> None:
    sim = make_sim(main_account=account, bulk_positions=0)
    root = tmp_path / "wh"
    defs = backfill_definitions(sim.base_url, root, sim.clock)
    result = run_assets(defs, ["accounts", "positions", "account_summary"], raise_on_error=False)
    summary = summarize_run(result)
    assert not summary.success
    assert f"invalid account id {account!r}" in " ".join(summary.errors)
    assert not summary.materialized
    served = sim.stats()["endpoints"]
    assert not any(path.startswith("GET /portfolio/{accountId}") for path in served), served
    # only the raw answers of the two account listings landed, inside the root
    landed = sorted({tuple(rel.split("/")[:2]) for rel in tree(root)})
    assert landed == [("raw", "endpoint=accounts"), ("raw", "endpoint=portfolio_accounts")]
    assert sorted(os.listdir(tmp_path)) == ["wh"]


def test_query_and_catalog_work_for_a_root_with_quotes_and_sql_in_its_path(
    sim: Simulator, tmp_path: Path
) -> None:
    root = tmp_path / 'it\'s "odd"; -- wh'
    assert_runs_succeeded(materialise_backfill(backfill_definitions(sim.base_url, root, sim.clock)))
    result = CliRunner().invoke(
        main,
        ["query", "SELECT count(*) AS n FROM bars", "--root", str(root), "--format", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output) == [{"n": 4 * 390}]
    manifest = CliRunner().invoke(main, ["manifest", "bars", "--root", str(root), "--json"])
    assert manifest.exit_code == 0, manifest.output
    assert [m["status"] for m in orjson.loads(manifest.output)["bars"]] == ["ok", "ok"]
    assert view_counts_of_catalog(root) == view_counts(connect(root))
    assert sorted(os.listdir(tmp_path)) == [root.name]


@pytest.mark.parametrize("name", ["wh*", "wh[1]", "wh{a,b}", "wh?"])
def test_a_root_duckdb_would_read_as_a_pattern_is_refused_before_any_request(
    sim: Simulator, tmp_path: Path, workdir: Path, name: str
) -> None:
    root = tmp_path / name
    message = f"warehouse path {str(root)!r} contains glob characters"
    defs = backfill_definitions(sim.base_url, root, sim.clock)
    summary = summarize_run(run_assets(defs, ["contracts"], raise_on_error=False))
    assert not summary.success
    assert len(summary.errors) == 1 and message in summary.errors[0]

    code, output = backfill(sim, "--asset", "contracts", "--warehouse", str(root))
    assert code == 1
    assert message in flat(output)
    assert requests_served(sim) == 0
    assert sorted(os.listdir(tmp_path)) == ["cwd"] and list(workdir.iterdir()) == []
