"""Project-wide settings read from the environment, with their defaults in one place.

Settings are explicit frozen objects built once (``WarehouseSettings.from_env()``) and handed to
the code that needs them; nothing deeper in the library reads ``os.environ`` on its own. This
module must never import the heavy layers (pyarrow, duckdb, dagster): the CLI imports it to
print its help.

Settings
--------
``IB_PIPELINE_WAREHOUSE``
    Root of the warehouse: a local folder (default ``./warehouse``, relative to the working
    directory) or any fsspec URL (``s3://bucket/warehouse``, ``memory://wh`` in tests). Every
    dataset, the quarantine, the raw zone and the DuckDB catalog live under it.
``IB_PIPELINE_RAW_ZONE``
    ``1``/``true``/``on`` (default) keeps every API response the loader uses as compressed
    JSON under ``<root>/raw`` so partitions can be rebuilt without calling IBKR again;
    ``0``/``false``/``off`` turns it off.
``IB_PIPELINE_REPLAY_WORKERS``
    Processes that read and normalise raw records during a replay (`ib_pipeline.replay`):
    a positive integer; default (unset or empty) the CPUs this process may run on; ``1`` replays
    in the calling process alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_WAREHOUSE_ROOT = "./warehouse"
WAREHOUSE_ENV = "IB_PIPELINE_WAREHOUSE"
RAW_ZONE_ENV = "IB_PIPELINE_RAW_ZONE"
REPLAY_WORKERS_ENV = "IB_PIPELINE_REPLAY_WORKERS"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_flag(name: str, text: str) -> bool:
    """Read an on/off setting; anything but the usual spellings is an error naming the setting."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={text!r} is not an on/off value; use one of {sorted(_TRUE | _FALSE)}")


def parse_positive_int(name: str, text: str) -> int:
    """Read a count setting; anything but a positive integer is an error naming the setting."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={text!r} is not a positive integer")
    return value


@dataclass(frozen=True)
class WarehouseSettings:
    """Where the warehouse lives, whether raw API responses are kept, and how many processes
    a replay uses (None: the CPUs available)."""

    root: str = DEFAULT_WAREHOUSE_ROOT
    raw_zone: bool = True
    replay_workers: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WarehouseSettings:
        env = os.environ if environ is None else environ
        root = env.get(WAREHOUSE_ENV, "").strip() or DEFAULT_WAREHOUSE_ROOT
        raw_text = env.get(RAW_ZONE_ENV)
        raw_zone = (
            True if raw_text is None or not raw_text.strip() else parse_flag(RAW_ZONE_ENV, raw_text)
        )
        workers_text = env.get(REPLAY_WORKERS_ENV, "").strip()
        workers = parse_positive_int(REPLAY_WORKERS_ENV, workers_text) if workers_text else None
        return cls(root=root, raw_zone=raw_zone, replay_workers=workers)
