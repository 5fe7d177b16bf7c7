"""Replay on several processes (`ib_pipeline.replay`, `Store.load_stream`).

- The worker count changes the speed, never the result: a replay with 2 processes writes the
  same partitions (bytes, manifests' hashes) and the same quarantine (file names and rows) as
  a replay in one process and as a live load of the same responses in one `Store.load`, with
  several validation chunks, two context groups (outsideRth true and false), two bar sizes
  and corrupted rows.
- Every file that cannot be read or normalised is named, and nothing is written, even though
  the store validated earlier chunks before the bad files came in.
- `Store.load_stream` writes nothing when its iterator raises.
- The ``IB_PIPELINE_REPLAY_WORKERS`` setting and `replay_workers`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from landed_history import CONIDS, DAYS, SIM_NOW, land_history, resolve

from ib_pipeline import replay as replay_module
from ib_pipeline.clock import FixedClock
from ib_pipeline.conversion import to_batches
from ib_pipeline.raw_zone import RawZone
from ib_pipeline.replay import ReplayError, available_cpus, replay, replay_workers
from ib_pipeline.settings import REPLAY_WORKERS_ENV, WarehouseSettings
from ib_pipeline.storage.fs import is_temp_name
from ib_pipeline.storage.store import Batch, Store

SMALL_CHUNKS = 2_000  # rows per validation chunk in these tests: several chunks per replay


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw zone of `landed_history` (16 answers, some corrupted)."""
    return land_history(tmp_path_factory.mktemp("landed") / "warehouse")


def fresh_store(landed: Path, tmp_path: Path, name: str) -> tuple[Store, RawZone]:
    """A warehouse holding a copy of the landed raw zone and nothing else."""
    root = tmp_path / name
    shutil.copytree(landed / "raw", root / "raw")
    return Store(root, clock=FixedClock(SIM_NOW)), RawZone(root)


def partition_hashes(store: Store) -> dict[str, str]:
    return {m.partition: m.content_sha256 for m in store.manifests("bars")}


