"""A warehouse loaded by the demo (the real Dagster definitions on the simulator, seed 42,
clock pinned after the close of 2025-11-28), shared by this folder's tests, and a simulator
built with the same seed and clock for its ground truth (not started: truth needs no server)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from assets.demo import DEMO_NOW, DEMO_SEED, run_demo
from ib_pipeline.research import Warehouse
from ib_pipeline.simulator import Simulator, SimulatorConfig


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("research") / "warehouse"
    assert run_demo(str(root), ephemeral=True, console=Console(file=io.StringIO())) == 0
    return root


@pytest.fixture(scope="session")
def truth_sim() -> Simulator:
    return Simulator(SimulatorConfig(seed=DEMO_SEED, now=DEMO_NOW, session_timeout_s=None))


@pytest.fixture
def wh(demo_root: Path) -> Iterator[Warehouse]:
    with Warehouse(demo_root) as opened:
        yield opened
