"""Crash safety of the whole pipeline: the materialising process is killed with SIGKILL at 20
seeded moments (during a fetch, a validation, a file write, a rename, before a manifest); after
each kill the warehouse is readable by DuckDB (`connect()` and the catalog file), holds no
partial or stray file a reader would pick up, and a re-run reaches the simulator's ground truth.

How it stays fast and deterministic:

- The simulators run in this process and the runs' clients are unpaced (pacing is not under
  test, and 21 runs in a row must neither trip it nor wait for it); before every run the test
  logs in again, so each run meets a fresh gateway session (same snapshot pre-flights, same
  requests). Killed runs and re-runs use two
  identical simulators, so the re-run of one kill overlaps the next killed run.
- The materialising process is `prove_crash_child.py`, a zygote that imports Dagster once and
  forks one child per run (about 1.5 s each instead of 5 s for a fresh interpreter); the child
  kills itself through test-only hooks when the chosen event happens (see its docstring for the
  phases). Its first, unkilled run also tells it what a run imports lazily, so later children
  start warm.
- That first run counts the events of each phase; the 20 (phase, N) pairs are drawn from those
  counts with a seeded generator, four per phase.
- Each kill starts from an empty warehouse; the re-run is the same two Dagster runs in this
  process (about 1.3 s), without any cleanup in between.

A second test kills the run at its very last rename (the catalog refresh after the bars load)
and re-runs only the killed run, which finds every partition complete: the catalog must still
end up showing the bars (it did not before `assets.bar_loader` refreshed it on such runs).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prove_support import (
    BACKFILL_KEYS,
    BARS_ASSET,
    SIM_NOW,
    assert_backfill_equals_truth,
    assert_readable_without_strays,
    assert_runs_succeeded,
    backfill_definitions,
    materialise_backfill,
    tree,
    view_counts,
    view_counts_of_catalog,
)

from assets.runs import run_assets, summarize_run
from ib_pipeline.raw_zone import RAW
from ib_pipeline.storage.fs import is_temp_name
from ib_pipeline.storage.manifest import STATUS_OK
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import CATALOG_FILE, connect

if TYPE_CHECKING:
    import dagster as dg

    from ib_pipeline.simulator import Simulator

pytestmark = pytest.mark.timing

CHILD = Path(__file__).with_name("prove_crash_child.py")
PHASES = ("fetch", "validate", "write", "rename", "manifest")
KILLS_PER_PHASE = 4
SEED = 20241126


class Zygote:
    """The materialising process (`prove_crash_child.py`); `run` asks it for one run."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        # Killed children leave their temporary folders (Dagster's, the catalog builder's)
        # behind: keep them inside the test's own tmp folder. Dagster's logs go to a file.
        env = {**os.environ, "TMPDIR": str(tmp)}
        env.pop("DAGSTER_HOME", None)
        self._log = (tmp / "child.log").open("w")
        self._process = subprocess.Popen(
            [sys.executable, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )

    def submit(self, root: Path, base_url: str, phase: str | None, kill_at: int) -> None:
        """Start one run (killed at ``phase`` #``kill_at``; None: not killed); `collect`
        waits for its outcome."""
        assert self._process.stdin is not None
        request = {"root": str(root), "base_url": base_url, "phase": phase, "kill_at": kill_at}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()

    def collect(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        assert line, f"the crash zygote died: see {self._log.name}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)
        self._log.close()


@dataclass
class Crashes:
    """Two identical simulators (same seed, same pinned clock, so the same truth): one serves
    the killed runs, the other the re-runs, so that a re-run in this process overlaps the next
    killed run in the zygote. Plus the event counts of a complete run."""

    victim: Simulator
    healer: Simulator
    zygote: Zygote
    counts: dict[str, int]
    tmp: Path

    def start_kill(self, root: Path, phase: str, kill_at: int) -> None:
        """A fresh gateway session, then a run into ``root`` to be killed at ``phase``
        #``kill_at`` (collect it with `killed`)."""
        self.victim.login()
        self.zygote.submit(root, self.victim.base_url, phase, kill_at)

    def killed(self, phase: str, kill_at: int) -> None:
        outcome = self.zygote.collect()
        assert outcome["signal"] == signal.SIGKILL, (
            f"{phase} #{kill_at} of {self.counts[phase]}: not killed: {outcome['error']}"
        )

    def definitions(self, root: Path) -> dg.Definitions:
        """The definitions a re-run uses, on a fresh session of the healing simulator."""
        self.healer.login()
        return backfill_definitions(self.healer.base_url, root, self.healer.clock, unpaced=True)


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crashes]:
    from ib_pipeline.simulator import PacingConfig, Simulator, SimulatorConfig  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("crash")
    # pacing is not under test here, and 21 runs in a row must not trip it
    config = SimulatorConfig(
        now=SIM_NOW, pacing=PacingConfig(enabled=False), session_timeout_s=None
    )
    with Simulator(config) as victim, Simulator(config) as healer:
        zygote = Zygote(tmp / "child-tmp")
        try:
            victim.login()
            zygote.submit(tmp / "reference", victim.base_url, None, 0)
            reference = zygote.collect()
            assert reference["signal"] == 0 and reference["error"] is None, reference["error"]
            assert_backfill_equals_truth(tmp / "reference", healer)
            yield Crashes(victim, healer, zygote, reference["counts"], tmp)
        finally:
            zygote.close()


def leftover_temp_files(root: Path) -> list[str]:
    """Temporary files outside the raw zone and the root folder itself (the only folders
    written without the folder lock that cleans up after a crashed writer)."""
    return [
        rel
        for rel in tree(root)
        if is_temp_name(rel.rsplit("/", 1)[-1]) and "/" in rel and not rel.startswith(f"{RAW}/")
    ]


@pytest.mark.slow(70)
@pytest.mark.timeout(600)  # 20 kills and heals: about a minute idle, several with cores busy
def test_sigkill_at_twenty_moments_then_a_rerun_reaches_the_truth(crashes: Crashes) -> None:
    counts = crashes.counts
    assert all(counts[phase] >= KILLS_PER_PHASE for phase in PHASES), counts
    rng = random.Random(SEED)
    plan = [
        (phase, kill_at)
        for phase in PHASES
        for kill_at in sorted(rng.sample(range(1, counts[phase] + 1), KILLS_PER_PHASE))
    ]
    seen_catalog = seen_temp = 0

    def heal(root: Path, where: str) -> None:
        assert_runs_succeeded(materialise_backfill(crashes.definitions(root)))
        counts = assert_readable_without_strays(root)
        assert_backfill_equals_truth(root, crashes.healer, counts)
        assert leftover_temp_files(root) == [], where

    previous: tuple[Path, str] | None = None
    for index, (phase, kill_at) in enumerate(plan):
        root = crashes.tmp / f"kill-{index:02d}-{phase}-{kill_at}"
        crashes.start_kill(root, phase, kill_at)
        if previous is not None:
            heal(*previous)  # while the zygote runs the next kill
        crashes.killed(phase, kill_at)
        if root.exists():
            assert_readable_without_strays(root)
            seen_catalog += (root / CATALOG_FILE).exists()
            seen_temp += any(is_temp_name(rel.rsplit("/", 1)[-1]) for rel in tree(root))
        previous = (root, f"kill {index} ({phase} #{kill_at} of {counts[phase]})")
    assert previous is not None
    heal(*previous)
    # the draws did reach the interesting states: a catalog beside partial data, temp files
    assert seen_catalog > 0 and seen_temp > 0, (seen_catalog, seen_temp)


def test_a_kill_before_the_last_catalog_refresh_is_healed_by_rerunning_that_run(
    crashes: Crashes,
) -> None:
    """The last rename of the backfill is the catalog refresh after the bars load: every bars
    partition and manifest is in place, the catalog still shows none. Re-running the killed
    run alone (all partitions complete, nothing to write) must still refresh the catalog."""
    root = crashes.tmp / "kill-last-rename"
    crashes.start_kill(root, "rename", crashes.counts["rename"])
    crashes.killed("rename", crashes.counts["rename"])
    assert all(m.status == STATUS_OK for m in Store(root).manifests("bars", verify=True))
    assert view_counts(connect(root))["bars"] == 4 * 390
    assert view_counts_of_catalog(root)["bars"] == 0

    defs = crashes.definitions(root)
    result = run_assets(defs, [BARS_ASSET], partition_range=BACKFILL_KEYS)
    assert_runs_succeeded([result])
    assert summarize_run(result).materialized[BARS_ASSET]["partitions_skipped_complete"] == 2
    assert view_counts_of_catalog(root) == view_counts(connect(root))
    assert_backfill_equals_truth(root, crashes.healer)
