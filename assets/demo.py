"""``ib-pipeline demo`` (``make demo``): the first thing a newcomer runs.

It starts the bundled gateway simulator in-process (fixed seed, and a settable clock that ends
at `DEMO_NOW`, after the close of Friday 2025-11-28, the half day after Thanksgiving, so that
every run prints the same numbers and the week shows a holiday and an early close), then
materialises through the real Dagster definitions:

1. at each session close of the week (`snapshot_times`: Monday to Wednesday at 16:00 New York;
   Friday at `DEMO_NOW`), with the simulator's clock (shared by the loader) set there: first
   ``accounts``, ``positions``, ``account_summary`` (and ``orders`` on Friday), then
   ``contracts`` (Monday only) and ``quotes``, so the week holds several snapshots and the
   held instruments are known before quotes are taken;
2. with the clock at `DEMO_NOW`: ``bars_1min`` for the week of 2025-11-24 (one single run over
   five partitions), then ``bars_1d`` for 2025 (one yearly partition);
3. the DuckDB catalog (``warehouse.duckdb``), built once after the last run rather than after
   each of the 16 loads (the runs' warehouse resource has ``catalog=False``);

into ``./warehouse`` (or ``--warehouse``), prints what each run wrote and what its checks say,
queries the result with DuckDB (daily OHLCV and VWAP from the 1-minute bars, quotes as-of
joined to the bars, positions marked to the latest quotes, portfolio value over the week,
latest quotes), and says how to open the UI. The simulator stops when the demo ends (it runs in
a thread of this process), so nothing is left running. The universe is the packaged one with
``include_positions: true`` (`demo_universe`), whatever ``IB_PIPELINE_UNIVERSE`` says, so the
output is the same everywhere and the instruments the accounts hold have quotes and bars too.

A second run finds the bars already complete and skips them (gap-aware loading).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from assets.definitions import build_definitions
from assets.instance import open_instance
from assets.resources import IbkrClientResource, WarehouseResource
from assets.runs import RunSummary, run_assets, summarize_run
from ib_pipeline import warehouse as duck
from ib_pipeline.calendars import US_EQUITY, calendar_for
from ib_pipeline.clock import FixedClock
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.simulator import PacingConfig, Simulator, SimulatorConfig
from ib_pipeline.universe import (
    DEFAULT_UNIVERSE_FILE,
    Universe,
    default_universe_text,
    parse_universe_text,
)
from ib_pipeline.warehouse import duckdb_cli_command

MIN_WIDTH = 120
"""Columns the output is laid out for when it does not go to a terminal (rich assumes 80)."""

DEMO_NOW = datetime(2025, 11, 28, 21, 0, tzinfo=UTC)
"""The simulator's pinned clock: 16:00 New York on Friday 2025-11-28, after its 13:00 close."""

DEMO_SEED = 42
DEMO_WEEK = (date(2025, 11, 24), date(2025, 11, 28))
SHOWN_SYMBOLS = ("AAPL", "SPY", "ES", "EUR.USD")

