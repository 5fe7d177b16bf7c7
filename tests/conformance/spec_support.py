"""Shared helpers of the conformance tests: the vendored spec, with the documented deviations."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ib_pipeline.simulator.spec_deviations import apply_deviations

SPEC_PATH = Path(__file__).resolve().parents[2] / "spec" / "ibkr-web-api.openapi.yaml"


@cache
def raw_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


@cache
def patched_spec() -> dict[str, Any]:
    """The spec with `spec_deviations.DEVIATIONS` applied, and nothing else."""
    return apply_deviations(raw_spec())


def operation_ids() -> set[str]:
    return {
        operation["operationId"]
        for path_item in raw_spec()["paths"].values()
        for operation in path_item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def response_schema(operation_id: str) -> dict[str, Any]:
    """The 200-response JSON schema of an operation, with the components inlined as $defs."""
    spec = patched_spec()
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
                return _self_contained(schema, spec)
    raise KeyError(f"no operation {operation_id!r} in the spec")


def _self_contained(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``#/components/schemas/X`` as ``#/$defs/X`` so jsonschema resolves them."""
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    defs = json.loads(
        json.dumps(spec["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    result: dict[str, Any] = json.loads(text)
    result["$defs"] = defs
    result["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return result
