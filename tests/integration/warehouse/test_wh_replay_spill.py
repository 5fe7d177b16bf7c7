"""Bounded-memory replay: rows spilled to disk past a budget (`storage.spill`, `Store.load_stream`)
and a bounded number of conversion tasks in flight (`ib_pipeline.replay`).

- Spilling changes no byte: a replay whose store spills after a few hundred rows writes the
  same partitions, manifests and quarantine as one that never spills, with 1 or 2 processes,
  and a replay over existing partitions (a scoped replace) leaves them unchanged.
- The spill folder (``_tmp/spill-*`` under a local root) is gone after the load, whether it
  succeeded, the replay failed on a corrupt raw file (nothing written) or the producer raised.
- An object-store root spills to a local temporary folder and writes the same partitions.
- A spill folder left by a killed process is removed by the next spill; one in use is kept.
- `HeldRows` gives each partition's tables back in the order added, across spills.
- A replay never has more than `AHEAD_PER_WORKER` tasks per worker submitted and not consumed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pytest
from landed_history import CONIDS, SIM_NOW, land_history, resolve

from ib_pipeline import replay as replay_module
from ib_pipeline.clock import FixedClock
from ib_pipeline.conversion import to_batches
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.replay import ReplayError, replay
from ib_pipeline.storage.scratch import remove_orphans
from ib_pipeline.storage.spill import SPILL_FOLDER, SPILL_PREFIX, HeldRows
from ib_pipeline.storage.store import Batch, Store

TINY = 300  # rows held before a spill: many spills per replay (the answers hold 78-960 bars)
SMALL_CHUNKS = 2_000  # rows per validation chunk: several chunks, so spills between them


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw zone of `landed_history` (16 answers, some corrupted)."""
    return land_history(tmp_path_factory.mktemp("landed") / "warehouse")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "VALIDATE_ROWS", SMALL_CHUNKS)


