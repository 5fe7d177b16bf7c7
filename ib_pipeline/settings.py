"""Project-wide settings read from the environment, with their defaults in one place.

Settings are explicit frozen objects built once (``WarehouseSettings.from_env()``,
``ClientSettings.from_env()``) and handed to the code that needs them; nothing deeper in the
library reads ``os.environ`` on its own.

One rule for every ``IB_PIPELINE_*`` variable (`environment_value`): an empty value, or one of
spaces only, means unset (the default applies); any other value is stripped and must parse, or
the error names the variable, the value and what it expects. The variables are declared once,
with their types, in the pydantic-settings models of `ib_pipeline.environment`.

This module must stay cheap to import (the CLI imports it to print its help): it never imports
pydantic-settings (~0.3 s) or the heavy layers (pyarrow, duckdb, dagster) at module level;
`WarehouseSettings.from_env` imports the models only when one of its variables is set.

Settings
--------
``IB_PIPELINE_WAREHOUSE``
    Root of the warehouse: a local folder or any fsspec URL (``s3://bucket/warehouse``,
    ``memory://wh`` in tests). Every dataset, the quarantine, the raw zone and the DuckDB
    catalog live under it. Default (`default_warehouse_root`): ``warehouse/`` in the checkout
    the package runs from, whatever the working directory (a notebook started in
    ``notebooks/`` finds the same warehouse as ``make demo``); an installed package without a
    checkout uses ``$XDG_DATA_HOME/ib-pipeline/warehouse`` (``~/.local/share/...``).
``IB_PIPELINE_RAW_ZONE``
    On (default) keeps every API response the loader uses as compressed JSON under
    ``<root>/raw`` so partitions can be rebuilt without calling IBKR again; ``0``/``false``/
    ``off`` turns it off.
``IB_PIPELINE_REPLAY_WORKERS``
    Processes that read and normalise raw records during a replay (`ib_pipeline.replay`):
    a positive integer; default the CPUs this process may run on; ``1`` replays in the calling
    process alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "IB_PIPELINE_"
"""The prefix of every variable the pipeline reads (the access token's variable aside)."""


def default_warehouse_root() -> str:
    """``<checkout>/warehouse`` when the package runs from a checkout of this project (the
    folder holding its ``pyproject.toml``), else ``$XDG_DATA_HOME/ib-pipeline/warehouse``:
    never a path relative to the working directory."""
    checkout = Path(__file__).resolve().parents[1]
    project = checkout / "pyproject.toml"
    if project.is_file() and 'name = "ib-pipeline"' in project.read_text("utf-8"):
        return str(checkout / "warehouse")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "ib-pipeline" / "warehouse")


DEFAULT_WAREHOUSE_ROOT = default_warehouse_root()
WAREHOUSE_ENV = "IB_PIPELINE_WAREHOUSE"
RAW_ZONE_ENV = "IB_PIPELINE_RAW_ZONE"
REPLAY_WORKERS_ENV = "IB_PIPELINE_REPLAY_WORKERS"
_WAREHOUSE_VARIABLES = (WAREHOUSE_ENV, RAW_ZONE_ENV, REPLAY_WORKERS_ENV)


def environment_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of variable ``name`` in ``environ`` (default ``os.environ``), stripped; None
    when it is unset, empty or spaces only. The one rule every ``IB_PIPELINE_*`` variable
    follows."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def parse_flag(name: str, text: str) -> bool:
    """``text`` read as an on/off value, spelled as every ``IB_PIPELINE_*`` flag may be
    (``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off``); ValueError naming
    ``name`` otherwise."""
    from ib_pipeline.environment import read_flag  # noqa: PLC0415 (slow import)

    return read_flag(name, text)


@dataclass(frozen=True)
class WarehouseSettings:
    """Where the warehouse lives, whether raw API responses are kept, and how many processes
    a replay uses (None: the CPUs available)."""

    root: str = DEFAULT_WAREHOUSE_ROOT
    raw_zone: bool = True
    replay_workers: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WarehouseSettings:
        """Settings from the ``IB_PIPELINE_*`` variables of ``environ`` (default
        ``os.environ``); unset or empty ones keep the defaults, a bad value raises ValueError
        naming the variable and what it expects."""
        if all(environment_value(name, environ) is None for name in _WAREHOUSE_VARIABLES):
            return cls()  # nothing set: the defaults, without importing pydantic-settings
        from ib_pipeline.environment import WarehouseEnvironment  # noqa: PLC0415 (slow import)

        given = WarehouseEnvironment.read(environ, ValueError).given()
        if "warehouse" in given:
            given["root"] = given.pop("warehouse")
        return cls(**given)
