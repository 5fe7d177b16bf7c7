"""How long the ``ib-pipeline`` command takes to answer: ``--help`` and ``query "select 1"``.

Why: a command line that takes seconds to print its help is a command line people stop using.
Each command runs as a fresh process (as a user types it), several times; the figures are the
medians, with the bare interpreter's start-up (``python -c pass``) measured in the same run as
the baseline, since absolute times change from one machine to the next.

The query runs against a small warehouse made in a temporary folder (one contracts file), so
it measures start-up, the DuckDB connection and the catalog, not a scan.

Prints one JSON object on its last line: ``help_s``, ``query_s``, ``python_s`` (medians in
seconds) and their ratios.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 7
CLI = [sys.executable, "-m", "ib_pipeline.cli"]


def median_seconds(command: list[str], runs: int = RUNS) -> float:
    """Median wall time of ``command`` run ``runs`` times (after one warm-up run)."""
    subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def small_warehouse(folder: Path) -> Path:
    """A warehouse holding one contract (enough for the catalog and the views)."""
    import pyarrow as pa  # noqa: PLC0415

    from ib_pipeline.ibkr.tables import CONTRACTS  # noqa: PLC0415
    from ib_pipeline.storage.store import Store  # noqa: PLC0415

    root = folder / "warehouse"
    contracts = pa.Table.from_pylist(
        [{"conid": 265598, "symbol": "AAPL", "sec_type": "STK", "exchanges": "NASDAQ"}],
        schema=CONTRACTS,
    )
    Store(root).write("contracts", contracts, source={"endpoint": "bench"}, run_id="bench")
    return root


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ib-cli-bench-") as folder:
        root = small_warehouse(Path(folder))
        python_s = median_seconds([sys.executable, "-c", "pass"])
        help_s = median_seconds([*CLI, "--help"])
        query_s = median_seconds([*CLI, "query", "select 1", "--warehouse", str(root)])
    figures = {
        "runs": RUNS,
        "python_s": round(python_s, 4),
        "help_s": round(help_s, 4),
        "query_s": round(query_s, 4),
        "help_vs_python": round(help_s / python_s, 2),
        "query_vs_python": round(query_s / python_s, 2),
    }
    print(f"ib-pipeline --help: {help_s:.3f} s; query 'select 1': {query_s:.3f} s "
          f"(python -c pass: {python_s:.3f} s)")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
