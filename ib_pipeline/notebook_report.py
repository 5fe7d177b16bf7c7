"""Run the research notebook with a real kernel and render it to HTML in the warehouse.

Why: ``make demo`` ends with a report a newcomer can open in a browser
(``<warehouse>/reports/research.html``), and the suite runs the same notebook the same way.
The kernel starts in ``notebooks/`` (as Jupyter starts kernels) with ``IB_PIPELINE_WAREHOUSE``
set to the warehouse asked for, and nothing else set up.

Needs the ``research`` extra (nbclient, nbconvert, ipykernel); imported on call, so importing
this module costs nothing. ``python -m ib_pipeline.notebook_report [WAREHOUSE]`` prints where
the report went.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ib_pipeline.settings import WAREHOUSE_ENV, WarehouseSettings
from ib_pipeline.storage.fs import open_root

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "research.ipynb"
REPORT = "reports/research.html"
"""Where the rendered notebook goes, relative to the warehouse root."""


def execute_notebook(
    warehouse: str | os.PathLike[str] | None = None,
    notebook: Path = NOTEBOOK,
    *,
    timeout_s: int = 600,
) -> Any:
    """Execute ``notebook`` top to bottom in a fresh ``python3`` kernel (this interpreter's)
    started in the notebook's folder, on ``warehouse`` (default: the settings' root); returns
    the executed ``NotebookNode``. A failing cell raises nbclient's ``CellExecutionError``."""
    import nbformat  # noqa: PLC0415 (research extra, slow)
    from nbclient import NotebookClient  # noqa: PLC0415

    root = str(warehouse) if warehouse is not None else WarehouseSettings.from_env().root
    if "://" not in root:
        root = str(Path(root).resolve())  # the kernel runs in notebooks/, not here
    node = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        node,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    client.execute(env={**os.environ, WAREHOUSE_ENV: root})
    return node


def render_html(
    warehouse: str | os.PathLike[str] | None = None,
    notebook: Path = NOTEBOOK,
    *,
    executed: Any = None,
) -> str:
    """Execute the notebook on ``warehouse`` and write it as HTML to
    ``<warehouse>/reports/research.html`` (atomically; object-store roots too). Returns the
    report's path or URL. ``executed``: the node `execute_notebook` returned for this
    warehouse, rendered as it is (a caller that already ran the kernel, about 6 CPU seconds,
    need not run it again)."""
    from nbconvert import HTMLExporter  # noqa: PLC0415 (research extra, slow)

    root = str(warehouse) if warehouse is not None else WarehouseSettings.from_env().root
    if executed is None:
        executed = execute_notebook(root, notebook)
    exporter = HTMLExporter()  # type: ignore[no-untyped-call]
    html, _ = exporter.from_notebook_node(executed)
    opened = open_root(root)
    opened.write_atomic(REPORT, html.encode("utf-8"))
    return opened.full(REPORT)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(render_html(args[0] if args else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
