"""The ``backfill`` and ``demo`` commands of ``ib-pipeline``.

``ib-pipeline backfill --asset bars_1min --start 2024-01-02 --end 2024-11-29`` materialises a
range of partitions of an asset as ONE Dagster run, with a progress bar (instrument ranges and
requests done, bars/s, time left) and a summary (rows, requests, quarantine, checks); dates are
mapped to the asset's partitions (session dates, months or years). Partitions already complete
in the warehouse are skipped unless ``--refetch``. See `assets.backfill`.

``ib-pipeline demo`` (``make demo``) loads a week of data from the bundled simulator into
``./warehouse`` and queries it. See `assets.demo`.

Both need a gateway: ``backfill`` the one at ``IB_PIPELINE_BASE_URL`` (default: the simulator
on 127.0.0.1:5000, ``make sim``), ``demo`` starts its own simulator in-process.

This module imports Dagster only inside the commands, so ``ib-pipeline --help`` stays fast.
Exit status: 0 when every run succeeded and every check passed, 1 otherwise.
"""

from __future__ import annotations

import sys
from datetime import datetime

import click

from ib_pipeline.cli.errors import BadRequest, UserFacing, one_line


@click.command()
@click.option(
    "--asset",
    "assets",
    multiple=True,
    required=True,
    help="Asset to materialise (bars_1min, bars_1d, contracts, quotes...); repeat for several "
    "(one run each).",
)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First date (partitioned).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last date, inclusive.")
@click.option("--refetch", is_flag=True, help="Fetch partitions the warehouse already holds.")
@click.option(
    "--universe",
    type=click.Path(dir_okay=False),
    help="Universe YAML (default: $IB_PIPELINE_UNIVERSE, else the packaged default).",
)
@click.option("--warehouse", help="Warehouse root (default: $IB_PIPELINE_WAREHOUSE, ./warehouse).")
@click.option("--ephemeral", is_flag=True, help="Do not record runs in the Dagster instance.")
def backfill(  # noqa: PLR0917 (click passes every option)
    assets: tuple[str, ...],
    start: datetime | None,
    end: datetime | None,
    refetch: bool,
    universe: str | None,
    warehouse: str | None,
    ephemeral: bool,
) -> None:
    """Materialise a range of partitions of an asset as one run, with progress and a summary."""
    from assets.backfill import BackfillError, run_backfill  # noqa: PLC0415 (slow import)
    from ib_pipeline.ibkr.errors import ConfigurationError  # noqa: PLC0415
    from ib_pipeline.universe import UniverseError, load_universe  # noqa: PLC0415

    try:
        outcomes = run_backfill(
            load_universe(universe),
            assets,
            start=start.date() if start is not None else None,
            end=end.date() if end is not None else None,
            refetch=refetch,
            warehouse=warehouse,
            ephemeral=ephemeral,
            verbose=bool(click.get_current_context().find_root().params.get("verbose")),
        )
    except (UniverseError, BackfillError, ConfigurationError) as error:
        # ConfigurationError: the client's IB_PIPELINE_* settings (unsafe TLS, bad values)
        raise BadRequest(one_line(error)) from None
    except ValueError as error:  # the warehouse root refused by the store, named in the message
        raise UserFacing(one_line(error)) from None
    sys.exit(0 if all(o.ok for o in outcomes) else 1)


@click.command()
@click.option("--warehouse", default=None, help="Warehouse root (default: ./warehouse).")
@click.option("--ephemeral", is_flag=True, help="Do not record runs in the Dagster instance.")
@click.option(
    "--unpaced",
    is_flag=True,
    help="Turn pacing off in the simulator and the client: the same data in about half the "
    "time (a real gateway is always paced).",
)
def demo(warehouse: str | None, ephemeral: bool, unpaced: bool) -> None:
    """Load a week of simulated market data, query it with DuckDB (what `make demo` runs)."""
    from assets.demo import run_demo  # noqa: PLC0415 (slow import)

    sys.exit(run_demo(warehouse, ephemeral=ephemeral, unpaced=unpaced))
