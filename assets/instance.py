"""The Dagster instance of a command: which one it opens, how it is created safely, how a run
left behind by a dead process stops counting as running.

- `open_instance` opens the instance of ``DAGSTER_HOME``, else of ``./dagster.yaml``, else a
  throw-away one. Opening a fresh sqlite instance creates and stamps its databases (alembic);
  two processes doing that at once leave two alembic heads or ``table run_tags already exists``,
  so the first opening is serialised across processes by a file lock in the instance folder.
- `run_owner_tags` and `cancel_runs_on_interrupt`: a command that runs in-process (``ib-pipeline
  backfill``) tags its runs with its process, and marks them CANCELED when it is interrupted
  (Ctrl-C, SIGTERM), instead of leaving them STARTED forever.
- `ProcessRunLauncher`: Dagster's default launcher (a run worker process per run, started by the
  code server) that also answers run monitoring's health check: a STARTED run whose worker
  process no longer exists is reported FAILED by the daemon within one monitoring interval, so
  it stops holding the run queue (``deploy/postgres/dagster.yaml``).

Never fetches data; never starts runs.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from filelock import FileLock

INSTANCE_CONFIG = "dagster.yaml"
"""The embedded instance's configuration, read from the working directory (the repository)."""
INSTANCE_STORAGE = ".dagster_home"
"""Where ``./dagster.yaml`` keeps its storage (and where its creation lock lives)."""
LOCK_FILE = ".ib-pipeline-instance.lock"
LOCK_TIMEOUT_S = 120.0
"""How long an opening waits for another process to finish creating the same instance."""

PID_TAG = "ib_pipeline/pid"
HOST_TAG = "ib_pipeline/host"
INVOCATION_TAG = "ib_pipeline/invocation"
"""Tags naming the process that runs a run in-process (`run_owner_tags`)."""

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class InstanceLockTimeoutError(RuntimeError):
    """Another process held the instance's creation lock for longer than `LOCK_TIMEOUT_S`."""


@contextmanager
def instance_creation_lock(folder: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the cross-process lock on the creation of the instance kept in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_FILE), timeout=timeout_s)
    try:
        lock.acquire()
    except TimeoutError:
        raise InstanceLockTimeoutError(
            f"another process has been creating the Dagster instance in {folder} for more than "
            f"{timeout_s:.0f} s; remove {folder / LOCK_FILE} if no such process runs"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _created(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """Touch every storage, so that lazily built ones are created (and migrated) under the lock."""
    instance.get_run_records(limit=1)
    instance.all_instigator_state()
    instance.get_asset_keys(limit=1)
    return instance


@contextmanager
def open_instance(ephemeral: bool) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance runs are recorded in (module doc)."""
    if ephemeral:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    home = os.environ.get("DAGSTER_HOME")
    if home:
        with instance_creation_lock(Path(home)):
            instance = _created(dg.DagsterInstance.get())
    elif Path(INSTANCE_CONFIG).is_file():
        with instance_creation_lock(Path(INSTANCE_STORAGE)):
            instance = _created(dg.DagsterInstance.from_config("."))
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    with instance:
        yield instance


def run_owner_tags(invocation: str | None = None) -> dict[str, str]:
    """Tags for a run executed in this process: its pid and host (so that run monitoring can
    tell whether the process still exists) and an id of this invocation of a command."""
    return {
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
        INVOCATION_TAG: invocation if invocation is not None else uuid.uuid4().hex,
    }


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as an interrupt (see `cancel_runs_on_interrupt`)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


def cancel_unfinished_runs(instance: dg.DagsterInstance, invocation: str, reason: str) -> list[str]:
    """Mark every unfinished run tagged with ``invocation`` CANCELED; their run ids."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={INVOCATION_TAG: invocation}, statuses=UNFINISHED)
    )
    for run in runs:
        instance.report_run_canceled(run, message=reason)
    return [run.run_id for run in runs]


@contextmanager
def cancel_runs_on_interrupt(instance: dg.DagsterInstance) -> Iterator[dict[str, str]]:
    """Yield the tags to give the runs started inside; if the block is interrupted (Ctrl-C, or
    SIGTERM, which is turned into a `Terminated` interrupt while inside), every run with those
    tags that is not finished is marked CANCELED before the interrupt goes on.

    SIGKILL cannot be caught: the runs of a killed process are failed by run monitoring
    (`ProcessRunLauncher`, via the pid tag) on an instance whose daemon runs it."""
    tags = run_owner_tags()
    previous: Any = None
    in_main_thread = _is_main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield tags
    except KeyboardInterrupt as interrupt:
        what = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
        cancel_unfinished_runs(
            instance, tags[INVOCATION_TAG], f"the command that ran this run was {what}"
        )
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _process_alive(pid: int, not_started_after: float | None) -> bool:
    """Whether process ``pid`` exists on this host, is not a zombie, and (when Linux says when
    it started) started no later than ``not_started_after`` (a reused pid is another process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    found = _linux_process(pid)
    if found is None:
        return True
    state, started = found
    if state == "Z":
        return False
    return not_started_after is None or started <= not_started_after + 1.0


def _linux_process(pid: int) -> tuple[str, float] | None:
    """The state letter and start time (epoch seconds) of process ``pid`` from /proc; None where
    there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        fields = stat[stat.rindex(")") + 2 :].split()
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def run_worker_process(
    instance: dg.DagsterInstance, run: dg.DagsterRun
) -> tuple[int, str | None, float | None] | None:
    """The (pid, host, recorded at) of the process executing ``run``: from the owner tags of an
    in-process run, else from the run worker's "Started process" event; None if unknown."""
    if PID_TAG in run.tags:
        return int(run.tags[PID_TAG]), run.tags.get(HOST_TAG), None
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or not entry.message.startswith("Started process for run"):
            continue
        data = event.engine_event_data
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None:
            return int(str(pid.value)), None, entry.timestamp
    return None


class ProcessRunLauncher(DefaultRunLauncher):
    """Dagster's `DefaultRunLauncher`, plus the run worker health check of run monitoring.

    A STARTED run is healthy while its process exists on this host: the run worker whose pid
    the run's "Started process" event records, or the command process named by the run's
    `PID_TAG`. A run whose process is gone is reported FAILED by the monitoring daemon. A run
    whose process is unknown or on another host is taken as running (``max_runtime_seconds``
    bounds it, if set). Assumes the daemon runs on the host of the code server, as the
    default launcher does."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        found = run_worker_process(self._instance, run)
        if found is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker process not known")
        pid, host, recorded_at = found
        if host is not None and host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} runs on {host}")
        if _process_alive(pid, recorded_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} is running")
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run's process {pid} no longer exists (killed or crashed)"
        )
