"""The whole pipeline on a real S3 API (moto's server, see conftest), configured only by the
AWS variables: the demo, a CLI backfill, `manifest --verify`, `replay` from the s3 raw zone,
`connect()`, no credentials in anything written, and a loader killed mid-write."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from rich.console import Console
from s3_support import S3

from assets import demo
from assets.demo import run_demo
from ib_pipeline.cli import main
from ib_pipeline.raw_zone import SUFFIX, decompress
from ib_pipeline.warehouse import CATALOG_FILE, connect

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

pytestmark = pytest.mark.slow(120)

UNIVERSE = """\
history_start: 2025-01-02
bar_sizes: [1min]
instruments:
  - {symbol: AAPL, sec_type: STK, exchange: NASDAQ}
  - {symbol: IBM, sec_type: STK, exchange: NYSE}
"""


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)
    return result.exit_code, result.output


def everything_written(s3: S3) -> dict[str, bytes]:
    """Every object in the bucket, raw-zone records decompressed."""
    found = {}
    for key in s3.objects():
        body = s3.get(key)
        found[key] = decompress(body) if key.endswith(SUFFIX) else body
    return found


@pytest.fixture
def dagster_logs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every event of every run the demo records (metadata, messages, errors), as text."""
    texts: list[str] = []
    real = demo.open_instance

    @contextlib.contextmanager
    def recording(ephemeral: bool) -> Iterator[dg.DagsterInstance]:
        with real(ephemeral) as instance:
            yield instance
            for run in instance.get_runs():
                texts.extend(str(entry) for entry in instance.all_logs(run.run_id))

    monkeypatch.setattr(demo, "open_instance", recording)
    return texts


@pytest.mark.timeout(420)  # the whole demo week through an S3 API: a few minutes on 2 cores
def test_demo_replay_and_manifests_on_s3_name_no_credentials(
    s3: S3, caplog: pytest.LogCaptureFixture, dagster_logs: list[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    # ...but for botocore's event-hook registry: two thirds of the records (190,000 lines of
    # event and handler names, never a value) and half the test's time
    caplog.set_level(logging.INFO, logger="botocore.hooks")
    secret = s3.env["AWS_SECRET_ACCESS_KEY"].encode()
    buffer = io.StringIO()
    # unpaced: pacing is not under test here (the paced demo has its own test)
    console = Console(file=buffer, width=160)
    code = run_demo(s3.url, ephemeral=True, console=console, unpaced=True)
    output = buffer.getvalue()
    assert code == 0, output
    assert "98,310" in output  # the same week of 1-minute bars as on a local disk

    keys = s3.objects()
    assert f"wh/{CATALOG_FILE}" in keys
    assert any(k.startswith("wh/raw/") and k.endswith(SUFFIX) for k in keys)
    assert not [k for k in keys if any(p.startswith(".") for p in k.split("/"))]
    con = connect(s3.url)
    (bars,) = con.execute("SELECT count(*) FROM bars WHERE bar_size = '1min'").fetchone() or (0,)
    assert bars == 98310

    code, text = cli("manifest", "bars", "--verify", "--json", "--warehouse", s3.url)
    assert code == 0, text
    manifests = orjson.loads(text)["bars"]
    assert manifests and {m["status"] for m in manifests} == {"ok"}
    before = {m["partition"]: m["content_sha256"] for m in manifests}

    # the raw zone in the bucket rebuilds the same partitions, byte for byte
    partition = sorted(p for p in before if p.startswith("bar_size=1min/"))[0]
    code, text = cli("replay", "bars", "--partition", partition, "--warehouse", s3.url)
    assert code == 0, text
    code, text = cli("manifest", "bars", "--verify", "--json", "--warehouse", s3.url)
    after = {m["partition"]: m["content_sha256"] for m in orjson.loads(text)["bars"]}
    assert after == before

    # the secret key is nowhere: objects (raw zone decompressed), logs, console output
    leaks = [k for k, body in everything_written(s3).items() if secret in body]
    assert not leaks
    assert secret.decode() not in output
    assert any("MATERIALIZATION" in text for text in dagster_logs)
    assert not [text for text in dagster_logs if secret.decode() in text]
    assert secret.decode() not in caplog.text
    assert secret.decode() not in "".join(str(r.__dict__) for r in caplog.records)

    # nor in an error about the bucket
    code, text = cli("query", "SELECT 1", "--warehouse", f"s3://{s3.bucket}-gone/wh")
    assert code != 0 and f"{s3.bucket}-gone" in text
    assert secret.decode() not in text


@pytest.fixture
def wall_clock_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(now=None)


def backfill_command(s3: S3, tmp_path: Path, start: str, end: str) -> list[str]:
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE)
    return [
        sys.executable, "-m", "ib_pipeline.cli", "backfill", "--asset", "bars_1min",
        "--start", start, "--end", end, "--universe", str(universe), "--warehouse", s3.url,
        "--ephemeral",
    ]  # fmt: skip


def test_backfill_into_s3_then_killed_mid_write_leaves_a_readable_store(
    wall_clock_sim: Simulator, s3: S3, tmp_path: Path
) -> None:
    # a week, in this process: the bucket is known from the AWS variables alone
    week = backfill_command(s3, tmp_path, "2025-11-22", "2025-11-30")
    result = CliRunner().invoke(
        main,
        week[3:],
        env={"IB_PIPELINE_BASE_URL": wall_clock_sim.base_url, "COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "rows written 2,760" in " ".join(result.output.replace("│", " ").split())
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in result.output
    con = connect(s3.url)
    assert con.execute("SELECT count(*) FROM bars").fetchone() == (2760,)

    # then a month, as a subprocess that gets the AWS variables in its environment, killed
    # once a few new partitions are in the bucket
    env = {**s3.subprocess_env(), "IB_PIPELINE_BASE_URL": wall_clock_sim.base_url}
    month = backfill_command(s3, tmp_path, "2025-10-01", "2025-10-31")
    manifests_before = len([k for k in s3.objects() if k.endswith(".json")])
    child = subprocess.Popen(month, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.poll() is None:
            written = len([k for k in s3.objects() if k.endswith(".json")])
            if written >= manifests_before + 3:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the backfill finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()

    # every object is whole: each data file reads, and the catalog still opens
    for key in s3.objects("wh/bars/"):
        assert key.endswith(".parquet"), key
        pq.read_table(io.BytesIO(s3.get(key)))
    con = connect(s3.url)
    (rows,) = con.execute("SELECT count(*) FROM bars").fetchone() or (0,)
    assert rows > 2760
    code, text = cli("manifest", "bars", "--verify", "--json", "--warehouse", s3.url)
    assert code == 0, text
    statuses = {m["status"] for m in orjson.loads(text)["bars"]}
    # killed between a partition's data PUT and its manifest PUT: the new data with no manifest
    # ("missing") or the previous one ("stale"); never a garbled manifest or corrupt data
    assert "ok" in statuses and statuses <= {"ok", "stale", "missing"}, statuses
