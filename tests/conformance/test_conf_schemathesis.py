"""Property-based requests from the spec (schemathesis): whatever the spec allows a client to
send, the simulator never answers with a server error, and every 200 answer conforms to the spec
with the documented deviations (`ib_pipeline.simulator.spec_deviations`) applied."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from spec_support import patched_spec

from ib_pipeline.simulator import PacingConfig, Simulator

OPERATIONS = [
    result.ok() for result in schemathesis.openapi.from_dict(patched_spec()).get_all_operations()
]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_errors_and_conforming_answers(
    operation: schemathesis.APIOperation, make_sim: Callable[..., Simulator]
) -> None:
    simulator = make_sim(pacing=PacingConfig(enabled=False))
    # Prime the session as clients do, so fuzzed requests reach the endpoints' own validation.
    httpx.get(f"{simulator.base_url}/iserver/accounts", timeout=10).raise_for_status()
    httpx.get(f"{simulator.base_url}/portfolio/accounts", timeout=10).raise_for_status()
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=simulator.base_url)
        statuses.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )
        if response.status_code == 200:
            operation.validate_response(response)

    run()
    assert statuses, "schemathesis generated no request"
    stats = simulator.stats()
    assert stats["totals"]["requests"] >= len(statuses)
    assert stats["totals"]["internal_errors"] == 0
