"""``ib-pipeline demo`` (``make demo``): the first thing a newcomer runs.

It starts the bundled gateway simulator in-process (fixed seed, and a clock pinned at
`DEMO_NOW`, after the close of Friday 2025-11-28, the half day after Thanksgiving, so that
every run prints the same numbers and the week shows a holiday and an early close), then
materialises through the real Dagster definitions, in three runs:

1. ``contracts``, ``quotes``, ``accounts``, ``positions``, ``account_summary``, ``orders``;
2. ``bars_1min`` for the week of 2025-11-24 (one single run over five partitions);
3. ``bars_1d`` for 2025 (one yearly partition);

into ``./warehouse`` (or ``--warehouse``), prints what each run wrote and what its checks say,
queries the result with DuckDB (daily OHLCV and VWAP from the 1-minute bars, portfolio value,
latest quotes), and says how to open the UI. The simulator stops when the demo ends (it runs in
a thread of this process), so nothing is left running. The default universe is the packaged
one, whatever ``IB_PIPELINE_UNIVERSE`` says, so the output is the same everywhere.

A second run finds the bars already complete and skips them (gap-aware loading).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from assets.definitions import build_definitions
from assets.instance import open_instance
from assets.resources import IbkrClientResource, WarehouseResource
from assets.runs import RunSummary, run_assets, summarize_run
from ib_pipeline import warehouse as duck
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.simulator import Simulator, SimulatorConfig
from ib_pipeline.universe import DEFAULT_UNIVERSE_FILE, default_universe_text, parse_universe_text
from ib_pipeline.warehouse import duckdb_cli_command

MIN_WIDTH = 120
"""Columns the output is laid out for when it does not go to a terminal (rich assumes 80)."""

DEMO_NOW = datetime(2025, 11, 28, 21, 0, tzinfo=UTC)
"""The simulator's pinned clock: 16:00 New York on Friday 2025-11-28, after its 13:00 close."""

DEMO_SEED = 42
DEMO_WEEK = (date(2025, 11, 24), date(2025, 11, 28))
SHOWN_SYMBOLS = ("AAPL", "SPY", "ES", "EUR.USD")

PORTFOLIO_ASSETS = ["contracts", "quotes", "accounts", "positions", "account_summary", "orders"]

QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Daily OHLCV and VWAP from the 1-minute bars (view daily_ohlcv)",
        """
        SELECT c.symbol, d.session_date, d.open, d.high, d.low, d.close,
               d.volume::BIGINT AS volume, round(d.vwap_approx, 5) AS vwap_approx, d.bars
        FROM daily_ohlcv AS d JOIN contracts AS c USING (conid)
        WHERE d.bar_size = '1min' AND c.symbol IN ({symbols})
        ORDER BY c.symbol, d.session_date
        """,
    ),
    (
        "The week from the daily bars: close to close",
        """
        SELECT c.symbol, min(b.session_date) AS first_session, max(b.session_date) AS last_session,
               arg_min(b.close, b.ts) AS first_close, arg_max(b.close, b.ts) AS last_close,
               round(100 * (arg_max(b.close, b.ts) / arg_min(b.close, b.ts) - 1), 2) AS pct
        FROM bars AS b JOIN contracts AS c USING (conid)
        WHERE b.bar_size = '1d' AND b.session_date BETWEEN DATE '{first}' AND DATE '{last}'
        GROUP BY c.symbol ORDER BY c.symbol
        """,
    ),
    (
        "Portfolio value per account (latest snapshot)",
        """
        SELECT s.account, round(s.amount, 2) AS net_liquidation, s.currency,
               p.positions, round(p.market_value, 2) AS market_value
        FROM latest_account_summary AS s
        JOIN (SELECT account, count(*) AS positions, sum(mkt_value) AS market_value
              FROM latest_positions GROUP BY account) AS p USING (account)
        WHERE s.key = 'netliquidation'
        ORDER BY s.account
        """,
    ),
    (
        "Latest quotes",
        """
        SELECT c.symbol, q.last, q.bid, q.ask, q.volume::BIGINT AS volume, q.last_is_close,
               q.as_of
        FROM latest_quotes AS q JOIN contracts AS c USING (conid)
        WHERE c.symbol IN ({symbols})
        ORDER BY c.symbol
        """,
    ),
)


def _symbols_sql() -> str:
    return ", ".join(f"'{s}'" for s in SHOWN_SYMBOLS)