def quarantine_files(root: Path) -> dict[str, bytes]:
    folder = root / "quarantine"
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def without_run(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.drop_columns([c for c in ("run_id",) if c in table.column_names]).to_pylist()
    return sorted(rows, key=repr)


def test_two_processes_write_what_one_process_and_a_live_load_write(
    landed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "VALIDATE_ROWS", SMALL_CHUNKS)
    chunks: list[int] = []
    real_load_stream = Store.load_stream

    def counting(self: Store, dataset: str, stream: Any, **kwargs: Any) -> Any:
        def counted() -> Iterator[list[Batch]]:
            for chunk in stream:
                chunks.append(len(chunk))
                yield chunk

        return real_load_stream(self, dataset, counted(), **kwargs)

    monkeypatch.setattr(Store, "load_stream", counting)

    one, one_zone = fresh_store(landed, tmp_path, "one")
    sequential = replay(one, "bars", resolver=resolve, run_id="replay", workers=1)
    sequential_chunks, chunks[:] = list(chunks), []
    two, _ = fresh_store(landed, tmp_path, "two")
    parallel = replay(two, "bars", resolver=resolve, run_id="replay", workers=2)

    assert (sequential.workers, parallel.workers) == (1, 2)
    assert sequential.records == parallel.records == len(DAYS) * len(CONIDS)
    assert len(chunks) >= 3 and chunks == sequential_chunks  # same cut, whatever the workers
    assert parallel.rows_normalised == sequential.rows_normalised > 0
    assert parallel.write.rows_quarantined == sequential.write.rows_quarantined > 0
    assert parallel.write.reasons == sequential.write.reasons
    assert parallel.write.duplicates_collapsed == sequential.write.duplicates_collapsed
    sizes = {p.partition.split("/")[0] for p in parallel.write.partitions}
    assert sizes == {"bar_size=1min", "bar_size=5min"}
    assert partition_hashes(two) == partition_hashes(one)
    assert two.read("bars").equals(one.read("bars"))
    assert quarantine_files(tmp_path / "two") == quarantine_files(tmp_path / "one")
    for key in ("read", "normalise", "parse_wall", "validate", "write", "catalog", "wait"):
        assert parallel.seconds[key] >= 0, key

    # a live load: every response in ONE Store.load (one validation pass per context group)
    live, _ = fresh_store(landed, tmp_path, "live")
    records = list(one_zone.records("history"))
    loaded = live.load("bars", to_batches("bars", records, resolve), run_id="replay")
    assert loaded.rows_quarantined == parallel.write.rows_quarantined
    assert partition_hashes(live) == partition_hashes(two)
    assert quarantine_files(tmp_path / "live") == quarantine_files(tmp_path / "two")
    assert without_run(live.quarantine("bars")) == without_run(two.quarantine("bars"))


def land_bad(zone: RawZone) -> list[str]:
    """Three broken answers fetched after every good one: a value the normaliser rejects, an
    answer without ``data``, and a file that is not zstd at all."""
    late = SIM_NOW + timedelta(days=2)
    params = {"conid": str(CONIDS[0]), "bar": "1min", "period": "1d"}
    wrong_value = zone.land("history", params, {"data": [{"t": "x"}]}, late)
    no_data = zone.land("history", {**params, "n": 2}, {"points": 0}, late + timedelta(seconds=1))
    assert wrong_value is not None and no_data is not None
    folder = Path(zone.root.full(wrong_value)).parent
    corrupt = folder / "20241128T180002000Z-0123456789abcdef.json.zst"
    corrupt.write_bytes(b"not zstd at all")
    return [wrong_value, no_data, f"{wrong_value.rsplit('/', 1)[0]}/{corrupt.name}"]


@pytest.mark.parametrize("workers", [1, 2])
def test_every_bad_file_is_named_and_nothing_is_written(
    landed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(replay_module, "VALIDATE_ROWS", SMALL_CHUNKS)
    store, zone = fresh_store(landed, tmp_path, "bad")
    replay(store, "bars", resolver=resolve, run_id="before", workers=workers)
    root = tmp_path / "bad"
    digests, quarantine = partition_hashes(store), quarantine_files(root)
    bad = land_bad(zone)

    validated: list[int] = []
    real_validate = Store.load_stream

    def watching(self: Store, dataset: str, stream: Any, **kwargs: Any) -> Any:
        def watched() -> Iterator[list[Batch]]:
            for chunk in stream:
                validated.append(len(chunk))
                yield chunk

        return real_validate(self, dataset, watched(), **kwargs)

    monkeypatch.setattr(Store, "load_stream", watching)
    with pytest.raises(ReplayError) as raised:
        replay(store, "bars", resolver=resolve, run_id="after", workers=workers)
    message = str(raised.value)
    assert "3 raw record(s) could not be read or normalised; nothing was written" in message
    for path in bad:
        assert path in message
    assert "data[0].t" in message and "missing key 'data'" in message
    assert "cannot be read" in message
    assert len(validated) >= 2  # the store had validated chunks before the bad files came in
    assert partition_hashes(store) == digests
    assert {m.run_id for m in store.manifests("bars")} == {"before"}
    assert quarantine_files(root) == quarantine
    assert not [p for p in root.rglob("*") if is_temp_name(p.name)]


def test_load_stream_writes_nothing_when_its_iterator_raises(landed: Path, tmp_path: Path) -> None:
    store, zone = fresh_store(landed, tmp_path, "stream")
    batches = to_batches("bars", zone.records("history"), resolve)

    def failing() -> Iterator[list[Batch]]:
        yield batches[:8]
        raise RuntimeError("the producer broke")

    with pytest.raises(RuntimeError, match="the producer broke"):
        store.load_stream("bars", failing(), run_id="stream")
    assert store.partitions("bars") == []
    assert store.quarantine("bars").num_rows == 0

    result = store.load_stream("bars", iter([batches[:5], batches[5:]]), run_id="stream")
    whole, _ = fresh_store(landed, tmp_path, "whole")
    once = whole.load("bars", batches, run_id="stream")
    assert result.rows_valid == once.rows_valid > 0
    assert result.rows_quarantined == once.rows_quarantined > 0
    assert partition_hashes(store) == partition_hashes(whole)


def test_small_replays_stay_in_one_process(landed: Path, tmp_path: Path) -> None:
    store, zone = fresh_store(landed, tmp_path, "small")
    few = zone.paths("history")[: 2 * replay_module.MIN_FILES_PER_WORKER - 1]
    for rel in zone.paths("history"):
        if rel not in few:
            Path(zone.root.full(rel)).unlink()
    result = replay(store, "bars", resolver=resolve, workers=4)
    assert result.workers == 1 and result.records == len(few)


def test_object_store_raw_zones_are_read_in_one_process(landed: Path, tmp_path: Path) -> None:
    local, local_zone = fresh_store(landed, tmp_path, "local")
    expected = replay(local, "bars", resolver=resolve, run_id="replay", workers=1)
    url = f"memory://replay-{tmp_path.name}/warehouse"
    store, zone = Store(url, clock=FixedClock(SIM_NOW)), RawZone(url)
    for record in local_zone.records("history"):
        zone.land(record.endpoint, record.params, record.payload, record.fetched_at)
    result = replay(store, "bars", resolver=resolve, run_id="replay", workers=2)
    assert result.workers == 1 and result.records == expected.records
    assert partition_hashes(store) == partition_hashes(local)


def test_the_worker_count_setting() -> None:
    assert WarehouseSettings.from_env({}).replay_workers is None
    assert WarehouseSettings.from_env({REPLAY_WORKERS_ENV: " "}).replay_workers is None
    assert WarehouseSettings.from_env({REPLAY_WORKERS_ENV: "3"}).replay_workers == 3
    for text in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match=REPLAY_WORKERS_ENV):
            WarehouseSettings.from_env({REPLAY_WORKERS_ENV: text})
    assert replay_workers(5) == 5
    for wrong in (0, -1, True):
        with pytest.raises(ValueError, match="positive integer"):
            replay_workers(wrong)


def test_the_default_worker_count_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(REPLAY_WORKERS_ENV, raising=False)
    assert replay_workers() == available_cpus() >= 1
    monkeypatch.setenv(REPLAY_WORKERS_ENV, "1")
    assert replay_workers() == 1
    monkeypatch.setenv(REPLAY_WORKERS_ENV, "nope")
    with pytest.raises(ValueError, match=REPLAY_WORKERS_ENV):
        replay_workers()
