"""Fixtures of the Dagster end-to-end tests: the real definitions of a small universe, with
resources pointed at the ``sim`` fixture (over HTTP) and a temporary warehouse.

The simulator's clock is pinned inside the session of Tuesday 2024-11-26 (tests/conftest.py);
the loader shares that clock, so "now" agrees on both sides of the HTTP connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dagster_support import SMALL_UNIVERSE, Pipeline

from assets.definitions import build_definitions
from assets.resources import IbkrClientResource, WarehouseResource
from ib_pipeline.universe import parse_universe

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., Pipeline]:
    """``make_pipeline(sim, **universe_changes)``: definitions of SMALL_UNIVERSE (changed).
    ``resources=`` replaces resources by name (e.g. an ``ibkr`` with a short timeout)."""

    def factory(
        sim: Simulator, *, resources: Mapping[str, Any] | None = None, **changes: Any
    ) -> Pipeline:
        universe = parse_universe({**SMALL_UNIVERSE, **changes}, source="small-universe")
        root = tmp_path / "warehouse"
        chosen = {
            "ibkr": IbkrClientResource(base_url=sim.base_url, keepalive_interval_s=None),
            "warehouse": WarehouseResource(root=str(root)),
            "clock": sim.clock,
            **(resources or {}),
        }
        return Pipeline(sim, universe, build_definitions(universe, resources=chosen), root)

    return factory


@pytest.fixture
def pipeline(sim: Simulator, make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline(sim)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the fault table the fault-matrix tests recorded (tests/e2e/test_prove_faults.py),
    so that ``make test`` prints it; it is also written to reports/fault_matrix.md."""
    from prove_fault_support import MATRIX, REPORT_PATH, render_matrix  # noqa: PLC0415

    if not MATRIX:
        return
    terminalreporter.write_sep("=", f"fault matrix ({REPORT_PATH.parent.name}/{REPORT_PATH.name})")
    for line in render_matrix(list(MATRIX.values())).splitlines():
        terminalreporter.write_line(line)
