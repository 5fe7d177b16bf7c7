"""The warehouse's commands: ``ib-pipeline query``, ``manifest`` and ``replay``.

They only print and exit: errors become a one-line message and a non-zero exit status, never a
traceback for a user mistake (bad SQL, unknown dataset, no raw records). The store and replay
(pandas, pandera) are imported inside the commands that need them, so ``query`` starts fast.
"""

from __future__ import annotations

import csv
import sys
from datetime import date
from typing import TYPE_CHECKING, Any

import click
import duckdb
import orjson
from rich.console import Console
from rich.table import Table

from ib_pipeline import warehouse
from ib_pipeline.settings import WarehouseSettings
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.storage.manifest import STATUS_OK, Manifest

if TYPE_CHECKING:
    from ib_pipeline.storage.store import Store

_ROOT_HELP = (
    "Warehouse root: folder or fsspec URL (default: $IB_PIPELINE_WAREHOUSE or ./warehouse)."
)


def _root(value: str | None) -> str:
    return value or WarehouseSettings.from_env().root


def _store(value: str | None, *, catalog: bool = True) -> Store:
    """The store at ``value`` (or the default root); a root the store refuses (one DuckDB
    would read as a glob pattern) is a one-line error, not a traceback."""
    from ib_pipeline.storage.store import Store  # noqa: PLC0415 (pandas: only when needed)

    try:
        return Store(_root(value), catalog=catalog)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _console() -> Console:
    """Rich output; when piped (not a terminal), wide enough that no value is cut short."""
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 240)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


