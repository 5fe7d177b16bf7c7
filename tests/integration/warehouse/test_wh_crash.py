"""A writer killed with SIGKILL at any point leaves a readable warehouse whose partition holds
exactly the rows from before the write or from after it, never a mix, and no file a reader
picks up; the next write cleans up and completes.

The writer is a forked child of a subprocess that imported everything once. It counts the
steps of its write that can be interrupted (each chunk of bytes written to a temporary file,
each fsync, each rename) and kills itself with SIGKILL at step K; K is drawn from a seeded
generator over all the steps a complete write takes (counted by a first, unkilled run), so the
ten kills are the same on every run.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.clock import FixedClock
from ib_pipeline.storage.manifest import STATUS_OK, STATUS_STALE
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import connect

NOW = datetime(2024, 11, 28, 12, tzinfo=UTC)
AAPL, MSFT, IBM = 265598, 272093, 8314
HOURS = {AAPL: US_EQUITY, MSFT: US_EQUITY, IBM: US_EQUITY}
KILLS = 10
SEED = 20241126
PARTITION = "bar_size=1min/session_date=2024-11-25"

WRITER = r"""
import os, signal, sys
from datetime import UTC, datetime
import pyarrow.parquet as pq
import ib_pipeline.storage.fs as fsmod
from ib_pipeline.clock import FixedClock
from ib_pipeline.calendars import US_EQUITY
from ib_pipeline.storage.store import Store

# A zygote: everything is imported once, then each request (root, kill step, batch file) is
# served by a forked child that writes and is killed at that step. Nothing here has started a
# thread before the fork (no DuckDB connection, no Arrow computation).
real_replace, real_fsync, real_open = os.replace, os.fsync, open


def write(root, kill_at, batch_file):
    steps = 0

    def step():
        nonlocal steps
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def replace(*args, **kwargs):
        step()
        return real_replace(*args, **kwargs)

    def fsync(fd):
        step()
        return real_fsync(fd)

    class HalfThenKill:
        # a file whose write() can be cut in the middle: half the bytes land, then the kill
        def __init__(self, handle):
            self._handle = handle
        def write(self, data):
            half = len(data) // 2
            self._handle.write(data[:half])
            self._handle.flush()
            step()
            return self._handle.write(data[half:]) + half
        def __getattr__(self, name):
            return getattr(self._handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self._handle.__exit__(*exc)

    def killing_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return HalfThenKill(handle) if "w" in mode else handle

    os.replace, os.fsync, fsmod.open = replace, fsync, killing_open
    table = pq.read_table(batch_file)
    hours = {int(c): US_EQUITY for c in table.column("conid").unique().to_pylist()}
    store = Store(root, clock=FixedClock(datetime(2024, 11, 28, 12, tzinfo=UTC)))
    store.write("bars", table, source={"endpoint": "history", "run": "child"}, run_id="child",
                hours=hours)
    return steps


for line in sys.stdin:
    root, kill_at, batch_file = line.split("\t")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.write(write_end, str(write(root, int(kill_at), batch_file.strip())).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    steps = os.read(read_end, 64).decode() or "-"
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    print(f"{signum}\t{steps}", flush=True)
"""


def rows_of(store: Store) -> list[tuple[object, ...]]:
    """What a reader sees: the bars view over every ``*.parquet`` file, in key order."""
    con = connect(store.url)
    return con.execute("SELECT * FROM bars ORDER BY conid, ts").fetchall()


class Writer:
    """The zygote process; `run` asks it for one killed (or complete) write."""

    def __init__(self, script: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, root: Path, kill_at: int, batch: Path) -> tuple[int, str]:
        """(signal that ended the child or 0, steps it completed or "-")."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(f"{root}\t{kill_at}\t{batch}\n")
        self._process.stdin.flush()
        signum, steps = self._process.stdout.readline().strip().split("\t")
        return int(signum), steps

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)


def seed_warehouse(root: Path, build_bars: Callable[..., pa.Table]) -> Store:
    store = Store(root, clock=FixedClock(NOW))
    day = build_bars([AAPL, MSFT], date(2024, 11, 25))
    store.write("bars", day, source={"run": "seed"}, run_id="seed", hours=HOURS)
    return store


@pytest.mark.slow(50)
def test_sigkill_at_any_step_leaves_before_or_after(
    tmp_path: Path, make_bars: Callable[..., pa.Table]
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    # the write: AAPL revised (new values), IBM added, one bad row for the quarantine
    revised = make_bars([AAPL, IBM], date(2024, 11, 25), seed=5)
    bad = revised.slice(0, 1).to_pylist()
    bad[0]["volume"] = -1.0
    bad[0]["ts"] = datetime(2024, 11, 25, 21, 30, tzinfo=UTC)
    batch = pa.concat_tables([revised, pa.Table.from_pylist(bad, schema=revised.schema)])
    batch_file = tmp_path / "batch.parquet"
    pq.write_table(batch, batch_file)

    before_store = seed_warehouse(tmp_path / "before", make_bars)
    before = rows_of(before_store)
    reference = seed_warehouse(tmp_path / "reference", make_bars)
    writer = Writer(script)
    signum, steps = writer.run(tmp_path / "reference", 0, batch_file)
    assert signum == 0, "the complete write failed"
    total_steps = int(steps)
    after = rows_of(reference)
    assert before != after and len(after) == 3 * 390
    assert total_steps >= 10

    kill_points = sorted(random.Random(SEED).sample(range(1, total_steps + 1), KILLS))
    outcomes = {"before": 0, "after": 0}
    for kill_at in kill_points:
        root = tmp_path / f"killed-{kill_at}"
        store = seed_warehouse(root, make_bars)
        signum, _ = writer.run(root, kill_at, batch_file)
        assert signum == signal.SIGKILL, f"the writer was not killed at step {kill_at}"
        # every file a reader's glob picks up is a complete Parquet file
        for path in root.rglob("*.parquet"):
            if not path.name.startswith("."):
                pq.ParquetFile(path).read()
        seen = rows_of(store)
        assert seen in (before, after), f"a mix after a kill at step {kill_at}"
        outcomes["before" if seen == before else "after"] += 1
        manifest = store.manifest("bars", PARTITION, verify=True)
        assert manifest.status in (STATUS_OK, STATUS_STALE)
        if seen == before:
            assert manifest.status == STATUS_OK and manifest.run_id == "seed"
        # the next write completes the job and leaves no temporary file behind
        store.write(
            "bars", batch, source={"endpoint": "history", "run": "child"}, run_id="child",
            hours=HOURS,
        )  # fmt: skip
        assert rows_of(store) == after
        assert not [p for p in (root / "bars").rglob(".*.tmp")]
        assert store.manifest("bars", PARTITION, verify=True).status == STATUS_OK
    writer.close()
    assert outcomes["before"] > 0 and outcomes["after"] > 0, outcomes