def run_demo(
    warehouse_root: str | None = None,
    *,
    ephemeral: bool = False,
    console: Console | None = None,
    now: datetime = DEMO_NOW,
) -> int:
    """Run the demo (module doc); returns the process exit code (0 when everything passed)."""
    out = console if console is not None else _console()
    root = warehouse_root or WarehouseSettings.from_env().root
    universe = parse_universe_text(default_universe_text(), source=f"<{DEFAULT_UNIVERSE_FILE}>")
    out.rule("ib-pipeline demo")
    out.print(
        f"Simulated gateway: seed {DEMO_SEED}, clock pinned at {now.isoformat()}; "
        f"{len(universe.instruments)} instruments; warehouse: {root}"
    )
    started = time.perf_counter()
    ok = True
    config = SimulatorConfig(seed=DEMO_SEED, now=now, session_timeout_s=None)
    with Simulator(config) as sim, open_instance(ephemeral) as instance:
        resources = {
            "ibkr": IbkrClientResource(base_url=sim.base_url),
            "warehouse": WarehouseResource(root=root),
            "clock": sim.clock,
        }
        definitions = build_definitions(universe, resources=resources)
        plan: list[tuple[list[str], tuple[str, str] | None]] = [
            (PORTFOLIO_ASSETS, None),
            (["bars_1min"], (DEMO_WEEK[0].isoformat(), DEMO_WEEK[1].isoformat())),
            (["bars_1d"], (str(now.year), str(now.year))),
        ]
        for assets, partition_range in plan:
            step = time.perf_counter()
            result = run_assets(
                definitions,
                assets,
                instance=instance,
                partition_range=partition_range,
                raise_on_error=False,
                log_level="ERROR",
            )
            summary = summarize_run(result)
            _print_run(out, assets, partition_range, summary, time.perf_counter() - step)
            ok = ok and summary.success and not summary.failed_checks
    out.print(f"\nLoaded in {time.perf_counter() - started:.1f} s; the simulator has stopped.")
    if ok:
        _print_queries(out, root)
    _print_next_steps(out, root)
    return 0 if ok else 1


def _console() -> Console:
    console = Console()
    if not console.is_terminal and console.width < MIN_WIDTH:
        console = Console(width=MIN_WIDTH)
    return console


def _print_run(
    out: Console,
    assets: list[str],
    partition_range: tuple[str, str] | None,
    summary: RunSummary,
    seconds: float,
) -> None:
    span = f" [{partition_range[0]} .. {partition_range[1]}]" if partition_range else ""
    status = "ok" if summary.success else "FAILED"
    table = Table(title=f"run {summary.run_id[:8]}{span}: {status} in {seconds:.1f} s")
    for column in ("asset", "partitions", "rows written", "requests", "quarantined", "checks"):
        table.add_column(column, justify="right" if column != "asset" else "left")
    for asset in assets:
        meta: dict[str, Any] = summary.materialized.get(asset, {})
        checks = [c for c in summary.checks if c.asset == asset]
        passed = sum(c.passed for c in checks)
        failed = [c.check for c in checks if not c.passed]
        table.add_row(
            asset,
            str(summary.partitions.get(asset, 0)),
            f"{meta.get('rows_written', 0):,}",
            str(meta.get("requests", "-")),
            str(meta.get("quarantined_rows", "-")),
            f"{passed}/{len(checks)} passed"
            + (f" (failed: {', '.join(failed)})" if failed else ""),
        )
    out.print(table)
    for error in summary.errors:
        out.print(f"[red]error:[/red] {error}")


def _print_queries(out: Console, root: str) -> None:
    con = duck.connect(root)
    try:
        for title, sql in QUERIES:
            text = sql.format(
                symbols=_symbols_sql(),
                first=DEMO_WEEK[0].isoformat(),
                last=DEMO_WEEK[1].isoformat(),
            )
            cursor = con.execute(text)
            names = [d[0] for d in cursor.description]
            table = Table(title=title)
            for name in names:
                table.add_column(name)
            for row in cursor.fetchall():
                table.add_row(*(_cell(v) for v in row))
            out.print(table)
    finally:
        con.close()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.5g}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _print_next_steps(out: Console, root: str) -> None:
    out.rule("next")
    out.print(
        f"Query it yourself:  {duckdb_cli_command(root)}\n"
        "  (or in Python: from ib_pipeline import Warehouse, connect)\n"
        "Open the Dagster UI: in one terminal `make sim` (the simulator on 127.0.0.1:5000), "
        "in another `.venv/bin/dagster dev` from the repository root, then browse "
        "http://127.0.0.1:3000 (assets, partitions, checks, schedules, the gateway sensor).\n"
        "Backfill more history: `ib-pipeline backfill --asset bars_1min --start 2025-11-03 "
        "--end 2025-11-21` (with `make sim` running)."
    )
