"""Fixtures of the simulator's own integration tests: plain httpx clients on a simulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ib_pipeline.simulator import PacingConfig, Simulator

NO_PACING = PacingConfig(enabled=False)


@pytest.fixture
def client_for() -> Iterator[Callable[..., httpx.Client]]:
    """``client_for(sim, **httpx_options)``: an httpx client on the simulator's API base."""
    clients: list[httpx.Client] = []

    def make(simulator: Simulator, **options: Any) -> httpx.Client:
        options.setdefault("timeout", 10.0)
        client = httpx.Client(base_url=simulator.base_url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def api(sim: Simulator, client_for: Callable[..., httpx.Client]) -> httpx.Client:
    """A client on the default ``sim``."""
    return client_for(sim)


@pytest.fixture
def free_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    """A simulator without pacing, for tests that fire many requests quickly."""
    return make_sim(pacing=NO_PACING)


@pytest.fixture
def free_api(free_sim: Simulator, client_for: Callable[..., httpx.Client]) -> httpx.Client:
    return client_for(free_sim)


def _prime(client: httpx.Client) -> str:
    accounts = client.get("/iserver/accounts")
    assert accounts.status_code == 200, accounts.text
    portfolio = client.get("/portfolio/accounts")
    assert portfolio.status_code == 200, portfolio.text
    return str(accounts.json()["selectedAccount"])


@pytest.fixture
def prime() -> Callable[[httpx.Client], str]:
    """``prime(client)``: query both account lists (the gateway's preconditions) and return the
    main account id."""
    return _prime
