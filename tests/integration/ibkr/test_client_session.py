"""Session upkeep against the simulator: authentication checks with clear errors, recovery of a
dropped brokerage session, expiry prevented by the keep-alive, bearer tokens that never leak,
and TLS with the simulator's CA."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import trustme

from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import ConfigurationError, NotAuthenticatedError, TlsVerificationError
from ib_pipeline.ibkr.settings import ClientSettings, RetryPolicy, Secret
from ib_pipeline.simulator import Simulator

AAPL = 265598
TOKEN = "sim-bearer-Zq81-secret-token"


def settings_for(sim: Simulator, **changes: Any) -> ClientSettings:
    base = ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        retry=RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0),
        snapshot_poll_interval_s=0.05,
    )
    return base.with_changes(**changes)


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds (checked every 10 ms); fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_unauthenticated_gateway_fails_clearly(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(authenticated=False)
    with pytest.raises(NotAuthenticatedError) as info:
        async with IbkrClient(settings_for(sim)):
            pass
    message = str(info.value)
    assert f"the gateway at {sim.base_url} is not authenticated" in message
    assert f"log in at {sim.url}" in message
    assert "authenticated=False" in message
    sim.login()  # after the browser login, the same settings work
    async with IbkrClient(settings_for(sim)) as client:
        assert (await client.auth_status())["authenticated"] is True


async def test_dropped_brokerage_session_is_reestablished(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        await client.snapshots([AAPL])
        sim.drop_session()
        (response,) = await client.snapshots([AAPL])  # 401, re-auth, re-prime, pre-flight
    assert response.payload[0]["conid"] == AAPL and "31" in response.payload[0]
    stats = sim.stats()
    assert stats["totals"]["401"] == 1
    assert stats["endpoints"]["GET /iserver/accounts"]["requests"] == 2


async def test_logout_mid_run_stops_with_not_authenticated(sim: Simulator) -> None:
    async with IbkrClient(settings_for(sim)) as client:
        await client.history(AAPL, "1d", "1h")
        sim.logout()
        with pytest.raises(NotAuthenticatedError, match=r"log in at http://127\.0\.0\.1"):
            await client.history(AAPL, "1d", "1h")
        assert client.session.recoveries == 1


async def test_keepalive_prevents_expiry(make_sim: Callable[..., Simulator]) -> None:
    """The session expires after 300 s without requests on the simulator's clock; moving the
    clock 200 s at a time with a /tickle in between keeps it alive past 400 s."""
    sim = make_sim(session_timeout_s=300)

    def tickles() -> int:
        return int(sim.stats()["endpoints"].get("POST /tickle", {}).get("requests", 0))

    def more_tickles_than(count: int) -> Callable[[], bool]:
        return lambda: tickles() > count

    async with IbkrClient(settings_for(sim, keepalive_interval_s=0.05)) as client:
        for _ in range(2):
            seen = tickles()
            sim.advance(timedelta(seconds=200))
            await wait_for(more_tickles_than(seen))
        await client.history(AAPL, "1d", "1h")
    stats = sim.stats()
    assert stats["session"]["expirations"] == 0
    assert stats["totals"]["401"] == 0


async def test_expiry_without_keepalive_is_recovered_once(
    make_sim: Callable[..., Simulator],
) -> None:
    sim = make_sim(session_timeout_s=300)
    async with IbkrClient(settings_for(sim)) as client:
        sim.advance(timedelta(seconds=400))
        payload = await client.history(AAPL, "1d", "1h")
        assert client.session.recoveries == 1
    assert payload["data"]
    assert sim.stats()["session"]["expirations"] == 1


async def test_bearer_token_never_leaks(
    make_sim: Callable[..., Simulator], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_sim(token=TOKEN)
    landed: list[Any] = []

    def hook(endpoint: str, params: dict[str, Any], payload: Any, at: datetime) -> None:
        landed.append((endpoint, params, payload))

    env = {"IBKR_ACCESS_TOKEN": TOKEN}
    settings = settings_for(sim, token_env="IBKR_ACCESS_TOKEN")
    async with IbkrClient(settings, environ=env, on_response=hook) as client:
        assert TOKEN not in repr(client) and TOKEN not in repr(client.settings)
        await client.history(AAPL, "1d", "1h")
        await client.snapshots([AAPL])
    assert landed and TOKEN not in repr(landed)

    errors: list[BaseException] = []
    wrong = settings_for(sim, access_token=Secret("not-" + TOKEN))
    with pytest.raises(NotAuthenticatedError) as info:
        async with IbkrClient(wrong):
            pass
    errors.append(info.value)
    assert "check the bearer token (the access_token setting)" in str(info.value)
    with pytest.raises(NotAuthenticatedError) as missing:
        async with IbkrClient(settings_for(sim)):
            pass  # no token at all
    errors.append(missing.value)

    for error in errors:
        for text in (str(error), repr(error), repr(error.__dict__), str(error.__cause__)):
            assert TOKEN not in text
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.args)
    assert caplog.records, "expected some log records to check"


async def test_tls_with_the_simulator_ca(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(tls=True)
    assert sim.base_url.startswith("https://127.0.0.1:")
    async with IbkrClient(settings_for(sim, ca_bundle=sim.ca_file)) as client:
        assert (await client.auth_status())["authenticated"] is True
    async with IbkrClient(settings_for(sim, insecure=True)) as client:  # loopback only
        assert (await client.auth_status())["authenticated"] is True

    with pytest.raises(TlsVerificationError, match=r"certificate verification failed.*ca_bundle"):
        async with IbkrClient(settings_for(sim)):  # the system CAs do not know it
            pass


async def test_tls_with_a_wrong_ca_fails_clearly(
    make_sim: Callable[..., Simulator], tmp_path: Any
) -> None:
    sim = make_sim(tls=True)
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    settings = settings_for(sim, ca_bundle=other_ca, retry=RetryPolicy(max_attempts=5))
    with pytest.raises(TlsVerificationError) as info:
        async with IbkrClient(settings):
            pass
    assert "auth_status" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert sim.stats()["totals"]["requests"] == 0  # not retried: the setting must change


def test_insecure_refused_for_a_remote_gateway() -> None:
    with pytest.raises(ConfigurationError, match="only allowed for loopback hosts"):
        ClientSettings(base_url="https://gateway.internal:5000/v1/api", insecure=True)