@pytest.fixture
def spills(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The spill folder of every spill event (the folder exists while it is in use)."""
    seen: list[Path] = []
    real = HeldRows.spill

    def watched(self: HeldRows[Any]) -> None:
        real(self)
        assert self.folder is not None and self.folder.is_dir()
        seen.append(self.folder)

    monkeypatch.setattr(HeldRows, "spill", watched)
    return seen


def fresh_store(landed: Path, tmp_path: Path, name: str) -> tuple[Store, Path]:
    root = tmp_path / name
    shutil.copytree(landed / "raw", root / "raw")
    return Store(root, clock=FixedClock(SIM_NOW)), root


def written_files(root: Path) -> dict[str, bytes]:
    """Every data file, manifest and quarantine file of a local warehouse, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in ("bars", "_manifests", "quarantine")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def no_spill_left(root: Path) -> bool:
    return not (root / SPILL_FOLDER).exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_spilling_replay_writes_the_same_bytes(
    landed: Path, tmp_path: Path, spills: list[Path], workers: int
) -> None:
    plain, plain_root = fresh_store(landed, tmp_path, "plain")
    expected = replay(plain, "bars", resolver=resolve, run_id="replay", workers=workers)
    assert spills == []  # under the default budget: nothing touches the disk
    spilled, spilled_root = fresh_store(landed, tmp_path, "spilled")
    result = replay(
        spilled, "bars", resolver=resolve, run_id="replay", workers=workers, spill_rows=TINY
    )

    assert len(spills) >= 5 and all(f.parent == spilled_root / SPILL_FOLDER for f in spills)
    assert expected.write.rows_spilled == 0 < result.write.rows_spilled
    assert no_spill_left(spilled_root) and no_spill_left(plain_root)
    assert result.write.rows_valid == expected.write.rows_valid > 0
    assert result.write.rows_quarantined == expected.write.rows_quarantined > 0
    assert result.write.reasons == expected.write.reasons
    files = written_files(spilled_root)
    assert len([f for f in files if f.endswith(".parquet")]) > 4
    assert files == written_files(plain_root)  # data, manifests (sources, hashes), quarantine

    # a replay over the partitions it wrote: a scoped replace, with the old rows kept outside
    # the scope merged with spilled ones; nothing changes
    again = replay(
        spilled, "bars", resolver=resolve, run_id="replay", workers=workers, spill_rows=TINY
    )
    assert all(p.unchanged for p in again.write.partitions)
    assert {k: v for k, v in written_files(spilled_root).items() if "quarantine" not in k} == {
        k: v for k, v in files.items() if "quarantine" not in k
    }
    assert no_spill_left(spilled_root)


def test_a_failing_replay_writes_nothing_and_leaves_no_spill(
    landed: Path, tmp_path: Path, spills: list[Path]
) -> None:
    store, root = fresh_store(landed, tmp_path, "failing")
    replay(store, "bars", resolver=resolve, run_id="before", workers=2)
    before = written_files(root)
    zone = RawZone(root)
    late = SIM_NOW + timedelta(days=2)
    rel = zone.land("history", {"conid": str(CONIDS[0]), "bar": "1min"}, {"data": []}, late)
    assert rel is not None
    corrupt = Path(zone.root.full(rel)).with_name("20241128T180002000Z-0123456789abcdef.json.zst")
    corrupt.write_bytes(b"not zstd at all")

    with pytest.raises(ReplayError, match="1 raw record"):
        replay(store, "bars", resolver=resolve, run_id="after", workers=2, spill_rows=TINY)
    assert spills, "the store spilled before the corrupt file came in"
    assert not spills[0].exists() and no_spill_left(root)
    assert written_files(root) == before
    assert {m.run_id for m in store.manifests("bars")} == {"before"}


def test_a_producer_that_raises_after_spilling_leaves_nothing(
    landed: Path, tmp_path: Path, spills: list[Path]
) -> None:
    store, root = fresh_store(landed, tmp_path, "raising")
    batches = to_batches("bars", RawZone(root).records("history"), resolve)

    def failing() -> Iterator[list[Batch]]:
        yield batches[:6]
        yield batches[6:12]
        raise RuntimeError("the producer broke")

    with pytest.raises(RuntimeError, match="the producer broke"):
        store.load_stream("bars", failing(), run_id="stream", spill_rows=TINY)
    assert spills and no_spill_left(root)
    assert store.partitions("bars") == [] and store.quarantine("bars").num_rows == 0


def test_an_object_store_root_spills_to_a_local_temporary_folder(
    landed: Path, tmp_path: Path, spills: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    local, _ = fresh_store(landed, tmp_path, "local")
    replay(local, "bars", resolver=resolve, run_id="replay", workers=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    name = f"spill-{uuid.uuid4().hex}"
    url = f"memory://{name}/warehouse"
    zone = RawZone(url)
    for record in RawZone(tmp_path / "local").records("history"):
        zone.land(record.endpoint, record.params, record.payload, record.fetched_at)
    store = Store(url, clock=FixedClock(SIM_NOW))
    try:
        replay(store, "bars", resolver=resolve, run_id="replay", workers=2, spill_rows=TINY)
        assert spills and all(f.parent == scratch for f in spills)
        assert list(scratch.iterdir()) == []
        assert not zone.root.files(SPILL_FOLDER, "")  # nothing spilled through the store
        remote = {m.partition: m.content_sha256 for m in store.manifests("bars")}
        assert remote == {m.partition: m.content_sha256 for m in local.manifests("bars")}
        assert store.read("bars").equals(local.read("bars"))
    finally:
        fsspec.filesystem("memory").rm(f"/{name}", recursive=True)


def test_orphaned_spill_folders_are_removed_and_live_ones_kept(
    landed: Path, tmp_path: Path
) -> None:
    store, root = fresh_store(landed, tmp_path, "orphans")
    base = root / SPILL_FOLDER
    orphan, live = base / f"spill-{'0' * 32}", base / f"spill-{'1' * 32}"
    for folder in (orphan, live):
        folder.mkdir(parents=True)
        (folder / "0-0.arrow").write_bytes(b"left behind")
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the live owner of that folder does
    try:
        replay(store, "bars", resolver=resolve, run_id="replay", workers=1, spill_rows=TINY)
        assert not orphan.exists()
        assert (live / "0-0.arrow").read_bytes() == b"left behind"
        assert [p.name for p in base.iterdir()] == [live.name]  # its own folder is gone too
    finally:
        os.close(held)
    assert remove_orphans(base, SPILL_PREFIX) == [live.name]


def test_held_rows_come_back_in_the_order_they_were_added(tmp_path: Path) -> None:
    store = Store(tmp_path / "warehouse")
    wide = pa.table({"x": pa.array([1, 2, 3], pa.int64()), "y": ["a", "b", "c"]})
    narrow = pa.table({"x": pa.array([4, 5], pa.int64())})
    with HeldRows[str](store.root, 4) as held:
        held.add("p", wide)  # 3 rows: held
        held.add("q", narrow)  # 5 > 4: both spilled
        assert held.spills == 1 and held.held_rows == 0 and held.spilled_rows == 5
        held.add("p", narrow)  # another schema, held in memory
        held.add("p", wide.slice(1))  # 4 rows held: not over the budget
        assert held.spills == 1 and held.held_rows == 4
        held.add("q", wide)  # 7 > 4: spilled; p now has two files (two schemas)
        assert held.spills == 2 and sorted(held.keys()) == ["p", "q"]
        p_tables = held.take("p")
        assert [t.to_pylist() for t in p_tables] == [
            wide.to_pylist(),
            narrow.to_pylist(),
            wide.slice(1).to_pylist(),
        ]
        assert pa.concat_tables(held.take("q"), promote_options="default").column(
            "x"
        ).to_pylist() == [4, 5, 1, 2, 3]
        assert held.keys() == [] and held.take("p") == []
        folder = held.folder
        assert folder is not None and list(folder.iterdir()) == []  # files unlinked once read
    assert not folder.exists() and no_spill_left(tmp_path / "warehouse")
    with pytest.raises(ValueError, match="spill budget"):
        HeldRows(store.root, -1)


def test_conversion_tasks_in_flight_are_bounded(
    landed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, root = fresh_store(landed, tmp_path, "bounded")
    zone = RawZone(root)
    submitted: list[int] = []

    class CountingPool(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            submitted.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(replay_module, "ProcessPoolExecutor", CountingPool)
    monkeypatch.setattr(replay_module, "AHEAD_PER_WORKER", 2)  # 16 files: 8 tasks of 2
    paths = zone.paths("history")
    conversion = replay_module._Conversion("bars", zone, paths, resolve, 2)
    assert conversion.workers == 2
    window = replay_module.AHEAD_PER_WORKER * conversion.workers
    for consumed, _ in enumerate(conversion._converted(), start=1):
        assert len(submitted) <= consumed + window - 1  # the one consumed was submitted too
    assert sum(submitted) == len(paths) and len(submitted) > window
