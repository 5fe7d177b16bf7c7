"""Every Dagster line lives under ``assets/``: importing any ``ib_pipeline`` module other than the
thin entry ``ib_pipeline.definitions`` never imports dagster (nor the ``assets`` package), and
nothing builds definitions at import time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_EVERY_MODULE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import ib_pipeline
    names = sorted(
        m.name for m in pkgutil.walk_packages(ib_pipeline.__path__, "ib_pipeline.")
        if m.name != "ib_pipeline.definitions"
    )
    for name in names:
        importlib.import_module(name)
        heavy = [m for m in ("dagster", "assets") if m in sys.modules]
        if heavy:
            print(f"{name} imports {', '.join(heavy)}")
            sys.exit(1)
    print(f"{len(names)} modules")
    """
)


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_ib_pipeline_module_imports_dagster() -> None:
    result = run(IMPORT_EVERY_MODULE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[0]) > 20  # the walk found the package's modules


def test_a_missing_universe_breaks_no_import() -> None:
    code = "import ib_pipeline.definitions, assets.definitions, assets.demo, assets.backfill"
    result = run(code, IB_PIPELINE_UNIVERSE="/nonexistent.yaml")
    assert result.returncode == 0, result.stderr
