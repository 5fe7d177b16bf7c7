"""The research API over the demo warehouse (``demo_root`` and ``truth_sim``: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ib_pipeline.research import Warehouse


@pytest.fixture
def wh(demo_root: Path) -> Iterator[Warehouse]:
    with Warehouse(demo_root) as opened:
        yield opened
