"""A re-run repairs what was damaged (issue 10 items 5-6): a partition whose file was damaged
in place (same size) or whose manifest is garbled is fetched again, not skipped as complete;
the other partitions are skipped and untouched. Before the fix the re-run skipped the damaged
partition (its manifest said ``ok`` by size) and then failed reading it, naming no file; a
garbled manifest aborted the run."""

from __future__ import annotations

from pathlib import Path

from dagster_support import Pipeline

from assets.runs import run_assets, summarize_run
from ib_pipeline.storage.manifest import STATUS_OK

KEYS = ("2024-11-20", "2024-11-22")


def hashes(p: Pipeline) -> dict[str, str]:
    return {m.partition: m.content_sha256 for m in p.store().manifests("bars", verify=True)}


def test_a_rerun_refetches_a_damaged_partition_and_skips_the_rest(pipeline: Pipeline) -> None:
    assert run_assets(pipeline.defs, ["contracts"]).success
    assert summarize_run(run_assets(pipeline.defs, ["bars_1min"], partition_range=KEYS)).success
    before = hashes(pipeline)
    assert len(before) == 3
    store = pipeline.store()
    damaged, garbled, intact = sorted(before)
    path = Path(store.url, store.partition("bars", damaged).data_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = bytes(b ^ 0xFF for b in data[middle : middle + 400])
    path.write_bytes(bytes(data))
    Path(store.url, store.partition("bars", garbled).manifest_path).write_bytes(b"{not json")
    intact_bytes = Path(store.url, store.partition("bars", intact).data_path).read_bytes()

    again = summarize_run(run_assets(pipeline.defs, ["bars_1min"], partition_range=KEYS))
    assert again.success and not again.failed_checks, again.checks
    assert again.materialized["bars_1min"]["partitions_skipped_complete"] == 1
    after = pipeline.store().manifests("bars", verify=True)
    assert all(m.status == STATUS_OK for m in after), [(m.partition, m.status) for m in after]
    assert hashes(pipeline) == before  # repaired: the same bytes as the first load wrote
    assert Path(store.url, store.partition("bars", intact).data_path).read_bytes() == intact_bytes
