"""The research notebook runs top to bottom against a warehouse the real definitions loaded,
and its answers agree with the simulator's ground truth. (The code cells are executed in one
namespace, as a kernel would; no Jupyter is needed.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagster_support import Pipeline

from assets.definitions import run_assets

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "research.ipynb"
AAPL = 265598


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def test_the_research_notebook_runs_on_a_loaded_warehouse(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_assets(pipeline.defs, ["contracts"]).success
    assert run_assets(
        pipeline.defs, ["bars_1min"], partition_range=("2024-11-22", "2024-11-25")
    ).success
    assert run_assets(pipeline.defs, ["accounts", "positions", "account_summary"]).success
    monkeypatch.setenv("IB_PIPELINE_WAREHOUSE", str(pipeline.root))

    namespace: dict[str, Any] = {}
    for index, source in enumerate(code_cells()):
        try:
            exec(compile(source, f"{NOTEBOOK.name}[{index}]", "exec"), namespace)
        except Exception as error:  # the failing cell's source makes the report readable
            pytest.fail(f"cell {index} failed: {error!r}\n{source}")

    daily = namespace["daily"]
    aapl = daily[daily["symbol"] == "AAPL"].set_index("session_date")
    assert len(aapl) == 2  # Friday 2024-11-22 and Monday 2024-11-25
    first_session = pipeline.sim.market.session(AAPL, aapl.index[0].date())
    truth = pipeline.sim.truth.history_bars(AAPL, "1d", *first_session.bounds(False))
    assert aapl["close"].iloc[0] == pytest.approx(truth.column("close")[0].as_py())
    assert aapl["volume"].iloc[0] == pytest.approx(truth.column("volume")[0].as_py())
    assert set(namespace["portfolio"]["account"]) == set(pipeline.sim.truth.accounts)
    assert namespace["quarantined"].empty
