"""The catalog file in the DuckDB command line a user installs from PyPI (``duckdb-cli``), run
as a real process: from another folder, from inside the warehouse folder, and on a copy of the
whole warehouse moved elsewhere (the original deleted, so nothing can read it by mistake)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ib_pipeline.warehouse import CATALOG_FILE, connect, duckdb_cli_command

DUCKDB_CLI = Path(sys.executable).parent / "duckdb"
QUERY = "SELECT count(*) FROM bars; SELECT count(*) FROM daily_ohlcv WHERE symbol = 'AAPL';\n"


def cli_counts(command: str, cwd: Path) -> list[int]:
    """Run ``command`` (a shell line starting with ``duckdb``) with `QUERY` on standard input;
    the numbers of its result tables."""
    line = command.replace("duckdb", str(DUCKDB_CLI), 1)
    done = subprocess.run(
        ["bash", "-c", f"{line} -csv -noheader"], cwd=cwd, input=QUERY, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [int(value) for value in done.stdout.split()]


def test_the_cli_opens_the_catalog_from_anywhere_and_after_a_move(
    demo_root: Path, tmp_path: Path
) -> None:
    con = connect(demo_root)
    expected = [
        con.execute("SELECT count(*) FROM bars").fetchall()[0][0],
        con.execute("SELECT count(*) FROM daily_ohlcv WHERE symbol = 'AAPL'").fetchall()[0][0],
    ]
    assert expected[1] == 4  # AAPL's sessions of Thanksgiving week, from the 1-minute bars
    assert expected[0] > 0
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    assert cli_counts(duckdb_cli_command(demo_root), elsewhere) == expected
    assert cli_counts(f"duckdb {CATALOG_FILE}", demo_root) == expected

    copy = tmp_path / "copy" / "renamed-warehouse"
    shutil.copytree(demo_root, copy)
    moved = tmp_path / "moved" / "again"
    moved.parent.mkdir()
    copy.rename(moved)
    assert cli_counts(duckdb_cli_command(moved), elsewhere) == expected
    assert cli_counts(f"duckdb {CATALOG_FILE}", moved) == expected
    # without the folder (neither cd nor file_search_path) the CLI fails loudly, naming a file
    done = subprocess.run(
        [str(DUCKDB_CLI), str(moved / CATALOG_FILE), "-c", "SELECT count(*) FROM bars"],
        cwd=elsewhere, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "bars/" in done.stderr
