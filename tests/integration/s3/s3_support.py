"""Constants and the bucket handle of the ``s3://`` tests (a plain module beside their
conftest, imported by name, as tests/e2e does with its *_support modules)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ib_pipeline.calendars import US_EQUITY, TradingHours

NOW = datetime(2024, 11, 28, 12, tzinfo=UTC)
AAPL, MSFT = 265598, 272093
HOURS: dict[int, TradingHours] = {AAPL: US_EQUITY, MSFT: US_EQUITY}

SECRET = f"moto-secret-{uuid.uuid4().hex}"
"""The secret access key of every test: searched for in everything the pipeline writes."""
ACCESS_KEY = "AKIAIBPIPELINETEST01"
REGION = "us-east-1"

ISOLATE = {  # so that no developer's ~/.aws profile or token reaches the tests
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
REMOVE = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class S3:
    """One test's bucket on the moto server, and the environment that points at it."""

    bucket: str
    endpoint: str
    env: dict[str, str]
    client: Any  # a boto3 S3 client: the test's own view of the bucket (another "process")

    @property
    def url(self) -> str:
        """The warehouse root of the test: ``s3://<bucket>/wh``."""
        return f"s3://{self.bucket}/wh"

    def objects(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def subprocess_env(self) -> dict[str, str]:
        """This process's environment with the AWS variables (for a subprocess)."""
        base = {k: v for k, v in os.environ.items() if k not in REMOVE}
        return {**base, **self.env}
