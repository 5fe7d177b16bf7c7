"""The package's shape: every exported name resolves, importing the errors alone loads no HTTP
stack (the exports are lazy), and no helper imports the client back (no circle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from ib_pipeline import ibkr
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import IbkrError


def test_every_export_resolves() -> None:
    from ib_pipeline.ibkr import IbkrClient as Exported  # noqa: PLC0415  (the README's import)

    assert Exported is IbkrClient
    for name in ibkr.__all__:
        assert getattr(ibkr, name) is not None, name
    assert all(issubclass(getattr(ibkr, n), IbkrError) for n in ibkr.__all__ if "Error" in n)


def test_importing_the_errors_loads_no_http_stack() -> None:
    code = "import sys, ib_pipeline.ibkr.errors; print('httpx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_only_the_facade_imports_the_client() -> None:
    """Helpers are given the callables they need (`response.Call`), never the client."""
    package = Path(ibkr.__file__).parent
    importers: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in (
                "ib_pipeline.ibkr.client",
                "ib_pipeline.ibkr.sync",
            ):
                importers.add(path.name)
    assert importers <= {"__init__.py", "sync.py"}
