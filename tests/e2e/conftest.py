"""Fixtures of the Dagster end-to-end tests: the real definitions of a small universe, with
resources pointed at the ``sim`` fixture (over HTTP) and a temporary warehouse.

The simulator's clock is pinned inside the session of Tuesday 2024-11-26 (tests/conftest.py);
the loader shares that clock, so "now" agrees on both sides of the HTTP connection.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dagster_support import SMALL_UNIVERSE, Pipeline

from assets.store_resource import WarehouseResource
from ib_pipeline.definitions import build_definitions
from ib_pipeline.resources import IbkrClientResource
from ib_pipeline.universe import parse_universe

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., Pipeline]:
    """``make_pipeline(sim, **universe_changes)``: definitions of SMALL_UNIVERSE (changed)."""

    def factory(sim: Simulator, **changes: Any) -> Pipeline:
        universe = parse_universe({**SMALL_UNIVERSE, **changes}, source="small-universe")
        root = tmp_path / "warehouse"
        resources = {
            "ibkr": IbkrClientResource(base_url=sim.base_url, keepalive_interval_s=None),
            "warehouse": WarehouseResource(root=str(root)),
            "clock": sim.clock,
        }
        return Pipeline(sim, universe, build_definitions(universe, resources=resources), root)

    return factory


@pytest.fixture
def pipeline(sim: Simulator, make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline(sim)
