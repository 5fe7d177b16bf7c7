"""The production instance (deploy/postgres/dagster.yaml) on a real PostgreSQL server, with the
real definitions (workspace.yaml) against the bundled simulator on the wall clock.

In order, on one server and one instance: an ``ib-pipeline backfill`` recorded in PostgreSQL;
then ``dagster-webserver`` and ``dagster-daemon run`` as separate processes, and through them
a schedule tick and a sensor tick evaluated by the daemon, runs submitted at once executed one
after the other by the queue, and a run whose processes are SIGKILLed marked FAILED by run
monitoring. The instance is the production file with shorter polling intervals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest
import yaml
from click.testing import CliRunner
from dagster._core.scheduler.instigation import InstigatorType, ScheduleInstigatorData
from postgres_support import (
    PostgresServer,
    free_port,
    postgres_server_fixture,  # noqa: F401 (the fixture)
)

from assets.instance import PID_TAG, run_worker_process
from ib_pipeline.cli.pipeline import backfill
from ib_pipeline.simulator import FaultSpec, PacingConfig, Simulator, SimulatorConfig

pytestmark = [pytest.mark.slow(100), pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NY = ZoneInfo("America/New_York")
UNIVERSE = """\
history_start: 2025-01-02
bar_sizes: [1min, 1d]
instruments:
  - {symbol: AAPL, sec_type: STK, exchange: NASDAQ}
  - {symbol: IBM, sec_type: STK, exchange: NYSE}
"""
SCHEDULE = "portfolio_schedule"
SCHEDULE_AT = (16, 15)  # its cron time, New York (assets/schedules.py)
READY_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 90.0


def start_simulator(**faults: Any) -> Simulator:
    spec = ",".join(f"{k}={v}" for k, v in faults.items())

    simulator = Simulator(
        SimulatorConfig(
            now=None,
            pacing=PacingConfig(penalty_box_s=1.0),
            session_timeout_s=None,
            faults=FaultSpec.parse(spec or None),
        )
    )
    simulator.start()
    return simulator


@dataclass
class Home:
    """A DAGSTER_HOME with the production instance, and what the code location reads."""

    folder: Path
    env: dict[str, str]
    sim: Simulator
    slow_sim: Simulator

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.folder))


@pytest.fixture(scope="module")
def home(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Home]:
    folder = tmp_path_factory.mktemp("dagster_home")
    config = yaml.safe_load((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = 1
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    (folder / "universe.yaml").write_text(UNIVERSE)
    sim = start_simulator()
    slow_sim = start_simulator(slow=1.0, slow_s=60)
    env = {
        **postgres_server.dagster_env(postgres_server.create_database("dagster")),
        "DAGSTER_HOME": str(folder),
        "IB_PIPELINE_BASE_URL": sim.base_url,
        "IB_PIPELINE_UNIVERSE": str(folder / "universe.yaml"),
        "IB_PIPELINE_WAREHOUSE": str(folder / "warehouse"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            yield Home(folder, env, sim, slow_sim)
        finally:
            slow_sim.stop()
            sim.stop()


class Processes:
    """Processes of the deployment, each in its own process group, stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


