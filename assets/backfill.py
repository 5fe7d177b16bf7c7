"""Backfills from the command line (``ib-pipeline backfill``): one run per asset over a range.

`run_backfill` maps a date range to the asset's partition keys, checks the gateway (one auth
status call), materialises the range as ONE in-process Dagster run with a progress bar fed by
the assets, and prints a summary of rows, requests, quarantine and checks. Whatever is wrong
before a run (a bad range, no gateway, no login) raises one error whose message is one line
(`BackfillError`, `GatewayUnavailableError`); a run's own failures are summarised, with
Dagster's console logging silenced unless ``verbose``.

Runs are recorded in the Dagster instance `assets.instance.open_instance` opens (so ``dagster
dev`` shows them afterwards); Ctrl-C or SIGTERM marks the runs it started CANCELED rather than
leaving them STARTED. Never fetches data itself.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from assets.contract_lookup import resolved_contracts
from assets.definitions import build_definitions
from assets.gateway import require_gateway
from assets.instance import cancel_runs_on_interrupt, open_instance
from assets.resources import IbkrClientResource, WarehouseResource
from assets.runs import RunSummary, run_assets, summarize_run
from ib_pipeline.clock import SystemClock
from ib_pipeline.storage.bar_periods import Granularity, keys_between
from ib_pipeline.universe import Universe

QUIET_LOG_LEVEL = "CRITICAL"
"""Dagster's console logging of a backfill run: our summary names failures in one line each."""
VERBOSE_LOG_LEVEL = "WARNING"
"""With ``verbose``: Dagster's warnings and errors, tracebacks included."""


class BackfillError(ValueError):
    """The backfill request is invalid (unknown asset, empty, reversed or out-of-range dates)."""


class RichProgress:
    """A rich progress bar fed by the assets (`assets.progress.LoadProgress`)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._started = 0.0

    def begin(self, asset: str, ranges: int) -> None:
        self._started = time.perf_counter()
        self._task = self._progress.add_task(
            f"{asset}: instrument ranges", total=max(ranges, 1), requests=0, bars=0, rate=0.0
        )
        if ranges == 0:
            self._progress.update(self._task, completed=1)

    def advance(self, *, ranges: int, requests: int, bars: int) -> None:
        if self._task is None:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(
            self._task, advance=ranges, requests=requests, bars=bars, rate=bars / elapsed
        )

    def finish(self, asset: str) -> None:
        if self._task is not None:
            self._progress.stop_task(self._task)


def progress_bar(console: Console) -> Progress:
    """The live progress bar; off when the output is not a terminal (piped into a file or
    another program), where redrawing would leave escape codes and half lines behind: the
    summary table still says what the run did."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[requests]} requests"),
        TextColumn("{task.fields[bars]:,} bars"),
        TextColumn("{task.fields[rate]:,.0f} bars/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def partition_range(
    definitions: dg.Definitions, asset: str, start: date | None, end: date | None
) -> tuple[str, str] | None:
    """The first and last partition keys of ``asset`` within [start, end], or None when the
    asset is not partitioned. Raises `BackfillError` naming what is wrong."""
    known = {k.to_user_string() for k in definitions.resolve_all_asset_keys()}
    if asset not in known:
        raise BackfillError(f"unknown asset {asset!r}; assets: {', '.join(sorted(known))}")
    partitions = definitions.resolve_assets_def(dg.AssetKey(asset)).partitions_def
    if partitions is None:
        if start is not None or end is not None:
            raise BackfillError(f"{asset} is not partitioned: drop --start and --end")
        return None
    if start is None or end is None:
        raise BackfillError(f"{asset} is partitioned: give --start and --end (dates)")
    if start > end:
        raise BackfillError(f"--start {start} is after --end {end}")
    fmt = getattr(partitions, "fmt", Granularity.SESSION.key_format)
    grain = {g.key_format: g for g in Granularity}.get(fmt, Granularity.SESSION)
    existing = partitions.get_partition_keys()
    span = f"{existing[0]} to {existing[-1]}" if existing else "none yet"
    try:
        keys = [k for k in keys_between(start, end, grain) if partitions.has_partition_key(k)]
    except (OverflowError, ValueError):
        raise BackfillError(
            f"{start} .. {end} is outside {asset}'s partitions, which run from {span}"
        ) from None
    if not keys:
        raise BackfillError(
            f"{asset} has no partition between {start} and {end} (weekends and market "
            f"holidays have none); its partitions run from {span}"
        )
    return keys[0], keys[-1]


def refetch_config(asset: str, refetch: bool) -> dict[str, Any]:
    """Run config setting ``refetch`` on a bars asset (other assets take no config)."""
    if not asset.startswith("bars_"):
        if refetch:
            raise BackfillError(f"--refetch applies to bars assets, not {asset}")
        return {}
    return {"ops": {asset: {"config": {"refetch": refetch}}}}


@dataclass(frozen=True)
class BackfillOutcome:
    asset: str
    partition_range: tuple[str, str] | None
    summary: RunSummary
    seconds: float

    @property
    def ok(self) -> bool:
        return self.summary.success and not self.summary.failed_checks


