"""The research notebook runs top to bottom in a real kernel (nbclient, kernel started in
notebooks/ as Jupyter starts it, the warehouse named by IB_PIPELINE_WAREHOUSE only) on a
warehouse the demo loaded; every plot cell draws a figure, and the numbers it prints agree
with the simulator's ground truth. The same run renders the HTML report."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from assets.demo import DEMO_NOW, DEMO_SEED
from ib_pipeline.notebook_report import REPORT, execute_notebook, render_html
from ib_pipeline.simulator import Simulator, SimulatorConfig

AAPL = 265598
FIGURES = 5  # price+VWAP, realised volatility, correlation, portfolio value, marked positions

# the kernel runs once (~10 s); the shared demo warehouse may still be loading (~15 s)
pytestmark = [pytest.mark.slow(25), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def warehouse(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo's warehouse (the session's `demo_root`, loaded once per test run):
    the report is written into the warehouse, and the shared one is read-only. Loading a
    demo of its own would cost a whole demo run (about 15 CPU seconds) for the same data."""
    root = tmp_path_factory.mktemp("notebook") / "warehouse"
    shutil.copytree(demo_root, root)
    return root


def outputs(node: Any) -> tuple[str, int]:
    text, figures = [], 0
    for cell in node.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stdout":
                text.append(output.text)
            if "image/png" in output.get("data", {}):
                figures += 1
    return "".join(text), figures


@pytest.fixture(scope="module")
def executed(warehouse: Path) -> Any:
    """The notebook executed once on ``warehouse``: both tests look at this one run."""
    return execute_notebook(warehouse)


def test_the_notebook_runs_in_a_kernel_and_agrees_with_the_truth(executed: Any) -> None:
    printed, figures = outputs(executed)
    assert figures == FIGURES
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []

    truth = Simulator(SimulatorConfig(seed=DEMO_SEED, now=DEMO_NOW, session_timeout_s=None))
    days = re.findall(r"AAPL (\d{4}-\d\d-\d\d): open ([\d.]+) close ([\d.]+) volume (\d+)", printed)
    assert [d[0] for d in days] == ["2025-11-24", "2025-11-25", "2025-11-26", "2025-11-28"]
    for day, opened, closed, volume in days:
        session = truth.market.session(AAPL, date.fromisoformat(day))
        bar = truth.truth.history_bars(AAPL, "1d", *session.bounds(False)).to_pylist()[0]
        assert float(opened) == pytest.approx(bar["open"], abs=0.005)
        assert float(closed) == pytest.approx(bar["close"], abs=0.005)
        assert float(volume) == pytest.approx(bar["volume"])
    values = dict(re.findall(r"net liquidation (\S+) at [^:]+:\d\dZ: ([\d.]+)", printed))
    assert set(values) == set(truth.truth.accounts)
    for account, value in values.items():
        expected = truth.truth.summary(account)["netliquidation"]
        assert float(value) == pytest.approx(expected, abs=0.005)


def test_the_report_is_rendered_into_the_warehouse(warehouse: Path, executed: Any) -> None:
    written = render_html(warehouse, executed=executed)
    assert Path(written) == warehouse / REPORT
    html = Path(written).read_text(encoding="utf-8")
    assert html.count("image/png") >= FIGURES
    assert "Price and VWAP of one instrument" in html
