"""Where the real Client Portal Gateway departs from the brief's OpenAPI spec: the one list.

The simulator reproduces the real gateway, not the spec, so a loader tested against it works
against IBKR. The spec stays the floor: every response the simulator sends must validate
against `../shared/spec/ibkr-web-api.openapi.yaml` *after* the deviations below are applied,
and against nothing looser. The conformance tests (tests/conformance/) load the spec, apply
`apply_deviations`, and validate every operation's responses; adding an excuse here is the only
way to make a non-conforming payload pass, so each entry names its evidence.

What is not a deviation: extra keys (the spec's objects are open, and the real gateway sends many
more fields than the spec lists), and error bodies on non-200 statuses (the spec documents only
the 200 answers).

What it must never do: loosen the spec beyond the listed entries, or hold an entry without its
evidence.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Deviation:
    """One documented departure: which schema, what the gateway really sends, and why we know."""

    schema: str
    summary: str
    evidence: str
    replacement: dict[str, Any]
    property_name: str | None = None  # None: the whole schema is replaced


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        schema="ContractSearchResult",
        property_name="conid",
        summary="secdef search returns conid as a string of digits, not an integer",
        evidence=(
            'spec/README.md (Contracts); examples/secdef_search_1.json has "conid": "43645865"'
        ),
        replacement={
            "oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+$"}],
        },
    ),
    Deviation(
        schema="OrderResponse",
        summary=(
            "placeOrder (and /iserver/reply) answer a LIST: either confirmation questions "
            "[{id, message[], messageIds[], isSuppressed}] or the final "
            "[{order_id, order_status, encrypt_message}]; a rejection is an object {error}"
        ),
        evidence=(
            "spec/README.md (Contracts, accounts, orders); examples/place_order_reply_2.json, "
            "place_order_response_2.json, place_order_reject_1.json"
        ),
        replacement={
            "oneOf": [
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["order_id", "order_status"],
                                "properties": {
                                    "order_id": {"type": "string"},
                                    "order_status": {"type": "string"},
                                    "encrypt_message": {"type": "string"},
                                },
                            },
                            {
                                "type": "object",
                                "required": ["id", "message", "messageIds"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "message": {"type": "array", "items": {"type": "string"}},
                                    "messageIds": {"type": "array", "items": {"type": "string"}},
                                    "isSuppressed": {"type": "boolean"},
                                },
                            },
                        ]
                    },
                },
                {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            ]
        },
    ),
)


def apply_deviations(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI document with every `DEVIATIONS` entry applied (nothing else)."""
    patched = copy.deepcopy(spec)
    schemas = patched["components"]["schemas"]
    for deviation in DEVIATIONS:
        if deviation.schema not in schemas:
            raise KeyError(f"spec has no schema {deviation.schema!r} to apply a deviation to")
        if deviation.property_name is None:
            schemas[deviation.schema] = copy.deepcopy(deviation.replacement)
            continue
        properties = schemas[deviation.schema].setdefault("properties", {})
        if deviation.property_name not in properties:
            raise KeyError(f"spec schema {deviation.schema!r} has no {deviation.property_name!r}")
        properties[deviation.property_name] = copy.deepcopy(deviation.replacement)
    return patched