def run_backfill(
    universe: Universe,
    assets: Sequence[str],
    *,
    start: date | None,
    end: date | None,
    refetch: bool = False,
    warehouse: str | None = None,
    ephemeral: bool = False,
    console: Console | None = None,
    verbose: bool = False,
) -> list[BackfillOutcome]:
    """One run per asset over [start, end], with progress and a summary per run.

    Raises `BackfillError` for a bad request and `GatewayUnavailableError` when the gateway is
    down or not logged in, before any run; ``verbose`` lets Dagster log to the console."""
    out = console if console is not None else Console(stderr=True)
    outcomes: list[BackfillOutcome] = []
    with progress_bar(out) as progress:
        resources: dict[str, Any] = {"progress": RichProgress(progress)}
        if warehouse:
            resources["warehouse"] = WarehouseResource(root=warehouse)
        definitions = build_definitions(universe, resources=resources)
        plan = [
            (a, partition_range(definitions, a, start, end), refetch_config(a, refetch))
            for a in assets
        ]
        ibkr = (definitions.resources or {}).get("ibkr")
        store = (definitions.resources or {}).get("warehouse")
        if isinstance(store, WarehouseResource):
            store.store(SystemClock())  # a root no reader could query fails before any request
        if isinstance(ibkr, IbkrClientResource):
            require_gateway(ibkr)
            if isinstance(store, WarehouseResource) and any(map(_needs_contracts, assets)):
                require_contracts(ibkr, store, universe)
        with open_instance(ephemeral) as instance, cancel_runs_on_interrupt(instance) as owner:
            for asset, keys, config in plan:
                started = time.perf_counter()
                result = run_assets(
                    definitions,
                    [asset],
                    instance=instance,
                    partition_range=keys,
                    run_config=config,
                    raise_on_error=False,
                    log_level=VERBOSE_LOG_LEVEL if verbose else QUIET_LOG_LEVEL,
                    tags=owner,
                )
                outcome = BackfillOutcome(
                    asset, keys, summarize_run(result), time.perf_counter() - started
                )
                print_summary(progress.console, outcome)
                outcomes.append(outcome)
    return outcomes


def _needs_contracts(asset: str) -> bool:
    return asset in ("contracts", "quotes") or asset.startswith("bars_")


def require_contracts(
    ibkr: IbkrClientResource, store: WarehouseResource, universe: Universe
) -> None:
    """Resolve the universe's symbols before any run (searching only those not stored yet), so
    that an unknown ticker is one `UniverseError` naming it, not a failed run."""

    async def resolve() -> None:
        async with ibkr.get_client() as client:
            await resolved_contracts(client, store.store(SystemClock()), universe)

    asyncio.run(resolve())


def print_summary(console: Console, outcome: BackfillOutcome) -> None:
    """What the run wrote, what it cost, what the checks say."""
    summary, asset = outcome.summary, outcome.asset
    meta = summary.materialized.get(asset, {})
    span = (
        f" {outcome.partition_range[0]} .. {outcome.partition_range[1]}"
        if outcome.partition_range
        else ""
    )
    table = Table(title=f"{asset}{span}: run {summary.run_id[:8]}", show_header=False)
    rows = [
        ("result", "succeeded" if summary.success else "FAILED"),
        ("partitions", str(summary.partitions.get(asset, 0))),
        ("skipped (already complete)", str(meta.get("partitions_skipped_complete", "-"))),
        ("instruments", str(meta.get("instruments", "-"))),
        ("requests", str(meta.get("requests", "-"))),
        ("rows written", f"{meta.get('rows_written', 0):,}"),
        ("quarantined rows", str(meta.get("quarantined_rows", "-"))),
        ("time range", str(meta.get("time_range", "-"))),
        ("elapsed", f"{outcome.seconds:.1f} s"),
    ]
    bars = meta.get("bars_fetched")
    if isinstance(bars, int) and outcome.seconds > 0:
        rows.append(("bars/s", f"{bars / outcome.seconds:,.0f}"))
    for check in summary.checks:
        if check.asset == asset:
            verdict = "passed" if check.passed else f"FAILED {_why(check.metadata)}"
            if check.passed and "skipped" in check.metadata:
                verdict = f"not judged: {check.metadata['skipped']}"
            rows.append((f"check {check.check}", verdict.strip()))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for error in summary.errors:
        console.print(f"[red]error:[/red] {error}")


_WHY_KEYS = (
    "rows_violating",
    "quarantined_rows",
    "missing_bars",
    "extra_bars",
    "incomplete_sessions",
    "newest_bar",
    "due_at_least",
    "newest_snapshot",
)


def _why(metadata: dict[str, Any]) -> str:
    """The few metadata values that say why a check failed."""
    parts = [f"{key}={metadata[key]}" for key in _WHY_KEYS if key in metadata]
    return "(" + ", ".join(parts) + ")" if parts else ""
