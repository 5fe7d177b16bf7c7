"""The simulator's HTTP server: lifecycle, every route's shape, bad requests, stats, latency."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ib_pipeline.simulator import PacingConfig, Simulator, SimulatorConfig
from ib_pipeline.simulator.server import ROUTES

AAPL = 265598
MSFT = 272093


def test_serves_on_a_free_loopback_port_and_stops_cleanly() -> None:
    threads_before = set(threading.enumerate())
    simulator = Simulator(SimulatorConfig(now=datetime(2024, 11, 26, 18, tzinfo=UTC)))
    with simulator:
        assert simulator.base_url == f"http://127.0.0.1:{simulator.port}/v1/api"
        response = httpx.get(simulator.base_url + "/iserver/auth/status")
        assert response.status_code == 200
        assert response.json()["authenticated"] is True
        port = simulator.port
    # none of its threads is left (threads of earlier tests in this worker may end meanwhile)
    assert set(threading.enumerate()) - threads_before == set()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the port still accepts connections"
    with pytest.raises(RuntimeError, match="not running"):
        _ = simulator.base_url


def test_a_busy_port_fails_start_with_a_clear_error(sim: Simulator) -> None:
    clash = Simulator(SimulatorConfig(port=sim.port))
    with pytest.raises(RuntimeError, match="failed to start") as info:
        clash.start()
    assert isinstance(info.value.__cause__, OSError)


def test_every_route_answers_the_gateway_shape(
    free_api: httpx.Client, prime: Callable[[httpx.Client], str]
) -> None:
    api = free_api
    for method in ("GET", "POST"):
        status = api.request(method, "/iserver/auth/status").json()
        assert {"authenticated", "competing", "connected", "MAC", "serverInfo"} <= status.keys()
        tickle = api.request(method, "/tickle").json()
        assert tickle["iserver"]["authStatus"]["authenticated"] is True
    assert api.get("/sso/validate").json()["RESULT"] is True
    account = prime(api)
    accounts = api.get("/iserver/accounts").json()
    assert accounts["accounts"][0] == account and accounts["isPaper"] is True
    assert account in accounts["aliases"] and "serverInfo" in accounts
    portfolio = api.get("/portfolio/accounts").json()
    assert [a["accountId"] for a in portfolio] == accounts["accounts"]

    by_post = api.post("/iserver/secdef/search", json={"symbol": "AAPL", "name": False}).json()
    by_get = api.get("/iserver/secdef/search", params={"symbol": "AAPL"}).json()
    assert by_post == by_get
    assert by_post[0]["conid"] == str(AAPL)  # a string here, an integer elsewhere

    history = api.get(
        "/iserver/marketdata/history", params={"conid": AAPL, "period": "1d", "bar": "5min"}
    ).json()
    assert history["data"] and history["points"] == len(history["data"]) - 1
    assert {"t", "o", "h", "l", "c", "v"} == set(history["data"][0])

    params = {"conids": f"{AAPL},{MSFT}", "fields": "31,84,86"}
    preflight = api.get("/iserver/marketdata/snapshot", params=params).json()
    assert preflight == [
        {"conid": AAPL, "conidEx": str(AAPL)},
        {"conid": MSFT, "conidEx": "272093"},
    ]
    data = api.get("/iserver/marketdata/snapshot", params=params).json()
    assert [entry["conid"] for entry in data] == [AAPL, MSFT]
    assert all(isinstance(entry["31"], str) for entry in data)

    positions = api.get(f"/portfolio/{account}/positions/0").json()
    assert (
        positions and {"acctId", "conid", "position", "mktPrice", "avgCost"} <= positions[0].keys()
    )
    summary = api.get(f"/portfolio/{account}/summary").json()
    assert set(summary["netliquidation"]) == {
        "amount", "currency", "isNull", "timestamp", "value", "severity"
    }  # fmt: skip
    assert api.get("/iserver/account/orders").json() == {"orders": [], "snapshot": False}
    assert api.get("/iserver/account/orders").json()["snapshot"] is True
    assert api.get("/iserver/marketdata/unsubscribeall").json() == {"unsubscribed": True}
    assert api.post("/logout").json() == {"status": True}


def test_the_route_table_covers_the_spec_operations() -> None:
    served = {(r.method, r.path) for r in ROUTES}
    spec_operations = {
        ("POST", "/iserver/auth/status"),
        ("GET", "/iserver/accounts"),
        ("POST", "/iserver/account/{accountId}/orders"),
        ("GET", "/iserver/account/orders"),
        ("GET", "/portfolio/{accountId}/positions/{pageId}"),
        ("GET", "/portfolio/{accountId}/summary"),
        ("GET", "/iserver/marketdata/snapshot"),
        ("GET", "/iserver/marketdata/history"),
        ("POST", "/iserver/secdef/search"),
    }
    assert spec_operations <= served


BAD_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/iserver/marketdata/history", {"params": {"period": "1d", "bar": "5min"}}),
    (
        "GET",
        "/iserver/marketdata/history",
        {"params": {"conid": "abc", "period": "1d", "bar": "1h"}},
    ),
    ("GET", "/iserver/marketdata/history", {"params": {"conid": "1", "period": "1d", "bar": "1h"}}),
    (
        "GET",
        "/iserver/marketdata/history",
        {"params": {"conid": AAPL, "period": "9x", "bar": "1h"}},
    ),
    (
        "GET",
        "/iserver/marketdata/history",
        {"params": {"conid": AAPL, "period": "1d", "bar": "7min"}},
    ),
    (
        "GET",
        "/iserver/marketdata/history",
        {"params": {"conid": AAPL, "period": "1d", "bar": "1h", "startTime": "yesterday"}},
    ),
    ("GET", "/iserver/marketdata/snapshot", {}),
    ("GET", "/iserver/marketdata/snapshot", {"params": {"conids": "abc"}}),
    ("GET", "/iserver/marketdata/snapshot", {"params": {"conids": "1"}}),
    ("GET", "/iserver/marketdata/snapshot", {"params": {"conids": "\u00b2"}}),
    ("GET", "/iserver/marketdata/snapshot", {"params": {"conids": ",".join(["265598"] * 101)}}),
    (
        "GET",
        "/iserver/marketdata/snapshot",
        {"params": {"conids": "265598", "fields": ",".join(str(i) for i in range(51))}},
    ),
    ("GET", "/iserver/secdef/search", {}),
    ("POST", "/iserver/secdef/search", {"content": b"{not json"}),
    ("POST", "/iserver/secdef/search", {"json": ["AAPL"]}),
    ("POST", "/iserver/secdef/search", {"json": {"symbol": "AAPL", "name": "maybe"}}),
    ("POST", "/iserver/account/DU1234567/orders", {"content": b"{not json"}),
    ("POST", "/iserver/account/DU1234567/orders", {"json": {"orders": "x"}}),
    ("POST", "/iserver/account/DU1234567/orders", {"json": {"orders": [{}, {}]}}),
    ("POST", "/iserver/account/DU1234567/orders", {"json": {"orders": [{"conid": "x"}]}}),
    ("POST", "/iserver/account/NOPE/orders", {"json": {"orders": [{"conid": AAPL}]}}),
    ("POST", "/iserver/reply/unknown-id", {"json": {"confirmed": True}}),
    ("POST", "/iserver/reply/unknown-id", {"json": {"confirmed": "yes"}}),
    ("DELETE", "/iserver/account/DU1234567/order/abc", {}),
    ("DELETE", "/iserver/account/DU1234567/order/42", {}),
    ("GET", "/portfolio/NOPE/positions/0", {}),
    ("GET", "/portfolio/DU1234567/positions/x", {}),
    ("GET", "/portfolio/DU1234567/positions/-1", {}),
    ("GET", "/portfolio/DU1234567/positions/\u00b2", {}),
    ("DELETE", "/iserver/account/DU1234567/order/\u00b2", {}),
    ("GET", "/portfolio/NOPE/summary", {}),
    ("GET", "/no/such/path", {}),
    ("DELETE", "/iserver/accounts", {}),
]


@pytest.mark.parametrize(("method", "path", "options"), BAD_REQUESTS)
def test_bad_requests_get_gateway_errors_never_a_500(
    *,
    free_sim: Simulator,
    free_api: httpx.Client,
    prime: Callable[[httpx.Client], str],
    method: str,
    path: str,
    options: dict[str, Any],
) -> None:
    prime(free_api)
    response = free_api.request(method, path, **options)
    assert response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    assert "Traceback" not in response.text
    assert free_sim.stats()["totals"]["internal_errors"] == 0


def test_an_unexpected_error_is_a_json_500_without_traceback(
    free_sim: Simulator,
    free_api: httpx.Client,
    prime: Callable[[httpx.Client], str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = prime(free_api)

    def explode(account_id: str, page: int) -> list[dict[str, Any]]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(free_sim.broker, "positions_page", explode)
    response = free_api.get(f"/portfolio/{account}/positions/0")
    assert response.status_code == 500
    assert response.json()["error"].startswith("internal simulator error")
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert free_sim.stats()["totals"]["internal_errors"] == 1
    assert any("secret internals" in r.getMessage() or r.exc_info for r in caplog.records)


def test_stats_count_requests_per_endpoint_and_reset(sim: Simulator, api: httpx.Client) -> None:
    for _ in range(3):
        api.get("/iserver/auth/status")
    api.get("/no/such/path")
    stats = httpx.get(sim.url + "/sim/stats").json()
    assert stats["endpoints"]["GET /iserver/auth/status"]["statuses"] == {"200": 3}
    assert stats["endpoints"]["unmatched"]["statuses"] == {"404": 1}
    assert stats["totals"]["requests"] == 4 and stats["totals"]["429"] == 0
    assert stats["pacing"]["in_penalty_box"] is False
    assert stats == sim.stats()
    assert httpx.post(sim.url + "/sim/reset-stats").json() == {"reset": True}
    assert sim.stats()["totals"]["requests"] == 0


async def test_latency_delays_each_response_without_serialising_them(
    make_sim: Callable[..., Simulator],
) -> None:
    # Answered one after another, n requests take at least n x latency whatever the load; the
    # margin below that bound is what a loaded machine may add to one concurrent round.
    latency, n = 0.25, 12
    simulator = make_sim(latency_ms=latency * 1000, pacing=PacingConfig(enabled=False))
    async with httpx.AsyncClient(base_url=simulator.base_url) as client:
        started = time.monotonic()
        responses = await asyncio.gather(*(client.get("/iserver/auth/status") for _ in range(n)))
        elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in responses)
    assert elapsed >= latency
    assert elapsed < n * latency, "concurrent requests were answered one after another"


def test_the_clock_can_be_read_and_moved_over_http(sim: Simulator) -> None:
    before = sim.clock.now()
    moved = httpx.post(sim.url + "/sim/clock", json={"advance_s": 3600}).json()
    assert moved["now"] == (before + timedelta(hours=1)).isoformat()
    assert sim.clock.now() == before + timedelta(hours=1)
    pinned = httpx.post(sim.url + "/sim/clock", json={"now": "2024-12-02T15:00:00Z"}).json()
    assert pinned["now"] == "2024-12-02T15:00:00+00:00"
    refused = httpx.post(sim.url + "/sim/clock", json={"now": "next tuesday"})
    assert refused.status_code == 400 and "next tuesday" in refused.json()["error"]
    assert httpx.post(sim.url + "/sim/clock", json={"advance_s": 1e300}).status_code == 400
