"""`ib-pipeline backfill` and `ib-pipeline demo` from the command line.

The backfill runs against a simulator on the wall clock (as `make sim` does): the loader uses
the wall clock too, so a past week is complete on both sides."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from rich.console import Console

from assets.backfill import run_backfill
from assets.demo import DEMO_NOW, DEMO_SEED, run_demo, snapshot_times
from assets.gateway import GatewayUnavailableError
from ib_pipeline import warehouse as duck
from ib_pipeline.cli.pipeline import backfill
from ib_pipeline.universe import UNIVERSE_ENV, UniverseError, parse_universe_text

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

UNIVERSE = """\
history_start: 2025-01-02
bar_sizes: [1min, 1d]
instruments:
  - {symbol: AAPL, sec_type: STK, exchange: NASDAQ}
  - {symbol: IBM, sec_type: STK, exchange: NYSE}
"""


@pytest.fixture
def wall_clock_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(now=None)


def invoke(sim: Simulator, tmp_path: Path, *args: str) -> tuple[int, str]:
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE)
    common = ["--universe", str(universe), "--warehouse", str(tmp_path / "wh"), "--ephemeral"]
    result = CliRunner().invoke(
        backfill,
        [*args, *common],
        env={"IB_PIPELINE_BASE_URL": sim.base_url, "COLUMNS": "160"},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def test_backfill_is_one_run_with_a_summary_then_skips_what_is_complete(
    wall_clock_sim: Simulator, tmp_path: Path
) -> None:
    # Thanksgiving week 2025: four sessions (the Thursday is a holiday, the Friday a half day).
    args = ("--asset", "bars_1min", "--start", "2025-11-22", "--end", "2025-11-30")
    code, output = invoke(wall_clock_sim, tmp_path, *args)
    assert code == 0, output
    assert "bars_1min 2025-11-24 .. 2025-11-28" in output
    lines = {" ".join(line.replace("│", " ").split()) for line in output.splitlines()}
    assert "partitions 4" in lines
    assert "skipped (already complete) 0" in lines
    assert "rows written 2,760" in lines  # 2 stocks x (3 x 390 + 210)
    assert "check complete passed" in lines and "check quarantine_empty passed" in lines
    assert (tmp_path / "wh" / "bars" / "bar_size=1min").is_dir()

    code, output = invoke(wall_clock_sim, tmp_path, *args)
    assert code == 0, output
    lines = {" ".join(line.replace("│", " ").split()) for line in output.splitlines()}
    assert "skipped (already complete) 4" in lines and "rows written 0" in lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--asset", "bars_1min", "--start", "2025-11-28", "--end", "2025-11-24"), "is after"),
        (("--asset", "bars_1min", "--start", "2025-11-29", "--end", "2025-11-30"),
         "no partition between 2025-11-29 and 2025-11-30"),
        (("--asset", "bars_5min", "--start", "2025-11-24", "--end", "2025-11-24"),
         "unknown asset 'bars_5min'; assets: account_summary"),
        (("--asset", "contracts", "--start", "2025-11-24", "--end", "2025-11-24"),
         "contracts is not partitioned"),
        (("--asset", "bars_1min"), "bars_1min is partitioned: give --start and --end"),
        (("--asset", "quotes", "--refetch"), "--refetch applies to bars assets"),
        (("--asset", "bars_1min", "--start", "9999-12-01", "--end", "9999-12-31"),
         "9999-12-01 .. 9999-12-31 is outside bars_1min's partitions, which run from 2025-01-02"),
    ],
)  # fmt: skip
def test_backfill_usage_errors_name_the_problem(
    wall_clock_sim: Simulator, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, output = invoke(wall_clock_sim, tmp_path, *args)
    assert code == 2
    assert message in " ".join(output.split())
    assert wall_clock_sim.stats()["totals"]["requests"] == 0


def test_backfill_without_a_gateway_says_so_in_one_line(
    unused_tcp_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/v1/api"
    monkeypatch.setenv("IB_PIPELINE_BASE_URL", url)
    universe = parse_universe_text(UNIVERSE, source="test")
    with pytest.raises(GatewayUnavailableError) as raised:
        run_backfill(universe, ["contracts"], start=None, end=None, ephemeral=True)
    message = str(raised.value)
    assert message.startswith(f"GATEWAY DOWN: no gateway at {url}") and "\n" not in message
    assert "ib-pipeline sim" in message


def test_an_unknown_ticker_is_one_line_not_a_dagster_traceback(
    wall_clock_sim: Simulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = UNIVERSE + "  - {symbol: NOSUCHTICKER, sec_type: STK, exchange: NYSE}\n"
    universe = parse_universe_text(text, source="test")
    buffer = io.StringIO()
    monkeypatch.setenv("IB_PIPELINE_BASE_URL", wall_clock_sim.base_url)
    # the symbols are resolved before any run: an unknown one is a UniverseError naming it
    with pytest.raises(UniverseError, match="NOSUCHTICKER") as raised:
        run_backfill(
            universe,
            ["contracts"],
            start=None,
            end=None,
            warehouse=str(tmp_path / "wh"),
            ephemeral=True,
            console=Console(file=buffer, width=160),
        )
    assert "\n" not in str(raised.value)
    printed = buffer.getvalue() + "".join(capfd.readouterr())
    assert "Traceback" not in printed and "DagsterExecutionStepExecutionError" not in printed
    assert not (tmp_path / "wh").exists()  # nothing was written


@pytest.mark.slow(60)  # the paced demo, as a user runs it
def test_demo_loads_queries_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(UNIVERSE_ENV, "/nonexistent.yaml")  # the demo uses its own universe
    threads_before = {t.ident for t in threading.enumerate()}
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, force_terminal=False)
    code = run_demo(str(tmp_path / "wh"), ephemeral=True, console=console)
    output = buffer.getvalue()
    assert code == 0, output
    for title in (
        "Daily OHLCV and VWAP from the 1-minute bars",
        "Quotes as-of joined to the 1-minute bars",
        "Positions of the selected account marked to the latest quotes",
        "Portfolio value over the week per account",
        "Portfolio value per account",
        "Latest quotes",
        "the simulator has stopped",
        "dagster dev",
    ):
        assert title in output
    assert "FAILED" not in output and "error" not in output.lower()
    # the week's 1-minute bars of the 12 configured and 55 held instruments, on every run
    assert "98,310" in output
    assert (tmp_path / "wh" / "warehouse.duckdb").is_file()
    lingering = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    assert not [t.name for t in lingering if "simulator" in t.name]
    check_demo_answers(tmp_path / "wh")


def check_demo_answers(root: Path) -> None:
    """Snapshots across the week, held instruments quoted and as-of joined to the bars,
    portfolio value over the week: numbers equal to the simulator's ground truth at each
    snapshot time (accounts built at `DEMO_NOW`, as the demo builds them)."""
    from ib_pipeline.clock import FixedClock  # noqa: PLC0415
    from ib_pipeline.simulator import Simulator, SimulatorConfig  # noqa: PLC0415

    times = snapshot_times()
    assert [t.strftime("%a %H:%M") for t in times] == [
        "Mon 21:00", "Tue 21:00", "Wed 21:00", "Fri 21:00"
    ]  # fmt: skip
    truth_sim = Simulator(SimulatorConfig(seed=DEMO_SEED, now=DEMO_NOW, session_timeout_s=None))
    truth = truth_sim.truth
    selected = truth.selected_account
    held = {p["conid"]: p for p in truth.positions(selected)}  # built at DEMO_NOW
    con = duck.connect(str(root))
    try:
        for dataset in ("quotes", "account_summary", "positions"):
            stamps = con.sql(f"SELECT DISTINCT as_of FROM {dataset} ORDER BY 1").fetchall()
            assert [row[0] for row in stamps] == times, dataset
        quoted = dict(
            con.sql(
                "SELECT conid, last FROM latest_quotes WHERE as_of = $now", params={"now": DEMO_NOW}
            ).fetchall()
        )
        assert set(held) <= set(quoted)  # COST, ADBE, MA, V, PEP, TXN: not in the universe
        for conid in held:
            assert quoted[conid] == pytest.approx(truth.quote(conid)["last"])
        marked = con.sql(
            "SELECT p.conid, p.position * q.last FROM latest_positions AS p "
            "LEFT JOIN latest_quotes AS q USING (conid) WHERE p.account = $a",
            params={"a": selected},
        ).fetchall()
        assert len(marked) == len(held) and all(value is not None for _, value in marked)
        for conid, value in marked:
            assert value == pytest.approx(held[conid]["mkt_value"])
        # as-of join: every quote of a held instrument finds the bar begun by its snapshot
        joined = con.sql(
            "SELECT q.conid, q.as_of, b.ts FROM quotes AS q ASOF JOIN "
            "(SELECT conid, ts FROM bars WHERE bar_size = '1min') AS b "
            "ON q.conid = b.conid AND q.as_of >= b.ts "
            f"WHERE q.conid IN ({', '.join(map(str, held))})"
        ).fetchall()
        assert len(joined) == len(held) * len(times)
        assert all(ts is not None and as_of - ts <= timedelta(hours=4) for _, as_of, ts in joined)
        values = con.sql(
            "SELECT account, as_of, amount FROM account_summary WHERE key = 'netliquidation' "
            "ORDER BY account, as_of"
        ).fetchall()
    finally:
        con.close()
    per_account: dict[str, int] = {}
    clock = truth_sim.clock
    assert isinstance(clock, FixedClock)
    for account, as_of, amount in values:
        per_account[account] = per_account.get(account, 0) + 1
        clock.set(as_of)
        assert amount == pytest.approx(truth.summary(account)["netliquidation"]), (account, as_of)
    assert per_account == {account: len(times) for account in truth.accounts}
