"""A real S3 API server for the ``s3://`` warehouse tests: moto's server mode on loopback.

The server is started once per session on a free port; each test gets its own bucket. The
pipeline is configured ONLY through the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), set in this process
with monkeypatch and handed to subprocesses in `S3.env`; no test passes an endpoint or a key to
the pipeline in code. The secret key is a random value that appears nowhere else, so a test can
search everything written for it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest
from bar_builders import build_bars
from s3_support import ACCESS_KEY, ISOLATE, NOW, REGION, REMOVE, S3, SECRET, free_port

from ib_pipeline.clock import FixedClock


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server running for the whole session."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 (slow import)

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _forget_clients() -> None:
    """Drop cached s3fs instances: each test starts from the variables alone."""
    import s3fs  # noqa: PLC0415

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A fresh bucket, and the AWS variables pointing at the moto server in this process."""
    import boto3  # noqa: PLC0415

    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        **ISOLATE,
    }
    for name in REMOVE:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _forget_clients()
    bucket = f"wh-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3")  # configured by the same variables
    client.create_bucket(Bucket=bucket)
    yield S3(bucket, moto_endpoint, env, client)
    _forget_clients()


@pytest.fixture
def make_bars() -> Callable[..., pa.Table]:
    return build_bars


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)
