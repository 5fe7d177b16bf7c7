"""`bench.query_latency` end to end in a small configuration, and its timing of queries.

- ``python -m bench.query_latency --conids 5 --sessions 5`` prints one JSON object on its last
  line with every figure `bench.goals` reads for it, the one-day query's one-file floor among
  them; too few sessions for its queries is a usage error naming the option.
- `timed_together` runs every query ``repeat`` times and reports each one's own row count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from bench import query_latency
from bench.goals import GOALS

ROOT = Path(query_latency.__file__).resolve().parent.parent


def run(*options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench.query_latency", *options]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_small_configuration_prints_every_figure() -> None:
    done = run("--conids", "5", "--sessions", "5", "--repeat", "2", "--rounds", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["rows"] == 5 * 5 * 390 and figures["files"] == 5
    for goal in GOALS["query_latency"]:
        for key in [goal.key] + ([goal.baseline.key] if goal.baseline else []):
            assert isinstance(figures[key], int | float), key
    assert figures["vwap_one_day_one_file_ms"] > 0
    assert "one file" in done.stdout and "each other listed file" in done.stdout


def test_too_few_sessions_is_a_usage_error_naming_the_option() -> None:
    done = run("--sessions", "3")
    assert done.returncode == 2
    assert "--sessions must be at least 5" in done.stderr
    assert "Traceback" not in done.stderr


def test_timed_together_times_every_query_and_counts_its_own_rows() -> None:
    con = duckdb.connect()
    sqls = ["SELECT * FROM range(3)", "SELECT * FROM range(5)", "SELECT * FROM range(7)"]
    timings = query_latency.timed_together(con, sqls, repeat=7, rounds=4)
    assert [rows for _, rows in timings] == [3, 5, 7]
    assert all(seconds > 0 for seconds, _ in timings)
