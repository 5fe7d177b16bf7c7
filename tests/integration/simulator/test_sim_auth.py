"""Sessions and authentication: unauthenticated start, bearer tokens, expiry and keep-alive on
the simulator's clock, the "query /accounts first" preconditions, logout and re-authentication."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from ib_pipeline.simulator import PacingConfig, Simulator, SimulatorConfig

AAPL = 265598
NOT_AUTHENTICATED = {"error": "not authenticated", "statusCode": 401}
TOKEN = "sim-test-token-9f8e7d"
NO_PACING = PacingConfig(enabled=False)


def test_an_unauthenticated_gateway_answers_false_and_401_until_login(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(authenticated=False, pacing=NO_PACING)
    api = client_for(simulator)
    for method in ("GET", "POST"):
        status = api.request(method, "/iserver/auth/status")
        assert status.status_code == 200
        body = status.json()
        assert (body["authenticated"], body["connected"], body["competing"]) == (False,) * 3
    for method, path in [
        ("GET", "/iserver/accounts"),
        ("GET", "/iserver/marketdata/history"),
        ("POST", "/tickle"),
        ("GET", "/portfolio/accounts"),
        ("POST", "/iserver/auth/ssodh/init"),
    ]:
        refused = api.request(method, path)
        assert (refused.status_code, refused.json()) == (401, NOT_AUTHENTICATED), path
    assert httpx.post(simulator.url + "/sim/login").json()["authenticated"] is True
    assert api.get("/iserver/accounts").status_code == 200


def test_bearer_token_mode_needs_the_right_token_and_never_echoes_it(
    make_sim: Callable[..., Simulator],
    client_for: Callable[..., httpx.Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    simulator = make_sim(token=TOKEN, pacing=NO_PACING)
    anonymous = client_for(simulator)
    wrong = client_for(simulator, headers={"Authorization": "Bearer not-the-token"})
    basic = client_for(simulator, headers={"Authorization": f"Basic {TOKEN}"})
    right = client_for(simulator, headers={"Authorization": f"Bearer {TOKEN}"})
    seen = []
    for client in (anonymous, wrong, basic):
        for path in ("/iserver/auth/status", "/iserver/accounts", "/portfolio/accounts"):
            response = client.get(path)
            assert (response.status_code, response.json()) == (401, NOT_AUTHENTICATED)
            seen.append(response)
    for path in ("/iserver/auth/status", "/iserver/accounts", "/portfolio/accounts"):
        response = right.get(path)
        assert response.status_code == 200, path
        seen.append(response)
    seen.append(httpx.get(simulator.url + "/sim/stats"))
    for response in seen:
        assert TOKEN not in response.text and TOKEN not in str(response.headers)
    assert TOKEN not in repr(simulator.config) and TOKEN not in repr(simulator.state.session)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_the_token_can_come_from_an_environment_variable(
    make_sim: Callable[..., Simulator],
    client_for: Callable[..., httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIM_TEST_TOKEN", TOKEN)
    simulator = make_sim(token_env="SIM_TEST_TOKEN")
    assert client_for(simulator).get("/iserver/accounts").status_code == 401
    authorised = client_for(simulator, headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorised.get("/iserver/accounts").status_code == 200
    monkeypatch.delenv("SIM_TEST_TOKEN")
    with pytest.raises(ValueError, match="SIM_TEST_TOKEN") as info:
        SimulatorConfig(token_env="SIM_TEST_TOKEN").resolve_token()
    assert TOKEN not in str(info.value)


def test_the_session_expires_after_the_timeout_on_the_simulator_clock(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(session_timeout_s=300, pacing=NO_PACING)
    api = client_for(simulator)
    assert api.get("/iserver/accounts").status_code == 200
    simulator.advance(timedelta(seconds=299))
    assert api.get("/iserver/marketdata/snapshot", params={"conids": AAPL}).status_code == 200
    simulator.advance(timedelta(seconds=301))
    expired = api.get("/iserver/marketdata/snapshot", params={"conids": AAPL})
    assert (expired.status_code, expired.json()) == (401, NOT_AUTHENTICATED)
    assert api.post("/iserver/auth/status").json()["authenticated"] is False
    assert api.post("/tickle").json()["iserver"]["authStatus"]["authenticated"] is False
    assert simulator.stats()["session"]["expirations"] == 1
    # ibind's initialize_brokerage_session: a fresh brokerage session, which must be primed again.
    restored = api.post("/iserver/auth/ssodh/init", json={"publish": True, "compete": True})
    assert restored.json()["authenticated"] is True
    again = api.get("/iserver/marketdata/snapshot", params={"conids": AAPL})
    assert (again.status_code, again.json()) == (500, {"error": "Please query /accounts first"})
    assert api.get("/iserver/accounts").status_code == 200
    preflight = api.get("/iserver/marketdata/snapshot", params={"conids": AAPL}).json()
    assert preflight == [{"conid": AAPL, "conidEx": str(AAPL)}]  # a new session: a new pre-flight


def test_tickle_keeps_the_session_alive(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(session_timeout_s=300, pacing=NO_PACING)
    api = client_for(simulator)
    for _ in range(4):
        simulator.advance(timedelta(seconds=240))
        assert api.post("/tickle").json()["iserver"]["authStatus"]["authenticated"] is True
    assert api.get("/iserver/accounts").status_code == 200
    assert simulator.stats()["session"]["expirations"] == 0


def test_snapshots_and_orders_need_iserver_accounts_first(
    free_api: httpx.Client, free_sim: Simulator
) -> None:
    first = {"error": "Please query /accounts first"}
    account = free_sim.broker.main_account_id
    order = {"orders": [{"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 1}]}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/iserver/marketdata/snapshot", {"params": {"conids": AAPL}}),
        ("GET", "/iserver/account/orders", {}),
        ("POST", f"/iserver/account/{account}/orders", {"json": order}),
    ]
    for method, path, options in requests:
        response = free_api.request(method, path, **options)
        assert (response.status_code, response.json()) == (500, first), path
    assert free_api.get("/iserver/marketdata/history", params={
        "conid": AAPL, "period": "1d", "bar": "1h"
    }).status_code == 200  # fmt: skip
    assert free_api.get("/iserver/accounts").status_code == 200
    assert free_api.get("/iserver/marketdata/snapshot", params={"conids": AAPL}).status_code == 200


def test_portfolio_endpoints_need_portfolio_accounts_first(
    free_api: httpx.Client, free_sim: Simulator
) -> None:
    account = free_sim.broker.main_account_id
    first = {"error": "Please query /portfolio/accounts first"}
    for path in (f"/portfolio/{account}/positions/0", f"/portfolio/{account}/summary"):
        response = free_api.get(path)
        assert (response.status_code, response.json()) == (500, first), path
    assert free_api.get("/portfolio/accounts").status_code == 200
    assert free_api.get(f"/portfolio/{account}/positions/0").status_code == 200
    assert free_api.get(f"/portfolio/{account}/summary").status_code == 200


def test_logout_ends_everything_until_the_user_logs_in_again(
    free_api: httpx.Client, free_sim: Simulator
) -> None:
    assert free_api.post("/logout").json() == {"status": True}
    assert free_api.get("/iserver/auth/status").json()["authenticated"] is False
    assert free_api.get("/iserver/accounts").status_code == 401
    assert free_api.post("/iserver/auth/ssodh/init").status_code == 401  # no SSO session left
    free_sim.login()
    assert free_api.get("/iserver/accounts").status_code == 200


def test_reauthenticate_restores_a_dropped_brokerage_session(
    free_api: httpx.Client, free_sim: Simulator
) -> None:
    assert free_api.get("/iserver/accounts").status_code == 200
    free_sim.drop_session()
    assert free_api.get("/iserver/accounts").status_code == 401
    assert free_api.get("/portfolio/accounts").status_code == 200  # the SSO layer is still up
    assert free_api.post("/iserver/reauthenticate").json() == {"message": "triggered"}
    assert free_api.get("/iserver/accounts").status_code == 200
