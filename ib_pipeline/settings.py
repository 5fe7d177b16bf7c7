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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_WAREHOUSE_ROOT = "./warehouse"
WAREHOUSE_ENV = "IB_PIPELINE_WAREHOUSE"
RAW_ZONE_ENV = "IB_PIPELINE_RAW_ZONE"

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


@dataclass(frozen=True)
class WarehouseSettings:
    """Where the warehouse lives and whether raw API responses are kept."""

    root: str = DEFAULT_WAREHOUSE_ROOT
    raw_zone: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WarehouseSettings:
        env = os.environ if environ is None else environ
        root = env.get(WAREHOUSE_ENV, "").strip() or DEFAULT_WAREHOUSE_ROOT
        raw_text = env.get(RAW_ZONE_ENV)
        raw_zone = (
            True if raw_text is None or not raw_text.strip() else parse_flag(RAW_ZONE_ENV, raw_text)
        )
        return cls(root=root, raw_zone=raw_zone)
