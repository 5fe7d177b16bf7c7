"""Run helpers: materialise assets in one in-process run and summarise it in plain values.

The backfill and demo drivers and the end-to-end tests run assets through `run_assets` and read
the outcome through `summarize_run`, so nothing outside ``assets/`` handles Dagster objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG


def run_assets(
    definitions: dg.Definitions,
    assets: Sequence[str],
    *,
    instance: dg.DagsterInstance | None = None,
    partition_range: tuple[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    log_level: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise ``assets`` of ``definitions`` in ONE in-process run, with their checks.

    ``partition_range`` (first, last) selects a range of partitions (all selected assets must
    share a partitioning); ``instance`` defaults to an ephemeral one; ``log_level`` sets
    Dagster's console logging (``WARNING`` keeps a progress bar readable); ``tags`` are added
    to the run's (the backfill's owner tags, `assets.instance.cancel_runs_on_interrupt`). This
    is what the backfill and demo commands and the end-to-end tests run.
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
    run_tags: dict[str, str] = dict(tags or {})
    if partition_range is not None:
        run_tags[PARTITION_RANGE_START_TAG] = partition_range[0]
        run_tags[PARTITION_RANGE_END_TAG] = partition_range[1]
    config: dict[str, Any] = dict(run_config) if run_config is not None else {}
    if log_level is not None:
        config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    return job.execute_in_process(
        run_config=config or None,
        instance=instance if instance is not None else dg.DagsterInstance.ephemeral(),
        asset_selection=keys,
        tags=run_tags,
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
