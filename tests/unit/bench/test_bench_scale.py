"""`bench.scale` end to end in its small configuration, and its parts that decide the figures.

- ``python -m bench.scale --conids 20 --sessions 5`` lands, runs the floor, the replay and the
  queries (each phase in its own process) and prints one JSON object on its last line with
  every figure `bench.goals` reads for it, ``rows == conids x sessions x 390``.
- The sessions are full-length (390 regular one-minute bars each, early closes skipped).
- The fast landing writes exactly the files `RawZone.land` writes (same paths, same bytes).
- The memory sampler sees a process's children.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import scale
from bench.goals import GOALS
from ib_pipeline.calendars import bar_starts
from ib_pipeline.raw_zone import RawZone

ROOT = Path(scale.__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_small_configuration_prints_every_figure() -> None:
    command = [sys.executable, "-m", "bench.scale", "--conids", "20", "--sessions", "5",
               "--workers", "2", "--repeat", "1", "--rounds", "1"]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["rows"] == 20 * 5 * 390
    for goal in GOALS["scale"]:
        keys = [goal.key] + ([goal.baseline.key] if goal.baseline else [])
        for key in keys:
            assert isinstance(figures[key], int | float), key
    for key in ("replay_rows_per_s", "floor_rows_per_s", "replay_vs_floor",
                "replay_peak_rss_mb", "query_peak_rss_mb", "replay_peak_pss_mb"):  # fmt: skip
        assert figures[key] > 0, key
    assert figures["replay_workers"] == 2 and figures["floor_processes"] == 2
    for name in ("daily_ohlcv_all_symbols", "vwap_one_day", "one_symbol_last_5_days"):
        assert figures[f"{name}_ms"] > 0 and figures[f"{name}_native_ms"] > 0
        assert figures[f"{name}_ratio"] > 0
    assert figures["responses"] == 100 and figures["partitions"] == 5
    assert figures["replay_cpu_s"] > 0 and figures["floor_cpu_s"] > 0


def test_sessions_are_full_length() -> None:
    sessions = scale.full_sessions(252)
    assert len(sessions) == 252 and len({s.date for s in sessions}) == 252
    assert sessions[-1].date == scale.LAST_SESSION
    assert all(len(bar_starts(s, scale.MINUTE, False)) == 390 for s in sessions)
    assert [s.date for s in sessions] == sorted(s.date for s in sessions)


def test_the_fast_landing_writes_what_the_raw_zone_writes(tmp_path: Path) -> None:
    session = scale.full_sessions(1)[0]
    fast = tmp_path / "fast"
    bars, size = scale.land_session((str(fast), 3, 0, session.date))
    assert bars == 3 * 390
    landed = sorted(p for p in fast.rglob("*.json.zst"))
    assert len(landed) == 3 and sum(p.stat().st_size for p in landed) == size

    zone = RawZone(tmp_path / "reference")
    for record in RawZone(fast).records("history"):
        zone.land(record.endpoint, record.params, record.payload, record.fetched_at)
    reference = sorted((tmp_path / "reference").rglob("*.json.zst"))
    assert [p.relative_to(tmp_path / "reference") for p in reference] == [
        p.relative_to(fast) for p in landed
    ]
    assert [p.read_bytes() for p in reference] == [p.read_bytes() for p in landed]


def test_the_sampler_sums_a_process_and_its_children() -> None:
    code = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', " \
           "'import time; time.sleep(2)']); time.sleep(2); c.wait()"  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.8)
        tree = scale._tree(parent.pid)
        assert len(tree) == 2 and tree[0] == parent.pid
        sampler = scale.TreeSampler(parent.pid)
        sampler.start()
        time.sleep(0.3)
        sampler.stop()
        assert sampler.samples >= 2
        assert sampler.peak_rss >= sum(scale._rss(p) for p in tree) * 0.5 > 0
        assert sampler.peak_pss > 0
    finally:
        parent.wait(timeout=10)
