"""The Dagster definitions of ib-pipeline: what ``dagster dev`` (through ``workspace.yaml``) shows.

Everything is built from the universe file (`ib_pipeline.universe`; ``IB_PIPELINE_UNIVERSE``,
or the packaged default that suits the simulator), so that what to ingest stays configuration:

- assets (``assets/``): ``contracts``; one ``bars_<size>`` per configured bar size,
  partitioned like the store; ``quotes``; ``accounts``, ``positions``, ``account_summary``;
  ``orders``;
- checks: ``contract`` (blocking), ``quarantine_empty``, ``complete`` on every asset that
  loads, and ``fresh`` on bars and quotes;
- schedules (all stopped by default) and the gateway sensor;
- resources: ``ibkr`` (the client, configured from ``IB_PIPELINE_*`` variables; the default
  base URL is the simulator on 127.0.0.1:5000, so run ``make sim`` beside ``dagster dev``),
  ``warehouse`` (``IB_PIPELINE_WAREHOUSE``, default ``./warehouse``), ``clock`` (the wall
  clock) and ``progress`` (silent; the ``backfill`` command plugs in a progress bar);
- the in-process executor: one gateway session paces every request of a run, and the
  multiprocess executor costs about a second per step on small machines.

An invalid universe fails here, at load time, before any request, with a message naming the
bad value. `build_definitions` builds the same objects for other universes and resources
(tests, the demo, the backfill command).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets.bars import bars_asset_name, build_bars_asset
from assets.checks import build_bars_freshness_check, build_quotes_freshness_check
from assets.contracts import build_contracts_asset
from assets.orders import build_orders_asset
from assets.portfolio import build_portfolio_assets
from assets.progress import NullProgress
from assets.quotes import QUOTES_ASSET, build_quotes_asset
from assets.resources import IbkrClientResource, WarehouseResource
from assets.schedules import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    build_schedules,
    schedule_hours,
)
from assets.sensors import gateway_sensor
from ib_pipeline.clock import SystemClock
from ib_pipeline.ibkr.settings import ClientSettings
from ib_pipeline.universe import Universe, load_universe


def ibkr_resource_from_env(environ: Mapping[str, str] | None = None) -> IbkrClientResource:
    """The ``ibkr`` resource the ``IB_PIPELINE_*`` variables describe. The access token is
    never copied into configuration: the client reads it from ``token_env`` when it starts."""
    settings = ClientSettings.from_env(environ)
    return IbkrClientResource(
        base_url=settings.base_url,
        ca_bundle=str(settings.ca_bundle) if settings.ca_bundle is not None else None,
        insecure=settings.insecure,
        token_env=settings.token_env,
        account=settings.account,
        timeout_s=settings.timeouts.read,
        global_per_s=settings.pacing.global_per_s,
        history_concurrency=settings.pacing.history_concurrency,
        keepalive_interval_s=settings.keepalive_interval_s,
        allow_trading=settings.allow_trading,
        allow_live_trading=settings.allow_live_trading,
    )


def default_resources() -> dict[str, Any]:
    """The resources of the definitions, from the environment."""
    return {
        "ibkr": ibkr_resource_from_env(),
        "warehouse": WarehouseResource.from_env(),
        "clock": SystemClock(),
        "progress": NullProgress(),
    }


def build_definitions(
    universe: Universe | None = None, *, resources: Mapping[str, Any] | None = None
) -> dg.Definitions:
    """The definitions of ``universe`` (default: `load_universe`), with ``resources``
    replacing the defaults of the same name."""
    chosen = universe if universe is not None else load_universe()
    contracts = build_contracts_asset(chosen)
    bars = [(bar, build_bars_asset(bar, chosen)) for bar in chosen.bar_sizes]
    quotes = build_quotes_asset(chosen)
    portfolio = build_portfolio_assets(chosen)
    orders = build_orders_asset()
    hours = schedule_hours(chosen)
    checks = [build_bars_freshness_check(bars_asset_name(bar), bar, hours) for bar, _ in bars]
    checks.append(build_quotes_freshness_check(QUOTES_ASSET, hours))
    schedules = build_schedules(
        chosen, [(bar.label, asset) for bar, asset in bars], quotes, [portfolio, orders]
    )
    return dg.Definitions(
        assets=[contracts, *(asset for _, asset in bars), quotes, portfolio, orders],
        asset_checks=checks,
        schedules=schedules,
        sensors=[gateway_sensor],
        resources={**default_resources(), **(resources or {})},
        executor=dg.in_process_executor,
    )


def run_assets(
    definitions: dg.Definitions,
    assets: Sequence[str],
    *,
    instance: dg.DagsterInstance | None = None,
    partition_range: tuple[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    log_level: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise ``assets`` of ``definitions`` in ONE in-process run, with their checks.

    ``partition_range`` (first, last) selects a range of partitions (all selected assets must
    share a partitioning); ``instance`` defaults to an ephemeral one; ``log_level`` sets
    Dagster's console logging (``WARNING`` keeps a progress bar readable). This is what the
    backfill and demo commands and the end-to-end tests run.
    """
    keys = [dg.AssetKey(name) for name in assets]
    known = {key.to_user_string() for key in definitions.resolve_all_asset_keys()}
    unknown = [name for name in assets if name not in known]
    if unknown:
        raise ValueError(
            f"unknown asset(s) {', '.join(unknown)}; assets: {', '.join(sorted(known))}"
        )
    job = definitions.resolve_implicit_job_def_def_for_assets(keys)
    if job is None:
        raise ValueError(f"no job can run {', '.join(assets)} together")
    tags: dict[str, str] = {}
    if partition_range is not None:
        tags = {
            PARTITION_RANGE_START_TAG: partition_range[0],
            PARTITION_RANGE_END_TAG: partition_range[1],
        }
    config: dict[str, Any] = dict(run_config) if run_config is not None else {}
    if log_level is not None:
        config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    return job.execute_in_process(
        run_config=config or None,
        instance=instance if instance is not None else dg.DagsterInstance.ephemeral(),
        asset_selection=keys,
        tags=tags,
        raise_on_error=raise_on_error,
    )


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    check: str
    passed: bool
    severity: str  # "ERROR" or "WARN"
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RunSummary:
    """What a run did, in plain values (for the CLI and the demo)."""

    run_id: str
    success: bool
    materialized: dict[str, dict[str, Any]]  # asset -> metadata of its (last) materialisation
    partitions: dict[str, int]  # asset -> partitions materialised
    checks: list[CheckOutcome]
    errors: list[str]

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        """Checks that failed with ERROR severity (a WARN, such as staleness after a
        historical backfill, is reported but does not fail a command)."""
        return [c for c in self.checks if not c.passed and c.severity == "ERROR"]


