"""The `ib-pipeline` command. Each subcommand lives beside the layer it drives; this module only
assembles them, so importing it stays cheap."""

from __future__ import annotations

import click

from ib_pipeline.cli.pipeline import backfill, demo
from ib_pipeline.cli.simulator import sim
from ib_pipeline.cli.warehouse import COMMANDS as WAREHOUSE_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """ib-pipeline: load Interactive Brokers market data into a Parquet warehouse."""


main.add_command(sim)
main.add_command(backfill)
main.add_command(demo)
for command in WAREHOUSE_COMMANDS:
    main.add_command(command)
