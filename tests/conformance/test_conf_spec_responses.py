"""Every operation of the spec, called on the simulator over real HTTP, answers with a body that
validates against the spec's 200 schema, once the documented gateway deviations
(`ib_pipeline.simulator.spec_deviations`) are applied, and against nothing looser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from spec_support import operation_ids, raw_spec, response_schema

from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.simulator.spec_deviations import DEVIATIONS, apply_deviations

AAPL = 265598


@pytest.fixture
def api(make_sim: Callable[..., Simulator]) -> Iterator[tuple[httpx.Client, Simulator]]:
    simulator = make_sim(pacing=PacingConfig(enabled=False))
    with httpx.Client(base_url=simulator.base_url, timeout=10) as client:
        yield client, simulator


def _validate(operation_id: str, body: Any) -> None:
    jsonschema.validate(body, response_schema(operation_id))


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (
        f"{response.request.url}: {response.status_code} {response.text[:300]}"
    )
    return response.json()


def test_every_operation_answers_within_the_spec(api: tuple[httpx.Client, Simulator]) -> None:
    client, _ = api
    validated: set[str] = set()

    def check(operation_id: str, body: Any) -> Any:
        _validate(operation_id, body)
        validated.add(operation_id)
        return body

    check("getAuthStatus", _ok(client.post("/iserver/auth/status")))
    accounts = check("getAccounts", _ok(client.get("/iserver/accounts")))
    account = accounts["accounts"][0]

    found = check(
        "searchContracts", _ok(client.post("/iserver/secdef/search", json={"symbol": "AAPL"}))
    )
    assert any(str(item["conid"]) == str(AAPL) for item in found)

    preflight = check(
        "getMarketDataSnapshot",
        _ok(
            client.get(
                "/iserver/marketdata/snapshot", params={"conids": str(AAPL), "fields": "31,84,86"}
            )
        ),
    )
    assert preflight and "31" not in preflight[0], "the first snapshot of a session is a pre-flight"
    data = check(
        "getMarketDataSnapshot",
        _ok(
            client.get(
                "/iserver/marketdata/snapshot", params={"conids": str(AAPL), "fields": "31,84,86"}
            )
        ),
    )
    assert "31" in data[0]

    history = check(
        "getMarketDataHistory",
        _ok(
            client.get(
                "/iserver/marketdata/history",
                params={"conid": str(AAPL), "period": "1d", "bar": "5min"},
            )
        ),
    )
    assert history["data"], "a weekday inside the history has bars"

    _ok(client.get("/portfolio/accounts"))
    positions = check("getPositions", _ok(client.get(f"/portfolio/{account}/positions/0")))
    assert isinstance(positions, list)
    check("getAccountSummary", _ok(client.get(f"/portfolio/{account}/summary")))

    check("getLiveOrders", _ok(client.get("/iserver/account/orders")))
    answer = check(
        "placeOrder",
        _ok(
            client.post(
                f"/iserver/account/{account}/orders",
                json={
                    "orders": [
                        {
                            "conid": AAPL,
                            "orderType": "MKT",
                            "side": "BUY",
                            "quantity": 1,
                            "tif": "DAY",
                        }
                    ]
                },
            )
        ),
    )
    rounds = 0
    while isinstance(answer, list) and "id" in answer[0] and "order_id" not in answer[0]:
        rounds += 1
        assert rounds <= 5, f"too many confirmation rounds: {answer}"
        answer = check(
            "placeOrder",
            _ok(client.post(f"/iserver/reply/{answer[0]['id']}", json={"confirmed": True})),
        )
    assert answer[0]["order_id"]
    check("getLiveOrders", _ok(client.get("/iserver/account/orders")))

    assert validated == operation_ids(), (
        f"operations never validated: {operation_ids() - validated}"
    )


def test_the_unpatched_spec_rejects_what_each_deviation_excuses() -> None:
    """Each deviation is needed: the raw spec refuses the payload the deviation describes."""
    examples = {
        "ContractSearchResult": {"conid": "43645865", "symbol": "IBKR"},
        "OrderResponse": [{"order_id": "1234567890", "order_status": "Submitted"}],
    }
    assert {d.schema for d in DEVIATIONS} == set(examples)
    for name, payload in examples.items():
        raw = raw_spec()["components"]["schemas"][name]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(payload, raw)
        patched = apply_deviations(raw_spec())["components"]["schemas"][name]
        jsonschema.validate(payload, patched)


def test_a_payload_outside_spec_and_deviations_is_refused() -> None:
    """The validation has teeth: a history bar with a string price fails it."""
    with pytest.raises(jsonschema.ValidationError):
        _validate(
            "getMarketDataHistory", {"data": [{"t": 1, "o": "1.0", "h": 1, "l": 1, "c": 1, "v": 1}]}
        )
