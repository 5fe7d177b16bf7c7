"""The entry point ``workspace.yaml`` (and ``dagster dev``) loads: nothing else.

The definitions are built by `assets.definitions.build_definitions` from the universe file and
the ``IB_PIPELINE_*`` settings, but only when Dagster asks for them (``@dg.definitions``), so
importing this module never reads the environment and can never fail for a command that does
not load Dagster. Every other Dagster line lives under ``assets/``.
"""

from __future__ import annotations

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """The definitions of the configured universe, with resources from the environment."""
    from assets.definitions import build_definitions  # noqa: PLC0415 (lazy on purpose)

    return build_definitions()
