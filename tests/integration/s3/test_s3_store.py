"""The store on a real S3 API (moto's server, see conftest): atomic writes without rename,
manifests, quarantine, the catalog file in the bucket, `connect()` over s3fs, and listings
that see what other processes wrote."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from s3_support import AAPL, HOURS, MSFT, S3

from ib_pipeline.clock import FixedClock
from ib_pipeline.storage.fs import FsspecRoot, open_root
from ib_pipeline.storage.store import Store
from ib_pipeline.warehouse import CATALOG_FILE, WarehouseNotFoundError, connect

Bars = Callable[..., pa.Table]
D1 = date(2024, 11, 25)
PARTITION = "bar_size=1min/session_date=2024-11-25"


def write_bars(store: Store, table: pa.Table, run_id: str = "run-1", **kw: object) -> object:
    return store.write(
        "bars",
        table,
        source={"test": run_id},
        run_id=run_id,
        hours=HOURS,
        **kw,  # type: ignore[arg-type]
    )


def test_the_aws_variables_alone_configure_the_root(s3: S3) -> None:
    root = open_root(s3.url)
    assert isinstance(root, FsspecRoot) and root.url == s3.url
    root.write_atomic("a/b.txt", b"hello")
    assert s3.objects() == ["wh/a/b.txt"]  # no folder markers, no temporary objects
    assert s3.get("wh/a/b.txt") == b"hello"
    # s3fs reached moto through AWS_ENDPOINT_URL (botocore's own setting), not AWS
    assert root.filesystem().s3.meta.endpoint_url == s3.endpoint


def test_a_url_with_credentials_is_refused_without_echoing_them(s3: S3) -> None:
    with pytest.raises(ValueError, match="credentials") as raised:
        open_root(f"s3://{s3.env['AWS_ACCESS_KEY_ID']}:{s3.env['AWS_SECRET_ACCESS_KEY']}@b/wh")
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in str(raised.value)
    assert s3.env["AWS_ACCESS_KEY_ID"] not in str(raised.value)


def test_listings_see_objects_written_and_deleted_by_others(s3: S3) -> None:
    root = open_root(s3.url)
    assert root.files("bars", ".parquet") == []
    root.write_atomic("bars/x=1/part.parquet", b"1")
    assert root.files("bars", ".parquet") == ["bars/x=1/part.parquet"]
    # another process (here: a plain boto3 client) adds and removes objects
    s3.client.put_object(Bucket=s3.bucket, Key="wh/bars/x=2/part.parquet", Body=b"2")
    assert root.files("bars", ".parquet") == ["bars/x=1/part.parquet", "bars/x=2/part.parquet"]
    assert root.exists("bars/x=2/part.parquet")
    s3.client.delete_object(Bucket=s3.bucket, Key="wh/bars/x=1/part.parquet")
    assert not root.exists("bars/x=1/part.parquet")
    assert root.files("bars", ".parquet") == ["bars/x=2/part.parquet"]
    # a sibling root whose name starts with this one's is not listed as ours
    s3.client.put_object(Bucket=s3.bucket, Key="wh2/bars/x=3/part.parquet", Body=b"3")
    assert root.files("", ".parquet") == ["bars/x=2/part.parquet"]


def test_store_writes_partitions_manifests_quarantine_and_catalog(
    s3: S3, make_bars: Bars, clock: FixedClock, tmp_path: Path
) -> None:
    store = Store(s3.url, clock=clock)
    table = make_bars([AAPL, MSFT], D1)
    high = table.schema.get_field_index("high")
    broken = table.set_column(  # one bar with a negative high: quarantined
        high, table.schema.field(high), pa.array([-1.0, *table["high"].to_pylist()[1:]])
    )
    first = write_bars(store, broken)
    assert first.rows_valid == 779 and first.rows_quarantined == 1  # type: ignore[attr-defined]
    keys = s3.objects("wh/")
    assert f"wh/bars/{PARTITION}/part.parquet" in keys
    assert f"wh/{CATALOG_FILE}" in keys
    assert any("manifest" in k and k.endswith(".json") for k in keys), keys
    assert any(k.startswith("wh/") and "quarantine" in k for k in keys), keys
    assert not [k for k in keys if any(p.startswith(".") for p in k.split("/"))]
    write_bars(store, table, run_id="run-2")  # the repaired bar merges in

    manifest = store.manifest("bars", PARTITION, verify=True)
    assert manifest.rows == 780 and manifest.status == "ok"
    assert write_bars(store, table, run_id="run-3").partitions[0].unchanged  # type: ignore[attr-defined]

    con = connect(s3.url)
    assert con.execute("SELECT count(*), count(DISTINCT conid) FROM bars").fetchall() == [(780, 2)]
    assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(1,)]

    # the catalog file in the bucket holds views over s3:// URLs; DuckDB reads them through
    # the registered s3fs file system
    local = tmp_path / CATALOG_FILE
    local.write_bytes(s3.get(f"wh/{CATALOG_FILE}"))
    catalog = duckdb.connect()
    catalog.register_filesystem(open_root(s3.url).filesystem())
    catalog.execute(f"ATTACH '{local}' AS wh (READ_ONLY)")
    assert catalog.execute("SELECT count(*) FROM wh.bars").fetchall() == [(780,)]


def test_a_partition_is_replaced_whole_while_a_reader_reads(
    s3: S3, make_bars: Bars, clock: FixedClock
) -> None:
    store = Store(s3.url, clock=clock, catalog=False)
    versions = [make_bars([AAPL, MSFT], D1, seed=seed) for seed in (1, 2)]
    key = f"wh/bars/{PARTITION}/part.parquet"
    digests = set()
    for version in versions:  # learn each version's exact bytes
        write_bars(store, version, mode="replace")
        digests.add(hashlib.sha256(s3.get(key)).hexdigest())
    assert len(digests) == 2

    seen: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(hashlib.sha256(s3.get(key)).hexdigest())
        except BaseException as error:
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(6):
            write_bars(store, versions[i % 2], mode="replace", run_id=f"r{i}")
    finally:
        done.set()
        reader.join()
    assert not errors
    assert seen and set(seen) <= digests
    assert store.manifest("bars", PARTITION, verify=True).status == "ok"
    data = store.read("bars", PARTITION)
    assert data.num_rows == 780
    assert pc.sum(data["close"]).as_py() == pytest.approx(pc.sum(versions[1]["close"]).as_py())


def test_readers_refuse_an_empty_bucket_or_a_missing_one(s3: S3) -> None:
    with pytest.raises(WarehouseNotFoundError, match=s3.url):
        connect(s3.url)
    missing = f"s3://{s3.bucket}-missing/wh"
    with pytest.raises(WarehouseNotFoundError) as raised:
        connect(missing)
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in str(raised.value)


def test_manifest_json_names_no_credentials(s3: S3, make_bars: Bars, clock: FixedClock) -> None:
    store = Store(s3.url, clock=clock)
    write_bars(store, make_bars([AAPL], D1))
    for key in s3.objects():
        if key.endswith(".json"):
            body = orjson.loads(s3.get(key))
            assert s3.env["AWS_SECRET_ACCESS_KEY"] not in orjson.dumps(body).decode()
