"""The client's retries against a scripted gateway (`httpx.MockTransport`): a 5xx, truncated JSON
and a 429 with Retry-After are retried to success; retries are bounded and typed; a request
that may have acted is never resent. No simulator and no network: the client runs on a virtual
clock (`virtual_clock`), so backoffs and the Retry-After pause cost no real time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from virtual_clock import run_in_virtual_time

from ib_pipeline.ibkr import ClientSettings, GatewayError, IbkrClient, SyncIbkrClient
from ib_pipeline.ibkr.errors import InvalidPayloadError
from ib_pipeline.ibkr.settings import RetryPolicy

BASE = "http://127.0.0.1:5000/v1/api"
HISTORY_PATH = "/v1/api/iserver/marketdata/history"
BARS = {"symbol": "AAPL", "data": [{"t": 1732629600000, "o": 1, "h": 2, "l": 0.5, "c": 1.5}]}
AUTHENTICATED = {"authenticated": True, "connected": True, "competing": False}

Answer = Callable[[], httpx.Response]


class ScriptedGateway:
    """Answers each path with the next response of its script (auth status is always "yes");
    records the loop time of every request."""

    def __init__(self, script: dict[str, list[Answer]]) -> None:
        self.script = script
        self.seen: list[tuple[str, float]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/iserver/auth/status"):
            return httpx.Response(200, json=AUTHENTICATED)
        self.seen.append((request.url.path, asyncio.get_running_loop().time()))
        return self.script[request.url.path].pop(0)()

    def times(self, path: str) -> list[float]:
        return [t for p, t in self.seen if p == path]


def ok(payload: Any) -> Answer:
    return lambda: httpx.Response(200, json=payload)


def status(code: int, body: str = "", **headers: str) -> Answer:
    return lambda: httpx.Response(code, text=body, headers=headers)


def settings(**changes: Any) -> ClientSettings:
    return ClientSettings(base_url=BASE, keepalive_interval_s=None, token_env=None).with_changes(
        **changes
    )


def run_history(gateway: ScriptedGateway) -> tuple[Any, IbkrClient]:
    client = IbkrClient(settings(), transport=httpx.MockTransport(gateway.handle))

    async def scenario() -> Any:
        async with client:
            return await client.history(265598, "1d", "1h")

    return run_in_virtual_time(scenario()), client


def test_a_5xx_is_retried_to_success() -> None:
    gateway = ScriptedGateway({HISTORY_PATH: [status(503, "busy"), ok(BARS)]})
    payload, client = run_history(gateway)
    assert payload == BARS
    assert len(gateway.times(HISTORY_PATH)) == 2
    assert client.stats.retries["history"] == 1


def test_truncated_json_is_retried_to_success() -> None:
    truncated = json.dumps(BARS)[:25]
    gateway = ScriptedGateway({HISTORY_PATH: [status(200, truncated), ok(BARS)]})
    payload, client = run_history(gateway)
    assert payload == BARS
    assert client.stats.retries["history"] == 1


def test_a_429_waits_out_its_retry_after_then_succeeds() -> None:
    gateway = ScriptedGateway(
        {HISTORY_PATH: [status(429, "Too many requests", **{"Retry-After": "3"}), ok(BARS)]}
    )
    payload, client = run_history(gateway)
    assert payload == BARS
    refused_at, retried_at = gateway.times(HISTORY_PATH)
    assert retried_at - refused_at >= 3.0  # the pacer's pause, on the loop's (virtual) clock
    assert client.stats.rate_limited == 1
    assert client.pacer.penalties == 1


def test_retries_are_bounded_and_typed() -> None:
    attempts = settings().retry.max_attempts
    gateway = ScriptedGateway({HISTORY_PATH: [status(502, "bad gateway")] * attempts})
    with pytest.raises(GatewayError, match="HTTP 502") as info:
        run_history(gateway)
    assert info.value.status == 502 and info.value.endpoint == "history"
    assert len(gateway.times(HISTORY_PATH)) == attempts


def test_invalid_json_past_the_retries_is_an_invalid_payload() -> None:
    attempts = settings().retry.max_attempts
    gateway = ScriptedGateway({HISTORY_PATH: [status(200, "{")] * attempts})
    with pytest.raises(InvalidPayloadError, match="invalid or truncated JSON"):
        run_history(gateway)


def test_a_request_that_may_have_acted_is_not_resent() -> None:
    gateway = ScriptedGateway({"/v1/api/logout": [status(503), ok({"status": True})]})
    client = IbkrClient(settings(), transport=httpx.MockTransport(gateway.handle))

    async def scenario() -> Any:
        async with client:
            return await client.logout()

    with pytest.raises(GatewayError, match="HTTP 503"):
        run_in_virtual_time(scenario())
    assert len(gateway.seen) == 1


def test_the_sync_facade_passes_the_transport_through() -> None:
    gateway = ScriptedGateway({HISTORY_PATH: [status(500), ok(BARS)]})
    quick = settings(retry=RetryPolicy(backoff_initial_s=0.001, backoff_max_s=0.01, jitter_s=0))
    with SyncIbkrClient(quick, transport=httpx.MockTransport(gateway.handle)) as ib:  # real time
        assert ib.history(265598, "1d", "1h") == BARS
        assert ib.client.stats.retries["history"] == 1
