"""TLS: a client trusting the simulator's CA file connects; default trust fails verification."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
import pytest

from ib_pipeline.simulator import Simulator


def test_a_client_trusting_the_ca_file_connects_and_others_fail_verification(
    make_sim: Callable[..., Simulator],
) -> None:
    simulator = make_sim(tls=True)
    assert simulator.url.startswith("https://127.0.0.1:")
    ca_file = simulator.ca_file
    assert ca_file.is_file() and ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    trusting = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=trusting) as client:
        response = client.get(simulator.base_url + "/iserver/auth/status")
    assert response.status_code == 200 and response.json()["authenticated"] is True
    with httpx.Client(
        base_url=simulator.base_url.replace("127.0.0.1", "localhost"), verify=trusting
    ) as by_name:
        assert by_name.get("/iserver/auth/status").status_code == 200
    with (
        httpx.Client() as default_trust,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        default_trust.get(simulator.base_url + "/iserver/auth/status")
    simulator.stop()
    assert not ca_file.exists(), "the CA file outlived the simulator"


def test_ca_file_is_only_for_tls_runs(sim: Simulator) -> None:
    with pytest.raises(RuntimeError, match="tls=True"):
        _ = sim.ca_file