@click.command("query")
@click.argument("sql")
@click.option("--warehouse", "--root", "root", default=None, help=_ROOT_HELP)
@click.option("--max-rows", default=200, show_default=True, help="Rows to print at most.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def query(*, sql: str, root: str | None, max_rows: int, output: str) -> None:
    """Run SQL against the warehouse views and print the result.

    Views: bars, quotes, positions, account_summary, contracts, accounts, orders, quarantine,
    bars_with_symbols, daily_ohlcv, latest_positions, latest_account_summary, latest_quotes.
    """
    try:
        con = warehouse.connect(_root(root))
        result = con.execute(sql)
        columns = [d[0] for d in result.description] if result.description else []
        rows = result.fetchmany(max_rows + 1) if columns else []
    except warehouse.WarehouseNotFoundError as error:
        raise click.ClickException(str(error)) from None
    except (duckdb.Error, ValueError) as error:
        raise click.ClickException(f"query failed: {error}") from None
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    elif output == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(orjson.dumps(records, default=str, option=orjson.OPT_INDENT_2).decode())
    else:
        table = Table(*columns, show_lines=False)
        for row in rows:
            table.add_row(*[_cell(v) for v in row])
        console = _console()
        console.print(table)
        console.print(f"{len(rows)} row(s){' (truncated: use --max-rows)' if truncated else ''}")
    if truncated and output != "table":
        click.echo(f"(truncated at {max_rows} rows: use --max-rows)", err=True)


def _summary_row(name: str, manifests: list[Manifest], quarantined: int) -> list[str]:
    rows = sum(m.rows for m in manifests)
    starts = [m.time_min for m in manifests if m.time_min]
    ends = [m.time_max for m in manifests if m.time_max]
    problems = [m for m in manifests if m.status != STATUS_OK]
    return [
        name,
        str(len(manifests)),
        str(rows),
        min(starts) if starts else "-",
        max(ends) if ends else "-",
        str(quarantined),
        ", ".join(f"{m.partition or '(all)'}: {m.status}" for m in problems[:3])
        + (" ..." if len(problems) > 3 else "")
        or "-",
    ]


@click.command("manifest")
@click.argument("datasets", nargs=-1)
@click.option("--warehouse", "--root", "root", default=None, help=_ROOT_HELP)
@click.option("--partitions", is_flag=True, help="List every partition, not only totals.")
@click.option("--verify", is_flag=True, help="Hash every data file against its manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
def manifest(
    *, datasets: tuple[str, ...], root: str | None, partitions: bool, verify: bool, as_json: bool
) -> None:
    """Show what the warehouse holds: per dataset, partitions, rows, time range, quarantined
    rows and any partition whose manifest disagrees with its data: stale (a crash between the
    writes), corrupt (with --verify: the data file's bytes are damaged), missing or garbled
    (no readable manifest). Each problem is listed with its data file; with --verify, any
    problem makes the exit status 1. A re-run of the partition's load (or replay) repairs it."""
    store = _store(root, catalog=False)  # first: a root DuckDB would glob is refused as such
    try:
        warehouse.require_warehouse(store.root)
    except (warehouse.WarehouseNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    names = list(datasets) or list(DATASETS)
    try:
        found = {name: store.manifests(name, verify=verify) for name in names}
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    try:
        quarantine = store.quarantine()
    except ValueError as error:  # a damaged quarantine file: named, the manifests still shown
        click.echo(f"problem: {error}", err=True)
        from ib_pipeline.storage.quarantine import QUARANTINE_SCHEMA  # noqa: PLC0415

        quarantine = QUARANTINE_SCHEMA.empty_table()
    counts: dict[str, int] = {}
    for value in quarantine.column("dataset").to_pylist():
        counts[value] = counts.get(value, 0) + 1
    if as_json:
        body = {
            name: [{**orjson.loads(m.to_json()), "status": m.status} for m in found[name]]
            for name in names
        }
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    console = _console()
    console.print(f"warehouse: {store.url}")
    summary = Table("dataset", "partitions", "rows", "from", "to", "quarantined", "problems")
    for name in names:
        summary.add_row(*_summary_row(name, found[name], counts.get(name, 0)))
    console.print(summary)
    if partitions:
        for name in names:
            if not found[name]:
                continue
            table = Table(
                "partition", "rows", "from", "to", "quarantined", "run", "written", "status",
                "sha256", title=name,
            )  # fmt: skip
            for m in found[name]:
                table.add_row(
                    m.partition or "(all)", str(m.rows), m.time_min or "-", m.time_max or "-",
                    str(m.quarantined_rows), m.run_id or "-", m.written_at or "-", m.status,
                    m.content_sha256[:12],
                )  # fmt: skip
            console.print(table)
    problems = [(name, m) for name in names for m in found[name] if m.status != STATUS_OK]
    for name, m in problems:
        click.echo(f"{m.status}: {m.data_file} ({name} {m.partition or '(all)'})", err=True)
    if verify and problems:
        raise click.exceptions.Exit(1)


def _date(_: click.Context, __: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@click.command("replay")
@click.argument("dataset", type=click.Choice(list(DATASETS)))
@click.option(
    "--partition",
    "partitions",
    multiple=True,
    help="Partition id to rebuild (repeatable), e.g. bar_size=1min/session_date=2024-11-26.",
)
@click.option("--since", callback=_date, help="First fetch date (UTC) of raw records to read.")
@click.option("--until", callback=_date, help="Last fetch date (UTC) of raw records to read.")
@click.option("--run-id", default=None, help="Run id recorded in manifests and quarantine.")
@click.option("--warehouse", "--root", "root", default=None, help=_ROOT_HELP)
def replay_command(
    *,
    dataset: str,
    partitions: tuple[str, ...],
    since: date | None,
    until: date | None,
    run_id: str | None,
    root: str | None,
) -> None:
    """Rebuild DATASET's partitions from the raw zone alone (no API calls), replacing them."""
    from ib_pipeline.replay import ReplayError, replay  # noqa: PLC0415 (pandas: only when needed)

    store = _store(root)
    try:
        result = replay(
            store,
            dataset,
            partitions=list(partitions) or None,
            since=since,
            until=until,
            run_id=run_id,
        )
    except (ReplayError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    if result.records == 0:
        raise click.ClickException(
            f"no raw records for {dataset} under {store.url}/raw: nothing to replay"
        )
    console = _console()
    write = result.write
    console.print(
        f"replayed {dataset}: {result.records} raw record(s), {result.rows_normalised} row(s) "
        f"normalised, {write.rows_valid} valid, {write.rows_quarantined} quarantined, "
        f"{write.duplicates_collapsed} exact duplicate(s) collapsed, "
        f"{len(write.partitions)} partition(s) rebuilt"
    )
    table = Table("partition", "rows", "unchanged", "sha256")
    for part in write.partitions:
        table.add_row(
            part.partition or "(all)", str(part.rows), str(part.unchanged), part.content_sha256[:12]
        )
    console.print(table)
    if partitions:
        missing = sorted(
            set(store.partition(dataset, p).id for p in partitions)
            - {p.partition for p in write.partitions}
        )
        if missing:
            raise click.ClickException(f"no raw rows for partition(s): {', '.join(missing)}")


COMMANDS: tuple[click.Command, ...] = (query, manifest, replay_command)
"""The commands `ib_pipeline.cli` adds to the ``ib-pipeline`` group."""