def summarize_run(result: dg.ExecuteInProcessResult) -> RunSummary:
    """The `RunSummary` of an in-process run."""
    materialized: dict[str, dict[str, Any]] = {}
    partitions: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        name = materialization.asset_key.to_user_string()
        materialized[name] = {k: v.value for k, v in materialization.metadata.items()}
        partitions[name] = partitions.get(name, 0) + 1
    checks = [
        CheckOutcome(
            evaluation.asset_key.to_user_string(),
            evaluation.check_name,
            evaluation.passed,
            evaluation.severity.value,
            {k: v.value for k, v in evaluation.metadata.items()},
        )
        for evaluation in result.get_asset_check_evaluations()
    ]
    errors = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.error is not None:
            errors.append(f"{event.step_key}: {_root_message(data.error)}")
    return RunSummary(
        run_id=result.run_id,
        success=result.success,
        materialized=materialized,
        partitions=partitions,
        checks=checks,
        errors=errors,
    )


def _root_message(error: Any) -> str:
    """The outermost user error of a Dagster error chain (the one that names the problem):
    Dagster's own wrappers are skipped, but not the user error's causes, which are the
    libraries' lower-level errors (an ``httpcore.ConnectError`` under a
    `TlsVerificationError` that says which setting to change)."""
    current = error
    while getattr(current, "cause", None) is not None and str(
        getattr(current, "cls_name", "")
    ).startswith("Dagster"):
        current = current.cause
    return str(getattr(current, "message", current)).strip()
