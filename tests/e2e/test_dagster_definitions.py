"""What `dagster dev` loads: every asset, check, schedule and sensor of the default universe,
partitioned like the store, one run per backfill, in-process, with the instance settings of
dagster.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ib_pipeline.universe import UNIVERSE_ENV

REPO = Path(__file__).resolve().parents[2]
ASSETS = {
    "contracts", "bars_1min", "bars_1d", "quotes", "accounts", "positions", "account_summary",
    "orders",
}  # fmt: skip


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    if os.environ.get(UNIVERSE_ENV):
        pytest.fail(f"unset {UNIVERSE_ENV}: these tests check the packaged default universe")
    from ib_pipeline.definitions import defs as entry  # noqa: PLC0415 (after the env check)

    return entry()


def test_every_asset_and_check_is_defined(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for asset in ASSETS:
        assert (asset, "contract") in checks and (asset, "quarantine_empty") in checks
    for asset in ("bars_1min", "bars_1d"):
        assert (asset, "complete") in checks and (asset, "fresh") in checks
    assert ("quotes", "fresh") in checks
    blocking = {
        (spec.asset_key.to_user_string(), spec.name)
        for assets_def in defs.assets or []
        if isinstance(assets_def, dg.AssetsDefinition)
        for spec in assets_def.check_specs
        if spec.blocking
    }
    assert blocking == {(asset, "contract") for asset in ASSETS}


def test_bars_are_partitioned_like_the_store_and_backfill_in_one_run(
    defs: dg.Definitions,
) -> None:
    minute = defs.resolve_assets_def("bars_1min")
    daily = defs.resolve_assets_def("bars_1d")
    for asset, fmt in ((minute, "%Y-%m-%d"), (daily, "%Y")):
        assert isinstance(asset.partitions_def, dg.TimeWindowPartitionsDefinition)
        assert asset.partitions_def.fmt == fmt
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert minute.partitions_def is not None
    assert minute.partitions_def.get_partition_keys()[0] == "2024-01-02"


def test_schedules_sensor_and_executor(defs: dg.Definitions) -> None:
    assert all(s.default_status is dg.DefaultScheduleStatus.STOPPED for s in defs.schedules or [])
    assert len(list(defs.schedules or [])) == 4
    sensor = defs.resolve_sensor_def("gateway_sensor")
    assert sensor.minimum_interval_seconds == 60
    assert defs.executor is dg.in_process_executor
    assert set(defs.resources or {}) >= {"ibkr", "warehouse", "clock", "progress"}


def test_the_default_universe_ships_with_the_package() -> None:
    packaged = resources.files("ib_pipeline").joinpath("universe_default.yaml")
    assert packaged.is_file()
    assert "instruments" in yaml.safe_load(packaged.read_text("utf-8"))


def test_workspace_loads_the_definitions() -> None:
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    target = workspace["load_from"][0]["python_module"]
    assert (target["module_name"], target["attribute"]) == ("ib_pipeline.definitions", "defs")
    dagster = Path(sys.executable).with_name("dagster")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", UNIVERSE_ENV)}
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All code locations passed validation" in done.stderr + done.stdout


def test_instance_keeps_its_storage_local_and_runs_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        home = tmp_path / ".dagster_home"
        assert Path(instance.root_directory).resolve() == home.resolve()
        assert (home / "storage").is_dir()


def test_a_failed_step_is_summarised_by_the_user_error_not_its_library_cause() -> None:
    """The error a run summary shows (backfill, demo) is the one the asset raised, which names
    the setting to change, not the lower-level error it was raised from."""
    from assets.runs import summarize_run  # noqa: PLC0415

    @dg.asset
    def broken() -> None:
        try:
            raise ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] low-level detail")
        except ConnectionError as error:
            raise ValueError("TLS verification failed: pass ca_bundle=") from error

    summary = summarize_run(dg.materialize([broken], raise_on_error=False))
    assert summary.errors == ["broken: ValueError: TLS verification failed: pass ca_bundle="]
