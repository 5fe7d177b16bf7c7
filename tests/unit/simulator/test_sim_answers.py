"""The gateway's error bodies and the JSON encoder every route uses."""

from __future__ import annotations

import json
import math

from ib_pipeline.simulator.answers import (
    NonFiniteJson,
    account_not_found,
    bad_request,
    encode_body,
    error_body,
)


def test_error_bodies_have_the_gateway_shapes() -> None:
    assert error_body("No data.") == {"error": "No data."}
    assert error_body("not authenticated", 401) == {"error": "not authenticated", "statusCode": 401}
    assert bad_request("symbol required") == (
        400,
        {"error": "Bad Request: symbol required", "statusCode": 400},
    )
    assert account_not_found("DUX") == (
        400,
        {"error": "Bad Request: account DUX not found", "statusCode": 400},
    )


def test_encode_body_keeps_non_finite_floats_only_when_asked() -> None:
    assert encode_body({"a": [1, 2.5]}) == b'{"a":[1,2.5]}'
    assert encode_body({"h": math.nan}) == b'{"h":null}'  # orjson: strict JSON
    raw = encode_body(NonFiniteJson({"h": math.nan, "l": math.inf}))
    assert raw == b'{"h":NaN,"l":Infinity}'
    assert math.isnan(json.loads(raw)["h"])
