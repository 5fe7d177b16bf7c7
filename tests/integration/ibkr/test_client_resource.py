"""The Dagster resource and the sync facade build working clients against the simulator
(no Dagster job runs: the resource is used the way an asset uses it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg
import pytest

from assets.resources import IbkrClientResource
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.errors import ConfigurationError, NotAuthenticatedError
from ib_pipeline.ibkr.settings import PacingLimits
from ib_pipeline.ibkr.sync import SyncIbkrClient
from ib_pipeline.simulator import PacingConfig, Simulator

AAPL = 265598
TOKEN = "resource-token-8842-secret"


async def test_resource_builds_an_async_client(sim: Simulator) -> None:
    resource = IbkrClientResource(base_url=sim.base_url, token_env=None, keepalive_interval_s=None)
    async with resource.get_client() as client:
        payload = await client.history(AAPL, "2d", "1h")
        account = await client.account_id()
    assert payload["data"] and account == sim.truth.accounts[0]
    assert resource.settings().allow_trading is False


async def test_resource_reads_the_token_from_an_env_var(
    make_sim: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_sim(token=TOKEN)
    monkeypatch.setenv("IB_TEST_TOKEN", TOKEN)
    resource = IbkrClientResource(
        base_url=sim.base_url, access_token=dg.EnvVar("IB_TEST_TOKEN"), keepalive_interval_s=None
    )
    settings = resource.settings()
    assert settings.access_token is not None and TOKEN not in repr(settings)
    async with resource.get_client() as client:
        assert (await client.auth_status())["authenticated"] is True
    without = IbkrClientResource(base_url=sim.base_url, token_env=None, keepalive_interval_s=None)
    with pytest.raises(NotAuthenticatedError):
        async with without.get_client():
            pass


def test_resource_repr_never_shows_the_token() -> None:
    """Inside a run Dagster hands assets the resource with its EnvVar resolved, so a repr in
    a log line or an error message would otherwise print the token itself."""
    resolved = IbkrClientResource(access_token=TOKEN, account="DU1234567")
    assert TOKEN not in repr(resolved) and TOKEN not in str(resolved)
    assert "account='DU1234567'" in repr(resolved)  # the rest of the configuration still shows


def test_resource_validates_configuration() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        IbkrClientResource(base_url="https://10.0.0.8:5000/v1/api", insecure=True).settings()


def test_unpaced_is_refused_for_a_host_that_is_not_loopback() -> None:
    with pytest.raises(ConfigurationError, match=r"unpaced=True .* 'gw\.example\.com'"):
        IbkrClientResource(base_url="https://gw.example.com/v1/api", unpaced=True).settings()


async def test_unpaced_sends_the_portfolio_requests_without_the_5_s_interval(
    make_sim: Callable[..., Simulator],
) -> None:
    """Two `/portfolio/accounts` in a row: the published interval would hold the second for
    5 s; unpaced, against a simulator with its pacing off, neither waits."""
    sim = make_sim(pacing=PacingConfig(enabled=False))
    resource = IbkrClientResource(
        base_url=sim.base_url, token_env=None, keepalive_interval_s=None, unpaced=True
    )
    started = time.monotonic()
    for _ in range(2):
        async with resource.get_client() as client:
            await client.portfolio_accounts()
            pacer = client.pacer
    assert pacer.limits == PacingLimits.unpaced()
    assert time.monotonic() - started < 4.0  # paced, the second one alone waits 5.25 s


def test_sync_client_in_plain_code(sim: Simulator) -> None:
    resource = IbkrClientResource(base_url=sim.base_url, token_env=None, keepalive_interval_s=None)
    start, end = datetime(2024, 11, 20, tzinfo=UTC), datetime(2024, 11, 26, tzinfo=UTC)
    with resource.get_sync_client() as ib:
        assert isinstance(ib, SyncIbkrClient)
        result = ib.history_range(AAPL, "5min", start, end)
        contracts = normalize.contracts(ib.search_contracts("IBM"))
    assert result.table(lot_size=100).equals(sim.truth.history_bars(AAPL, "5min", start, end))
    assert contracts.column("symbol").to_pylist() == ["IBM"]
    with pytest.raises(RuntimeError, match="not open"):
        ib.auth_status()


async def test_sync_client_inside_a_running_loop(sim: Simulator) -> None:
    """Notebooks run an event loop; the facade runs its own in a thread, so it still works
    there (called from a worker thread so this test's loop stays responsive)."""

    def use() -> list[str]:
        with SyncIbkrClient(
            IbkrClientResource(base_url=sim.base_url, token_env=None).settings()
        ) as ib:
            return list(ib.accounts()["accounts"])

    assert await asyncio.to_thread(use) == sim.truth.accounts
