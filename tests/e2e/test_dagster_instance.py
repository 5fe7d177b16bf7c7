"""The instance a command opens (`assets.instance`): first runs of several processes on one fresh
sqlite instance all succeed (issue 10 item 8), and an interrupted command's run ends CANCELED
instead of staying STARTED (item 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

pytestmark = [pytest.mark.slow(40), pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]

CHILD = """\
import sys, time
from pathlib import Path
import dagster as dg
from assets.instance import cancel_runs_on_interrupt, open_instance

@dg.op
def work() -> int:
    if sys.argv[2] == "slow":
        Path(sys.argv[1], "started").write_text("")
        time.sleep(60)
    return 1

@dg.job
def tiny_job() -> None:
    work()

go = Path(sys.argv[1], "go")
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.01)
with open_instance(False) as instance, cancel_runs_on_interrupt(instance) as tags:
    ok = tiny_job.execute_in_process(instance=instance, tags=tags).success
sys.exit(0 if ok else 1)
"""


def instance_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\ntelemetry:\n  enabled: false\n"
    )
    (tmp_path / "child.py").write_text(CHILD)
    return home


def start_child(tmp_path: Path, home: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path), mode],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_first_runs_of_three_processes_on_a_fresh_sqlite_instance_succeed(tmp_path: Path) -> None:
    home = instance_home(tmp_path)
    children = [start_child(tmp_path, home, "fast") for _ in range(3)]
    time.sleep(0.5)  # not for correctness: the children wait for "go" after their imports
    (tmp_path / "go").write_text("")
    outputs = [child.communicate(timeout=120)[0] for child in children]
    for child, output in zip(children, outputs, strict=True):
        assert child.returncode == 0, output
        for symptom in ("alembic", "already exists", "UNIQUE constraint", "Traceback"):
            assert symptom not in output, output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    # and the instance stays usable: a fourth run succeeds
    (tmp_path / "go").write_text("")
    last = start_child(tmp_path, home, "fast")
    assert last.wait(timeout=120) == 0, last.communicate()[0]


@pytest.mark.timing
def test_a_terminated_command_leaves_its_run_canceled_not_started(tmp_path: Path) -> None:
    home = instance_home(tmp_path)
    (tmp_path / "go").write_text("")
    child = start_child(tmp_path, home, "slow")
    deadline = time.monotonic() + 90
    while not (tmp_path / "started").exists():
        assert child.poll() is None, child.communicate()[0]
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    output = child.communicate(timeout=60)[0]
    assert child.returncode != 0, output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE), output
