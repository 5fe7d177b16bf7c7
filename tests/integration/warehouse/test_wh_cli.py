"""The ``query``, ``manifest`` and ``replay`` commands on a real warehouse folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import click
import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.cli.warehouse import COMMANDS, manifest, query, replay_command
from ib_pipeline.clock import FixedClock
from ib_pipeline.ibkr.tables import CONTRACTS
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.storage.store import Store

AAPL = 265598
NOW = datetime(2024, 11, 28, 12, tzinfo=UTC)


@pytest.fixture
def warehouse(tmp_path: Path, make_bars: Callable[..., pa.Table]) -> Path:
    """A warehouse with contracts, one day of AAPL bars (one of them bad) and its raw zone."""
    root = tmp_path / "warehouse"
    store = Store(root, clock=FixedClock(NOW))
    contracts = pa.Table.from_pylist(
        [{"conid": AAPL, "symbol": "AAPL", "sec_type": "STK", "exchanges": "NASDAQ,SMART"}],
        schema=CONTRACTS,
    )
    store.write("contracts", contracts, source={"endpoint": "contract_search"}, run_id="c")
    bars = make_bars([AAPL], date(2024, 11, 25)).slice(0, 3).to_pylist()
    bars[2]["volume"] = -1.0
    payload = {
        "data": [
            {"t": round(b["ts"].timestamp() * 1000), "o": b["open"], "h": b["high"],
             "l": b["low"], "c": b["close"], "v": b["volume"] / 100}
            for b in bars
        ]
    }  # fmt: skip
    params = {"conid": str(AAPL), "period": "1d", "bar": "1min", "outsideRth": "false"}
    RawZone(root).land("history", params, payload, NOW)
    table = pa.Table.from_pylist(bars, schema=make_bars([AAPL], date(2024, 11, 25)).schema)
    store.write(
        "bars", table, source={"endpoint": "history"}, run_id="live", hours={AAPL: US_EQUITY}
    )
    return root


def test_query_prints_a_table_csv_or_json(warehouse: Path) -> None:
    runner = CliRunner()
    sql = "SELECT symbol, count(*) AS n FROM bars_with_symbols GROUP BY symbol"
    result = runner.invoke(query, [sql, "--root", str(warehouse)])
    assert result.exit_code == 0, result.output
    assert "AAPL" in result.output and "│ 2" in result.output and "1 row(s)" in result.output
    result = runner.invoke(query, [sql, "--root", str(warehouse), "--format", "csv"])
    assert result.output.splitlines() == ["symbol,n", "AAPL,2"]
    result = runner.invoke(query, [sql, "--root", str(warehouse), "--format", "json"])
    assert orjson.loads(result.output) == [{"symbol": "AAPL", "n": 2}]


def test_query_errors_are_one_line_not_a_traceback(warehouse: Path) -> None:
    result = CliRunner().invoke(query, ["SELECT * FROM nowhere", "--root", str(warehouse)])
    assert result.exit_code == 1
    assert "query failed" in result.output and "nowhere" in result.output
    assert "Traceback" not in result.output


def test_manifest_shows_partitions_rows_range_and_quarantine(warehouse: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(manifest, ["--root", str(warehouse), "--partitions", "--verify"])
    assert result.exit_code == 0, result.output
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in result.output.splitlines()
        if line.startswith("│ bars ")
    ]
    start, end = "2024-11-25T14:30:00.000Z", "2024-11-25T14:31:00.000Z"
    assert rows == [["bars", "1", "2", start, end, "1", "-"]]
    assert "bar_size=1min/session_date=2024-11-25" in result.output
    result = runner.invoke(manifest, ["bars", "--root", str(warehouse), "--json"])
    body = orjson.loads(result.output)
    assert body["bars"][0]["rows"] == 2 and body["bars"][0]["status"] == "ok"
    assert body["bars"][0]["quarantined_rows"] == 1
    result = runner.invoke(manifest, ["nope", "--root", str(warehouse)])
    assert result.exit_code == 1 and "unknown dataset 'nope'" in result.output


def test_replay_rebuilds_from_the_raw_zone(warehouse: Path) -> None:
    runner = CliRunner()
    before = (warehouse / "bars/bar_size=1min/session_date=2024-11-25/part.parquet").read_bytes()
    (warehouse / "bars/bar_size=1min/session_date=2024-11-25/part.parquet").unlink()
    result = runner.invoke(
        replay_command,
        ["bars", "--root", str(warehouse), "--partition", "bar_size=1min/session_date=2024-11-25"],
    )
    assert result.exit_code == 0, result.output
    assert "1 raw record(s)" in result.output and "2 valid, 1 quarantined" in result.output
    after = (warehouse / "bars/bar_size=1min/session_date=2024-11-25/part.parquet").read_bytes()
    assert after == before
    result = runner.invoke(
        replay_command,
        ["bars", "--root", str(warehouse), "--partition", "bar_size=1min/session_date=2024-11-26"],
    )
    assert result.exit_code == 1 and "no raw rows for partition" in result.output
    result = runner.invoke(replay_command, ["quotes", "--root", str(warehouse)])
    assert result.exit_code == 1 and "no raw records for quotes" in result.output


def test_the_commands_are_named_for_the_lead() -> None:
    assert [c.name for c in COMMANDS] == ["query", "manifest", "replay"]


@pytest.mark.parametrize(
    ("command", "args"),
    [(manifest, ["bars"]), (replay_command, ["bars"])],
    ids=["manifest", "replay"],
)
def test_a_root_duckdb_would_glob_is_a_one_line_error(
    tmp_path: Path, command: click.Command, args: list[str]
) -> None:
    """The store refuses such a root when it opens; the commands say so in one line."""
    root = str(tmp_path / "wh[1]")
    result = CliRunner().invoke(command, [*args, "--root", root], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert f"Error: warehouse path {root!r} contains glob characters" in result.output