class GraphQL:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = httpx.post(self.url, json={"query": query, "variables": variables}, timeout=30)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@dataclass
class Deployment:
    home: Home
    graphql: GraphQL
    repository: dict[str, str]  # repositoryLocationName, repositoryName
    schedule_tick_at: datetime
    processes: Processes

    def submit(self, asset: str, run_config: dict[str, Any] | None = None) -> str:
        data = self.graphql(
            """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams:
                 $params) { __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on RunConfigValidationInvalid { errors {
                 message } } } }""",
            params={
                "selector": {**self.repository, "pipelineName": "__ASSET_JOB",
                             "assetSelection": [{"path": [asset]}]},
                "runConfigData": run_config or {},
                "mode": "default",
            },
        )  # fmt: skip
        launched = data["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id: str = launched["run"]["runId"]
        return run_id


def last_cron_time(now: datetime) -> datetime:
    """The last weekday at SCHEDULE_AT New York before ``now``."""
    day = now.astimezone(NY)
    while True:
        at = day.replace(hour=SCHEDULE_AT[0], minute=SCHEDULE_AT[1], second=0, microsecond=0)
        if at.weekday() < 5 and at <= now:
            return at
        day -= timedelta(days=1)


def wait_for(what: str, probe: Any, timeout_s: float, processes: Processes | None = None) -> Any:
    """Poll ``probe()`` until it answers something true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = probe()
        except (httpx.HTTPError, ConnectionError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: not after {timeout_s:.0f} s\n{processes.tail() if processes else ''}"
            )
        time.sleep(0.25)


def run_status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus | None:
    run = instance.get_run_by_id(run_id)
    return run.status if run is not None else None


@pytest.fixture(scope="module")
def deployment(home: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The webserver, a schedule started with its last tick still due, then the daemon."""
    processes = Processes(tmp_path_factory.mktemp("logs"))
    try:
        port = free_port()
        processes.start(
            "webserver", str(BIN / "dagster-webserver"), "-w", "workspace.yaml",
            "-h", "127.0.0.1", "-p", str(port), env=home.env,
        )  # fmt: skip
        graphql = GraphQL(port)

        def repository() -> dict[str, str] | None:
            data = graphql(
                "{ repositoriesOrError { ... on RepositoryConnection { nodes { name "
                "location { name } } } } }"
            )
            nodes = data["repositoriesOrError"].get("nodes") or []
            if not nodes:
                return None
            return {"repositoryLocationName": nodes[0]["location"]["name"],
                    "repositoryName": nodes[0]["name"]}  # fmt: skip

        found = wait_for("the webserver's code location", repository, READY_TIMEOUT_S, processes)
        started = graphql(
            """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector:
                 $selector) { __typename ... on PythonError { message } } }""",
            selector={**found, "scheduleName": SCHEDULE},
        )
        assert started["startSchedule"]["__typename"] == "ScheduleStateResult", started
        # Back-date the schedule's start to just before its last cron time, so that the
        # daemon's first iteration has exactly one tick due.
        tick_at = last_cron_time(datetime.now(UTC))
        with home.instance() as instance:
            (state,) = [
                s
                for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
                if s.name == SCHEDULE
            ]
            data = state.instigator_data
            assert isinstance(data, ScheduleInstigatorData)
            instance.update_instigator_state(
                state.with_data(
                    ScheduleInstigatorData(data.cron_schedule, tick_at.timestamp() - 60)
                )
            )
        processes.start(
            "daemon", str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml", env=home.env
        )
        yield Deployment(home, graphql, found, tick_at, processes)
    finally:
        processes.stop()


def test_backfill_runs_on_the_postgres_instance(home: Home) -> None:
    args = ["--asset", "bars_1min", "--start", "2025-11-24", "--end", "2025-11-25",
            "--universe", home.env["IB_PIPELINE_UNIVERSE"],
            "--warehouse", home.env["IB_PIPELINE_WAREHOUSE"]]  # fmt: skip
    result = CliRunner().invoke(backfill, args, env={"COLUMNS": "160"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with home.instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        (run,) = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        assert run.tags["dagster/asset_partition_range_start"] == "2025-11-24"
        assert run.tags["dagster/asset_partition_range_end"] == "2025-11-25"
        materialized = instance.fetch_materializations(dg.AssetKey("bars_1min"), limit=10)
        assert {r.partition_key for r in materialized.records} == {"2025-11-24", "2025-11-25"}


def ticks(deployment: Deployment, kind: str, name: str) -> list[dict[str, Any]]:
    field, selector, state = {
        "schedule": ("scheduleOrError", "ScheduleSelector", "scheduleState"),
        "sensor": ("sensorOrError", "SensorSelector", "sensorState"),
    }[kind]
    data = deployment.graphql(
        f"""query($selector: {selector}!) {{ {field}({kind}Selector: $selector) {{
             ... on {kind.capitalize()} {{ {state} {{ ticks(limit: 10) {{
             status skipReason runIds timestamp error {{ message }} }} }} }} }} }}""",
        selector={**deployment.repository, f"{kind}Name": name},
    )
    found: list[dict[str, Any]] = data[field][state]["ticks"]
    return found


def finished(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``found``, or nothing while its newest tick is still being evaluated."""
    return found if found and found[0]["status"] != "STARTED" else []


def test_the_daemon_evaluates_a_schedule_tick_and_runs_its_request(deployment: Deployment) -> None:
    (tick,) = wait_for(
        "a finished portfolio_schedule tick",
        lambda: finished(ticks(deployment, "schedule", SCHEDULE)),
        READY_TIMEOUT_S,
        deployment.processes,
    )
    assert tick["timestamp"] == pytest.approx(deployment.schedule_tick_at.timestamp())
    if tick["status"] == "SKIPPED":  # the last cron time fell on a market holiday
        assert "is not a trading day" in tick["skipReason"], tick
        return
    assert tick["status"] == "SUCCESS", tick
    (run_id,) = tick["runIds"]
    with deployment.home.instance() as instance:
        wait_for(
            "the scheduled run to succeed",
            lambda: run_status(instance, run_id) == dg.DagsterRunStatus.SUCCESS,
            RUN_TIMEOUT_S,
            deployment.processes,
        )


def test_the_daemon_evaluates_the_gateway_sensor(deployment: Deployment) -> None:
    found = wait_for(
        "a finished gateway_sensor tick",
        lambda: finished(ticks(deployment, "sensor", "gateway_sensor")),
        READY_TIMEOUT_S,
        deployment.processes,
    )
    assert found[0]["status"] == "SKIPPED", found
    assert found[0]["skipReason"].startswith("GATEWAY OK: "), found
    assert deployment.home.sim.base_url in found[0]["skipReason"]


def test_runs_submitted_at_once_run_one_after_the_other(deployment: Deployment) -> None:
    first = deployment.submit("contracts")
    second = deployment.submit("contracts")
    seen: set[tuple[str, str]] = set()
    with deployment.home.instance() as instance:

        def both_done() -> bool:
            statuses = (run_status(instance, first), run_status(instance, second))
            seen.add((str(statuses[0]), str(statuses[1])))
            running = [s for s in statuses if s == dg.DagsterRunStatus.STARTED]
            assert len(running) <= 1, f"two runs at once: {statuses}"
            return all(s == dg.DagsterRunStatus.SUCCESS for s in statuses)

        wait_for("both runs to succeed", both_done, 2 * RUN_TIMEOUT_S, deployment.processes)
        records = {
            r.dagster_run.run_id: r
            for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=[first, second]))
        }
    spans = sorted((records[r].start_time or 0.0, records[r].end_time or 0.0) for r in records)
    assert spans[0][1] <= spans[1][0], f"the runs overlapped: {spans}; statuses seen: {seen}"


def test_a_killed_run_is_marked_failed_by_run_monitoring(deployment: Deployment) -> None:
    slow = {"resources": {"ibkr": {"config": {"base_url": deployment.home.slow_sim.base_url}}}}
    run_id = deployment.submit("contracts", run_config=slow)
    with deployment.home.instance() as instance:
        wait_for(
            "the slow run to start",
            lambda: run_status(instance, run_id) == dg.DagsterRunStatus.STARTED,
            RUN_TIMEOUT_S,
            deployment.processes,
        )
        run = instance.get_run_by_id(run_id)
        assert run is not None and PID_TAG not in run.tags
        worker = wait_for("the run worker's pid", lambda: run_worker_process(instance, run), 30.0)
        pid = worker[0]
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        # The whole process tree that ran it dies at once (an OOM kill, kill -9 of `dagster`):
        # the code server that would notice its child's death goes with it.
        for victim in (parent, pid):
            os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            "run monitoring to fail the killed run",
            lambda: run_status(instance, run_id) == dg.DagsterRunStatus.FAILURE,
            30.0,
            deployment.processes,
        )
        took = time.monotonic() - killed
        failure = [
            e.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        ]
    assert any("no longer exists" in message for message in failure), failure
    assert took < 15, took
