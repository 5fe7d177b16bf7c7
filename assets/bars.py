"""The bars assets: one per configured bar size (``bars_1min``, ``bars_1d``, ...).

Why one per size: each size has its own partitioning in the store (session date, month or year;
`assets.partitions`), and Dagster shows partitions per asset. Each asset is time-partitioned to
match the store one to one and has a single-run backfill policy: a backfill of a range of
partitions is ONE run that fetches each instrument's whole range with as few requests as
IBKR's 1000-bar pages allow, instead of one run (and one partial page) per partition.

Loading is gap-aware: partitions the store already holds completely are not fetched again;
run config ``refetch: true`` forces them. Every run compares bars it receives again with the
stored ones (`assets.bar_overlap`): a split restates the stored history and is recorded in
``corporate_actions``; the ``no_restatement`` check warns about it. The work itself is
`assets.bar_loader.load_bars` (no Dagster in it); this module adds config, metadata and the
checks' results.
"""

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from assets.bar_loader import BarsLoad, load_bars
from assets.bar_overlap import compares
from assets.checks import (
    completeness_check_result,
    completeness_check_spec,
    contract_check_result,
    contract_check_spec,
    quarantine_check_result,
    quarantine_check_spec,
)
from assets.contracts import CONTRACTS_ASSET
from assets.corporate_actions import restatement_check_result, restatement_check_spec
from assets.metadata import column_schema as to_column_schema
from assets.metadata import load_metadata
from assets.partitions import bars_partitions_def, granularity
from assets.progress import LoadProgress
from assets.resources import IbkrClientResource, WarehouseResource
from assets.verify import checks_completeness
from ib_pipeline.clock import Clock
from ib_pipeline.storage.datasets import DATASETS
from ib_pipeline.timeframes import BarSize
from ib_pipeline.universe import Universe

GROUP = "bars"


class BarsConfig(dg.Config):
    """Run configuration of a bars asset."""

    refetch: bool = Field(
        default=False,
        description="Fetch partitions again even when the store already holds them completely.",
    )


def bars_asset_name(bar: BarSize) -> str:
    return f"bars_{bar.label}"


def build_bars_asset(bar: BarSize, universe: Universe) -> dg.AssetsDefinition:
    """The ``bars_<size>`` asset of ``universe``."""
    name = bars_asset_name(bar)
    grain = granularity(bar)
    specs = [contract_check_spec(name), quarantine_check_spec(name)]
    if compares(bar):
        specs.append(restatement_check_spec(name))
    if checks_completeness(bar):
        specs.append(completeness_check_spec(name))

    with warnings.catch_warnings():
        # BackfillPolicy is flagged beta; single-run backfills are the point of this asset.
        warnings.simplefilter("ignore", category=dg.BetaWarning)

        @dg.asset(
            name=name,
            group_name=GROUP,
            partitions_def=bars_partitions_def(bar, universe),
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=[CONTRACTS_ASSET],
            kinds={"parquet"},
            check_specs=specs,
            metadata={
                "dagster/column_schema": to_column_schema(DATASETS["bars"].schema, "bars"),
                "partitioned_by": grain.value,
            },
            description=(
                f"{bar.label} bars of every instrument of the universe, one partition per "
                f"{grain.value} (bars/bar_size={bar.label}/period=<key>). A range of "
                "partitions is one run; complete partitions are skipped unless refetch."
            ),
        )
        def _bars(  # noqa: PLR0917 (Dagster injects context, config and resources by name)
            context: dg.AssetExecutionContext,
            config: BarsConfig,
            ibkr: IbkrClientResource,
            warehouse: WarehouseResource,
            clock: dg.ResourceParam[Clock],
            progress: dg.ResourceParam[LoadProgress],
        ) -> Iterator[Any]:
            keys = list(context.partition_keys)
            store = warehouse.store(clock)
            now = clock.now()

            async def run() -> BarsLoad:
                async with ibkr.get_client(on_response=warehouse.raw(), clock=clock) as client:
                    return await load_bars(
                        client,
                        store,
                        universe,
                        bar,
                        keys,
                        run_id=context.run.run_id,
                        now=now,
                        refetch=config.refetch,
                        progress=progress,
                    )

            load = asyncio.run(run())
            context.log.info(
                f"{name}: {len(keys)} partition(s), {len(load.skipped_keys)} already complete, "
                f"{load.ranges} range(s), {sum(load.requests.values())} request(s), "
                f"{load.rows_written} row(s) written, {load.rows_quarantined} quarantined"
            )
            yield dg.MaterializeResult(metadata=_metadata(load))
            yield contract_check_result(name, load.verdict)
            yield quarantine_check_result(name, "bars", load.writes, store, context.run.run_id)
            if checks_completeness(bar):
                yield completeness_check_result(name, load.gaps, load.sessions_checked)
            if compares(bar):
                yield restatement_check_result(name, load.overlap)

    return _bars


def _metadata(load: BarsLoad) -> dict[str, Any]:
    if load.first_ts is not None and load.last_ts is not None:
        span = f"{load.first_ts.isoformat()} .. {load.last_ts.isoformat()}"
    else:
        span = "-"
    return load_metadata(
        load.writes,
        instruments=[c.symbol for c in load.contracts],
        requests=load.requests,
        preview=load.preview,
        time_range_text=span,
        extra={
            "partitions_requested": dg.MetadataValue.int(len(load.keys)),
            "partitions_skipped_complete": dg.MetadataValue.int(len(load.skipped_keys)),
            "ranges_fetched": dg.MetadataValue.int(load.ranges),
            "bars_fetched": dg.MetadataValue.int(load.bars_fetched),
            "bars_out_of_order": dg.MetadataValue.int(load.bars_out_of_order),
            "overlap_bars_compared": dg.MetadataValue.int(load.overlap.bars_compared),
            "overlap_probe_requests": dg.MetadataValue.int(load.overlap.probe_requests),
            "splits_restated": dg.MetadataValue.int(len(load.overlap.splits)),
            "sessions_revised": dg.MetadataValue.int(
                sum(len(r["sessions"]) for r in load.overlap.revisions)
            ),
        },
    )
