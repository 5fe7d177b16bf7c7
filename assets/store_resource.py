"""The warehouse as a Dagster resource: where assets write, and where raw responses land.

Why: assets must not pick a folder themselves; the warehouse root is configuration (default
``IB_PIPELINE_WAREHOUSE`` or ``./warehouse``), and tests point it at a temporary folder. The
resource builds a `Store` (validated, atomic partition writes, manifests, the DuckDB catalog)
and a `RawZone` (the client's ``on_response`` hook) on the same root.

(The architecture note puts resources in ``ib_pipeline/resources.py``; this one lives beside
the assets until that module's owner adopts it.)

What it must never do: hold a store or a file handle across runs, or write anything itself.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ib_pipeline.clock import Clock
from ib_pipeline.raw import RawZone
from ib_pipeline.settings import DEFAULT_WAREHOUSE_ROOT, WarehouseSettings
from ib_pipeline.store import Store


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A warehouse root (a folder or an fsspec URL) and whether the raw zone is kept."""

    root: str = Field(
        default=DEFAULT_WAREHOUSE_ROOT,
        description="Warehouse root: a folder (./warehouse) or an fsspec URL (s3://bucket/wh).",
    )
    raw_zone: bool = Field(
        default=True, description="Keep every API response under <root>/raw for replay."
    )

    @classmethod
    def from_env(cls) -> WarehouseResource:
        """The resource the environment describes (``IB_PIPELINE_WAREHOUSE``,
        ``IB_PIPELINE_RAW_ZONE``)."""
        settings = WarehouseSettings.from_env()
        return cls(root=settings.root, raw_zone=settings.raw_zone)

    def store(self, clock: Clock) -> Store:
        """A store on the root whose validation and manifests use ``clock``."""
        return Store(self.root, clock=clock)

    def raw(self) -> RawZone:
        """The raw zone of the root (a no-op hook when ``raw_zone`` is off)."""
        return RawZone(self.root, enabled=self.raw_zone)
