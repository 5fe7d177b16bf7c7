"""The ``ib-pipeline`` command.

Why a package of lazy commands: ``ib-pipeline --help`` must answer in a blink, so this module
imports only click; each subcommand's module (and whatever heavy layer it drives: DuckDB,
pandas, Dagster) is imported when that subcommand runs. Errors a user can act on (no gateway,
a bad universe, an unknown ticker, a missing warehouse, bad SQL) are printed as ONE line and
exit non-zero (`cli.errors`); ``--verbose`` shows the traceback as well.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from ib_pipeline.cli.errors import UserFacing, one_line

COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("ib_pipeline.cli.simulator:sim", "Run the IBKR gateway simulator in the foreground."),
    "demo": ("ib_pipeline.cli.pipeline:demo", "Load a week of simulated data, query it."),
    "backfill": (
        "ib_pipeline.cli.pipeline:backfill",
        "Materialise a range of partitions of an asset as one run.",
    ),
    "query": ("ib_pipeline.cli.warehouse:query", "Run SQL against the warehouse views."),
    "manifest": ("ib_pipeline.cli.warehouse:manifest", "Show what the warehouse holds."),
    "replay": (
        "ib_pipeline.cli.warehouse:replay_command",
        "Rebuild a dataset's partitions from the raw zone.",
    ),
}
"""name -> ("module:attribute", one-line help shown by ``--help`` without importing it)."""


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, and whose failures are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target[0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target[0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if ctx.find_root().params.get("verbose"):
                raise
            raise UserFacing(one_line(error)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v", "--verbose", is_flag=True, help="Show tracebacks and the libraries' log messages."
)
def main(verbose: bool) -> None:
    """ib-pipeline: load Interactive Brokers market data into a Parquet warehouse.

    Settings come from IB_PIPELINE_* environment variables (see the README); errors print one
    line saying what went wrong and what to do, --verbose adds the traceback.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
