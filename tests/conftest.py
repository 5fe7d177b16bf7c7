"""Project-wide fixtures: a running gateway simulator.

- ``sim``: a `Simulator` serving on 127.0.0.1 and a free port, with a FixedClock pinned inside a
  US trading session (`SIM_NOW`, Tuesday 2024-11-26 13:00 New York), the published pacing limits
  but a penalty box of 1 s (so a test that trips it recovers quickly), and no session timeout
  (tests that move the clock by hours keep their session; expiry tests ask for one).
- ``demo_root``/``truth_sim``: the demo's warehouse, loaded once per test process, and a
  simulator with the demo's seed and clock for its ground truth.
- ``make_sim(**changes)``: a factory for simulators with other settings; keyword arguments are
  `SimulatorConfig` fields overriding the ``sim`` defaults, e.g.
  ``make_sim(authenticated=False)``, ``make_sim(tls=True)``, ``make_sim(session_timeout_s=300)``,
  ``make_sim(pacing=PacingConfig(enabled=False))``, ``make_sim(faults="5xx=0.5,seed=3")``.

Every simulator a test starts is stopped after it (server, loop, thread, TLS files). The
simulator package is imported inside the fixtures, so a suite that does not use them never
loads the market.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator, SimulatorConfig

SIM_NOW = datetime(2024, 11, 26, 18, 0, tzinfo=UTC)
"""The ``sim`` fixture's clock: inside the regular session of Tuesday 2024-11-26."""

TEST_PENALTY_BOX_S = 1.0


def sim_config(**changes: Any) -> SimulatorConfig:
    """The ``sim`` fixture's configuration with ``changes`` applied. ``faults`` may be a string."""
    # Imported here so that suites which never start a simulator never load the market.
    from ib_pipeline.simulator import FaultSpec, PacingConfig, SimulatorConfig  # noqa: PLC0415

    if isinstance(changes.get("faults"), str):
        changes["faults"] = FaultSpec.parse(changes["faults"])
    base = SimulatorConfig(
        now=SIM_NOW,
        pacing=PacingConfig(penalty_box_s=TEST_PENALTY_BOX_S),
        session_timeout_s=None,
    )
    return base.with_changes(**changes)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Start simulators with `sim_config(**changes)`; all are stopped after the test."""
    from ib_pipeline.simulator import Simulator  # noqa: PLC0415  (see sim_config)

    started: list[Simulator] = []

    def factory(**changes: Any) -> Simulator:
        simulator = Simulator(sim_config(**changes))
        simulator.start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in reversed(started):
        simulator.stop()


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    """A running simulator with the default test settings (see the module docstring)."""
    return make_sim()


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A warehouse loaded by the demo (the real Dagster definitions on the simulator, seed 42,
    clock pinned after the close of 2025-11-28; unpaced: the same data in half the time, and
    the paced demo has its own test), at ``<a temp folder>/warehouse``, loaded ONCE
    per test run and shared by every test process (pytest-xdist workers take turns on a lock;
    the first loads it): tests only read it (copy it to change it)."""
    import io  # noqa: PLC0415

    from filelock import FileLock  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415

    from assets.demo import run_demo  # noqa: PLC0415 (Dagster: only for tests that need it)

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the folder every worker of this run shares
        shared = shared.parent
    root = shared / "demo" / "warehouse"
    with FileLock(str(shared / "demo.lock")):
        done = shared / "demo" / "loaded"
        if not done.exists():
            root.parent.mkdir(parents=True, exist_ok=True)
            quiet = Console(file=io.StringIO())
            assert run_demo(str(root), ephemeral=True, console=quiet, unpaced=True) == 0
            done.write_text("ok")
    return root


@pytest.fixture(scope="session")
def truth_sim() -> Simulator:
    """A simulator with the demo's seed and clock, for its ground truth (not started)."""
    from assets.demo import DEMO_NOW, DEMO_SEED  # noqa: PLC0415
    from ib_pipeline.simulator import Simulator, SimulatorConfig  # noqa: PLC0415

    return Simulator(SimulatorConfig(seed=DEMO_SEED, now=DEMO_NOW, session_timeout_s=None))


# --- the longest test files first (pytest-xdist) ----------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files of ``slow`` tests first, the longest first (``@pytest.mark.slow(S)``: S
    seconds idle, else 10), keeping the order inside each file and among the other files.

    Why: ``make test`` hands whole files to the xdist workers (``--dist loadfile
    --no-loadscope-reorder``) in this order. Started last, a file of a few long tests (the
    demo on S3, the twenty SIGKILLs) would run alone while the other workers sit idle; started
    first, it runs beside the many short files."""
    weight: dict[str, float] = {}
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            seconds = float(marker.args[0]) if marker.args else 10.0
            file = item.nodeid.split("::", 1)[0]
            weight[file] = max(weight.get(file, 0.0), seconds)
    order = {id(item): position for position, item in enumerate(items)}
    items.sort(key=lambda i: (-weight.get(i.nodeid.split("::", 1)[0], 0.0), order[id(i)]))


# --- the red team's table (tests/red_team.py) --------------------------------------------------

_RED_TEAM_OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record the outcome of every test the red team's table names (also under xdist: the
    controller receives the workers' reports)."""
    from red_team import ATTACKS  # noqa: PLC0415

    for _, test in ATTACKS:
        if not report.nodeid.startswith(test):
            continue
        failed = report.failed
        if report.when == "call" or failed:
            previous = _RED_TEAM_OUTCOMES.get(test, "held")
            _RED_TEAM_OUTCOMES[test] = "FAILED" if failed or previous == "FAILED" else "held"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the red team's table and write it to reports/red_team.md, when every test it
    names ran (a held attack, or a FAILED one, is then shown for each)."""
    from red_team import ATTACKS, REPORT_PATH, render  # noqa: PLC0415

    if len(_RED_TEAM_OUTCOMES) < len({test for _, test in ATTACKS}):
        return  # a partial run (one folder, `-m timing`) must not overwrite the whole table
    text = render(_RED_TEAM_OUTCOMES)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(text, "utf-8")
    terminalreporter.write_sep("=", f"red team ({REPORT_PATH.parent.name}/{REPORT_PATH.name})")
    for line in text.splitlines():
        terminalreporter.write_line(line)