PORTFOLIO_ASSETS = ["accounts", "positions", "account_summary"]
"""Run first at each snapshot time: the held instruments are then known to the quotes."""
MARKET_ASSETS = ["quotes"]
FIRST_EXTRAS = ["contracts"]
"""Run with the first quotes only (held instruments are searched on the fly after)."""
LAST_EXTRAS = ["orders"]
"""Run with the last portfolio snapshot only (the live orders at `DEMO_NOW`)."""

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
        "The week from the daily bars: close to close (the configured instruments)",
        """
        SELECT c.symbol, min(b.session_date) AS first_session, max(b.session_date) AS last_session,
               arg_min(b.close, b.ts) AS first_close, arg_max(b.close, b.ts) AS last_close,
               round(100 * (arg_max(b.close, b.ts) / arg_min(b.close, b.ts) - 1), 2) AS pct
        FROM bars AS b JOIN contracts AS c USING (conid)
        WHERE b.bar_size = '1d' AND b.session_date BETWEEN DATE '{first}' AND DATE '{last}'
          AND c.symbol IN ({configured})
        GROUP BY c.symbol ORDER BY c.symbol
        """,
    ),
    (
        "Quotes as-of joined to the 1-minute bars (the last bar begun by each snapshot)",
        """
        SELECT c.symbol, q.as_of, q.last, b.ts AS bar_start, b.close AS bar_close,
               round(q.last - b.close, 5) AS last_minus_close
        FROM quotes AS q JOIN contracts AS c USING (conid)
        ASOF JOIN (SELECT conid, ts, close FROM bars WHERE bar_size = '1min') AS b
            ON q.conid = b.conid AND q.as_of >= b.ts
        WHERE c.symbol IN ({symbols})
        ORDER BY c.symbol, q.as_of
        """,
    ),
    (
        "Positions of the selected account marked to the latest quotes",
        """
        SELECT p.account, p.contract_desc AS symbol, p.position, q.last AS quote_last,
               round(p.position * q.last, 2) AS marked_value,
               round(p.mkt_value, 2) AS gateway_value, q.as_of AS quoted_at
        FROM latest_positions AS p LEFT JOIN latest_quotes AS q USING (conid)
        WHERE p.account IN (SELECT account_id FROM accounts WHERE is_selected)
        ORDER BY p.account, p.contract_desc
        """,
    ),
    (
        "Portfolio value over the week per account (net liquidation at each snapshot)",
        """
        SELECT account, as_of, round(amount, 2) AS net_liquidation, currency,
               round(amount - lag(amount) OVER (PARTITION BY account ORDER BY as_of), 2)
                   AS change
        FROM account_summary
        WHERE key = 'netliquidation'
        ORDER BY account, as_of
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


def demo_universe() -> Universe:
    """The packaged default universe with ``include_positions: true``."""
    universe = parse_universe_text(default_universe_text(), source=f"<{DEFAULT_UNIVERSE_FILE}>")
    return universe.model_copy(update={"include_positions": True})


def snapshot_times(now: datetime = DEMO_NOW) -> list[datetime]:
    """When the demo takes its snapshots: each US equity session close of `DEMO_WEEK` before
    ``now``'s session (Monday to Wednesday; Thursday is Thanksgiving), then ``now``."""
    sessions = calendar_for(US_EQUITY).sessions(*DEMO_WEEK)
    earlier = [s.rth_close for s in sessions if s.rth_close < now - timedelta(hours=12)]
    return [*earlier, now]


def run_demo(
    warehouse_root: str | None = None,
    *,
    ephemeral: bool = False,
    console: Console | None = None,
    now: datetime = DEMO_NOW,
    unpaced: bool = False,
) -> int:
    """Run the demo (module doc); returns the process exit code (0 when everything passed).

    ``unpaced``: the simulator enforces no pacing and the client waits for none (about half
    the time on two cores: most of a paced demo waits out the once-per-5-s portfolio
    endpoints and the 10 requests/s); the data loaded is the same."""
    out = console if console is not None else _console()
    root = warehouse_root or WarehouseSettings.from_env().root
    universe = demo_universe()
    times = snapshot_times(now)
    out.rule("ib-pipeline demo")
    pacing = "no pacing" if unpaced else "IBKR's pacing limits"
    out.print(
        f"Simulated gateway ({pacing}): seed {DEMO_SEED}, clock set to each of "
        f"{', '.join(t.strftime('%a %H:%M UTC') for t in times)} ({now:%Y-%m-%d} last); "
        f"{len(universe.instruments)} instruments and those the accounts hold; "
        f"warehouse: {root}"
    )
    started = time.perf_counter()
    ok = True
    config = SimulatorConfig(seed=DEMO_SEED, now=now, session_timeout_s=None)
    if unpaced:
        config = config.with_changes(pacing=PacingConfig(enabled=False))
    with Simulator(config) as sim, open_instance(ephemeral) as instance:
        clock = sim.clock
        assert isinstance(clock, FixedClock)  # a pinned `now` makes the simulator's clock fixed
        # The accounts are built at their first use, with the prices of that moment: build
        # them at `now`, so that they equal those of a simulator pinned there (its truth).
        sim.truth.positions(sim.truth.selected_account)
        resources = {
            "ibkr": IbkrClientResource(base_url=sim.base_url, unpaced=unpaced),
            # the catalog is built once, after the last run (below), not after each of the
            # 16 loads: nothing reads it in between, and on an object store each rebuild
            # lists the root and binds every view over the network
            "warehouse": WarehouseResource(root=root, catalog=False),
            "clock": sim.clock,
        }
        definitions = build_definitions(universe, resources=resources)
        plan: list[tuple[datetime, list[str], tuple[str, str] | None]] = []
        for index, at in enumerate(times):
            last = index == len(times) - 1
            plan.append((at, PORTFOLIO_ASSETS + (LAST_EXTRAS if last else []), None))
            plan.append((at, (FIRST_EXTRAS if index == 0 else []) + MARKET_ASSETS, None))
        plan.append((now, ["bars_1min"], (DEMO_WEEK[0].isoformat(), DEMO_WEEK[1].isoformat())))
        plan.append((now, ["bars_1d"], (str(now.year), str(now.year))))
        for at, assets, partition_range in plan:
            clock.set(at)
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
            seconds = time.perf_counter() - step
            _print_run(out, assets, partition_range, summary, seconds, at=at)
            ok = ok and summary.success and not summary.failed_checks
        duck.refresh_catalog(root)
    out.print(f"\nLoaded in {time.perf_counter() - started:.1f} s; the simulator has stopped.")
    if ok:
        _print_queries(out, root, universe)
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
    *,
    at: datetime,
) -> None:
    span = f" [{partition_range[0]} .. {partition_range[1]}]" if partition_range else ""
    status = "ok" if summary.success else "FAILED"
    table = Table(
        title=f"run {summary.run_id[:8]}{span} at {at:%a %Y-%m-%d %H:%M UTC}: "
        f"{status} in {seconds:.1f} s"
    )
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


def _print_queries(out: Console, root: str, universe: Universe) -> None:
    con = duck.connect(root)
    try:
        for title, sql in QUERIES:
            text = sql.format(
                symbols=_symbols_sql(),
                configured=", ".join(f"'{i.symbol}'" for i in universe.instruments),
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
    if value is None:
        return ""
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
